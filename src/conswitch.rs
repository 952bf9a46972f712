//! Who gets what is typed on Ferrite's console: dom0 (the default) or Ferrite itself, switched
//! by pressing Ctrl-A three times in a row, as on Xen. Ferrite's own input is single keys for
//! a look at the machine (`h` lists them).
//!
//! Ctrl-As that do not make three in a row reach the focused side unchanged, so programs in
//! dom0 that use Ctrl-A still get it.

/// Ctrl-A.
pub const ESCAPE: u8 = 0x01;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Focus {
    Dom0,
    Ferrite,
}

/// What one typed byte means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Give these bytes (up to 3) to the focused side.
    Forward([u8; 3], usize),
    /// The focus moved.
    Switched(Focus),
    /// Held back: it may be the start of the switch sequence.
    Held,
}

pub struct Switch {
    focus: Focus,
    escapes: usize,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    pub const fn new() -> Self {
        Self {
            focus: Focus::Dom0,
            escapes: 0,
        }
    }

    pub fn focus(&self) -> Focus {
        self.focus
    }

    pub fn feed(&mut self, b: u8) -> Input {
        if b == ESCAPE {
            self.escapes += 1;
            if self.escapes == 3 {
                self.escapes = 0;
                self.focus = match self.focus {
                    Focus::Dom0 => Focus::Ferrite,
                    Focus::Ferrite => Focus::Dom0,
                };
                return Input::Switched(self.focus);
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
        assert_eq!(s.feed(ESCAPE), Input::Switched(Focus::Ferrite));
        assert_eq!(s.focus(), Focus::Ferrite);
        assert_eq!(s.feed(b'h'), Input::Forward([b'h', 1, 1], 1));
        for _ in 0..2 {
            assert_eq!(s.feed(ESCAPE), Input::Held);
        }
        assert_eq!(s.feed(ESCAPE), Input::Switched(Focus::Dom0));
    }
}
