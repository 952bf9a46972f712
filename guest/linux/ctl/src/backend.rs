//! What every backend in Linux dom0's user space does through the control page: walking the
//! device bus, reading a device's entry, setting the backend's state, binding and sending on
//! event channels, and grant copies between a domU's granted pages and this process's memory
//! (or between two domUs' pages).

use crate::{Ctrl, Res, touch};
use ferrite_abi::call::{self, domctl};
use ferrite_abi::devbus::{self, state};
use ferrite_abi::errno::{self, Errno};
use ferrite_abi::evtchn;
use ferrite_abi::grant::{self, GrantCopy, GrantPtr, copy};
use ferrite_abi::ring::Pod;
use std::time::{Duration, Instant};

/// How often a user-space backend walks the bus, and how long it sleeps when a pass found
/// nothing to do (it cannot receive events: it polls).
const SCAN: Duration = Duration::from_millis(100);
const POLL: Duration = Duration::from_millis(1);

/// A backend that polls: what it does each pass.
pub trait Polled {
    /// Looks for devices (or domains) to connect and ones gone (every 100 ms).
    fn scan(&mut self);
    /// Serves every ring once; whether anything moved.
    fn serve_all(&mut self) -> bool;
    /// Lets go of everything: the backend stops.
    fn stop(&mut self);
}

/// Runs `b` until killed, or for `seconds`: a pass at once while passes find work, else one
/// a millisecond, and a scan every 100 ms. The control page is shared with other `ferrite-ctl`
/// runs (`create`, `list`): it is held for one pass at a time.
pub fn run_polled(c: &Ctrl, seconds: Option<u64>, b: &mut impl Polled) -> Res<()> {
    let end = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    let mut last_scan: Option<Instant> = None;
    while end.is_none_or(|e| Instant::now() < e) {
        c.lock()?;
        if last_scan.is_none_or(|t| t.elapsed() >= SCAN) {
            b.scan();
            last_scan = Some(Instant::now());
        }
        let busy = b.serve_all();
        c.unlock();
        if !busy {
            std::thread::sleep(POLL);
        }
    }
    c.lock()?;
    b.stop();
    c.unlock();
    Ok(())
}

/// What a device's entry says.
pub struct Entry {
    pub front: u8,
    pub back: u8,
    /// The grant reference of its ring page.
    pub ring: u32,
    /// The frontend's port, for dom0 to bind.
    pub port: u32,
    /// What the frontend asked for ([`devbus::feature`]); 0 from a version-1 control page.
    pub features: u64,
    /// The frontend's parameter; 0 from a version-1 control page.
    pub param: u64,
}

/// Every device of `kind` of every domain, as (domain, key).
pub fn devices(c: &Ctrl, kind: u32) -> Vec<(u16, u64)> {
    let mut seen = Vec::new();
    let mut dom = 0u64;
    while let Ok(next) = c.domctl(domctl::NEXT_DOMAIN, dom, 0, 0) {
        dom = next;
        let mut key = 0u64;
        while let Ok(k) =
            errno::result(c.call([call::DEVICE_OP as u64, devbus::NEXT, dom, key, 0, 0]))
        {
            key = k;
            if devbus::kind_of(key) == kind {
                seen.push((dom as u16, key));
            }
        }
    }
    seen
}

/// Device `key` of `dom`, or `None` when it is gone.
pub fn get(c: &Ctrl, dom: u16, key: u64) -> Option<Entry> {
    let st =
        errno::result(c.call([call::DEVICE_OP as u64, devbus::GET, dom as u64, key, 0, 0])).ok()?;
    let (features, param) = if c.has_x6() {
        (c.result(4), c.result(6))
    } else {
        (0, 0)
    };
    Some(Entry {
        front: (st & 0xff) as u8,
        back: ((st >> 8) & 0xff) as u8,
        ring: c.result(1) as u32,
        port: c.result(2) as u32,
        features,
        param,
    })
}

/// Why a frontend whose ring failed is disconnected: its domain is gone, or its frontend
/// closed, rather than `why` (which a backend that walks the bus every 100 ms sees first);
/// and whether its device is still there to be told.
pub fn why_disconnected(c: &Ctrl, dom: u16, key: u64, why: String) -> (String, bool) {
    match get(c, dom, key) {
        None => ("its domain is gone".into(), false),
        Some(e) if e.front == state::CLOSING || e.front == state::CLOSED => {
            ("the frontend closed".into(), true)
        }
        Some(_) => (why, true),
    }
}

/// Sets the backend's state, parameter and the features it honours (which a version-1
/// control page cannot carry: none then).
pub fn set_back(
    c: &Ctrl,
    dom: u16,
    key: u64,
    s: u8,
    param: u64,
    features: u64,
) -> Result<u64, Errno> {
    errno::result(c.call7([
        call::DEVICE_OP as u64,
        devbus::SET_BACK_STATE,
        dom as u64,
        key,
        s as u64,
        param,
        features,
    ]))
}

pub fn evtchn(c: &Ctrl, cmd: u64, a: u64, b: u64) -> Result<u64, Errno> {
    errno::result(c.call([call::EVTCHN_OP as u64, cmd, a, b, 0, 0]))
}

