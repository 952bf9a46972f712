//! Hardware-backed SPIs against a model of the physical GIC below them: the interrupt is active
//! there from the moment it fires (Ferrite injects it and defers the deactivation to the guest's
//! `HW` = 1 LR) until the guest deactivates it, or until Ferrite does because the guest threw
//! the virtual copy away. Whatever the guest does, a physical activation always has exactly one
//! virtual copy that will end it; otherwise the device's interrupt is lost for good.

use super::*;

/// The guest's view (routed to vCPU 0) and the physical INTID behind it (different, so that a
/// mix-up shows).
const V: u32 = 60;
const P: u32 = 90;

/// The physical interrupt: enable (mirrored from the guest's), active, and the device's line.
#[derive(Debug, Default)]
struct Phys {
    enabled: bool,
    active: bool,
    line: bool,
}

impl Phys {
    /// What the arch code does with the vGIC's requests after an exit.
    fn mirror(&mut self, g: &mut Vgic) {
        for (p, on) in g.take_hw_enables() {
            assert_eq!(p, P);
            self.enabled = on;
        }
        for p in g.take_hw_deactivations() {
            assert_eq!(p, P);
            self.active = false;
        }
    }

    /// The physical GIC signals the interrupt when it can, and Ferrite's handler injects it.
    fn fire(&mut self, g: &mut Vgic) {
        if self.line && self.enabled && !self.active {
            self.active = true;
            g.inject(V, None);
        }
    }
}

fn setup(version: Version) -> (Vgic, Phys, Cpu) {
    let mut g = booted(version, 1);
    g.link_hw(V, None, Some(P));
    let mut phys = Phys::default();
    // `booted` enabled the SPIs before the link; the arch code enables the physical one when
    // the guest enables the virtual one after the link (as dom0 does at boot).
    g.take_hw_enables();
    set_bit(&mut g, 0, 0x100, V);
    phys.mirror(&mut g);
    assert!(phys.enabled);
    (g, phys, Cpu::new(0))
}

/// Whether the vGIC holds a copy of the interrupt that will end the physical activation.
fn has_copy(g: &Vgic) -> bool {
    g.spis[(V - 32) as usize].live()
}

/// The guest's handler: acknowledge, make the device drop its line, end the interrupt. The
/// `HW` = 1 LR deactivates the physical interrupt.
fn handle(g: &mut Vgic, phys: &mut Phys, c: &mut Cpu) -> bool {
    c.fill(g);
    let took = c.ack() == Some((V, 0));
    if took {
        phys.line = false;
        assert_eq!(c.lr_of(V).unwrap().hw, Some(P));
        c.eoi(V);
        phys.active = false;
    }
    c.sync(g);
    phys.mirror(g);
    took
}

/// The rest of a handler left active by an earlier run: the device drops its line and the
/// guest ends the interrupt.
fn finish(g: &mut Vgic, phys: &mut Phys, c: &mut Cpu) {
    c.fill(g);
    if c.state_of(V).active() {
        phys.line = false;
        c.eoi(V);
        phys.active = false;
    }
    c.sync(g);
    phys.mirror(g);
}

/// The bug CI hit: the guest masks the interrupt, the device completes (the line rises and the
/// physical interrupt fires, or had fired just before the mask), the guest unmasks. The latch
/// is dropped as stale, so the physical interrupt must be deactivated to fire again.
#[test]
fn unmasking_after_a_masked_completion_delivers_it() {
    for version in [Version::V2, Version::V3] {
        let (mut g, mut phys, mut c) = setup(version);
        phys.line = true;
        phys.fire(&mut g);
        set_bit(&mut g, 0, 0x180, V); // masked before it was taken
        phys.mirror(&mut g);
        assert!(!phys.enabled && phys.active);
        assert!(!handle(&mut g, &mut phys, &mut c), "delivered while masked");
        set_bit(&mut g, 0, 0x100, V);
        phys.mirror(&mut g);
        assert!(
            !phys.active,
            "{version:?}: the physical interrupt was left active"
        );
        phys.fire(&mut g); // the line is still high: it fires again
        assert!(handle(&mut g, &mut phys, &mut c), "{version:?}: lost");
        // A line that dropped while masked gives no stale interrupt.
        phys.line = true;
        phys.fire(&mut g);
        set_bit(&mut g, 0, 0x180, V);
        phys.mirror(&mut g);
        phys.line = false;
        set_bit(&mut g, 0, 0x100, V);
        phys.mirror(&mut g);
        phys.fire(&mut g);
        assert!(!phys.active && !has_copy(&g));
        assert!(!handle(&mut g, &mut phys, &mut c), "{version:?}: stale");
    }
}

