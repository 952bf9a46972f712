//! Memory management: physical regions, the frame allocator, Ferrite's heap, and which vCPU
//! last ran on each pCPU (the TLB maintenance a world switch needs).

pub mod frames;
#[cfg(all(target_arch = "aarch64", not(test)))]
pub mod heap;
pub mod region;
pub mod tlb;
