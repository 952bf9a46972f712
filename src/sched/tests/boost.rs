//! BOOST: an event-driven vCPU preempts CPU hogs when it wakes. The rate limit: not within 1 ms
//! of a vCPU starting.

use super::*;
use alloc::vec::Vec;
use std::println;

const IO: Behaviour = Behaviour::Cycle {
    run_ns: 200 * US,
    sleep_ns: 7 * MS + 300 * US,
};

/// Two hogs and an I/O-bound vCPU on one pCPU. Returns the I/O vCPU's worst and mean
/// wake-to-running latency and its number of wakes, after a warm-up (the three start together
/// at time 0, and the start is not a wake by an event).
fn io_among_hogs(boost: bool) -> (Time, f64, usize) {
    let mut s = Sim::new(Config {
        boost,
        ..Config::new(1)
    });
    s.guest(1, 256, 0, 0b1, HOG);
    s.guest(2, 256, 0, 0b1, HOG);
    s.guest(3, 256, 0, 0b1, IO);
    s.run_until(5000 * MS);
    let warm = 100 * MS;
    let l: Vec<Time> = s.vcpus[&id(3)]
        .latencies
        .iter()
        .filter(|&&(w, _)| w >= warm)
        .map(|&(_, l)| l)
        .collect();
    let mean = l.iter().sum::<Time>() as f64 / l.len() as f64;
    (s.max_latency(id(3), warm), mean, l.len())
}

#[test]
fn boost_keeps_wake_latency_under_a_tick() {
    let (max, mean, n) = io_among_hogs(true);
    println!(
        "boost on: {n} wakes, max {} us, mean {} us",
        max / US,
        mean as u64 / US
    );
    assert!(n > 500, "{n} wakes");
    assert!(max < 10 * MS, "max latency {max}");
}

#[test]
fn without_boost_wake_latency_exceeds_a_tick() {
    let (max, mean, n) = io_among_hogs(false);
    println!(
        "boost off: {n} wakes, max {} us, mean {} us",
        max / US,
        mean as u64 / US
    );
    assert!(max >= 10 * MS, "max latency {max}");
    assert!(mean >= MS as f64, "mean latency {mean}");
}

/// One pCPU where hog 1 has just (at `T0`) been switched in at UNDER after hog 3's slice, and
/// an I/O vCPU (dom 2) blocked, ready to be woken.
const T0: Time = 40 * MS;

fn hog_running(cfg: Config) -> Credit {
    let mut c = Credit::new(cfg).unwrap();
    for dom in [1, 2, 3] {
        c.add_domain(dom, 256, 0).unwrap();
        c.add_vcpu(id(dom), 0b1, 0).unwrap();
    }
    c.wake(id(1), 0);
    c.wake(id(3), 0);
    assert_eq!(c.schedule(0, 0).next, Some(id(1)));
    // The tick ends 1's boost; 3 (still boosted) preempts it, then loses its boost too.
    assert!(c.tick(0, 10 * MS).resched);
    assert_eq!(c.schedule(0, 10 * MS).next, Some(id(3)));
    assert!(!c.tick(0, 20 * MS).resched);
    assert!(!c.tick(0, 30 * MS).resched);
    assert_eq!(c.schedule(0, T0).next, Some(id(1)));
    assert_eq!(c.stats(id(1), T0).unwrap().priority, Priority::Under);
    c
}

#[test]
fn rate_limit_defers_a_boosted_wake_until_1ms_of_running() {
    let t0 = T0;
    let mut c = hog_running(Config::new(1));
    // Woken 0.4 ms after the hog started: BOOSTed, so the pCPU is tickled...
    assert_eq!(c.wake(id(2), t0 + 400 * US), Some(0));
    assert_eq!(
        c.stats(id(2), t0 + 400 * US).unwrap().priority,
        Priority::Boost
    );
    // ...but the decision keeps the hog until it has run 1 ms.
    let d = c.schedule(0, t0 + 420 * US);
    assert_eq!(d.next, Some(id(1)));
    assert_eq!(d.run_for, 580 * US);
    let d = c.schedule(0, t0 + MS);
    assert_eq!(d.next, Some(id(2)));
}

#[test]
fn without_rate_limit_a_boosted_wake_preempts_at_once() {
    let t0 = T0;
    let mut c = hog_running(Config {
        ratelimit_ns: 0,
        ..Config::new(1)
    });
    assert_eq!(c.wake(id(2), t0 + 100 * US), Some(0));
    assert_eq!(c.schedule(0, t0 + 120 * US).next, Some(id(2)));
}

#[test]
fn a_blocking_or_yielding_vcpu_is_not_held_by_the_rate_limit() {
    let t0 = T0;
    let mut c = hog_running(Config::new(1));
    c.wake(id(2), t0 + 100 * US);
    c.yield_(id(1), t0 + 200 * US);
    assert_eq!(c.schedule(0, t0 + 200 * US).next, Some(id(2)));
    c.block(id(2), t0 + 300 * US);
    assert_eq!(c.schedule(0, t0 + 300 * US).next, Some(id(1)));
    // A yield 0.1 ms after starting gives way to the other hog at once.
    c.yield_(id(1), t0 + 400 * US);
    assert_eq!(c.schedule(0, t0 + 400 * US).next, Some(id(3)));
}

#[test]
fn boost_ends_when_ticked_running_or_descheduled() {
    let t0 = T0;
    let mut c = hog_running(Config::new(1));
    c.wake(id(2), t0 + 2 * MS);
    assert_eq!(c.schedule(0, t0 + 2 * MS).next, Some(id(2)));
    assert_eq!(
        c.stats(id(2), t0 + 2 * MS).unwrap().priority,
        Priority::Boost
    );
    c.tick(0, t0 + 3 * MS);
    assert_eq!(
        c.stats(id(2), t0 + 3 * MS).unwrap().priority,
        Priority::Under
    );
    // Woken again, boosted again; descheduled (here by a yield), back to UNDER.
    c.block(id(2), t0 + 4 * MS);
    c.schedule(0, t0 + 4 * MS);
    c.wake(id(2), t0 + 5 * MS + 100 * US);
    assert_eq!(c.schedule(0, t0 + 5 * MS + 100 * US).next, Some(id(2)));
    assert_eq!(
        c.stats(id(2), t0 + 6 * MS).unwrap().priority,
        Priority::Boost
    );
    c.yield_(id(2), t0 + 6 * MS);
    assert_ne!(c.schedule(0, t0 + 6 * MS).next, Some(id(2)));
    assert_eq!(
        c.stats(id(2), t0 + 6 * MS).unwrap().priority,
        Priority::Under
    );
}

#[test]
fn no_preemption_within_the_rate_limit_under_an_io_storm() {
    // Eight I/O vCPUs waking every few ms against two hogs on one pCPU: every switch away
    // from a runnable vCPU happens at least 1 ms after it started.
    let mut s = sim(1);
    s.guest(1, 256, 0, 0b1, HOG);
    s.guest(2, 256, 0, 0b1, HOG);
    for dom in 3..11 {
        let io = Behaviour::Cycle {
            run_ns: 150 * US + dom as Time * 10 * US,
            sleep_ns: 2 * MS + dom as Time * 370 * US,
        };
        s.guest(dom, 256, 0, 0b1, io);
    }
    s.run_until(2000 * MS);
    let mut switches = 0;
    for (v, sv) in &s.vcpus {
        for &ran in &sv.preempted_after {
            assert!(ran >= MS, "{v:?} preempted after {ran} ns");
            switches += 1;
        }
    }
    assert!(switches > 100, "{switches} preemptions");
}
