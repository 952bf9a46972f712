//! Grant tables on the machine: `GNTTAB_OP` (set the table, copy through grants) and the
//! reserved grants the domain builder makes (each domU's console page, for dom0). The entry
//! rules are portable ([`crate::grant`]); here are the checks that depend on the kind of
//! domain (whose frame it is, whether it is a page table) and the copies themselves.
//!
//! Uses of grants are serialised by one lock held across each copy op (at most 4 KiB), so an
//! entry's in-use mark needs no count. Frame-table locks are taken inside it, one at a time.

use super::{Vm, domain, pvmm};
use crate::arch::exceptions::TrapFrame;
use crate::arch::guest_mem;
use crate::arch::stage2::{self, Stage2Map};
use crate::domain::DomId;
use crate::grant::active::{Active, Mapping, Window};
use crate::grant::{self, Access, Side, Table};
use crate::mm::region::Region;
use crate::pv::FrameType;
use core::sync::atomic::{AtomicU64, Ordering};
use ferrite_abi::grant::{self as abi, GREF_CONSOLE, GREF_FIRST_FREE, GrantCopy, GrantEntry};
use ferrite_abi::{DOMID_SELF, Errno};
use spin::Mutex;

const NO_TABLE: Option<Table> = None;
static TABLES: Mutex<[Option<Table>; super::MAX_DOMAINS]> =
    Mutex::new([NO_TABLE; super::MAX_DOMAINS]);
/// Uses of grant entries (copies in progress, mappings). Taken after `TABLES`.
static ACTIVE: Mutex<Active> = Mutex::new(Active::new());
/// dom0's stage 2 and its grant window. Taken after `TABLES`, before `ACTIVE`.
static DOM0_MAPS: Mutex<Option<Dom0Maps>> = Mutex::new(None);

struct Dom0Maps {
    s2: Stage2Map,
    window: Window,
}

// SAFETY: the stage-2 tables are Ferrite's heap memory, reached only through this mutex; nothing
// in them is tied to the CPU that built them.
unsafe impl Send for Dom0Maps {}

/// dom0's stage 2, kept for mapping granted frames into `window` (none: dom0 cannot map).
pub fn set_dom0_stage2(s2: Stage2Map, window: Option<Region>) {
    match window {
        Some(w) => {
            *DOM0_MAPS.lock() = Some(Dom0Maps {
                s2,
                window: Window::new(w.start, (w.size / 4096) as usize),
            });
            log::info!("dom0: grant window {w}: {} pages", w.size / 4096);
        }
        // Nothing will map into it: the tables stay for the domain's life.
        None => core::mem::forget(s2),
    }
}
/// Per domU: its console ring page (machine address), granted to dom0 as `GREF_CONSOLE`.
static CONSOLE_PAGE: [AtomicU64; super::MAX_DOMAINS] =
    [const { AtomicU64::new(0) }; super::MAX_DOMAINS];

/// The builder made domU `id`'s console page `ma`.
pub fn set_console_page(id: DomId, ma: u64) {
    CONSOLE_PAGE[id as usize].store(ma, Ordering::Release);
}

pub fn console_page(id: DomId) -> u64 {
    CONSOLE_PAGE[id as usize].load(Ordering::Acquire)
}

/// Forgets domain `id`'s grants (a failed build, a destroyed domain). Its table's frames are
/// released with the rest of its memory.
pub fn remove_domain(id: DomId) {
    TABLES.lock()[id as usize] = None;
    CONSOLE_PAGE[id as usize].store(0, Ordering::Release);
}

/// How many of domain `id`'s grant references other domains use now (mappings, copies).
pub fn mapped_by_others(id: DomId) -> usize {
    ACTIVE.lock().granter_uses(id)
}

/// How many of other domains' grants PV domU `id` maps now.
pub fn maps_of(id: DomId) -> usize {
    PV_ALLOWED.lock().range((id, 0)..=(id, u64::MAX)).count()
}

