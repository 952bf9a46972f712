//! Event channels as portable policy: every domain's port table, the operations of `EVTCHN_OP`
//! on them, and the 2-level pending/mask/selector bits in a shared-info page
//! (`ferrite_abi::evtchn` is the guest's view, docs/abi.md the contract).
//!
//! [`Channels`] holds the tables of all domains, so operations that touch two domains
//! (binding, closing, sending) see both consistently; the machine side keeps it behind one
//! lock. Operations that make something pending return a [`Target`] instead of touching guest
//! memory: the caller drops the lock, then calls [`set_pending`] on the target domain's
//! shared-info page and raises that vCPU's upcall if it says so. A port closed between the two
//! steps only gets a spurious pending bit, which guests must tolerate anyway (as in Xen).

use crate::domain::DomId;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use ferrite_abi::Errno;
use ferrite_abi::evtchn::{NR_PORTS, status, virq, word_bit};
use ferrite_abi::shared_info::{MAX_VCPUS, SharedInfo};

/// What a port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Closed,
    /// Waiting for `remote` to bind to it.
    Unbound {
        remote: DomId,
    },
    /// Connected to `port` of `dom`.
    Interdomain {
        dom: DomId,
        port: u32,
    },
    /// Pending when Ferrite raises this virtual IRQ for the port's vCPU.
    Virq {
        virq: u32,
    },
    /// Sending on it notifies the port's vCPU.
    Ipi,
}

#[derive(Clone, Copy, Debug)]
struct Port {
    state: State,
    /// The vCPU its events are delivered to.
    vcpu: u16,
}

const CLOSED: Port = Port {
    state: State::Closed,
    vcpu: 0,
};

/// One domain's ports.
#[derive(Debug)]
pub struct Table {
    /// Index = port number; grows on demand up to `limit + 1` entries.
    ports: Vec<Port>,
    vcpus: usize,
    /// The most ports open at once.
    limit: u32,
    open: u32,
    /// `virq_port[vcpu][virq]`: the port bound to that virtual IRQ, 0 for none.
    virq_port: Vec<[u32; virq::COUNT as usize]>,
}

impl Table {
    fn new(vcpus: usize, limit: u32) -> Self {
        Self {
            ports: alloc::vec![CLOSED],
            vcpus,
            limit: limit.min(NR_PORTS - 1),
            open: 0,
            virq_port: alloc::vec![[0; virq::COUNT as usize]; vcpus],
        }
    }

    fn get(&self, port: u32) -> Result<Port, Errno> {
        match self.ports.get(port as usize) {
            Some(p) if port != 0 && p.state != State::Closed => Ok(*p),
            _ => Err(Errno::NoEnt),
        }
    }

    fn set(&mut self, port: u32, p: Port) {
        self.ports[port as usize] = p;
    }

    /// The lowest closed port, made open with `state`.
    fn alloc(&mut self, state: State, vcpu: u16) -> Result<u32, Errno> {
        if self.open >= self.limit {
            return Err(Errno::NoSpc);
        }
        let port = match self
            .ports
            .iter()
            .skip(1)
            .position(|p| p.state == State::Closed)
        {
            Some(i) => i as u32 + 1,
            None => {
                self.ports.push(CLOSED);
                self.ports.len() as u32 - 1
            }
        };
        self.set(port, Port { state, vcpu });
        self.open += 1;
        Ok(port)
    }

    fn free(&mut self, port: u32) {
        self.set(port, CLOSED);
        self.open -= 1;
    }

    fn check_vcpu(&self, vcpu: u64) -> Result<u16, Errno> {
        if (vcpu as usize) < self.vcpus.min(MAX_VCPUS) {
            Ok(vcpu as u16)
        } else {
            Err(Errno::NoEnt)
        }
    }

    /// Open ports.
    pub fn open(&self) -> u32 {
        self.open
    }
}

/// Where an event goes: `port` of `dom`, notifying `vcpu`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub dom: DomId,
    pub port: u32,
    pub vcpu: usize,
}

/// [`Channels::status`]'s answer, as `STATUS` returns it in x0..x3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub kind: u64,
    pub a: u64,
    pub b: u64,
    pub vcpu: u64,
}

/// Every domain's table.
#[derive(Debug, Default)]
pub struct Channels {
    tables: Vec<Option<Table>>,
}

impl Channels {
    pub const fn new() -> Self {
        Self { tables: Vec::new() }
    }

    /// Gives `dom` a table (its ports start closed). `Exist` if it has one.
    pub fn add_domain(&mut self, dom: DomId, vcpus: usize, limit: u32) -> Result<(), Errno> {
        let i = dom as usize;
        if self.tables.len() <= i {
            self.tables.resize_with(i + 1, || None);
        }
        if self.tables[i].is_some() {
            return Err(Errno::Exist);
        }
        self.tables[i] = Some(Table::new(vcpus, limit));
        Ok(())
    }

