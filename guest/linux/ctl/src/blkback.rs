//! `ferrite-ctl blkback <file> [seconds]`: a block backend in Linux dom0's user space. It serves
//! every domU's virtual disk (`disk=` in its configuration) as the same region of `<file>` (a
//! disk image or a block device such as `/dev/vda`), so the data goes through Linux's own
//! file system and virtio-blk driver, as Xen's user-space disk backends do.
//!
//! It speaks the same protocol as Ferrite's own dom0 (`ferrite_abi::blkif` over the device
//! bus, docs/io.md), with what user space can reach through the control page: device-bus and
//! `DOMCTL` calls, and grant copies between the domU's granted pages and this process's
//! buffers. Linux dom0 has no event-channel page (Linux does not know Ferrite's), so it cannot
//! receive events: the backend polls the rings every millisecond. It can send them: it binds
//! each frontend's port and announces its responses, so a frontend wakes at once. Every
//! request gets the checks
//! [`ferrite_abi::blkif::Request::check`] makes, and a bad one an error response; a ring whose
//! indices are impossible disconnects that frontend alone.
//!
//! A frontend that asks for [`feature::INDIRECT`] (read through a version-2 control page) may
//! send requests of up to 64 pages: their segments are copied once out of the indirect page,
//! checked as [`ferrite_abi::blkif::Request::check_indirect`] says, and the data moved with one
//! batch of grant copies and one `pread`/`pwrite`.

use crate::backend::{self, granted, local};
use crate::{Ctrl, Res, err_text, touch};
use ferrite_abi::blkif::{
    MAX_INDIRECT_SEGMENTS, MAX_SEGMENTS, OFFSET_REQ_EVENT, OFFSET_REQ_PROD, OFFSET_RSP_PROD,
    OFFSET_SLOTS, RING_SLOTS, Request, Response, SECTOR_SIZE, SLOT_SIZE, Segment, op,
};
use ferrite_abi::call::domctl;
use ferrite_abi::devbus::{feature, kind, state};
use ferrite_abi::errno::Errno;
use ferrite_abi::evtchn;
use ferrite_abi::grant::{GrantCopy, copy};
use ferrite_abi::ring::Pod;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

struct Front {
    dom: u16,
    key: u64,
    ring: u32,
    /// Our end of its event channel, when Ferrite lets this dom0 bind one: responses are
    /// announced on it, so the frontend need not wait out its timeout.
    port: Option<u32>,
    /// The domain's disk: its first sector in the file, and its size.
    first: u64,
    sectors: u64,
    req_cons: u32,
    rsp_prod: u32,
    served: u64,
    /// It asked for indirect requests ([`feature::INDIRECT`]) and we said yes.
    indirect: bool,
}

struct Backend<'a> {
    c: &'a Ctrl,
    file: File,
    path: String,
    file_sectors: u64,
    fronts: Vec<Front>,
    /// Reused for every request's data (touched once, so Ferrite can reach it).
    buf: Vec<u8>,
}

impl backend::Polled for Backend<'_> {
    fn scan(&mut self) {
        Backend::scan(self);
    }

    fn serve_all(&mut self) -> bool {
        Backend::serve_all(self)
    }

    fn stop(&mut self) {
        for f in std::mem::take(&mut self.fronts) {
            self.disconnect(&f, "the backend stopped");
        }
    }
}