/// `ISENABLER` written for an interrupt that is already enabled (a driver's unmask that was
/// never masked) keeps what is pending: nothing was stale.
#[test]
fn enabling_again_keeps_a_pending_interrupt() {
    for version in [Version::V2, Version::V3] {
        let (mut g, mut phys, mut c) = setup(version);
        phys.line = true;
        phys.fire(&mut g);
        set_bit(&mut g, 0, 0x100, V);
        phys.mirror(&mut g);
        assert!(phys.active && has_copy(&g));
        assert!(handle(&mut g, &mut phys, &mut c), "{version:?}");
    }
}

/// `ICPENDR` on a hardware interrupt: latched, or already in an LR (folded at the next sync),
/// the physical interrupt is deactivated; acknowledged meanwhile, it is not (the guest ends it).
#[test]
fn clearing_pending_ends_the_physical_activation() {
    for version in [Version::V2, Version::V3] {
        let (mut g, mut phys, mut c) = setup(version);
        phys.line = true;
        phys.fire(&mut g);
        set_bit(&mut g, 0, 0x280, V);
        phys.mirror(&mut g);
        assert!(!phys.active && !has_copy(&g), "{version:?}: latched");

        phys.fire(&mut g);
        c.fill(&mut g);
        set_bit(&mut g, 0, 0x280, V);
        c.sync(&mut g);
        phys.mirror(&mut g);
        assert!(!phys.active && !has_copy(&g), "{version:?}: in an LR");

        phys.fire(&mut g);
        c.fill(&mut g);
        set_bit(&mut g, 0, 0x280, V);
        assert_eq!(c.ack(), Some((V, 0)));
        c.sync(&mut g);
        phys.mirror(&mut g);
        assert!(phys.active && has_copy(&g), "{version:?}: acknowledged");
    }
}

/// Random masks, unmasks, clears, device completions and guest runs: after every step the
/// physical interrupt is active exactly when the vGIC holds a copy of it, and at the end a
/// high line is delivered.
#[test]
fn random_guest_never_strands_the_physical_interrupt() {
    for version in [Version::V2, Version::V3] {
        for seed in 0..200u64 {
            let mut r = Rng(0x4857_0000_0000_0001 ^ seed.wrapping_mul(0x9e37_79b9));
            let (mut g, mut phys, mut c) = setup(version);
            let mut log = Vec::new();
            for _ in 0..200 {
                let op = r.below(8);
                log.push(op);
                match op {
                    0 | 1 => phys.line = true,
                    2 => {
                        set_bit(&mut g, 0, 0x180, V);
                    }
                    3 => {
                        set_bit(&mut g, 0, 0x100, V);
                    }
                    4 if r.one_in(3) => {
                        set_bit(&mut g, 0, 0x280, V);
                    }
                    5 => {
                        // A run that is cut short: acknowledged, not yet ended.
                        c.fill(&mut g);
                        let _ = c.ack();
                        c.sync(&mut g);
                    }
                    _ => {
                        // Runs that end what they have: a handler left active earlier, then
                        // the one taken now.
                        finish(&mut g, &mut phys, &mut c);
                        phys.fire(&mut g);
                        handle(&mut g, &mut phys, &mut c);
                    }
                }
                phys.mirror(&mut g);
                phys.fire(&mut g);
                assert_eq!(
                    phys.active,
                    has_copy(&g),
                    "{version:?} seed {seed}: physical active {} but copy {:?} after {log:?}",
                    phys.active,
                    g.spis[(V - 32) as usize]
                );
            }
            // The guest unmasks and serves; a high line must get through.
            set_bit(&mut g, 0, 0x100, V);
            phys.mirror(&mut g);
            phys.line = true;
            let mut took = false;
            for _ in 0..4 {
                finish(&mut g, &mut phys, &mut c);
                phys.line = true;
                phys.fire(&mut g);
                took |= handle(&mut g, &mut phys, &mut c);
            }
            assert!(
                took,
                "{version:?} seed {seed}: never delivered after {log:?}"
            );
        }
    }
}
