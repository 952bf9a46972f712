//! Ferrite's system tests: boot the real firmware image and check its console.
//!
//! The harness runs on the host. A [`Target`] starts Ferrite with its console connected and
//! returns a [`Run`]: QEMU ([`Qemu`]), with the console on QEMU's stdio or on a pty
//! ([`Serial::Pty`], read exactly like a board's `/dev/ttyUSB0`), or a board on a serial device
//! ([`board::SerialBoard`]). [`scenarios`] are the checks written against any target, which the
//! hardware-in-loop runner (`hil`) runs; [`sdcard`] checks a Raspberry Pi 4 SD-card image.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferrite_systests::{Exit, Qemu};
//!
//! let mut run = Qemu::virt().cpus(4).gic(3).bootargs("poweroff semihosting").spawn()?;
//! run.expect("ferrite: ready:", Duration::from_secs(30))?;
//! let out = run.wait_exit(Duration::from_secs(30))?;
//! out.ensure_exit(Exit::Code(0))?;
//! out.ensure(out.console.online_cpus().len() == 4, "all CPUs online")?;
//! # Ok::<(), ferrite_systests::Error>(())
//! ```
//!
//! - Images: `$FERRITE_IMAGE_DIR/<board>/ferrite.bin` (board dirs `qemu-virt`, `rpi4`);
//!   `FERRITE_IMAGE_DIR` defaults to `<workspace>/build`. A missing image is an error saying to
//!   run `make build`.
//! - raspi4b needs Debian's `bcm2711-rpi-4-b.dtb` in `build/debian/`; the harness runs
//!   `tools/fetch-debian.sh` when it is missing.
//! - Every run has an overall timeout (60 s by default) after which QEMU is killed; QEMU is also
//!   killed when the [`Run`] is dropped (a failing test unwinds through it), and it dies with the
//!   test thread that started it (`PR_SET_PDEATHSIG`) even if the test process is killed.
//! - Errors carry the whole console transcript and QEMU's stderr.
//! - `FERRITE_TEST_VERBOSE=1` echoes the console to stderr, each line prefixed with the label.
//! - `FERRITE_QEMU` overrides the QEMU binary.
//!
//! [`console`] parses the console format: log lines `[    0.012345] cpu0 INFO  message`, the
//! status line `ferrite: ready: N cpus, M MiB free`, `memory:`, `reserved:` and `frames:` lines,
//! `cpuN online`, `gic: vN`, and `ferrite: PANIC on cpuN at file:line: message`.

pub mod board;
pub mod console;
pub mod dtb;
pub mod error;
pub mod fake;
pub mod nullmodem;
pub mod paths;
mod process;
pub mod qemu;
pub mod run;
pub mod scenarios;
pub mod sdcard;
pub mod serial;
pub mod target;

pub use console::{MemoryBank, Range, Ready, Transcript};
pub use error::{Error, ErrorKind, Result};
pub use qemu::{Board, Qemu, Serial};
pub use run::{Exit, Machine, Outcome, Run};
pub use target::{Boot, Image, Target};
