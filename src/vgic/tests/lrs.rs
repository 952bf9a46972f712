//! LR encodings: exact bit layouts and round trips.

use super::super::lr::*;

fn lr(intid: u32, state: LrState, priority: u8, group1: bool, hw: Option<u32>) -> Lr {
    Lr {
        intid,
        state,
        priority,
        group1,
        hw,
        source: 0,
        eoi_maintenance: false,
    }
}

#[test]
fn v3_layout() {
    let l = lr(1019, LrState::PendingActive, 0xa0, true, Some(0x1abc));
    let v = encode_v3(&l);
    assert_eq!(v & 0xffff_ffff, 1019);
    assert_eq!(v >> 62, 0b11);
    assert_eq!(v >> 61 & 1, 1, "HW");
    assert_eq!(v >> 60 & 1, 1, "Group");
    assert_eq!(v >> 48 & 0xff, 0xa0);
    assert_eq!(v >> 32 & 0x1fff, 0x1abc);
    assert_eq!(
        encode_v3(&lr(27, LrState::Pending, 0, false, None)),
        1 << 62 | 27
    );
    assert_eq!(
        encode_v3(&lr(27, LrState::Active, 0, false, None)),
        2 << 62 | 27
    );
    let eoi = Lr {
        eoi_maintenance: true,
        ..lr(40, LrState::Pending, 0x80, true, None)
    };
    assert_eq!(
        encode_v3(&eoi),
        1 << 62 | 1 << 60 | 0x80 << 48 | 1 << 41 | 40
    );
    // A physical INTID leaves no room for the EOI bit.
    let both = Lr {
        eoi_maintenance: true,
        ..lr(40, LrState::Pending, 0, false, Some(40))
    };
    assert!(!decode_v3(encode_v3(&both)).eoi_maintenance);
}

#[test]
fn v2_layout() {
    let l = lr(1019, LrState::Active, 0xf8, true, Some(0x3ff));
    let v = encode_v2(&l);
    assert_eq!(v & 0x3ff, 1019);
    assert_eq!(v >> 31, 1, "HW");
    assert_eq!(v >> 30 & 1, 1, "Grp1");
    assert_eq!(v >> 28 & 3, 0b10);
    assert_eq!(v >> 23 & 0x1f, 0x1f);
    assert_eq!(v >> 10 & 0x3ff, 0x3ff);
    let sgi = Lr {
        source: 5,
        eoi_maintenance: true,
        ..lr(3, LrState::Pending, 0xa0, false, None)
    };
    assert_eq!(
        encode_v2(&sgi),
        1 << 28 | (0xa0 >> 3) << 23 | 1 << 19 | 5 << 10 | 3
    );
    // Only the top five priority bits fit.
    assert_eq!(
        decode_v2(encode_v2(&lr(33, LrState::Pending, 0xa7, false, None))).priority,
        0xa0
    );
}

#[test]
fn round_trips() {
    let states = [
        LrState::Invalid,
        LrState::Pending,
        LrState::Active,
        LrState::PendingActive,
    ];
    let mut n = 0;
    for state in states {
        for intid in [0, 1, 15, 16, 27, 31, 32, 100, 511, 1019] {
            for priority in [0u8, 0x08, 0xa0, 0xf8] {
                for group1 in [false, true] {
                    for hw in [None, Some(intid), Some(1019)] {
                        for (source, eoi) in [(0, false), (7, true), (2, false)] {
                            let (source, eoi) = if hw.is_some() {
                                (0, false)
                            } else {
                                (source, eoi)
                            };
                            let v3 = Lr {
                                source: 0,
                                eoi_maintenance: eoi,
                                ..lr(intid, state, priority, group1, hw)
                            };
                            assert_eq!(decode_v3(encode_v3(&v3)), v3);
                            let v2 = Lr { source, ..v3 };
                            assert_eq!(decode_v2(encode_v2(&v2)), v2);
                            n += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(n, 4 * 10 * 4 * 2 * 3 * 3);
}

#[test]
fn decode_is_total_and_reencodes() {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v3 = decode_v3(x);
        assert_eq!(decode_v3(encode_v3(&v3)), v3);
        let v2 = decode_v2(x as u32);
        assert_eq!(decode_v2(encode_v2(&v2)), v2);
        // The fields the model keeps come back bit for bit.
        let x2 = x as u32;
        if x2 >> 31 == 0 {
            let keep = 0x3ff | 0x7 << 10 | 1 << 19 | 0x1f << 23 | 0x3 << 28 | 1 << 30;
            assert_eq!(encode_v2(&v2), x2 & keep);
        }
        let keep = 0xffff_ffff | 0xff << 48 | 1 << 60 | 0x3 << 62;
        let keep = keep
            | if x >> 61 & 1 == 0 {
                1 << 41
            } else {
                1 << 61 | 0x1fff << 32
            };
        assert_eq!(encode_v3(&v3), x & keep);
    }
}

#[test]
fn default_is_invalid() {
    assert_eq!(Lr::default(), Lr::INVALID);
    assert_eq!(decode_v3(0), Lr::INVALID);
    assert_eq!(decode_v2(0), Lr::INVALID);
}
