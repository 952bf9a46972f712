//! `MEMORY_OP`: a PV domain's reservation grows (Ferrite gives it zeroed frames from the
//! machine's free memory) and shrinks (it gives back frames it no longer uses), within the
//! maximum set when it was built.

use super::Vm;
use super::domu::Phys;
use super::pvmm::write_guest;
use crate::arch::exceptions::TrapFrame;
use ferrite_abi::{call, errno};

/// At most this many frames per trap; the rest continue as for the other batched calls.
const BUDGET: u64 = 256;

pub fn memory_op(vm: &'static Vm, v: usize, frame: &mut TrapFrame) {
    let (va, count, before, cmd) = (frame.x[1], frame.x[2], frame.x[3], frame.x[4]);
    let pv = vm.pv().expect("PV domain");
    let set = |frame: &mut TrapFrame, ret: i64, done: u64| {
        frame.x[0] = ret as u64;
        frame.x[1] = done;
    };
    match cmd {
        call::memory::CURRENT_RESERVATION | call::memory::MAXIMUM_RESERVATION => {
            if va != 0 || count != 0 {
                return set(frame, errno::EINVAL, 0);
            }
            let n = if cmd == call::memory::CURRENT_RESERVATION {
                pv.frames.lock().nr_frames() as u64
            } else {
                pv.max_pages
            };
            set(frame, n as i64, 0)
        }
        call::memory::INCREASE_RESERVATION | call::memory::DECREASE_RESERVATION => {
            let n = count.min(BUDGET);
            let mut done = 0;
            while done < n {
                let slot = va.wrapping_add(done * 8);
                let r = if cmd == call::memory::INCREASE_RESERVATION {
                    give_one(vm, slot)
                } else {
                    take_one(vm, v, slot)
                };
                if let Err(e) = r {
                    return set(frame, e, before + done);
                }
                done += 1;
            }
            if done < count {
                frame.x[1] = va + done * 8;
                frame.x[2] = count - done;
                frame.x[3] = before + done;
                frame.elr -= 4;
            } else {
                set(frame, 0, before + done);
            }
        }
        _ => set(frame, errno::ENOSYS, before),
    }
}

/// One more frame for the domain, its machine address written at guest VA `slot`.
fn give_one(vm: &Vm, slot: u64) -> Result<(), i64> {
    let pv = vm.pv().expect("PV domain");
    // Where the answer goes must be writable before a frame is given.
    if !write_guest(vm, slot, &0u64.to_le_bytes()) {
        return Err(errno::EFAULT);
    }
    if pv.frames.lock().nr_frames() as u64 >= pv.max_pages {
        return Err(errno::ENOMEM);
    }
    let pa = crate::boot::alloc_frames(1).ok_or(errno::ENOMEM)?;
    // SAFETY: a free frame just taken from the allocator, RAM in Ferrite's identity map.
    unsafe { crate::arch::cpu::zero_ram(pa, 4096) };
    if pv.frames.lock().add_frame(pa).is_err() {
        crate::boot::free_frames(pa, 1);
        return Err(errno::ENOMEM);
    }
    if !write_guest(vm, slot, &pa.to_le_bytes()) {
        let _ = pv.frames.lock().release_frame(pa, &mut Phys);
        crate::boot::free_frames(pa, 1);
        return Err(errno::EFAULT);
    }
    Ok(())
}

/// The domain gives back the frame whose machine address is at guest VA `slot`.
fn take_one(vm: &Vm, v: usize, slot: u64) -> Result<(), i64> {
    let pv = vm.pv().expect("PV domain");
    let mut b = [0u8; 8];
    if !crate::arch::guest_mem::read_with(slot, &mut b, |r| {
        let ft = pv.frames.lock();
        ft.owns(r.start & !0xfff)
    }) {
        return Err(errno::EFAULT);
    }
    let pa = u64::from_le_bytes(b);
    if pa & 0xfff != 0 {
        return Err(errno::EINVAL);
    }
    if pa == pv.shared_info {
        log::warn!(
            "{}: vcpu{v}: DECREASE_RESERVATION of the shared-info page refused",
            vm.name
        );
        return Err(errno::EBUSY);
    }
    pv.frames
        .lock()
        .release_frame(pa, &mut Phys)
        .map_err(|e| e.to_ret())?;
    // SAFETY: the frame left the domain (no mapping of it remains, TLBs flushed by the
    // validator); scrub it before anyone else gets it.
    unsafe { crate::arch::cpu::zero_ram(pa, 4096) };
    crate::boot::free_frames(pa, 1);
    Ok(())
}
