//! Building a PV domU on the machine: its frames from free memory, the image laid out and
//! written by the portable builder (`domain::pvbuild`), its initial page tables validated by
//! pinning them exactly as a guest's own would be (`pv`), its vCPU 0 ready to start with the
//! MMU on, and the domain handed to the scheduler.

use super::domu::{self, PvDomain};
use super::lifecycle::{Image, Life, Origin};
use super::{Kind, Vcpu, Vm};
use crate::arch::context::{Context, El2};
use crate::arch::{cpu, timer, vcpu};
use crate::domain::config::DomuSpec;
use crate::domain::power::PowerTable;
use crate::domain::pvbuild::{self, PhysMem, StartParams};
use crate::domain::{DomId, DomainState};
use crate::mm::region::Region;
use crate::pv::{FrameTable, Policy, Ttbr};
use crate::vdev::pl011::Pl011;
use crate::vgic::{self, Vgic};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::mmu::{MmuextOp, ext};
use spin::Mutex;

/// Machine frames as the builder writes them: RAM, identity-mapped at EL2.
struct Frames;

impl PhysMem for Frames {
    fn write(&mut self, pa: u64, bytes: &[u8]) {
        // SAFETY: the builder writes only inside frames of the new domain's frame list, which
        // were just allocated to it and are RAM in Ferrite's identity map; nothing runs there.
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), pa as *mut u8, bytes.len()) };
    }

    fn zero(&mut self, pa: u64, len: u64) {
        // SAFETY: as in write.
        unsafe { cpu::zero_ram(pa, len) };
    }
}

/// TCR_EL1 for PV domains (docs/abi.md): 48-bit VAs in both halves with 4 KiB granules, walks
/// inner-shareable write-back, IPS from the CPU, 16-bit ASIDs where there are.
pub(super) fn tcr() -> u64 {
    let t0 = 16 | (0b01 << 8) | (0b01 << 10) | (0b11 << 12); // T0SZ, IRGN0, ORGN0, SH0; TG0 = 4K
    let t1 = (16 << 16) | (0b01 << 24) | (0b01 << 26) | (0b11 << 28) | (0b10 << 30); // TG1 = 4K
    let ips = cpu::pa_range_field().min(5) << 32;
    let asid16 = if domu::asid16() { 1 << 36 } else { 0 };
    t0 | t1 | ips | asid16
}

/// Builds the PV domU `spec` from the ELF `image` packed in Ferrite as domain `id`, and makes
/// vCPU 0 runnable.
pub fn domu(
    id: DomId,
    spec: &DomuSpec,
    image: &'static [u8],
    cpus: usize,
    gic_v3: bool,
) -> Result<&'static Vm, String> {
    let origin = Origin {
        spec: spec.clone(),
        image: Image::Packed(image),
    };
    domu_from(id, origin, cpus, gic_v3, false)
}

/// Builds a PV domU from `origin` as domain `id`; vCPU 0 runs at once unless `paused`.
pub fn domu_from(
    id: DomId,
    origin: Origin,
    cpus: usize,
    gic_v3: bool,
    paused: bool,
) -> Result<&'static Vm, String> {
    let mut b = Build::new(id, origin, cpus, gic_v3, paused)?;
    loop {
        if let Some(vm) = b.step(None)? {
            return Ok(vm);
        }
    }
}

/// A PV domU being built. Its work grows with its memory (zeroing it, writing and validating
/// the page tables that map it: about 50 ms for 512 MiB under QEMU's instruction count), so
/// dom0's `CREATE` builds it a slice at a time ([`Build::step`]) and lets its pCPU run other
/// vCPUs between slices. The longest step left is writing the tables and the frame list
/// (about 8 ms per GiB). Until it is done the domain is invisible but its id is taken;
/// dropped unfinished, it gives everything back.
pub struct Build {
    id: DomId,
    origin: Origin,
    name: String,
    gic_v3: bool,
    paused: bool,
    affinity: u64,
    born: u64,
    base: u64,
    frames: Vec<u64>,
    plan: pvbuild::Plan,
    stage: Stage,
    /// Whether the domain's console port, disk claim and grant table exist (to remove).
    registered: bool,
    done: bool,
}

enum Stage {
    /// Zeroing the frames the image and tables do not fill, from this byte offset.
    Zero(u64),
    /// Writing the image, the start-info page and the initial tables.
    Write,
    /// The domain's table of frame states.
    Table(pvbuild::Built),
    /// Validating the tables bottom-up, each held without a pin, so that each step validates
    /// one table's 512 entries: the index (from the end of `page_tables`) of the next one.
    Pin {
        built: pvbuild::Built,
        ft: FrameTable<super::grant::PvGrants>,
        next: usize,
    },
}

