//! Request/response rings in one shared page, with Xen's `ring.h` semantics.
//!
//! The page starts with a 64-byte header (`req_prod`, `req_event`, `rsp_prod`, `rsp_event`)
//! followed by `N` slots (a power of two), each holding a request or a response. The front end
//! (a frontend driver) produces requests and consumes responses; the back end the reverse. Each
//! side keeps private indices and publishes them: requests become visible when the front end
//! publishes `req_prod`, responses when the back end publishes `rsp_prod`. Indices run freely
//! (wrapping `u32`) and are masked to a slot only when a slot is touched, so no index a peer
//! writes can make this side touch memory outside the ring.
//!
//! Notification thresholds: a consumer that has run out of work sets `*_event` to "wake me when
//! the producer passes this index" ([`FrontRing::final_check_for_responses`],
//! [`BackRing::final_check_for_requests`]); a producer that publishes notifies the peer (an
//! event channel send) only when it crossed that index (`push_*_and_check_notify` return
//! whether to). Together they send one notification per batch, never lose one.
//!
//! Hostile peers: a back end that sees more requests than the ring can hold (`req_prod`
//! beyond `rsp_prod_pvt + N`), or a front end that sees responses to requests it never made,
//! gets [`Corrupt`] and should disconnect that peer; nothing is read from or written to outside
//! the slots in any case.

use core::cell::UnsafeCell;
use core::mem::{MaybeUninit, size_of};
use core::sync::atomic::{AtomicU32, Ordering, fence};

/// Types that may travel in a ring: any bit pattern is a valid value (a peer writes the bytes).
///
/// # Safety
/// The type must be `Copy`, `#[repr(C)]` or a primitive, with no padding-dependent invariants,
/// references, `bool`s or enums: every bit pattern of its size must be a valid value.
pub unsafe trait Pod: Copy {}
// SAFETY: integers and arrays of them accept every bit pattern.
unsafe impl Pod for u8 {}
// SAFETY: as above.
unsafe impl Pod for u16 {}
// SAFETY: as above.
unsafe impl Pod for u32 {}
// SAFETY: as above.
unsafe impl Pod for u64 {}
// SAFETY: as above.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// The peer broke the ring's invariants; the ring is unusable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// A slot: a request or a response.
#[repr(C)]
pub union Slot<Q: Pod, S: Pod> {
    req: Q,
    rsp: S,
}

/// The shared page's layout.
#[repr(C)]
pub struct SharedRing<Q: Pod, S: Pod, const N: usize> {
    pub req_prod: AtomicU32,
    pub req_event: AtomicU32,
    pub rsp_prod: AtomicU32,
    pub rsp_event: AtomicU32,
    _pad: [u8; 48],
    slots: [UnsafeCell<MaybeUninit<Slot<Q, S>>>; N],
}

impl<Q: Pod, S: Pod, const N: usize> SharedRing<Q, S, N> {
    /// Compile-time checks: `N` a power of two, the ring within a 4 KiB page.
    const CHECK: () = {
        assert!(N.is_power_of_two());
        assert!(size_of::<Self>() <= 4096);
    };

    /// Resets the header of a fresh page (the front end does this before sharing it): both
    /// producers at 0, both thresholds at 1 (notify on the first item).
    pub fn init(&self) {
        let () = Self::CHECK;
        self.req_prod.store(0, Ordering::Relaxed);
        self.rsp_prod.store(0, Ordering::Relaxed);
        self.req_event.store(1, Ordering::Relaxed);
        self.rsp_event.store(1, Ordering::Release);
    }

    fn slot(&self, idx: u32) -> *mut Slot<Q, S> {
        // The mask keeps every access inside `slots`, whatever the index.
        self.slots[idx as usize & (N - 1)].get().cast()
    }

    fn read_req(&self, idx: u32) -> Q {
        // SAFETY: the slot is inside the ring; `Q: Pod` accepts any bytes the peer wrote; a
        // volatile read because the peer may write concurrently (it then gets torn data it
        // produced itself, not undefined behaviour on our side).
        unsafe { core::ptr::read_volatile(&raw const (*self.slot(idx)).req) }
    }

    fn read_rsp(&self, idx: u32) -> S {
        // SAFETY: as in `read_req`.
        unsafe { core::ptr::read_volatile(&raw const (*self.slot(idx)).rsp) }
    }

    fn write_req(&self, idx: u32, q: Q) {
        // SAFETY: the slot is inside the ring; the producer owns it until it publishes.
        unsafe { core::ptr::write_volatile(&raw mut (*self.slot(idx)).req, q) }
    }

    fn write_rsp(&self, idx: u32, s: S) {
        // SAFETY: as in `write_req`.
        unsafe { core::ptr::write_volatile(&raw mut (*self.slot(idx)).rsp, s) }
    }
}

// SAFETY: all shared state is atomics or slots accessed with volatile copies of `Pod` data.
unsafe impl<Q: Pod, S: Pod, const N: usize> Sync for SharedRing<Q, S, N> {}

