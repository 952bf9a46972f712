//! The `log` backend. Log lines carry dom0's prefix, the time since boot and the vCPU, so that
//! under Ferrite (which shares the console) they are told apart from the hypervisor's own:
//! `dom0: [    0.012345] vcpu0 WARN  message`.

use crate::{cpu, timer};
use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger;

static LOGGER: Logger = Logger;

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        // Other crates' info lines (virtio-drivers logs its feature negotiation) count as debug,
        // so `loglevel=info` keeps to dom0's own lines.
        let ours = m.target().starts_with("ferrite_dom0");
        let level = if ours || m.level() <= Level::Warn {
            m.level()
        } else {
            m.level().max(Level::Debug)
        };
        level <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let us = timer::uptime_us();
        crate::console::write_fmt(format_args!(
            "dom0: [{:5}.{:06}] vcpu{} {:<5} {}\n",
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
    // Only a second call could fail, and there is none.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
