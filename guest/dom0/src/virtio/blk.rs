//! The block-device check: write a pattern to a few sectors, one of them (sector 2) carrying an
//! ASCII signature a host test can find in the image file, read them back, compare, flush.
//!
//! The signature is `FERRITE-DOM0-BLK-TEST <counter>`; the counter is one more than the one
//! sector 2 already holds (1 on a fresh disk), so a test can also tell two boots apart.

use super::{DevIrq, Dom0Hal};
use crate::dt::Irq;
use alloc::vec;
use alloc::vec::Vec;
use virtio_drivers::device::blk::{BlkReq, BlkResp, SECTOR_SIZE, VirtIOBlk};
use virtio_drivers::transport::mmio::MmioTransport;

pub const SIGNATURE: &str = "FERRITE-DOM0-BLK-TEST";
const SIGNATURE_SECTOR: usize = 2;

type Blk = VirtIOBlk<Dom0Hal, MmioTransport<'static>>;

/// The disk after its check, for the block backend.
pub struct Disk {
    blk: Blk,
    irq: DevIrq,
    pub capacity: u64,
}

// SAFETY: the device's registers and queues are reached only through `&mut Disk`, which the
// `DISK` mutex hands to one vCPU at a time; nothing in it is tied to the vCPU that made it.
unsafe impl Send for Disk {}

/// dom0's disk, once checked.
pub static DISK: spin::Mutex<Option<Disk>> = spin::Mutex::new(None);

impl Disk {
    /// Reads (or, with `write`, writes) whole sectors from `sector`.
    pub fn io(&mut self, write: bool, sector: u64, buf: &mut [u8]) -> Result<(), &'static str> {
        let dir = if write { Dir::Write } else { Dir::Read };
        request(&mut self.blk, &mut self.irq, dir, sector as usize, buf)
    }

    pub fn flush(&mut self) -> Result<(), &'static str> {
        let r = self.blk.flush().map_err(|_| "flush failed");
        self.blk.ack_interrupt();
        self.irq.rearm();
        r
    }
}

#[derive(Clone, Copy)]
enum Dir {
    Read,
    Write,
}

/// One request, submitted and completed through the interrupt.
fn request(
    blk: &mut Blk,
    irq: &mut DevIrq,
    dir: Dir,
    sector: usize,
    buf: &mut [u8],
) -> Result<(), &'static str> {
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    let mark = irq.mark();
    // SAFETY: `req`, `buf` and `resp` stay alive and untouched until `complete_*` below, which
    // runs before they go out of scope (or the device is never told about them: on error).
    let token = unsafe {
        match dir {
            Dir::Read => blk.read_blocks_nb(sector, &mut req, buf, &mut resp),
            Dir::Write => blk.write_blocks_nb(sector, &mut req, buf, &mut resp),
        }
    }
    .map_err(|_| "submit failed")?;
    let done = irq.wait(|| blk.peek_used() == Some(token));
    if done {
        irq.confirm("blk", mark);
    }
    blk.ack_interrupt();
    irq.rearm();
    if !done {
        return Err("no completion within 2 s");
    }
    // SAFETY: the same buffers as were submitted with `token`, now completed.
    unsafe {
        match dir {
            Dir::Read => blk.complete_read_blocks(token, &req, buf, &mut resp),
            Dir::Write => blk.complete_write_blocks(token, &req, buf, &mut resp),
        }
    }
    .map_err(|_| "the device reported an error")
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
fn pattern(sector: usize, counter: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..SECTOR_SIZE)
        .map(|i| (i as u64 ^ (sector as u64 * 37) ^ counter) as u8)
        .collect();
    if sector == SIGNATURE_SECTOR {
        let text = alloc::format!("{SIGNATURE} {counter}\n");
        b.fill(b' ');
        b[..text.len()].copy_from_slice(text.as_bytes());
    }
    b
}

pub fn check(transport: MmioTransport<'static>, irq: Option<Irq>) -> bool {
    match run(transport, irq) {
        Ok(()) => true,
        Err(e) => {
            println!("dom0: blk: FAILED: {e}");
            false
        }
    }
}

fn run(transport: MmioTransport<'static>, irq: Option<Irq>) -> Result<(), alloc::string::String> {
    let mut blk = Blk::new(transport).map_err(|e| alloc::format!("init: {e}"))?;
    let capacity = blk.capacity();
    if blk.readonly() {
        return Err(alloc::format!("{capacity} sectors, read-only"));
    }
    if capacity < 4 {
        return Err(alloc::format!("{capacity} sectors: too small to test"));
    }
    let mut irq = DevIrq::new(irq, "blk");
    blk.enable_interrupts();

    let mut buf = vec![0u8; SECTOR_SIZE];
    request(&mut blk, &mut irq, Dir::Read, SIGNATURE_SECTOR, &mut buf)
        .map_err(|e| alloc::format!("reading sector {SIGNATURE_SECTOR}: {e}"))?;
    let counter = previous_counter(&buf).unwrap_or(0) + 1;

    let sectors = [1, SIGNATURE_SECTOR, 3, capacity as usize - 1];
    for &s in &sectors {
        let mut data = pattern(s, counter);
        request(&mut blk, &mut irq, Dir::Write, s, &mut data)
            .map_err(|e| alloc::format!("writing sector {s}: {e}"))?;
    }
    for &s in &sectors {
        buf.fill(0);
        request(&mut blk, &mut irq, Dir::Read, s, &mut buf)
            .map_err(|e| alloc::format!("reading sector {s} back: {e}"))?;
        if buf != pattern(s, counter) {
            return Err(alloc::format!(
                "sector {s} read back differs from what was written"
            ));
        }
    }
    // The driver's flush waits by polling; its interrupt is still acknowledged.
    blk.flush().map_err(|e| alloc::format!("flush: {e}"))?;
    blk.ack_interrupt();
    irq.rearm();

    println!(
        "dom0: blk: {capacity} sectors, wrote and read back {} sectors: ok",
        sectors.len()
    );
    println!("dom0: blk: signature \"{SIGNATURE} {counter}\" at sector {SIGNATURE_SECTOR}");
    println!(
        "dom0: blk: {}/{} completions by interrupt (INTID {})",
        irq.taken,
        sectors.len() * 2 + 1,
        irq.intid().unwrap_or(0)
    );
    *DISK.lock() = Some(Disk { blk, irq, capacity });
    Ok(())
}

/// `dom0.bench.blk=<MiB>`: reads `mib` MiB from sector 0 in 32 KiB requests (the most a
/// domU's 8-segment request moves) and prints the rate in virtual time.
pub fn bench(mib: u64) {
    let mut guard = DISK.lock();
    let Some(d) = guard.as_mut() else {
        println!("dom0: bench: blk: no disk");
        return;
    };
    let mut buf = vec![0u8; 32 << 10];
    let per = buf.len() as u64 / SECTOR_SIZE as u64;
    let total = (mib << 20).min(d.capacity * SECTOR_SIZE as u64) / buf.len() as u64;
    let t0 = crate::timer::counter();
    for i in 0..total {
        if let Err(e) = d.io(false, i * per, &mut buf) {
            println!("dom0: bench: blk: FAILED: {e}");
            return;
        }
    }
    let us = crate::timer::ticks_to_us(crate::timer::counter() - t0).max(1);
    let bytes = total * buf.len() as u64;
    println!(
        "dom0: bench: blk: read {} KiB directly in {us} us: {} KiB/s",
        bytes >> 10,
        (bytes >> 10) * 1_000_000 / us
    );
}
