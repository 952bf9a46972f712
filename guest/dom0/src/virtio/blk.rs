//! dom0's virtio-blk driver, its boot check and its benchmark.
//!
//! The driver keeps several requests in the device's queue at once, each with a scatter list
//! of data buffers ([`Buf`]): dom0's own memory, or pages of other domains mapped in Ferrite's
//! grant window, which the device reaches at their machine addresses (`hal.rs`). Requests are
//! submitted with a caller's tag ([`Disk::submit`], [`Disk::kick`]) and their completions
//! taken by tag as the device finishes them ([`Disk::poll`]), in whatever order it does; the
//! block backend serves its frontends this way. [`Disk::io`] and [`Disk::flush`] wait for one
//! request (the boot check, the toolstack's save area): completions of others that arrive
//! meanwhile are kept for [`Disk::poll`].
//!
//! The boot check reads the first and last sectors. Only with `dom0.blk.selftest` does it also
//! write: a pattern to a few sectors, one of them (sector 2) carrying an ASCII signature a host
//! test can find in the image file, read back, compared, flushed. The
//! signature is `FERRITE-DOM0-BLK-TEST <counter>`; the counter is one more than the one sector
//! 2 already holds (1 on a fresh disk), so a test can also tell two boots apart.

use super::{DevIrq, Dom0Hal};
use crate::dt::Irq;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::mmio::MmioTransport;
use virtio_drivers::transport::{DeviceStatus, Transport};

pub const SIGNATURE: &str = "FERRITE-DOM0-BLK-TEST";
const SIGNATURE_SECTOR: u64 = 2;
pub const SECTOR_SIZE: usize = 512;

/// Data buffers one request may have: an indirect blkif request's segments.
pub const MAX_BUFS: usize = ferrite_abi::blkif::MAX_INDIRECT_SEGMENTS;
/// Descriptors in the queue. With indirect descriptors (QEMU's virtio-blk offers them) a
/// request takes one, whatever its buffers; without, its buffers, a header and a status. QEMU's
/// virtio-blk offers 256.
const QUEUE_SIZE: usize = 128;
const QUEUE: u16 = 0;

/// Feature bits (virtio 1.2, 5.2.3 and 6).
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;
const F_INDIRECT_DESC: u64 = 1 << 28;
const F_VERSION_1: u64 = 1 << 32;

/// Request types (virtio 1.2, 5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

/// The tag of [`Disk::io`]'s and [`Disk::flush`]'s own request; callers of
/// [`Disk::submit`] use others.
const SYNC_TAG: u64 = u64::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
    Flush,
}

/// One data buffer: `len` bytes at dom0's address `addr` (its RAM, or within one page of the
/// grant window).
#[derive(Clone, Copy, Debug, Default)]
pub struct Buf {
    pub addr: u64,
    pub len: usize,
}

/// The request header the device reads and the status byte it writes.
#[repr(C)]
struct Cmd {
    kind: u32,
    reserved: u32,
    sector: u64,
    status: u8,
}

const HEADER_LEN: usize = 16;

/// A request in the device's queue, under its first descriptor's index (its buffers are in
/// [`Disk::bufs`] under the same index: kept apart, a request's record stays small to move).
struct Pending {
    tag: u64,
    op: Op,
    cmd: Box<Cmd>,
    n: usize,
}

