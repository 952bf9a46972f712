//! `blk-bench`: a domU's block throughput through dom0 (module docs of [`super`]).

use super::{MAX_PAGES, MAX_SETS, WARM_UP_BYTES, close, connect, indirect, segments};
use crate::front;
use ferrite_abi::blkif::{MAX_INDIRECT_SEGMENTS, MAX_SEGMENTS, Request, op};
use ferrite_abi::devbus::feature;
use ferrite_pv::{hypercall, rt, time};

/// `blk-bench <MiB> [<KiB> [<depth>]]`: reads `mib` MiB through dom0 (around again past its
/// disk's end) in requests of `kib` KiB (indirect ones beyond 32 KiB), `depth` outstanding,
/// and prints the rate in real time after [`WARM_UP_BYTES`]. Each outstanding request has a
/// set of pages of its own (and an indirect page), named by its id; responses come in any
/// order and give their set back for the next request.
pub fn bench(mib: u64, kib: u64, depth: u64) {
    let per_set = (kib / 4) as usize;
    let depth = depth as usize;
    let fits = kib.is_multiple_of(4)
        && (1..=MAX_INDIRECT_SEGMENTS).contains(&per_set)
        && (1..=MAX_SETS).contains(&depth)
        && per_set * depth <= MAX_PAGES;
    if !fits {
        return out!(
            "blk-bench: FAIL: {depth} requests of {kib} KiB: up to {} pages in all, of up to {} KiB each",
            MAX_PAGES,
            MAX_INDIRECT_SEGMENTS * 4
        );
    }
    let big = per_set > MAX_SEGMENTS;
    let sets = if big { depth } else { 0 };
    let mut f = match connect(per_set * depth, sets, feature::PERSISTENT) {
        Ok(f) => f,
        Err(e) => return out!("blk-bench: FAIL: {e}"),
    };
    if big && !f.indirect {
        return out!(
            "blk-bench: FAIL: {kib} KiB requests need indirect requests, which the backend does not take"
        );
    }
    let per = (per_set * 8) as u64;
    // Past the disk's end, around again from sector 0.
    let span = f.sectors / per;
    if span == 0 {
        return out!("blk-bench: FAIL: the disk is smaller than one request");
    }
    let total = (mib << 20) / (per * 512);
    // Which request each set is used by (u64::MAX: free), and the free sets.
    let mut set_of = [u64::MAX; MAX_SETS];
    let mut free: [usize; MAX_SETS] = core::array::from_fn(|i| i);
    let mut nfree = depth;
    let (mut next, mut done) = (0u64, 0u64);
    // The clock starts once the warm-up's requests have completed, as in dom0's benchmark.
    let warm_up = WARM_UP_BYTES / (per * 512);
    let warm = if total > warm_up { warm_up } else { 0 };
    let mut t0 = time::now();
    let end = t0 + time::us_to_ticks(60_000_000);
    while done < total {
        while next < total && nfree > 0 {
            nfree -= 1;
            let set = free[nfree];
            set_of[set] = next;
            let sector = (next % span) * per;
            // The id names the set: the response gives it back.
            let req = if big {
                let pages = (set * per_set, per_set);
                indirect(&f, set, op::READ, set as u64, sector, pages, |_, _| {})
            } else {
                Request {
                    op: op::READ,
                    nr_segments: per_set as u8,
                    id: set as u64,
                    sector,
                    seg: segments(f.first_gref + (set * per_set) as u32),
                    ..Request::default()
                }
            };
            if f.fr.push_request(req).is_err() {
                return out!("blk-bench: FAIL: ring full");
            }
            next += 1;
        }
        if f.fr.push_requests_and_check_notify() {
            let _ = hypercall::evtchn_send(f.port);
        }
        let mut got = false;
        loop {
            match f.fr.take_response() {
                Ok(Some(r)) => {
                    let set = r.id as usize;
                    if r.status != 0 || set >= depth || set_of[set] == u64::MAX {
                        return out!(
                            "blk-bench: FAIL at request {}: response id {} status {}",
                            done,
                            r.id,
                            r.status
                        );
                    }
                    set_of[set] = u64::MAX;
                    free[nfree] = set;
                    nfree += 1;
                    done += 1;
                    got = true;
                    if done == warm {
                        t0 = time::now();
                    }
                }
                Ok(None) if f.fr.final_check_for_responses() => {}
                Ok(None) => break,
                Err(_) => return out!("blk-bench: FAIL: the backend corrupted the ring"),
            }
        }
        if !got {
            if f.restores != rt::restores() {
                // A rate across a save would mean nothing (and its pages' VAs are not kept).
                return out!(
                    "blk-bench: FAIL: the domain was restored: blk-bench does not reconnect"
                );
            }
            if time::now() > end {
                return out!("blk-bench: FAIL: {done} of {total} requests answered in 60 s");
            }
            front::wait_port(f.port, 10);
        }
    }
    let us = time::ticks_to_us(time::now() - t0).max(1);
    let kib_read = (total - warm) * per / 2;
    out!(
        "blk-bench: read {kib_read} KiB through dom0 in {us} us, after {warm} requests of warm-up ({depth} requests of {kib} KiB outstanding): {} KiB/s",
        kib_read * 1_000_000 / us
    );
    close();
}
