//! Per-vCPU statistics: where a vCPU's lifetime went (running, runnable, blocked), how often
//! it was dispatched and how often it changed pCPU.
//!
//! Time is charged at state changes, so the three totals always add up to the lifetime: a
//! reader (dom0's tools, the tests) can rely on it.

use super::{Priority, Time};

/// A vCPU's accounting state, for statistics only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    Running,
    /// Wants a pCPU: queued, or parked by its domain's cap.
    Runnable,
    Blocked,
}

/// What [`super::Credit::stats`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    pub running_ns: Time,
    /// Waiting for a pCPU, including time parked by the domain's cap.
    pub runnable_ns: Time,
    pub blocked_ns: Time,
    /// Since `add_vcpu`: the three above add up to it.
    pub lifetime_ns: Time,
    /// Times dispatched onto a pCPU (a decision that keeps the running vCPU does not count).
    pub runs: u64,
    /// Dispatches on a pCPU other than the previous one.
    pub migrations: u64,
    /// Credit left this period, in nanoseconds of pCPU time (negative: OVER).
    pub credit_ns: i64,
    pub priority: Priority,
    /// The pCPU it runs on, is queued on, or last ran on.
    pub pcpu: usize,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Clock {
    born: Time,
    state: State,
    since: Time,
    /// Totals of finished intervals, indexed like [`State`].
    spent: [Time; 3],
    pub runs: u64,
    pub migrations: u64,
}

fn index(s: State) -> usize {
    match s {
        State::Running => 0,
        State::Runnable => 1,
        State::Blocked => 2,
    }
}

impl Clock {
    /// A new vCPU starts blocked (offline until it is first woken).
    pub fn new(now: Time) -> Self {
        Self {
            born: now,
            state: State::Blocked,
            since: now,
            spent: [0; 3],
            runs: 0,
            migrations: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn enter(&mut self, state: State, now: Time) {
        // Time never runs backwards for the caller; if it did, charge nothing rather than wrap.
        let now = now.max(self.since);
        self.spent[index(self.state)] += now - self.since;
        self.state = state;
        self.since = now;
    }

    /// (running, runnable, blocked, lifetime) up to `now`.
    pub fn totals(&self, now: Time) -> [Time; 4] {
        let now = now.max(self.since);
        let mut t = self.spent;
        t[index(self.state)] += now - self.since;
        [t[0], t[1], t[2], now - self.born]
    }
}
