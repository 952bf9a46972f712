//! `evil`'s hypercall attempts: mappings and tables Ferrite's validator must refuse, bad
//! pins and bases, malformed batches, garbage buffers, foreign domains, calls a domU may not
//! make. Each is one raw call whose x0 is reported.

use super::{BAD_VA, Evil, GIC, Outcome};
use ferrite_abi::call::{self, console, memory, sched_ctl, vcpu};
use ferrite_abi::desc::{self, AP_RO, DBM, NORMAL, NS, SH_INNER};
use ferrite_abi::mmu::{MmuUpdate, MmuextOp, ext};
use ferrite_abi::sched;
use ferrite_pv::hypercall::{self, DOMID_SELF};

/// One raw call, x0 back as a signed value.
fn hv(f: u32, x1: u64, x2: u64, x3: u64, x4: u64) -> i64 {
    // Every attempt here is something Ferrite must refuse. Each is chosen to be harmless to
    // this domain's Rust state if Ferrite wrongly allows it (tables linked nowhere, frames
    // Rust does not use), except those `last` makes, which come last on purpose.
    // SAFETY: as above: if one is wrongly allowed, its harm is the finding.
    unsafe { hypercall::raw(f as u64, x1, x2, x3, x4, 0).0 as i64 }
}

/// `MMU_UPDATE` of one raw request.
fn update(ptr: u64, val: u64, domid: u64) -> i64 {
    let req = [MmuUpdate { ptr, val }];
    hv(call::MMU_UPDATE, req.as_ptr() as u64, 1, 0, domid)
}

/// `MMUEXT_OP` of one operation.
fn ext1(op: MmuextOp, domid: u64) -> i64 {
    let ops = [op];
    hv(call::MMUEXT_OP, ops.as_ptr() as u64, 1, 0, domid)
}

fn ext_self(cmd: u32, arg1: u64, arg2: u64) -> i64 {
    ext1(MmuextOp::new(cmd, arg1, arg2), DOMID_SELF)
}

fn memop(cmd: u64, list: &[u64]) -> i64 {
    hv(
        call::MEMORY_OP,
        list.as_ptr() as u64,
        list.len() as u64,
        0,
        cmd,
    )
}

fn ret(r: i64) -> Outcome {
    Outcome::Ret(r)
}

/// Leaves that must not go into a level-3 table.
pub fn mappings(e: &mut Evil) {
    let s = e.s;
    let (t3, foreign, w) = (s.t3, s.foreign, s.writable);
    let below = s.below;
    let pt = s.si.pt_base_ma;
    let rw = |ma| desc::page(ma, NORMAL);
    let ro = |ma| desc::page(ma, NORMAL | AP_RO);
    e.report(
        "map foreign frame (RAM)",
        "EPERM",
        ret(update(t3, rw(foreign), DOMID_SELF)),
    );
    let o = below.map_or(Outcome::Skip("the frame below is ours"), |b| {
        ret(update(t3, ro(b), DOMID_SELF))
    });
    e.report("map foreign frame below own memory", "EPERM", o);
    e.report(
        "map foreign frame (GIC)",
        "EPERM",
        ret(update(t3, ro(GIC), DOMID_SELF)),
    );
    let dev = |ma| desc::page(ma, desc::attr_indx(desc::ATTR_DEVICE) | SH_INNER | desc::AF);
    e.report(
        "map GIC as device memory",
        "EPERM",
        ret(update(t3, dev(GIC), DOMID_SELF)),
    );
    e.report(
        "map own frame as device memory",
        "EPERM",
        ret(update(t3, dev(w), DOMID_SELF)),
    );
    let nc = desc::page(
        w,
        desc::attr_indx(desc::ATTR_NORMAL_NC) | SH_INNER | desc::AF,
    );
    e.report(
        "map own frame non-cacheable",
        "EPERM",
        ret(update(t3, nc, DOMID_SELF)),
    );
    let nsh = desc::page(w, desc::attr_indx(desc::ATTR_NORMAL_WB) | desc::AF);
    e.report(
        "map own frame non-shareable",
        "EINVAL",
        ret(update(t3, nsh, DOMID_SELF)),
    );
    e.report(
        "map own page table writable",
        "EBUSY",
        ret(update(t3, rw(pt), DOMID_SELF)),
    );
    e.report(
        "map own page table writable into itself",
        "EBUSY",
        ret(update(t3, rw(t3), DOMID_SELF)),
    );
    e.report(
        "leaf with DBM",
        "EINVAL",
        ret(update(t3, ro(w) | DBM, DOMID_SELF)),
    );
    e.report(
        "leaf with NS",
        "EINVAL",
        ret(update(t3, ro(w) | NS, DOMID_SELF)),
    );
    let block_at_l3 = desc::block(w, NORMAL | AP_RO);
    e.report(
        "block at level 3",
        "EINVAL",
        ret(update(t3, block_at_l3, DOMID_SELF)),
    );
    // Whatever was allowed above is in a table linked nowhere; clear it anyway.
    update(t3, 0, DOMID_SELF);
}

