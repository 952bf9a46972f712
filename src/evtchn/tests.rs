//! Host tests of the port tables and the pending/mask/selector bits.

use super::*;
use alloc::boxed::Box;

fn page() -> Box<SharedInfo> {
    // SAFETY: the page is atomics and integers: all-zero is a valid value.
    unsafe { Box::new_zeroed().assume_init() }
}

fn two() -> Channels {
    let mut c = Channels::new();
    c.add_domain(0, 2, NR_PORTS - 1).unwrap();
    c.add_domain(1, 4, 8).unwrap();
    c
}

#[test]
fn interdomain_connects_both_ways_and_close_unbinds_the_peer() {
    let mut c = two();
    let p1 = c.alloc_unbound(1, 0).unwrap();
    assert_eq!(p1, 1, "port 0 is never used");
    assert_eq!(c.status(1, p1).unwrap().kind, status::UNBOUND);
    // Only the named remote may bind.
    c.add_domain(2, 1, 8).unwrap();
    assert_eq!(c.bind_interdomain(2, 1, p1), Err(Errno::Inval));
    let p0 = c.bind_interdomain(0, 1, p1).unwrap();
    assert_eq!(
        c.send(0, p0).unwrap(),
        Some(Target {
            dom: 1,
            port: p1,
            vcpu: 0
        })
    );
    assert_eq!(
        c.send(1, p1).unwrap(),
        Some(Target {
            dom: 0,
            port: p0,
            vcpu: 0
        })
    );
    let s = c.status(1, p1).unwrap();
    assert_eq!((s.kind, s.a, s.b), (status::INTERDOMAIN, 0, p0 as u64));
    // Binding twice to the same port fails: it is no longer unbound.
    assert_eq!(c.bind_interdomain(0, 1, p1), Err(Errno::Inval));
    c.close(0, p0).unwrap();
    assert_eq!(c.status(0, p0).unwrap().kind, status::CLOSED);
    let s = c.status(1, p1).unwrap();
    assert_eq!(
        (s.kind, s.a),
        (status::UNBOUND, 0),
        "the peer waits for dom0 again"
    );
    assert_eq!(
        c.send(1, p1).unwrap(),
        None,
        "an unbound port drops the event"
    );
    // dom0 can bind again.
    let p0 = c.bind_interdomain(0, 1, p1).unwrap();
    assert!(c.send(1, p1).unwrap().is_some());
    c.close(0, p0).unwrap();
}

#[test]
fn bind_vcpu_redirects_and_ipi_notifies_the_named_vcpu() {
    let mut c = two();
    let p = c.bind_ipi(1, 3).unwrap();
    assert_eq!(
        c.send(1, p).unwrap(),
        Some(Target {
            dom: 1,
            port: p,
            vcpu: 3
        })
    );
    assert_eq!(c.bind_ipi(1, 4), Err(Errno::NoEnt), "no such vCPU");
    let u = c.alloc_unbound(1, 0).unwrap();
    let d = c.bind_interdomain(0, 1, u).unwrap();
    c.bind_vcpu(1, u, 2).unwrap();
    assert_eq!(c.send(0, d).unwrap().unwrap().vcpu, 2);
    assert_eq!(c.bind_vcpu(1, u, 9), Err(Errno::NoEnt));
}

#[test]
fn virqs_bind_once_per_vcpu_and_close_frees_the_binding() {
    let mut c = two();
    let t0 = c.bind_virq(1, virq::TIMER, 0).unwrap();
    let t1 = c.bind_virq(1, virq::TIMER, 1).unwrap();
    assert_eq!(c.bind_virq(1, virq::TIMER, 1), Err(Errno::Exist));
    assert_eq!(c.bind_virq(1, virq::COUNT, 0), Err(Errno::Inval));
    assert_eq!(c.virq_target(1, virq::TIMER, 1).unwrap().port, t1);
    assert_eq!(c.virq_target(1, virq::TIMER, 0).unwrap().port, t0);
    assert_eq!(c.virq_target(1, virq::TIMER, 2), None);
    assert_eq!(
        c.send(1, t0),
        Err(Errno::Inval),
        "nobody sends on a VIRQ port"
    );
    assert_eq!(c.bind_vcpu(1, t0, 1), Err(Errno::Inval));
    // A global VIRQ goes where it was bound.
    let con = c.bind_virq(0, virq::CONSOLE, 1).unwrap();
    assert_eq!(
        c.virq_target(0, virq::CONSOLE, 0),
        Some(Target {
            dom: 0,
            port: con,
            vcpu: 1
        })
    );
    c.close(1, t1).unwrap();
    assert_eq!(c.virq_target(1, virq::TIMER, 1), None);
    assert_eq!(
        c.bind_virq(1, virq::TIMER, 1).unwrap(),
        t1,
        "lowest free port reused"
    );
}

