//! Ferrite: a type-1 hypervisor for aarch64.
//!
//! The crate is the firmware image when built for `aarch64-unknown-none`. On the host
//! (`cargo test --target x86_64-unknown-linux-gnu`) only the portable policy modules build, with
//! their unit tests; the arch, driver and boot code is aarch64-only. docs/ARCHITECTURE.md maps
//! the layers.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

extern crate alloc;

// Portable: builds and unit-tests on the host.
pub mod cmdline;
pub mod conswitch;
pub mod devbus;
pub mod domain;
pub mod dt;
pub mod evtchn;
pub mod grant;
pub mod logring;
pub mod mm;
pub mod pv;
pub mod sched;
#[cfg(test)]
mod testutil;
pub mod vdev;
pub mod vgic;

#[cfg(all(target_arch = "aarch64", not(test)))]
mod arch;
#[cfg(all(target_arch = "aarch64", not(test)))]
mod boot;
#[cfg(all(target_arch = "aarch64", not(test)))]
mod console;
#[cfg(all(target_arch = "aarch64", not(test)))]
mod drivers;
#[cfg(all(target_arch = "aarch64", not(test)))]
mod logger;
#[cfg(all(target_arch = "aarch64", not(test)))]
mod panic;
#[cfg(all(target_arch = "aarch64", not(test)))]
mod vm;
