//! Statistics add up and agree with what the harness saw; the benchmark entry point runs.

use super::*;
use std::println;

#[test]
fn stats_add_up_to_the_lifetime_and_match_the_harness() {
    let mut s = sim(3);
    s.guest(1, 256, 0, 0b111, HOG);
    s.guest(2, 512, 0, 0b111, HOG);
    s.guest(3, 256, 40, 0b111, HOG);
    s.guest(4, 256, 0, 0b001, HOG);
    let io = Behaviour::Cycle {
        run_ns: 250 * US,
        sleep_ns: 4 * MS,
    };
    let bursty = Behaviour::Cycle {
        run_ns: 25 * MS,
        sleep_ns: 45 * MS,
    };
    s.guest(5, 256, 0, 0b111, io);
    s.guest(6, 256, 0, 0b110, bursty);
    s.run_until(700 * MS);
    // A vCPU added late.
    s.domain(7, 256, 0);
    s.vcpu(VcpuId::new(7, 0), 0b111, io);
    s.run_until(3000 * MS);
    for (&v, sv) in &s.vcpus {
        let st = s.sched.stats(v, s.now).unwrap();
        assert_eq!(
            st.running_ns + st.runnable_ns + st.blocked_ns,
            st.lifetime_ns,
            "{v:?}: {st:?}"
        );
        assert_eq!(st.running_ns, s.ran(v, 0, s.now), "{v:?}");
        assert_eq!(st.runs, sv.dispatches, "{v:?}");
        assert_eq!(st.migrations, sv.migrations, "{v:?}");
        println!("{v:?}: {st:?}");
    }
    let late = s.sched.stats(VcpuId::new(7, 0), s.now).unwrap();
    assert_eq!(late.lifetime_ns, 2300 * MS);
    assert!(s.sched.stats(id(6), s.now).unwrap().blocked_ns > 0);
    assert!(s.sched.stats(id(3), s.now).unwrap().runnable_ns > 0);
}

#[test]
fn bench_entry_point_runs() {
    for n in [1, 16, 256] {
        let mut c = bench::setup(n);
        let (now, _) = bench::run(&mut c, 4000, 0, true);
        assert_eq!(now, 1000 * MS);
        let busy = (0..bench::BENCH_PCPUS)
            .filter(|&p| c.current(p).is_some())
            .count();
        assert_eq!(busy, n.min(bench::BENCH_PCPUS));
    }
}

/// `cargo test --release ... sched::tests::stats::bench_schedule -- --ignored --nocapture`
#[test]
#[ignore = "a timing, not a test"]
fn bench_schedule() {
    for ticks in [false, true] {
        for n in [1, 16, 256] {
            let mut c = bench::setup(n);
            let (t, _) = bench::run(&mut c, 10_000, 0, ticks);
            let iters = 400_000;
            let start = std::time::Instant::now();
            let (_, sum) = bench::run(&mut c, iters, t, ticks);
            let ns = start.elapsed().as_nanos() as f64 / iters as f64;
            println!("{n:4} runnable vCPUs, ticks {ticks}: {ns:.0} ns per decision ({sum:x})");
        }
    }
}
