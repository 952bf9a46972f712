//! The ELF parser: what a good image yields, each refusal, and no panic on any input.

use super::*;
use crate::domain::pvbuild::elf::MAX_SPAN;
use alloc::string::ToString;

const BASE: u64 = 0xFFFF_0000_0000_0000;

fn err(v: &[u8]) -> ElfError {
    parse(v).expect_err("the image should be refused")
}

#[test]
fn a_good_image() {
    let v = kernel(BASE);
    let img = parse(&v).unwrap();
    assert_eq!(img.entry(), BASE + TEXT + 0x40);
    let s = img.segments();
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].vaddr, BASE + TEXT);
    assert_eq!(s[0].memsz, 5000);
    assert_eq!(
        s[0].perms,
        Perms {
            read: true,
            write: false,
            exec: true
        }
    );
    assert!(s[2].perms.write);
    assert!(!s[2].perms.exec);
    assert_eq!(s[2].memsz, 20000);
    assert_eq!(img.file_bytes(&s[0]), &pattern(5000, 1)[..]);
    assert_eq!(img.file_bytes(&s[1]), &pattern(3000, 2)[..]);
    assert_eq!(img.file_bytes(&s[2]).len(), 200);
    assert_eq!(img.lowest_vaddr(), BASE + TEXT);
    assert_eq!(img.end_vaddr(), BASE + TEXT + 0x3010 + 20000);
    for (i, seg) in s.iter().enumerate() {
        assert_eq!(seg.index, i);
    }
}

#[test]
fn headers_in_any_order_and_ignored_ones() {
    // Program headers out of address order, a PT_NOTE, an empty PT_LOAD, and larger entries:
    // all fine.
    let segs = kernel_segs(0x4000_0000);
    let mut v = elf(
        0x4008_0000,
        &[segs[2].clone(), segs[0].clone(), segs[1].clone()],
    );
    let img = parse(&v).unwrap();
    let idx: Vec<usize> = img.segments().iter().map(|s| s.index).collect();
    assert_eq!(idx, [1, 2, 0], "sorted by address, numbered as in the file");

    put32(&mut v, phdr(2) + P_TYPE, PT_NOTE);
    assert_eq!(parse(&v).unwrap().segments().len(), 2);
    put32(&mut v, phdr(2) + P_TYPE, PT_LOAD);
    put64(&mut v, phdr(2) + P_FILESZ, 0);
    put64(&mut v, phdr(2) + P_MEMSZ, 0);
    assert_eq!(parse(&v).unwrap().segments().len(), 2);

    // ET_DYN, linked at 0, loads at 0.
    let mut d = tiny(0);
    put16(&mut d, 16, 3);
    assert_eq!(parse(&d).unwrap().lowest_vaddr(), 0);

    // 64-byte program header entries (fields appended by some future ABI): one header, whose
    // extra bytes overlap nothing that matters here.
    let mut wide = tiny(0x4000_0000);
    put16(&mut wide, 54, 64);
    assert!(parse(&wide).is_ok());
}

#[test]
fn truncated() {
    let v = kernel(BASE);
    assert_eq!(err(&v[..0]), ElfError::TooShort { len: 0 });
    assert_eq!(err(&v[..63]), ElfError::TooShort { len: 63 });
    assert!(matches!(err(&v[..100]), ElfError::PhdrsPastEnd { .. }));
    // Cut inside the last segment's bytes.
    assert_eq!(err(&v[..v.len() - 1]), ElfError::SegmentPastEnd { seg: 2 });
    // Every prefix: refused (or, once complete, accepted), never a panic.
    for n in 0..v.len() {
        assert!(parse(&v[..n]).is_err(), "prefix of {n}");
    }
}

#[test]
fn wrong_kind_of_file() {
    let good = kernel(BASE);
    let with = |off: usize, b: u8| {
        let mut v = good.clone();
        v[off] = b;
        v
    };
    assert_eq!(err(&with(0, 0x7e)), ElfError::NotElf);
    assert_eq!(err(&with(3, b'f')), ElfError::NotElf);
    assert_eq!(err(&with(4, 1)), ElfError::NotElf64 { class: 1 });
    assert_eq!(err(&with(5, 2)), ElfError::NotLittleEndian { data: 2 });
    assert_eq!(err(&with(6, 0)), ElfError::BadVersion);
    assert_eq!(err(&with(20, 2)), ElfError::BadVersion);
    let mut x86 = good.clone();
    put16(&mut x86, 18, 62);
    assert_eq!(err(&x86), ElfError::NotAarch64 { machine: 62 });
    for t in [0u16, 1, 4, 0xfe00] {
        let mut v = good.clone();
        put16(&mut v, 16, t);
        assert_eq!(err(&v), ElfError::NotExecutable { e_type: t });
    }
}

