//! Benchmarks, for Ferrite's bench harness (which times the domain from outside; the extra
//! `per call` line is the guest's own view through the virtual counter).
//!
//! - `bench-null <iters>`: iters × `VERSION`, the cheapest call: the hypercall round trip.
//! - `bench-mmu <batch> <rounds>`: a pinned standalone L3 table, then rounds × one
//!   `MMU_UPDATE` of `batch` entries writing read-only page descriptors of the domain's own
//!   free frames, alternating between two precomputed batches so every write changes the
//!   entry (and its references).
//! - `evt-ping <n>`: publishes an echo device ([`ferrite_abi::devbus::kind::ECHO`]), then `n`
//!   times sends an empty event to dom0 and waits for dom0's echo, with IRQs masked (the
//!   pending bit is polled, `SCHED_OP BLOCK` sleeps until the upcall): prints
//!   `evt-ping: round trip min <a> ns, median <b> ns over <n>` (virtual counter; under
//!   `-icount shift=0` on one CPU, every instruction of every domain and Ferrite in between).

use ferrite_abi::desc::{self, AP_RO, NORMAL, UXN};
use ferrite_abi::mmu::MmuUpdate;
use ferrite_pv::hypercall::{self, DOMID_SELF};
use ferrite_pv::mm::MmError;
use ferrite_pv::sync::SpinLock;
use ferrite_pv::{cpu, events, time};

/// Round trips timed at most (more are run, the first this many kept).
const MAX_PINGS: usize = 1000;
static PINGS: SpinLock<[u64; MAX_PINGS]> = SpinLock::new([0; MAX_PINGS]);

/// The largest batch (entries past 512 wrap around the table). Larger ones are clamped.
pub const MAX_BATCH: usize = 2048;
/// Distinct frames the descriptors point at.
const TARGETS: usize = 16;

static BATCHES: SpinLock<[[MmuUpdate; MAX_BATCH]; 2]> =
    SpinLock::new([[MmuUpdate { ptr: 0, val: 0 }; MAX_BATCH]; 2]);

fn per_call(name: &str, calls: u64, ticks: u64) {
    let ns = (ticks as u128 * 1_000_000_000 / time::hz() as u128) / calls.max(1) as u128;
    out!("{name}: {ns} ns per call ({ticks} counter ticks in all)");
}

pub fn null(iters: u64) {
    let t0 = time::now();
    for _ in 0..iters {
        core::hint::black_box(hypercall::version());
    }
    let ticks = time::now() - t0;
    out!("bench-null: {iters} calls");
    per_call("bench-null", iters, ticks);
}

pub fn mmu(batch: u64, rounds: u64) {
    let batch = batch.clamp(1, MAX_BATCH as u64) as usize;
    match mmu_inner(batch, rounds) {
        Ok(ticks) => {
            out!("bench-mmu: batch={batch} rounds={rounds} ok");
            per_call("bench-mmu", rounds, ticks);
        }
        Err((step, e)) => out!("bench-mmu: FAIL at {step}: {e}"),
    }
}

