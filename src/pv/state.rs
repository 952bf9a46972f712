//! One frame's validator state packed into a single 64-bit word, so the hot path of
//! `MMU_UPDATE` checks and counts a frame with one load and one store:
//!
//! | bits   | field |
//! |--------|-------|
//! | 0..32  | reference count |
//! | 32..60 | type count (28 bits) |
//! | 60     | pinned |
//! | 61..64 | type code: 0 not the domain's, 1 none, 2 writable, 4 + n a level-n table |
//!
//! The type code sits at the top so "owned" is `word >= 1 << 61` and "a level-3 table" is
//! `word >= 7 << 61`, and the reference count at the bottom so taking one is `word + 1`.
//! A count that would overflow its field is refused (`Busy`), never wrapped.

use super::desc::Level;
use super::frames::FrameType;

pub(super) const REFS_MAX: u64 = u32::MAX as u64;
pub(super) const COUNT_SHIFT: u32 = 32;
pub(super) const COUNT_MAX: u64 = (1 << 28) - 1;
pub(super) const COUNT_ONE: u64 = 1 << COUNT_SHIFT;
pub(super) const PINNED: u64 = 1 << 60;
pub(super) const TYPE_SHIFT: u32 = 61;
pub(super) const CODE_NONE: u64 = 1;
pub(super) const CODE_WRITABLE: u64 = 2;
pub(super) const CODE_TABLE: u64 = 4;
/// The smallest word of a level-3 table.
pub(super) const L3_TABLE: u64 = (CODE_TABLE | 3) << TYPE_SHIFT;
/// The smallest word of an owned frame.
pub(super) const OWNED: u64 = CODE_NONE << TYPE_SHIFT;

/// A frame's packed state. `State::ABSENT` (all zero) is a frame the domain does not own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub(super) struct State(pub(super) u64);

const fn code(ty: FrameType) -> u64 {
    match ty {
        FrameType::None => CODE_NONE,
        FrameType::Writable => CODE_WRITABLE,
        FrameType::PageTable(l) => CODE_TABLE | (l as u64 & 3),
    }
}

impl State {
    pub(super) const ABSENT: State = State(0);
    /// A frame just given to the domain: owned, untyped, unreferenced.
    pub(super) const FREE: State = State(OWNED);

    #[inline]
    pub(super) const fn owned(self) -> bool {
        self.0 >= OWNED
    }

    #[inline]
    pub(super) const fn refs(self) -> u32 {
        self.0 as u32
    }

    #[inline]
    pub(super) const fn type_count(self) -> u32 {
        ((self.0 >> COUNT_SHIFT) & COUNT_MAX) as u32
    }

    #[inline]
    pub(super) const fn pinned(self) -> bool {
        self.0 & PINNED != 0
    }

    /// The frame's type; `None` also for a frame not owned.
    #[inline]
    pub(super) const fn ty(self) -> FrameType {
        match self.0 >> TYPE_SHIFT {
            CODE_WRITABLE => FrameType::Writable,
            c if c & CODE_TABLE != 0 => FrameType::PageTable((c & 3) as Level),
            _ => FrameType::None,
        }
    }

    /// One reference more, or None at the limit.
    #[inline]
    pub(super) const fn with_ref(self) -> Option<State> {
        if self.0 as u32 as u64 == REFS_MAX {
            None
        } else {
            Some(State(self.0 + 1))
        }
    }

    /// One reference fewer (there must be one).
    #[inline]
    pub(super) fn without_ref(self) -> State {
        debug_assert!(self.refs() > 0, "reference count underflow");
        if self.refs() == 0 {
            return self;
        }
        State(self.0 - 1)
    }

    /// One more use of the current type, or None at the limit.
    #[inline]
    pub(super) const fn with_use(self) -> Option<State> {
        if self.type_count() as u64 == COUNT_MAX {
            None
        } else {
            Some(State(self.0 + COUNT_ONE))
        }
    }

    /// One use fewer (there must be one); the type stays until [`State::retyped`].
    #[inline]
    pub(super) fn without_use(self) -> State {
        debug_assert!(self.type_count() > 0, "type count underflow");
        if self.type_count() == 0 {
            return self;
        }
        State(self.0 - COUNT_ONE)
    }

    /// The same counts and pin with another type (the frame must be owned).
    #[inline]
    pub(super) const fn retyped(self, ty: FrameType) -> State {
        State((self.0 & !(7 << TYPE_SHIFT)) | code(ty) << TYPE_SHIFT)
    }