/// Table descriptors that must not go into a level-2 table.
pub fn tables(e: &mut Evil) {
    let s = e.s;
    let (t2, t3, t0, w, foreign) = (s.t2, s.t3, s.t0, s.writable, s.foreign);
    let t = desc::table;
    e.report(
        "table entry to a writable frame",
        "EBUSY",
        ret(update(t2, t(w), DOMID_SELF)),
    );
    e.report(
        "table entry to a table of the wrong level",
        "EBUSY",
        ret(update(t2 + 8, t(t0), DOMID_SELF)),
    );
    e.report(
        "recursive table entry",
        "EBUSY",
        ret(update(t2 + 16, t(t2), DOMID_SELF)),
    );
    e.report(
        "table entry to a foreign frame",
        "EPERM",
        ret(update(t2 + 24, t(foreign), DOMID_SELF)),
    );
    let reserved = t(t3) | (1 << 2);
    e.report(
        "table entry with reserved bits",
        "EINVAL",
        ret(update(t2 + 32, reserved, DOMID_SELF)),
    );
    for i in 0..5 {
        update(t2 + i * 8, 0, DOMID_SELF);
    }
}

pub fn pins(e: &mut Evil) {
    let s = e.s;
    let pin3 = |ma| ext_self(ext::PIN_L3_TABLE, ma, 0);
    e.report(
        "pin table with an illegal entry",
        "EPERM",
        ret(pin3(s.bad_table)),
    );
    e.report("pin writable frame", "EBUSY", ret(pin3(s.writable)));
    e.report("pin foreign frame", "EPERM", ret(pin3(s.foreign)));
    e.report("pin misaligned address", "EINVAL", ret(pin3(s.t3 + 8)));
    e.report("pin twice", "EINVAL", ret(pin3(s.t3)));
    // The initial L1 table: in use at level 1, not pinned.
    let l1 = {
        let mm = crate::mm();
        mm.walk(s.si.pt_base_ma, s.si.virt_base, 1).ok()
    };
    let o = l1.map_or(Outcome::Skip("no initial L1 table"), |pte| {
        ret(pin3(pte & !0xfff))
    });
    e.report("pin live L1 table as L3", "EBUSY", o);
    e.report(
        "unpin table not pinned",
        "EINVAL",
        ret(ext_self(ext::UNPIN_TABLE, s.sealed, 0)),
    );
    e.report(
        "unpin table used as TTBR base",
        "EBUSY",
        ret(ext_self(ext::UNPIN_TABLE, s.si.pt_base_ma, 0)),
    );
    // A pinned table still linked from another table cannot be unpinned.
    let (t2, t3) = (s.t2, s.t3);
    let o = match update(t2 + 8 * 7, desc::table(t3), DOMID_SELF) {
        0 => ret(ext_self(ext::UNPIN_TABLE, t3, 0)),
        _ => Outcome::Skip("linking the scratch L3 under the scratch L2 failed"),
    };
    e.report("unpin table still linked", "EBUSY", o);
    update(t2 + 8 * 7, 0, DOMID_SELF);
}

pub fn bases(e: &mut Evil) {
    let s = e.s;
    let new0 = |ma, asid| ext_self(ext::NEW_TTBR0, ma, asid);
    let reset = || new0(0, 0);
    e.report(
        "new ttbr0 with unpinned ttbr table",
        "EINVAL",
        ret(new0(s.sealed, 1)),
    );
    reset();
    e.report("new ttbr0 with level-3 table", "EINVAL", ret(new0(s.t3, 1)));
    reset();
    e.report(
        "new ttbr0 with writable frame",
        "EINVAL",
        ret(new0(s.writable, 1)),
    );
    reset();
    e.report(
        "new ttbr0 with foreign frame",
        "EPERM",
        ret(new0(s.foreign, 1)),
    );
    reset();
    e.report(
        "new ttbr0 with ASID above 16 bits",
        "EINVAL",
        ret(new0(s.t0, 0x1_0000)),
    );
    reset();
    let o = ret(ext_self(ext::NEW_TTBR1, s.si.pt_base_ma, 1));
    e.report("new ttbr1 with an ASID", "EINVAL", o);
}

