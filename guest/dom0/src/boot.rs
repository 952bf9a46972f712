//! The boot sequence, from the first Rust instruction to `dom0: ready` and the boot options
//! after it. The console lines are stable (docs/dom0.md lists them; tests match them).
//!
//! Order matters: the early map before anything (atomics and unaligned accesses need the MMU),
//! the console before anything can fail loudly, the heap before the device-tree results, the
//! real map before any device beyond the console, the GIC and the timer before the other vCPUs
//! (they report through both), and the virtio devices last.

use crate::cmdline::{self, Fault, Options};
use crate::dt::{Dt, Gic, Irq, Machine, Region};
use crate::entry::MAX_CPUS;
use crate::mmu::{self, AddressSpace};
use crate::{console, cpu, entry, gic, heap, logger, psci, sched, smp, timer, virtio};
use alloc::vec::Vec;
use spin::{Mutex, Once};

const MIB: u64 = 1 << 20;
const PAGE: u64 = 4096;

static MACHINE: Once<Machine> = Once::new();
static ADDRESS_SPACE: Mutex<Option<AddressSpace>> = Mutex::new(None);
/// The virtual timer's interrupt: the timer node's third, PPI 11 = INTID 27 on every board.
static TIMER_IRQ: Once<Irq> = Once::new();
/// The console's page, kept in the real map.
static CONSOLE: Once<Region> = Once::new();

fn fatal(args: core::fmt::Arguments) -> ! {
    console::write_raw(format_args!("dom0: fatal: {args}\n"));
    console::write_raw(format_args!("dom0: halted\n"));
    cpu::park();
}

fn page_align(r: Region) -> Region {
    let start = r.start & !(PAGE - 1);
    Region::new(start, (r.end().next_multiple_of(PAGE)) - start)
}

/// The boot vCPU's Rust entry, with the early map on.
pub extern "C" fn primary_main(dtb: usize) -> ! {
    smp::cpu_init(0);
    timer::mark_boot();
    let (dt, heap_region) = console_and_heap(dtb);

    let mut unknown = Vec::new();
    let opts = cmdline::parse(dt.bootargs(), |w| unknown.push(w));
    logger::init(opts.loglevel);
    let m = MACHINE.call_once(|| dt.machine());
    timer::init(m.timer_frequency);
    let ram_mib: u64 = m.memory.iter().map(|r| r.size).sum::<u64>() / MIB;
    println!(
        "dom0: Ferrite dom0 {} at EL{}, {} vcpus, {} MiB",
        env!("CARGO_PKG_VERSION"),
        cpu::current_el(),
        m.cpus.len().max(1),
        ram_mib
    );
    describe(m, dtb, &dt);
    for w in unknown {
        log::warn!("bootargs: unknown option \"{w}\" ignored");
    }

    build_map(m, &opts);
    println!(
        "dom0: mmu: on, identity map; heap {} MiB at {:#x}",
        heap_region.size / MIB,
        heap_region.start
    );
    interrupts_and_time(m);

    let wanted = m.cpus.len().max(1);
    let up = if m.psci.is_some() {
        smp::start_secondaries(&m.cpus)
    } else {
        println!("dom0: smp: no PSCI node: staying on one vcpu");
        1
    };
    println!("dom0: smp: {up}/{wanted} vcpus online");
    let mut failures = usize::from(up != wanted);
    failures += usize::from(!check_timer());
    failures += virtio::probe_all(&m.virtio, opts.blk_selftest);

    let (used, total) = heap::usage();
    log::debug!("heap: {} KiB of {} KiB in use", used / 1024, total / 1024);
    if failures == 0 {
        println!("dom0: ready");
    } else {
        println!("dom0: finished with {failures} failure(s)");
    }
    after_ready(&opts);
}

