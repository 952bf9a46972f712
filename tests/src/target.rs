//! What a scenario runs on: QEMU today, a board on a serial device later.

use crate::error::Result;
use crate::run::Run;

/// Something Ferrite boots on, whose console the harness reads.
///
/// Scenarios take a `&dyn Target`, so the same checks run on QEMU ([`crate::Qemu`]) and, later,
/// on a board: a board target opens its serial device with [`crate::serial::open_raw`] (as the
/// QEMU pty target does), resets or powers the board on, and hands both to [`Run::start`] with a
/// [`crate::Machine`] that powers it off when killed.
pub trait Target {
    /// What runs, for logs (e.g. the QEMU command line).
    fn describe(&self) -> String;

    /// Boots it with the console connected from the first byte on.
    fn start(&self) -> Result<Run>;
}
