//! Who gets what is typed on Ferrite's console: dom0 (the default), Ferrite itself, or one
//! domU's console, moved on in that order by pressing Ctrl-A three times in a row (as on Xen,
//! which switches between Xen and dom0). Ferrite's own input is single keys for a look at the
//! machine (`h` lists them); a domU gets its bytes in its console ring.
//!
//! Ctrl-As that do not make three in a row reach the focused side unchanged, so programs in
//! dom0 that use Ctrl-A still get it.

use crate::domain::DomId;

/// Ctrl-A.
pub const ESCAPE: u8 = 0x01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Dom0,
    Ferrite,
    Domu(DomId),
}

/// What one typed byte means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Give these bytes (up to 3) to the focused side.
    Forward([u8; 3], usize),
    /// Ctrl-A three times: move the focus on ([`next`]).
    Switch,
    /// Held back: it may be the start of the switch sequence.
    Held,
}

/// Counts Ctrl-As.
pub struct Switch {
    escapes: usize,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    pub const fn new() -> Self {
        Self { escapes: 0 }
    }

    pub fn feed(&mut self, b: u8) -> Input {
        if b == ESCAPE {
            self.escapes += 1;
            if self.escapes == 3 {
                self.escapes = 0;
                return Input::Switch;
            }
            return Input::Held;
        }
        let mut out = [ESCAPE; 3];
        let n = self.escapes;
        self.escapes = 0;
        out[n] = b;
        Input::Forward(out, n + 1)
    }
}

/// The focus after `now`: dom0, then Ferrite, then each domU with a console in id order, then
/// dom0 again. A domU that is gone moves on to the next one after its id.
pub fn next(now: Focus, domus: &[DomId]) -> Focus {
    let after = |id: DomId| {
        domus
            .iter()
            .copied()
            .filter(|&d| d > id)
            .min()
            .map_or(Focus::Dom0, Focus::Domu)
    };
    match now {
        Focus::Dom0 => Focus::Ferrite,
        Focus::Ferrite => after(0),
        Focus::Domu(id) => after(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ctrl_a_switch_and_fewer_pass_through() {
        let mut s = Switch::new();
        assert_eq!(s.feed(b'x'), Input::Forward([b'x', 1, 1], 1));
        assert_eq!(s.feed(ESCAPE), Input::Held);
        assert_eq!(s.feed(b'y'), Input::Forward([ESCAPE, b'y', 1], 2));
        assert_eq!(s.feed(ESCAPE), Input::Held);
        assert_eq!(s.feed(ESCAPE), Input::Held);
        assert_eq!(s.feed(ESCAPE), Input::Switch);
        assert_eq!(s.feed(b'h'), Input::Forward([b'h', 1, 1], 1));
    }

    #[test]
    fn the_focus_goes_round_dom0_ferrite_and_each_domu() {
        let domus = [3, 7];
        let mut f = Focus::Dom0;
        let mut seen = Vec::new();
        for _ in 0..5 {
            f = next(f, &domus);
            seen.push(f);
        }
        assert_eq!(
            seen,
            [
                Focus::Ferrite,
                Focus::Domu(3),
                Focus::Domu(7),
                Focus::Dom0,
                Focus::Ferrite
            ]
        );
        // No domUs: dom0 and Ferrite only; a vanished domU moves on.
        assert_eq!(next(Focus::Ferrite, &[]), Focus::Dom0);
        assert_eq!(next(Focus::Domu(5), &[3, 7]), Focus::Domu(7));
        assert_eq!(next(Focus::Domu(9), &[3, 7]), Focus::Dom0);
    }
}