/// How long one slice of a build may hold the pCPU.
pub const SLICE_US: u64 = 1000;

impl Build {
    /// Checks `origin` and takes the domain's frames; the rest is done by [`Build::step`].
    pub fn new(
        id: DomId,
        origin: Origin,
        cpus: usize,
        gic_v3: bool,
        paused: bool,
    ) -> Result<Build, String> {
        let born = timer::counter();
        let spec = &origin.spec;
        let name = spec.name.clone().unwrap_or_else(|| format!("domU{id}"));
        let all = if cpus >= 64 {
            u64::MAX
        } else {
            (1 << cpus) - 1
        };
        let affinity = spec.cpus.unwrap_or(all) & all;
        if affinity == 0 {
            return Err(format!(
                "{name}: cpus= names no CPU this machine has ({cpus} CPUs)"
            ));
        }
        if spec.cap > 100 * cpus as u32 {
            return Err(format!(
                "{name}: cap={} is more than {cpus} CPUs' worth ({})",
                spec.cap,
                100 * cpus
            ));
        }
        let elf =
            pvbuild::elf::parse(origin.image.bytes()).map_err(|e| format!("{name}: image: {e}"))?;
        let nr_pages = spec.mem / 4096;
        let plan = pvbuild::plan(&elf, nr_pages, None, spec.vcpus as u32)
            .map_err(|e| format!("{name}: {e}"))?;
        let base = crate::boot::alloc_frames_aligned(nr_pages as usize, 2 << 20)
            .ok_or_else(|| format!("{name}: no {} MiB of free memory for it", spec.mem >> 20))?;
        let mut frames: Vec<u64> = Vec::new();
        if frames.try_reserve_exact(nr_pages as usize).is_err() {
            crate::boot::free_frames(base, nr_pages as usize);
            return Err(no_records(&name, nr_pages));
        }
        frames.extend((0..nr_pages).map(|i| base + i * 4096));
        // Taken until the domain is installed or the build is dropped.
        super::set_retiring(id, true);
        Ok(Build {
            id,
            name,
            gic_v3,
            paused,
            affinity,
            born,
            base,
            frames,
            // The builder zeroes the frames it uses; the free ones are ours to give zeroed.
            stage: Stage::Zero(plan.first_free_pfn * 4096),
            plan,
            registered: false,
            done: false,
            origin,
        })
    }

    /// The domain's id.
    pub fn id(&self) -> DomId {
        self.id
    }