/// Malformed `MMU_UPDATE`s.
pub fn updates(e: &mut Evil) {
    let s = e.s;
    let (t3, w) = (s.t3, s.writable);
    let val = desc::page(w, NORMAL | AP_RO);
    e.report(
        "mmu_update ptr not 8-aligned",
        "EINVAL",
        ret(update(t3 + 4, val, DOMID_SELF)),
    );
    e.report(
        "mmu_update ptr not in a table",
        "EINVAL",
        ret(update(w, val, DOMID_SELF)),
    );
    e.report(
        "mmu_update ptr in read-only non-table",
        "EINVAL",
        ret(update(s.sealed, val, DOMID_SELF)),
    );
    e.report(
        "mmu_update ptr in foreign frame",
        "EPERM",
        ret(update(s.foreign, val, DOMID_SELF)),
    );
    e.report(
        "mmu_update reserved command 1",
        "ENOSYS",
        ret(update(t3 | 1, val, DOMID_SELF)),
    );
    e.report(
        "mmu_update reserved command 3",
        "ENOSYS",
        ret(update(t3 | 3, val, DOMID_SELF)),
    );
    let o = ret(hv(call::MMU_UPDATE, BAD_VA, 1, 0, DOMID_SELF));
    e.report("mmu_update garbage buffer", "EFAULT", o);
    let o = ret(hv(
        call::MMU_UPDATE,
        0xffff_ffff_ffff_f000,
        2,
        0,
        DOMID_SELF,
    ));
    e.report("mmu_update garbage buffer past the top", "EFAULT", o);
    e.report(
        "mmu_update foreign domid 0",
        "EPERM",
        ret(update(t3, val, 0)),
    );
    let other = s.si.domid as u64 + 1;
    e.report(
        "mmu_update foreign domid (next id)",
        "EPERM",
        ret(update(t3, val, other)),
    );
    update(t3, 0, DOMID_SELF);
}

/// Malformed `MMUEXT_OP`s.
pub fn mmuext(e: &mut Evil) {
    let padded = MmuextOp {
        cmd: ext::TLB_FLUSH_LOCAL,
        pad: 1,
        arg1: 0,
        arg2: 0,
    };
    e.report(
        "mmuext_op pad not zero",
        "EINVAL",
        ret(ext1(padded, DOMID_SELF)),
    );
    e.report(
        "mmuext_op unknown command",
        "ENOSYS",
        ret(ext_self(99, 0, 0)),
    );
    let o = ret(ext_self(ext::TLB_FLUSH_LOCAL, 1, 0));
    e.report("mmuext_op tlb flush with argument", "EINVAL", o);
    e.report(
        "mmuext_op invlpg misaligned",
        "EINVAL",
        ret(ext_self(ext::INVLPG_LOCAL, 0x1008, 0)),
    );
    let o = ret(hv(call::MMUEXT_OP, BAD_VA, 1, 0, DOMID_SELF));
    e.report("mmuext_op garbage buffer", "EFAULT", o);
    let flush = MmuextOp::new(ext::TLB_FLUSH_LOCAL, 0, 0);
    e.report("mmuext_op foreign domid 0", "EPERM", ret(ext1(flush, 0)));
}