    pub fn has_domain(&self, dom: DomId) -> bool {
        self.table(dom).is_ok()
    }

    /// Closes every port of `dom` and forgets it; its interdomain peers become unbound (for a
    /// domain that no longer exists: nothing can bind to them, their owners close them).
    pub fn remove_domain(&mut self, dom: DomId) {
        let Ok(t) = self.table(dom) else { return };
        let ports: Vec<u32> = (1..t.ports.len() as u32)
            .filter(|&p| t.ports[p as usize].state != State::Closed)
            .collect();
        for p in ports {
            let _ = self.close(dom, p);
        }
        self.tables[dom as usize] = None;
    }

    pub fn table(&self, dom: DomId) -> Result<&Table, Errno> {
        self.tables
            .get(dom as usize)
            .and_then(Option::as_ref)
            .ok_or(Errno::NoEnt)
    }

    fn table_mut(&mut self, dom: DomId) -> Result<&mut Table, Errno> {
        self.tables
            .get_mut(dom as usize)
            .and_then(Option::as_mut)
            .ok_or(Errno::NoEnt)
    }

    /// `ALLOC_UNBOUND`: a port of `dom` that `remote` may bind to.
    pub fn alloc_unbound(&mut self, dom: DomId, remote: DomId) -> Result<u32, Errno> {
        self.table(remote)?;
        self.table_mut(dom)?.alloc(State::Unbound { remote }, 0)
    }

    /// `BIND_INTERDOMAIN`: connects a new port of `dom` to `rdom`'s unbound `rport`, which must
    /// be waiting for `dom`.
    pub fn bind_interdomain(&mut self, dom: DomId, rdom: DomId, rport: u32) -> Result<u32, Errno> {
        self.table(dom)?;
        let r = self.table(rdom)?.get(rport)?;
        if r.state != (State::Unbound { remote: dom }) {
            return Err(Errno::Inval);
        }
        let port = self.table_mut(dom)?.alloc(
            State::Interdomain {
                dom: rdom,
                port: rport,
            },
            0,
        )?;
        let rt = self.table_mut(rdom)?;
        rt.set(
            rport,
            Port {
                state: State::Interdomain { dom, port },
                vcpu: r.vcpu,
            },
        );
        Ok(port)
    }

    /// `BIND_VIRQ`: a port pending whenever `virq` is raised for `vcpu` of `dom`.
    pub fn bind_virq(&mut self, dom: DomId, v: u32, vcpu: u64) -> Result<u32, Errno> {
        if v >= virq::COUNT {
            return Err(Errno::Inval);
        }
        let t = self.table_mut(dom)?;
        let vcpu = t.check_vcpu(vcpu)?;
        if t.virq_port[vcpu as usize][v as usize] != 0 {
            return Err(Errno::Exist);
        }
        let port = t.alloc(State::Virq { virq: v }, vcpu)?;
        t.virq_port[vcpu as usize][v as usize] = port;
        Ok(port)
    }

    /// `BIND_IPI`: a port notifying `vcpu` of `dom` itself.
    pub fn bind_ipi(&mut self, dom: DomId, vcpu: u64) -> Result<u32, Errno> {
        let t = self.table_mut(dom)?;
        let vcpu = t.check_vcpu(vcpu)?;
        t.alloc(State::Ipi, vcpu)
    }

    /// `BIND_VCPU`: events on `port` now notify `vcpu` (virtual-IRQ ports keep theirs).
    pub fn bind_vcpu(&mut self, dom: DomId, port: u32, vcpu: u64) -> Result<(), Errno> {
        let t = self.table_mut(dom)?;
        let vcpu = t.check_vcpu(vcpu)?;
        let mut p = t.get(port)?;
        if matches!(p.state, State::Virq { .. }) {
            return Err(Errno::Inval);
        }
        p.vcpu = vcpu;
        t.set(port, p);
        Ok(())
    }

    /// `CLOSE`.
    pub fn close(&mut self, dom: DomId, port: u32) -> Result<(), Errno> {
        let p = self.table(dom)?.get(port)?;
        match p.state {
            State::Interdomain {
                dom: rdom,
                port: rport,
            } => {
                // The peer waits for this domain again (Xen's semantics), unless it is gone.
                if let Ok(rt) = self.table_mut(rdom)
                    && let Ok(mut rp) = rt.get(rport)
                    && rp.state == (State::Interdomain { dom, port })
                {
                    rp.state = State::Unbound { remote: dom };
                    rt.set(rport, rp);
                }
            }
            State::Virq { virq } => {
                self.table_mut(dom)?.virq_port[p.vcpu as usize][virq as usize] = 0;
            }
            State::Closed | State::Unbound { .. } | State::Ipi => {}
        }
        self.table_mut(dom)?.free(port);
        Ok(())
    }

