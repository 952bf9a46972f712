//! The `log` backend: every line carries the time since boot and the CPU that wrote it.
//!
//! Format (documented in docs/console.md, matched by tests and hardware-in-loop rigs):
//! `[    0.012345] cpu0 INFO  message`.

use crate::arch::{cpu, timer};
use log::{LevelFilter, Log, Metadata, Record};

struct Logger;

static LOGGER: Logger = Logger;

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let us = timer::uptime_us();
        crate::console::write_fmt(format_args!(
            "[{:5}.{:06}] cpu{} {:<5} {}\n",
            us / 1_000_000,
            us % 1_000_000,
            cpu::index(),
            r.level(),
            r.args()
        ));
    }

    fn flush(&self) {}
}

pub fn init(level: LevelFilter) {
    // A second call (there is none) would only fail to replace the logger, so ignoring is right.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
