//! Architecture code: everything that touches aarch64 system registers, exception levels,
//! translation tables or interrupt-controller hardware. Policy lives elsewhere.

mod aarch64;
pub use aarch64::*;
