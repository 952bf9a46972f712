//! Weights share a pCPU in proportion; caps bound a domain even on an otherwise idle pCPU.

use super::*;
use std::println;

#[test]
fn weights_256_512_1024_share_one_pcpu_1_2_4() {
    let mut s = sim(1);
    for (dom, w) in [(1, 256), (2, 512), (3, 1024)] {
        s.guest(dom, w, 0, 0b1, HOG);
    }
    let (from, to) = (500 * MS, 4500 * MS);
    s.run_until(to);
    let want = [1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0];
    for (dom, want) in (1..=3).zip(want) {
        let got = s.share(id(dom), from, to);
        println!("dom{dom}: {}% (want {}%)", pct(got), pct(want));
        assert!((got - want).abs() < 0.03, "dom{dom}: {got} vs {want}");
    }
}

/// The same three pinned to pCPU 1 of 2 while another hog has pCPU 0: domains that cannot
/// meet share no credit, so the weights still decide on pCPU 1 (with one pool for both pCPUs
/// every hog there would have credit to spare, and they would share 1:1:1).
#[test]
fn weights_share_a_pcpu_they_are_pinned_to_while_another_idles() {
    let mut s = sim(2);
    for (dom, w) in [(1, 256), (2, 512), (3, 1024)] {
        s.guest(dom, w, 0, 0b10, HOG);
    }
    s.guest(4, 256, 0, 0b01, HOG);
    let (from, to) = (500 * MS, 4500 * MS);
    s.run_until(to);
    let want = [1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0];
    for (dom, want) in (1..=3).zip(want) {
        let got = s.share(id(dom), from, to);
        println!("dom{dom}: {}% (want {}%)", pct(got), pct(want));
        assert!((got - want).abs() < 0.03, "dom{dom}: {got} vs {want}");
    }
}

/// The share of each accounting period `[k·slice, (k+1)·slice)` in `[from, to)`.
fn per_period(s: &Sim, v: VcpuId, from: Time, to: Time) -> Vec<f64> {
    let slice = s.sched.config().tslice_ns;
    (from / slice..to / slice)
        .map(|k| s.share(v, k * slice, (k + 1) * slice))
        .collect()
}

#[test]
fn cap_25_bounds_a_hog_on_an_idle_machine() {
    let mut s = sim(2);
    s.guest(1, 256, 25, 0b11, HOG);
    let to = 3000 * MS;
    s.run_until(to);
    let periods = per_period(&s, id(1), 0, to);
    let worst = periods.iter().copied().fold(0.0, f64::max);
    let overall = s.share(id(1), 0, to);
    println!(
        "cap 25: overall {}%, worst period {}%",
        pct(overall),
        pct(worst)
    );
    assert!(worst <= 0.27, "a period at {worst}");
    assert!((0.23..=0.27).contains(&overall), "overall {overall}");
}

#[test]
fn cap_is_shared_by_a_domains_vcpus() {
    // Two vCPUs capped at 50 (half a pCPU between them) on two otherwise idle pCPUs.
    let mut s = sim(2);
    s.domain(1, 256, 50);
    s.vcpu(VcpuId::new(1, 0), 0b11, HOG);
    s.vcpu(VcpuId::new(1, 1), 0b11, HOG);
    let to = 3000 * MS;
    s.run_until(to);
    let both = |a, b| s.share(VcpuId::new(1, 0), a, b) + s.share(VcpuId::new(1, 1), a, b);
    let slice = s.sched.config().tslice_ns;
    let worst = (0..to / slice)
        .map(|k| both(k * slice, (k + 1) * slice))
        .fold(0.0, f64::max);
    let overall = both(0, to);
    println!(
        "cap 50 over 2 vCPUs: overall {}%, worst period {}%",
        pct(overall),
        pct(worst)
    );
    assert!(worst <= 0.52, "a period at {worst}");
    assert!((0.47..=0.52).contains(&overall), "overall {overall}");
}

#[test]
fn capped_domain_against_a_hog_gets_no_more_than_its_cap() {
    // A heavy weight does not lift the cap; the hog gets the rest.
    let mut s = sim(1);
    s.guest(1, 4096, 25, 0b1, HOG);
    s.guest(2, 256, 0, 0b1, HOG);
    let to = 3000 * MS;
    s.run_until(to);
    let capped = s.share(id(1), 0, to);
    let hog = s.share(id(2), 0, to);
    println!("capped {}%, hog {}%", pct(capped), pct(hog));
    assert!((0.2..=0.27).contains(&capped), "{capped}");
    assert!(hog >= 0.72, "{hog}");
}
