//! Event channels on the machine: `EVTCHN_OP` for every domain, and delivering events into a
//! domain's shared-info page and upcall. The port tables and the bit protocol are portable
//! ([`crate::evtchn`]); this module holds them behind one lock (taken only with interrupts
//! masked: in hypercalls and interrupt handlers at EL2) and raises upcalls: a PV domU's virtual
//! IRQ line, dom0's event PPI through its vGIC.

use super::{Vm, build::EVENT_PPI, domain, sched};
use crate::arch::exceptions::TrapFrame;
use crate::domain::DomId;
use crate::evtchn::{self, Channels, Target};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use ferrite_abi::evtchn::{self as abi, DOMU_PORT_LIMIT, NR_PORTS, virq};
use ferrite_abi::shared_info::SharedInfo;
use ferrite_abi::{DOMID_SELF, Errno};
use spin::Mutex;

static CHANNELS: Mutex<Channels> = Mutex::new(Channels::new());
/// dom0's shared-info page (guest-physical == machine), 0 until `SET_SHARED_INFO`.
static DOM0_SHARED_INFO: AtomicU64 = AtomicU64::new(0);
/// Per domain: a bit per virtual IRQ that has a port bound, so raising an unbound one (every
/// timer expiry of a domain without event channels) takes no lock.
static VIRQ_BOUND: [AtomicU32; super::MAX_DOMAINS] =
    [const { AtomicU32::new(0) }; super::MAX_DOMAINS];

/// The shared-info page of `vm`, if it has one.
pub fn shared_info(vm: &Vm) -> Option<&'static SharedInfo> {
    let pa = match vm.pv() {
        Some(pv) => pv.shared_info,
        None => DOM0_SHARED_INFO.load(Ordering::Acquire),
    };
    // SAFETY: a PV domain's page is one of its frames Ferrite holds writable for its life;
    // dom0's was checked to be a page of dom0's RAM (1:1), which dom0 keeps for good. Both are
    // identity-mapped at EL2, and every field both sides write is atomic.
    (pa != 0).then(|| unsafe { &*(pa as *const SharedInfo) })
}

fn limit(vm: &Vm) -> u32 {
    if vm.is_pv() {
        DOMU_PORT_LIMIT
    } else {
        NR_PORTS - 1
    }
}

/// Gives domain `vm`'s id a table if it has none (dom0's is made on first use).
fn ensure(c: &mut Channels, vm: &Vm) {
    if !c.has_domain(vm.id) {
        let _ = c.add_domain(vm.id, vm.vcpus, limit(vm));
    }
}

/// A new PV domU `id` gets a fresh table and its console port, unbound for dom0. Returns it.
pub fn new_domu(id: DomId, vcpus: usize) -> Result<u32, Errno> {
    let mut c = CHANNELS.lock();
    c.remove_domain(id);
    VIRQ_BOUND[id as usize].store(0, Ordering::Relaxed);
    c.add_domain(id, vcpus, DOMU_PORT_LIMIT)?;
    if let Some(dom0) = domain(0) {
        ensure(&mut c, dom0);
    } else {
        let _ = c.add_domain(0, 1, NR_PORTS - 1);
    }
    let p = c.alloc_unbound(id, 0)?;
    CONSOLE_PORT[id as usize].store(p, Ordering::Release);
    Ok(p)
}

/// Per domU: its console port (from the builder), 0 for none.
static CONSOLE_PORT: [AtomicU32; super::MAX_DOMAINS] =
    [const { AtomicU32::new(0) }; super::MAX_DOMAINS];

/// The console port the builder made for domU `id`.
pub fn console_port(id: DomId) -> Option<u32> {
    let p = CONSOLE_PORT[id as usize].load(Ordering::Acquire);
    (p != 0).then_some(p)
}

/// Closes every port of domain `id` (a failed build, a destroyed domain).
pub fn remove_domain(id: DomId) {
    CHANNELS.lock().remove_domain(id);
    VIRQ_BOUND[id as usize].store(0, Ordering::Relaxed);
    CONSOLE_PORT[id as usize].store(0, Ordering::Relaxed);
}