impl Backend<'_> {
    fn read<T: Pod + Default>(&self, f: &Front, offset: usize) -> Result<T, Errno> {
        backend::read(self.c, f.dom, f.ring, offset)
    }

    fn write<T: Pod>(&self, f: &Front, offset: usize, v: &T) -> Result<(), Errno> {
        backend::write(self.c, f.dom, f.ring, offset, v)
    }

    /// Walks the bus: connects waiting frontends, disconnects closed or vanished ones.
    fn scan(&mut self) {
        let seen = backend::devices(self.c, kind::BLOCK);
        for (dom, key) in seen {
            self.consider(dom, key);
        }
        let served: Vec<(u16, u64)> = self.fronts.iter().map(|f| (f.dom, f.key)).collect();
        for (dom, key) in served {
            self.consider(dom, key);
        }
    }

    fn set_back(&self, dom: u16, key: u64, s: u8, param: u64) -> Result<u64, Errno> {
        backend::set_back(self.c, dom, key, s, param, 0)
    }

    fn consider(&mut self, dom: u16, key: u64) {
        let known = self
            .fronts
            .iter()
            .position(|f| f.dom == dom && f.key == key);
        let states =
            backend::get(self.c, dom, key).map(|e| (e.front, e.back, e.ring, e.port, e.features));
        match (states, known) {
            (None | Some((state::CLOSING | state::CLOSED, ..)), Some(i)) => {
                let f = self.fronts.remove(i);
                self.disconnect(&f, "the frontend closed");
            }
            (Some((state::INITIALISED, back, ring, port, features)), None)
                if back != state::CONNECTED && back != state::CLOSED =>
            {
                match self.connect(dom, key, ring, port, features) {
                    Ok(f) => {
                        let events = match f.port {
                            Some(p) => format!("responses announced on port {p}"),
                            None => "no event channel: the frontend polls".into(),
                        };
                        println!(
                            "ferrite-ctl: blkback: dom{dom}: connected, {} sectors at sector {} \
                             of {}{} ({events})",
                            f.sectors,
                            f.first,
                            self.path,
                            if f.indirect {
                                ", indirect requests"
                            } else {
                                ""
                            }
                        );
                        self.fronts.push(f);
                    }
                    Err(why) => {
                        println!("ferrite-ctl: blkback: dom{dom}: not connected: {why}");
                        let _ = self.set_back(dom, key, state::CLOSED, 0);
                    }
                }
            }
            _ => {}
        }
    }

    fn connect(&self, dom: u16, key: u64, ring: u32, port: u32, features: u64) -> Res<Front> {
        let first = self
            .c
            .domctl(domctl::DISK, dom as u64, 0, 0)
            .map_err(|_| "it has no disk= setting".to_string())?;
        let sectors = self.c.result(1);
        if first
            .checked_add(sectors)
            .is_none_or(|end| end > self.file_sectors)
        {
            return Err(format!(
                "its disk (sectors {first}+{sectors}) is outside {} ({} sectors)",
                self.path, self.file_sectors
            ));
        }
        let mut f = Front {
            dom,
            key,
            ring,
            port: None,
            first,
            sectors,
            req_cons: 0,
            rsp_prod: 0,
            served: 0,
            indirect: features & feature::INDIRECT != 0,
        };
        // The ring must be reachable before we say we are connected.
        self.read::<u32>(&f, OFFSET_REQ_PROD)
            .map_err(|e| format!("reading its ring (grant {ring}): {}", err_text(e)))?;
        // Without one (an older Ferrite), the frontend finds responses when its wait ends.
        f.port = backend::bind(self.c, dom, port);
        let honoured = features & feature::INDIRECT;
        if let Err(e) = backend::set_back(self.c, dom, key, state::CONNECTED, sectors, honoured) {
            if let Some(p) = f.port {
                let _ = backend::evtchn(self.c, evtchn::CLOSE, p as u64, 0);
            }
            return Err(format!("SET_BACK_STATE: {}", err_text(e)));
        }
        Ok(f)
    }

    fn disconnect(&self, f: &Front, why: &str) {
        if let Some(p) = f.port {
            let _ = backend::evtchn(self.c, evtchn::CLOSE, p as u64, 0);
        }
        let _ = self.set_back(f.dom, f.key, state::CLOSED, 0);
        println!(
            "ferrite-ctl: blkback: dom{}: {why}: disconnected after {} requests",
            f.dom, f.served
        );
    }

    /// Serves every ring once; disconnects a frontend whose ring is corrupt or unreachable.
    fn serve_all(&mut self) -> bool {
        let mut busy = false;
        // Out of `self` while served, as `serve` needs the rest of it.
        let mut fronts = std::mem::take(&mut self.fronts);
        fronts.retain_mut(|f| match self.serve(f) {
            Ok(n) => {
                busy |= n > 0;
                true
            }
            Err(why) => {
                let (why, _) = backend::why_disconnected(self.c, f.dom, f.key, why);
                self.disconnect(f, &why);
                false
            }
        });
        self.fronts = fronts;
        busy
    }

    fn serve(&mut self, f: &mut Front) -> Res<usize> {
        let e = |what: &str, err: Errno| format!("{what}: {}", err_text(err));
        let prod: u32 = self
            .read(f, OFFSET_REQ_PROD)
            .map_err(|x| e("reading its ring", x))?;
        let pending = prod.wrapping_sub(f.req_cons) as usize;
        if prod.wrapping_sub(f.rsp_prod) as usize > RING_SLOTS {
            return Err(format!(
                "ring corrupt (req_prod {prod}, {} answered)",
                f.rsp_prod
            ));
        }
        for _ in 0..pending {
            let slot = OFFSET_SLOTS + (f.req_cons as usize % RING_SLOTS) * SLOT_SIZE;
            let req: Request = self.read(f, slot).map_err(|x| e("reading a request", x))?;
            f.req_cons = f.req_cons.wrapping_add(1);
            let status = match self.handle(f, &req) {
                Ok(()) => 0,
                Err(err) => {
                    println!(
                        "ferrite-ctl: blkback: dom{}: request {} (op {}, sector {}) refused: {}",
                        f.dom,
                        req.id,
                        req.op,
                        req.sector,
                        err.name()
                    );
                    err.to_ret() as i16
                }
            };
            let rsp = Response {
                id: req.id,
                op: req.op,
                status,
                ..Response::default()
            };
            let slot = OFFSET_SLOTS + (f.rsp_prod as usize % RING_SLOTS) * SLOT_SIZE;
            self.write(f, slot, &rsp)
                .map_err(|x| e("writing a response", x))?;
            f.rsp_prod = f.rsp_prod.wrapping_add(1);
            f.served += 1;
        }
        if pending > 0 {
            self.write(f, OFFSET_RSP_PROD, &f.rsp_prod)
                .map_err(|x| e("publishing responses", x))?;
            if let Some(p) = f.port {
                let _ = backend::evtchn(self.c, evtchn::SEND, p as u64, 0);
            }
        }
        // Frontends notify when req_prod passes req_event: ask for every request (we poll
        // anyway; this keeps the ring's protocol the same as with Ferrite's dom0).
        self.write(f, OFFSET_REQ_EVENT, &f.req_cons.wrapping_add(1))
            .map_err(|x| e("writing req_event", x))?;
        Ok(pending)
    }

    /// An [`op::INDIRECT`] request's segments, copied once out of its indirect page (a
    /// frontend changing the page meanwhile gains nothing: only the copy is checked and used).
    fn indirect_segments(
        &self,
        f: &Front,
        req: &Request,
        segs: &mut [Segment; MAX_INDIRECT_SEGMENTS],
    ) -> Result<usize, Errno> {
        if !f.indirect {
            return Err(Errno::Inval);
        }
        let n = req.indirect_segments()?;
        let raw = crate::bytes_of_slice(&mut segs[..n]);
        backend::copy(
            self.c,
            &mut [GrantCopy {
                source: granted(f.dom, req.seg[0].gref, 0),
                dest: local(raw.as_ptr()),
                len: raw.len() as u16,
                flags: copy::SOURCE_GREF,
                status: 0,
            }],
        )?;
        Ok(n)
    }

    fn handle(&mut self, f: &Front, req: &Request) -> Result<(), Errno> {
        let mut segs = [Segment::default(); MAX_INDIRECT_SEGMENTS];
        let (total, segs) = if req.op == op::INDIRECT {
            let n = self.indirect_segments(f, req, &mut segs)?;
            (req.check_indirect(&segs[..n], f.sectors)?, &segs[..n])
        } else {
            let total = req.check(f.sectors)?;
            (
                total,
                &req.seg[..(req.nr_segments as usize).min(MAX_SEGMENTS)],
            )
        };
        if req.op == op::FLUSH {
            return self.file.sync_data().map_err(|_| Errno::Busy);
        }
        let write = req.data_op() == op::WRITE;
        let bytes = (total * SECTOR_SIZE) as usize;
        let at = (f.first + req.sector) * SECTOR_SIZE;
        if !write {
            self.file
                .read_exact_at(&mut self.buf[..bytes], at)
                .map_err(|_| Errno::Busy)?;
        }
        let mut ops = Vec::with_capacity(segs.len());
        let mut off = 0usize;
        for s in segs {
            let len = (s.last_sect - s.first_sect + 1) as usize * SECTOR_SIZE as usize;
            let page_off = s.first_sect as usize * SECTOR_SIZE as usize;
            let here = self.buf[off..].as_mut_ptr();
            ops.push(if write {
                GrantCopy {
                    source: granted(f.dom, s.gref, page_off),
                    dest: local(here),
                    len: len as u16,
                    flags: copy::SOURCE_GREF,
                    status: 0,
                }
            } else {
                GrantCopy {
                    source: local(here),
                    dest: granted(f.dom, s.gref, page_off),
                    len: len as u16,
                    flags: copy::DEST_GREF,
                    status: 0,
                }
            });
            off += len;
        }
        backend::copy(self.c, &mut ops)?;
        if write {
            self.file
                .write_all_at(&self.buf[..bytes], at)
                .map_err(|_| Errno::Busy)?;
        }
        Ok(())
    }
}

/// Runs the backend until killed, or for `seconds`.
pub fn run(c: &Ctrl, path: &str, seconds: Option<u64>) -> Res<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{path}: {e}"))?;
    let size = file_size(&file).map_err(|e| format!("{path}: {e}"))?;
    let mut buf = vec![0u8; MAX_INDIRECT_SEGMENTS * 4096];
    touch(&mut buf);
    let mut b = Backend {
        c,
        file,
        path: path.to_string(),
        file_sectors: size / SECTOR_SIZE,
        fronts: Vec::new(),
        buf,
    };
    println!(
        "ferrite-ctl: blkback: serving domUs' disks from {path} ({} sectors)",
        b.file_sectors
    );
    backend::run_polled(c, seconds, &mut b)?;
    Ok(())
}

/// A regular file's length, or a block device's size.
fn file_size(f: &File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let mut f = f;
    let n = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(n)
}