#[test]
fn the_port_limit_is_enforced_and_closing_makes_room() {
    let mut c = two();
    let ports: alloc::vec::Vec<u32> = (0..8).map(|_| c.bind_ipi(1, 0).unwrap()).collect();
    assert_eq!(ports, (1..=8).collect::<alloc::vec::Vec<_>>());
    assert_eq!(c.bind_ipi(1, 0), Err(Errno::NoSpc));
    assert_eq!(c.alloc_unbound(1, 0), Err(Errno::NoSpc));
    c.close(1, 5).unwrap();
    assert_eq!(c.bind_ipi(1, 0).unwrap(), 5);
    assert_eq!(c.table(1).unwrap().open(), 8);
}

#[test]
fn bad_ports_and_domains_are_errors_not_panics() {
    let mut c = two();
    for port in [0, 1, 77, NR_PORTS, u32::MAX] {
        assert!(c.send(1, port).is_err());
        assert!(c.close(1, port).is_err());
        assert!(c.target(1, port).is_err());
        assert!(c.bind_vcpu(1, port, 0).is_err());
        assert!(c.bind_interdomain(0, 1, port).is_err());
    }
    assert_eq!(c.status(1, 0), Err(Errno::Inval));
    assert_eq!(c.status(1, NR_PORTS), Err(Errno::Inval));
    assert_eq!(c.status(1, 100).unwrap().kind, status::CLOSED);
    assert_eq!(c.alloc_unbound(1, 9), Err(Errno::NoEnt), "no such remote");
    assert_eq!(c.alloc_unbound(9, 0), Err(Errno::NoEnt));
    assert_eq!(c.add_domain(1, 1, 1), Err(Errno::Exist));
}

#[test]
fn removing_a_domain_unbinds_its_peers() {
    let mut c = two();
    let u = c.alloc_unbound(1, 0).unwrap();
    let d = c.bind_interdomain(0, 1, u).unwrap();
    c.bind_virq(1, virq::TIMER, 0).unwrap();
    c.remove_domain(1);
    assert!(!c.has_domain(1));
    assert_eq!(c.status(0, d).unwrap().kind, status::UNBOUND);
    assert_eq!(c.send(0, d).unwrap(), None);
    // The id can be reused with a fresh table.
    c.add_domain(1, 1, 8).unwrap();
    assert_eq!(c.status(1, u).unwrap().kind, status::CLOSED);
    // dom0's port waits for domain 1: the new domain 1 may bind it (as in Xen, dom0 closes
    // ports of a domain it saw die before the id comes back).
    assert!(c.bind_interdomain(1, 0, d).is_ok());
}

#[test]
fn pending_mask_and_selector_follow_the_two_level_protocol() {
    let si = page();
    // Port 70: word 1, bit 6.
    assert!(set_pending(&si, 70, 2));
    assert_eq!(si.evtchn_pending[1].load(Ordering::Relaxed), 1 << 6);
    assert_eq!(
        si.vcpu_info[2].evtchn_pending_sel.load(Ordering::Relaxed),
        1 << 1
    );
    assert!(
        !set_pending(&si, 70, 2),
        "already pending: no second upcall"
    );
    // Masked: pending is recorded, no upcall; unmask delivers it.
    si.evtchn_mask[0].store(1 << 3, Ordering::Relaxed);
    assert!(!set_pending(&si, 3, 0));
    assert_eq!(si.evtchn_pending[0].load(Ordering::Relaxed), 1 << 3);
    assert_eq!(
        si.vcpu_info[0].evtchn_pending_sel.load(Ordering::Relaxed),
        0
    );
    assert!(!unmask(&si, 3, 0), "still masked");
    si.evtchn_mask[0].store(0, Ordering::Relaxed);
    assert!(unmask(&si, 3, 0));
    assert_eq!(
        si.vcpu_info[0].evtchn_pending_sel.load(Ordering::Relaxed),
        1
    );
    // Unmasking a port that is not pending does nothing.
    assert!(!unmask(&si, 4, 0));
    clear_pending(&si, 3);
    assert_eq!(si.evtchn_pending[0].load(Ordering::Relaxed), 0);
    // Out of range: ignored.
    assert!(!set_pending(&si, NR_PORTS, 0));
    assert!(!set_pending(&si, 5, MAX_VCPUS));
}