/// The device tree, the console it names (added to the early map) and the heap. Without a
/// device tree there is no console to complain on, so dom0 parks.
fn console_and_heap(dtb: usize) -> (Dt, Region) {
    if dtb == 0 || !dtb.is_multiple_of(8) {
        cpu::park();
    }
    // SAFETY: the early map covers the blob; nothing writes it, and the heap avoids it.
    let Ok(dt) = (unsafe { Dt::new(dtb) }) else {
        cpu::park();
    };
    if let Some(uart) = dt.console() {
        CONSOLE.call_once(|| page_align(uart));
        mmu::early_map_device(uart.start);
        // SAFETY: the PL011 the device tree names, now mapped as device memory; the real map
        // keeps it.
        unsafe { console::init(uart.start as usize) };
    }

    // The heap's place is chosen before there is a heap: a fixed list of what to avoid.
    let (img_start, img_end) = entry::image_region();
    let mut avoid = [Region::new(0, 0); 64];
    avoid[0] = Region::new(dtb as u64, dt.size());
    avoid[1] = Region::new(img_start, img_end - img_start);
    let mut n = 2;
    for r in dt.reserved() {
        if n == avoid.len() {
            fatal(format_args!(
                "more than {} reserved memory ranges",
                avoid.len() - 2
            ));
        }
        avoid[n] = r;
        n += 1;
    }
    let Some(heap_region) =
        heap::choose(dt.memory(), &avoid[..n], img_end, mmu::early_mapped_normal)
    else {
        fatal(format_args!(
            "no room for a heap of 2 to {} MiB in RAM after the image ({:#x})",
            heap::HEAP_SIZE / MIB,
            img_end
        ));
    };
    // SAFETY: RAM the device tree gives dom0, clear of the image, the device tree and every
    // reserved range, inside the early map; used by nothing else.
    unsafe { heap::init(heap_region) };
    (dt, heap_region)
}

/// PSCI, the GIC, and the boot vCPU's tick; IRQs on.
fn interrupts_and_time(m: &Machine) {
    psci::init(m.psci);
    let Some(g) = &m.gic else {
        fatal(format_args!("no GIC in the device tree"));
    };
    gic::set_boot_mpidr(cpu::mpidr());
    // SAFETY: the GIC's regions from the device tree, mapped as device memory by build_map and
    // used by nothing else.
    if let Err(e) = unsafe { gic::init(g, m.cpus.len().max(1)) } {
        fatal(format_args!("GIC: {e}"));
    }
    let Some(&virt) = m.timer.get(2) else {
        fatal(format_args!(
            "the timer node has no virtual timer interrupt"
        ));
    };
    let timer_irq = *TIMER_IRQ.call_once(|| virt);
    if let Err(e) = gic::enable(timer_irq, timer::handle_tick) {
        fatal(format_args!("timer interrupt {}: {e}", timer_irq.intid));
    }
    timer::start_tick();
    cpu::irq_enable();
    smp::mark_online(0);
    if let Some(h) = &m.hypervisor
        && h.compatible == "ferrite,hypervisor"
        && let Some(&irq) = h.irqs.first()
        && let Err(e) = crate::events::init(irq)
    {
        println!("dom0: events: not available: {e}");
    }
}

