//! Ferrite's dom0: the privileged guest. A small Rust kernel that runs at EL1, learns its
//! machine from the device tree, turns its MMU on, takes interrupts through the GIC, brings up
//! its other vCPUs, ticks on the virtual timer and drives the virtio-mmio devices it is given.
//!
//! It is a raw arm64 Linux `Image`, position-independent and self-relocating, so it boots the
//! same way on bare QEMU (`-M virt` without virtualization, which enters at EL1) and under
//! Ferrite. docs/dom0.md describes what it does and the console lines it prints.
//!
//! Built for any other target (a host `cargo build --workspace`) the crate is an empty program;
//! `cargo test -p ferrite-dom0 --target <host>` runs the unit tests of the modules that do not
//! touch the hardware (the boot options).

#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_std)]
#![cfg_attr(all(target_arch = "aarch64", target_os = "none"), no_main)]

#[cfg(any(test, all(target_arch = "aarch64", target_os = "none")))]
extern crate alloc;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[macro_use]
mod console;

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod blkback;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod boot;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod bus;
#[cfg(any(test, all(target_arch = "aarch64", target_os = "none")))]
mod cmdline;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod consback;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod cpu;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod dt;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod echo;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod entry;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod events;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod exceptions;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod gcopy;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod gic;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod heap;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod logger;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod mmu;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod netback;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod panic;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod psci;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod sched;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod smp;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod timer;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod toolstack;
// blkback's tables are tested on the host.
#[cfg(test)]
#[path = "blkback/tables.rs"]
mod blkback_tables;
// The toolstack's text handling is tested on the host.
#[cfg(test)]
#[path = "toolstack/parse.rs"]
mod toolstack_parse;
#[cfg(all(target_arch = "aarch64", target_os = "none"))]
mod virtio;

#[cfg(not(all(target_arch = "aarch64", target_os = "none")))]
fn main() {
    eprintln!(
        "ferrite-dom0 is a bare-metal image: build it with --target aarch64-unknown-none \
         (see docs/dom0.md)"
    );
}
