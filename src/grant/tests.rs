//! Host tests of grant-entry use and copy-op decoding.

use super::*;
use core::sync::atomic::{AtomicU16, AtomicU32};
use ferrite_abi::DOMID_SELF;

fn entry(f: u16, dom: DomId, frame: u32) -> GrantEntry {
    GrantEntry {
        flags: AtomicU16::new(f),
        domid: AtomicU16::new(dom),
        frame: AtomicU32::new(frame),
    }
}

#[test]
fn a_grant_is_used_only_as_granted() {
    let rw = entry(flags::PERMIT_ACCESS, 0, 0x1234);
    assert_eq!(begin(&rw, 0, Access::Write), Ok(0x1234));
    assert_eq!(
        rw.flags.load(Ordering::Relaxed),
        flags::PERMIT_ACCESS | flags::WRITING
    );
    end(&rw, Access::Write);
    assert_eq!(rw.flags.load(Ordering::Relaxed), flags::PERMIT_ACCESS);
    assert_eq!(
        begin(&rw, 3, Access::Read),
        Err(Errno::Perm),
        "another grantee"
    );

    let ro = entry(flags::PERMIT_ACCESS | flags::READONLY, 2, 7);
    assert_eq!(begin(&ro, 2, Access::Write), Err(Errno::Perm));
    assert_eq!(begin(&ro, 2, Access::Read), Ok(7));
    end(&ro, Access::Read);

    let none = entry(0, 2, 7);
    assert_eq!(
        begin(&none, 2, Access::Read),
        Err(Errno::Perm),
        "not granted"
    );
    let junk = entry(flags::PERMIT_ACCESS | 0x8000, 2, 7);
    assert_eq!(begin(&junk, 2, Access::Read), Err(Errno::Inval));
    let forged = entry(flags::PERMIT_ACCESS | flags::READING, 2, 7);
    assert_eq!(
        begin(&forged, 2, Access::Read),
        Err(Errno::Inval),
        "marks are Ferrite's"
    );
}

#[test]
fn a_granter_ending_the_grant_sees_the_use() {
    let e = entry(flags::PERMIT_ACCESS, 1, 9);
    begin(&e, 1, Access::Read).unwrap();
    // gnttab_end_foreign_access: CAS expecting no marks fails while in use.
    assert!(
        e.flags
            .compare_exchange(flags::PERMIT_ACCESS, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
    );
    end(&e, Access::Read);
    assert!(
        e.flags
            .compare_exchange(flags::PERMIT_ACCESS, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    );
    assert_eq!(begin(&e, 1, Access::Read), Err(Errno::Perm), "revoked");
}

#[test]
fn tables_are_checked_and_bound_their_references() {
    assert_eq!(Table::new(0x1001, 1), Err(Errno::Inval));
    assert_eq!(Table::new(0x1000, 0), Err(Errno::Inval));
    assert_eq!(Table::new(0x1000, MAX_TABLE_PAGES + 1), Err(Errno::Inval));
    let t = Table::new(0x8000_0000, 2).unwrap();
    assert_eq!(t.entries(), 1024);
    assert_eq!(t.entry_addr(0), Ok(0x8000_0000));
    assert_eq!(t.entry_addr(1023), Ok(0x8000_0000 + 1023 * 8));
    assert_eq!(t.entry_addr(1024), Err(Errno::NoEnt));
    assert_eq!(t.entry_addr(u64::MAX), Err(Errno::NoEnt));
}

#[test]
fn copy_ops_are_decoded_with_their_bounds() {
    let g = |gref, domid, offset| GrantPtr {
        gref_or_va: gref,
        domid,
        offset,
        pad: 0,
    };
    let (s, d, n) = decode(
        g(5, 1, 100),
        g(0xdead_0000, 0, 0),
        200,
        copy::SOURCE_GREF,
        0,
        DOMID_SELF,
    )
    .unwrap();
    assert_eq!(
        s,
        Side::Granted {
            dom: 1,
            gref: 5,
            offset: 100
        }
    );
    assert_eq!(d, Side::Local { va: 0xdead_0000 });
    assert_eq!(n, 200);
    // DOMID_SELF on a granted side is the caller.
    let (_, d, _) = decode(
        g(0, 0, 0),
        g(3, DOMID_SELF, 0),
        1,
        copy::DEST_GREF,
        4,
        DOMID_SELF,
    )
    .unwrap();
    assert_eq!(
        d,
        Side::Granted {
            dom: 4,
            gref: 3,
            offset: 0
        }
    );
    assert_eq!(
        decode(
            g(0, 1, 4000),
            g(0, 0, 0),
            97,
            copy::SOURCE_GREF,
            0,
            DOMID_SELF
        ),
        Err(Errno::Inval)
    );
    assert!(
        decode(
            g(0, 1, 4000),
            g(0, 0, 0),
            96,
            copy::SOURCE_GREF,
            0,
            DOMID_SELF
        )
        .is_ok()
    );
    assert_eq!(
        decode(g(0, 1, 0), g(0, 0, 0), 4097, 0, 0, DOMID_SELF),
        Err(Errno::Inval)
    );
    assert_eq!(
        decode(g(0, 1, 0), g(0, 0, 0), 1, 4, 0, DOMID_SELF),
        Err(Errno::Inval)
    );
}
