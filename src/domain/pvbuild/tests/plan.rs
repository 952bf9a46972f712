//! Layouts: where each part goes, exact page-table counts, and every refusal.

use super::*;
use crate::pv::Ttbr;
use alloc::string::ToString;

fn plan_of(image: &[u8], nr_pages: u64, module: Option<u64>) -> Result<Plan, BuildError> {
    plan(&parse(image).unwrap(), nr_pages, module, 1)
}

#[test]
fn small_domain() {
    let p = plan_of(&tiny(0x4000_0000), 64, None).unwrap();
    assert_eq!(p.virt_base, 0x4000_0000);
    assert_eq!(p.ttbr, Ttbr::Ttbr0);
    assert_eq!(p.entry, 0x4000_0000);
    assert_eq!(p.kernel, 0..2, "100 bytes of text and BSS to 6 KiB");
    assert_eq!(p.module, 2..2);
    assert_eq!(p.module_len, None);
    assert_eq!(p.frame_list, 2..3, "64 u64s");
    assert_eq!(p.start_info_pfn, 3);
    assert_eq!(p.shared_info_pfn, 4);
    assert_eq!(p.console_pfn, 5);
    assert_eq!(p.tables_per_level, [1, 1, 1, 1]);
    assert_eq!(p.page_tables, 6..10);
    assert_eq!(p.stack, 10..14);
    assert_eq!(p.first_free_pfn, 14);
    assert_eq!(p.stack_top(), 0x4000_e000);
    assert_eq!(p.nr_pt_frames(), 4);

    // A module of 5000 bytes takes two pages after the kernel and moves the rest up.
    let m = plan_of(&tiny(0x4000_0000), 64, Some(5000)).unwrap();
    assert_eq!(m.module, 2..4);
    assert_eq!(m.module_len, Some(5000));
    assert_eq!(m.frame_list, 4..5);
    assert_eq!(m.page_tables, 8..12);
    assert_eq!(m.first_free_pfn, 16);
    // An empty module is present but takes no page.
    let e = plan_of(&tiny(0x4000_0000), 64, Some(0)).unwrap();
    assert_eq!((e.module.clone(), e.module_len), (2..2, Some(0)));
    assert_eq!(e.first_free_pfn, 14);
}

#[test]
fn larger_domains() {
    const HIGH: u64 = 0xFFFF_8000_0000_0000;
    let p = plan_of(&kernel(HIGH), 16384, Some(3 << 20)).unwrap();
    assert_eq!((p.virt_base, p.ttbr), (HIGH, Ttbr::Ttbr1));
    assert_eq!(
        p.kernel,
        128..136,
        "text offset 512 KiB; BSS ends at 0x87e30"
    );
    assert_eq!(p.module, 136..904);
    assert_eq!(p.frame_list, 904..936, "128 KiB of frame list");
    assert_eq!(
        (p.start_info_pfn, p.shared_info_pfn, p.console_pfn),
        (936, 937, 938)
    );
    assert_eq!(
        p.tables_per_level,
        [1, 1, 1, 32],
        "64 MiB: 32 level-3 tables"
    );
    assert_eq!(p.page_tables, 939..974);
    assert_eq!(p.stack, 974..978);
    assert_eq!(p.first_free_pfn, 978);
    assert_eq!(p.stack_top(), HIGH + 978 * 4096);

    let p = plan_of(&kernel(0x4000_0000), 4096, None).unwrap();
    assert_eq!(p.tables_per_level, [1, 1, 1, 8]);
    assert_eq!(p.frame_list, 136..144);
    assert_eq!(p.first_free_pfn, 144 + 3 + 11 + 4);

    // 1 GiB in one aligned gigabyte, then the same shifted to straddle two.
    let p = plan_of(&kernel(0x4000_0000), 262_144, None).unwrap();
    assert_eq!(p.tables_per_level, [1, 1, 1, 512]);
    assert_eq!(p.frame_list.end - p.frame_list.start, 512);
    let p = plan_of(&kernel(0x4020_0000), 262_144, None).unwrap();
    assert_eq!(p.tables_per_level, [1, 1, 2, 512]);
}

