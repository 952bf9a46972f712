//! Where a domain's memory comes from and where its boot images go in it: the arm64 `Image`
//! header, the bank plan, and the kernel / initrd / device-tree placement the arm64 Linux boot
//! protocol asks for (kernel at a 2 MiB-aligned base + text_offset, the rest above its BSS).

use crate::mm::region::Region;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub const TWO_MIB: u64 = 2 << 20;
const MIB: u64 = 1 << 20;
/// Room reserved for the device tree.
pub const DTB_ROOM: u64 = TWO_MIB;

/// What an arm64 `Image` header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelImage {
    pub text_offset: u64,
    /// Bytes from the load address the kernel may use at boot, BSS included.
    pub image_size: u64,
}

pub fn image_header(k: &[u8]) -> Result<KernelImage, String> {
    if k.len() < 64 || &k[0x38..0x3c] != b"ARM\x64" {
        return Err("the kernel is not an arm64 Image (no \"ARM\\x64\" magic at 0x38)".into());
    }
    let word = |o: usize| u64::from_le_bytes(k[o..o + 8].try_into().unwrap());
    let (text_offset, image_size) = (word(8), word(16));
    if text_offset >= TWO_MIB || text_offset % 4096 != 0 {
        return Err(format!(
            "the kernel's text_offset {text_offset:#x} is not a page inside 2 MiB"
        ));
    }
    // An image_size of 0 comes from kernels before 3.17, which cannot say how big BSS is.
    let image_size = if image_size == 0 {
        k.len() as u64 + TWO_MIB
    } else {
        image_size
    };
    Ok(KernelImage {
        text_offset,
        image_size: image_size.max(k.len() as u64),
    })
}

/// dom0's memory when `dom0_mem` is not given: all free memory but what Ferrite keeps for
/// itself and for domUs, max(128 MiB, a quarter), in whole 2 MiB.
pub fn default_dom0_mem(free: u64) -> u64 {
    free.saturating_sub((free / 4).max(128 * MIB)) / TWO_MIB * TWO_MIB
}

/// Plans `size` bytes as naturally aligned power-of-two pieces of at least 2 MiB, largest first,
/// at most `max_banks`; `alloc(bytes)` returns a base or None. The result is sorted and merged.
pub fn plan_banks(
    size: u64,
    max_banks: usize,
    mut alloc: impl FnMut(u64) -> Option<u64>,
) -> Vec<Region> {
    let mut banks: Vec<Region> = Vec::new();
    let mut left = size / TWO_MIB * TWO_MIB;
    'banks: while left >= TWO_MIB && banks.len() < max_banks {
        let mut chunk = 1u64 << (63 - left.leading_zeros());
        loop {
            if let Some(pa) = alloc(chunk) {
                banks.push(Region::new(pa, chunk));
                left -= chunk;
                continue 'banks;
            }
            if chunk == TWO_MIB {
                break 'banks;
            }
            chunk /= 2;
        }
    }
    banks.sort();
    crate::mm::region::merge(&mut banks);
    banks
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub kernel: u64,
    pub initrd: Option<Region>,
    pub dtb: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// Places the kernel, initrd and device tree in `bank` (2 MiB-aligned).
