//! Whole builds into a fake machine with scattered, shuffled frames: the PV MMU must accept
//! the tables (pinning the root, and pinning every table bottom-up), and walking them must
//! find every pfn where docs/abi.md says, with the right permissions and contents.

use super::*;
use crate::domain::DomId;
use crate::pv::{Base, Effect, FrameTable, FrameType, Policy, Ttbr, mmuext_op};
use alloc::string::String;
use ferrite_abi::desc as d;
use ferrite_abi::mmu::{MmuextOp, ext};
use ferrite_abi::start_info::{self, MAGIC};

const DOM: DomId = 7;
const HZ: u64 = 62_500_000;
const CMDLINE: &str = "console=hvc0 root=/dev/ram0 quiet";

fn params(nr_vcpus: u32) -> StartParams<'static> {
    StartParams {
        domid: DOM,
        nr_vcpus,
        counter_hz: HZ,
        cmdline: CMDLINE,
        // MODULE here is the builder's to decide: cleared when there is no module.
        flags: start_info::flags::PRIVILEGED | start_info::flags::MODULE,
        console_evtchn: 1,
    }
}

struct Booted {
    image: Vec<u8>,
    module: Option<Vec<u8>>,
    frames: Vec<u64>,
    plan: Plan,
    built: Built,
    m: Machine,
}

fn boot(image: Vec<u8>, nr_pages: u64, module: Option<Vec<u8>>, seed: u64) -> Booted {
    let img = parse(&image).unwrap();
    let frames = scattered(nr_pages, seed);
    let mut m = Machine::new(&frames);
    let module_len = module.as_ref().map(|v| v.len() as u64);
    let plan = plan(&img, nr_pages, module_len, 2).unwrap();
    let built = build(&plan, &img, module.as_deref(), &frames, &mut m, params(2)).unwrap();
    Booted {
        image,
        module,
        frames,
        plan,
        built,
        m,
    }
}

/// The level-3 descriptor mapping `va`, walking from `root` and checking every table
/// descriptor on the way is plain; None where the walk stops at an invalid entry.
fn walk(m: &Machine, root: u64, va: u64, tables: &mut BTreeSet<(u64, u8)>) -> Option<u64> {
    let mut t = root;
    for level in 0..3u8 {
        tables.insert((t, level));
        let e = m.u64_at(t + 8 * d::index(va, level) as u64);
        if e & d::VALID == 0 {
            assert_eq!(e, 0, "unused entries are zero");
            return None;
        }
        assert_eq!(e, d::table(e), "a table descriptor without attributes");
        t = d::output_address(e);
    }
    tables.insert((t, 3));
    let e = m.u64_at(t + 8 * d::index(va, 3) as u64);
    (e & d::VALID != 0).then_some(e)
}

/// Reads `len` bytes at `va` through the tables.
fn read_va(m: &Machine, root: u64, va: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut va = va;
    while out.len() < len {
        let n = (len - out.len()).min(4096 - (va % 4096) as usize);
        let e = walk(m, root, va, &mut BTreeSet::new()).expect("mapped");
        out.extend(m.bytes(d::output_address(e) + va % 4096, n));
        va += n as u64;
    }
    out
}