    /// Goes on with the build until it is done (`Some`: the domain, installed) or, with a
    /// `deadline` (a counter value), until that passes (`None`: call again). An error ends
    /// the build; the caller then drops it.
    pub fn step(&mut self, deadline: Option<u64>) -> Result<Option<&'static Vm>, String> {
        let over = || deadline.is_some_and(|d| timer::counter() >= d);
        let mem = self.origin.spec.mem;
        loop {
            match &mut self.stage {
                Stage::Zero(off) => {
                    /// Zeroed between looks at the clock: about 75 us (`DC ZVA`, 37 instructions a KiB).
                    const CHUNK: u64 = 2 << 20;
                    while *off < mem {
                        let len = CHUNK.min(mem - *off);
                        // SAFETY: frames of this domain (allocated in `new`, not yet mapped by
                        // anyone), RAM in Ferrite's identity map.
                        unsafe { cpu::zero_ram(self.base + *off, len) };
                        *off += len;
                        if *off < mem && over() {
                            return Ok(None);
                        }
                    }
                    self.stage = Stage::Write;
                }
                Stage::Write => {
                    self.stage = Stage::Table(self.write()?);
                    if over() {
                        return Ok(None);
                    }
                }
                Stage::Table(_) => {
                    let Stage::Table(built) = core::mem::replace(&mut self.stage, Stage::Write)
                    else {
                        unreachable!("matched just above");
                    };
                    let ft = self.frame_table()?;
                    self.stage = Stage::Pin { built, ft, next: 0 };
                    if over() {
                        return Ok(None);
                    }
                }
                Stage::Pin { built, ft, next } => {
                    let name = &self.name;
                    let tables = &built.page_tables;
                    // Every table but the root, the last level first: each one's entries then
                    // point at tables already validated, which costs a count each.
                    while *next < tables.len() - 1 {
                        let t = &tables[tables.len() - 1 - *next];
                        ft.hold_table(t.ma, t.level, &mut domu::Phys).map_err(|e| {
                            format!(
                                "{name}: its initial level-{} table at {:#x} did not \
                                     validate ({}): a builder bug",
                                t.level,
                                t.ma,
                                e.name()
                            )
                        })?;
                        *next += 1;
                        if over() {
                            return Ok(None);
                        }
                    }
                    return self.finish().map(Some);
                }
            }
        }
    }

    /// Registers the domain's console port and disk, and writes its image, start-info page
    /// and initial tables.
    fn write(&mut self) -> Result<pvbuild::Built, String> {
        let (id, name) = (self.id, &self.name);
        let spec = &self.origin.spec;
        self.registered = true;
        super::devbus::claim_disk(id, spec.disk).map_err(|e| format!("{name}: {e}"))?;
        // The console's port, unbound for dom0, goes into the start-info page.
        let console_evtchn = super::events::new_domu(id, spec.vcpus)
            .map_err(|e| format!("{name}: console event channel: {}", e.name()))?;
        let elf = pvbuild::elf::parse(self.origin.image.bytes())
            .map_err(|e| format!("{name}: image: {e}"))?;
        let built = pvbuild::build(
            &self.plan,
            &elf,
            None,
            &self.frames,
            &mut Frames,
            StartParams {
                domid: id,
                nr_vcpus: spec.vcpus as u32,
                counter_hz: timer::frequency(),
                cmdline: &spec.cmdline,
                flags: 0,
                console_evtchn,
            },
        )
        .map_err(|e| format!("{name}: {e}"))?;
        // The image is code the domain will fetch.
        cpu::invalidate_icache();
        Ok(built)
    }

    fn frame_table(&self) -> Result<FrameTable<super::grant::PvGrants>, String> {
        let (id, name) = (self.id, &self.name);
        let spec = &self.origin.spec;
        FrameTable::with_grants(
            id,
            &self.frames,
            spec.vcpus,
            Policy::default(),
            super::grant::PvGrants,
        )
        .map_err(|e| match e {
            crate::pv::Errno::NoMem => no_records(name, self.frames.len() as u64),
            e => format!("{name}: frame table: {}", e.name()),
        })
    }

    /// Pins the root (its entries now cost a count each) and loads it as vCPU 0's base, drops
    /// the lower tables' holds (the root's tree holds them), and installs the domain.
    fn finish(&mut self) -> Result<&'static Vm, String> {
        let Stage::Pin { built, ft, .. } = core::mem::replace(&mut self.stage, Stage::Write) else {
            unreachable!("finish is called from the pin stage");
        };
        let (id, name) = (self.id, self.name.clone());
        let spec = self.origin.spec.clone();
        let mut ft = ft;
        let new_base = if built.ttbr == Ttbr::Ttbr1 {
            ext::NEW_TTBR1
        } else {
            ext::NEW_TTBR0
        };
        let root = built.root_ma;
        pin(
            id,
            &mut ft,
            &[
                MmuextOp::pin(0, root),
                MmuextOp {
                    cmd: new_base,
                    pad: 0,
                    arg1: root,
                    arg2: 0,
                },
            ],
        )
        .map_err(|e| {
            format!("{name}: its initial page tables did not validate ({e}): a builder bug")
        })?;
        for t in &built.page_tables[1..] {
            ft.release_table_hold(t.ma, &mut domu::Phys)
                .map_err(|e| format!("{name}: its level-{} table's hold: {}", t.level, e.name()))?;
        }
        ft.acquire_writable(built.shared_info_ma, &mut domu::Phys)
            .map_err(|e| format!("{name}: shared-info page: {}", e.name()))?;
        super::grant::set_console_page(id, built.console_ma);

        let vmid = id + 1;
        let cntvoff = timer::counter();
        let vcpu = (0..spec.vcpus)
            .map(|i| {
                let el2 = El2 {
                    hcr: vcpu::hcr_pv(),
                    vttbr: (vmid as u64) << 48,
                    vmpidr: (1 << 31) | i as u64,
                    cntvoff,
                };
                let mut ctx = Context::reset(built.entry, built.start_info_va, el2);
                ctx.el1.sctlr = domu::SCTLR;
                ctx.el1.mair = domu::MAIR;
                ctx.el1.tcr = tcr()
                    | if built.ttbr == Ttbr::Ttbr1 {
                        domu::TCR_EPD0
                    } else {
                        domu::TCR_EPD1
                    };
                if i == 0 {
                    match built.ttbr {
                        Ttbr::Ttbr1 => ctx.el1.ttbr1 = root,
                        Ttbr::Ttbr0 => ctx.el1.ttbr0 = root,
                    }
                    ctx.el1.sp_el1 = built.stack_top;
                }
                Vcpu::new(ctx)
            })
            .collect();
        let vm = assemble(
            Parts {
                id,
                name: name.clone(),
                ft,
                shared_info: built.shared_info_ma,
                start_info_pfn: self.plan.start_info_pfn,
                max_pages: spec.maxmem.unwrap_or(spec.mem) / 4096,
                vcpu,
                cntvoff,
                gic_v3: self.gic_v3,
                memory: Region::new(self.base, spec.mem),
                life: Life::new(Some(self.origin.clone()), self.paused),
                power: PowerTable::new(spec.vcpus),
            },
            spec.weight,
            spec.cap,
            self.affinity,
        );
        // Installed (even when the scheduler then refused it: the record, crashed, holds the
        // frames until it is destroyed): the domain's records are its own now.
        if super::domain(id).is_some() {
            self.done = true;
            super::set_retiring(id, false);
        }
        let vm = vm?;
        vm.life
            .born
            .store(self.born, core::sync::atomic::Ordering::Relaxed);
        log::info!(
            "{name}: domain {id}, PV, {} vcpus, {} MiB at {:#x}, entry {:#x}, weight {}, cap {}, \
             cpus {:#x}, command line \"{}\"",
            spec.vcpus,
            spec.mem >> 20,
            self.base,
            built.entry,
            spec.weight,
            spec.cap,
            self.affinity,
            spec.cmdline
        );
        super::sched::wake(vm, 0);
        Ok(vm)
    }
}