/// A dying PV domU's own maps of other domains' grants end: its vCPUs are off every CPU for
/// good, so its page tables are never walked again; TLBs are flushed before the granters get
/// their frames back.
pub fn release_maps_of(id: DomId) {
    let tables = TABLES.lock();
    let mine: alloc::vec::Vec<(u64, Allowed)> = {
        let mut a = PV_ALLOWED.lock();
        let keys: alloc::vec::Vec<(DomId, u64)> =
            a.range((id, 0)..=(id, u64::MAX)).map(|(k, _)| *k).collect();
        keys.into_iter()
            .filter_map(|k| a.remove(&k).map(|x| (k.1, x)))
            .collect()
    };
    if mine.is_empty() {
        return;
    }
    crate::arch::cpu::tlb_flush_guests();
    for (ma, x) in mine {
        for _ in 0..x.maps {
            end_mapping(&*tables, x.granter, x.gref, ma, x.writable);
        }
    }
}

/// `GNTTAB_OP`.
#[inline(never)]
pub fn gnttab_op(vm: &'static Vm, v: usize, frame: &mut TrapFrame) -> i64 {
    let (cmd, a, b) = (frame.x[1], frame.x[2], frame.x[3]);
    let r = match cmd {
        abi::SET_TABLE => set_table(vm, a, b),
        abi::COPY => copy_batch(vm, a, b),
        abi::QUERY_SIZE => Ok(TABLES.lock()[vm.id as usize].map_or(0, |t| t.entries() as u64)),
        abi::MAP => map(vm, a, b, frame.x[4], frame),
        abi::UNMAP => unmap(vm, a),
        _ => Err(Errno::NoSys),
    };
    match r {
        Ok(x) => x as i64,
        Err(e) => {
            log::warn!(
                "{}: vcpu{v}: GNTTAB_OP {cmd} ({a:#x}, {b:#x}): {}",
                vm.name,
                e.name()
            );
            e.to_ret()
        }
    }
}

/// Whether the page at `pa` is `vm`'s (PV: a frame it owns; dom0: its RAM).
fn owns_page(vm: &Vm, pa: u64) -> bool {
    match vm.pv() {
        Some(pv) => pv.frames.lock().owns(pa & !0xfff),
        None => {
            let page = Region::new(pa & !0xfff, 4096);
            vm.memory.iter().any(|r| r.contains_region(&page))
        }
    }
}

fn set_table(vm: &Vm, base: u64, pages: u64) -> Result<u64, Errno> {
    let t = Table::new(base, pages)?;
    let mut tables = TABLES.lock();
    if tables[vm.id as usize].is_some() {
        return Err(Errno::Exist);
    }
    let addrs = (0..pages).map(|i| base + i * 4096);
    match vm.pv() {
        Some(pv) => {
            // Held writable: the table can never become a page table under Ferrite's writes.
            let mut ft = pv.frames.lock();
            for (held, pa) in addrs.enumerate() {
                if let Err(e) = ft.acquire_writable(pa, &mut super::domu::Phys) {
                    for undo in (0..held as u64).map(|i| base + i * 4096) {
                        let _ = ft.release_writable(undo, &mut super::domu::Phys);
                    }
                    return Err(e);
                }
            }
        }
        None => {
            if !addrs.into_iter().all(|pa| owns_page(vm, pa)) {
                return Err(Errno::Fault);
            }
        }
    }
    tables[vm.id as usize] = Some(t);
    Ok(0)
}

