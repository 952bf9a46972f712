//! Which interrupts the exit path has to look at.
//!
//! [`Vgic::fill_lrs`](super::Vgic::fill_lrs), [`Vgic::sync_lrs`](super::Vgic::sync_lrs) and
//! [`Vgic::has_pending`](super::Vgic::has_pending) run on every guest exit. Rather than scan
//! every interrupt, they visit only the *live* ones: pending in the vGIC, active, or in an LR
//! ([`Irq::live`](super::irq::Irq::live)). Anything else can be neither deliverable nor a
//! candidate for an LR.
//!
//! The sets are conservative: every access that may change an interrupt's state marks it (see
//! `Vgic::irq_mut`), so a live interrupt is always a member; a member that turns out not to be
//! live is dropped when a fill comes across it. Every visit re-checks the exact conditions, so a
//! stale member costs one check and never changes an answer.

/// Words in a [`Set`]: 1024 INTIDs at most.
const WORDS: usize = 16;

/// A set of indices below 1024, with a summary of its non-empty words so that a nearly empty
/// set is walked in a few instructions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Set {
    words: [u64; WORDS],
    /// Bit `w`: `words[w]` is not empty.
    summary: u16,
}

impl Set {
    pub const fn new() -> Self {
        Self {
            words: [0; WORDS],
            summary: 0,
        }
    }

    /// Adds `i` (ignored beyond the set's range).
    pub fn insert(&mut self, i: usize) {
        let w = i / 64;
        if w < WORDS {
            self.words[w] |= 1 << (i % 64);
            self.summary |= 1 << w;
        }
    }

    pub fn remove(&mut self, i: usize) {
        let w = i / 64;
        if w < WORDS {
            self.words[w] &= !(1 << (i % 64));
            if self.words[w] == 0 {
                self.summary &= !(1 << w);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.summary == 0
    }

    pub fn contains(&self, i: usize) -> bool {
        i / 64 < WORDS && self.words[i / 64] >> (i % 64) & 1 != 0
    }

    /// The smallest member at or after `from`: for loops that change the set as they go.
    pub fn next_from(&self, from: usize) -> Option<usize> {
        let w = from / 64;
        if w >= WORDS {
            return None;
        }
        let here = self.words[w] & (u64::MAX << (from % 64));
        if here != 0 {
            return Some(w * 64 + here.trailing_zeros() as usize);
        }
        // Non-empty words after `w`.
        let later = u32::from(self.summary) & !((2u32 << w) - 1);
        if later == 0 {
            return None;
        }
        let w = later.trailing_zeros() as usize;
        Some(w * 64 + self.words[w].trailing_zeros() as usize)
    }

    /// The members, ascending.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            set: self,
            summary: self.summary,
            word: 0,
            base: 0,
        }
    }
}

/// See [`Set::iter`].
pub(super) struct Iter<'a> {
    set: &'a Set,
    /// Words not visited yet.
    summary: u16,
    /// What is left of the word being visited, and its first index.
    word: u64,
    base: usize,
}

impl Iterator for Iter<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.word == 0 {
            if self.summary == 0 {
                return None;
            }
            let w = self.summary.trailing_zeros() as usize;
            self.summary &= self.summary - 1;
            self.word = self.set.words[w];
            self.base = w * 64;
        }
        let b = self.word.trailing_zeros() as usize;
        self.word &= self.word - 1;
        Some(self.base + b)
    }
}

/// The members of a 32-bit set, ascending.
pub(super) fn bits32(word: u32) -> impl Iterator<Item = u32> {
    bits64(word.into()).map(|b| b as u32)
}

/// The members of a 64-bit set, ascending.
pub(super) fn bits64(mut word: u64) -> impl Iterator<Item = usize> {
    core::iter::from_fn(move || {
        (word != 0).then(|| {
            let b = word.trailing_zeros() as usize;
            word &= word - 1;
            b
        })
    })
}
