//! What a scenario runs on: QEMU ([`crate::Qemu`], console on stdio or a pty) or a board on a
//! serial device ([`crate::board::SerialBoard`]).
//!
//! A scenario ([`crate::scenarios`]) says what to boot as a [`Boot`]: which of the built images,
//! Ferrite's boot options and how long Ferrite may take. The target turns that into a run: QEMU
//! loads the image with `-kernel` and the options with `-append`; a board has them installed
//! (SD card, TFTP directory) and is power-cycled. Either way Ferrite finds the options in the
//! device tree's `/chosen/bootargs`, and the harness reads the console from the first byte on.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Result;
use crate::paths;
use crate::run::Run;

/// Which of the images `make build` writes to `build/<board>/` to boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    /// `ferrite.bin`: Ferrite alone.
    Ferrite,
    /// `ferrite-dom0.bin`: Ferrite with Ferrite's dom0 and the test PV domU packed in, the image
    /// that goes on a Raspberry Pi 4's SD card.
    WithDomains,
}

impl Image {
    pub fn file_name(self) -> &'static str {
        match self {
            Image::Ferrite => "ferrite.bin",
            Image::WithDomains => "ferrite-dom0.bin",
        }
    }

    /// `$FERRITE_IMAGE_DIR/<board_dir>/<file>`.
    pub fn path(self, board_dir: &str) -> PathBuf {
        paths::image_dir().join(board_dir).join(self.file_name())
    }
}

/// One boot a scenario asks for.
#[derive(Clone, Debug)]
pub struct Boot {
    /// Names the run in labels and errors (the scenario's name).
    pub label: String,
    pub image: Image,
    /// Ferrite's boot options (then, after `--`, dom0's), as `/chosen/bootargs` will hold them.
    /// Never `semihosting`: the same words must work on a board.
    pub bootargs: String,
    /// How long the whole run may take once Ferrite has been started; a target adds what it needs
    /// before that (a board's firmware, an install), and kills the run when it is over.
    pub timeout: Duration,
}

impl Boot {
    pub fn new(label: impl Into<String>, image: Image, bootargs: impl Into<String>) -> Boot {
        Boot {
            label: label.into(),
            image,
            bootargs: bootargs.into(),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn timeout(mut self, timeout: Duration) -> Boot {
        self.timeout = timeout;
        self
    }
}

/// Something Ferrite boots on, whose console the harness reads.
///
/// Scenarios take a `&dyn Target`, so the same checks run on QEMU and on a board. A board target
/// opens its serial device with [`crate::serial::open_raw`] (as the QEMU pty target does),
/// powers the board on, and hands both to [`Run::start`] with a [`crate::Machine`] that powers
/// it off when killed.
pub trait Target {
    /// What runs, for logs (e.g. the QEMU command line, or the serial device and commands).
    fn describe(&self) -> String;

    /// Boots it as configured, with the console connected from the first byte on.
    fn start(&self) -> Result<Run>;

    /// Boots `boot` (its image and boot options) with the console connected from the first byte
    /// on. The run is killed after `boot.timeout` plus the target's own start-up allowance.
    fn boot(&self, boot: &Boot) -> Result<Run>;
}
