//! `save` and `restore`: a domain to a file on Linux's filesystem and back, through
//! `DOMCTL SAVE_*` / `RESTORE_*` (docs/lifecycle.md, "Save and restore").
//!
//! The file is what the calls give, in order: the [`SaveHeader`] (128 bytes), `nr_vcpus`
//! vCPU states ([`VcpuState`], 944 bytes each, as Ferrite wrote them), then for each of the
//! `nr_pages` frames an 8-byte little-endian page type followed by the frame's 4096 bytes. A
//! data page of zeros is stored as the type [`ZERO_PAGE`] alone, without its bytes:
//! `RESTORE_BEGIN` gives zeroed frames, so nothing is written for it on restore.
//!
//! The header is `SAVE_BEGIN`'s but for its `weight` and `cap`: the domain's current ones
//! (`SCHED_CTL`), where Ferrite's header has those it was created with.

use crate::{Ctrl, Res, bytes_of, display_name, err_text, log_mark, log_text, resolve, touch};
use ferrite_abi::call::{domctl, sched_ctl};
use ferrite_abi::ctl::{CreateArgs, SAVE_MAGIC, SaveHeader, VcpuState, page_type, state};
use ferrite_abi::errno::Errno;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// A page record's type for a data page of zeros; no bytes follow it. Bit 63: no page type
/// Ferrite gives has it.
pub const ZERO_PAGE: u64 = 1 << 63;

/// A vCPU state as bytes, aligned as the structure (it has padding: kept as bytes, never read
/// as the structure).
#[repr(C, align(16))]
struct VcpuBytes([u8; size_of::<VcpuState>()]);

/// One frame, page-aligned (a single translation for Ferrite).
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// How long `SAVE_BEGIN` is asked again while the vCPUs leave their CPUs (`-EBUSY`).
const BUSY_FOR: Duration = Duration::from_secs(2);

/// Ferrite's reason for refusing a save/restore call on `dom` (it logs it, the call returns
/// only the errno): the last such line of its log after byte `since` (a [`log_mark`]).
fn logged_reason(c: &Ctrl, dom: u64, since: u64) -> Option<String> {
    let needle = format!("save/restore of domain {dom}: ");
    let log = log_text(c, since).ok()?;
    let line = log.lines().rev().find(|l| l.contains(&needle))?;
    Some(line.split(&needle).nth(1)?.trim().to_string())
}

/// `what: <errno text>`, with Ferrite's logged reason when it gave one (after `since`).
fn refused(c: &Ctrl, dom: u64, since: u64, what: &str, e: Errno) -> String {
    match logged_reason(c, dom, since) {
        Some(why) if !why.is_empty() => format!("{what}: {why} ({})", e.name()),
        _ => format!("{what}: {}", err_text(e)),
    }
}

/// `save [-c] <dom> <file>`: pauses the domain, writes it to `file`, then destroys it (`-c`:
/// keeps it, paused).
pub fn save(c: &Ctrl, keep: bool, dom: &str, path: &str) -> Res<()> {
    let d = resolve(c, dom)?;
    let id = d.id as u64;
    let label = format!("dom{id}");
    if id == 0 {
        return Err(format!("save {}: dom0 cannot be saved", display_name(&d)));
    }
    let mut out = BufWriter::with_capacity(
        1 << 16,
        File::create(path).map_err(|e| format!("{path}: {e}"))?,
    );
    let t0 = Instant::now();
    let was_paused = d.state == state::PAUSED;
    if let Err(e) = c.domctl(domctl::PAUSE, id, 0, 0) {
        let _ = fs::remove_file(path);
        return Err(format!("save {label}: pause: {}", err_text(e)));
    }
    let saved = write_domain(c, id, &mut out).and_then(|pages| {
        out.flush()
            .and_then(|()| out.get_ref().sync_all())
            .map_err(|e| format!("{path}: {e}"))
            .map(|()| pages)
    });
    let (pages, zeros, vcpus) = match saved {
        Ok(p) => p,
        Err(msg) => {
            drop(out);
            let _ = fs::remove_file(path);
            if !was_paused {
                let _ = c.domctl(domctl::UNPAUSE, id, 0, 0);
            }
            return Err(format!(
                "save {label}: {msg}; {} (no file written)",
                if was_paused {
                    "left paused"
                } else {
                    "unpaused"
                }
            ));
        }
    };
    let took = t0.elapsed().as_micros();
    let size = out.get_ref().metadata().map(|m| m.len()).unwrap_or(0);
    drop(out);
    let destroyed = if keep {
        None
    } else {
        Some(crate::destroy_id(c, id))
    };
    let after = match destroyed {
        None => "left paused",
        Some(Ok(())) => "destroyed",
        Some(Err(_)) => "kept, paused",
    };
    println!(
        "saved {label} to \"{path}\": {pages} pages ({zeros} of zeros), {vcpus} vCPU{}, {} KiB \
         in {took} us; domain {after}",
        if vcpus == 1 { "" } else { "s" },
        size / 1024
    );
    match destroyed {
        Some(Err(e)) => Err(format!(
            "save {label}: saved, but destroy failed: {}",
            err_text(e)
        )),
        _ => Ok(()),
    }
}

