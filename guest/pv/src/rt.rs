//! Start of day: the entry point Ferrite jumps to, the secondary vCPUs' entry, and what the
//! domain was told in its `StartInfo`.
//!
//! Ferrite enters `_start` (the ELF entry) at EL1h with DAIF masked, the MMU on, x0 = the
//! `StartInfo` VA, SP_EL1 = the top of a 16 KiB boot stack and VBAR_EL1 = 0. The entry code
//! enables FP/SIMD (CPACR_EL1.FPEN: Rust uses the registers for copies and formatting), points
//! VBAR_EL1 at [`crate::exceptions`]' vectors, sets the vCPU index (TPIDR_EL1) to 0, then
//! [`init`]s the library from the `StartInfo` (timer frequency, shared-info page) and calls the
//! guest's main, declared with [`entry!`](crate::entry).

use crate::mm::FrameMap;
use crate::{cpu, events, hypercall, time};
use core::sync::atomic::{AtomicPtr, Ordering};
use ferrite_abi::{StartInfo, sched};

static START_INFO: AtomicPtr<StartInfo> = AtomicPtr::new(core::ptr::null_mut());

/// Declares the guest's main: `ferrite_pv::entry!(main);` with `fn main(si: &'static
/// StartInfo) -> !`. The library's `_start` calls it on vCPU 0 once the library is set up.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(export_name = "ferrite_pv_main")]
        fn __ferrite_pv_main(si: &'static $crate::StartInfo) -> ! {
            let f: fn(&'static $crate::StartInfo) -> ! = $main;
            f(si)
        }
    };
}

/// The `StartInfo` the domain was started with.
///
/// # Panics
/// Before [`init`] (the entry code calls it before the guest's main).
pub fn start_info() -> &'static StartInfo {
    let p = START_INFO.load(Ordering::Acquire);
    // SAFETY: `init` stored a pointer to the validated page, which the guest never frees.
    unsafe { p.as_ref() }.expect("ferrite-pv: start info used before rt::init")
}

/// The domain's id (0 before [`init`]).
pub fn domid() -> u32 {
    let p = START_INFO.load(Ordering::Acquire);
    // SAFETY: as in `start_info`.
    unsafe { p.as_ref() }.map_or(0, |si| si.domid)
}

/// How many times the domain has been restored from a save file (`StartInfo::restores`).
/// Ferrite changes it between two of the guest's instructions, so it is read afresh each time.
pub fn restores() -> u64 {
    let p = START_INFO.load(Ordering::Acquire);
    if p.is_null() {
        return 0;
    }
    // SAFETY: `init` stored a pointer to the validated page, which the guest never frees; the
    // field is a naturally aligned u64 in it.
    unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*p).restores)) }
}

/// The domain's frame list and initial linear map, as the `StartInfo` describes them.
pub fn frame_map() -> FrameMap<'static> {
    let si = start_info();
    // SAFETY: the frame list is `nr_pages` u64s at `frame_list`, in the initial map, and the
    // guest never writes it (it keeps its own copy if it ever must change).
    let list =
        unsafe { core::slice::from_raw_parts(si.frame_list as *const u64, si.nr_pages as usize) };
    FrameMap::new(list, si.virt_base)
}

/// Sets the library up from the `StartInfo` at `si`: checks its magic and version (a bad one
/// is reported and the domain crashed), records it, the counter frequency and the shared-info
/// page (`StartInfo::shared_info`, else the page's place in the initial map).
///
/// # Safety
/// `si` must be the `StartInfo` page Ferrite gave, mapped for the domain's life.
pub unsafe fn init(si: &'static StartInfo) {
    if !si.is_valid() {
        crate::println!(
            "domU?: StartInfo at {:p}: bad magic {:#x} or version {}",
            si,
            si.magic,
            si.version
        );
        crash();
    }
    START_INFO.store(si as *const StartInfo as *mut StartInfo, Ordering::Release);
    time::init(si.counter_hz);
    let shared = if si.shared_info != 0 {
        si.shared_info
    } else {
        frame_map().ma_to_va(si.shared_info_ma).unwrap_or(0)
    };
    // SAFETY: Ferrite keeps the shared-info page writable for the domain's life; the VA is the
    // one it told us, or the page's place in the initial (writable) linear map.
    unsafe { events::init(shared) };
}

/// `SCHED_OP SHUTDOWN` (poweroff); parks if Ferrite refuses.
pub fn poweroff() -> ! {
    let _ = hypercall::shutdown(sched::SHUTDOWN_POWEROFF);
    cpu::park()
}