#[test]
fn bad_program_header_table() {
    let good = kernel(BASE);
    let mut v = good.clone();
    put16(&mut v, 54, 32);
    assert_eq!(err(&v), ElfError::BadPhentsize { size: 32 });
    let mut v = good.clone();
    put16(&mut v, 56, 0xffff);
    assert_eq!(err(&v), ElfError::TooManyPhdrs);
    let mut v = good.clone();
    put64(&mut v, 32, 68);
    assert_eq!(err(&v), ElfError::PhdrsMisaligned { offset: 68 });
    // An offset so large that offset + size overflows.
    let mut v = good.clone();
    put64(&mut v, 32, u64::MAX - 7);
    assert!(matches!(err(&v), ElfError::PhdrsPastEnd { .. }));
    // More headers than the file holds.
    let mut v = good.clone();
    put16(&mut v, 56, 2000);
    assert!(matches!(
        err(&v),
        ElfError::PhdrsPastEnd { count: 2000, .. }
    ));
}

#[test]
fn no_loadable_segment() {
    let mut v = kernel(BASE);
    for i in 0..3 {
        put32(&mut v, phdr(i) + P_TYPE, PT_NOTE);
    }
    assert_eq!(err(&v), ElfError::NoLoadSegment);
    let mut v = kernel(BASE);
    put16(&mut v, 56, 0);
    assert_eq!(err(&v), ElfError::NoLoadSegment);
    // Only empty PT_LOADs.
    let mut v = tiny(0x4000_0000);
    put64(&mut v, phdr(0) + P_FILESZ, 0);
    put64(&mut v, phdr(0) + P_MEMSZ, 0);
    assert_eq!(err(&v), ElfError::NoLoadSegment);
}

#[test]
fn bad_segments() {
    let good = kernel(BASE);
    let with = |i: usize, field: usize, x: u64| {
        let mut v = good.clone();
        put64(&mut v, phdr(i) + field, x);
        v
    };
    assert_eq!(
        err(&with(1, P_FILESZ, 3001)),
        ElfError::FileszExceedsMemsz {
            seg: 1,
            filesz: 3001,
            memsz: 3000
        }
    );
    assert_eq!(
        err(&with(2, P_OFFSET, u64::MAX - 10)),
        ElfError::SegmentPastEnd { seg: 2 }
    );
    assert_eq!(
        err(&with(2, P_OFFSET, good.len() as u64)),
        ElfError::SegmentPastEnd { seg: 2 }
    );
    let mut v = with(2, P_VADDR, u64::MAX - 100);
    assert_eq!(err(&v), ElfError::SegmentWraps { seg: 2 });
    put64(&mut v, phdr(2) + P_VADDR, BASE + TEXT + 0x3010);
    put64(&mut v, phdr(2) + P_ALIGN, 3000);
    assert_eq!(
        err(&v),
        ElfError::BadAlign {
            seg: 2,
            align: 3000
        }
    );
    assert_eq!(
        err(&with(2, P_VADDR, BASE + TEXT + 0x3018)),
        ElfError::Incongruent {
            seg: 2,
            align: 4096
        }
    );
    // Alignment 0 and 1 mean none: congruence is not asked.
    let mut v = with(2, P_ALIGN, 1);
    put64(&mut v, phdr(2) + P_VADDR, BASE + TEXT + 0x3018);
    assert!(parse(&v).is_ok());
}

#[test]
fn overlapping_segments() {
    let segs = kernel_segs(BASE);
    // Rodata moved to start inside text (same offset in page, so congruent).
    let mut s = segs.clone();
    s[1].vaddr = BASE + TEXT + 0x400;
    assert_eq!(
        err(&elf(BASE + TEXT, &s)),
        ElfError::Overlap {
            first: 0,
            second: 1
        }
    );
    // Data's BSS running into a segment after it, listed first.
    let mut s = segs.clone();
    s[0].vaddr = BASE + TEXT + 0x5000;
    s[0].memsz = 5000;
    s[2].memsz = 0x3000;
    assert_eq!(
        err(&elf(BASE + TEXT + 0x5000, &s)),
        ElfError::Overlap {
            first: 0,
            second: 2
        }
    );
    // Touching is not overlapping.
    let mut s = segs;
    s[1].vaddr = BASE + TEXT + 5000;
    assert!(parse(&elf(BASE + TEXT, &s)).is_ok());
}

