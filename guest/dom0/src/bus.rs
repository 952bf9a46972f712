//! The device bus from dom0's side ([`ferrite_abi::devbus`]): walking every domain's devices
//! of one kind, reading one, and setting the backend's state. The backends (`blkback`,
//! `netback`) decide what to do with each device.

use crate::psci::{hypercall, hypercall_regs, hypercall5, hypercall6};
use ferrite_abi::call::{self, domctl};
use ferrite_abi::devbus::{self, state};

/// What a device's entry says.
pub struct Entry {
    pub front: u8,
    pub back: u8,
    /// The grant reference of its ring page.
    pub ring: u32,
    /// Its port (the frontend's, for dom0 to bind).
    pub port: u32,
    /// What the frontend asked for ([`devbus::feature`]).
    pub features: u64,
    /// The frontend's parameter (kind-specific; see its feature bits).
    pub param: u64,
}

/// Calls `f(domain, key)` for every device of `kind` of every domain.
pub fn for_each(kind: u32, mut f: impl FnMut(u16, u64)) {
    let mut dom = 0u64;
    loop {
        let next = hypercall(call::DOMCTL, domctl::NEXT_DOMAIN, dom, 0);
        if next < 0 {
            break;
        }
        dom = next as u64;
        let mut key = 0u64;
        loop {
            let k = hypercall5(call::DEVICE_OP, devbus::NEXT, dom, key, 0, 0);
            if k < 0 {
                break;
            }
            key = k as u64;
            if devbus::kind_of(key) == kind {
                f(dom as u16, key);
            }
        }
    }
}

/// Device `key` of `dom`, if it exists.
pub fn get(dom: u16, key: u64) -> Option<Entry> {
    let mut regs = [0u64; 6];
    let st = hypercall_regs(call::DEVICE_OP, devbus::GET, dom as u64, key, &mut regs);
    (st >= 0).then(|| Entry {
        front: (st & 0xff) as u8,
        back: ((st >> 8) & 0xff) as u8,
        ring: regs[0] as u32,
        port: regs[1] as u32,
        features: regs[3],
        param: regs[5],
    })
}

/// Sets the backend's state (and parameter) of `dom`'s device `key`; the errno on failure.
pub fn set_back(dom: u16, key: u64, state: u8, param: u64) -> Result<(), i64> {
    set_back_features(dom, key, state, param, 0)
}

/// [`set_back`], honouring the frontend's [`devbus::feature`] bits `features`.
pub fn set_back_features(
    dom: u16,
    key: u64,
    state: u8,
    param: u64,
    features: u64,
) -> Result<(), i64> {
    let r = hypercall6(
        call::DEVICE_OP,
        [
            devbus::SET_BACK_STATE,
            dom as u64,
            key,
            state as u64,
            param,
            features,
        ],
    );
    if r < 0 { Err(r) } else { Ok(()) }
}

/// What a backend must do about a device after a change on the bus.
pub enum Change {
    /// A frontend is waiting for a backend: connect to its ring and port.
    Connect {
        ring: u32,
        port: u32,
        /// [`devbus::feature`] bits.
        features: u64,
        /// The frontend's parameter.
        param: u64,
    },
    /// A frontend this backend serves has closed.
    Disconnect,
    Nothing,
}

/// The change for `dom`'s device `key`, given whether this backend serves it already. A device
/// the backend refused (back state Closed) waits until its frontend publishes again. A served
/// device that is gone (its domain was destroyed) is a disconnection too.
pub fn change(dom: u16, key: u64, served: bool) -> Change {
    let Some(e) = get(dom, key) else {
        return if served {
            Change::Disconnect
        } else {
            Change::Nothing
        };
    };
    match (e.front, served) {
        (state::INITIALISED, false) if e.back != state::CONNECTED && e.back != state::CLOSED => {
            Change::Connect {
                ring: e.ring,
                port: e.port,
                features: e.features,
                param: e.param,
            }
        }
        (state::CLOSING | state::CLOSED, true) => Change::Disconnect,
        _ => Change::Nothing,
    }
}
