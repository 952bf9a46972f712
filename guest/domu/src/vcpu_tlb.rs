//! `vcpu-tlb <turns>`: are a vCPU's TLB entries its own? Two vCPUs of this domain take turns
//! on one pCPU (boot it with `vcpus=2,cpus=0`), each with a TTBR0 tree of its own that maps
//! [`VA`] to a page of its own holding its mark, under the same ASID, as two CPUs may. Each
//! reads VA and yields to the other, `turns` times. The vCPUs share the domain's VMID, so a TLB
//! entry one of them left on the pCPU would show the other its mark, unless Ferrite invalidates
//! when it loads a vCPU where another vCPU of the domain ran last (`src/mm/tlb.rs`). Prints
//! `vcpu-tlb: <t> turns each, <a> alternations, <s> stale reads`.

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use ferrite_abi::desc::{self, AP_RO, NG, NORMAL, PXN, UXN};
use ferrite_pv::mm::MmError;
use ferrite_pv::{hypercall, smp, time};

/// Where both trees map their page (level-0 index 0; nothing else of ours is in the lower half).
const VA: u64 = 0x40_0000_0000;
/// The ASID both vCPUs use for their tree.
const ASID: u64 = 1;
const MARK: [u64; 2] = [0xaaaa_0000_0000_00a0, 0xbbbb_0000_0000_00b1];
/// Pages of vCPU 1's stack.
const STACK_PAGES: u64 = 4;

static ROOT: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static TURNS: AtomicU64 = AtomicU64::new(0);
static DONE: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static STALE: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
static READY: AtomicBool = AtomicBool::new(false);
static FINISHED: AtomicBool = AtomicBool::new(false);
static FAILED: AtomicBool = AtomicBool::new(false);

pub fn run(turns: u64) {
    let turns = turns.max(1);
    TURNS.store(turns, Ordering::Relaxed);
    for (v, root) in ROOT.iter().enumerate() {
        match tree(MARK[v]) {
            Ok(r) => root.store(r, Ordering::Relaxed),
            Err(e) => return out!("vcpu-tlb: FAIL: vcpu{v}'s tree: {e}"),
        }
    }
    if let Err(e) = use_tree(0) {
        return out!("vcpu-tlb: FAIL: vcpu0's NEW_TTBR0: {e}");
    }
    let top = {
        let mut mm = crate::mm();
        match mm.alloc.alloc_contiguous(STACK_PAGES) {
            Some(pfn) => mm.frames.va(pfn + STACK_PAGES),
            None => return out!("vcpu-tlb: FAIL: no free frames for vcpu1's stack"),
        }
    };
    // SAFETY: the stack is fresh free frames, mapped writable in the initial map, used by
    // nothing else for the domain's life.
    if let Err(e) = unsafe { smp::start_vcpu(1, top, second) } {
        return out!("vcpu-tlb: FAIL: VCPU_OP UP vcpu1: {e} (boot with vcpus=2)");
    }
    let end = time::now() + time::us_to_ticks(10_000_000);
    while !READY.load(Ordering::Acquire) && !FAILED.load(Ordering::Acquire) {
        if time::now() > end {
            return out!("vcpu-tlb: FAIL: vcpu1 did not start");
        }
        let _ = hypercall::sched_yield();
    }
    if FAILED.load(Ordering::Acquire) {
        return out!("vcpu-tlb: FAIL: vcpu1 could not load its tree");
    }
    // An alternation: vCPU 1 took a turn between two of ours.
    let mut alternations = 0;
    let mut seen = DONE[1].load(Ordering::Acquire);
    for _ in 0..turns {
        take_turn(0);
        let now = DONE[1].load(Ordering::Acquire);
        if now != seen {
            alternations += 1;
            seen = now;
        }
    }
    while !FINISHED.load(Ordering::Acquire) {
        if time::now() > end {
            return out!("vcpu-tlb: FAIL: vcpu1 did not finish its turns");
        }
        let _ = hypercall::sched_yield();
    }
    let _ = hypercall::vcpu_down(1);
    let stale = STALE[0].load(Ordering::Relaxed) + STALE[1].load(Ordering::Relaxed);
    out!("vcpu-tlb: {turns} turns each, {alternations} alternations, {stale} stale reads");
}

/// vCPU 1: its own tree, then its turns.
fn second(_v: usize) -> ! {
    match use_tree(1) {
        Ok(()) => {
            READY.store(true, Ordering::Release);
            for _ in 0..TURNS.load(Ordering::Relaxed) {
                take_turn(1);
            }
            FINISHED.store(true, Ordering::Release);
        }
        Err(_) => FAILED.store(true, Ordering::Release),
    }
    loop {
        let _ = hypercall::sched_yield();
    }
}

/// Reads VA as vCPU `v`, counts a mark that is not its own, and lets the other vCPU run.
fn take_turn(v: usize) {
    // SAFETY: VA maps vCPU v's mark page, read-only, for as long as the domain runs.
    let got = unsafe { core::ptr::read_volatile(VA as *const u64) };
    if got != MARK[v] {
        STALE[v].fetch_add(1, Ordering::Relaxed);
    }
    DONE[v].fetch_add(1, Ordering::Release);
    let _ = hypercall::sched_yield();
}

/// Makes vCPU `v`'s tree the calling vCPU's TTBR0, with [`ASID`].
fn use_tree(v: usize) -> Result<(), MmError> {
    // SAFETY: nothing of ours lives in the lower half but this tree's page.
    unsafe { crate::mm().new_ttbr0(ROOT[v].load(Ordering::Relaxed), ASID) }
}

/// A pinned lower-half tree mapping [`VA`] read-only to a fresh page holding `mark`: its root.
fn tree(mark: u64) -> Result<u64, MmError> {
    let mut mm = crate::mm();
    let (data_pfn, data) = mm.alloc_zeroed()?;
    // SAFETY: a frame just allocated, mapped writable in the initial map, used by nothing else.
    unsafe { core::ptr::write_volatile(mm.frames.va(data_pfn) as *mut u64, mark) };
    let (_, root) = mm.new_table()?;
    mm.flush()?;
    mm.pin(0, root)?;
    // SAFETY: the tree is no vCPU's TTBR0 yet.
    unsafe { mm.map(root, VA, desc::page(data, NORMAL | NG | AP_RO | UXN | PXN))? };
    mm.flush()?;
    Ok(root)
}
