//! The boot sequence: from the first Rust instruction to the `ferrite: ready:` line.
//!
//! Order matters: console before anything can fail loudly, heap before the device tree (its
//! results are vectors), the real memory map before any device beyond the early console, the
//! GIC and timer before the other CPUs (they report through both).

use crate::arch::{boot as entry, cpu, gic, mmu, pmu, psci, semihosting, smp, timer};
use crate::dt::{self, MachineInfo};
use crate::mm::frames::FrameAllocator;
use crate::mm::{heap, region::Region};
use crate::{cmdline, console, logger, panic::SEMIHOSTING, println};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::{Mutex, Once};

static FRAMES: Mutex<Option<FrameAllocator>> = Mutex::new(None);
/// The CPU holding `FRAMES` (its index + 1; 0: none), so that the heap, growing from the frame
/// allocator, never waits for a lock its own CPU holds.
static FRAMES_HOLDER: AtomicUsize = AtomicUsize::new(0);
static MACHINE: Once<MachineInfo> = Once::new();

/// Runs `f` on the frame allocator (`None` before it exists).
fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator) -> R) -> Option<R> {
    let mut g = FRAMES.lock();
    let frames = g.as_mut()?;
    FRAMES_HOLDER.store(cpu::index().wrapping_add(1), Ordering::Relaxed);
    let r = f(frames);
    FRAMES_HOLDER.store(0, Ordering::Relaxed);
    Some(r)
}

/// `count` contiguous free frames, for a domain at run time.
pub fn alloc_frames(count: usize) -> Option<u64> {
    with_frames(|f| f.alloc(count)).flatten()
}

/// `count` contiguous free frames aligned to `align` bytes.
pub fn alloc_frames_aligned(count: usize, align: u64) -> Option<u64> {
    with_frames(|f| f.alloc_aligned(count, align)).flatten()
}

/// Gives frames back to the free memory.
pub fn free_frames(addr: u64, count: usize) {
    if with_frames(|f| f.free(addr, count)).is_some_and(|r| r.is_err()) {
        log::error!("frames: {count} at {addr:#x} were not allocated; leaking them");
    }
}

/// (all frames, free frames) of the frame allocator.
pub fn frame_counts() -> (usize, usize) {
    with_frames(|f| (f.total_frames(), f.free_frames())).unwrap_or((0, 0))
}

/// `bytes` (a power of two, at least a page) of frames, aligned to their size, for the heap
/// to keep; `None` when there are none, or when this CPU is inside the frame allocator (whose
/// own records are on the heap: the allocation then fails rather than deadlocks).
pub fn heap_frames(bytes: usize) -> Option<Region> {
    if FRAMES_HOLDER.load(Ordering::Relaxed) == cpu::index().wrapping_add(1) {
        return None;
    }
    let addr = alloc_frames_aligned(bytes / 4096, bytes as u64)?;
    Some(Region::new(addr, bytes as u64))
}
static ADDRESS_SPACE: Mutex<Option<mmu::AddressSpace>> = Mutex::new(None);

const MIB: u64 = 1 << 20;

fn fatal(args: core::fmt::Arguments) -> ! {
    console::write_raw(format_args!("ferrite: fatal: {args}\n"));
    console::write_raw(format_args!("ferrite: halted\n"));
    cpu::park();
}

