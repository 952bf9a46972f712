//! Run-time control: weight, cap and affinity changes take effect; invalid values are refused.

use super::*;
use std::println;

#[test]
fn invalid_values_are_refused_and_change_nothing() {
    let mut c = credit(4);
    assert_eq!(c.add_domain(1, 0, 0), Err(SchedError::BadWeight(0)));
    assert_eq!(c.add_domain(1, 65536, 0), Err(SchedError::BadWeight(65536)));
    assert_eq!(c.add_domain(1, 256, 401), Err(SchedError::BadCap(401)));
    c.add_domain(1, 256, 400).unwrap();
    assert_eq!(c.add_domain(1, 256, 0), Err(SchedError::DomainExists(1)));
    assert_eq!(c.set_weight(1, 0), Err(SchedError::BadWeight(0)));
    assert_eq!(c.set_weight(1, 70000), Err(SchedError::BadWeight(70000)));
    assert_eq!(c.set_weight(2, 256), Err(SchedError::NoSuchDomain(2)));
    assert_eq!(c.set_cap(1, 1000, 0), Err(SchedError::BadCap(1000)));
    assert_eq!(c.set_cap(9, 10, 0), Err(SchedError::NoSuchDomain(9)));
    assert_eq!((c.weight(1), c.cap(1)), (Some(256), Some(400)));
    c.set_weight(1, 65535).unwrap();
    assert_eq!(c.weight(1), Some(65535));

    assert_eq!(c.add_vcpu(id(1), 0, 0), Err(SchedError::BadAffinity(0)));
    assert_eq!(
        c.add_vcpu(id(1), 0b1_0000, 0),
        Err(SchedError::BadAffinity(0b1_0000))
    );
    assert_eq!(c.add_vcpu(id(2), 0b1, 0), Err(SchedError::NoSuchDomain(2)));
    c.add_vcpu(id(1), 0b1, 0).unwrap();
    assert_eq!(
        c.add_vcpu(id(1), 0b1, 0),
        Err(SchedError::VcpuExists(id(1)))
    );
    assert_eq!(c.set_affinity(id(1), 0, 0), Err(SchedError::BadAffinity(0)));
    assert_eq!(
        c.set_affinity(id(1), 1 << 63, 0),
        Err(SchedError::BadAffinity(1 << 63))
    );
    let ghost = VcpuId::new(1, 5);
    assert_eq!(
        c.set_affinity(ghost, 1, 0),
        Err(SchedError::NoSuchVcpu(ghost))
    );
    assert_eq!(c.affinity(id(1)), Some(0b1));
    assert_eq!(c.remove_domain(1), Err(SchedError::DomainHasVcpus(1)));
    assert_eq!(c.remove_vcpu(ghost, 0), Err(SchedError::NoSuchVcpu(ghost)));
    assert_eq!(c.wake(ghost, 0), None);

    for bad in [
        Config {
            pcpus: 0,
            ..Config::new(1)
        },
        Config {
            pcpus: 65,
            ..Config::new(1)
        },
        Config {
            tslice_ns: 0,
            ..Config::new(1)
        },
        Config {
            tick_ns: 0,
            ..Config::new(1)
        },
        Config {
            tick_ns: 40 * MS,
            ..Config::new(1)
        },
        Config {
            ratelimit_ns: 31 * MS,
            ..Config::new(1)
        },
    ] {
        assert!(
            matches!(Credit::new(bad), Err(SchedError::BadConfig(_))),
            "{bad:?}"
        );
    }
    assert!(Credit::new(Config::new(64)).is_ok());
}

#[test]
fn removal_frees_the_vcpu_and_its_pcpu() {
    let mut c = credit(1);
    c.add_domain(1, 256, 0).unwrap();
    c.add_vcpu(id(1), 0b1, 0).unwrap();
    c.wake(id(1), 0);
    assert_eq!(c.schedule(0, 0).next, Some(id(1)));
    assert_eq!(c.remove_vcpu(id(1), MS), Ok(0b1));
    assert_eq!(c.stats(id(1), MS), None);
    assert_eq!(c.schedule(0, MS).next, None);
    c.remove_domain(1).unwrap();
    assert_eq!(c.remove_domain(1), Err(SchedError::NoSuchDomain(1)));
    // The slot is reused.
    c.add_domain(2, 256, 0).unwrap();
    c.add_vcpu(id(2), 0b1, 2 * MS).unwrap();
    c.wake(id(2), 2 * MS);
    assert_eq!(c.schedule(0, 2 * MS).next, Some(id(2)));
}

#[test]
fn weight_change_takes_effect() {
    let mut s = sim(1);
    s.guest(1, 256, 0, 0b1, HOG);
    s.guest(2, 256, 0, 0b1, HOG);
    s.run_until(2000 * MS);
    let before = s.share(id(2), 200 * MS, 2000 * MS);
    s.sched.set_weight(2, 768).unwrap();
    s.run_until(5000 * MS);
    let after = s.share(id(2), 2200 * MS, 5000 * MS);
    println!("dom2 at 256: {}%, at 768: {}%", pct(before), pct(after));
    assert!((before - 0.5).abs() < 0.03, "{before}");
    assert!((after - 0.75).abs() < 0.03, "{after}");
}

#[test]
fn cap_change_takes_effect() {
    let mut s = sim(1);
    s.guest(1, 256, 0, 0b1, HOG);
    s.run_until(1000 * MS);
    assert!(s.share(id(1), 0, 1000 * MS) > 0.99);
    let kick = s.sched.set_cap(1, 30, s.now).unwrap();
    s.kick(kick);
    s.run_until(3000 * MS);
    let slice = 30 * MS;
    for k in 1020 / 30..3000 / 30 {
        let share = s.share(id(1), k * slice, (k + 1) * slice);
        assert!(share <= 0.32, "period {k}: {share}");
    }
    let capped = s.share(id(1), 1020 * MS, 3000 * MS);
    let kick = s.sched.set_cap(1, 0, s.now).unwrap();
    s.kick(kick);
    s.run_until(4000 * MS);
    let uncapped = s.share(id(1), 3000 * MS + 100 * US, 4000 * MS);
    println!("cap 30: {}%, cap removed: {}%", pct(capped), pct(uncapped));
    assert!((0.28..=0.31).contains(&capped), "{capped}");
    assert!(uncapped > 0.99, "{uncapped}");
}

#[test]
fn affinity_change_moves_a_running_vcpu() {
    let mut s = sim(2);
    s.guest(1, 256, 0, 0b01, HOG);
    s.guest(2, 256, 0, 0b11, HOG);
    s.run_until(500 * MS);
    assert_eq!(s.pcpus_used(id(1)), 0b01);
    let kick = s.sched.set_affinity(id(1), 0b10, s.now).unwrap();
    assert_eq!(kick, 0b01, "its pCPU must decide again");
    s.kick(kick);
    let moved_at = s.now + MS;
    s.run_until(1500 * MS);
    let after: Vec<_> = s.vcpus[&id(1)]
        .segments
        .iter()
        .filter(|seg| seg.1 > moved_at)
        .map(|seg| seg.2)
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|&p| p == 1),
        "{after:?}"
    );
    assert!(s.share(id(1), moved_at, 1500 * MS) > 0.4);
    assert!(s.share(id(2), moved_at, 1500 * MS) > 0.4);
}
