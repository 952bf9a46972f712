//! Virtual devices Ferrite emulates for guests: the register models, with no hardware access.
//! The arch code traps a guest's access and calls into them; the glue connects their effects
//! (output, interrupts) to the real machine.

pub mod ctrl;
pub mod idregs;
pub mod pl011;
pub mod psci;
