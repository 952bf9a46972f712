//! Per-frame records keyed by machine frame number, stored as sorted runs of consecutive
//! frames: a domain's memory is a few large contiguous pieces, so a lookup is a binary search
//! over a handful of runs and a block mapping walks a slice instead of a tree.

use alloc::vec::Vec;

#[derive(Clone, Debug)]
struct Run<T> {
    first: u64,
    /// None: a hole left by a frame given back.
    slots: Vec<Option<T>>,
}

#[derive(Clone, Debug)]
pub(super) struct FrameMap<T> {
    runs: Vec<Run<T>>,
    len: usize,
}

impl<T> Default for FrameMap<T> {
    fn default() -> Self {
        Self {
            runs: Vec::new(),
            len: 0,
        }
    }
}

impl<T> FrameMap<T> {
    pub fn len(&self) -> usize {
        self.len
    }

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
                self.len += 1;
                return true;
            }
            if k == r.slots.len() {
                r.slots.push(Some(v));
                self.len += 1;
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
        self.len += 1;
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
        self.len -= 1;
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
        let mut m = FrameMap::default();
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
        assert_eq!(m.len(), 8);
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
        assert_eq!(m.len(), 8);
        assert!(!m.contains_all(u64::MAX, 2));
    }
}