/// The device-tree summary lines.
fn describe(m: &Machine, dtb: usize, dt: &Dt) {
    let (img_start, img_end) = entry::image_region();
    println!(
        "dom0: image at {:#x} ({} KiB loaded, {} KiB with BSS), device tree at {:#x}",
        img_start,
        entry::file_size() / 1024,
        (img_end - img_start) / 1024,
        dtb
    );
    if !m.model.is_empty() {
        println!("dom0: model: {}", m.model);
    }
    for r in &m.memory {
        println!("dom0: memory: {} ({} MiB)", r, r.size / MIB);
    }
    match &m.gic {
        Some(Gic::V2 { dist, cpu }) => println!(
            "dom0: gic: v2, distributor {:#x}, cpu interface {:#x}",
            dist.start, cpu.start
        ),
        Some(Gic::V3 { dist, redist }) => println!(
            "dom0: gic: v3, distributor {:#x}, redistributors {:#x} ({} region(s))",
            dist.start,
            redist.first().map(|r| r.start).unwrap_or(0),
            redist.len()
        ),
        None => println!("dom0: gic: none in the device tree"),
    }
    let ppi = |i: usize| m.timer.get(i).map(|t| t.intid).unwrap_or(0);
    println!(
        "dom0: timer: PPIs {}/{}/{}/{} (virtual: INTID {}), {} Hz",
        ppi(0),
        ppi(1),
        ppi(2),
        ppi(3),
        ppi(2),
        timer::frequency()
    );
    psci::init(m.psci); // for the version query
    match m.psci {
        Some(c) => match psci::version() {
            Some((maj, min)) => println!("dom0: psci: {} conduit, version {maj}.{min}", c.name()),
            None => println!("dom0: psci: {} conduit, version unknown", c.name()),
        },
        None => println!("dom0: psci: none"),
    }
    println!("dom0: virtio-mmio: {} slots", m.virtio.len());
    println!("dom0: bootargs: \"{}\"", dt.bootargs());
    match &m.hypervisor {
        Some(h) if h.compatible == "ferrite,hypervisor" => {
            match h.abi {
                Some((maj, min)) => println!("dom0: hypervisor: ferrite ABI {maj}.{min}"),
                None => println!("dom0: hypervisor: ferrite ABI unknown (no ferrite,abi-version)"),
            }
            // The device tree says which ABI; the VERSION hypercall must agree.
            let v = psci::hypercall(ferrite_abi::call::VERSION, 0, 0, 0);
            if v >= 0 {
                println!(
                    "dom0: hypervisor: VERSION call answers {}.{}",
                    v >> 16,
                    v & 0xffff
                );
            } else {
                println!("dom0: WARNING: hypervisor: VERSION call failed ({v})");
            }
            // The console hypercall reads dom0's own memory through its page tables; a buffer
            // at an unmapped address must get -EFAULT, not crash anything.
            let msg = "dom0: hypervisor: CONSOLE_IO works\n";
            use ferrite_abi::call::{CONSOLE_IO, console::WRITE};
            let n = psci::hypercall(CONSOLE_IO, WRITE, msg.as_ptr() as u64, msg.len() as u64);
            let bad = psci::hypercall(CONSOLE_IO, WRITE, 0x10, 8);
            println!(
                "dom0: hypervisor: CONSOLE_IO wrote {n} bytes; from an unmapped buffer: {bad}"
            );
            log::info!(
                "hypervisor: conduit {}, {} interrupt(s){}",
                h.conduit.as_deref().unwrap_or("(none)"),
                h.irqs.len(),
                h.irqs
                    .first()
                    .map(|i| alloc::format!(", first INTID {}", i.intid))
                    .unwrap_or_default()
            );
        }
        Some(h) => println!(
            "dom0: hypervisor: unknown (compatible \"{}\"), treated as bare metal",
            h.compatible
        ),
        None => println!("dom0: no hypervisor node (bare metal)"),
    }
}

