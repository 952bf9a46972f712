//! The PV MMU's structures: `MMU_UPDATE` requests, `MMUEXT_OP` operations, and a builder that
//! fills a fixed array of either so a guest can batch without an allocator.

use core::mem::{offset_of, size_of};

/// One `MMU_UPDATE` request: write `val` into the descriptor at machine address `ptr`.
///
/// Layout: 16 bytes, `ptr` at 0, `val` at 8, little-endian.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MmuUpdate {
    /// Machine address of the descriptor (8-byte aligned) with the command in bits 1:0
    /// ([`MMU_NORMAL_PT_UPDATE`]); bit 2 must be 0.
    pub ptr: u64,
    /// The new descriptor.
    pub val: u64,
}

const _: () = assert!(size_of::<MmuUpdate>() == 16);
const _: () = assert!(offset_of!(MmuUpdate, ptr) == 0);
const _: () = assert!(offset_of!(MmuUpdate, val) == 8);

/// `MmuUpdate::ptr` command: a checked write of one descriptor. Commands 1..3 are reserved
/// (`-ENOSYS`).
pub const MMU_NORMAL_PT_UPDATE: u64 = 0;
/// The command bits of `MmuUpdate::ptr`.
pub const MMU_CMD_MASK: u64 = 0b11;

impl MmuUpdate {
    /// A normal update of the descriptor at `pte` (its machine address) to `val`.
    pub const fn normal(pte: u64, val: u64) -> Self {
        Self {
            ptr: (pte & !MMU_CMD_MASK) | MMU_NORMAL_PT_UPDATE,
            val,
        }
    }

    pub const fn command(&self) -> u64 {
        self.ptr & MMU_CMD_MASK
    }

    /// The descriptor's machine address (command bits cleared).
    pub const fn pte(&self) -> u64 {
        self.ptr & !MMU_CMD_MASK
    }
}

/// One `MMUEXT_OP` operation.
///
/// Layout: 24 bytes, `cmd` at 0, `pad` at 4 (must be 0), `arg1` at 8, `arg2` at 16.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MmuextOp {
    pub cmd: u32,
    pub pad: u32,
    /// The table's machine address (pin, unpin, new base) or the virtual address (INVLPG).
    pub arg1: u64,
    /// The ASID (`NEW_TTBR0`, INVLPG); 0 otherwise.
    pub arg2: u64,
}

const _: () = assert!(size_of::<MmuextOp>() == 24);
const _: () = assert!(offset_of!(MmuextOp, cmd) == 0);
const _: () = assert!(offset_of!(MmuextOp, pad) == 4);
const _: () = assert!(offset_of!(MmuextOp, arg1) == 8);
const _: () = assert!(offset_of!(MmuextOp, arg2) == 16);

/// `MmuextOp::cmd` values.
pub mod ext {
    /// Validate the frame at arg1 as a level-0 (1, 2, 3) table, with everything below it, and
    /// pin it: it stays a table until unpinned.
    pub const PIN_L0_TABLE: u32 = 0;
    pub const PIN_L1_TABLE: u32 = 1;
    pub const PIN_L2_TABLE: u32 = 2;
    pub const PIN_L3_TABLE: u32 = 3;
    /// Unpin the table at arg1; `-EBUSY` while a base or a parent table still refers to it.
    pub const UNPIN_TABLE: u32 = 4;
    /// Load TTBR0_EL1 (lower VA half) of the calling vCPU with the pinned level-0 table at arg1
    /// (0: no table, every lower-half access faults), ASID = arg2.
    pub const NEW_TTBR0: u32 = 5;
    /// Load TTBR1_EL1 (upper VA half) with the pinned level-0 table at arg1 (0: none); arg2 = 0.
    pub const NEW_TTBR1: u32 = 6;
    /// Invalidate the calling vCPU's stage-1 TLB entries on its current CPU.
    pub const TLB_FLUSH_LOCAL: u32 = 7;
    /// Invalidate the domain's stage-1 TLB entries on every CPU.
    pub const TLB_FLUSH_ALL: u32 = 8;
    /// Invalidate the page at VA arg1, ASID arg2, on the current CPU.
    pub const INVLPG_LOCAL: u32 = 9;
    /// Invalidate the page at VA arg1, ASID arg2, on every CPU.
    pub const INVLPG_ALL: u32 = 10;

    /// The pin command for a table level (0..=3).
    pub const fn pin(level: u8) -> u32 {
        level as u32
    }
}

impl MmuextOp {
    pub const fn new(cmd: u32, arg1: u64, arg2: u64) -> Self {
        Self {
            cmd,
            pad: 0,
            arg1,
            arg2,
        }
    }

