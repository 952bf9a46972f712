//! Drivers for the devices Ferrite itself uses (not the ones it passes to dom0).

pub mod pl011;