/// Reads the blob's header first, so a bad pointer or a non-DTB gives a message, not a fault
/// beyond the header.
fn device_tree(dtb: usize) -> &'static [u8] {
    if dtb == 0 {
        fatal(format_args!(
            "no device tree: the loader passed x0 = 0. Boot Ferrite as a raw Image (QEMU -kernel \
             with the .bin, U-Boot booti, the Pi firmware) so that x0 points at the DTB"
        ));
    }
    if !dtb.is_multiple_of(8) {
        fatal(format_args!(
            "device tree pointer {dtb:#x} is not 8-byte aligned"
        ));
    }
    // SAFETY: the early map covers the GiB holding the blob; 40 bytes is the FDT header.
    let header = unsafe { core::slice::from_raw_parts(dtb as *const u8, 40) };
    let size = match dt::total_size(header) {
        Ok(s) => s,
        Err(e) => fatal(format_args!("the device tree at {dtb:#x} is unusable: {e}")),
    };
    // SAFETY: the loader placed `size` bytes of device tree at dtb; the blob stays untouched
    // (its region is reserved from the frame allocator).
    unsafe { core::slice::from_raw_parts(dtb as *const u8, size) }
}

/// The boot CPU's Rust entry, with the MMU on (when entered at EL2).
pub extern "C" fn primary_main(dtb: usize) -> ! {
    if let Some(uart) = mmu::early_uart() {
        // SAFETY: the board's console UART, mapped as device memory by the early map (or, with
        // the MMU off at a wrong EL, accessed as device memory anyway).
        unsafe { console::init(uart) };
    }
    // SAFETY: ENTRY_EL was written by the boot code before this function.
    let el = unsafe { *entry::ENTRY_EL.get() };
    if el == 2 {
        pmu::start();
        cpu::set_index(0);
        cpu::init_el2();
        timer::mark_boot();
    } else {
        fatal(format_args!(
            "entered at EL{el}; Ferrite needs EL2 (its firmware must not drop to EL1, and at EL3 \
             it would have to be told how to reach EL2)"
        ));
    }
    heap::init();
    let blob = device_tree(dtb);
    let info = match dt::parse(blob) {
        Ok(i) => MACHINE.call_once(|| i),
        Err(e) => fatal(format_args!(
            "the device tree at {dtb:#x} is malformed: {e}"
        )),
    };
    let opts = cmdline::parse(&info.bootargs);
    logger::init(opts.loglevel);
    SEMIHOSTING.store(opts.semihosting, Ordering::Relaxed);

    // The real map: RAM, the console, the GIC.
    let mut devices = Vec::new();
    if let Some(u) = &info.uart {
        devices.push(Region::new(u.base, u.size.max(0x1000)));
    } else if let Some(u) = mmu::early_uart() {
        devices.push(Region::new(u as u64, 0x1000));
    }
    if let Some(g) = &info.gic {
        devices.extend(gic::regions(g));
    }
    let mut space = match mmu::AddressSpace::build(&info.memory, &devices) {
        Ok(s) => s,
        Err(e) => fatal(format_args!("cannot map {} at {}", e.what, e.region)),
    };
    space.activate();
    *ADDRESS_SPACE.lock() = Some(space);
    match &info.uart {
        // SAFETY: the UART the device tree names, just mapped as device memory.
        Some(u) => unsafe { console::init(u.base as usize) },
        None => {
            log::warn!("no PL011 console in the device tree; keeping the board's early console")
        }
    }

    let (img_start, img_end) = entry::image_region();
    println!(
        "ferrite: Ferrite {} starting on cpu0 at EL2 (image at {:#x}, {} KiB loaded, {} KiB with BSS)",
        env!("CARGO_PKG_VERSION"),
        img_start,
        entry::file_size() / 1024,
        (img_end - img_start) / 1024
    );
    log::info!(
        "machine: {}",
        if info.model.is_empty() {
            "(no model)"
        } else {
            &info.model
        }
    );
    log::info!(
        "device tree at {dtb:#x}, {} bytes; bootargs \"{}\"",
        blob.len(),
        info.bootargs
    );
    for w in &info.warnings {
        log::warn!("device tree: {w}");
    }
    for (word, why) in &opts.rejected {
        log::warn!("bootargs: ignoring \"{word}\": {why}");
    }
    log::info!("cpu: {} physical address bits", cpu::pa_bits());

    init_memory(info, dtb as u64, blob.len() as u64, img_start, img_end);
    timer::init(info.timer.as_ref().and_then(|t| t.clock_frequency));
    log::info!(
        "timer: {} Hz counter, {} Hz tick on EL2 physical timer",
        timer::frequency(),
        timer::TICK_HZ
    );
    if psci::init(info.psci.as_ref().map(|p| p.conduit)) {
        match psci::version() {
            Some((maj, min)) => log::info!("psci: version {maj}.{min} via smc"),
            None => log::warn!("psci: the firmware did not answer PSCI_VERSION"),
        }
    } else if info.psci.is_some() {
        log::warn!(
            "psci: conduit is hvc, which from EL2 would call Ferrite itself; not using PSCI"
        );
    } else {
        log::info!("psci: none (power off needs semihosting or a board method)");
    }

    let gic_info = info
        .gic
        .as_ref()
        .unwrap_or_else(|| fatal(format_args!("no supported GIC in the device tree")));
    let ncpus = info.cpus.len().max(1);
    // SAFETY: the GIC's frames are mapped as device memory above and used by nothing else.
    match unsafe { gic::init(gic_info, ncpus) } {
        Ok(desc) => log::info!("gic: {desc}"),
        Err(e) => fatal(format_args!("GIC: {e}")),
    }
    if let dt::GicInfo::V2 { hyp: Some(h), .. } = gic_info {
        crate::arch::vgic_hw::init_v2(h.start);
    }
    let tick_irq = info.timer.as_ref().map(|t| t.hyp_phys).unwrap_or(26);
    TICK_IRQ.store(tick_irq, Ordering::Relaxed);
    cpu_interrupts_on(0);
    log::info!("cpu0 online (mpidr {:#x})", cpu::mpidr());
    smp::mark_online(0);

    let up = smp::start_secondaries(&info.cpus);
    check_cpus(up);

    // QEMU counts instructions only with -icount; elsewhere the counter may read 0.
    match pmu::instructions() {
        0 => log::info!("boot: ready {} us after entry", timer::uptime_us()),
        n => log::info!(
            "boot: ready {} us after entry, {n} instructions at EL2 on cpu0",
            timer::uptime_us()
        ),
    }
    let free = frame_counts().1 as u64 * 4096 / MIB;
    println!("ferrite: ready: {up} cpus, {free} MiB free");
    match opts.selftest {
        Some(cmdline::SelfTest::Panic) => panic!("selftest=panic: panicking on purpose"),
        Some(cmdline::SelfTest::Fault) => {
            // Nothing is mapped at the top of the 48-bit space: this read is a translation fault.
            // SAFETY: not safe, on purpose: the point is to take the fault.
            let v = unsafe { core::ptr::read_volatile(0xffff_ffff_f000 as *const u64) };
            log::error!("selftest=fault: the read returned {v:#x} instead of faulting");
        }
        None => {}
    }
    let bench = opts.bench_sched;
    OPTIONS.call_once(|| opts);
    // From here on this CPU takes the locks its interrupt handlers take (the scheduler's, the
    // domains'): with interrupts masked, as everywhere else, until the idle loop waits for them.
    cpu::irq_disable();
    if bench {
        bench_sched();
    }
    start_scheduler(up);
    start_dom0(info, blob, up);
    start_domus(info, up);
    if crate::vm::running_domains() == 0 {
        all_domains_gone();
    }
    crate::vm::idle_loop();
}