impl Drop for Build {
    /// An unfinished build (failed, or abandoned by dom0) gives back what it took.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        crate::boot::free_frames(self.base, self.frames.len());
        if self.registered {
            super::events::remove_domain(self.id);
            super::grant::remove_domain(self.id);
            super::devbus::remove_domain(self.id);
        }
        super::set_retiring(self.id, false);
    }
}

/// Runs `ops` on the domain's frame table as its own `MMUEXT_OP` would.
fn pin(
    id: DomId,
    ft: &mut FrameTable<super::grant::PvGrants>,
    ops: &[MmuextOp],
) -> Result<(), &'static str> {
    let (_, r) = crate::pv::mmuext_op(id, ft, &mut domu::Phys, 0, ops, ops.len(), &mut |_| {});
    r.map_err(|e| e.name())
}

/// The error when Ferrite's heap cannot grow to hold a domain's per-frame records. It says
/// "free memory" so that `CREATE` and `RESTORE` answer `ENOMEM`.
pub(super) fn no_records(name: &str, nr_pages: u64) -> String {
    format!(
        "{name}: no free memory for Ferrite's records of its {nr_pages} frames (about {} KiB)",
        nr_pages * 16 / 1024
    )
}

/// What a PV domain is made of, built (`domu_from`) or restored (`save`).
pub struct Parts {
    pub id: DomId,
    pub name: String,
    pub ft: FrameTable<super::grant::PvGrants>,
    pub shared_info: u64,
    pub start_info_pfn: u64,
    pub max_pages: u64,
    pub vcpu: Vec<Vcpu>,
    pub cntvoff: u64,
    pub gic_v3: bool,
    pub memory: Region,
    pub life: Life,
    pub power: PowerTable,
}

/// Makes the domain known and hands its vCPUs to the scheduler (all blocked).
pub fn assemble(p: Parts, weight: u32, cap: u32, affinity: u64) -> Result<&'static Vm, String> {
    let (id, name, vcpus) = (p.id, p.name.clone(), p.vcpu.len());
    let vm = super::install(Vm {
        id,
        name: p.name,
        kind: Kind::Pv(PvDomain {
            frames: Mutex::new(p.ft),
            shared_info: p.shared_info,
            start_info_pfn: p.start_info_pfn,
            max_pages: p.max_pages,
            hcr: vcpu::hcr_pv(),
        }),
        vcpus,
        vcpu: p.vcpu,
        cntvoff: p.cntvoff,
        gic_v3: p.gic_v3,
        memory: alloc::vec![p.memory],
        state: Mutex::new(DomainState::Running),
        running: core::sync::atomic::AtomicBool::new(true),
        power: Mutex::new(p.power),
        // PV domains take upcalls, not interrupts: an empty vGIC keeps the common code simple.
        vgic: Mutex::new(Vgic::new(vgic::Config {
            version: if p.gic_v3 {
                vgic::Version::V3
            } else {
                vgic::Version::V2
            },
            vcpus,
            spis: 0,
            mpidrs: (0..vcpus as u64).collect(),
        })),
        vuart: Mutex::new(Pl011::new()),
        dist: Region::new(0, 0),
        redist: None,
        uart: None,
        uart_spi: None,
        maintenance: None,
        life: p.life,
        last_ran: crate::mm::tlb::LastRan::new(),
    })
    .map_err(|_| format!("{name}: domain id {id} is taken"))?;
    if let Err(e) = super::sched::add_domain(vm, weight, cap, |_| affinity) {
        // It exists but will never run: it must not count as running.
        *vm.state.lock() = DomainState::Crashed(format!("the scheduler refused it: {e:?}"));
        vm.running
            .store(false, core::sync::atomic::Ordering::Release);
        return Err(format!("{name}: the scheduler refused it: {e:?}"));
    }
    Ok(vm)
}