/// The descriptor chain of a request as `VirtQueue` wants it: what the device reads (the
/// header, a write's data), then what it writes (a read's data, the status). Kept in [`Disk`]
/// and refilled per request: two arrays of 65 slices built afresh for each request (and again
/// for its completion) cost more than the rest of a submission. Entries past the request's are
/// empty slices: each use empties the ones it filled.
struct Chain {
    ins: [&'static [u8]; MAX_BUFS + 1],
    outs: [&'static mut [u8]; MAX_BUFS + 1],
}

impl Chain {
    fn new() -> Self {
        Self {
            ins: [&[]; MAX_BUFS + 1],
            outs: core::array::from_fn(|_| <&mut [u8]>::default()),
        }
    }

    /// Fills the chain for request `p` with data buffers `bufs`: (inputs, outputs).
    ///
    /// # Safety
    /// The slices alias `p.cmd` and the data buffers: they may only be handed to the queue
    /// (which passes them to `Dom0Hal::share`, never dereferencing them), and [`Chain::clear`]
    /// must empty them before `p` or the buffers go; the data buffers must be mapped memory of
    /// at least their length.
    unsafe fn fill(&mut self, p: &mut Pending, bufs: &[Buf]) -> (usize, usize) {
        let cmd: *mut Cmd = &mut *p.cmd;
        // SAFETY: the header is the first 16 bytes of `*cmd`, the status byte its field; both
        // live in the box as long as `p`.
        self.ins[0] = unsafe { core::slice::from_raw_parts(cmd.cast::<u8>(), HEADER_LEN) };
        let (mut ni, mut no) = (1, 0);
        for b in bufs {
            if p.op == Op::Write {
                // SAFETY: the caller of `Disk::submit` promised the buffer stays mapped.
                self.ins[ni] = unsafe { core::slice::from_raw_parts(b.addr as *const u8, b.len) };
                ni += 1;
            } else {
                // SAFETY: as above; only the device writes it meanwhile.
                self.outs[no] =
                    unsafe { core::slice::from_raw_parts_mut(b.addr as *mut u8, b.len) };
                no += 1;
            }
        }
        // SAFETY: as for the header.
        self.outs[no] = unsafe { core::slice::from_raw_parts_mut(&raw mut (*cmd).status, 1) };
        (ni, no + 1)
    }

    /// Empties the first `ni` inputs and `no` outputs, once the queue has taken or given back
    /// the chain.
    fn clear(&mut self, ni: usize, no: usize) {
        self.ins[..ni].fill(&[]);
        for o in &mut self.outs[..no] {
            *o = <&mut [u8]>::default();
        }
    }
}

/// dom0's disk, for the block backend and the toolstack.
pub struct Disk {
    transport: MmioTransport<'static>,
    queue: VirtQueue<Dom0Hal, QUEUE_SIZE>,
    irq: DevIrq,
    pub capacity: u64,
    readonly: bool,
    can_flush: bool,
    /// By first descriptor index.
    pending: Vec<Option<Pending>>,
    /// Each pending request's data buffers, by the same index.
    bufs: Vec<[Buf; MAX_BUFS]>,
    /// The device takes indirect descriptors: a request uses one descriptor of the queue.
    indirect: bool,
    chain: Chain,
    /// Request headers of completed requests, for the next ones: a heap allocation and free
    /// per request cost as much as the rest of a submission.
    #[allow(clippy::vec_box)] // boxed: the device reads each header where it was put
    spare_cmds: Vec<Box<Cmd>>,
    /// Completions [`Disk::io`] took while waiting for its own, for [`Disk::poll`].
    done: VecDeque<(u64, Result<(), &'static str>)>,
    /// Requests added since the device was last notified.
    unkicked: bool,
}

// SAFETY: the device's registers and queues are reached only through `&mut Disk`, which the
// `DISK` mutex hands to one vCPU at a time; nothing in it is tied to the vCPU that made it.
unsafe impl Send for Disk {}

/// dom0's disk, once checked.
pub static DISK: spin::Mutex<Option<Disk>> = spin::Mutex::new(None);

impl Disk {
    /// Brings the device up (virtio 1.2, 3.1.1) with one request queue.
    fn new(mut transport: MmioTransport<'static>, irq: Option<Irq>) -> Result<Self, String> {
        transport.set_status(DeviceStatus::empty());
        transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
        let offered = transport.read_device_features();
        let features = offered & (F_RO | F_FLUSH | F_INDIRECT_DESC | F_VERSION_1);
        transport.write_driver_features(features);
        transport.set_status(
            DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER | DeviceStatus::FEATURES_OK,
        );
        transport.set_guest_page_size(virtio_drivers::PAGE_SIZE as u32);
        let low: u32 = transport
            .read_config_space(0)
            .map_err(|e| alloc::format!("capacity: {e}"))?;
        let high: u32 = transport
            .read_config_space(4)
            .map_err(|e| alloc::format!("capacity: {e}"))?;
        let indirect = features & F_INDIRECT_DESC != 0;
        let queue = VirtQueue::new(&mut transport, QUEUE, indirect, false)
            .map_err(|e| alloc::format!("queue of {QUEUE_SIZE}: {e}"))?;
        transport.finish_init();
        let irq = DevIrq::new(irq, "blk");
        Ok(Self {
            transport,
            queue,
            irq,
            capacity: (high as u64) << 32 | low as u64,
            readonly: features & F_RO != 0,
            can_flush: features & F_FLUSH != 0,
            pending: (0..QUEUE_SIZE).map(|_| None).collect(),
            bufs: vec![[Buf::default(); MAX_BUFS]; QUEUE_SIZE],
            indirect,
            chain: Chain::new(),
            spare_cmds: Vec::new(),
            done: VecDeque::new(),
            unkicked: false,
        })
    }

    /// Whether a request with `bufs` data buffers fits in the queue now.
    pub fn room(&self, bufs: usize) -> bool {
        let need = if self.indirect { 1 } else { bufs + 2 };
        self.queue.available_desc() >= need
    }

    /// Adds a request to the queue (the device hears of it at the next [`Disk::kick`]); its
    /// completion comes from [`Disk::poll`] with `tag`. Each buffer is a multiple of 512
    /// bytes; they follow each other on the disk from `sector`. A flush has none.
    ///
    /// # Safety
    /// Every buffer must stay mapped, and (but for the device) untouched, until `poll` returns
    /// this `tag`'s completion.
    pub unsafe fn submit(
        &mut self,
        tag: u64,
        op: Op,
        sector: u64,
        bufs: &[Buf],
    ) -> Result<(), &'static str> {
        if bufs.len() > MAX_BUFS || (op == Op::Flush) != bufs.is_empty() {
            return Err("malformed request");
        }
        if bufs.iter().any(|b| b.len == 0 || b.len % SECTOR_SIZE != 0) {
            return Err("a buffer is not whole sectors");
        }
        if op == Op::Flush && !self.can_flush {
            // Nothing to flush: the device has no write cache to speak of.
            self.done.push_back((tag, Ok(())));
            return Ok(());
        }
        if op == Op::Write && self.readonly {
            return Err("the disk is read-only");
        }
        if !self.room(bufs.len()) {
            return Err("the queue is full");
        }
        let kind = match op {
            Op::Read => T_IN,
            Op::Write => T_OUT,
            Op::Flush => T_FLUSH,
        };
        let header = Cmd {
            kind,
            reserved: 0,
            sector,
            status: 0xff,
        };
        let cmd = match self.spare_cmds.pop() {
            Some(mut c) => {
                *c = header;
                c
            }
            None => Box::new(header),
        };
        let mut p = Pending {
            tag,
            op,
            cmd,
            n: bufs.len(),
        };
        // SAFETY: the slices are only handed to the queue, and emptied just after; the buffers
        // stay valid (our caller's promise) and the header with `p`, which is kept until the
        // device is done.
        let (ni, no) = unsafe { self.chain.fill(&mut p, bufs) };
        let c = &mut self.chain;
        // SAFETY: as above: nothing touches these buffers until `pop_used` gives them back.
        let added = unsafe { self.queue.add(&c.ins[..ni], &mut c.outs[..no]) };
        c.clear(ni, no);
        let token = added.map_err(|_| "the queue refused the request")?;
        self.bufs[token as usize][..bufs.len()].copy_from_slice(bufs);
        self.pending[token as usize] = Some(p);
        self.unkicked = true;
        Ok(())
    }

    /// Tells the device of the requests added since the last kick (one register write for all).
    pub fn kick(&mut self) {
        if core::mem::take(&mut self.unkicked) && self.queue.should_notify() {
            self.transport.notify(QUEUE);
        }
    }

    /// Acknowledges the device's interrupt and unmasks it again.
    fn rearm(&mut self) {
        self.transport.ack_interrupt();
        self.irq.rearm();
    }

    /// The next request the device finished: (its tag, its result), or `None`. When there is
    /// none, the interrupt is acknowledged and unmasked, so the next completion interrupts.
    pub fn poll(&mut self) -> Option<(u64, Result<(), &'static str>)> {
        if let Some(d) = self.done.pop_front() {
            return Some(d);
        }
        if !self.queue.can_pop() {
            // Acknowledge before looking again: a completion after the look interrupts.
            self.rearm();
            if !self.queue.can_pop() {
                return None;
            }
        }
        self.pop_used()
    }

    /// The next completion in the device's used ring, if any.
    fn pop_used(&mut self) -> Option<(u64, Result<(), &'static str>)> {
        let token = self.queue.peek_used()?;
        let Some(mut p) = self.pending.get_mut(token as usize).and_then(Option::take) else {
            // The device used a descriptor chain we never gave it: it is broken, stop using it.
            println!("dom0: blk: the device completed an unknown request {token}");
            return None;
        };
        let c = &mut self.chain;
        let n = p.n;
        // SAFETY: the same slices as were added under `token`, now returned by the device, and
        // emptied just after.
        let (ni, no) = unsafe { c.fill(&mut p, &self.bufs[token as usize][..n]) };
        let outs: *mut [&'static mut [u8]] = &mut c.outs[..no];
        #[allow(clippy::unnecessary_cast)] // it changes the elements' lifetime, which is the point
        // SAFETY: as above. `pop_used` wants its outputs' elements to live as long as its
        // borrow of them; it only reads them (to give each buffer back to the HAL) and stores
        // nothing into the slice, so seeing the 'static elements as shorter-lived is sound.
        let popped = unsafe {
            self.queue
                .pop_used(token, &c.ins[..ni], &mut *(outs as *mut [&mut [u8]]))
        };
        c.clear(ni, no);
        let result = match (popped, p.cmd.status) {
            (Err(_), _) => Err("the queue lost the request"),
            (Ok(_), 0) => Ok(()),
            (Ok(_), 2) => Err("the device does not support the request"),
            (Ok(_), _) => Err("the device reported an error"),
        };
        if self.spare_cmds.len() < QUEUE_SIZE {
            self.spare_cmds.push(p.cmd);
        }
        Some((p.tag, result))
    }

    /// Sleeps (bounded, in WFI) until a completion is ready for [`Disk::poll`]. False on
    /// timeout.
    pub fn wait(&mut self) -> bool {
        !self.done.is_empty() || self.wait_used()
    }

    /// Sleeps (bounded) until the device's used ring has a completion.
    fn wait_used(&mut self) -> bool {
        if self.queue.can_pop() {
            return true;
        }
        // Unmask only: acknowledging here, after the request went to the device, could clear
        // the interrupt of a completion that has just arrived and not been taken yet (seen by
        // polling, it would then look like a completion without interrupt). A status left
        // from an earlier completion just interrupts once more (the handler counts and masks
        // it); it is acknowledged after the wait.
        self.irq.rearm();
        let q = &self.queue;
        self.irq.wait(|| q.can_pop())
    }

    /// One request, waited for; completions of others met meanwhile are kept for `poll`.
    fn one(&mut self, op: Op, sector: u64, bufs: &[Buf]) -> Result<(), &'static str> {
        let mark = self.irq.mark();
        // SAFETY: the buffers are our caller's, borrowed until we return, and we return only
        // once the device is done with them (or is broken: no completion within 2 s).
        unsafe { self.submit(SYNC_TAG, op, sector, bufs)? };
        // Completed at once (a flush of a disk without a cache)?
        if let Some(i) = self.done.iter().position(|d| d.0 == SYNC_TAG) {
            return self.done.remove(i).map_or(Ok(()), |d| d.1);
        }
        self.kick();
        loop {
            if !self.wait_used() {
                return Err("no completion within 2 s");
            }
            while let Some((tag, r)) = self.pop_used() {
                if tag == SYNC_TAG {
                    self.irq.confirm("blk", mark);
                    self.rearm();
                    return r;
                }
                self.done.push_back((tag, r));
            }
        }
    }

    /// Reads (or, with `write`, writes) whole sectors from `sector`, waiting for them.
    pub fn io(&mut self, write: bool, sector: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        let op = if write { Op::Write } else { Op::Read };
        let bufs: Vec<Buf> = buf
            .chunks_mut(64 << 10)
            .map(|c| Buf {
                addr: c.as_mut_ptr() as u64,
                len: c.len(),
            })
            .collect();
        if bufs.is_empty() || bufs.len() > MAX_BUFS {
            return Err("a request of 1 byte to 4 MiB, please");
        }
        self.one(op, sector, &bufs)
    }

    /// Waits until everything written is on stable storage.
    pub fn flush(&mut self) -> Result<(), &'static str> {
        self.one(Op::Flush, 0, &[])
    }
}

/// The previous boot's counter in the signature sector, if there is one.
fn previous_counter(sector: &[u8]) -> Option<u64> {
    let rest = sector
        .strip_prefix(SIGNATURE.as_bytes())?
        .strip_prefix(b" ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    core::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The pattern each test sector gets: recognisable, different per sector.
fn pattern(sector: u64, counter: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..SECTOR_SIZE)
        .map(|i| (i as u64 ^ (sector * 37) ^ counter) as u8)
        .collect();
    if sector == SIGNATURE_SECTOR {
        let text = alloc::format!("{SIGNATURE} {counter}\n");
        b.fill(b' ');
        b[..text.len()].copy_from_slice(text.as_bytes());
    }
    b
}

/// Brings dom0's disk up and checks it: reads its first and last sectors or, with `selftest`
/// (`dom0.blk.selftest`), the write test of the module docs. Never writes otherwise: the disk
/// may hold a partition table (GPT keeps headers in sector 1 and the last sector) or domUs'
/// disks.
pub fn check(transport: MmioTransport<'static>, irq: Option<Irq>, selftest: bool) -> bool {
    match run(transport, irq, selftest) {
        Ok(()) => true,
        Err(e) => {
            println!("dom0: blk: FAILED: {e}");
            false
        }
    }
}

fn run(transport: MmioTransport<'static>, irq: Option<Irq>, selftest: bool) -> Result<(), String> {
    let mut d = Disk::new(transport, irq).map_err(|e| alloc::format!("init: {e}"))?;
    let capacity = d.capacity;
    if capacity < 4 {
        return Err(alloc::format!("{capacity} sectors: too small to test"));
    }
    let requests = if selftest {
        write_test(&mut d)?
    } else {
        let mut buf = vec![0u8; SECTOR_SIZE];
        for s in [0, capacity - 1] {
            d.io(false, s, &mut buf)
                .map_err(|e| alloc::format!("reading sector {s}: {e}"))?;
        }
        println!(
            "dom0: blk: {capacity} sectors{}, read sectors 0 and {} (written only with dom0.blk.selftest): ok",
            if d.readonly { ", read-only" } else { "" },
            capacity - 1
        );
        2
    };
    println!(
        "dom0: blk: {}/{requests} completions by interrupt (INTID {})",
        d.irq.taken,
        d.irq.intid().unwrap_or(0)
    );
    *DISK.lock() = Some(d);
    Ok(())
}

/// `dom0.blk.selftest`: writes a pattern to sectors 1, 2, 3 and the last, reads them back,
/// compares, flushes. Returns the requests it made.
fn write_test(d: &mut Disk) -> Result<usize, String> {
    let capacity = d.capacity;
    if d.readonly {
        return Err(alloc::format!(
            "{capacity} sectors, read-only: no write test"
        ));
    }
    let mut buf = vec![0u8; SECTOR_SIZE];
    d.io(false, SIGNATURE_SECTOR, &mut buf)
        .map_err(|e| alloc::format!("reading sector {SIGNATURE_SECTOR}: {e}"))?;
    let counter = previous_counter(&buf).unwrap_or(0) + 1;

    let sectors = [1, SIGNATURE_SECTOR, 3, capacity - 1];
    for &s in &sectors {
        let mut data = pattern(s, counter);
        d.io(true, s, &mut data)
            .map_err(|e| alloc::format!("writing sector {s}: {e}"))?;
    }
    for &s in &sectors {
        buf.fill(0);
        d.io(false, s, &mut buf)
            .map_err(|e| alloc::format!("reading sector {s} back: {e}"))?;
        if buf != pattern(s, counter) {
            return Err(alloc::format!(
                "sector {s} read back differs from what was written"
            ));
        }
    }
    d.flush().map_err(|e| alloc::format!("flush: {e}"))?;

    println!(
        "dom0: blk: {capacity} sectors, wrote and read back {} sectors: ok",
        sectors.len()
    );
    println!("dom0: blk: signature \"{SIGNATURE} {counter}\" at sector {SIGNATURE_SECTOR}");
    Ok(sectors.len() * 2 + 2)
}

/// Requests both benchmarks complete before they start the clock (96 MiB of 32 KiB requests,
/// as much in larger ones): the domU's first requests map its pages, and a throttled disk
/// (QEMU's `throttling.bps-read`) lets the first tenth of a second's worth of reads through as
/// a burst (50 MB at 500 MB/s), which the warm-up uses up on both sides.
const BENCH_WARM_UP_BYTES: u64 = 96 << 20;

/// `dom0.bench.blk=<MiB>[:<KiB>[:<depth>]]`: reads `mib` MiB from sector 0 (around again past
/// the disk's end) in requests of `kib` KiB (32 unless given), `depth` of them in flight (32),
/// each with a data buffer per 4 KiB page (the shape of a domU's request, direct or indirect),
/// and prints the rate in real time after a warm-up ([`BENCH_WARM_UP_BYTES`]). A domU's
/// `blk-bench` of the same shape compares with it.
pub fn bench(shape: crate::cmdline::BenchBlk) {
    let crate::cmdline::BenchBlk { mib, kib, depth } = shape;
    let request = (kib << 10) as usize;
    let pages = request / 4096;
    let mut guard = DISK.lock();
    let Some(d) = guard.as_mut() else {
        println!("dom0: bench: blk: no disk");
        return;
    };
    let per = (request / SECTOR_SIZE) as u64;
    let span = d.capacity / per;
    if span == 0 {
        println!("dom0: bench: blk: the disk is smaller than one request");
        return;
    }
    let mut bufs = vec![0u8; depth as usize * request];
    let base = bufs.as_mut_ptr() as u64;
    // Each request in flight has a buffer of its own, named by its tag.
    let mut free: Vec<u64> = (0..depth).collect();
    let mut total = (mib << 20) / request as u64;
    let warm_up = BENCH_WARM_UP_BYTES / request as u64;
    let (mut next, mut finished, mut failed) = (0u64, 0u64, None);
    // The clock starts once the warm-up's requests have completed (none if it is all there is).
    let warm = if total > warm_up { warm_up } else { 0 };
    let mut segs = vec![Buf { addr: 0, len: 4096 }; pages];
    let mut t0 = crate::timer::counter();
    // Counter ticks spent submitting and taking completions, once the clock runs: the CPU
    // cost per request (instructions under -icount), against blkback's (`make bench`).
    let (mut submit_t, mut complete_t) = (0u64, 0u64);
    let (mut submits, mut completions) = (0u64, 0u64);
    while finished < next || next < total {
        let a = crate::timer::counter();
        let next0 = next;
        while next < total
            && let Some(slot) = free.pop()
        {
            let at = base + slot * request as u64;
            for (i, b) in segs.iter_mut().enumerate() {
                b.addr = at + (i * 4096) as u64;
            }
            // SAFETY: `bufs` lives until every request submitted has completed (the loop runs
            // until then, or returns on a dead device after the warning below); slot `slot`
            // is used by this request alone.
            match unsafe { d.submit(slot, Op::Read, (next % span) * per, &segs) } {
                Ok(()) => next += 1,
                Err(e) => {
                    free.push(slot);
                    failed = Some(e);
                    total = next;
                }
            }
        }
        d.kick();
        let b = crate::timer::counter();
        if finished >= warm {
            submit_t += b - a;
            submits += next - next0;
        }
        if finished < next && !d.wait() {
            println!("dom0: bench: blk: FAILED: no completion within 2 s");
            // The device may still write into `bufs`: never free them.
            core::mem::forget(bufs);
            return;
        }
        let c = crate::timer::counter();
        let (timed, finished0) = (finished >= warm, finished);
        while let Some((slot, r)) = d.poll() {
            if let Err(e) = r {
                failed = Some(e);
                total = next;
            }
            free.push(slot);
            finished += 1;
            if finished == warm {
                t0 = crate::timer::counter();
            }
        }
        if timed {
            complete_t += crate::timer::counter() - c;
            completions += finished - finished0;
        }
    }
    if let Some(e) = failed {
        println!("dom0: bench: blk: FAILED: {e}");
        return;
    }
    let us = crate::timer::ticks_to_us(crate::timer::counter() - t0).max(1);
    let bytes = (total - warm) * request as u64;
    println!(
        "dom0: bench: blk: read {} KiB directly in {us} us, after {warm} requests of warm-up ({depth} requests of {kib} KiB in flight): {} KiB/s",
        bytes >> 10,
        (bytes >> 10) * 1_000_000 / us
    );
    println!(
        "dom0: bench: blk: CPU per request: submit {} ns, complete {} ns",
        crate::timer::ticks_to_ns(submit_t) / submits.max(1),
        crate::timer::ticks_to_ns(complete_t) / completions.max(1)
    );
}