static OPTIONS: Once<cmdline::Options> = Once::new();

/// Builds dom0 and runs its first vCPU on this CPU; returns only if there is no dom0 to run.
fn start_dom0(info: &MachineInfo, blob: &[u8], cpus: usize) {
    let opts = OPTIONS.get().expect("options are parsed before dom0");
    if crate::vm::modules::dom0(info, opts.dom0_args.as_deref()).is_none() {
        log::info!("dom0: none to start (none packed into the image, no multiboot,kernel module)");
        return;
    }
    let Some(built) = with_frames(|frames| crate::vm::build::dom0(info, blob, opts, frames, cpus))
    else {
        return;
    };
    match built {
        Ok(vm) => crate::vm::sched::wake(vm, 0),
        Err(e) => log::error!("dom0: cannot start it: {e}"),
    }
}

/// `bench=sched`: EL2 instructions per `schedule()` decision with 1, 16 and 256 runnable vCPUs
/// over 4 pCPUs (the policy's own benchmark, `sched::bench`), ticks and accounting included.
fn bench_sched() {
    for n in [1usize, 16, 256] {
        let mut c = crate::sched::bench::setup(n);
        let (t, _) = crate::sched::bench::run(&mut c, 400, 0, true);
        let start = pmu::instructions();
        let (_, sum) = crate::sched::bench::run(&mut c, 4000, t, true);
        let per = pmu::instructions().wrapping_sub(start) / 4000;
        log::info!(
            "bench: sched decision with {n} runnable vcpus: {per} EL2 instructions ({sum:#x})"
        );
    }
}

