//! The PV MMU calls at the hypercall boundary: `MMU_UPDATE`, `MMUEXT_OP` and `MEMORY_OP`
//! hand their batch to the validator (`crate::pv`), carry out what it asks (TTBR loads, TLB
//! maintenance), and report how many entries were done. A batch is read in place, a page at a
//! time: the page is translated as the guest would read it (`AT S12E1R`) and must be the
//! domain's, checked under the frame-table lock, which stays held while the validator reads
//! the page's entries (each once, with volatile loads: the guest may be changing them). An
//! entry across a page boundary, or a misaligned array, is copied in through the checked
//! accessor instead. A long batch is preempted after [`BUDGET`] entries: the call is rewound
//! to its `hvc` with its arguments advanced (x1 past the done entries, x2 reduced, x3 the
//! running total), so the CPU takes interrupts and may run others before it continues.

use super::Vm;
use super::domu::{Phys, TCR_EPD0, TCR_EPD1};
use crate::arch::exceptions::TrapFrame;
use crate::arch::guest_mem;
use crate::mm::region::Region;
use crate::pv::{self, Effect, FrameTable, FrameType, Requests, TlbOp, Ttbr};
use core::arch::asm;
use core::marker::PhantomData;
use ferrite_abi::mmu::{MmuUpdate, MmuextOp};
use ferrite_abi::{DOMID_SELF, call, errno};

/// Entries handled per trap before the call is preempted and continued.
pub const BUDGET: usize = 1024;
const PAGE: u64 = 4096;

/// Reads guest memory of PV domain `vm` at `va` into `out`: every byte must be the domain's.
pub fn read_guest(vm: &Vm, va: u64, out: &mut [u8]) -> bool {
    let pv = vm.pv().expect("PV domain");
    guest_mem::read_with(va, out, |r| owns(pv, r))
}

fn owns(pv: &super::domu::PvDomain, r: Region) -> bool {
    let ft = pv.frames.lock();
    let first = r.start & !0xfff;
    (first..r.end()).step_by(4096).all(|p| ft.owns(p))
}

/// Writes `data` to the PV domain's memory at `va`: its own frames, never one that is a page
/// table (checked, and the copy done, under the frame table's lock).
pub fn write_guest(vm: &Vm, va: u64, data: &[u8]) -> bool {
    let pv = vm.pv().expect("PV domain");
    guest_mem::write_with(va, data, |r, copy| {
        let ft = pv.frames.lock();
        let first = r.start & !0xfff;
        let ok = (first..r.end()).step_by(4096).all(|p| {
            ft.info(p)
                .is_some_and(|i| !matches!(i.ty, FrameType::PageTable(_)))
        });
        if ok {
            copy();
        }
        ok
    })
}

/// Sets a batched call's results: x0 = `ret`, x1 = entries done in all.
fn finish(frame: &mut TrapFrame, ret: i64, done: u64) {
    frame.x[0] = ret as u64;
    frame.x[1] = done;
}

/// `MMU_UPDATE`, `MMUEXT_OP`, `MEMORY_OP`.
#[inline(never)]
pub fn batched(vm: &'static Vm, v: usize, frame: &mut TrapFrame) {
    let f = frame.x[0] as u32;
    let (va, count, before, arg) = (frame.x[1], frame.x[2], frame.x[3], frame.x[4]);
    if f != call::MEMORY_OP && arg != DOMID_SELF as u64 && arg != vm.id as u64 {
        log::warn!(
            "{}: vcpu{v}: PV MMU call on domain {arg}: only its own (DOMID_SELF)",
            vm.name
        );
        return finish(frame, errno::EPERM, before);
    }
    if count > u32::MAX as u64 {
        return finish(frame, errno::EINVAL, before);
    }
    let n = (count as usize).min(BUDGET);
    let (done, res) = match f {
        call::MMU_UPDATE => {
            let r = mmu_update(vm, va, n);
            super::stats::note_mmu_update(r.0 as u64);
            r
        }
        call::MMUEXT_OP => mmuext_op(vm, v, va, n),
        _ => {
            return super::balloon::memory_op(vm, v, frame);
        }
    };
    match res {
        Err(e) => finish(frame, e.to_ret(), before + done as u64),
        Ok(()) if (done as u64) < count => {
            // Preempted: continue from the next entry when the vCPU re-executes the hvc.
            let size = if f == call::MMU_UPDATE {
                size_of::<MmuUpdate>()
            } else {
                size_of::<MmuextOp>()
            } as u64;
            frame.x[1] = va + done as u64 * size;
            frame.x[2] = count - done as u64;
            frame.x[3] = before + done as u64;
            frame.elr -= 4;
        }
        Ok(()) => finish(frame, 0, before + done as u64),
    }
}

