//! The command line's words: the mode, then its arguments (space separated).

use core::str::SplitAsciiWhitespace;

pub struct Args<'a> {
    words: core::iter::Peekable<SplitAsciiWhitespace<'a>>,
}

impl<'a> Args<'a> {
    pub fn new(cmdline: &'a str) -> Self {
        Self {
            words: cmdline.split_ascii_whitespace().peekable(),
        }
    }

    pub fn word(&mut self) -> Option<&'a str> {
        self.words.next()
    }

    pub fn peek(&mut self) -> Option<&'a str> {
        self.words.peek().copied()
    }

    /// The next word as a number (decimal, or hex with `0x`), `default` if there is none. A
    /// word that is not a number is reported and the domain crashes.
    pub fn number(&mut self, mode: &str, name: &str, default: u64) -> u64 {
        let Some(w) = self.word() else {
            return default;
        };
        let parsed = match w.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => w.parse(),
        };
        match parsed {
            Ok(n) => n,
            Err(_) => {
                out!("{mode}: bad <{name}> '{w}': not a number");
                ferrite_pv::rt::crash()
            }
        }
    }
}