pub fn place(bank: Region, k: &KernelImage, initrd_len: Option<u64>) -> Result<Placement, String> {
    if !bank.start.is_multiple_of(TWO_MIB) {
        return Err(format!("bank {bank} is not 2 MiB-aligned"));
    }
    let kernel = bank.start + k.text_offset;
    let mut next = align_up(kernel + k.image_size, TWO_MIB);
    let initrd = initrd_len.map(|len| {
        let r = Region::new(next, len);
        next = align_up(r.end(), TWO_MIB);
        r
    });
    if next + DTB_ROOM > bank.end() {
        return Err(format!(
            "the first bank {bank} is too small for the kernel ({} KiB with BSS){}, and the device tree",
            k.image_size / 1024,
            initrd_len
                .map(|l| format!(", the initrd ({} KiB)", l / 1024))
                .unwrap_or_default()
        ));
    }
    Ok(Placement {
        kernel,
        initrd,
        dtb: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(text_offset: u64, image_size: u64, len: usize) -> Vec<u8> {
        let mut k = alloc::vec![0u8; len];
        k[8..16].copy_from_slice(&text_offset.to_le_bytes());
        k[16..24].copy_from_slice(&image_size.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"ARM\x64");
        k
    }

    #[test]
    fn headers() {
        let h = image_header(&image(0x80000, 0x20_0000, 4096)).unwrap();
        assert_eq!(
            h,
            KernelImage {
                text_offset: 0x80000,
                image_size: 0x20_0000
            }
        );
        // Old kernels: no size; assume the file plus 2 MiB of BSS.
        assert_eq!(
            image_header(&image(0x80000, 0, 4096)).unwrap().image_size,
            4096 + TWO_MIB
        );
        assert!(image_header(&[0u8; 64]).is_err());
        assert!(image_header(&[0u8; 10]).is_err());
        assert!(image_header(&image(0x20_0000, 0, 4096)).is_err());
        assert!(image_header(&image(0x80010, 0, 4096)).is_err());
    }

    #[test]
    fn placement_follows_the_boot_protocol() {
        let bank = Region::new(0x4060_0000, 128 << 20);
        let k = KernelImage {
            text_offset: 0x80000,
            image_size: 0x1c_0000,
        };
        let p = place(bank, &k, Some(5 << 20)).unwrap();
        assert_eq!(p.kernel, 0x4068_0000);
        let initrd = p.initrd.unwrap();
        assert_eq!(
            initrd.start, 0x40a0_0000,
            "initrd starts on the first 2 MiB above the kernel"
        );
        assert_eq!(
            p.dtb, 0x4100_0000,
            "the device tree follows the initrd, 2 MiB-aligned"
        );
        assert_eq!(place(bank, &k, None).unwrap().dtb, 0x40a0_0000);
        // Too small, and misaligned banks, are refused with a reason.
        assert!(place(Region::new(0x4060_0000, 4 << 20), &k, Some(8 << 20)).is_err());
        assert!(place(Region::new(0x4061_0000, 64 << 20), &k, None).is_err());
    }

    #[test]
    fn banks_largest_first_and_merged() {
        // Free space: 512 MiB at 0x6000_0000, 128 MiB at 0x5000_0000, 122 MiB of 2 MiB pieces.
        let mut pool: Vec<(u64, u64)> =
            alloc::vec![(0x6000_0000, 512 << 20), (0x5000_0000, 128 << 20)];
        let mut small = 0x4060_0000u64;
        let banks = plan_banks(762 << 20, 8, |size| {
            if let Some(i) = pool.iter().position(|&(_, s)| s == size) {
                return Some(pool.remove(i).0);
            }
            if size <= 64 << 20 && small + size <= 0x4800_0000 {
                let a = small;
                small += size;
                return Some(a);
            }
            None
        });
        let total: u64 = banks.iter().map(|b| b.size).sum();
        assert_eq!(total, 762 << 20);
        assert_eq!(banks[0].start, 0x4060_0000);
        assert!(
            banks.windows(2).all(|w| w[0].end() < w[1].start),
            "sorted and merged"
        );
        // Nothing left: an empty plan, not a loop.
        assert!(plan_banks(64 << 20, 8, |_| None).is_empty());
        // The bank limit is honoured.
        assert_eq!(plan_banks(16 << 20, 2, |_| Some(0)).len(), 1);
    }

    #[test]
    fn default_memory() {
        assert_eq!(default_dom0_mem(1018 << 20), 762 << 20);
        assert_eq!(default_dom0_mem(256 << 20), 128 << 20);
        assert_eq!(default_dom0_mem(64 << 20), 0);
    }
}