fn mmu_update(vm: &Vm, va: u64, n: usize) -> (usize, Result<(), pv::Errno>) {
    each_page::<MmuUpdate>(vm, va, n, |ft, batch| {
        pv::mmu_update(vm.id, ft, &mut Phys, batch, batch.len())
    })
}

fn mmuext_op(vm: &Vm, v: usize, va: u64, n: usize) -> (usize, Result<(), pv::Errno>) {
    each_page::<MmuextOp>(vm, va, n, |ft, ops| {
        pv::mmuext_op(vm.id, ft, &mut Phys, v, ops, ops.len(), &mut |e| {
            apply(vm, v, e)
        })
    })
}

/// A request type that is plain old data.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes is a valid value, and the alignment is 8.
unsafe trait Pod: Copy + Default {}
// SAFETY: two u64s.
unsafe impl Pod for MmuUpdate {}
// SAFETY: two u32s and two u64s, no padding.
unsafe impl Pod for MmuextOp {}

/// Requests at an address in Ferrite's map, read in place, each when the validator asks for
/// it, with a volatile load.
struct Src<T> {
    addr: u64,
    len: usize,
    _t: PhantomData<T>,
}

impl<T> Src<T> {
    /// # Safety
    /// `addr..addr + len * size_of::<T>()` must be 8-aligned memory in Ferrite's map that
    /// stays readable for as long as the result is used.
    unsafe fn new(addr: u64, len: usize) -> Self {
        Self {
            addr,
            len,
            _t: PhantomData,
        }
    }
}

impl<T: Pod> Requests<T> for Src<T> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn at(&self, i: usize) -> T {
        assert!(i < self.len);
        // SAFETY: entry i is inside the memory `Src::new` was given, readable while this
        // exists, 8-aligned, and any bits are a T (`Pod`). The guest may be writing its page
        // meanwhile: the value is what it held at the load.
        unsafe { core::ptr::read_volatile((self.addr as *const T).add(i)) }
    }
}

/// Runs `call` over the `n` requests of type T at guest VA `va` a page at a time, and
/// returns the requests done and the first refusal. Each call gets the page's requests in
/// place, with the frame-table lock held.
fn each_page<T: Pod>(
    vm: &Vm,
    va: u64,
    n: usize,
    mut call: impl FnMut(
        &mut FrameTable<super::grant::PvGrants>,
        &Src<T>,
    ) -> (usize, Result<(), pv::Errno>),
) -> (usize, Result<(), pv::Errno>) {
    let pv = vm.pv().expect("PV domain");
    let size = size_of::<T>() as u64;
    let mut done = 0;
    while done < n {
        let at = va.wrapping_add(done as u64 * size);
        // The requests wholly on `at`'s page.
        let room = ((PAGE - (at & (PAGE - 1))) / size) as usize;
        let (d, r) = if at.is_multiple_of(8) && room > 0 {
            let Some(pa) = guest_mem::translate_read(at) else {
                return (done, Err(pv::Errno::Fault));
            };
            let mut ft = pv.frames.lock();
            // The domain's own page, and it stays so while the lock is held.
            if !ft.owns(pa) {
                return (done, Err(pv::Errno::Fault));
            }
            // SAFETY: `room` requests from `pa` fit in its page, one of the domain's RAM
            // frames (identity-mapped), which stays the domain's while `ft` is held (giving it
            // back takes the lock); `at`, and so `pa`, is 8-aligned.
            let src = unsafe { Src::new(pa, room.min(n - done)) };
            call(&mut ft, &src)
        } else {
            let mut one = T::default();
            // SAFETY: `one` is a Pod: any bytes written into it make a valid T.
            let raw = unsafe {
                core::slice::from_raw_parts_mut((&raw mut one).cast::<u8>(), size as usize)
            };
            if !read_guest(vm, at, raw) {
                return (done, Err(pv::Errno::Fault));
            }
            // SAFETY: `one` is a T on this stack (8-aligned), alive until after the call.
            let src = unsafe { Src::<T>::new(&raw const one as u64, 1) };
            call(&mut pv.frames.lock(), &src)
        };
        done += d;
        if r.is_err() {
            return (done, r);
        }
    }
    (done, Ok(()))
}