    /// With the type count set to `n` (at most [`COUNT_MAX`]).
    #[inline]
    pub(super) const fn with_count(self, n: u32) -> State {
        State((self.0 & !(COUNT_MAX << COUNT_SHIFT)) | ((n as u64 & COUNT_MAX) << COUNT_SHIFT))
    }

    #[inline]
    pub(super) const fn with_pin(self, pinned: bool) -> State {
        State(if pinned {
            self.0 | PINNED
        } else {
            self.0 & !PINNED
        })
    }
}

/// What TLBs may still remember of a frame: the type it last lost and the flush epoch when it
/// did (the type in the low 3 bits, the epoch above). Until the next flush a TLB or walk
/// cache may still hold the frame in that use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(transparent)]
pub(super) struct Lost(u64);

impl Lost {
    pub(super) const fn new(ty: FrameType, epoch: u64) -> Lost {
        Lost(epoch << 3 | code(ty) & 7)
    }

    /// Whether the frame lost a type other than none and `want` since the flush of `epoch`.
    pub(super) const fn conflicts(self, want: FrameType, epoch: u64) -> bool {
        let c = self.0 & 7;
        self.0 >> 3 == epoch && c != CODE_NONE && c != 0 && c != code(want)
    }

    /// Whether the frame lost any type since the flush of `epoch`.
    pub(super) const fn since(self, epoch: u64) -> bool {
        self.0 >> 3 == epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: [FrameType; 6] = [
        FrameType::None,
        FrameType::Writable,
        FrameType::PageTable(0),
        FrameType::PageTable(1),
        FrameType::PageTable(2),
        FrameType::PageTable(3),
    ];

    #[test]
    fn fields_are_independent() {
        for ty in TYPES {
            for pin in [false, true] {
                for (refs, count) in [(0, 0), (1, 1), (u32::MAX, COUNT_MAX as u32), (7, 3)] {
                    let mut s = State::FREE.retyped(ty).with_pin(pin).with_count(count);
                    for _ in 0..refs.min(3) {
                        s = s.with_ref().unwrap();
                    }
                    if refs == u32::MAX {
                        s = State(s.0 | REFS_MAX);
                    }
                    assert!(s.owned());
                    assert_eq!(s.ty(), ty);
                    assert_eq!(s.pinned(), pin);
                    assert_eq!(s.type_count(), count);
                    assert_eq!(s.refs(), if refs == u32::MAX { refs } else { refs.min(3) });
                }
            }
        }
        assert!(!State::ABSENT.owned());
        assert_eq!(State::ABSENT.ty(), FrameType::None);
        assert_eq!(State::FREE.retyped(FrameType::PageTable(3)).0, L3_TABLE);
        assert!(State::FREE.retyped(FrameType::PageTable(2)).0 < L3_TABLE);
    }

    #[test]
    fn counts_stop_at_their_limits_instead_of_wrapping() {
        let full = State(State::FREE.0 | REFS_MAX);
        assert_eq!(full.with_ref(), None);
        assert_eq!(full.without_ref().refs(), u32::MAX - 1);
        let used = State::FREE
            .retyped(FrameType::Writable)
            .with_count(COUNT_MAX as u32);
        assert_eq!(used.with_use(), None);
        assert_eq!(used.without_use().type_count(), COUNT_MAX as u32 - 1);
        // A reference more never touches the type count, a use more never the references.
        let s = State::FREE.retyped(FrameType::Writable).with_count(5);
        assert_eq!(s.with_ref().unwrap().type_count(), 5);
        assert_eq!(s.with_use().unwrap().refs(), 0);
        assert_eq!(s.with_use().unwrap().ty(), FrameType::Writable);
    }

    #[test]
    fn lost_types_conflict_only_in_their_epoch() {
        let l = Lost::new(FrameType::Writable, 7);
        assert!(l.conflicts(FrameType::PageTable(3), 7));
        assert!(!l.conflicts(FrameType::Writable, 7));
        assert!(!l.conflicts(FrameType::PageTable(3), 8));
        assert!(l.since(7) && !l.since(8));
        assert!(!Lost::new(FrameType::None, 7).conflicts(FrameType::Writable, 7));
        assert!(!Lost::default().conflicts(FrameType::Writable, 0));
    }
}