/// Makes `t` pending and raises its vCPU's upcall when the protocol says so.
pub fn deliver(t: Target) {
    let Some(vm) = domain(t.dom) else { return };
    let Some(si) = shared_info(vm) else { return };
    if t.vcpu < vm.vcpus && evtchn::set_pending(si, t.port, t.vcpu) {
        upcall(vm, si, t.vcpu);
    }
}

fn upcall(vm: &'static Vm, si: &SharedInfo, v: usize) {
    let was = si.vcpu_info[v].upcall_pending.swap(1, Ordering::SeqCst);
    if vm.is_pv() {
        sched::notify(vm, v);
    } else if was == 0 {
        // dom0 takes its events as a PPI; a new one only once it has cleared upcall_pending.
        let k = vm.vgic.lock().inject(EVENT_PPI, Some(v));
        super::kick(vm, k);
    }
}

/// Ferrite raised virtual IRQ `v` for vCPU `vcpu` of `vm`: its bound port, if any, fires.
pub fn raise_virq(vm: &'static Vm, v: u32, vcpu: usize) {
    if VIRQ_BOUND[vm.id as usize].load(Ordering::Acquire) & (1 << v) == 0 {
        return;
    }
    let t = CHANNELS.lock().virq_target(vm.id, v, vcpu);
    if let Some(t) = t {
        deliver(t);
    }
}

/// The domain a call names: DOMID_SELF or its own id, or (dom0 only) any existing domain.
fn named(vm: &Vm, arg: u64) -> Result<&'static Vm, Errno> {
    let me = domain(vm.id).ok_or(Errno::NoEnt)?;
    if arg == DOMID_SELF as u64 || arg == vm.id as u64 {
        return Ok(me);
    }
    if vm.is_pv() {
        return Err(Errno::Perm);
    }
    domain(u16::try_from(arg).map_err(|_| Errno::Inval)?).ok_or(Errno::NoEnt)
}

/// Any existing domain (the remote end of a channel).
fn remote(vm: &Vm, arg: u64) -> Result<&'static Vm, Errno> {
    if arg == DOMID_SELF as u64 {
        return domain(vm.id).ok_or(Errno::NoEnt);
    }
    domain(u16::try_from(arg).map_err(|_| Errno::Inval)?).ok_or(Errno::NoEnt)
}

fn port(arg: u64) -> Result<u32, Errno> {
    u32::try_from(arg)
        .ok()
        .filter(|&p| p < NR_PORTS)
        .ok_or(Errno::Inval)
}

/// `EVTCHN_OP`.
#[inline(never)]
pub fn evtchn_op(vm: &'static Vm, v: usize, frame: &mut TrapFrame) -> i64 {
    let (cmd, a, b) = (frame.x[1], frame.x[2], frame.x[3]);
    let r = op(vm, cmd, a, b, frame);
    match r {
        Ok(x) => x as i64,
        Err(e) => {
            log::debug!(
                "{}: vcpu{v}: EVTCHN_OP {cmd} ({a:#x}, {b:#x}): {}",
                vm.name,
                e.name()
            );
            e.to_ret()
        }
    }
}

