//! The toolstack: domain lifecycle from dom0, like Xen's `xl` (docs/toolstack.md).
//!
//! A shell on dom0's console ([`shell`]) reads what is typed there (polled from dom0's main
//! loop) and runs commands ([`cmds`], [`xl`]) that call Ferrite's `DOMCTL` and `SCHED_CTL`
//! ([`ctl`], [`crate::sched`]). New domains are built from the PV domU image packed into dom0
//! at build time ([`image`]). Saved domains are kept in dom0's RAM ([`store`]).
//!
//! Boot options: `dom0.shell=off|on|run` (default `on`: the shell wakes at the first key typed;
//! `run` prints its prompt at once) and `dom0.exec=<cmd>;<cmd>;...` (run after `dom0: ready`,
//! before `poweroff`).

pub mod cmds;
pub mod ctl;
pub mod disk;
pub mod parse;
pub mod shell;
pub mod store;
pub mod xl;

use crate::{console, cpu, timer};
use core::sync::atomic::{AtomicBool, Ordering};

#[repr(C, align(4096))]
struct Aligned<T: ?Sized>(T);

static IMAGE: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/domu.elf")));

/// The PV domU image packed into dom0 (`FERRITE_DOMU_IMAGE` at build time); empty if none.
pub fn image() -> &'static [u8] {
    &IMAGE.0
}

static UNDER_FERRITE: AtomicBool = AtomicBool::new(false);
/// Commands come from `dom0.exec`, not a person: nothing waits for a key.
static SCRIPTED: AtomicBool = AtomicBool::new(false);

pub fn scripted() -> bool {
    SCRIPTED.load(Ordering::Relaxed)
}

pub fn under_ferrite() -> bool {
    UNDER_FERRITE.load(Ordering::Relaxed)
}

/// After `dom0: ready` and the other boot options: runs `dom0.exec`, then prepares the shell.
pub fn boot(opts: &crate::cmdline::Options, under_ferrite: bool) {
    UNDER_FERRITE.store(under_ferrite, Ordering::Relaxed);
    disk::set_area(opts.savearea);
    if let Some(script) = &opts.exec {
        SCRIPTED.store(true, Ordering::Relaxed);
        for c in parse::commands(script) {
            println!("ferrite# {c}");
            shell::run_line(c);
        }
        SCRIPTED.store(false, Ordering::Relaxed);
        println!("dom0: exec: done");
    }
    shell::init(opts.shell);
}

/// One turn of dom0's main loop: what was typed goes to the shell.
pub fn poll() {
    shell::poll();
}

/// Lets the back ends serve the domUs and waits for the next interrupt (at most a tick):
/// what a long command does between its steps.
pub fn idle() {
    crate::consback::service(false);
    crate::blkback::service(false);
    crate::netback::service(false);
    cpu::wfi();
}

/// Sleeps `ms` (serving the back ends); returns early with `true` if a key was typed (the key
/// is consumed).
pub fn sleep_or_key(ms: u64) -> bool {
    let deadline = timer::deadline_us(ms.saturating_mul(1000));
    loop {
        if console::read_byte().is_some() {
            return true;
        }
        if timer::counter() >= deadline {
            return false;
        }
        idle();
    }
}