/// Builds and switches to the real map: RAM, the console, the GIC, every virtio slot, and the
/// fault probe's page when `dom0.fault=unmapped` asks for it.
fn build_map(m: &Machine, opts: &Options) {
    let mut devices: Vec<(&'static str, Region)> = Vec::new();
    if let Some(&u) = CONSOLE.get() {
        devices.push(("the console", u));
    }
    if let Some(g) = &m.gic {
        devices.extend(
            gic::regions(g)
                .into_iter()
                .map(|r| ("the GIC", page_align(r))),
        );
    }
    for s in &m.virtio {
        devices.push(("a virtio-mmio slot", page_align(s.reg)));
    }
    if let Some(Fault::Unmapped(a)) = opts.fault {
        let page = Region::new(a & !(PAGE - 1), PAGE);
        if m.memory.iter().any(|r| r.overlaps(&page)) || devices.iter().any(|d| d.1.overlaps(&page))
        {
            println!("dom0: fault: {a:#x} is RAM or a known device: not a fault probe");
        } else {
            devices.push(("the fault probe", page));
        }
    }
    // Ferrite's grant window is mapped like RAM: granted frames appear there.
    let mut ram = m.memory.clone();
    if let Some(w) = m.hypervisor.as_ref().and_then(|h| h.grant_window) {
        ram.push(w);
        crate::virtio::set_grant_window(w.start, w.size);
    }
    let mut space = match AddressSpace::build(&ram, &devices) {
        Ok(s) => s,
        Err(e) => fatal(format_args!("cannot map {} at {}", e.what, e.region)),
    };
    space.activate();
    *ADDRESS_SPACE.lock() = Some(space);
}

/// Counts 50 ticks on this vCPU against CNTVCT, then checks every online vCPU ticked.
fn check_timer() -> bool {
    let start_ticks = timer::ticks(0);
    let start = timer::counter();
    let done = smp::wait_for(5_000_000, || timer::ticks(0) >= start_ticks + 50);
    let ms = timer::ticks_to_us(timer::counter() - start) / 1000;
    if !done {
        println!(
            "dom0: timer: FAILED: {} ticks in {ms} ms (100 Hz programmed)",
            timer::ticks(0) - start_ticks
        );
        return false;
    }
    println!("dom0: timer: 50 ticks in {ms} ms (100 Hz programmed)");
    let online: Vec<usize> = (0..MAX_CPUS).filter(|&i| smp::online(i)).collect();
    let ticked = online.iter().filter(|&&i| timer::ticks(i) > 0).count();
    println!("dom0: timer: ticks on {ticked}/{} vcpus", online.len());
    // Wide bounds: a loaded host delays ticks a little; a wrong counter frequency is off by far
    // more.
    let rate_ok = (250..=1000).contains(&ms);
    if !rate_ok {
        println!("dom0: timer: FAILED: 50 ticks should take about 500 ms");
    }
    rate_ok && ticked == online.len()
}

/// The boot options that act after `dom0: ready`: the scheduler settings and report, the
/// toolstack's `dom0.exec` commands, the fault probe, then power-off; then the main loop (the
/// back ends and the toolstack's shell).
fn after_ready(opts: &Options) -> ! {
    let under_ferrite = MACHINE
        .get()
        .and_then(|m| m.hypervisor.as_ref())
        .is_some_and(|h| h.compatible == "ferrite,hypervisor");
    if let Some(b) = opts.bench_blk {
        crate::virtio::blk::bench(b);
    }
    crate::consback::start();
    crate::blkback::start();
    sched::boot_options(&opts.sched, opts.sched_report_ms, under_ferrite);
    crate::toolstack::boot(opts, under_ferrite);
    if let Some(Fault::Unmapped(a)) = opts.fault {
        println!("dom0: fault: reading {a:#x}, which is neither RAM nor a device");
        console::flush();
        // SAFETY: deliberately not memory: the address is mapped as a device page in dom0's own
        // table (build_map), so the access goes out and whatever lies below (QEMU's bus, or
        // Ferrite's stage 2) must fault it. No Rust object lives there.
        let v = unsafe { core::ptr::read_volatile(a as *const u32) };
        println!("dom0: fault: FAILED: reading {a:#x} returned {v:#x} and took no fault");
    }
    if opts.poweroff {
        println!("dom0: powering off");
        console::flush();
        timer::stop_all();
        psci::system_off();
        println!("dom0: PSCI SYSTEM_OFF failed");
    }
    loop {
        if crate::gic::take_work() {
            crate::consback::service(false);
            crate::blkback::service(false);
            crate::netback::service(false);
            crate::toolstack::poll();
        }
        cpu::wfi();
    }
}

/// A secondary vCPU's Rust entry, with the MMU on (the boot vCPU's final map).
pub extern "C" fn secondary_main(index: usize) -> ! {
    smp::cpu_init(index);
    let cpus = MACHINE.get().map(|m| m.cpus.len()).unwrap_or(1);
    if let Err(e) = gic::init_secondary(index, cpus) {
        println!("dom0: vcpu{index}: GIC: {e}");
        cpu::park();
    }
    if let Some(&t) = TIMER_IRQ.get() {
        if let Err(e) = gic::enable(t, timer::handle_tick) {
            println!("dom0: vcpu{index}: timer interrupt: {e}");
        }
        timer::start_tick();
    }
    cpu::irq_enable();
    // Said before it is marked online, so the line precedes the boot vCPU's summary.
    println!("dom0: vcpu{index} online");
    smp::mark_online(index);
    loop {
        cpu::wfi();
    }
}
