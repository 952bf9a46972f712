//! `save`, `restore`, `files`, `rm`: saved domains, kept as named files in dom0's RAM (its heap,
//! at most 32 MiB; they do not survive a reboot), or, named `disk:<name>`, on dom0's disk
//! ([`super::disk`]). A file is what `SAVE_*` gives: the header, each vCPU, and each page
//! with its type; pages of zeros are not stored (restored as zeros).

use super::cmds::{destroy_id, fail, resolve, why};
use super::ctl;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::ctl::{SaveHeader, VcpuState, page_type};
use spin::Mutex;

pub(super) struct File {
    pub(super) header: SaveHeader,
    pub(super) vcpus: Vec<VcpuState>,
    /// (page type, contents; `None` for a page of zeros), by pseudo-physical frame.
    pub(super) pages: Vec<(u64, Option<Box<[u8; 4096]>>)>,
}

impl File {
    pub(super) fn bytes(&self) -> usize {
        size_of::<SaveHeader>()
            + self.vcpus.len() * size_of::<VcpuState>()
            + self
                .pages
                .iter()
                .map(|p| 8 + p.1.as_ref().map_or(0, |_| 4096))
                .sum::<usize>()
    }
}

static FILES: Mutex<BTreeMap<String, File>> = Mutex::new(BTreeMap::new());

/// `save [-c] <dom> <file>`: pauses the domain, saves it, then destroys it (`-c`: unpauses it
/// instead).
pub fn save(args: &[&str]) {
    let (keep, args) = match args.first() {
        Some(&"-c") => (true, &args[1..]),
        _ => (false, args),
    };
    let (Some(_), Some(&name)) = (args.first(), args.get(1)) else {
        return println!("error: save: usage: save [-c] <dom> <file>");
    };
    let Some((id, info)) = resolve("save", args.first().copied()) else {
        return;
    };
    let d = alloc::format!("dom{id}");
    if id == 0 {
        return println!("error: save {d}: dom0 cannot be saved");
    }
    let was_paused = info.is_some_and(|i| i.state == ferrite_abi::ctl::state::PAUSED);
    let t0 = crate::timer::counter();
    if let Err(e) = ctl::pause(id) {
        return fail("save", &d, e);
    }
    let file = match read_domain(id) {
        Ok(f) => f,
        Err(msg) => {
            if !was_paused {
                let _ = ctl::unpause(id);
            }
            return println!("error: save {d}: {msg}");
        }
    };
    let took = crate::timer::ticks_to_us(crate::timer::counter() - t0);
    let (pages, size) = (file.pages.len(), file.bytes());
    let place = if let Some(disk_name) = name.strip_prefix("disk:") {
        match super::disk::save(disk_name, &file) {
            Ok(bytes) => alloc::format!("{} KiB on dom0's disk", bytes / 1024),
            Err(msg) => {
                if !was_paused {
                    let _ = ctl::unpause(id);
                }
                return println!("error: save {d}: {msg}; the domain is kept");
            }
        }
    } else {
        FILES.lock().insert(name.into(), file);
        alloc::format!("{} KiB in dom0's RAM", size / 1024)
    };
    let after = if keep {
        if was_paused {
            "left paused"
        } else {
            match ctl::unpause(id) {
                Ok(()) => "left running",
                Err(_) => "left paused (unpause failed)",
            }
        }
    } else {
        match destroy_id(id) {
            Ok(()) => {
                crate::consback::rescan(Some(id));
                "destroyed"
            }
            Err(e) => {
                println!(
                    "error: save {d}: saved, but destroy failed: {} ({})",
                    why(e),
                    e.name()
                );
                "kept"
            }
        }
    };
    println!("saved {d} to \"{name}\": {pages} pages, {place} in {took} us; domain {after}");
}

fn read_domain(id: u64) -> Result<File, String> {
    let e = |what: &str, e: ferrite_abi::errno::Errno| {
        alloc::format!("{what}: {} ({})", why(e), e.name())
    };
    let header = ctl::save_begin(id).map_err(|x| e("SAVE_BEGIN", x))?;
    if header.magic != ferrite_abi::ctl::SAVE_MAGIC {
        return Err("SAVE_BEGIN gave a header without the FERSAVE2 magic".into());
    }
    let mut vcpus = Vec::new();
    for v in 0..header.nr_vcpus as u64 {
        vcpus.push(ctl::save_vcpu(id, v).map_err(|x| e("SAVE_VCPU", x))?);
    }
    let mut pages = Vec::new();
    let mut page = Box::new([0u8; 4096]);
    for pfn in 0..header.nr_pages {
        let ty = ctl::save_page(id, pfn, &mut page)
            .map_err(|x| e(&alloc::format!("SAVE_PAGE {pfn}"), x))?;
        let zero = is_zero(&page);
        if ty == page_type::DATA && zero {
            pages.push((ty, None));
        } else {
            // Running out of heap would stop dom0 (an allocation failure is fatal): keep 2 MiB
            // for everything else.
            let (used, total) = crate::heap::usage();
            if total.saturating_sub(used) < (2 << 20) + 4096 {
                return Err(alloc::format!(
                    "dom0's RAM is full after {pfn} of {} pages (saved files take {} KiB; rm some)",
                    header.nr_pages,
                    used / 1024
                ));
            }
            pages.push((ty, Some(page.clone())));
        }
    }
    Ok(File {
        header,
        vcpus,
        pages,
    })
}