/// Carries out what a successful `MMUEXT_OP` entry asks of the CPU, for the calling vCPU.
fn apply(vm: &Vm, v: usize, e: Effect) {
    match e {
        Effect::LoadBase(which, base) => {
            let epd = match which {
                Ttbr::Ttbr0 => TCR_EPD0,
                Ttbr::Ttbr1 => TCR_EPD1,
            };
            load_base(
                which == Ttbr::Ttbr0,
                base.map_or(0, |b| b.ttbr()),
                epd,
                base.is_some(),
            );
        }
        Effect::Tlb(op) => {
            tlb(op);
            if matches!(op, TlbOp::FlushLocal | TlbOp::PageLocal { .. }) {
                // Its entries on pCPUs it ran on before were not touched (mm::tlb).
                vm.last_ran
                    .flushed_here(crate::arch::cpu::index(), v as u16);
            }
        }
    }
}

/// Loads TTBR0 or TTBR1 of the calling vCPU with `value`, walks through that half enabled
/// (`on`) or not (TCR_EL1.EPDn).
fn load_base(ttbr0: bool, value: u64, epd: u64, on: bool) {
    // SAFETY: the calling vCPU's own translation registers, live on this CPU during its
    // hypercall, set to a base the validator accepted (a pinned level-0 table of its own) or
    // to none: nothing Ferrite or another domain uses.
    unsafe {
        let mut tcr: u64;
        asm!("mrs {}, tcr_el1", out(reg) tcr, options(nomem, nostack));
        tcr = if on { tcr & !epd } else { tcr | epd };
        if ttbr0 {
            asm!("msr ttbr0_el1, {}", in(reg) value, options(nostack));
        } else {
            asm!("msr ttbr1_el1, {}", in(reg) value, options(nostack));
        }
        asm!("msr tcr_el1, {}", "isb", in(reg) tcr, options(nostack));
    }
}

/// A TLB operation the guest asked for, on its own VMID (the one loaded).
fn tlb(op: TlbOp) {
    let page = |va: u64, asid: u16| ((asid as u64) << 48) | ((va >> 12) & 0xfff_ffff_ffff);
    // SAFETY: invalidations of the current VMID's stage-1 entries only: at worst the guest
    // loses cached translations of its own.
    unsafe {
        match op {
            TlbOp::FlushLocal => asm!("dsb ishst", "tlbi vmalle1", "dsb nsh", "isb"),
            TlbOp::FlushAll => asm!("dsb ishst", "tlbi vmalle1is", "dsb ish", "isb"),
            TlbOp::PageLocal { va, asid } => asm!(
                "dsb ishst", "tlbi vae1, {}", "dsb nsh", "isb",
                in(reg) page(va, asid)
            ),
            TlbOp::PageAll { va, asid } => asm!(
                "dsb ishst", "tlbi vae1is, {}", "dsb ish", "isb",
                in(reg) page(va, asid)
            ),
        }
    }
}
