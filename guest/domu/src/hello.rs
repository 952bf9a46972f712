//! `hello`: says what Ferrite and the `StartInfo` report, checks that the memory it was given
//! free is all zeroes (`hello: <n> free pages, all zero`: nothing of a domain that had the
//! frames before), fills it for the next domain on these frames to check the same, then the
//! domain powers off.

use ferrite_pv::{StartInfo, hypercall, rt};

pub fn run(si: &StartInfo, cmdline: &str) {
    let v = hypercall::version();
    match hypercall::features(0) {
        Ok(f) => out!(
            "hello: ABI {}.{}, features {:#x}, {} pages, {} vcpus, cmdline '{}'",
            v >> 16,
            v & 0xffff,
            f,
            si.nr_pages,
            si.nr_vcpus,
            cmdline
        ),
        Err(e) => out!(
            "hello: ABI {}.{}, features ? ({e}), {} pages, {} vcpus, cmdline '{}'",
            v >> 16,
            v & 0xffff,
            si.nr_pages,
            si.nr_vcpus,
            cmdline
        ),
    }
    free_pages_zeroed(si);
}

/// What `hello` fills its free pages with when it is done.
const FILL: u8 = 0xa5;

/// Checks the free pages (from `first_free_pfn`, but the shared-info and console pages, which
/// Ferrite and dom0 write) are zero, then fills them with [`FILL`].
fn free_pages_zeroed(si: &StartInfo) {
    let frames = rt::frame_map();
    let shared = |pfn: u64| {
        let ma = frames.ma(pfn);
        ma == Some(si.shared_info_ma) || ma == Some(si.console_ring_ma)
    };
    let mut n = 0;
    for pfn in (si.first_free_pfn..si.nr_pages).filter(|&p| !shared(p)) {
        // SAFETY: a free frame of ours in the initial map (writable, 4 KiB aligned): nothing
        // else of the domain uses it, and it is read and written here only.
        let page = unsafe { core::slice::from_raw_parts_mut(frames.va(pfn) as *mut u64, 512) };
        if let Some(i) = page.iter().position(|&w| w != 0) {
            return out!(
                "hello: FAIL: free page {pfn} is not zero (word {i} is {:#x})",
                page[i]
            );
        }
        page.fill(u64::from_ne_bytes([FILL; 8]));
        n += 1;
    }
    out!(
        "hello: {n} free pages, all zero; filled with {FILL:#x} for the next domain on these frames"
    );
}