    pub const fn pin(level: u8, table: u64) -> Self {
        Self::new(ext::pin(level), table, 0)
    }

    pub const fn unpin(table: u64) -> Self {
        Self::new(ext::UNPIN_TABLE, table, 0)
    }
}

/// The batch is full: flush it (issue the call) and push again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// Up to `N` requests gathered for one batched call, in a fixed array (no allocator needed).
#[derive(Clone, Debug)]
pub struct Batch<T, const N: usize> {
    entries: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Default for Batch<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default, const N: usize> Batch<T, N> {
    pub fn new() -> Self {
        Self {
            entries: [T::default(); N],
            len: 0,
        }
    }

    pub fn push(&mut self, e: T) -> Result<(), Full> {
        let slot = self.entries.get_mut(self.len).ok_or(Full)?;
        *slot = e;
        self.len += 1;
        Ok(())
    }

    /// The entries to pass: their address goes in x1, their count in x2.
    pub fn as_slice(&self) -> &[T] {
        &self.entries[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == N
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// After a call that stopped at entry `done` (x1) with an error: drops the entries that
    /// were applied, keeping the failed one first, so the guest can fix or skip it.
    pub fn consume(&mut self, done: usize) {
        let done = done.min(self.len);
        self.entries.copy_within(done..self.len, 0);
        self.len -= done;
    }
}

impl<const N: usize> Batch<MmuUpdate, N> {
    /// Queues a normal update of the descriptor at machine address `pte`.
    pub fn update(&mut self, pte: u64, val: u64) -> Result<(), Full> {
        self.push(MmuUpdate::normal(pte, val))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_encoding() {
        let u = MmuUpdate::normal(0x4000_1ff8, 7);
        assert_eq!(u.command(), MMU_NORMAL_PT_UPDATE);
        assert_eq!(u.pte(), 0x4000_1ff8);
        let raw = MmuUpdate {
            ptr: 0x4000_1ff8 | 2,
            val: 0,
        };
        assert_eq!(raw.command(), 2);
        assert_eq!(raw.pte(), 0x4000_1ff8);
    }

    #[test]
    fn byte_layouts() {
        // What a guest written in another language sees: little-endian fields at fixed offsets.
        let u = MmuUpdate::normal(0x1122_3344_5566_7788, 0x99aa_bbcc_ddee_ff00);
        // SAFETY: MmuUpdate is repr(C), two u64s, no padding.
        let bytes: [u8; 16] = unsafe { core::mem::transmute(u) };
        assert_eq!(bytes[..8], 0x1122_3344_5566_7788u64.to_le_bytes());
        assert_eq!(bytes[8..], 0x99aa_bbcc_ddee_ff00u64.to_le_bytes());
        let op = MmuextOp::new(ext::NEW_TTBR0, 0x4000_0000, 5);
        // SAFETY: MmuextOp is repr(C): u32, u32, u64, u64, no padding.
        let bytes: [u8; 24] = unsafe { core::mem::transmute(op) };
        assert_eq!(bytes[..4], ext::NEW_TTBR0.to_le_bytes());
        assert_eq!(bytes[4..8], [0; 4]);
        assert_eq!(bytes[8..16], 0x4000_0000u64.to_le_bytes());
        assert_eq!(bytes[16..], 5u64.to_le_bytes());
    }

    #[test]
    fn batch_fills_and_consumes() {
        let mut b: Batch<MmuUpdate, 3> = Batch::new();
        assert!(b.is_empty());
        for i in 0..3 {
            b.update(0x1000 + 8 * i, i).unwrap();
        }
        assert!(b.is_full());
        assert_eq!(b.update(0x2000, 0), Err(Full));
        assert_eq!(b.as_slice()[2], MmuUpdate::normal(0x1010, 2));
        // Entry 1 failed: entry 0 was applied, 1 and 2 remain, the failed one first.
        b.consume(1);
        assert_eq!(b.len(), 2);
        assert_eq!(b.as_slice()[0].val, 1);
        b.consume(9);
        assert!(b.is_empty());
        let mut e: Batch<MmuextOp, 2> = Batch::default();
        e.push(MmuextOp::pin(0, 0x4000_0000)).unwrap();
        e.push(MmuextOp::unpin(0x4000_0000)).unwrap();
        assert_eq!(e.as_slice()[0].cmd, ext::PIN_L0_TABLE);
        assert_eq!(e.as_slice()[1].cmd, ext::UNPIN_TABLE);
    }
}