/// Everything docs/abi.md promises, checked on the result of [`boot`]; `exec` are the pfns
/// the kernel's executable segments touch.
fn check(b: &mut Booted, exec: &[u64]) {
    let (p, bt) = (b.plan.clone(), b.built.clone());
    let img = parse(&b.image).unwrap();
    let pfn_of_pt: BTreeMap<u64, u8> = bt.page_tables.iter().map(|t| (t.pfn, t.level)).collect();

    // The returned description.
    assert_eq!(bt.root_ma, b.frames[p.page_tables.start as usize]);
    assert_eq!(bt.ttbr, p.ttbr);
    assert_eq!(bt.entry, img.entry());
    assert_eq!(bt.stack_top, p.va(p.stack.end));
    assert_eq!(bt.start_info_va, p.va(p.start_info_pfn));
    assert_eq!(bt.shared_info_ma, b.frames[p.shared_info_pfn as usize]);
    assert_eq!(bt.shared_info_va, p.va(p.shared_info_pfn));
    assert_eq!(bt.page_tables.len() as u64, p.nr_pt_frames());
    assert_eq!(bt.page_tables[0].ma, bt.root_ma);
    assert!(bt.page_tables.windows(2).all(|w| w[0].level <= w[1].level));
    for (k, t) in bt.page_tables.iter().enumerate() {
        assert_eq!(t.pfn, p.page_tables.start + k as u64);
        assert_eq!(t.ma, b.frames[t.pfn as usize]);
    }
    for level in 0..4u8 {
        let n = bt.page_tables.iter().filter(|t| t.level == level).count();
        assert_eq!(n as u64, p.tables_per_level[level as usize]);
    }

    // The validator accepts the tables as they are: pin, then load the root.
    let mut ft = FrameTable::new(DOM, &b.frames, 2, Policy::default()).unwrap();
    let load = match bt.ttbr {
        Ttbr::Ttbr0 => ext::NEW_TTBR0,
        Ttbr::Ttbr1 => ext::NEW_TTBR1,
    };
    let ops = [
        MmuextOp::pin(0, bt.root_ma),
        MmuextOp::new(load, bt.root_ma, 0),
    ];
    let mut effects = Vec::new();
    let r = mmuext_op(DOM, &mut ft, &mut b.m, 0, &ops, 16, &mut |e| {
        effects.push(e)
    });
    assert_eq!(r, (2, Ok(())));
    let base = Base {
        table: bt.root_ma,
        asid: 0,
    };
    assert_eq!(effects, [Effect::LoadBase(bt.ttbr, Some(base))]);
    for pfn in 0..p.nr_pages {
        let info = ft.info(b.frames[pfn as usize]).unwrap();
        match pfn_of_pt.get(&pfn) {
            Some(&level) => {
                assert_eq!(info.ty, FrameType::PageTable(level), "pfn {pfn}");
                assert_eq!(info.pinned, pfn == p.page_tables.start);
            }
            None => {
                assert_eq!(info.ty, FrameType::Writable, "pfn {pfn}");
                assert_eq!(info.type_count, 1, "pfn {pfn} is mapped writable once");
            }
        }
    }
    // Ferrite's hold on the shared-info page works on top of the mapping.
    ft.acquire_writable(bt.shared_info_ma, &mut b.m).unwrap();

    // Every pfn at virt_base + pfn * 4096, with the attributes the ABI promises.
    let mut tables = BTreeSet::new();
    for pfn in 0..p.nr_pages {
        let e = walk(&b.m, bt.root_ma, p.va(pfn), &mut tables).expect("every pfn is mapped");
        assert_eq!(d::output_address(e), b.frames[pfn as usize], "pfn {pfn}");
        assert_eq!(e & d::ATTR_INDX_MASK, d::attr_indx(d::ATTR_NORMAL_WB));
        assert_eq!(e & d::SH_MASK, d::SH_INNER);
        assert_ne!(e & d::AF, 0);
        assert_eq!(e & d::NG, 0);
        assert_eq!(e & d::AP_EL0, 0);
        assert_ne!(e & d::UXN, 0);
        let is_pt = p.page_tables.contains(&pfn);
        assert_eq!(e & d::AP_RO != 0, is_pt, "pfn {pfn}: read-only iff a table");
        assert_eq!(e & d::PXN == 0, exec.contains(&pfn), "pfn {pfn}: PXN");
        let known = d::OA_MASK | d::ATTR_INDX_MASK | d::SH_MASK | d::AF | d::UXN | d::PXN;
        assert_eq!(e & !(known | d::AP_RO | d::PAGE | d::VALID), 0);
    }
    let want: BTreeSet<(u64, u8)> = bt.page_tables.iter().map(|t| (t.ma, t.level)).collect();
    assert_eq!(tables, want, "the walks use exactly the listed tables");
    // Nothing either side of the mapping (where that is still in the same half).
    let below = p.virt_base.wrapping_sub(4096);
    if p.virt_base & ((1 << 48) - 1) != 0 {
        assert_eq!(walk(&b.m, bt.root_ma, below, &mut BTreeSet::new()), None);
    }
    let after = p.virt_base + p.nr_pages * 4096;
    if after & ((1 << 48) - 1) != 0 {
        assert_eq!(walk(&b.m, bt.root_ma, after, &mut BTreeSet::new()), None);
    }

    // The kernel: segments' bytes at their addresses, zero everywhere else (the text offset,
    // gaps between segments, BSS, the end of the last page), whatever the frames held.
    let kernel_bytes = (p.kernel.end * 4096) as usize;
    let mut want = alloc::vec![0u8; kernel_bytes];
    for s in img.segments() {
        let off = (s.vaddr - p.virt_base) as usize;
        want[off..off + s.file.len()].copy_from_slice(img.file_bytes(s));
    }
    assert!(read_va(&b.m, bt.root_ma, p.virt_base, kernel_bytes) == want);

    // The module, then zero to the end of its last page.
    if let Some(module) = &b.module {
        let len = ((p.module.end - p.module.start) * 4096) as usize;
        let got = read_va(&b.m, bt.root_ma, p.va(p.module.start), len);
        assert!(got[..module.len()] == module[..]);
        assert!(got[module.len()..].iter().all(|&x| x == 0));
    }

    // The frame list.
    let list_bytes = ((p.frame_list.end - p.frame_list.start) * 4096) as usize;
    let list = read_va(&b.m, bt.root_ma, p.va(p.frame_list.start), list_bytes);
    for (pfn, &ma) in b.frames.iter().enumerate() {
        assert_eq!(get64(&list, 8 * pfn), ma);
    }
    assert!(list[8 * b.frames.len()..].iter().all(|&x| x == 0));

    // The start-info page, decoded at the offsets docs/abi.md gives.
    let si = read_va(&b.m, bt.root_ma, bt.start_info_va, 4096);
    let (w32, w64) = (
        |o: usize| u32::from_le_bytes(si[o..o + 4].try_into().unwrap()),
        |o: usize| get64(&si, o),
    );
    assert_eq!(w64(0), MAGIC);
    assert_eq!(w32(8), start_info::VERSION);
    let module_flag = if b.module.is_some() {
        start_info::flags::MODULE
    } else {
        0
    };
    assert_eq!(w32(12), start_info::flags::PRIVILEGED | module_flag);
    assert_eq!(w64(16), p.nr_pages);
    assert_eq!(w64(24), p.va(p.frame_list.start));
    assert_eq!(w64(32), bt.shared_info_ma);
    assert_eq!(w64(40), p.virt_base);
    assert_eq!(w64(48), p.va(p.page_tables.start));
    assert_eq!(w64(56), bt.root_ma);
    assert_eq!(w64(64), p.nr_pt_frames());
    assert_eq!(w64(72), p.page_tables.start);
    assert_eq!(w64(80), p.first_free_pfn);
    match &b.module {
        Some(module) => {
            assert_eq!(w64(88), p.va(p.module.start));
            assert_eq!(w64(96), module.len() as u64);
        }
        None => assert_eq!((w64(88), w64(96)), (0, 0)),
    }
    assert_eq!(w32(104), 1, "the console event channel");
    assert_eq!(w32(108), u32::from(DOM));
    assert_eq!(w32(112), 2);
    assert_eq!(w32(116), 0);
    assert_eq!(w64(120), HZ);
    let nul = si[128..1152].iter().position(|&x| x == 0).unwrap();
    assert_eq!(
        String::from_utf8(si[128..128 + nul].to_vec()).unwrap(),
        CMDLINE
    );
    assert!(si[128 + nul..1152].iter().all(|&x| x == 0));
    assert_eq!(w64(1152), bt.shared_info_va);
    assert_eq!(w64(1160), p.va(p.console_pfn));
    assert_eq!(w64(1168), bt.console_ma);
    assert_eq!(bt.console_ma, b.frames[p.console_pfn as usize]);
    assert!(si[1176..].iter().all(|&x| x == 0), "reserved and the rest");
    let con_page = read_va(&b.m, bt.root_ma, p.va(p.console_pfn), 4096);
    assert!(
        con_page.iter().all(|&x| x == 0),
        "the console ring starts empty"
    );

    // The shared-info page and the boot stack start zeroed.
    let si_page = read_va(&b.m, bt.root_ma, bt.shared_info_va, 4096);
    assert!(si_page.iter().all(|&x| x == 0));
    let stack_len = (super::STACK_PAGES * 4096) as usize;
    let stack = read_va(&b.m, bt.root_ma, bt.stack_top - stack_len as u64, stack_len);
    assert!(stack.iter().all(|&x| x == 0));

    // Free frames are the caller's business: never touched.
    for pfn in p.first_free_pfn..p.nr_pages {
        assert!(
            !b.m.touched(b.frames[pfn as usize]),
            "free pfn {pfn} written"
        );
    }
    assert_eq!(b.m.nr_touched() as u64, p.first_free_pfn);

    // Pinning bottom-up, one table at a time, also works: the levels are right.
    let mut ft = FrameTable::new(DOM, &b.frames, 2, Policy::default()).unwrap();
    let ops: Vec<MmuextOp> = bt
        .page_tables
        .iter()
        .rev()
        .map(|t| MmuextOp::pin(t.level, t.ma))
        .collect();
    let r = mmuext_op(DOM, &mut ft, &mut b.m, 0, &ops, ops.len(), &mut |_| {});
    assert_eq!(r, (ops.len(), Ok(())));
}