/// Writes the paused domain `id` to `out`; returns (pages, pages of zeros, vCPUs).
fn write_domain(c: &Ctrl, id: u64, out: &mut impl Write) -> Res<(u64, u64, u32)> {
    let since = log_mark(c);
    let io = |e: std::io::Error| format!("writing the file: {e}");
    let mut h = Box::new(SaveHeader::default());
    let start = Instant::now();
    loop {
        touch(bytes_of(&mut *h));
        let va = &mut *h as *mut SaveHeader as u64;
        match c.domctl(domctl::SAVE_BEGIN, id, va, 0) {
            Ok(_) => break,
            // Its vCPUs leave their CPUs at their next exit.
            Err(Errno::Busy) if start.elapsed() < BUSY_FOR => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(refused(c, id, since, "SAVE_BEGIN", e)),
        }
    }
    if h.magic != SAVE_MAGIC {
        return Err("SAVE_BEGIN gave a header without the FERSAVE2 magic".into());
    }
    // Ferrite's header has the weight and cap the domain was created with; the file keeps
    // those it has now (`sched-credit` may have changed them), which RESTORE_BEGIN applies.
    if let (Ok(w), Ok(cap)) = (
        c.sched_ctl(sched_ctl::GET_WEIGHT, id, 0, 0),
        c.sched_ctl(sched_ctl::GET_CAP, id, 0, 0),
    ) {
        h.weight = w as u32;
        h.cap = cap as u32;
    }
    out.write_all(bytes_of(&mut *h)).map_err(io)?;
    let mut v = Box::new(VcpuBytes([0; size_of::<VcpuState>()]));
    for n in 0..h.nr_vcpus as u64 {
        touch(&mut v.0);
        c.domctl(domctl::SAVE_VCPU, id, n, v.0.as_mut_ptr() as u64)
            .map_err(|e| refused(c, id, since, &format!("SAVE_VCPU {n}"), e))?;
        out.write_all(&v.0).map_err(io)?;
    }
    let mut page = Box::new(Page([0; 4096]));
    let mut zeros = 0;
    for pfn in 0..h.nr_pages {
        touch(&mut page.0);
        let ty = c
            .domctl(domctl::SAVE_PAGE, id, pfn, page.0.as_mut_ptr() as u64)
            .map_err(|e| refused(c, id, since, &format!("SAVE_PAGE {pfn}"), e))?;
        if ty == page_type::DATA && page.0.iter().all(|&b| b == 0) {
            out.write_all(&ZERO_PAGE.to_le_bytes()).map_err(io)?;
            zeros += 1;
        } else {
            out.write_all(&ty.to_le_bytes()).map_err(io)?;
            out.write_all(&page.0).map_err(io)?;
        }
    }
    Ok((h.nr_pages, zeros, h.nr_vcpus))
}

/// Reads exactly `buf.len()` bytes: a short file is not a save file.
fn read_exact(f: &mut impl Read, buf: &mut [u8], what: &str) -> Res<()> {
    f.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => format!("the file ends inside {what}: not a whole save file"),
        _ => format!("reading {what}: {e}"),
    })
}