/// Up to `MAX_COPY_OPS` ops from the caller's array at `va`; each op's status written back.
fn copy_batch(vm: &'static Vm, va: u64, count: u64) -> Result<u64, Errno> {
    let n = count.min(abi::MAX_COPY_OPS as u64);
    for i in 0..n {
        let at = va.wrapping_add(i * size_of::<GrantCopy>() as u64);
        let mut raw = [0u8; size_of::<GrantCopy>()];
        if !read_local(vm, at, &mut raw) {
            return if i == 0 { Err(Errno::Fault) } else { Ok(i) };
        }
        let op = decode_op(&raw);
        let status = match copy_one(vm, &op) {
            Ok(()) => 0,
            Err(e) => {
                log::warn!(
                    "{}: grant copy {i}: {} (source {:?}, dest {:?}, {} bytes)",
                    vm.name,
                    e.name(),
                    op.source,
                    op.dest,
                    op.len
                );
                e.to_ret() as i32
            }
        };
        let off = core::mem::offset_of!(GrantCopy, status) as u64;
        if !write_local(vm, at + off, &status.to_le_bytes()) {
            return if i == 0 { Err(Errno::Fault) } else { Ok(i) };
        }
    }
    Ok(n)
}

fn decode_op(raw: &[u8; 40]) -> GrantCopy {
    let u64_at = |o: usize| u64::from_le_bytes(raw[o..o + 8].try_into().unwrap());
    let u16_at = |o: usize| u16::from_le_bytes(raw[o..o + 2].try_into().unwrap());
    let ptr = |o: usize| abi::GrantPtr {
        gref_or_va: u64_at(o),
        domid: u16_at(o + 8),
        offset: u16_at(o + 10),
        pad: 0,
    };
    GrantCopy {
        source: ptr(0),
        dest: ptr(16),
        len: u16_at(32),
        flags: u16_at(34),
        status: 0,
    }
}

fn read_local(vm: &Vm, va: u64, out: &mut [u8]) -> bool {
    if vm.is_pv() {
        pvmm::read_guest(vm, va, out)
    } else {
        guest_mem::read(va, out, &vm.memory)
    }
}

fn write_local(vm: &Vm, va: u64, data: &[u8]) -> bool {
    if vm.is_pv() {
        pvmm::write_guest(vm, va, data)
    } else {
        guest_mem::write_with(va, data, |r, copy| {
            let ok = vm.memory.iter().any(|m| m.contains_region(&r));
            if ok {
                copy();
            }
            ok
        })
    }
}

