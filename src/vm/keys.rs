//! Ferrite's console input: it goes to dom0's emulated UART, or, after Ctrl-A three times, to
//! Ferrite's own keys (`crate::conswitch`): a look at the domains and memory without dom0.

use super::domctl::info;
use crate::conswitch::{Focus, Input, Switch};
use ferrite_abi::ctl::state;
use spin::Mutex;

static SWITCH: Mutex<Switch> = Mutex::new(Switch::new());

/// Bytes typed on Ferrite's console (interrupts masked: called from the UART's handler).
pub fn input(bytes: &[u8]) {
    let mut to_dom0 = [0u8; 96];
    let mut n = 0;
    for &b in bytes {
        let r = SWITCH.lock().feed(b);
        match r {
            Input::Held => {}
            Input::Switched(Focus::Ferrite) => crate::println!(
                "\nferrite: console input goes to Ferrite ('h' lists its keys; Ctrl-A three \
                 times goes back to dom0)"
            ),
            Input::Switched(Focus::Dom0) => {
                crate::println!("\nferrite: console input goes to dom0")
            }
            Input::Forward(out, k) => {
                if SWITCH.lock().focus() == Focus::Ferrite {
                    out[..k].iter().for_each(|&c| key(c));
                } else {
                    for &c in &out[..k] {
                        if n == to_dom0.len() {
                            super::console_to_dom0(&to_dom0[..n]);
                            n = 0;
                        }
                        to_dom0[n] = c;
                        n += 1;
                    }
                }
            }
        }
    }
    if n > 0 {
        super::console_to_dom0(&to_dom0[..n]);
    }
}

fn key(c: u8) {
    match c {
        b'h' => crate::println!(
            "ferrite keys: h this help, l list the domains, m memory, Ctrl-A three times: back \
             to dom0"
        ),
        b'l' => list(),
        b'm' => {
            let (total, free) = crate::boot::FRAMES
                .lock()
                .as_ref()
                .map_or((0, 0), |f| (f.total_frames(), f.free_frames()));
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
