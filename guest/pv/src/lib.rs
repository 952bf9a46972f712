//! `ferrite-pv`: what a paravirtualised (PV) domU needs to run on Ferrite, written against the
//! ABI in `ferrite-abi` and docs/abi.md only.
//!
//! - [`hypercall`]: the `hvc #0` wrapper and one typed function per call;
//! - [`console`]: `print!` / `println!` through `CONSOLE_IO`;
//! - [`mm`]: the PV MMU from the guest's side: pfn / machine-address bookkeeping, a frame
//!   allocator, a batching `MMU_UPDATE` queue and a page-table manager;
//! - [`events`]: the upcall protocol of the shared-info page;
//! - [`time`]: the virtual counter, `SET_TIMER_OP` and sleeping;
//! - [`exceptions`]: EL1 vectors, and [`exceptions::try_insn`] to run one instruction that is
//!   expected to be refused (undefined instruction, permission fault) and carry on;
//! - [`rt`]: the entry point (`_start`), start of day, [`entry!`]; [`smp`]: secondary vCPUs;
//! - [`cpu`], [`sync`]: small helpers.
//!
//! docs/pv-guest.md explains how to write a domU with it. Everything that is not an
//! instruction (batch building, index math, pfn conversions, the page-table manager over a fake
//! machine) is host-tested: `cargo test -p ferrite-pv --target x86_64-unknown-linux-gnu`. The
//! assembly exists only for `aarch64`; the runtime (entry, vectors) only for bare metal
//! (`target_os = "none"`). On other targets the hypercalls answer `ENOSYS`.

#![cfg_attr(not(test), no_std)]

pub mod console;
pub mod cpu;
pub mod events;
pub mod exceptions;
pub mod hypercall;
pub mod mm;
pub mod rt;
pub mod smp;
pub mod sync;
pub mod time;

pub use ferrite_abi as abi;
pub use ferrite_abi::{Errno, StartInfo};
