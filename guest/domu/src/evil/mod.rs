//! `evil`: an adversarial domU. It tries, one by one, the things docs/abi.md says Ferrite must
//! refuse, and prints a line per attempt:
//!
//! - `domU<id>: evil: <name>: refused <how>`: `<how>` is the errno name (`EPERM`, `EINVAL`,
//!   ...), `undef` (an Undefined exception came back), `fault` (an EL1 abort, caught by its
//!   own vectors), or `exception` (another class, with its EC). If it was refused differently
//!   from what the ABI says, ` (unexpected)` follows, and a second line
//!   `domU<id>: evil-expected: <name>: <what the ABI says>`;
//! - `domU<id>: evil: <name>: ALLOWED` when it was not refused: a bug in Ferrite.
//!
//! It ends with `domU<id>: evil: done, <n> refused, <m> allowed` and powers off. The attempts
//! that would wreck the domain if Ferrite allowed them come last; where it can, each attempt is
//! built to be harmless if allowed (a mapping in a table linked nowhere, a value written back
//! unchanged) and undone.
//!
//! `evil-crash` (or `evil crash`) prints `domU<id>: crashing on purpose` and shuts down with
//! reason crash (3), something no error return can express.

mod calls;
mod insns;

use core::fmt;
use ferrite_abi::desc::{self, NORMAL};
use ferrite_abi::{Errno, StartInfo, sched};
use ferrite_pv::exceptions::{Trap, TrapKind};
use ferrite_pv::hypercall;
use ferrite_pv::mm::{FrameMap, Machine, MmError};

/// What an attempt came to.
#[derive(Clone, Copy)]
pub enum Outcome {
    /// x0 of the call (for an instruction that ran: 0).
    Ret(i64),
    /// The instruction took a synchronous exception.
    Trap(Trap),
    /// Not attempted, and why.
    Skip(&'static str),
}

impl Outcome {
    pub fn of_trap(t: Option<Trap>) -> Self {
        t.map_or(Self::Ret(0), Self::Trap)
    }
}

/// How an attempt was refused.
enum How {
    Errno(Errno),
    Raw(i64),
    Undef,
    Fault(TrapKind),
    Exception(u8),
}

impl How {
    fn of(o: &Outcome) -> Option<Self> {
        Some(match *o {
            Outcome::Ret(r) if r >= 0 => return None,
            Outcome::Ret(r) => Errno::from_ret(r).map_or(Self::Raw(r), Self::Errno),
            Outcome::Trap(t) => match t.kind() {
                TrapKind::Undefined => Self::Undef,
                TrapKind::Other { ec } => Self::Exception(ec),
                k => Self::Fault(k),
            },
            Outcome::Skip(_) => return None,
        })
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Errno(e) => e.name(),
            Self::Raw(_) => "error",
            Self::Undef => "undef",
            Self::Fault(_) => "fault",
            Self::Exception(_) => "exception",
        }
    }
}

impl fmt::Display for How {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.label())?;
        match self {
            Self::Raw(r) => write!(f, " {r}"),
            Self::Exception(ec) => write!(f, " EC {ec:#x}"),
            Self::Fault(k) => write!(f, " ({k})"),
            _ => Ok(()),
        }
    }
}

/// What the attempts work with: a few pinned scratch tables, frames, foreign addresses.
#[derive(Clone, Copy)]
pub struct Setup {
    pub si: &'static StartInfo,
    pub frames: FrameMap<'static>,
    /// Pinned standalone tables of levels 3, 2 and 0 (linked nowhere).
    pub t3: u64,
    pub t2: u64,
    pub t0: u64,
    /// A sealed (read-only), zeroed frame that is not a table.
    pub sealed: u64,
    /// A sealed frame whose entry 0 maps the GIC: an illegal level-3 table.
    pub bad_table: u64,
    /// One of our free frames, still mapped writable in the initial map.
    pub writable: u64,
    /// RAM the domain does not own.
    pub foreign: u64,
    /// The frame just below the domain's lowest one, if that is not ours.
    pub below: Option<u64>,
}

/// The GIC distributor on QEMU virt: device memory, never a domU's.
pub const GIC: u64 = 0x0800_0000;
/// An address nothing maps in the (empty) lower half: a garbage buffer VA.
pub const BAD_VA: u64 = 0x1000;

pub struct Evil {
    pub s: Setup,
    refused: u32,
    allowed: u32,
}