fn start_scheduler(cpus: usize) {
    let opts = OPTIONS
        .get()
        .expect("options are parsed before the scheduler");
    let mut cfg = crate::sched::Config::new(cpus);
    if let Some(ms) = opts.tslice_ms {
        cfg.tslice_ns = ms * 1_000_000;
        cfg.tick_ns = cfg.tick_ns.min(cfg.tslice_ns);
    }
    if let Some(us) = opts.ratelimit_us {
        cfg.ratelimit_ns = (us * 1000).min(cfg.tslice_ns);
    }
    if let Err(e) = crate::vm::sched::init(cfg, opts.vwfi_native) {
        log::error!("sched: cannot start: {e:?}");
    }
}

/// Builds the PV domUs the command line asks for, or if it names none, those packed into the
/// image from `domains.toml` (docs/domains.md), from the image packed into Ferrite.
fn start_domus(info: &MachineInfo, cpus: usize) {
    let opts = OPTIONS.get().expect("options are parsed before domUs");
    let gic_v3 = matches!(info.gic, Some(crate::dt::GicInfo::V3 { .. }));
    use crate::domain::packed;
    let (specs, source) = crate::domain::bootcfg::boot_domus(
        &opts.domus,
        opts.domus_none,
        packed::DOMUS,
        packed::SOURCE,
    );
    for spec in &specs {
        let Some(id) = crate::vm::free_domid() else {
            log::error!("domU: no free domain id");
            return;
        };
        let image = match spec.image.as_str() {
            "pv" => crate::vm::modules::DOMU_IMAGE,
            _ => None,
        };
        let Some(image) = image else {
            log::error!(
                "domU {}: no image '{}' in this build (make packs guest/domu as 'pv')",
                spec.name.as_deref().unwrap_or("?"),
                spec.image
            );
            continue;
        };
        match crate::vm::build_pv::domu(id, spec, image, cpus, gic_v3) {
            Ok(vm) => log::info!("{}: started from {source}", vm.name),
            Err(e) => log::error!("domU: cannot start it: {e}"),
        }
    }
}

/// No domain is left running: what the `poweroff` and `reboot` options ask for then.
pub fn all_domains_gone() {
    let Some(opts) = OPTIONS.get() else { return };
    if opts.poweroff {
        power_off();
    }
    if opts.reboot {
        reboot();
    }
}

static TICK_IRQ: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(26);

fn on_tick(_intid: u32) {
    crate::vm::sched::on_timer_irq();
}

/// Enables this CPU's tick and IPI and unmasks interrupts.
fn cpu_interrupts_on(index: usize) {
    let tick = TICK_IRQ.load(Ordering::Relaxed);
    if let Err(e) = gic::enable(tick, true, on_tick) {
        log::error!("cpu{index}: cannot enable the timer interrupt {tick}: {e}");
    }
    if let Err(e) = gic::enable(gic::IPI_SGI, false, smp::handle_ipi) {
        log::error!("cpu{index}: cannot enable the IPI: {e}");
    }
    timer::start_tick();
    cpu::irq_enable();
}

