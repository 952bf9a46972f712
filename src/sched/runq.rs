//! Per-pCPU run queues: one FIFO per priority class (BOOST, UNDER, OVER) per pCPU, threaded
//! through the vCPU slots as an intrusive doubly linked list.
//!
//! Xen keeps one sorted list per pCPU and inserts by walking it (O(n)); separate FIFOs make
//! every operation here O(1): push at either end, pop the best, remove any vCPU, and move a vCPU
//! to another class when accounting changes its priority. Links are slot indices, not
//! pointers, so the structure needs no `unsafe` and no allocation per operation.

use super::Priority;
use alloc::vec::Vec;

const NIL: usize = usize::MAX;
const CLASSES: usize = 3;

/// The queued classes, best first.
pub(super) const QUEUED: [Priority; CLASSES] = [Priority::Boost, Priority::Under, Priority::Over];

fn class(p: Priority) -> usize {
    match p {
        Priority::Boost => 0,
        Priority::Under => 1,
        Priority::Over => 2,
        Priority::Idle => unreachable!("the idle vCPU is never queued"),
    }
}

#[derive(Clone, Copy)]
struct Fifo {
    head: usize,
    tail: usize,
    len: usize,
}

impl Fifo {
    const EMPTY: Fifo = Fifo {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

#[derive(Clone, Copy)]
struct Link {
    prev: usize,
    next: usize,
    /// (pCPU, class) while queued.
    at: Option<(usize, usize)>,
}

const UNLINKED: Link = Link {
    prev: NIL,
    next: NIL,
    at: None,
};

pub(super) struct RunQueues {
    queues: Vec<[Fifo; CLASSES]>,
    links: Vec<Link>,
    /// Queued on every pCPU together.
    queued: usize,
}

impl RunQueues {
    pub fn new(pcpus: usize) -> Self {
        Self {
            queues: alloc::vec![[Fifo::EMPTY; CLASSES]; pcpus],
            links: Vec::new(),
            queued: 0,
        }
    }

    /// Makes room for vCPU slot `slot`.
    pub fn ensure(&mut self, slot: usize) {
        if self.links.len() <= slot {
            self.links.resize(slot + 1, UNLINKED);
        }
    }

    /// Where `slot` is queued: (pCPU, priority class).
    pub fn position(&self, slot: usize) -> Option<(usize, Priority)> {
        self.links[slot].at.map(|(p, c)| (p, QUEUED[c]))
    }

    pub fn is_queued(&self, slot: usize) -> bool {
        self.links[slot].at.is_some()
    }

    /// Behind every vCPU of its class: FIFO within a priority.
    pub fn push_back(&mut self, slot: usize, pcpu: usize, pri: Priority) {
        debug_assert!(!self.is_queued(slot));
        let c = class(pri);
        let q = &mut self.queues[pcpu][c];
        let tail = q.tail;
        self.links[slot] = Link {
            prev: tail,
            next: NIL,
            at: Some((pcpu, c)),
        };
        if tail == NIL {
            q.head = slot;
        } else {
            self.links[tail].next = slot;
        }
        q.tail = slot;
        q.len += 1;
        self.queued += 1;
    }

    /// Unlinks `slot` wherever it is queued; returns where it was.
    pub fn remove(&mut self, slot: usize) -> Option<(usize, Priority)> {
        let Link { prev, next, at } = self.links[slot];
        let (pcpu, c) = at?;
        let q = &mut self.queues[pcpu][c];
        if prev == NIL {
            q.head = next;
        } else {
            self.links[prev].next = next;
        }
        if next == NIL {
            q.tail = prev;
        } else {
            self.links[next].prev = prev;
        }
        q.len -= 1;
        self.queued -= 1;
        // Field by field: the whole 40-byte link from a constant is a `memcpy` call.
        let l = &mut self.links[slot];
        l.prev = NIL;
        l.next = NIL;
        l.at = None;
        Some((pcpu, QUEUED[c]))
    }

    /// Moves a queued vCPU to the tail of another class on the same pCPU.
    pub fn reclass(&mut self, slot: usize, pri: Priority) {
        if let Some((pcpu, old)) = self.position(slot)
            && old != pri
        {
            self.remove(slot);
            self.push_back(slot, pcpu, pri);
        }
    }

    /// The best queued vCPU of `pcpu`: the head of its best non-empty class.
    pub fn best(&self, pcpu: usize) -> Option<(Priority, usize)> {
        let qs = &self.queues[pcpu];
        (0..CLASSES).find_map(|c| (qs[c].head != NIL).then(|| (QUEUED[c], qs[c].head)))
    }

    /// Queued vCPUs of `pcpu` in one class, head first.
    pub fn iter(&self, pcpu: usize, pri: Priority) -> impl Iterator<Item = usize> + '_ {
        let mut at = self.queues[pcpu][class(pri)].head;
        core::iter::from_fn(move || {
            (at != NIL).then(|| {
                let s = at;
                at = self.links[s].next;
                s
            })
        })
    }

    pub fn len(&self, pcpu: usize, pri: Priority) -> usize {
        self.queues[pcpu][class(pri)].len
    }

    /// Everything queued, on every pCPU: O(1).
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Everything queued on `pcpu`.
    pub fn total(&self, pcpu: usize) -> usize {
        self.queues[pcpu].iter().map(|q| q.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn all(q: &RunQueues, pcpu: usize, pri: Priority) -> Vec<usize> {
        q.iter(pcpu, pri).collect()
    }

    #[test]
    fn fifo_per_class_and_best_first() {
        let mut q = RunQueues::new(2);
        q.ensure(9);
        q.push_back(1, 0, Priority::Over);
        q.push_back(2, 0, Priority::Under);
        q.push_back(3, 0, Priority::Under);
        q.push_back(4, 1, Priority::Boost);
        assert_eq!(q.best(0), Some((Priority::Under, 2)));
        assert_eq!(q.best(1), Some((Priority::Boost, 4)));
        assert_eq!(all(&q, 0, Priority::Under), vec![2, 3]);
        assert_eq!(q.total(0), 3);
        q.push_back(5, 0, Priority::Boost);
        assert_eq!(q.best(0), Some((Priority::Boost, 5)));
    }

    #[test]
    fn remove_anywhere_and_reclass() {
        let mut q = RunQueues::new(1);
        q.ensure(5);
        for s in 0..5 {
            q.push_back(s, 0, Priority::Under);
        }
        assert_eq!(q.remove(2), Some((0, Priority::Under)));
        assert_eq!(q.remove(2), None);
        assert_eq!(q.remove(0), Some((0, Priority::Under)));
        assert_eq!(q.remove(4), Some((0, Priority::Under)));
        assert_eq!(all(&q, 0, Priority::Under), vec![1, 3]);
        q.reclass(1, Priority::Over);
        assert_eq!(all(&q, 0, Priority::Under), vec![3]);
        assert_eq!(all(&q, 0, Priority::Over), vec![1]);
        assert_eq!(q.position(1), Some((0, Priority::Over)));
        assert_eq!(q.len(0, Priority::Over), 1);
        q.remove(3);
        q.remove(1);
        assert_eq!(q.best(0), None);
        assert_eq!(q.total(0), 0);
        // A drained queue is usable again.
        q.push_back(3, 0, Priority::Over);
        assert_eq!(q.best(0), Some((Priority::Over, 3)));
    }
}
