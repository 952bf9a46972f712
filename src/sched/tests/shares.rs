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