fn init_memory(info: &MachineInfo, dtb: u64, dtb_size: u64, img_start: u64, img_end: u64) {
    for r in &info.memory {
        log::info!("memory: {r}");
    }
    let mut reserved: Vec<(Region, &str)> =
        info.reserved.iter().map(|r| (*r, "firmware")).collect();
    reserved.push((Region::new(img_start, img_end - img_start), "ferrite image"));
    reserved.push((Region::new(dtb, dtb_size), "device tree"));
    if let Some(r) = info.initrd {
        reserved.push((r, "initrd"));
    }
    for m in &info.modules {
        reserved.push((m.region, "boot module"));
    }
    for (r, what) in &reserved {
        log::info!("reserved: {r} {what}");
    }
    for name in &info.ignored_reserved {
        log::warn!(
            "reserved-memory: {name} has no static reg (dynamic pools are not supported); ignored"
        );
    }
    let holes: Vec<Region> = reserved.iter().map(|(r, _)| *r).collect();
    let frames = FrameAllocator::new(&info.memory, &holes);
    log::info!(
        "frames: {} MiB free of {} MiB",
        frames.free_frames() as u64 * 4096 / MIB,
        info.memory.iter().map(|r| r.size).sum::<u64>() / MIB
    );
    let (used, total) = heap::usage();
    log::debug!("heap: {} KiB used of {} KiB", used / 1024, total / 1024);
    *FRAMES.lock() = Some(frames);
}

/// Each CPU must be online, ticking and answering IPIs before Ferrite calls itself ready.
fn check_cpus(up: usize) {
    let n = smp::cpu_count();
    let mut ticking = 0;
    let mut answered = 0;
    for i in 0..n {
        if !smp::online(i) {
            continue;
        }
        if smp::wait_for(500_000, || timer::ticks(i) > 0) {
            ticking += 1;
        } else {
            log::error!("timer: no tick on cpu{i} within 500 ms");
        }
        if i != cpu::index() {
            let before = smp::ipis(i);
            gic::send_ipi(i);
            if smp::wait_for(500_000, || smp::ipis(i) > before) {
                answered += 1;
            } else {
                log::error!("ipi: cpu{i} did not answer within 500 ms");
            }
        }
    }
    log::info!(
        "timer: ticking on {ticking}/{up} cpus; ipi: {answered}/{} cpus answered",
        up - 1
    );
}

/// A secondary CPU's Rust entry, with the MMU on and its own stack.
pub extern "C" fn secondary_main(index: usize) -> ! {
    cpu::set_index(index);
    pmu::start();
    cpu::init_el2();
    if let Err(e) = gic::init_secondary(index, smp::cpu_count()) {
        log::error!("cpu{index}: GIC: {e}; parking");
        cpu::park();
    }
    cpu_interrupts_on(index);
    log::info!("cpu{index} online (mpidr {:#x})", cpu::mpidr());
    smp::mark_online(index);
    crate::vm::idle_loop();
}

/// Resets the machine through PSCI; parks if there is no PSCI.
pub fn reboot() -> ! {
    println!("ferrite: reboot");
    smp::stop_others();
    console::flush();
    psci::system_reset();
    println!("ferrite: cannot reboot (no PSCI); halted");
    cpu::park();
}

/// Switches the machine off: PSCI, else semihosting (when allowed), else park.
pub fn power_off() -> ! {
    crate::vm::stats::report();
    println!("ferrite: power off");
    smp::stop_others();
    console::flush();
    psci::system_off();
    if SEMIHOSTING.load(Ordering::Relaxed) {
        semihosting::exit(0);
    }
    println!("ferrite: cannot power off (no PSCI); halted");
    cpu::park();
}
