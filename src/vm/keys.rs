//! Ferrite's console input: it goes to dom0's emulated UART, to Ferrite's own keys, or to a
//! domU's console ring, moved on by Ctrl-A three times (`crate::conswitch`).

use super::domctl::info;
use crate::conswitch::{Focus, Input, Switch, next};
use crate::domain::DomId;
use core::sync::atomic::Ordering;
use ferrite_abi::console_ring::{ConsoleRing, IN_SIZE};
use ferrite_abi::ctl::state;
use spin::Mutex;

static SWITCH: Mutex<(Switch, Focus)> = Mutex::new((Switch::new(), Focus::Dom0));

/// The domUs whose console can take input: running PV domUs with a console ring.
fn consoles() -> alloc::vec::Vec<DomId> {
    super::domains()
        .filter(|d| d.pv().is_some() && super::is_running(d))
        .filter(|d| super::grant::console_page(d.id) != 0)
        .map(|d| d.id)
        .collect()
}

/// Bytes typed on Ferrite's console (interrupts masked: called from the UART's handler).
pub fn input(bytes: &[u8]) {
    let mut to_dom0 = [0u8; 96];
    let mut n = 0;
    for &b in bytes {
        let (r, focus) = {
            let mut g = SWITCH.lock();
            let r = g.0.feed(b);
            (r, g.1)
        };
        match r {
            Input::Held => {}
            Input::Switch => {
                let f = next(focus, &consoles());
                SWITCH.lock().1 = f;
                match f {
                    Focus::Ferrite => crate::println!(
                        "\nferrite: console input goes to Ferrite ('h' lists its keys; Ctrl-A \
                         three times moves on)"
                    ),
                    Focus::Dom0 => crate::println!("\nferrite: console input goes to dom0"),
                    Focus::Domu(id) => crate::println!(
                        "\nferrite: console input goes to domain {id} ({})",
                        super::domain(id).map_or("?", |d| d.name.as_str())
                    ),
                }
            }
            Input::Forward(out, k) => match focus {
                Focus::Ferrite => out[..k].iter().for_each(|&c| key(c)),
                Focus::Domu(id) => to_domu(id, &out[..k]),
                Focus::Dom0 => {
                    for &c in &out[..k] {
                        if n == to_dom0.len() {
                            super::console_to_dom0(&to_dom0[..n]);
                            n = 0;
                        }
                        to_dom0[n] = c;
                        n += 1;
                    }
                }
            },
        }
    }
    if n > 0 {
        super::console_to_dom0(&to_dom0[..n]);
    }
}

/// Puts typed bytes in domU `id`'s console ring (its `inp` half) and signals its console port,
/// as dom0's console back end would. A full ring drops them, said once per burst.
fn to_domu(id: DomId, bytes: &[u8]) {
    let page = super::grant::console_page(id);
    let port = super::events::console_port(id);
    let (Some(_), Some(port), true) = (super::domain(id), port, page != 0) else {
        crate::println!("ferrite: domain {id} is gone; Ctrl-A three times moves on");
        return;
    };
    // SAFETY: the domU's console page (GREF_CONSOLE), one of its frames Ferrite holds for its
    // life, identity-mapped, never a page table; only the atomics and `inp` are touched,
    // which the ring's protocol gives to the input producer.
    let ring = unsafe { &mut *(page as *mut ConsoleRing) };
    let cons = ring.in_cons.load(Ordering::Acquire);
    let mut prod = ring.in_prod.load(Ordering::Relaxed);
    let mut dropped = false;
    for &b in bytes {
        if prod.wrapping_sub(cons) as usize >= IN_SIZE {
            dropped = true;
            break;
        }
        ring.inp[prod as usize % IN_SIZE] = b;
        prod = prod.wrapping_add(1);
    }
    ring.in_prod.store(prod, Ordering::Release);
    if dropped {
        log::warn!("domain {id}: its console input ring is full; typed bytes dropped");
    }
    super::events::deliver(crate::evtchn::Target {
        dom: id,
        port,
        vcpu: 0,
    });
}

fn key(c: u8) {
    match c {
        b'h' => crate::println!(
            "ferrite keys: h this help, l list the domains, m memory; Ctrl-A three times: each \
             domU's console, then dom0"
        ),
        b'l' => list(),
        b'm' => {
            let (total, free) = crate::boot::frame_counts();
            let (heap_used, heap) = crate::mm::heap::usage();
            crate::println!(
                "ferrite: memory: {} of {} MiB free for domains; heap {} of {} KiB in use",
                free / 256,
                total / 256,
                heap_used / 1024,
                heap / 1024
            );
        }
        b'\r' | b'\n' => {}
        other => crate::println!("ferrite: no key {:?} ('h' lists them)", other as char),
    }
}

fn list() {
    crate::println!("Name                     ID   Mem VCPUs State  Time(s)");
    for d in super::domains() {
        let i = info(d);
        let st = match i.state {
            state::RUNNING => "r-----",
            state::PAUSED => "--p---",
            state::SHUTDOWN => "---s--",
            state::CRASHED => "----c-",
            _ => "-----d",
        };
        crate::println!(
            "{:<24} {:>3} {:>5} {:>5} {st} {:>8}.{}",
            i.name(),
            i.id,
            i.mem_kib / 1024,
            i.vcpus,
            i.cpu_ns / 1_000_000_000,
            (i.cpu_ns / 100_000_000) % 10
        );
    }
}
