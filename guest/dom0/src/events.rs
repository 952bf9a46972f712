//! Event channels in dom0: its shared-info page (a heap page handed to Ferrite with
//! `EVTCHN_OP SET_SHARED_INFO`), the event interrupt named in `/hypervisor`, and the 2-level
//! scan that turns pending ports into work. The interrupt handler only records which ports
//! fired; the back ends do their work in thread context ([`take`]), where printing is safe.
//! The one exception is an echo port ([`set_echo`]): its events are sent straight back from
//! the handler, which is the whole of the echo device's service.

use crate::psci::hypercall;
use alloc::alloc::{Layout, alloc_zeroed};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use ferrite_abi::evtchn as ev;
use ferrite_abi::shared_info::SharedInfo;
use ferrite_abi::{call, errno};

static SHARED: AtomicPtr<SharedInfo> = AtomicPtr::new(core::ptr::null_mut());
/// Ports that fired and no back end has taken yet (dom0 uses ports below 64 * 64).
static FIRED: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// Upcalls taken, for the report.
pub static UPCALLS: AtomicU64 = AtomicU64::new(0);
/// Echo ports: an event on one is sent back on it from the interrupt handler.
static ECHO: [AtomicU64; 64] = [const { AtomicU64::new(0) }; 64];
/// The port bound to the device bus's virtual IRQ (noted by [`op`]), 0 for none.
static BUS_PORT: AtomicU32 = AtomicU32::new(0);
/// The device bus changed since [`bus_changed`] last said so. The bus port's event still goes
/// into [`FIRED`] for the back end that bound it; this lets other back ends watch the bus too.
/// Starts true so a back end's first look walks the bus.
static BUS_CHANGED: AtomicBool = AtomicBool::new(true);

fn shared() -> Option<&'static SharedInfo> {
    // SAFETY: null or the page `init` leaked to Ferrite for good; its shared fields are atomic.
    unsafe { SHARED.load(Ordering::Acquire).as_ref() }
}

/// The event interrupt's INTID (0 until [`init`]).
static EVENT_IRQ: AtomicU32 = AtomicU32::new(0);

/// Whether `intid` is the event interrupt (its handler says itself whether it left work).
pub fn is_event_irq(intid: u32) -> bool {
    intid != 0 && intid == EVENT_IRQ.load(Ordering::Relaxed)
}

/// Gives Ferrite a shared-info page and takes the event interrupt on this (the boot) vCPU.
pub fn init(irq: crate::dt::Irq) -> Result<(), &'static str> {
    // dom0's heap is identity-mapped: the VA is the guest-physical address Ferrite wants.
    let layout = Layout::from_size_align(4096, 4096).map_err(|_| "layout")?;
    // SAFETY: a non-zero-sized layout; the page is never freed (Ferrite writes it for good).
    let page = unsafe { alloc_zeroed(layout) };
    if page.is_null() {
        return Err("no memory for the shared-info page");
    }
    let r = hypercall(call::EVTCHN_OP, ev::SET_SHARED_INFO, page as u64, 0);
    if r < 0 {
        return Err(errno::Errno::from_ret(r).map_or("SET_SHARED_INFO failed", |e| e.name()));
    }
    SHARED.store(page.cast(), Ordering::Release);
    EVENT_IRQ.store(irq.intid, Ordering::Relaxed);
    crate::gic::enable(irq, on_event)?;
    // Ferrite raises it again for events that arrive while the handler runs (when
    // `upcall_pending`, which the handler clears first, goes from 0 to 1).
    crate::gic::end_first(irq.intid);
    println!(
        "dom0: events: shared-info page at {:#x}, event interrupt {}",
        page as u64, irq.intid
    );
    Ok(())
}

/// The event interrupt: clear the upcall, take the selector, move every pending unmasked port
/// of this vCPU into [`FIRED`].
fn on_event(_intid: u32) {
    let Some(si) = shared() else { return };
    let v = crate::cpu::index().min(si.vcpu_info.len() - 1);
    let vi = &si.vcpu_info[v];
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    vi.upcall_pending.store(0, Ordering::SeqCst);
    // EVTCHN comes with every event (the ports below say what it was for).
    if vi.virq_pending.swap(0, Ordering::AcqRel) & !ferrite_abi::shared_info::virq::EVTCHN != 0 {
        crate::gic::note_work();
    }
    let mut sel = vi.evtchn_pending_sel.swap(0, Ordering::SeqCst);
    while sel != 0 {
        let w = sel.trailing_zeros() as usize;
        sel &= sel - 1;
        let bits =
            si.evtchn_pending[w].load(Ordering::SeqCst) & !si.evtchn_mask[w].load(Ordering::SeqCst);
        si.evtchn_pending[w].fetch_and(!bits, Ordering::SeqCst);
        let echo = bits & ECHO[w].load(Ordering::Acquire);
        let mut e = echo;
        while e != 0 {
            let port = (w * 64) as u64 + e.trailing_zeros() as u64;
            e &= e - 1;
            hypercall(call::EVTCHN_OP, ev::SEND, port, 0);
        }
        let rest = bits & !echo;
        if rest != 0 {
            let (bw, bbit) = ev::word_bit(BUS_PORT.load(Ordering::Relaxed));
            if bw == w && rest & bbit != 0 {
                BUS_CHANGED.store(true, Ordering::Release);
            }
            FIRED[w].fetch_or(rest, Ordering::AcqRel);
            crate::gic::note_work();
        }
    }
}

/// Makes `port` an echo port (`on`) or an ordinary one again.
pub fn set_echo(port: u32, on: bool) {
    let (w, bit) = ev::word_bit(port);
    if let Some(e) = ECHO.get(w) {
        if on {
            e.fetch_or(bit, Ordering::AcqRel);
        } else {
            e.fetch_and(!bit, Ordering::AcqRel);
        }
    }
}

/// Takes (clears) whether the device bus changed (its virtual IRQ fired) since the last call;
/// true on the first call.
pub fn bus_changed() -> bool {
    BUS_CHANGED.load(Ordering::Relaxed) && BUS_CHANGED.swap(false, Ordering::AcqRel)
}

/// Takes (clears) whether `port` fired.
pub fn take(port: u32) -> bool {
    let (w, bit) = ev::word_bit(port);
    FIRED
        .get(w)
        .is_some_and(|f| f.fetch_and(!bit, Ordering::AcqRel) & bit != 0)
}

pub fn ready() -> bool {
    shared().is_some()
}

/// `EVTCHN_OP` with two arguments; `Err` carries the errno.
pub fn op(cmd: u64, a: u64, b: u64) -> Result<u64, errno::Errno> {
    let r = errno::result(hypercall(call::EVTCHN_OP, cmd, a, b) as u64);
    if let (ev::BIND_VIRQ, Ok(p)) = (cmd, r)
        && a == ev::virq::DEVBUS as u64
    {
        BUS_PORT.store(p as u32, Ordering::Relaxed);
    }
    r
}
