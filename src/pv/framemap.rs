//! Where a domain's frame states live, by machine frame number. A PV domain's memory is one
//! contiguous, 2 MiB-aligned allocation (`vm/build_pv.rs`), so almost every frame is in the
//! *span*: a flat array indexed by frame number minus the span's first, which the hot path of
//! `MMU_UPDATE` indexes directly. Frames outside it (ballooned in from wherever the allocator
//! had one) are kept in sorted runs of consecutive frames, looked up by binary search on the
//! general path only.

use super::Errno;
use super::state::{Lost, State};
use alloc::vec::Vec;

/// Every frame the domain owns, with its state and what TLBs may remember of it.
#[derive(Clone, Debug, Default)]
pub(super) struct FrameMap {
    /// The frame number of `states[0]`.
    first: u64,
    /// The span's states; [`State::ABSENT`] for a frame given back.
    states: Vec<State>,
    /// Beside `states`, for the general path only.
    lost: Vec<Lost>,
    /// Frames outside the span.
    extra: Runs<(State, Lost)>,
    len: usize,
}

/// `len` copies of `v`, or `NoMem` instead of the allocation failure that would stop Ferrite.
pub(super) fn filled<T: Clone>(v: T, len: usize) -> Result<Vec<T>, Errno> {
    let mut out = Vec::new();
    out.try_reserve_exact(len).map_err(|_| Errno::NoMem)?;
    out.resize(len, v);
    Ok(out)
}

impl FrameMap {
    /// The map of frames `sorted` (frame numbers, ascending and distinct), untyped and
    /// unreferenced: the longest run of consecutive frames is the span, the others are extra.
    /// `NoMem` when Ferrite's heap cannot hold the span's records (16 bytes a frame).
    pub fn new(sorted: &[u64]) -> Result<Self, Errno> {
        debug_assert!(sorted.windows(2).all(|w| w[0] < w[1]));
        let (mut best, mut at) = ((0, 0), 0);
        for i in 1..=sorted.len() {
            if i == sorted.len() || sorted[i] != sorted[i - 1] + 1 {
                if i - at > best.1 - best.0 {
                    best = (at, i);
                }
                at = i;
            }
        }
        let span = &sorted[best.0..best.1];
        let mut m = Self {
            first: span.first().copied().unwrap_or(0),
            states: filled(State::FREE, span.len())?,
            lost: filled(Lost::default(), span.len())?,
            extra: Runs::default(),
            len: span.len(),
        };
        for &n in sorted[..best.0].iter().chain(&sorted[best.1..]) {
            m.insert(n);
        }
        Ok(m)
    }