#[test]
fn table_counts_at_boundaries() {
    // 4 MiB straddling a 1 GiB boundary, and a 512 GiB one.
    assert_eq!(tables_per_level(0x3FE0_0000, 1024), [1, 1, 2, 2]);
    assert_eq!(tables_per_level(0x7F_FFE0_0000, 1024), [1, 2, 2, 2]);
    // Partial level-3 tables still count whole.
    assert_eq!(tables_per_level(0x4000_0000, 513), [1, 1, 1, 2]);
    assert_eq!(tables_per_level(0x4000_0000, 1), [1, 1, 1, 1]);
    assert_eq!(tables_per_level(0xFFFF_FFFF_FFE0_0000, 512), [1, 1, 1, 1]);
    // Against a brute-force count of the distinct regions each page falls in.
    let mut rng = Rng(77);
    for _ in 0..60 {
        let vb = match rng.below(4) {
            0 => (1 << 30) - (rng.below(8) << 21),
            1 => (1 << 39) - (rng.below(8) << 21),
            2 => TTBR1_BASE + (rng.below(1 << 20) << 21),
            _ => rng.below(1 << 27) << 21,
        };
        let n = 1 + rng.below(5000);
        let mut want = [1u64; 4];
        for (level, w) in want.iter_mut().enumerate().skip(1) {
            let shift = 48 - 9 * level as u32;
            let regions: BTreeSet<u64> = (0..n).map(|k| (vb + k * 4096) >> shift).collect();
            *w = regions.len() as u64;
        }
        assert_eq!(tables_per_level(vb, n), want, "{vb:#x} + {n} pages");
    }
}

#[test]
fn does_not_fit() {
    let t = tiny(0x4000_0000);
    assert_eq!(
        plan_of(&t, 13, None),
        Err(BuildError::TooSmall {
            needed: 14,
            nr_pages: 13
        })
    );
    assert!(plan_of(&t, 14, None).is_ok());
    let e = plan_of(&t, 64, Some(1 << 20)).unwrap_err();
    assert_eq!(
        e,
        BuildError::TooSmall {
            needed: 270,
            nr_pages: 64
        }
    );
    assert!(e.to_string().contains("need 270 pages (1080 KiB)"), "{e}");
    // Absurd module lengths saturate instead of overflowing.
    assert!(matches!(
        plan_of(&t, 64, Some(u64::MAX)),
        Err(BuildError::TooSmall { .. })
    ));
    // The kernel alone (text at 512 KiB) does not fit in 128 pages.
    assert!(matches!(
        plan_of(&kernel(0x4000_0000), 128, None),
        Err(BuildError::TooSmall { .. })
    ));
}

#[test]
fn bad_parameters() {
    let image = tiny(0x4000_0000);
    let t = parse(&image).unwrap();
    assert_eq!(
        plan(&t, 0, None, 1),
        Err(BuildError::BadPageCount { nr_pages: 0 })
    );
    assert_eq!(
        plan(&t, MAX_PAGES + 1, None, 1),
        Err(BuildError::BadPageCount {
            nr_pages: MAX_PAGES + 1
        })
    );
    assert_eq!(
        plan(&t, 64, None, 0),
        Err(BuildError::BadVcpuCount { nr_vcpus: 0 })
    );
    assert_eq!(
        plan(&t, 64, None, 33),
        Err(BuildError::BadVcpuCount { nr_vcpus: 33 })
    );
    assert!(plan(&t, 64, None, 32).is_ok());
}

#[test]
fn address_space_halves() {
    for va in [1 << 48, 0x8000_0000_0000_0000, 0xFFFE_FFFF_FFE0_0000] {
        assert_eq!(
            plan_of(&tiny(va), 64, None),
            Err(BuildError::BadVirtBase { virt_base: va })
        );
    }
    // The lowest segment rounds down to 2 MiB: 0x4010_0000 gives virt_base 0x4000_0000.
    let p = plan_of(&tiny(0x4010_0000), 1024, None).unwrap();
    assert_eq!((p.virt_base, p.kernel.clone()), (0x4000_0000, 256..258));
    // The mapping must end inside its half.
    let top0 = (1u64 << 48) - (2 << 20);
    assert!(plan_of(&tiny(top0), 512, None).is_ok());
    assert_eq!(
        plan_of(&tiny(top0), 513, None),
        Err(BuildError::MappingTooLarge {
            virt_base: top0,
            nr_pages: 513
        })
    );
    let top1 = 0xFFFF_FFFF_FFE0_0000;
    let p = plan_of(&tiny(top1), 511, None).unwrap();
    assert_eq!(p.ttbr, Ttbr::Ttbr1);
    assert_eq!(p.stack_top(), top1 + p.first_free_pfn * 4096);
    // The last page's end would be 2^64, not an address.
    assert!(matches!(
        plan_of(&tiny(top1), 512, None),
        Err(BuildError::MappingTooLarge { .. })
    ));
    assert!(matches!(
        plan_of(&tiny(0x4000_0000), MAX_PAGES, None),
        Err(BuildError::MappingTooLarge { .. })
    ));
}