fn op(vm: &'static Vm, cmd: u64, a: u64, b: u64, frame: &mut TrapFrame) -> Result<u64, Errno> {
    if cmd == abi::SET_SHARED_INFO {
        return set_shared_info(vm, a);
    }
    // A dom0 without a shared-info page (Linux, whose user-space backends call through the
    // control page and poll) may bind interdomain channels, send, close and ask: it can notify
    // a frontend, though it never receives. Everything else needs the page.
    let si = shared_info(vm);
    let senders_ops = matches!(
        cmd,
        abi::BIND_INTERDOMAIN | abi::SEND | abi::CLOSE | abi::STATUS
    );
    if si.is_none() && (vm.is_pv() || !senders_ops) {
        return Err(Errno::NoEnt);
    }
    let page = || si.ok_or(Errno::NoEnt);
    let mut c = CHANNELS.lock();
    ensure(&mut c, vm);
    let me = vm.id;
    match cmd {
        abi::ALLOC_UNBOUND => {
            let r = remote(vm, a)?;
            let owner = named(vm, b)?;
            ensure(&mut c, r);
            ensure(&mut c, owner);
            let p = c.alloc_unbound(owner.id, r.id)?;
            if let Some(osi) = shared_info(owner) {
                evtchn::clear_pending(osi, p);
            }
            Ok(p as u64)
        }
        abi::BIND_INTERDOMAIN => {
            let r = remote(vm, a)?;
            ensure(&mut c, r);
            let p = c.bind_interdomain(me, r.id, port(b)?)?;
            if let Some(si) = si {
                evtchn::clear_pending(si, p);
            }
            Ok(p as u64)
        }
        abi::BIND_VIRQ => {
            let si = page()?;
            let which = u32::try_from(a).map_err(|_| Errno::Inval)?;
            let p = c.bind_virq(me, which, b)?;
            evtchn::clear_pending(si, p);
            VIRQ_BOUND[me as usize].fetch_or(1 << which, Ordering::AcqRel);
            Ok(p as u64)
        }
        abi::BIND_IPI => {
            let si = page()?;
            let p = c.bind_ipi(me, a)?;
            evtchn::clear_pending(si, p);
            Ok(p as u64)
        }
        abi::SEND => {
            let t = c.send(me, port(a)?)?;
            drop(c);
            if let Some(t) = t {
                deliver(t);
            }
            Ok(0)
        }
        abi::CLOSE => {
            c.close(me, port(a)?)?;
            Ok(0)
        }
        abi::STATUS => {
            let d = named(vm, b)?;
            ensure(&mut c, d);
            let s = c.status(d.id, port(a)?)?;
            frame.x[1] = s.a;
            frame.x[2] = s.b;
            frame.x[3] = s.vcpu;
            Ok(s.kind)
        }
        abi::UNMASK => {
            let si = page()?;
            let t = c.target(me, port(a)?)?;
            drop(c);
            if evtchn::unmask(si, t.port, t.vcpu) {
                upcall(vm, si, t.vcpu);
            }
            Ok(0)
        }
        abi::BIND_VCPU => {
            c.bind_vcpu(me, port(a)?, b)?;
            Ok(0)
        }
        _ => Err(Errno::NoSys),
    }
}

/// `SET_SHARED_INFO` (dom0): a page of dom0's RAM becomes its shared-info page, zeroed.
fn set_shared_info(vm: &Vm, ipa: u64) -> Result<u64, Errno> {
    if vm.is_pv() {
        return Err(Errno::Exist);
    }
    if !ipa.is_multiple_of(4096) {
        return Err(Errno::Inval);
    }
    let page = crate::mm::region::Region::new(ipa, 4096);
    if !vm.memory.iter().any(|r| r.contains_region(&page)) {
        log::warn!("{}: SET_SHARED_INFO {ipa:#x}: not its RAM", vm.name);
        return Err(Errno::Fault);
    }
    if DOM0_SHARED_INFO
        .compare_exchange(0, ipa, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(Errno::Exist);
    }
    // SAFETY: a page of dom0's RAM (checked), identity-mapped at EL2; dom0 handed it over.
    unsafe { core::ptr::write_bytes(ipa as *mut u8, 0, 4096) };
    log::info!(
        "{}: shared-info page at {ipa:#x}: event channels on",
        vm.name
    );
    Ok(0)
}

/// The timer virtual IRQ of a PV vCPU also fires its bound port (called with the TIMER bit).
pub fn on_virq_bits(vm: &'static Vm, vcpu: usize, bits: u32) {
    if bits & ferrite_abi::shared_info::virq::TIMER != 0 {
        raise_virq(vm, virq::TIMER, vcpu);
    }
}

/// A domU wrote to Ferrite's console: dom0's `VIRQ_CONSOLE`, if it bound one.
pub fn console_written() {
    if let Some(dom0) = domain(0) {
        raise_virq(dom0, virq::CONSOLE, 0);
    }
}
