//! The console ring: a domU's console, carried to dom0 in one shared page (Xen's
//! `xencons_interface`).
//!
//! The domain builder gives every domU a console page (`StartInfo::console_ring`, a VA, and its
//! machine address) granted to dom0 as [`crate::grant::GREF_CONSOLE`], and an event-channel
//! port (`StartInfo::console_evtchn`) unbound for dom0. dom0 finds both with
//! `DOMCTL CONSOLE`, binds the port, and copies the ring with grant copies.
//!
//! Output (domU to dom0) goes in `out`: the domU writes bytes at `out_prod`, advances
//! `out_prod` (release), and notifies; dom0 reads from `out_cons` to `out_prod`, advances
//! `out_cons`. Input is the same in `inp`, the other way. Indices run freely and are masked
//! with the buffer size; `prod - cons` never exceeds the size, and a reader that sees more must
//! treat the ring as corrupt (a hostile peer) and not read.

use core::mem::{offset_of, size_of};
use core::sync::atomic::AtomicU32;

/// Bytes of input (dom0 to domU).
pub const IN_SIZE: usize = 1024;
/// Bytes of output (domU to dom0).
pub const OUT_SIZE: usize = 2048;

#[repr(C)]
pub struct ConsoleRing {
    pub inp: [u8; IN_SIZE],
    pub out: [u8; OUT_SIZE],
    pub in_cons: AtomicU32,
    pub in_prod: AtomicU32,
    pub out_cons: AtomicU32,
    pub out_prod: AtomicU32,
}

/// Byte offsets, for a peer that reaches the page with grant copies.
pub const OFFSET_OUT: usize = offset_of!(ConsoleRing, out);
pub const OFFSET_IN_CONS: usize = offset_of!(ConsoleRing, in_cons);
pub const OFFSET_OUT_CONS: usize = offset_of!(ConsoleRing, out_cons);
pub const OFFSET_OUT_PROD: usize = offset_of!(ConsoleRing, out_prod);

const _: () = assert!(OFFSET_OUT == 1024);
const _: () = assert!(OFFSET_IN_CONS == 3072);
const _: () = assert!(OFFSET_OUT_CONS == 3080);
const _: () = assert!(OFFSET_OUT_PROD == 3084);
const _: () = assert!(size_of::<ConsoleRing>() == 3088);

/// The bytes readable between `cons` and `prod` in a buffer of `size`, as `(start, len)`
/// slices of at most two pieces; `None` if the indices are impossible (`prod - cons > size`).
pub fn pending(cons: u32, prod: u32, size: usize) -> Option<[(usize, usize); 2]> {
    let n = prod.wrapping_sub(cons) as usize;
    if n > size {
        return None;
    }
    let start = cons as usize % size;
    let first = n.min(size - start);
    Some([(start, first), (0, n - first)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_wraps_and_refuses_impossible_indices() {
        assert_eq!(pending(0, 0, 8), Some([(0, 0), (0, 0)]));
        assert_eq!(pending(6, 10, 8), Some([(6, 2), (0, 2)]));
        assert_eq!(pending(u32::MAX - 1, 2, 8), Some([(6, 2), (0, 2)]));
        assert_eq!(pending(0, 8, 8), Some([(0, 8), (0, 0)]));
        assert_eq!(pending(0, 9, 8), None);
        assert_eq!(pending(5, 4, 8), None);
    }
}
