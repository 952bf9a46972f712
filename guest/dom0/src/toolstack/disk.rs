//! Saved domains on dom0's disk: `save <dom> disk:<name>` and `restore disk:<name>` keep a
//! file in the save area `dom0.savearea=<offset>:<size>` names, so it survives a reboot.
//!
//! The area starts with a directory sector: `FERSAVED`, 8 bytes of zeros, then up to
//! [`ENTRIES`] entries of 48 bytes (name, NUL-padded, 32 bytes; first sector relative to the
//! area, u64; length in bytes, u64; an entry with an empty name is free). Files follow it,
//! each at a whole sector. A file is the save format of docs/lifecycle.md: the `SaveHeader`,
//! each vCPU's `VcpuState`, then per page an 8-byte type and 4096 bytes, except that a type
//! with bit 63 ([`ZERO`]) set is a page of zeros with no bytes after it.

use super::store::File;
use crate::virtio::blk::DISK;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::call::{self, domctl};
use ferrite_abi::ctl::{SaveHeader, VcpuState};
use spin::Mutex;

const MAGIC: &[u8; 8] = b"FERSAVED";
/// Files the directory sector holds.
pub const ENTRIES: usize = 10;
/// In a file's page type: a page of zeros, no bytes stored.
pub const ZERO: u64 = 1 << 63;
const SECTOR: u64 = 512;
const CHUNK: usize = 4096;

/// The save area, in bytes of dom0's disk (from the boot options).
static AREA: Mutex<Option<(u64, u64)>> = Mutex::new(None);

pub fn set_area(area: Option<(u64, u64)>) {
    *AREA.lock() = area;
}

struct Entry {
    name: String,
    first: u64,
    bytes: u64,
}

fn area() -> Result<(u64, u64), String> {
    AREA.lock().ok_or_else(|| {
        String::from("no save area on dom0's disk (boot option dom0.savearea=<offset>:<size>)")
    })
}

/// The save area, to write in: refused while it overlaps a domain's disk (its `disk=`), which
/// saving would overwrite.
fn writable_area() -> Result<(u64, u64), String> {
    let (off, len) = area()?;
    for dom in super::ctl::domain_ids() {
        let mut n = 0u64;
        let first = crate::psci::hypercall_x1(call::DOMCTL, domctl::DISK, dom, 0, &mut n);
        if first < 0 {
            continue;
        }
        let (o, z) = (first as u64 * SECTOR, n * SECTOR);
        if off < o.saturating_add(z) && o < off + len {
            return Err(alloc::format!(
                "the save area ({len} bytes at {off}) overlaps dom{dom}'s disk ({z} bytes at {o}): nothing written"
            ));
        }
    }
    Ok((off, len))
}

fn io(write: bool, sector: u64, buf: &mut [u8]) -> Result<(), String> {
    let mut d = DISK.lock();
    let disk = d.as_mut().ok_or_else(|| String::from("dom0 has no disk"))?;
    disk.io(write, sector, buf).map_err(String::from)
}

fn read_dir(base: u64) -> Result<Vec<Entry>, String> {
    let mut s = [0u8; SECTOR as usize];
    io(false, base, &mut s)?;
    if &s[..8] != MAGIC {
        return Ok(Vec::new());
    }
    let mut v = Vec::new();
    for i in 0..ENTRIES {
        let e = &s[16 + i * 48..16 + (i + 1) * 48];
        let n = e[..32].iter().position(|&b| b == 0).unwrap_or(32);
        if n == 0 {
            continue;
        }
        let word = |o: usize| u64::from_le_bytes(e[o..o + 8].try_into().unwrap_or([0; 8]));
        v.push(Entry {
            name: String::from(core::str::from_utf8(&e[..n]).unwrap_or("?")),
            first: word(32),
            bytes: word(40),
        });
    }
    Ok(v)
}

fn write_dir(base: u64, entries: &[Entry]) -> Result<(), String> {
    let mut s = [0u8; SECTOR as usize];
    s[..8].copy_from_slice(MAGIC);
    for (i, e) in entries.iter().enumerate().take(ENTRIES) {
        let o = 16 + i * 48;
        let n = e.name.len().min(32);
        s[o..o + n].copy_from_slice(&e.name.as_bytes()[..n]);
        s[o + 32..o + 40].copy_from_slice(&e.first.to_le_bytes());
        s[o + 40..o + 48].copy_from_slice(&e.bytes.to_le_bytes());
    }
    io(true, base, &mut s)
}

/// Sequential writes in whole sectors.
struct Writer {
    sector: u64,
    end: u64,
    buf: Box<[u8; CHUNK]>,
    fill: usize,
    written: u64,
}