/// Whether a page is all zeros, a word at a time. Assembling words from bytes is no cheaper
/// than a byte loop on this strict-alignment target: both made the test most of a save's time
/// (about 12,000 instructions a page, three quarters of a 64 MiB save).
fn is_zero(page: &[u8; 4096]) -> bool {
    // SAFETY: every bit pattern is a valid u64; `align_to` puts only whole aligned words in the
    // middle part.
    let (head, words, tail) = unsafe { page.align_to::<u64>() };
    // Eight words OR-ed together per test: load pairs and ORs, not a branch per word (a 64 MiB
    // save 56 -> 39 ms; written as a fold over the chunk it compiled worse than the plain
    // loop, 70 ms).
    let mut chunks = words.chunks_exact(8);
    let zero_words = chunks.all(|c| (c[0] | c[1] | c[2] | c[3] | c[4] | c[5] | c[6] | c[7]) == 0)
        && chunks.remainder().iter().all(|&w| w == 0);
    zero_words && head.iter().all(|&b| b == 0) && tail.iter().all(|&b| b == 0)
}

/// `restore [-p] <file>`: builds the saved domain again, unpaused unless `-p`.
pub fn restore(args: &[&str]) {
    let (paused, args) = match args.first() {
        Some(&"-p") => (true, &args[1..]),
        _ => (false, args),
    };
    let Some(&name) = args.first() else {
        return println!("error: restore: usage: restore [-p] <file>");
    };
    let t0 = crate::timer::counter();
    if let Some(disk_name) = name.strip_prefix("disk:") {
        match super::disk::load(disk_name) {
            Ok(f) => return restore_from(name, &f, paused, t0),
            Err(e) => return println!("error: restore {name}: {e}"),
        }
    }
    let files = FILES.lock();
    let Some(f) = files.get(name) else {
        return println!("error: restore {name}: no such file (files lists them)");
    };
    restore_from(name, f, paused, t0);
}

/// Builds the domain saved in `f` again.
fn restore_from(name: &str, f: &File, paused: bool, t0: u64) {
    let id = match ctl::restore_begin(&f.header) {
        Ok(id) => id,
        Err((e, reason)) if reason.is_empty() => {
            return println!(
                "error: restore {name}: RESTORE_BEGIN: {} ({})",
                why(e),
                e.name()
            );
        }
        Err((e, reason)) => return println!("error: restore {name}: {reason} ({})", e.name()),
    };
    let zero = Box::new([0u8; 4096]);
    let mut result = Ok(());
    for (pfn, (ty, page)) in f.pages.iter().enumerate() {
        // RESTORE_BEGIN gives zeroed frames: an all-zero data page needs no call.
        if page.is_none() && *ty == page_type::DATA {
            continue;
        }
        let p = page.as_ref().unwrap_or(&zero);
        if let Err(e) = ctl::restore_page(id, pfn as u64, p, *ty) {
            result = Err(alloc::format!(
                "RESTORE_PAGE {pfn}: {} ({})",
                why(e),
                e.name()
            ));
            break;
        }
    }
    if result.is_ok() {
        for (v, s) in f.vcpus.iter().enumerate() {
            if let Err(e) = ctl::restore_vcpu(id, v as u64, s) {
                result = Err(alloc::format!(
                    "RESTORE_VCPU {v}: {} ({})",
                    why(e),
                    e.name()
                ));
                break;
            }
        }
    }
    if result.is_ok() {
        result = ctl::restore_end(id)
            .map_err(|e| alloc::format!("RESTORE_END: {} ({})", why(e), e.name()));
    }
    if let Err(msg) = result {
        let _ = destroy_id(id);
        return println!("error: restore {name}: {msg}; the half-built dom{id} was destroyed");
    }
    let took = crate::timer::ticks_to_us(crate::timer::counter() - t0);
    crate::consback::rescan(None);
    if paused {
        return println!("restored \"{name}\" as dom{id} in {took} us, paused");
    }
    match ctl::unpause(id) {
        Ok(()) => println!("restored \"{name}\" as dom{id} in {took} us"),
        Err(e) => println!(
            "error: restore {name}: dom{id} restored but not unpaused: {} ({})",
            why(e),
            e.name()
        ),
    }
}

/// `files`: the saved files.
pub fn files(_args: &[&str]) {
    let files = FILES.lock();
    let on_disk = super::disk::list();
    if files.is_empty() && on_disk.is_empty() {
        return println!("no saved files");
    }
    for (name, bytes) in &on_disk {
        println!("disk:{name:<19} {:>6} KiB  on dom0's disk", bytes / 1024);
    }
    for (name, f) in files.iter() {
        let n = f.header.name.iter().position(|&b| b == 0).unwrap_or(32);
        println!(
            "{name:<24} {:>6} KiB  domain \"{}\", {} pages, {} vcpus",
            f.bytes() / 1024,
            core::str::from_utf8(&f.header.name[..n]).unwrap_or("?"),
            f.header.nr_pages,
            f.header.nr_vcpus
        );
    }
}

/// `rm <file>`.
pub fn remove(args: &[&str]) {
    let Some(&name) = args.first() else {
        return println!("error: rm: usage: rm <file>");
    };
    match FILES.lock().remove(name) {
        Some(_) => println!("removed \"{name}\""),
        None => println!("error: rm {name}: no such file"),
    }
}
