//! Memory management: physical regions, the frame allocator and Ferrite's heap.

pub mod frames;
#[cfg(all(target_arch = "aarch64", not(test)))]
pub mod heap;
pub mod region;