/// A granted side, resolved: the granter, the entry in use (None for a reserved grant, which
/// Ferrite keeps itself) and the machine address the copy starts at.
struct Granted {
    granter: &'static Vm,
    entry: Option<(&'static GrantEntry, DomId, u64)>,
    pa: u64,
    access: Access,
}

impl Granted {
    fn end(&self) {
        if let Some((e, dom, gref)) = self.entry {
            ACTIVE.lock().release(e, dom, gref, self.access);
        }
    }
}

fn resolve(
    tables: &[Option<Table>],
    caller: DomId,
    dom: DomId,
    gref: u64,
    offset: u16,
    access: Access,
) -> Result<Granted, Errno> {
    let granter = domain(dom).ok_or(Errno::NoEnt)?;
    if gref < GREF_FIRST_FREE as u64 {
        // Reserved references are the builder's grants to dom0, kept by Ferrite.
        let page = if gref == GREF_CONSOLE as u64 && caller == 0 {
            console_page(dom)
        } else {
            0
        };
        if page == 0 {
            return Err(Errno::Perm);
        }
        return Ok(Granted {
            granter,
            entry: None,
            pa: page + offset as u64,
            access,
        });
    }
    let t = tables[dom as usize].ok_or(Errno::NoEnt)?;
    let addr = t.entry_addr(gref)?;
    // SAFETY: the entry is in the granter's table pages, checked at SET_TABLE to be its memory
    // (and held writable for a PV granter), identity-mapped at EL2; its fields are atomics.
    let entry = unsafe { &*(addr as *const GrantEntry) };
    let frame = ACTIVE.lock().acquire(entry, dom, gref, caller, access)?;
    let pa = ((frame as u64) << 12) + offset as u64;
    if !owns_page(granter, pa) {
        ACTIVE.lock().release(entry, dom, gref, access);
        log::warn!(
            "{}: grant {gref} names frame {frame:#x}, which is not its own",
            granter.name
        );
        return Err(Errno::Perm);
    }
    Ok(Granted {
        granter,
        entry: Some((entry, dom, gref)),
        pa,
        access,
    })
}

/// Grant copies' bounce buffer (taken under `TABLES`, after it).
static BOUNCE: Mutex<[u64; 128]> = Mutex::new([0; 128]);

fn copy_one(vm: &'static Vm, op: &GrantCopy) -> Result<(), Errno> {
    let (src, dst, len) = grant::decode(op.source, op.dest, op.len, op.flags, vm.id, DOMID_SELF)?;
    let tables = TABLES.lock();
    let mut held: [Option<Granted>; 2] = [None, None];
    let r = (|| {
        if let Side::Granted { dom, gref, offset } = src {
            held[0] = Some(resolve(&*tables, vm.id, dom, gref, offset, Access::Read)?);
        }
        if let Side::Granted { dom, gref, offset } = dst {
            held[1] = Some(resolve(&*tables, vm.id, dom, gref, offset, Access::Write)?);
        }
        // The bounce buffer, 8-aligned so whole words move. One static buffer, not a zeroed
        // array per op: zeroing 1 KiB cost about as much as a frame's copy. Copies are
        // serialised by `TABLES` (held here), so the lock below is never contended.
        let mut bounce = BOUNCE.lock();
        // SAFETY: plain bytes over the u64 array, which the guard keeps ours while `buf` lives.
        let buf =
            unsafe { core::slice::from_raw_parts_mut(bounce.as_mut_ptr().cast::<u8>(), 1024) };
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            match (&src, &held[0]) {
                (Side::Local { va }, _) => {
                    if !read_local(vm, va.wrapping_add(done as u64), &mut buf[..n]) {
                        return Err(Errno::Fault);
                    }
                }
                (_, Some(g)) => read_phys(g.granter, g.pa + done as u64, &mut buf[..n])?,
                _ => unreachable!(),
            }
            match (&dst, &held[1]) {
                (Side::Local { va }, _) => {
                    if !write_local(vm, va.wrapping_add(done as u64), &buf[..n]) {
                        return Err(Errno::Fault);
                    }
                }
                (_, Some(g)) => write_phys(g.granter, g.pa + done as u64, &buf[..n])?,
                _ => unreachable!(),
            }
            done += n;
        }
        Ok(())
    })();
    for g in held.iter().flatten() {
        g.end();
    }
    r
}

/// Reads from the granter's page; for a PV granter under its frame table's lock, so the frame
/// cannot be given back (and given to another domain) during the read.
fn read_phys(granter: &Vm, pa: u64, out: &mut [u8]) -> Result<(), Errno> {
    let mut copy = || {
        // SAFETY: `pa..pa + out.len()` lies in one page the granter owns (checked by
        // `resolve`, and again here for a PV granter, under its lock; offset + len <= 4096 by
        // `grant::decode`), RAM identity-mapped at EL2.
        unsafe { guest_mem::copy(out.as_mut_ptr(), pa as *const u8, out.len()) };
    };
    match granter.pv() {
        Some(pv) => {
            let ft = pv.frames.lock();
            if !ft.owns(pa & !0xfff) {
                return Err(Errno::Perm);
            }
            copy();
        }
        None => copy(),
    }
    Ok(())
}

/// Writes into the granter's page; for a PV granter only while (and if) it is no page table.
fn write_phys(granter: &Vm, pa: u64, data: &[u8]) -> Result<(), Errno> {
    let copy = || {
        // SAFETY: as in `read_phys`; for a PV granter the frame table's lock is held, so the
        // frame cannot become a page table during the copy.
        unsafe { guest_mem::copy(pa as *mut u8, data.as_ptr(), data.len()) };
    };
    match granter.pv() {
        Some(pv) => {
            let ft = pv.frames.lock();
            match ft.info(pa & !0xfff) {
                Some(i) if !matches!(i.ty, FrameType::PageTable(_)) => {
                    copy();
                    Ok(())
                }
                _ => Err(Errno::Perm),
            }
        }
        None => {
            copy();
            Ok(())
        }
    }
}

