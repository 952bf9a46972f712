//! Saving a paused PV domU into dom0's memory in canonical form, and restoring one from it.

use super::Vm;
use crate::arch::exceptions::TrapFrame;
use ferrite_abi::errno;

pub fn domctl(_vm: &'static Vm, _c: u64, _frame: &mut TrapFrame) -> i64 {
    errno::ENOSYS
}