    /// The map of the `len` consecutive frames from frame number `first`: all span.
    pub fn run(first: u64, len: usize) -> Result<Self, Errno> {
        Ok(Self {
            first,
            states: filled(State::FREE, len)?,
            lost: filled(Lost::default(), len)?,
            extra: Runs::default(),
            len,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The span: its first frame number and the states from there.
    #[inline]
    pub fn span_mut(&mut self) -> (u64, &mut [State]) {
        (self.first, &mut self.states)
    }

    #[inline]
    fn index(&self, n: u64) -> Option<usize> {
        let k = n.wrapping_sub(self.first);
        (k < self.states.len() as u64).then_some(k as usize)
    }

    /// The state of frame `n`: [`State::ABSENT`] if the domain does not own it.
    #[inline]
    pub fn state(&self, n: u64) -> State {
        match self.index(n) {
            Some(k) => self.states[k],
            None => self.extra.get(n).map_or(State::ABSENT, |s| s.0),
        }
    }

    /// The state of an owned frame, to change (not to give the frame up: that is `remove`).
    #[inline]
    pub fn state_mut(&mut self, n: u64) -> Option<&mut State> {
        let s = match self.index(n) {
            Some(k) => &mut self.states[k],
            None => &mut self.extra.get_mut(n)?.0,
        };
        s.owned().then_some(s)
    }

    pub fn lost(&self, n: u64) -> Lost {
        match self.index(n) {
            Some(k) => self.lost[k],
            None => self.extra.get(n).map_or(Lost::default(), |s| s.1),
        }
    }

    pub fn lost_mut(&mut self, n: u64) -> Option<&mut Lost> {
        match self.index(n) {
            Some(k) => Some(&mut self.lost[k]),
            None => self.extra.get_mut(n).map(|s| &mut s.1),
        }
    }

    /// Adds frame `n`, untyped and unreferenced; false if the domain owns it already.
    pub fn insert(&mut self, n: u64) -> bool {
        match self.index(n) {
            Some(k) if self.states[k].owned() => return false,
            Some(k) => {
                self.states[k] = State::FREE;
                self.lost[k] = Lost::default();
            }
            // Right after the span (the allocator often gives the next frame): the span grows.
            None if n == self.first.wrapping_add(self.states.len() as u64)
                && !self.states.is_empty()
                && !self.extra.contains(n) =>
            {
                self.states.push(State::FREE);
                self.lost.push(Lost::default());
            }
            None => {
                if !self.extra.insert(n, (State::FREE, Lost::default())) {
                    return false;
                }
            }
        }
        self.len += 1;
        true
    }

    /// Removes frame `n`; false if the domain does not own it.
    pub fn remove(&mut self, n: u64) -> bool {
        let gone = match self.index(n) {
            Some(k) => core::mem::replace(&mut self.states[k], State::ABSENT).owned(),
            None => self.extra.remove(n).is_some(),
        };
        self.len -= usize::from(gone);
        gone
    }

    /// Every owned frame with its state, the span first, then the others ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, State)> + '_ {
        let first = self.first;
        self.states
            .iter()
            .enumerate()
            .filter(|(_, s)| s.owned())
            .map(move |(k, &s)| (first + k as u64, s))
            .chain(self.extra.iter().map(|(n, s)| (n, s.0)))
    }

    /// Whether the domain owns all of `n..n + count`.
    pub fn contains_all(&self, mut n: u64, count: u64) -> bool {
        if n.checked_add(count).is_none() {
            return false;
        }
        let mut left = count;
        while left > 0 {
            let take = match self.index(n) {
                Some(k) => {
                    let take = left.min((self.states.len() - k) as u64);
                    let span = &self.states[k..k + take as usize];
                    if !span.iter().all(|s| s.owned()) {
                        return false;
                    }
                    take
                }
                None => {
                    // Up to the span if below it, or everything left if above it.
                    let below = self
                        .first
                        .checked_sub(n)
                        .filter(|_| !self.states.is_empty());
                    let take = below.map_or(left, |b| left.min(b));
                    if !self.extra.contains_all(n, take) {
                        return false;
                    }
                    take
                }
            };
            n += take;
            left -= take;
        }
        true
    }
}

#[derive(Clone, Debug)]
struct Run<T> {
    first: u64,
    /// None: a hole left by a frame given back.
    slots: Vec<Option<T>>,
}

#[derive(Clone, Debug)]
pub(super) struct Runs<T> {
    runs: Vec<Run<T>>,
}

impl<T> Default for Runs<T> {
    fn default() -> Self {
        Self { runs: Vec::new() }
    }
}

impl<T> Runs<T> {
    /// The run that would hold `n`: the last one starting at or before it.
    #[inline]
    fn run_index(&self, n: u64) -> Option<usize> {
        // Most domains are one run (their memory is one allocation): no search then.
        if let [only] = &self.runs[..] {
            return (only.first <= n).then_some(0);
        }
        self.runs.partition_point(|r| r.first <= n).checked_sub(1)
    }

    #[inline]
    pub fn get(&self, n: u64) -> Option<&T> {
        let r = &self.runs[self.run_index(n)?];
        r.slots.get((n - r.first) as usize)?.as_ref()
    }

    #[inline]
    pub fn get_mut(&mut self, n: u64) -> Option<&mut T> {
        let i = self.run_index(n)?;
        let r = &mut self.runs[i];
        r.slots.get_mut((n - r.first) as usize)?.as_mut()
    }

    #[inline]
    pub fn contains(&self, n: u64) -> bool {
        self.get(n).is_some()
    }

    /// Inserts `v` for a frame not present; false if it is.
    pub fn insert(&mut self, n: u64, v: T) -> bool {
        if let Some(i) = self.run_index(n) {
            let r = &mut self.runs[i];
            let k = (n - r.first) as usize;
            if k < r.slots.len() {
                if r.slots[k].is_some() {
                    return false;
                }
                r.slots[k] = Some(v);
                return true;
            }
            if k == r.slots.len() {
                r.slots.push(Some(v));
                self.join(i);
                return true;
            }
        }
        let at = self.run_index(n).map_or(0, |i| i + 1);
        self.runs.insert(
            at,
            Run {
                first: n,
                slots: alloc::vec![Some(v)],
            },
        );
        self.join(at);
        true
    }

    /// Merges run `i` with the next when they have become adjacent.
    fn join(&mut self, i: usize) {
        if i + 1 < self.runs.len()
            && self.runs[i].first + self.runs[i].slots.len() as u64 == self.runs[i + 1].first
        {
            let next = self.runs.remove(i + 1);
            self.runs[i].slots.extend(next.slots);
        }
    }

    pub fn remove(&mut self, n: u64) -> Option<T> {
        let i = self.run_index(n)?;
        let r = &mut self.runs[i];
        let v = r.slots.get_mut((n - r.first) as usize)?.take()?;
        Some(v)
    }

    /// Every present frame with its record, ascending.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        self.runs.iter().flat_map(|r| {
            r.slots
                .iter()
                .enumerate()
                .filter_map(move |(k, s)| s.as_ref().map(|v| (r.first + k as u64, v)))
        })
    }

    /// Whether all of `n..n + count` is present.
    pub fn contains_all(&self, n: u64, count: u64) -> bool {
        let Some(i) = self.run_index(n) else {
            return false;
        };
        let r = &self.runs[i];
        let k = (n - r.first) as usize;
        let Some(end) = usize::try_from(count).ok().and_then(|c| k.checked_add(c)) else {
            return false;
        };
        end <= r.slots.len() && r.slots[k..end].iter().all(Option::is_some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_grow_join_and_leave_holes() {
        let mut m = Runs::default();
        assert!(m.insert(10, 'a'));
        assert!(m.insert(11, 'b'));
        assert!(m.insert(5, 'c'));
        assert!(!m.insert(10, 'x'));
        assert!(m.insert(12, 'd'));
        assert_eq!(m.runs.len(), 2);
        for n in 6..10 {
            assert!(m.insert(n, 'e'));
        }
        assert_eq!(m.runs.len(), 1, "5..=12 is one run");
        assert!(m.contains_all(5, 8));
        assert!(!m.contains_all(5, 9));
        assert!(!m.contains_all(4, 1));
        assert_eq!(m.remove(7), Some('e'));
        assert_eq!(m.remove(7), None);
        assert!(!m.contains_all(5, 8));
        assert!(m.contains_all(8, 5));
        assert_eq!(m.get(12), Some(&'d'));
        assert_eq!(m.get(13), None);
        assert_eq!(m.get(0), None);
        *m.get_mut(5).unwrap() = 'z';
        let all: Vec<(u64, char)> = m.iter().map(|(n, &c)| (n, c)).collect();
        assert_eq!(all[0], (5, 'z'));
        assert_eq!(all.len(), 7);
        assert!(m.insert(7, 'f'), "a hole is filled in place");
        assert!(!m.contains_all(u64::MAX, 2));
    }
}