/// Whether publishing `new` after `old` crosses the peer's threshold `event`.
fn crosses(event: u32, old: u32, new: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// The front end's view: it makes requests and takes responses.
pub struct FrontRing<'a, Q: Pod, S: Pod, const N: usize> {
    ring: &'a SharedRing<Q, S, N>,
    req_prod_pvt: u32,
    rsp_cons: u32,
}

impl<'a, Q: Pod, S: Pod, const N: usize> FrontRing<'a, Q, S, N> {
    /// Attaches to a ring whose header was [`SharedRing::init`]ed.
    pub fn new(ring: &'a SharedRing<Q, S, N>) -> Self {
        let () = SharedRing::<Q, S, N>::CHECK;
        Self {
            ring,
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    /// Requests that can still be made before responses are taken.
    pub fn free_requests(&self) -> usize {
        N - self.req_prod_pvt.wrapping_sub(self.rsp_cons) as usize
    }

    /// Places a request (not yet visible); gives it back if the ring is full.
    pub fn push_request(&mut self, q: Q) -> Result<(), Q> {
        if self.free_requests() == 0 {
            return Err(q);
        }
        self.ring.write_req(self.req_prod_pvt, q);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the placed requests; true if the back end must be notified.
    pub fn push_requests_and_check_notify(&mut self) -> bool {
        let old = self.ring.req_prod.load(Ordering::Relaxed);
        let new = self.req_prod_pvt;
        self.ring.req_prod.store(new, Ordering::Release);
        // The producer index must be visible before the threshold is read (the peer writes the
        // threshold, then reads the index).
        fence(Ordering::SeqCst);
        crosses(self.ring.req_event.load(Ordering::Relaxed), old, new)
    }

    /// Takes the next response, if one is published. `Corrupt` if the back end published
    /// responses to requests that were never made.
    pub fn take_response(&mut self) -> Result<Option<S>, Corrupt> {
        let prod = self.ring.rsp_prod.load(Ordering::Acquire);
        let avail = prod.wrapping_sub(self.rsp_cons);
        if avail > self.req_prod_pvt.wrapping_sub(self.rsp_cons) {
            return Err(Corrupt);
        }
        if avail == 0 {
            return Ok(None);
        }
        let s = self.ring.read_rsp(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Ok(Some(s))
    }

    /// After draining: asks to be notified of the next response, and returns true if one
    /// arrived meanwhile (then drain again instead of waiting).
    pub fn final_check_for_responses(&mut self) -> bool {
        if self.ring.rsp_prod.load(Ordering::Acquire) != self.rsp_cons {
            return true;
        }
        self.ring
            .rsp_event
            .store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.ring.rsp_prod.load(Ordering::Acquire) != self.rsp_cons
    }

    /// Requests made and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons) as usize
    }
}

/// The back end's view: it takes requests and makes responses.
pub struct BackRing<'a, Q: Pod, S: Pod, const N: usize> {
    ring: &'a SharedRing<Q, S, N>,
    req_cons: u32,
    rsp_prod_pvt: u32,
}

impl<'a, Q: Pod, S: Pod, const N: usize> BackRing<'a, Q, S, N> {
    /// Attaches to a ring the front end initialised, at its current indices: a back end that
    /// (re)connects starts where the published responses end.
    pub fn new(ring: &'a SharedRing<Q, S, N>) -> Self {
        let () = SharedRing::<Q, S, N>::CHECK;
        let rsp = ring.rsp_prod.load(Ordering::Acquire);
        Self {
            ring,
            req_cons: rsp,
            rsp_prod_pvt: rsp,
        }
    }

    /// Takes the next published request. `Corrupt` if the front end claims more outstanding
    /// requests than the ring holds.
    pub fn take_request(&mut self) -> Result<Option<Q>, Corrupt> {
        let prod = self.ring.req_prod.load(Ordering::Acquire);
        if prod.wrapping_sub(self.rsp_prod_pvt) as usize > N {
            return Err(Corrupt);
        }
        if prod == self.req_cons {
            return Ok(None);
        }
        let q = self.ring.read_req(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Ok(Some(q))
    }

    /// Places a response to the oldest unanswered request (not yet visible); gives it back if
    /// every request taken has its response.
    pub fn push_response(&mut self, s: S) -> Result<(), S> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(s);
        }
        self.ring.write_rsp(self.rsp_prod_pvt, s);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the placed responses; true if the front end must be notified.
    pub fn push_responses_and_check_notify(&mut self) -> bool {
        let old = self.ring.rsp_prod.load(Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        self.ring.rsp_prod.store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        crosses(self.ring.rsp_event.load(Ordering::Relaxed), old, new)
    }

    /// After draining: asks to be notified of the next request, and returns true if one
    /// arrived meanwhile.
    pub fn final_check_for_requests(&mut self) -> bool {
        if self.ring.req_prod.load(Ordering::Acquire) != self.req_cons {
            return true;
        }
        self.ring
            .req_event
            .store(self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.ring.req_prod.load(Ordering::Acquire) != self.req_cons
    }
}

#[cfg(test)]
mod tests;