/// Binds the frontend's port, when Ferrite lets this dom0 bind one: our end, on which
/// responses are announced (Linux cannot receive events, so backends poll the rings).
pub fn bind(c: &Ctrl, dom: u16, port: u32) -> Option<u32> {
    evtchn(c, evtchn::BIND_INTERDOMAIN, dom as u64, port as u64)
        .ok()
        .map(|p| p as u32)
}

pub fn granted(dom: u16, gref: u32, offset: usize) -> GrantPtr {
    GrantPtr::granted(dom, gref, offset as u16)
}

pub fn local(p: *const u8) -> GrantPtr {
    GrantPtr::local(p as u64)
}

/// Grant copies, all or nothing: the first failing op's error.
pub fn copy(c: &Ctrl, ops: &mut [GrantCopy]) -> Result<(), Errno> {
    copy_each(c, ops)?;
    match ops.iter().find(|o| o.status != 0) {
        Some(op) => Err(Errno::from_ret(op.status as i64).unwrap_or(Errno::Inval)),
        None => Ok(()),
    }
}

/// Grant copies in calls of [`COPY_BATCH`], each op with its own outcome in its `status`
/// (Ferrite goes on past an op that fails): `Err` only when a call itself failed or stopped
/// short.
pub fn copy_each(c: &Ctrl, ops: &mut [GrantCopy]) -> Result<(), Errno> {
    for chunk in ops.chunks_mut(COPY_BATCH) {
        touch(crate::bytes_of_slice(chunk));
        let r = c.call([
            call::GNTTAB_OP as u64,
            grant::COPY,
            chunk.as_mut_ptr() as u64,
            chunk.len() as u64,
            0,
            0,
        ]);
        if (errno::result(r)? as usize) < chunk.len() {
            return Err(Errno::Inval);
        }
    }
    Ok(())
}

/// A `Pod` value read from `dom`'s grant `gref` at `offset`.
pub fn read<T: Pod + Default>(c: &Ctrl, dom: u16, gref: u32, offset: usize) -> Result<T, Errno> {
    let mut v = T::default();
    let p = (&mut v as *mut T).cast::<u8>();
    copy(
        c,
        &mut [GrantCopy {
            source: granted(dom, gref, offset),
            dest: local(p),
            len: size_of::<T>() as u16,
            flags: copy::SOURCE_GREF,
            status: 0,
        }],
    )?;
    Ok(v)
}

/// Where a ring's slots are: `dom`'s page `gref`, the slot array at `base`, `stride` bytes a
/// slot (a request's size, which a smaller response shares), `slots` of them.
#[derive(Clone, Copy)]
pub struct Slots {
    pub dom: u16,
    pub gref: u32,
    pub base: usize,
    pub stride: usize,
    pub slots: usize,
}

/// Most ops one `GNTTAB_OP COPY` takes.
const COPY_BATCH: usize = 64;

/// Copies between `vals` and slots `first..first + vals.len()` (free-running indices), an op
/// per slot in calls of [`COPY_BATCH`]: one trap through the control page per batch rather
/// than one per slot.
fn copy_slots<T: Pod>(
    c: &Ctrl,
    r: Slots,
    first: u32,
    vals: &mut [T],
    to_ring: bool,
) -> Result<(), Errno> {
    touch(crate::bytes_of_slice(vals));
    let mut ops: Vec<GrantCopy> = vals
        .iter_mut()
        .enumerate()
        .map(|(j, v)| {
            let slot = first.wrapping_add(j as u32) as usize % r.slots;
            let ring = granted(r.dom, r.gref, r.base + slot * r.stride);
            let mine = local((v as *mut T).cast::<u8>());
            let (source, dest, flags) = if to_ring {
                (mine, ring, copy::DEST_GREF)
            } else {
                (ring, mine, copy::SOURCE_GREF)
            };
            GrantCopy {
                source,
                dest,
                len: size_of::<T>() as u16,
                flags,
                status: 0,
            }
        })
        .collect();
    copy(c, &mut ops)
}

/// `n` slots of ring `r` from index `first`: a batch of requests read in one call.
pub fn read_slots<T: Pod + Default + Clone>(
    c: &Ctrl,
    r: Slots,
    first: u32,
    n: usize,
) -> Result<Vec<T>, Errno> {
    let mut out = vec![T::default(); n];
    copy_slots(c, r, first, &mut out, false)?;
    Ok(out)
}

/// Writes `vals` into slots of ring `r` from index `first`: a batch of responses in one call.
pub fn write_slots<T: Pod>(c: &Ctrl, r: Slots, first: u32, vals: &mut [T]) -> Result<(), Errno> {
    copy_slots(c, r, first, vals, true)
}

/// A `Pod` value written to `dom`'s grant `gref` at `offset`.
pub fn write<T: Pod>(c: &Ctrl, dom: u16, gref: u32, offset: usize, v: &T) -> Result<(), Errno> {
    let mut v = *v;
    touch(crate::bytes_of(&mut v));
    copy(
        c,
        &mut [GrantCopy {
            source: local((&v as *const T).cast()),
            dest: granted(dom, gref, offset),
            len: size_of::<T>() as u16,
            flags: copy::DEST_GREF,
            status: 0,
        }],
    )
}