type Failed = (&'static str, MmError);

fn mmu_inner(batch: usize, rounds: u64) -> Result<u64, Failed> {
    let mut mm = crate::mm();
    let (tpfn, l3) = mm.new_table().map_err(|e| ("making the L3 table", e))?;
    mm.flush().map_err(|e| ("sealing the L3 table", e))?;
    mm.pin(3, l3).map_err(|e| ("PIN_L3_TABLE", e))?;
    let mut targets = [0u64; TARGETS];
    let mut pfns = [0u64; TARGETS];
    let k = (mm.alloc.remaining().saturating_sub(4) as usize).clamp(0, TARGETS);
    if k < 2 {
        return Err(("allocating target frames", MmError::OutOfFrames));
    }
    for i in 0..k {
        let (pfn, ma) = mm
            .alloc_frame()
            .map_err(|e| ("allocating target frames", e))?;
        (pfns[i], targets[i]) = (pfn, ma);
    }
    let mut bufs = BATCHES.lock();
    for (parity, buf) in bufs.iter_mut().enumerate() {
        for (i, u) in buf.iter_mut().enumerate().take(batch) {
            // Entry i and entry i + 512 (the same slot) differ, and so do the two batches.
            let target = targets[(i + parity + i / desc::ENTRIES) % k];
            let pte = l3 + (i % desc::ENTRIES) as u64 * 8;
            *u = MmuUpdate::normal(pte, desc::page(target, NORMAL | AP_RO | UXN));
        }
    }
    let t0 = time::now();
    for r in 0..rounds {
        let reqs = &bufs[(r & 1) as usize][..batch];
        // SAFETY: the L3 table is linked nowhere: its entries translate nothing.
        let res = unsafe { hypercall::mmu_update(reqs, DOMID_SELF) };
        if let Err(errno) = res.result {
            let req = reqs[res.done.min(batch - 1)];
            return Err((
                "MMU_UPDATE",
                MmError::Update {
                    errno,
                    index: res.done,
                    req,
                },
            ));
        }
        if res.done != batch {
            // Success must report every entry, however many traps the call took.
            return Err((
                "MMU_UPDATE's count of entries done",
                MmError::Update {
                    errno: ferrite_abi::Errno::Inval,
                    index: res.done,
                    req: reqs[0],
                },
            ));
        }
    }
    let ticks = time::now() - t0;
    drop(bufs);
    mm.unpin(l3).map_err(|e| ("UNPIN_TABLE", e))?;
    // SAFETY: our own frame, an ordinary one again after the unpin.
    unsafe { mm.set_initial_writable(tpfn, true) }.map_err(|e| ("unsealing", e))?;
    mm.flush().map_err(|e| ("unsealing", e))?;
    mm.free_frame(tpfn);
    for &pfn in pfns.iter().take(k) {
        mm.free_frame(pfn);
    }
    Ok(ticks)
}

pub fn evt_ping(n: u64) {
    let key = ferrite_abi::devbus::key(ferrite_abi::devbus::kind::ECHO, 0);
    let port = match crate::front::handshake(key, 0, 0, 0) {
        Ok((port, _, _)) => port,
        Err(e) => {
            out!("evt-ping: no echo device: {e}");
            return;
        }
    };
    let Some(vi) = events::vcpu_info(0) else {
        out!("evt-ping: no shared-info page");
        return;
    };
    let n = n.clamp(1, MAX_PINGS as u64) as usize;
    let mut pings = PINGS.lock();
    let was_masked = cpu::irqs_masked();
    cpu::irq_mask();
    // One timer for the whole run: a lost echo ends the wait instead of hanging it.
    let end = time::now() + time::us_to_ticks(5_000_000);
    let _ = hypercall::set_timer(end);
    crate::front::take_pending(port);
    let mut got = 0;
    'pings: for slot in pings.iter_mut().take(n) {
        let t0 = time::now();
        if hypercall::evtchn_send(port).is_err() {
            break;
        }
        loop {
            // Cleared before the check, so an echo after it keeps BLOCK from sleeping.
            vi.upcall_pending
                .store(0, core::sync::atomic::Ordering::SeqCst);
            if crate::front::take_pending(port) {
                break;
            }
            if time::now() >= end {
                break 'pings;
            }
            // WFI blocks like `BLOCK`, but under `vwfi=native` it waits without a trap.
            cpu::wfi();
        }
        *slot = time::now() - t0;
        got += 1;
    }
    let _ = hypercall::set_timer(0);
    if !was_masked {
        cpu::irq_unmask();
    }
    crate::front::close(key);
    if got < n {
        out!("evt-ping: FAILED: {got} of {n} echoes within 5 s");
        return;
    }
    let t = &mut pings[..n];
    t.sort_unstable();
    let ns = |ticks: u64| (ticks as u128 * 1_000_000_000 / time::hz().max(1) as u128) as u64;
    out!(
        "evt-ping: round trip min {} ns, median {} ns over {n}",
        ns(t[0]),
        ns(t[n / 2])
    );
}