/// `MAP` (dom0): granter `dom`'s reference `gref` into dom0's grant window, read-only if bit 0
/// of `fl` is set. Returns the guest-physical address; x1 = the machine address (for DMA by a
/// device dom0 drives).
fn map(vm: &'static Vm, dom: u64, gref: u64, fl: u64, frame: &mut TrapFrame) -> Result<u64, Errno> {
    if fl & !abi::MAP_READONLY != 0 {
        return Err(Errno::Inval);
    }
    let writable = fl & abi::MAP_READONLY == 0;
    let access = access_of(writable);
    let dom = u16::try_from(dom).map_err(|_| Errno::Inval)?;
    if vm.is_pv() {
        return pv_map(vm, dom, gref, writable, access);
    }
    let tables = TABLES.lock();
    let mut maps = DOM0_MAPS.lock();
    let maps = maps.as_mut().ok_or(Errno::NoSys)?;
    let ma = begin_mapping(&*tables, vm.id, dom, gref, access)?;
    let undo = || end_mapping(&*tables, dom, gref, ma, writable);
    let m = Mapping {
        granter: dom,
        gref,
        ma,
        writable,
    };
    let ipa = match maps.window.insert(m) {
        Ok(ipa) => ipa,
        Err(e) => {
            undo();
            return Err(e);
        }
    };
    if maps.s2.map_page_at(ipa, ma, writable).is_err() {
        let _ = maps.window.remove(ipa);
        undo();
        return Err(Errno::Inval);
    }
    frame.x[1] = ma;
    Ok(ipa)
}

/// `UNMAP` (dom0): the mapping at guest-physical `ipa` goes; the grant's use ends.
fn unmap(vm: &'static Vm, ipa: u64) -> Result<u64, Errno> {
    if vm.is_pv() {
        return pv_unmap(vm, ipa);
    }
    let tables = TABLES.lock();
    let mut maps = DOM0_MAPS.lock();
    let maps = maps.as_mut().ok_or(Errno::NoSys)?;
    let m = maps.window.remove(ipa)?;
    let _ = maps.s2.unmap_page(ipa);
    // The caller is dom0, whose VMID is loaded: its TLBs forget the page on every CPU before
    // the grant's use ends.
    stage2::flush_ipa(ipa);
    end_mapping(&*tables, m.granter, m.gref, m.ma, m.writable);
    Ok(0)
}

/// What a PV domU may map of another domain's memory: per (grantee, machine address), from
/// `MAP` to `UNMAP`. Taken inside the grantee's frame-table lock (the validator asks it), so
/// it takes no other lock itself.
static PV_ALLOWED: Mutex<alloc::collections::BTreeMap<(DomId, u64), Allowed>> =
    Mutex::new(alloc::collections::BTreeMap::new());

#[derive(Clone, Copy, Debug)]
struct Allowed {
    granter: DomId,
    gref: u64,
    writable: bool,
    /// `MAP` calls not yet undone.
    maps: u32,
    /// Page-table entries of the grantee that map it now.
    ptes: u32,
}

/// The validator's view of a PV domU's grants: a foreign frame may appear in one of its leaf
/// entries only while a `MAP` allows it (writable only if that map was).
#[derive(Clone, Copy, Debug, Default)]
pub struct PvGrants;

impl crate::pv::Grants for PvGrants {
    fn map(&mut self, dom: DomId, pa: u64, writable: bool) -> bool {
        let mut a = PV_ALLOWED.lock();
        match a.get_mut(&(dom, pa)) {
            Some(x) if x.maps > 0 && (x.writable || !writable) => {
                x.ptes += 1;
                true
            }
            _ => false,
        }
    }

    fn unmap(&mut self, dom: DomId, pa: u64, _writable: bool) {
        if let Some(x) = PV_ALLOWED.lock().get_mut(&(dom, pa)) {
            x.ptes = x.ptes.saturating_sub(1);
        }
    }
}

