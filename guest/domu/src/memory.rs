//! `balloon` and `psci`: the memory reservation going up and down, and the PSCI calls a PV
//! domU may and may not make.

use ferrite_abi::psci;
use ferrite_pv::hypercall;

/// `balloon`: 8 frames up, back down, then up past the maximum (refused part-way).
pub fn balloon() {
    let (Ok(before), Ok(max)) = (
        hypercall::current_reservation(),
        hypercall::maximum_reservation(),
    ) else {
        out!("balloon: FAIL: the reservation cannot be read");
        return;
    };
    let mut got = [0u64; 8];
    let up = hypercall::increase_reservation(&mut got);
    let after_up = hypercall::current_reservation().unwrap_or(0);
    let fresh = got.iter().all(|&ma| ma != 0 && ma & 0xfff == 0);
    let down = hypercall::decrease_reservation(&got);
    let after_down = hypercall::current_reservation().unwrap_or(0);
    if up.result.is_err() || up.done != 8 || !fresh || after_up != before + 8 {
        out!(
            "balloon: FAIL: up {:?} ({} done), {before} -> {after_up} frames",
            up.result,
            up.done
        );
        return;
    }
    if down.result.is_err() || down.done != 8 || after_down != before {
        out!(
            "balloon: FAIL: down {:?} ({} done), now {after_down} frames",
            down.result,
            down.done
        );
        return;
    }
    // Past the maximum: the frames up to it are given (and valid), then ENOMEM.
    let room = (max - before) as usize;
    let mut many = [0u64; 64];
    let want = (room + 4).min(many.len());
    let over = hypercall::increase_reservation(&mut many[..want]);
    let refused = over.result.map_err(|e| e.name());
    let _ = hypercall::decrease_reservation(&many[..over.done]);
    out!(
        "balloon: {before} frames, up 8 to {after_up}, down to {after_down}; {want} past a maximum of \
         {max}: {} given, then {:?}",
        over.done,
        refused
    );
}

/// `psci`: CPU_ON is refused to a PV domU (`VCPU_OP UP` starts vCPUs safely), and SYSTEM_OFF
/// stops this domain only.
pub fn psci() {
    // SAFETY: a refused call changes nothing; were it allowed, vCPU 1 would start at our entry
    // with the MMU off, which is what the check is about.
    let (on, _) = unsafe { hypercall::raw(psci::CPU_ON_64 as u64, 1, 0x8_0000, 0, 0, 0) };
    out!("psci: CPU_ON answered {}", on as i64);
    // SAFETY: ends this domain if Ferrite does what it should.
    unsafe { hypercall::raw(psci::SYSTEM_OFF as u64, 0, 0, 0, 0, 0) };
    out!("psci: FAIL: SYSTEM_OFF returned");
}
