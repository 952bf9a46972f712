//! Ferrite's hypercall ABI: what a paravirtualised guest and the hypervisor agree on.
//!
//! Every guest (and Ferrite itself) builds against this crate, so the numbers and layouts live
//! in exactly one place. It holds function identifiers, argument conventions, error codes, the
//! `#[repr(C)]` structures exchanged through guest memory (with compile-time layout checks),
//! the aarch64 stage-1 descriptor bits a PV guest writes through `mmu_update`, and pure helpers
//! (batch builders, descriptor constructors). It issues no hypercalls: a guest brings its own
//! `hvc #0` wrapper, as `docs/abi.md` describes.

#![no_std]

pub mod blkif;
pub mod call;
pub mod console_ring;
pub mod ctl;
pub mod desc;
pub mod devbus;
pub mod errno;
pub mod evtchn;
pub mod grant;
pub mod mmu;
pub mod netif;
pub mod psci;
pub mod ring;
pub mod sched;
pub mod shared_info;
pub mod start_info;

pub use call::*;
pub use errno::Errno;
pub use mmu::{Batch, MmuUpdate, MmuextOp};
pub use shared_info::{SharedInfo, VcpuInfo};
pub use start_info::StartInfo;