#[test]
fn kernel_in_the_upper_half() {
    const HIGH: u64 = 0xFFFF_8000_0000_0000;
    let mut b = boot(kernel(HIGH), 16384, Some(pattern(100_000, 5)), 1);
    assert_eq!(b.built.ttbr, Ttbr::Ttbr1);
    assert_eq!(b.built.entry, HIGH + TEXT + 0x40);
    assert_eq!(b.plan.tables_per_level, [1, 1, 1, 32]);
    check(&mut b, &[128, 129]);
}

#[test]
fn small_domain_in_the_lower_half() {
    let mut b = boot(tiny(0x4000_0000), 64, None, 2);
    assert_eq!(b.built.ttbr, Ttbr::Ttbr0);
    assert_eq!(b.built.stack_top, 0x4000_e000);
    check(&mut b, &[0, 1]);
}

#[test]
fn mappings_across_table_boundaries() {
    // 16 MiB across a 1 GiB boundary; across a 512 GiB one; at the very top of the upper
    // half; a PIE linked at 0 with a module.
    let mut b = boot(kernel(0x3FE0_0000), 4096, None, 3);
    assert_eq!(b.plan.tables_per_level, [1, 1, 2, 8]);
    check(&mut b, &[128, 129]);
    let mut b = boot(kernel(0x7F_FFE0_0000), 4096, Some(pattern(4096, 6)), 4);
    assert_eq!(b.plan.tables_per_level, [1, 2, 2, 8]);
    check(&mut b, &[128, 129]);
    let mut b = boot(kernel(0xFFFF_FFFF_FF00_0000), 4095, None, 5);
    assert_eq!(b.plan.tables_per_level, [1, 1, 1, 8]);
    check(&mut b, &[128, 129]);
    let mut pie = kernel(0);
    put16(&mut pie, 16, 3);
    let mut b = boot(pie, 1000, Some(pattern(1, 7)), 6);
    check(&mut b, &[128, 129]);
}