impl Evil {
    /// Reports one attempt; `expect` is what the ABI says (an errno name, `undef`, `fault`;
    /// alternatives separated by `|`).
    pub fn report(&mut self, name: &str, expect: &str, o: Outcome) {
        if let Outcome::Skip(why) = o {
            out!("evil: {name}: skipped ({why})");
            return;
        }
        match How::of(&o) {
            None => {
                self.allowed += 1;
                out!("evil: {name}: ALLOWED");
            }
            Some(how) => {
                self.refused += 1;
                if expect.split('|').any(|x| x == how.label()) {
                    out!("evil: {name}: refused {how}");
                } else {
                    // The expectation goes on a line of its own, so that a search for
                    // "<name> ... <expected>" does not find the wrong refusal.
                    out!("evil: {name}: refused {how} (unexpected)");
                    out!("evil-expected: {name}: {expect}");
                }
            }
        }
    }
}

fn not_ours(frames: &FrameMap, ma: u64) -> Option<u64> {
    (!frames.owns(ma)).then_some(ma)
}

fn setup(si: &'static StartInfo) -> Result<Setup, (&'static str, MmError)> {
    let mut mm = crate::mm();
    let frames = mm.frames;
    let table = |mm: &mut ferrite_pv::mm::Mm<_>, level: u8, what| {
        let (_, ma) = mm.new_table().map_err(|e| (what, e))?;
        mm.flush().map_err(|e| (what, e))?;
        mm.pin(level, ma).map_err(|e| (what, e))?;
        Ok::<u64, (&'static str, MmError)>(ma)
    };
    let t3 = table(&mut mm, 3, "pinning a scratch L3")?;
    let t2 = table(&mut mm, 2, "pinning a scratch L2")?;
    let t0 = table(&mut mm, 0, "pinning a scratch L0")?;
    let (_, sealed) = mm.new_table().map_err(|e| ("sealing a frame", e))?;
    let (bad_pfn, bad_table) = mm.alloc_zeroed().map_err(|e| ("a bad table", e))?;
    // SAFETY: a frame just allocated: nothing else uses it.
    unsafe { mm.machine.write_u64(bad_table, desc::page(GIC, NORMAL)) };
    // SAFETY: written; nothing writes it again.
    unsafe { mm.set_initial_writable(bad_pfn, false) }.map_err(|e| ("a bad table", e))?;
    mm.flush().map_err(|e| ("sealing frames", e))?;
    let (_, writable) = mm.alloc_zeroed().map_err(|e| ("a writable frame", e))?;
    let (lo, hi) = (
        frames.lowest_ma().unwrap_or(0),
        frames.highest_ma().unwrap_or(0),
    );
    let below = lo.checked_sub(0x1000).and_then(|m| not_ours(&frames, m));
    let foreign = not_ours(&frames, 0x4000_0000)
        .or(below)
        .unwrap_or(hi + 0x1000);
    Ok(Setup {
        si,
        frames,
        t3,
        t2,
        t0,
        sealed,
        bad_table,
        writable,
        foreign,
        below,
    })
}

pub fn run(si: &'static StartInfo) {
    let s = match setup(si) {
        Ok(s) => s,
        Err((step, e)) => {
            out!("evil: FAIL: setting up ({step}): {e}");
            return;
        }
    };
    let mut e = Evil {
        s,
        refused: 0,
        allowed: 0,
    };
    calls::mappings(&mut e);
    calls::tables(&mut e);
    calls::pins(&mut e);
    calls::bases(&mut e);
    calls::updates(&mut e);
    calls::mmuext(&mut e);
    calls::misc(&mut e);
    calls::memory(&mut e);
    insns::system_registers(&mut e);
    insns::memory(&mut e);
    // Last: what would stop or wreck the domain if Ferrite allowed it.
    calls::last(&mut e);
    insns::sctlr_mmu_off(&mut e);
    out!("evil: done, {} refused, {} allowed", e.refused, e.allowed);
}

pub fn crash() -> ! {
    out!("crashing on purpose");
    if let Err(e) = hypercall::shutdown(sched::SHUTDOWN_CRASH) {
        out!("evil-crash: SHUTDOWN (crash) refused: {e}");
    } else {
        out!("evil-crash: SHUTDOWN (crash) returned");
    }
    ferrite_pv::cpu::park()
}