/// Calls a domU may not make, or with arguments out of range.
pub fn misc(e: &mut Evil) {
    let si = e.s.si;
    e.report(
        "unknown call 0xc60000ff",
        "ENOSYS",
        ret(hv(0xC600_00FF, 0, 0, 0, 0)),
    );
    e.report(
        "features word 1",
        "EINVAL",
        ret(hv(call::FEATURES, 1, 0, 0, 0)),
    );
    let o = ret(hv(call::CONSOLE_IO, console::WRITE, BAD_VA, 16, 0));
    e.report("console_io garbage buffer", "EFAULT", o);
    let o = ret(hv(call::CONSOLE_IO, 7, si as *const _ as u64, 1, 0));
    e.report("console_io unknown command", "ENOSYS", o);
    e.report(
        "event_op unknown command",
        "ENOSYS",
        ret(hv(call::EVENT_OP, 99, 0, 0, 0)),
    );
    e.report(
        "sched_op unknown command",
        "ENOSYS",
        ret(hv(call::SCHED_OP, 99, 0, 0, 0)),
    );
    let o = ret(hv(
        call::SCHED_CTL,
        sched_ctl::GET_INFO,
        si.domid as u64,
        0,
        0,
    ));
    e.report("sched_ctl from a domU", "EPERM", o);
    let o = ret(hv(
        call::SCHED_CTL,
        sched_ctl::SET_WEIGHT,
        si.domid as u64,
        65535,
        0,
    ));
    e.report("sched_ctl set own weight", "EPERM", o);
    let entry = ferrite_pv::rt::secondary_entry_va();
    let o = ret(hv(call::VCPU_OP, vcpu::UP, 1000, entry, 1000));
    e.report("vcpu_op up bad index", "ENOENT", o);
    e.report(
        "vcpu_op is_up bad index",
        "ENOENT",
        ret(hv(call::VCPU_OP, vcpu::IS_UP, 1000, 0, 0)),
    );
}

/// `MEMORY_OP` abuse.
pub fn memory(e: &mut Evil) {
    let s = e.s;
    // INCREASE_RESERVATION must not write frame numbers into a page table (mapped read-only).
    let o = ret(hv(
        call::MEMORY_OP,
        s.si.pt_base,
        1,
        0,
        memory::INCREASE_RESERVATION,
    ));
    // ENOMEM is as good: the reservation may not grow at all, and then nothing is written.
    e.report("increase reservation into a page table", "EFAULT|ENOMEM", o);
    let o = ret(hv(
        call::MEMORY_OP,
        BAD_VA,
        1,
        0,
        memory::DECREASE_RESERVATION,
    ));
    e.report("decrease reservation garbage buffer", "EFAULT", o);
    let dec = memory::DECREASE_RESERVATION;
    e.report(
        "decrease reservation of foreign frame",
        "EPERM",
        ret(memop(dec, &[s.foreign])),
    );
    e.report(
        "decrease reservation of shared-info page",
        "EBUSY",
        ret(memop(dec, &[s.si.shared_info_ma])),
    );
    e.report(
        "decrease reservation of mapped frame",
        "EBUSY",
        ret(memop(dec, &[s.writable])),
    );
    e.report(
        "decrease reservation of pinned table",
        "EBUSY",
        ret(memop(dec, &[s.t3])),
    );
    let o = ret(hv(call::MEMORY_OP, 1, 0, 0, memory::CURRENT_RESERVATION));
    e.report("current reservation with arguments", "EINVAL", o);
}

/// The attempts that would stop or wreck the domain if Ferrite allowed them.
pub fn last(e: &mut Evil) {
    let s = e.s;
    // Making the initial map's entry of the root table writable.
    let o = match initial_entry_of(s.si.pt_first_pfn) {
        Some((pte, d)) => {
            let r = update(pte, d & !AP_RO, DOMID_SELF);
            if r == 0 {
                update(pte, d, DOMID_SELF);
            }
            ret(r)
        }
        None => Outcome::Skip("no initial-map entry for the first page-table frame"),
    };
    e.report("initial map: own page table writable", "EBUSY", o);
    let o = memop(memory::DECREASE_RESERVATION, &[e.s.si.pt_base_ma]);
    e.report("decrease reservation of page table in use", "EBUSY", ret(o));
    let entry = ferrite_pv::rt::secondary_entry_va();
    let o = ret(hv(call::VCPU_OP, vcpu::UP, 0, entry, 0));
    e.report("vcpu_op up running vcpu0", "EEXIST", o);
    let o = ret(hv(call::SCHED_OP, sched::SHUTDOWN, 99, 0, 0));
    e.report("shutdown with unknown reason", "EINVAL", o);
    let o = ret(hv(call::VCPU_OP, vcpu::DOWN, 0, 0, 0));
    e.report("vcpu_op down last running vcpu", "EBUSY", o);
}

/// The initial map's level-3 entry for `pfn` and its value.
fn initial_entry_of(pfn: u64) -> Option<(u64, u64)> {
    let mm = crate::mm();
    let pte = mm.initial_pte(pfn).ok()?;
    let d = mm
        .read_desc(pte & !0xfff, ((pte & 0xfff) / 8) as usize)
        .ok()?;
    Some((pte, d))
}
