//! Model-based tests of the ring: random interleavings of both sides against a queue model,
//! wrap-around from arbitrary starting indices, notification thresholds, and hostile indices.

extern crate std;

use super::*;
use std::boxed::Box;
use std::collections::VecDeque;

type Ring = SharedRing<[u64; 2], u64, 8>;

fn ring() -> Box<Ring> {
    // SAFETY: every field accepts all-zero bytes (atomics, padding, uninitialised slots).
    let r: Box<Ring> = unsafe { Box::new_zeroed().assume_init() };
    r.init();
    r
}

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Starts both sides at `start` (as after 2^32 - small wraps), to exercise index wrap-around.
fn at_index(
    r: &Ring,
    start: u32,
) -> (
    FrontRing<'_, [u64; 2], u64, 8>,
    BackRing<'_, [u64; 2], u64, 8>,
) {
    r.req_prod.store(start, Ordering::Relaxed);
    r.rsp_prod.store(start, Ordering::Relaxed);
    r.req_event.store(start.wrapping_add(1), Ordering::Relaxed);
    r.rsp_event.store(start.wrapping_add(1), Ordering::Relaxed);
    let mut f = FrontRing::new(r);
    f.req_prod_pvt = start;
    f.rsp_cons = start;
    (f, BackRing::new(r))
}

#[test]
fn nothing_lost_duplicated_or_reordered_under_random_interleavings() {
    for seed in 1..=200u64 {
        let r = ring();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let start = [0, u32::MAX - 3, 1 << 31, rng.next() as u32][seed as usize % 4];
        let (mut front, mut back) = at_index(&r, start);
        let mut next_id = 0u64;
        let mut in_flight: VecDeque<u64> = VecDeque::new(); // requests made, in order
        let mut taken: VecDeque<u64> = VecDeque::new(); // requests the back end holds
        let mut answered = 0u64;
        let (mut back_asleep, mut front_asleep) = (false, false);
        for _ in 0..2000 {
            match rng.below(6) {
                0 | 1 => {
                    let k = rng.below(4);
                    for _ in 0..k {
                        match front.push_request([next_id, !next_id]) {
                            Ok(()) => {
                                in_flight.push_back(next_id);
                                next_id += 1;
                            }
                            Err(_) => assert_eq!(front.free_requests(), 0),
                        }
                    }
                    let before = r.req_prod.load(Ordering::Relaxed);
                    let notify = front.push_requests_and_check_notify();
                    let published_new = r.req_prod.load(Ordering::Relaxed) != before;
                    if notify {
                        back_asleep = false;
                    } else if back_asleep && published_new {
                        // A sleeping back end with new work must have been notified.
                        panic!("seed {seed}: request published to a sleeping back end, no notify");
                    }
                }
                2 | 3 => {
                    while let Some(q) = back.take_request().expect("honest front end") {
                        assert_eq!(q[1], !q[0], "request intact");
                        taken.push_back(q[0]);
                        if rng.below(3) == 0 {
                            break;
                        }
                    }
                    let n = rng.below(taken.len() as u64 + 1);
                    for _ in 0..n {
                        let id = taken.pop_front().unwrap();
                        back.push_response(id * 3).unwrap();
                    }
                    let before = r.rsp_prod.load(Ordering::Relaxed);
                    let notify = back.push_responses_and_check_notify();
                    let published_new = r.rsp_prod.load(Ordering::Relaxed) != before;
                    if notify {
                        front_asleep = false;
                    } else if front_asleep && published_new {
                        panic!(
                            "seed {seed}: response published to a sleeping front end, no notify"
                        );
                    }
                    if !back.final_check_for_requests() {
                        back_asleep = true;
                    }
                }
                _ => {
                    while let Some(s) = front.take_response().expect("honest back end") {
                        let want = in_flight.pop_front().expect("a response to a request");
                        assert_eq!(s, want * 3, "seed {seed}: responses in request order");
                        assert_eq!(want, answered);
                        answered += 1;
                    }
                    if !front.final_check_for_responses() {
                        front_asleep = true;
                    }
                }
            }
            assert!(front.outstanding() <= 8);
        }
        // Drain: everything made is answered exactly once, in order.
        while let Some(q) = back.take_request().unwrap() {
            taken.push_back(q[0]);
        }
        while let Some(id) = taken.pop_front() {
            back.push_response(id * 3).unwrap();
        }
        back.push_responses_and_check_notify();
        while let Some(s) = front.take_response().unwrap() {
            assert_eq!(s, in_flight.pop_front().unwrap() * 3);
            answered += 1;
        }
        assert!(in_flight.is_empty());
        assert_eq!(answered, next_id);
    }
}

#[test]
fn a_full_ring_refuses_requests_and_responses_need_requests() {
    let r = ring();
    let mut front = FrontRing::new(&*r);
    let mut back = BackRing::new(&*r);
    for i in 0..8 {
        front.push_request([i, 0]).unwrap();
    }
    assert_eq!(front.push_request([9, 0]), Err([9, 0]));
    assert!(
        front.push_requests_and_check_notify(),
        "first publish notifies"
    );
    assert_eq!(back.push_response(1), Err(1), "no request taken yet");
    assert_eq!(back.take_request().unwrap(), Some([0, 0]));
    back.push_response(1).unwrap();
    assert_eq!(back.push_response(2), Err(2), "one request, one response");
}

#[test]
fn notifications_follow_the_thresholds() {
    let r = ring();
    let mut front = FrontRing::new(&*r);
    let mut back = BackRing::new(&*r);
    front.push_request([1, 0]).unwrap();
    assert!(front.push_requests_and_check_notify());
    // The back end has not asked again: more requests need no notification.
    front.push_request([2, 0]).unwrap();
    assert!(!front.push_requests_and_check_notify());
    while back.take_request().unwrap().is_some() {}
    assert!(!back.final_check_for_requests());
    front.push_request([3, 0]).unwrap();
    assert!(
        front.push_requests_and_check_notify(),
        "the back end asked to be woken"
    );
}

#[test]
fn hostile_request_producer_is_detected_and_never_reaches_outside() {
    let mut rng = Rng(77);
    for _ in 0..10_000 {
        let r = ring();
        let mut back = BackRing::new(&*r);
        let prod = rng.next() as u32;
        r.req_prod.store(prod, Ordering::Release);
        let mut got = 0usize;
        loop {
            match back.take_request() {
                Ok(Some(_)) => got += 1,
                Ok(None) => break,
                Err(Corrupt) => break,
            }
            assert!(got <= 8, "never more requests than slots");
        }
        if prod as usize > 8 {
            assert_eq!(got, 0, "an impossible index is refused before any read");
        } else {
            assert_eq!(got, prod as usize);
        }
    }
}

#[test]
fn hostile_response_producer_is_detected() {
    let r = ring();
    let mut front = FrontRing::new(&*r);
    front.push_request([1, 1]).unwrap();
    front.push_requests_and_check_notify();
    // Two responses to one request.
    r.rsp_prod.store(2, Ordering::Release);
    assert_eq!(front.take_response(), Err(Corrupt));
    r.rsp_prod.store(u32::MAX, Ordering::Release);
    assert_eq!(front.take_response(), Err(Corrupt));
    r.rsp_prod.store(1, Ordering::Release);
    assert!(front.take_response().unwrap().is_some());
}