/// `restore [-p] <file>`: builds the saved domain again, unpaused unless `-p`.
pub fn restore(c: &Ctrl, paused: bool, path: &str) -> Res<()> {
    let f = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut f = BufReader::with_capacity(1 << 16, f);
    let mut h = Box::new(SaveHeader::default());
    read_exact(&mut f, bytes_of(&mut *h), "the header")?;
    if let Some(why) = h.format_error() {
        return Err(format!("restore {path}: {why}"));
    }
    // Ferrite checks the header too; this only bounds what is read before asking it.
    if h.nr_vcpus == 0 || h.nr_vcpus > 64 {
        return Err(format!(
            "restore {path}: a header with {} vCPUs: not a save file",
            h.nr_vcpus
        ));
    }
    let mut vcpus = Vec::new();
    for n in 0..h.nr_vcpus {
        let mut v = Box::new(VcpuBytes([0; size_of::<VcpuState>()]));
        read_exact(&mut f, &mut v.0, &format!("vCPU {n}"))?;
        vcpus.push(v);
    }

    let t0 = Instant::now();
    let mut err = vec![0u8; 256];
    touch(&mut err);
    touch(bytes_of(&mut *h));
    let mut args = Box::new(CreateArgs {
        image: &*h as *const SaveHeader as u64,
        image_len: size_of::<SaveHeader>() as u64,
        config: 0,
        config_len: 0,
        err: err.as_mut_ptr() as u64,
        err_len: err.len() as u64,
    });
    touch(bytes_of(&mut *args));
    let va = &*args as *const CreateArgs as u64;
    let id = match c.domctl(domctl::RESTORE_BEGIN, va, 0, 0) {
        Ok(id) => id,
        Err(e) => {
            let n = err.iter().position(|&b| b == 0).unwrap_or(err.len());
            let why = String::from_utf8_lossy(&err[..n]);
            return Err(match (e, why.is_empty()) {
                (_, false) => format!("restore {path}: {why} ({})", e.name()),
                (Errno::Exist, true) => format!(
                    "restore {path}: a domain named as the saved one exists ({})",
                    e.name()
                ),
                _ => format!("restore {path}: RESTORE_BEGIN: {}", err_text(e)),
            });
        }
    };
    if let Err(msg) = fill(c, id, &h, &mut vcpus, &mut f) {
        let gone = match crate::destroy_id(c, id) {
            Ok(()) => "destroyed".to_string(),
            // RESTORE_END's refusals destroy it themselves.
            Err(Errno::NoEnt) => "destroyed by Ferrite".to_string(),
            Err(e) => format!("not destroyed: {}", err_text(e)),
        };
        return Err(format!(
            "restore {path}: {msg}; the half-built dom{id} was {gone}"
        ));
    }
    let took = t0.elapsed().as_micros();
    let n = h.name.iter().position(|&b| b == 0).unwrap_or(32);
    let name = String::from_utf8_lossy(&h.name[..n]);
    if paused {
        println!("restored \"{path}\" as dom{id} ({name}) in {took} us, paused");
        return Ok(());
    }
    match c.domctl(domctl::UNPAUSE, id, 0, 0) {
        Ok(_) => {
            println!("restored \"{path}\" as dom{id} ({name}) in {took} us");
            Ok(())
        }
        Err(e) => Err(format!(
            "restore {path}: dom{id} restored but not unpaused: {}",
            err_text(e)
        )),
    }
}

/// The pages, the vCPUs, `RESTORE_END`, into the new domain `id`.
fn fill(
    c: &Ctrl,
    id: u64,
    h: &SaveHeader,
    vcpus: &mut [Box<VcpuBytes>],
    f: &mut impl Read,
) -> Res<()> {
    let since = log_mark(c);
    let mut page = Box::new(Page([0; 4096]));
    let mut word = [0u8; 8];
    for pfn in 0..h.nr_pages {
        read_exact(f, &mut word, &format!("page {pfn}"))?;
        let ty = u64::from_le_bytes(word);
        // RESTORE_BEGIN gave zeroed frames: a page of zeros needs no call.
        if ty == ZERO_PAGE {
            continue;
        }
        read_exact(f, &mut page.0, &format!("page {pfn}"))?;
        touch(&mut page.0);
        c.domctl5(
            domctl::RESTORE_PAGE,
            id,
            pfn,
            page.0.as_mut_ptr() as u64,
            ty,
        )
        .map_err(|e| {
            refused(
                c,
                id,
                since,
                &format!("RESTORE_PAGE {pfn} (type {ty:#x})"),
                e,
            )
        })?;
    }
    if f.read(&mut word).map_err(|e| e.to_string())? != 0 {
        return Err(format!(
            "the file goes on after its {} pages: not a save file",
            h.nr_pages
        ));
    }
    for (n, v) in vcpus.iter_mut().enumerate() {
        touch(&mut v.0);
        c.domctl(domctl::RESTORE_VCPU, id, n as u64, v.0.as_mut_ptr() as u64)
            .map_err(|e| refused(c, id, since, &format!("RESTORE_VCPU {n}"), e))?;
    }
    c.domctl(domctl::RESTORE_END, id, 0, 0)
        .map_err(|e| refused(c, id, since, "RESTORE_END", e))?;
    Ok(())
}