#[test]
fn too_large() {
    let mut s = kernel_segs(BASE);
    s[2].vaddr = BASE + TEXT + MAX_SPAN;
    assert!(matches!(
        err(&elf(BASE + TEXT, &s)),
        ElfError::TooLarge { .. }
    ));
    s[2].vaddr = BASE + TEXT + MAX_SPAN - 20000;
    assert!(parse(&elf(BASE + TEXT, &s)).is_ok(), "exactly MAX_SPAN");
}

#[test]
fn entry_point() {
    let segs = kernel_segs(BASE);
    for (entry, why) in [
        (BASE + TEXT + 0x1400, "in rodata, not executable"),
        (BASE + TEXT + 0x3010, "in data"),
        (BASE + TEXT - 4, "below every segment"),
        (BASE + TEXT + 5000, "just past text"),
        (0, "nowhere"),
    ] {
        assert_eq!(
            err(&elf(entry, &segs)),
            ElfError::EntryNotExecutable { entry },
            "{why}"
        );
    }
    assert_eq!(
        err(&elf(BASE + TEXT + 2, &segs)),
        ElfError::EntryMisaligned {
            entry: BASE + TEXT + 2
        }
    );
    // In an executable segment's BSS: zeros, refused.
    let mut s = segs.clone();
    s[0].memsz = 0x1000 * 3;
    assert_eq!(
        err(&elf(BASE + TEXT + 0x2000, &s[..1])),
        ElfError::EntryNotExecutable {
            entry: BASE + TEXT + 0x2000
        }
    );
    assert!(
        parse(&elf(BASE + TEXT + 4996, &segs)).is_ok(),
        "the last word of text"
    );
}

#[test]
fn messages() {
    assert_eq!(
        ElfError::SegmentPastEnd { seg: 2 }.to_string(),
        "segment 2 extends past the end of the file"
    );
    assert_eq!(
        ElfError::NotAarch64 { machine: 62 }.to_string(),
        "built for ELF machine 62, not aarch64 (183)"
    );
    assert_eq!(
        ElfError::Overlap {
            first: 1,
            second: 3
        }
        .to_string(),
        "segments 1 and 3 overlap in memory"
    );
    assert!(
        ElfError::TooLarge { span: 3 << 30 }
            .to_string()
            .contains("3072 MiB")
    );
}

/// Random corruption of a good image, biased to the headers: always a clean answer, and
/// whatever is accepted keeps the invariants the builder relies on.
#[test]
fn mutations_never_panic() {
    let good = kernel(BASE);
    let headers = phdr(3);
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut accepted = 0;
    for round in 0..30_000 {
        let mut v = good.clone();
        for _ in 0..1 + rng.below(6) {
            let at = if rng.below(4) == 0 {
                rng.below(v.len() as u64)
            } else {
                rng.below(headers as u64)
            } as usize;
            v[at] = match rng.below(4) {
                0 => 0,
                1 => 0xff,
                2 => v[at] ^ (1 << rng.below(8)),
                _ => rng.next() as u8,
            };
        }
        if round % 7 == 0 {
            v.truncate(rng.below(v.len() as u64 + 1) as usize);
        }
        let Ok(img) = parse(&v) else { continue };
        accepted += 1;
        let s = img.segments();
        assert!(!s.is_empty());
        for seg in s {
            assert!(seg.file.end <= v.len());
            assert!(seg.file.len() as u64 <= seg.memsz);
            assert!(seg.vaddr.checked_add(seg.memsz).is_some());
        }
        assert!(s.windows(2).all(|w| w[0].end() <= w[1].vaddr));
        assert!(img.end_vaddr() - img.lowest_vaddr() <= MAX_SPAN);
        // The plan must take whatever parse accepted without panicking.
        let _ = plan(&img, 1 << 16, Some(rng.next() >> rng.below(64)), 1);
        let _ = plan(&img, rng.below(MAX_PAGES + 2), None, 2);
    }
    // Sanity: the mutations do not only produce garbage.
    assert!(accepted > 1000, "{accepted} accepted");
}