impl Writer {
    fn put(&mut self, mut bytes: &[u8]) -> Result<(), String> {
        while !bytes.is_empty() {
            let n = bytes.len().min(CHUNK - self.fill);
            self.buf[self.fill..self.fill + n].copy_from_slice(&bytes[..n]);
            self.fill += n;
            self.written += n as u64;
            bytes = &bytes[n..];
            if self.fill == CHUNK {
                self.flush()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), String> {
        if self.fill == 0 {
            return Ok(());
        }
        let len = (self.fill as u64).div_ceil(SECTOR) * SECTOR;
        if self.sector + len / SECTOR > self.end {
            return Err(String::from("the save area is full"));
        }
        self.buf[self.fill..len as usize].fill(0);
        io(true, self.sector, &mut self.buf[..len as usize])?;
        self.sector += len / SECTOR;
        self.fill = 0;
        Ok(())
    }
}

fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: only used with the ABI's `#[repr(C)]` structures of integers without padding.
    unsafe { core::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
}

/// Writes `f` as `name` in the save area (replacing a file of that name).
pub(super) fn save(name: &str, f: &File) -> Result<u64, String> {
    if name.is_empty() || name.len() > 32 {
        return Err(String::from("a disk file's name is 1 to 32 characters"));
    }
    let (off, len) = writable_area()?;
    let (base, end) = (off / SECTOR, (off + len) / SECTOR);
    let mut dir = read_dir(base)?;
    dir.retain(|e| e.name != name);
    if dir.len() == ENTRIES {
        return Err(alloc::format!(
            "the save area holds {ENTRIES} files already"
        ));
    }
    // After the last file (space of removed ones is not reused: a simple, safe log).
    let first = dir
        .iter()
        .map(|e| e.first + e.bytes.div_ceil(SECTOR))
        .max()
        .unwrap_or(1);
    let mut w = Writer {
        sector: base + first,
        end,
        buf: Box::new([0; CHUNK]),
        fill: 0,
        written: 0,
    };
    w.put(pod_bytes(&f.header))?;
    for v in &f.vcpus {
        w.put(pod_bytes(v))?;
    }
    for (ty, page) in &f.pages {
        match page {
            Some(p) => {
                w.put(&ty.to_le_bytes())?;
                w.put(&p[..])?;
            }
            None => w.put(&(ty | ZERO).to_le_bytes())?,
        }
    }
    w.flush()?;
    let bytes = w.written;
    dir.push(Entry {
        name: String::from(name),
        first,
        bytes,
    });
    write_dir(base, &dir)?;
    if let Some(d) = DISK.lock().as_mut() {
        d.flush().map_err(String::from)?;
    }
    Ok(bytes)
}

/// Sequential reads.
struct Reader {
    sector: u64,
    left: u64,
    buf: Box<[u8; CHUNK]>,
    at: usize,
    have: usize,
}

impl Reader {
    fn get(&mut self, out: &mut [u8]) -> Result<(), String> {
        let mut done = 0;
        while done < out.len() {
            if self.at == self.have {
                if self.left == 0 {
                    return Err(String::from("the file ends early: it is damaged"));
                }
                let n = self.left.min(CHUNK as u64);
                let len = n.div_ceil(SECTOR) * SECTOR;
                io(false, self.sector, &mut self.buf[..len as usize])?;
                self.sector += len / SECTOR;
                self.left -= n;
                self.at = 0;
                self.have = n as usize;
            }
            let k = (out.len() - done).min(self.have - self.at);
            out[done..done + k].copy_from_slice(&self.buf[self.at..self.at + k]);
            self.at += k;
            done += k;
        }
        Ok(())
    }

    fn pod<T: Copy + Default>(&mut self) -> Result<T, String> {
        let mut v = T::default();
        // SAFETY: an ABI structure of integers: any bytes are a valid value.
        let b = unsafe {
            core::slice::from_raw_parts_mut((&mut v as *mut T).cast::<u8>(), size_of::<T>())
        };
        self.get(b)?;
        Ok(v)
    }
}

/// Reads the file `name` from the save area.
pub(super) fn load(name: &str) -> Result<File, String> {
    let (off, _) = area()?;
    let base = off / SECTOR;
    let dir = read_dir(base)?;
    let e = dir
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| String::from("no such file on the disk"))?;
    let mut r = Reader {
        sector: base + e.first,
        left: e.bytes,
        buf: Box::new([0; CHUNK]),
        at: 0,
        have: 0,
    };
    let header: SaveHeader = r.pod()?;
    if let Some(why) = header.format_error() {
        return Err(String::from(why));
    }
    if header.nr_vcpus == 0 || header.nr_vcpus > 32 {
        return Err(String::from("not a Ferrite save file"));
    }
    let mut vcpus = Vec::new();
    for _ in 0..header.nr_vcpus {
        vcpus.push(r.pod::<VcpuState>()?);
    }
    let (used, total) = crate::heap::usage();
    let mut pages = Vec::new();
    for _ in 0..header.nr_pages {
        let mut t = [0u8; 8];
        r.get(&mut t)?;
        let ty = u64::from_le_bytes(t);
        if ty & ZERO != 0 {
            pages.push((ty & !ZERO, None));
            continue;
        }
        // Keep 2 MiB of dom0's heap for everything else: running out would stop dom0.
        let (now, _) = crate::heap::usage();
        if now.max(used) + (2 << 20) + 4096 > total {
            return Err(String::from("dom0's heap cannot hold this file"));
        }
        let mut p = Box::new([0u8; 4096]);
        r.get(&mut p[..])?;
        pages.push((ty, Some(p)));
    }
    Ok(File {
        header,
        vcpus,
        pages,
    })
}

/// The files in the save area: (name, bytes). Empty if there is no area.
pub fn list() -> Vec<(String, u64)> {
    let Ok((off, _)) = area() else {
        return Vec::new();
    };
    read_dir(off / SECTOR)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name, e.bytes))
        .collect()
}
