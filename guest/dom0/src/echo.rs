//! The echo backend ([`ferrite_abi::devbus::kind::ECHO`]): for each domU that publishes an echo
//! device, dom0 binds its port and marks it an echo port, so the event interrupt sends every
//! event on it straight back ([`crate::events::set_echo`]); nothing else is done per event.
//! It exists to measure the event-channel round trip (a domU's `evt-ping`, docs/io.md).
//! Connecting and disconnecting happen here, in the main loop, when the device bus changes.

use crate::bus::Change;
use crate::events;
use alloc::vec::Vec;
use ferrite_abi::devbus::{kind, state};
use ferrite_abi::evtchn as ev;
use spin::Mutex;

/// Connected devices: (domain, key, dom0's port).
static FRONTS: Mutex<Vec<(u16, u64, u32)>> = Mutex::new(Vec::new());

/// The main loop's look: walks the bus if it changed (the first call always does).
pub fn service() {
    if events::ready() && events::bus_changed() {
        crate::bus::for_each(kind::ECHO, consider);
    }
}

fn consider(dom: u16, key: u64) {
    let mut fronts = FRONTS.lock();
    let mut known = fronts.iter().position(|f| f.0 == dom && f.1 == key);
    // A device we serve that waits for a backend again belongs to a new domain with the same
    // id (the old one was destroyed without closing it): forget the old connection.
    if let Some(i) = known
        && crate::bus::get(dom, key)
            .is_some_and(|e| e.front == state::INITIALISED && e.back != state::CONNECTED)
    {
        let (_, _, local) = fronts.remove(i);
        events::set_echo(local, false);
        let _ = events::op(ev::CLOSE, local as u64, 0);
        known = None;
    }
    match (crate::bus::change(dom, key, known.is_some()), known) {
        (Change::Connect { port, .. }, _) => {
            match events::op(ev::BIND_INTERDOMAIN, dom as u64, port as u64) {
                Ok(local) => {
                    events::set_echo(local as u32, true);
                    fronts.push((dom, key, local as u32));
                    let _ = crate::bus::set_back(dom, key, state::CONNECTED, 0);
                    println!("dom0: echo: dom{dom}: connected (its port {port}, ours {local})");
                }
                Err(e) => {
                    println!("dom0: echo: dom{dom}: not connected: cannot bind port {port}: {e}");
                    let _ = crate::bus::set_back(dom, key, state::CLOSED, 0);
                }
            }
        }
        (Change::Disconnect, Some(i)) => {
            let (dom, key, local) = fronts.remove(i);
            events::set_echo(local, false);
            let _ = events::op(ev::CLOSE, local as u64, 0);
            let _ = crate::bus::set_back(dom, key, state::CLOSED, 0);
            println!("dom0: echo: dom{dom}: the frontend closed: disconnected");
        }
        _ => {}
    }
}