fn access_of(writable: bool) -> Access {
    if writable {
        Access::Write
    } else {
        Access::Read
    }
}

/// `MAP` for a PV domU: allows the granted frame in its page tables (through `MMU_UPDATE`) and
/// returns its machine address. The grant is marked in use and the granter's frame held until
/// the matching `UNMAP`.
fn pv_map(
    vm: &'static Vm,
    dom: DomId,
    gref: u64,
    writable: bool,
    access: Access,
) -> Result<u64, Errno> {
    if dom == vm.id {
        return Err(Errno::Inval);
    }
    let tables = TABLES.lock();
    let ma = begin_mapping(&*tables, vm.id, dom, gref, access)?;
    let mut a = PV_ALLOWED.lock();
    let x = a.entry((vm.id, ma)).or_insert(Allowed {
        granter: dom,
        gref,
        writable,
        maps: 0,
        ptes: 0,
    });
    if x.maps > 0 && (x.granter != dom || x.gref != gref || x.writable != writable) {
        drop(a);
        end_mapping(&*tables, dom, gref, ma, writable);
        return Err(Errno::Busy);
    }
    x.granter = dom;
    x.gref = gref;
    x.writable = writable;
    x.maps += 1;
    Ok(ma)
}

/// `UNMAP` for a PV domU: `ma` as `MAP` returned it. `-EBUSY` while an entry still maps it.
fn pv_unmap(vm: &'static Vm, ma: u64) -> Result<u64, Errno> {
    let tables = TABLES.lock();
    let x = {
        let mut a = PV_ALLOWED.lock();
        let x = a.get_mut(&(vm.id, ma)).ok_or(Errno::NoEnt)?;
        if x.ptes > 0 && x.maps == 1 {
            return Err(Errno::Busy);
        }
        x.maps -= 1;
        let x = *x;
        if x.maps == 0 {
            a.remove(&(vm.id, ma));
        }
        x
    };
    // The entries are gone, but a TLB may still hold the frame: forget it on every CPU (the
    // caller's VMID is the one loaded) before the granter can have it back.
    crate::pv::GuestMemory::flush_tlbs(&mut super::domu::Phys);
    end_mapping(&*tables, x.granter, x.gref, ma, x.writable);
    Ok(0)
}

/// Starts a mapping's use of `dom`'s reference `gref`: the entry is marked in use and a PV
/// granter's frame held (as writable: while mapped it can neither become a page table nor be
/// given back and on to another domain). Returns the frame's machine address.
fn begin_mapping(
    tables: &[Option<Table>],
    caller: DomId,
    dom: DomId,
    gref: u64,
    access: Access,
) -> Result<u64, Errno> {
    let g = resolve(tables, caller, dom, gref, 0, access)?;
    let ma = g.pa & !0xfff;
    if let Some(pv) = g.granter.pv()
        && let Err(e) = pv
            .frames
            .lock()
            .acquire_writable(ma, &mut super::domu::Phys)
    {
        g.end();
        return Err(e);
    }
    Ok(ma)
}

/// Ends what [`begin_mapping`] started (the granter may be gone by now).
fn end_mapping(tables: &[Option<Table>], granter: DomId, gref: u64, ma: u64, writable: bool) {
    let Some(vm) = domain(granter) else { return };
    if let Some(pv) = vm.pv() {
        let _ = pv
            .frames
            .lock()
            .release_writable(ma, &mut super::domu::Phys);
    }
    if gref >= GREF_FIRST_FREE as u64
        && let Some(t) = tables[granter as usize]
        && let Ok(addr) = t.entry_addr(gref)
    {
        let access = access_of(writable);
        // SAFETY: as in `resolve`: the granter's table page, identity-mapped, atomics.
        let entry = unsafe { &*(addr as *const GrantEntry) };
        ACTIVE.lock().release(entry, granter, gref, access);
    }
}