#[test]
fn the_validator_is_not_a_rubber_stamp() {
    // Make one page-table frame writable in the built tables: the pin must refuse the tree.
    let b = boot(tiny(0x4000_0000), 64, None, 8);
    let mut m = b.m;
    let pt_pfn = b.plan.page_tables.start + 2;
    let l3 = b.built.page_tables.last().unwrap().ma;
    let pte = l3 + 8 * d::index(b.plan.va(pt_pfn), 3) as u64;
    let e = m.u64_at(pte);
    assert_ne!(e & d::AP_RO, 0);
    m.write(pte, &(e & !d::AP_RO).to_le_bytes());
    let mut ft = FrameTable::new(DOM, &b.frames, 2, Policy::default()).unwrap();
    let ops = [MmuextOp::pin(0, b.built.root_ma)];
    let r = mmuext_op(DOM, &mut ft, &mut m, 0, &ops, 1, &mut |_| {});
    assert_eq!(r, (0, Err(crate::pv::Errno::Busy)));
}

#[test]
fn errors_write_nothing() {
    let image = tiny(0x4000_0000);
    let img = parse(&image).unwrap();
    let frames = scattered(64, 9);
    let p = plan(&img, 64, None, 2).unwrap();
    let mut m = Machine::new(&frames);
    let mut attempt = |p: &Plan, module: Option<&[u8]>, frames: &[u64], params: StartParams<'_>| {
        build(p, &img, module, frames, &mut m, params).unwrap_err()
    };
    assert!(matches!(
        attempt(&p, None, &frames[..63], params(2)),
        BuildError::Mismatch(_)
    ));
    let mut bad = frames.clone();
    bad[9] += 8;
    assert_eq!(
        attempt(&p, None, &bad, params(2)),
        BuildError::BadFrame {
            pfn: 9,
            ma: frames[9] + 8
        }
    );
    bad[9] = 1 << 48;
    assert!(matches!(
        attempt(&p, None, &bad, params(2)),
        BuildError::BadFrame { pfn: 9, .. }
    ));
    let long = "x".repeat(1024);
    let too_long = StartParams {
        cmdline: &long,
        ..params(2)
    };
    assert_eq!(
        attempt(&p, None, &frames, too_long),
        BuildError::CmdlineTooLong { len: 1024 }
    );
    assert!(matches!(
        attempt(&p, Some(&[1, 2, 3]), &frames, params(2)),
        BuildError::Mismatch(_)
    ));
    assert!(matches!(
        attempt(&p, None, &frames, params(3)),
        BuildError::Mismatch(_)
    ));
    let other = tiny(0x4020_0000);
    let other = plan(&parse(&other).unwrap(), 64, None, 2).unwrap();
    assert!(matches!(
        attempt(&other, None, &frames, params(2)),
        BuildError::Mismatch(_)
    ));
    assert_eq!(m.nr_touched(), 0, "a refused build writes nothing");

    // The longest command line that fits is taken whole.
    let longest = "y".repeat(1023);
    let ok = StartParams {
        cmdline: &longest,
        ..params(2)
    };
    let built = build(&p, &img, None, &frames, &mut m, ok).unwrap();
    let si_pa = frames[p.start_info_pfn as usize];
    assert!(m.bytes(si_pa + 128, 1023).iter().all(|&x| x == b'y'));
    assert_eq!(m.bytes(si_pa + 128 + 1023, 1), [0]);
    assert_eq!(built.start_info_va, p.va(p.start_info_pfn));
}
