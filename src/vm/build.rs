//! Building dom0: its memory (1:1, so device DMA works without an IOMMU), its kernel, initrd and
//! device tree placed as the arm64 Linux boot protocol wants, its stage 2 (RAM, passed-through
//! devices, the GICv2 virtual CPU interface), its vGIC, and the physical interrupts it owns.

use super::{Vcpu, Vm, modules};
use crate::arch::context::{Context, El2};
use crate::arch::{cpu, gic, mmu, stage2::Stage2Map, timer};
use crate::cmdline::Options;
use crate::domain::layout::{self, TWO_MIB};
use crate::domain::{DomainState, power::PowerTable};
use crate::dt::dom0::{Dom0Config, GicView, HypervisorNode};
use crate::dt::{GicInfo, MachineInfo};
use crate::mm::frames::FrameAllocator;
use crate::mm::region::Region;
use crate::vdev::pl011::Pl011;
use crate::vgic::{self, Vgic};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use spin::Mutex;

const MIB: u64 = 1 << 20;
/// The PPI dom0's device tree names for event-channel notifications (a later issue uses it).
pub const EVENT_PPI: u32 = 31;
/// The size of dom0's grant window: 4096 pages.
pub const GRANT_WINDOW: u64 = 16 << 20;
/// The virtual timer's PPI.
pub const VTIMER_PPI: u32 = 27;
/// Ferrite's ABI version, as the `/hypervisor` node states it.
pub const ABI: (u32, u32) = (
    ferrite_abi::call::VERSION_MAJOR as u32,
    ferrite_abi::call::VERSION_MINOR as u32,
);

/// Copies `bytes` to physical address `pa` and makes them visible to a CPU running with its
/// caches off (dom0 starts that way).
fn load(pa: u64, bytes: &[u8]) {
    // SAFETY: `pa` lies in memory just allocated to dom0 and mapped 1:1 in Ferrite's map;
    // nothing else uses it, and the copy stays inside the bank (checked by the caller).
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), pa as *mut u8, bytes.len()) };
    mmu::clean_dcache(pa, pa + bytes.len() as u64);
}

