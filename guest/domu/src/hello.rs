//! `hello`: says what Ferrite and the `StartInfo` report, then the domain powers off.

use ferrite_pv::{StartInfo, hypercall};

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
}
