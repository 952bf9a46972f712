//! The `MMU_UPDATE` queue: descriptor writes gathered and issued as one hypercall of up to
//! [`QUEUE_LEN`] entries, with the TLB invalidations they need done after the call.

use super::{Machine, MmError};
use ferrite_abi::mmu::MmuUpdate;

/// Entries per call: one table's worth.
pub const QUEUE_LEN: usize = 512;
/// Pages remembered for invalidation; beyond that the whole TLB is invalidated.
const INVAL_MAX: usize = 32;

/// Counters of what the queue (or the manager) issued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `MMU_UPDATE` entries applied.
    pub updates: u64,
    /// `MMU_UPDATE` calls made.
    pub update_calls: u64,
    /// `MMUEXT_OP` operations applied and calls made.
    pub ext_ops: u64,
    pub ext_calls: u64,
}

/// Pending `MMU_UPDATE` entries, in order.
pub struct UpdateQueue {
    reqs: [MmuUpdate; QUEUE_LEN],
    len: usize,
    inval: [u64; INVAL_MAX],
    ninval: usize,
    inval_all: bool,
    pub stats: Stats,
}

impl Default for UpdateQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl UpdateQueue {
    pub const fn new() -> Self {
        Self {
            reqs: [MmuUpdate { ptr: 0, val: 0 }; QUEUE_LEN],
            len: 0,
            inval: [0; INVAL_MAX],
            ninval: 0,
            inval_all: false,
            stats: Stats {
                updates: 0,
                update_calls: 0,
                ext_ops: 0,
                ext_calls: 0,
            },
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == QUEUE_LEN
    }

    /// The pending entries.
    pub fn as_slice(&self) -> &[MmuUpdate] {
        &self.reqs[..self.len]
    }

    /// Queues `req`; `inval` is a VA whose TLB entries must go once it is applied (a valid
    /// mapping changed or removed). Flushes first if the queue is full.
    ///
    /// # Safety
    /// As [`crate::hypercall::mmu_update`], for `req`.
    pub unsafe fn push(
        &mut self,
        m: &mut impl Machine,
        req: MmuUpdate,
        inval: Option<u64>,
    ) -> Result<(), MmError> {
        if self.is_full() {
            self.flush(m)?;
        }
        self.reqs[self.len] = req;
        self.len += 1;
        if let Some(va) = inval {
            if self.ninval < INVAL_MAX {
                self.inval[self.ninval] = va;
                self.ninval += 1;
            } else {
                self.inval_all = true;
            }
        }
        Ok(())
    }

    /// Issues the pending entries as one `MMU_UPDATE`, then the TLB invalidations. On a
    /// refusal the entries before the failed one stay applied (and are invalidated), the failed
    /// one and the rest are dropped, and the error names the failed entry.
    pub fn flush(&mut self, m: &mut impl Machine) -> Result<(), MmError> {
        if self.len == 0 {
            return Ok(());
        }
        // SAFETY: every entry was queued through `push`, whose callers vouched for it.
        let r = unsafe { m.mmu_update(&self.reqs[..self.len]) };
        self.stats.update_calls += 1;
        let done = r.done.min(self.len);
        let failed = self.reqs[done.min(self.len - 1)];
        self.stats.updates += if r.is_ok() {
            self.len as u64
        } else {
            done as u64
        };
        if self.inval_all {
            m.invalidate_all();
        } else {
            for &va in &self.inval[..self.ninval] {
                m.invalidate_va(va);
            }
        }
        if self.inval_all || self.ninval > 0 {
            m.tlb_sync();
        }
        self.len = 0;
        self.ninval = 0;
        self.inval_all = false;
        match r.result {
            Ok(_) => Ok(()),
            Err(errno) => Err(MmError::Update {
                errno,
                index: done,
                req: failed,
            }),
        }
    }
}