/// Builds dom0 and returns it ready to run (vCPU 0 at `entry` with x0 = `dtb`).
pub fn dom0(
    info: &MachineInfo,
    host_dtb: &[u8],
    opts: &Options,
    frames: &mut FrameAllocator,
    cpus: usize,
) -> Result<&'static Vm, String> {
    let images = modules::dom0(info, opts.dom0_args.as_deref()).ok_or(
        "no dom0 kernel: none is packed into this image (make DOM0=...) and /chosen names no \
         multiboot,kernel module",
    )?;
    let hdr = layout::image_header(images.kernel).map_err(|e| format!("dom0: {e}"))?;
    let vcpus = opts.dom0_vcpus.unwrap_or(cpus).min(cpus);
    if opts.dom0_vcpus.is_some_and(|n| n > cpus) {
        log::warn!(
            "dom0_vcpus={} is more than the {cpus} CPUs; dom0 gets {cpus}",
            opts.dom0_vcpus.unwrap()
        );
    }
    let free = frames.free_frames() as u64 * 4096;
    let want = opts
        .dom0_mem
        .unwrap_or_else(|| layout::default_dom0_mem(free))
        / TWO_MIB
        * TWO_MIB;
    let mut banks = layout::plan_banks(want.min(free), 8, |bytes| {
        frames.alloc_aligned((bytes / 4096) as usize, TWO_MIB)
    });
    let got: u64 = banks.iter().map(|b| b.size).sum();
    if banks.is_empty() {
        return Err("no memory left for dom0".into());
    }
    if got < want {
        log::warn!("dom0: asked for {} MiB, got {} MiB", want / MIB, got / MIB);
    }
    // The grant window: the top of dom0's largest bank becomes guest-physical space where it
    // maps granted frames (nothing else lives there in any board's map: it was RAM). The 16 MiB
    // of RAM behind it stay allocated and unused (the frame allocator frees whole allocations
    // only).
    let grant_window = banks
        .iter_mut()
        .filter(|b| b.size >= 4 * GRANT_WINDOW)
        .max_by_key(|b| b.size)
        .map(|b| {
            b.size -= GRANT_WINDOW;
            Region::new(b.end(), GRANT_WINDOW)
        });
    // The control page (dom0 user space's hypercalls): 2 MiB below the grant window.
    let ctrl_page = super::ctrl::carve(&mut banks);

    // The boot images go in the lowest bank they fit in (the first may be a small piece below
    // Ferrite's image, too small for a Linux kernel).
    let initrd_len = images.ramdisk.map(|r| r.len() as u64);
    let place = banks
        .iter()
        .find_map(|b| layout::place(*b, &hdr, initrd_len).ok())
        .map(Ok)
        .unwrap_or_else(|| {
            layout::place(
                *banks.iter().max_by_key(|b| b.size).unwrap(),
                &hdr,
                initrd_len,
            )
        })?;
    let (kernel, initrd, dtb_at) = (place.kernel, place.initrd, place.dtb);

    let gic_view = match info.gic.as_ref().ok_or("no GIC")? {
        GicInfo::V2 {
            dist,
            cpu,
            vcpu: Some(_),
            hyp: Some(_),
            ..
        } => GicView::V2 {
            dist: *dist,
            cpu: Region::new(cpu.start, cpu.size.max(0x2000)),
        },
        GicInfo::V2 { .. } => {
            return Err(
                "the GICv2 has no virtualisation extensions (no GICH/GICV in the device tree)"
                    .into(),
            );
        }
        GicInfo::V3 { dist, redist, .. } => GicView::V3 {
            dist: *dist,
            redist: Region::new(
                redist.first().ok_or("GICv3 without redistributors")?.start,
                vcpus as u64 * 0x20000,
            ),
        },
    };
    let console = info.uart.as_ref().map(|u| Region::new(u.base, 0x1000));
    let cfg = Dom0Config {
        memory: &banks,
        bootargs: &images.cmdline,
        initrd,
        vcpus,
        console,
        gic: gic_view,
        hypervisor: HypervisorNode {
            abi_major: ABI.0,
            abi_minor: ABI.1,
            event_ppi: EVENT_PPI,
            grant_window,
            ctrl_page,
        },
    };
    let dt = crate::dt::dom0::generate(host_dtb, &cfg)
        .map_err(|e| format!("dom0's device tree: {e}"))?;
    if dt.blob.len() as u64 > layout::DTB_ROOM {
        return Err(format!(
            "dom0's device tree is {} bytes, more than 2 MiB",
            dt.blob.len()
        ));
    }
    for n in &dt.notes {
        log::debug!("dom0 device tree: {n}");
    }

    // Stage 2: RAM, the passed-through devices, and on GICv2 the virtual CPU interface where
    // dom0 expects the CPU interface.
    let mut s2 = Stage2Map::new(1);
    for b in &banks {
        s2.map_ram(b)
            .map_err(|e| format!("stage 2: cannot map RAM {}", e.0))?;
    }
    let mut spis = Vec::new();
    for p in &dt.passthrough {
        for r in &p.regions {
            let r = Region::new(
                r.start & !0xfff,
                r.end().div_ceil(0x1000) * 0x1000 - (r.start & !0xfff),
            );
            if let Err(e) = s2.map_device(&r) {
                log::warn!(
                    "dom0: cannot pass through {} at {}: outside the IPA space",
                    p.path,
                    e.0
                );
            }
        }
        spis.extend_from_slice(&p.spis);
    }
    if let (
        GicView::V2 { cpu, .. },
        Some(GicInfo::V2 {
            vcpu: Some(gicv), ..
        }),
    ) = (&gic_view, &info.gic)
    {
        s2.map_device_at(cpu.start, gicv.start, 0x2000)
            .map_err(|e| format!("stage 2: cannot map the virtual CPU interface at {}", e.0))?;
    }
    spis.sort_unstable();
    spis.dedup();

    load(kernel, images.kernel);
    if let (Some(r), Some(bytes)) = (initrd, images.ramdisk) {
        load(r.start, bytes);
    }
    load(dtb_at, &dt.blob);
    // The kernel is code dom0 will fetch: no stale instructions for those addresses.
    cpu::invalidate_icache();

    let (version, dist, redist) = match &gic_view {
        GicView::V2 { dist, .. } => (vgic::Version::V2, *dist, None),
        GicView::V3 { dist, redist } => (vgic::Version::V3, *dist, Some(*redist)),
    };
    let spi_lines = (gic::spi_count() / 32 * 32).min(988);
    let mut vgic = Vgic::new(vgic::Config {
        version,
        vcpus,
        spis: spi_lines,
        mpidrs: (0..vcpus as u64).collect(),
    });
    for v in 0..vcpus {
        vgic.link_hw(VTIMER_PPI, Some(v), Some(VTIMER_PPI));
    }
    for &spi in &spis {
        vgic.link_hw(spi, None, Some(spi));
    }
    let cntvoff = timer::counter();
    let vcpu = (0..vcpus)
        .map(|i| {
            let el2 = El2 {
                hcr: crate::arch::vcpu::hcr_dom0(),
                vttbr: s2.vttbr(),
                vmpidr: (1 << 31) | i as u64,
                cntvoff,
            };
            let (pc, x0) = if i == 0 { (kernel, dtb_at) } else { (0, 0) };
            Vcpu::new(Context::reset(pc, x0, el2))
        })
        .collect();
    let vm = super::install(Vm {
        id: 0,
        name: String::from("dom0"),
        kind: super::Kind::Dom0,
        vcpus,
        vcpu,
        cntvoff,
        gic_v3: version == vgic::Version::V3,
        memory: banks.clone(),
        state: Mutex::new(DomainState::Running),
        running: core::sync::atomic::AtomicBool::new(true),
        power: Mutex::new(PowerTable::new(vcpus)),
        vgic: Mutex::new(vgic),
        vuart: Mutex::new(Pl011::new()),
        dist: Region::new(dist.start, vgic::Vgic::DIST_SIZE),
        redist,
        uart: console,
        uart_spi: info.uart.as_ref().and_then(|u| u.irq),
        maintenance: info.gic.as_ref().and_then(|g| match g {
            GicInfo::V2 {
                maintenance_irq, ..
            }
            | GicInfo::V3 {
                maintenance_irq, ..
            } => *maintenance_irq,
        }),
        life: super::lifecycle::Life::new(None, false),
        last_ran: crate::mm::tlb::LastRan::new(),
    })
    .map_err(|_| "domain 0 exists already")?;
    // The tables live as long as the domain; the grant layer maps granted frames into them.
    super::grant::set_dom0_stage2(s2, grant_window);

    for &spi in &spis {
        if let Err(e) = gic::forward(spi, true, super::on_physical_irq) {
            log::warn!("dom0: cannot forward interrupt {spi}: {e}");
        }
    }
    // Console input goes to dom0's emulated UART.
    if let Some(irq) = vm.uart_spi {
        match gic::enable(irq, true, super::on_console_irq) {
            Ok(()) => crate::console::enable_input(),
            Err(e) => log::warn!("console: no input for dom0 (interrupt {irq}: {e})"),
        }
    }
    // dom0's vCPU i runs on pCPU i: its devices' interrupts and its vGIC's view assume it.
    super::sched::add_domain(vm, crate::sched::DEFAULT_WEIGHT, 0, |v| 1 << v)
        .map_err(|e| format!("dom0: the scheduler refused it: {e:?}"))?;
    log::info!(
        "dom0: {} vcpus, {} MiB at {}, kernel ({}, {} KiB) at {kernel:#x}, device tree at {dtb_at:#x}{}",
        vcpus,
        got / MIB,
        banks
            .iter()
            .map(|b| format!("{:#x}", b.start))
            .collect::<Vec<_>>()
            .join(","),
        images.source,
        images.kernel.len() / 1024,
        initrd
            .map(|r| format!(", initrd at {:#x}", r.start))
            .unwrap_or_default()
    );
    log::info!(
        "dom0: {} devices passed through, {} interrupts forwarded; command line \"{}\"",
        dt.passthrough.len(),
        spis.len(),
        images.cmdline
    );
    Ok(vm)
}

/// Per CPU, before its vCPU first runs: the interrupts a vCPU needs that are private to a CPU.
pub fn enable_cpu_interrupts(maintenance: Option<u32>) {
    if let Err(e) = gic::forward(VTIMER_PPI, true, super::on_physical_irq) {
        log::warn!("cpu{}: cannot forward the virtual timer: {e}", cpu::index());
    }
    if let Some(m) = maintenance {
        // The maintenance interrupt only needs to cause an exit: the return path refills the
        // list registers.
        if let Err(e) = gic::enable(m, true, |_| {}) {
            log::warn!(
                "cpu{}: cannot enable the GIC maintenance interrupt: {e}",
                cpu::index()
            );
        }
    }
}