    /// `STATUS` of `port` of `dom`.
    pub fn status(&self, dom: DomId, port: u32) -> Result<Status, Errno> {
        let t = self.table(dom)?;
        if port == 0 || port >= NR_PORTS {
            return Err(Errno::Inval);
        }
        let p = t.ports.get(port as usize).copied().unwrap_or(CLOSED);
        let (kind, a, b) = match p.state {
            State::Closed => (status::CLOSED, 0, 0),
            State::Unbound { remote } => (status::UNBOUND, remote as u64, 0),
            State::Interdomain { dom, port } => (status::INTERDOMAIN, dom as u64, port as u64),
            State::Virq { virq } => (status::VIRQ, virq as u64, 0),
            State::Ipi => (status::IPI, 0, 0),
        };
        Ok(Status {
            kind,
            a,
            b,
            vcpu: p.vcpu as u64,
        })
    }

    /// `SEND` on `port` of `dom`: where the event goes (`None`: an unbound port drops it).
    pub fn send(&self, dom: DomId, port: u32) -> Result<Option<Target>, Errno> {
        let p = self.table(dom)?.get(port)?;
        match p.state {
            State::Interdomain {
                dom: rdom,
                port: rport,
            } => {
                let rp = self.table(rdom)?.get(rport)?;
                Ok(Some(Target {
                    dom: rdom,
                    port: rport,
                    vcpu: rp.vcpu as usize,
                }))
            }
            State::Ipi => Ok(Some(Target {
                dom,
                port,
                vcpu: p.vcpu as usize,
            })),
            State::Unbound { .. } => Ok(None),
            State::Virq { .. } | State::Closed => Err(Errno::Inval),
        }
    }

    /// Where `port` of `dom` delivers (for `UNMASK`).
    pub fn target(&self, dom: DomId, port: u32) -> Result<Target, Errno> {
        let p = self.table(dom)?.get(port)?;
        Ok(Target {
            dom,
            port,
            vcpu: p.vcpu as usize,
        })
    }

    /// The port bound to virtual IRQ `v` of `vcpu` of `dom`, if any. A global virtual IRQ
    /// (console, debug) goes to whichever vCPU bound it.
    pub fn virq_target(&self, dom: DomId, v: u32, vcpu: usize) -> Option<Target> {
        let t = self.table(dom).ok()?;
        let per_vcpu = v == virq::TIMER;
        let (vcpu, port) = if per_vcpu {
            (vcpu, *t.virq_port.get(vcpu)?.get(v as usize)?)
        } else {
            t.virq_port
                .iter()
                .enumerate()
                .map(|(i, ports)| (i, ports[v as usize]))
                .find(|&(_, p)| p != 0)?
        };
        (port != 0).then_some(Target { dom, port, vcpu })
    }
}

/// Marks `port` pending in `si` for `vcpu`. Returns true if the vCPU's upcall must be raised
/// (the port was not pending and is not masked; its selector bit is then set); the caller sets
/// `upcall_pending` and notifies the vCPU.
pub fn set_pending(si: &SharedInfo, port: u32, vcpu: usize) -> bool {
    let (w, bit) = word_bit(port);
    if w >= si.evtchn_pending.len() || vcpu >= MAX_VCPUS {
        return false;
    }
    // SeqCst on both sides of the mask check: pairs with a guest that clears the mask bit and
    // then calls UNMASK (which re-checks pending), so an event racing an unmask is not lost.
    if si.evtchn_pending[w].fetch_or(bit, Ordering::SeqCst) & bit != 0 {
        return false;
    }
    deliver_if_unmasked(si, w, bit, vcpu)
}

/// `UNMASK`: if `port` is pending and no longer masked, deliver it as [`set_pending`] would.
pub fn unmask(si: &SharedInfo, port: u32, vcpu: usize) -> bool {
    let (w, bit) = word_bit(port);
    if w >= si.evtchn_pending.len() || vcpu >= MAX_VCPUS {
        return false;
    }
    if si.evtchn_pending[w].load(Ordering::SeqCst) & bit == 0 {
        return false;
    }
    deliver_if_unmasked(si, w, bit, vcpu)
}

fn deliver_if_unmasked(si: &SharedInfo, w: usize, bit: u64, vcpu: usize) -> bool {
    if si.evtchn_mask[w].load(Ordering::SeqCst) & bit != 0 {
        return false;
    }
    let vi = &si.vcpu_info[vcpu];
    let sel = 1u64 << w;
    vi.virq_pending
        .fetch_or(ferrite_abi::shared_info::virq::EVTCHN, Ordering::AcqRel);
    // Always raise: the guest may have swapped the selector to 0 while the word still had
    // other pending ports; an extra upcall costs one interrupt, a missing one a lost event.
    vi.evtchn_pending_sel.fetch_or(sel, Ordering::SeqCst);
    true
}

/// Clears every pending bit of a newly allocated or closed `port` (a stale bit must not fire
/// on the port's next user).
pub fn clear_pending(si: &SharedInfo, port: u32) {
    let (w, bit) = word_bit(port);
    if let Some(word) = si.evtchn_pending.get(w) {
        word.fetch_and(!bit, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests;