/// `SCHED_OP SHUTDOWN` (crash); parks if Ferrite refuses.
pub fn crash() -> ! {
    let _ = hypercall::shutdown(sched::SHUTDOWN_CRASH);
    cpu::park()
}

/// A panic handler's body: `domU<id>: PANIC on vcpu<n> at <file>:<line>: <message>`, then
/// crash. Use it as `#[panic_handler] fn panic(i: &PanicInfo) -> ! { ferrite_pv::rt::panic(i) }`.
pub fn panic(info: &core::panic::PanicInfo) -> ! {
    cpu::irq_mask();
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    crate::println!(
        "domU{}: PANIC on vcpu{} at {}:{}: {}",
        domid(),
        cpu::index(),
        file,
        line,
        info.message()
    );
    crash()
}

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod entry {
    use super::*;
    use crate::cpu::MAX_VCPUS;

    /// CPACR_EL1.FPEN = 0b11: FP/SIMD at EL1 and EL0 without trapping.
    const CPACR_FPEN: u64 = 3 << 20;

    core::arch::global_asm!(
        r#"
    .section .text.head, "ax"
    .global _start
_start:
    mov     x19, x0                     // the StartInfo VA
    mov     x1, #{cpacr}
    msr     cpacr_el1, x1
    isb
    adrp    x1, ferrite_pv_vectors
    add     x1, x1, :lo12:ferrite_pv_vectors
    msr     vbar_el1, x1
    isb
    msr     tpidr_el1, xzr              // vCPU 0
    mov     x1, sp
    and     x1, x1, #~15
    mov     sp, x1
    mov     x29, #0
    mov     x30, #0
    mov     x0, x19
    bl      {rust_start}
1:  wfe
    b       1b

    .section .text.ferrite_pv_secondary, "ax"
    .global ferrite_pv_secondary_entry
    // A vCPU started by VCPU_OP UP: x0 = its index (smp::start_vcpu passes it).
ferrite_pv_secondary_entry:
    mov     x19, x0
    mov     x1, #{cpacr}
    msr     cpacr_el1, x1
    isb
    cmp     x19, #{max_vcpus}
    b.hs    2f
    adrp    x1, {stack_tops}
    add     x1, x1, :lo12:{stack_tops}
    ldr     x2, [x1, x19, lsl #3]
    cbz     x2, 2f                      // no stack: not started by smp::start_vcpu
    mov     sp, x2
    adrp    x1, ferrite_pv_vectors
    add     x1, x1, :lo12:ferrite_pv_vectors
    msr     vbar_el1, x1
    isb
    msr     tpidr_el1, x19
    mov     x29, #0
    mov     x30, #0
    mov     x0, x19
    bl      {secondary_start}
2:  wfe
    b       2b
"#,
        cpacr = const CPACR_FPEN,
        max_vcpus = const MAX_VCPUS,
        rust_start = sym rust_start,
        stack_tops = sym crate::smp::STACK_TOPS,
        secondary_start = sym crate::smp::secondary_start,
    );

    unsafe extern "Rust" {
        /// The guest's main, from [`entry!`](crate::entry).
        #[link_name = "ferrite_pv_main"]
        fn guest_main(si: &'static StartInfo) -> !;
    }

    unsafe extern "C" {
        /// The secondary vCPUs' entry (for `VCPU_OP UP`).
        #[link_name = "ferrite_pv_secondary_entry"]
        pub fn secondary_entry();
    }

    extern "C" fn rust_start(si_va: u64) -> ! {
        if si_va == 0 || !si_va.is_multiple_of(8) {
            crate::println!("domU?: no StartInfo (x0 = {si_va:#x})");
            crash();
        }
        // SAFETY: Ferrite's boot contract: x0 is the StartInfo page's VA, mapped (and never
        // given back) for the domain's life; alignment and null were checked.
        let si = unsafe { &*(si_va as *const StartInfo) };
        // SAFETY: that page.
        unsafe { init(si) };
        // SAFETY: `entry!` defines it with this signature; a guest without one fails to link.
        unsafe { guest_main(si) }
    }
}

/// The VA secondary vCPUs start at (what [`crate::smp::start_vcpu`] passes to `VCPU_OP UP`).
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
pub fn secondary_entry_va() -> u64 {
    entry::secondary_entry as *const () as u64
}

/// There is no entry code off bare metal.
#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
pub fn secondary_entry_va() -> u64 {
    0
}
