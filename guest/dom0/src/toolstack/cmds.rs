//! The lifecycle commands: `list`, `info`, `create`, `pause`, `unpause`, `shutdown`, `reboot`,
//! `destroy`, and `cycle` (the leak check). Every failure is one line:
//! `error: <command> <domain>: <reason> (<ERRNO>)`.

use super::ctl::{self, Result};
use super::parse;
use crate::{sched, timer};
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::ctl::{DomInfo, state};
use ferrite_abi::errno::Errno;
use ferrite_abi::sched::{SHUTDOWN_POWEROFF, SHUTDOWN_REBOOT};

/// What a call's errno means, for error lines.
pub fn why(e: Errno) -> &'static str {
    match e {
        Errno::NoEnt => "no such domain",
        Errno::NoSys => "Ferrite does not implement this call",
        Errno::Perm => "not allowed",
        Errno::Inval => "refused as invalid",
        Errno::Busy => "busy, try again",
        Errno::NoMem => "out of memory",
        Errno::Exist => "already in that state",
        Errno::Fault => "Ferrite could not read dom0's buffer",
        Errno::NoSpc => "a limit is reached",
    }
}

/// `error: <cmd> <dom>: <reason> (<ERRNO>)`.
pub fn fail(cmd: &str, dom: &str, e: Errno) {
    println!("error: {cmd} {dom}: {} ({})", why(e), e.name());
}

/// `<dom>`, an id or a name, as (id, what GET_INFO says, if it answers).
pub fn resolve(cmd: &str, arg: Option<&str>) -> Option<(u64, Option<DomInfo>)> {
    let Some(arg) = arg else {
        println!("error: {cmd}: which domain? (an id or a name)");
        return None;
    };
    if let Some(id) = parse::number(arg) {
        return match ctl::get_info(id) {
            Ok(i) => Some((id, Some(i))),
            // Without GET_INFO, the command's own call says whether the domain exists.
            Err(Errno::NoSys) => Some((id, None)),
            Err(e) => {
                fail(cmd, arg, e);
                None
            }
        };
    }
    for id in ctl::domain_ids() {
        match ctl::get_info(id) {
            Ok(i) if i.name() == arg => return Some((id, Some(i))),
            Ok(_) => {}
            Err(Errno::NoSys) => {
                println!(
                    "error: {cmd} {arg}: names need GET_INFO, which Ferrite does not implement (ENOSYS); use the id"
                );
                return None;
            }
            Err(_) => {}
        }
    }
    println!("error: {cmd} {arg}: no domain named \"{arg}\"");
    None
}

fn label(id: u64, info: &Option<DomInfo>) -> String {
    match info {
        Some(i) if !i.name().is_empty() => alloc::format!("{} (dom{id})", i.name()),
        _ => alloc::format!("dom{id}"),
    }
}

/// Whether any vCPU of `dom` ran or waited to run in the last few milliseconds: xl's `r`
/// rather than `b`. dom0 (asking) is always running.
fn busy(samples: &[(u64, u64)], dom: u64) -> bool {
    dom == 0 || samples.iter().any(|&(d, _)| d == dom)
}

/// (domain, vCPU) pairs whose running + runnable time grew over `ms`.
fn sample_busy(ids: &[(u64, u32)], ms: u64) -> Vec<(u64, u64)> {
    let read = || -> Vec<(u64, u64, u64)> {
        let mut v = Vec::new();
        for &(d, n) in ids {
            for c in 0..n as u64 {
                if let Ok(s) = sched::get_vcpu_stats(d, c) {
                    v.push((d, c, s.running_ns + s.runnable_ns));
                }
            }
        }
        v
    };
    let before = read();
    // Not sleep_or_key: what is typed meanwhile is the shell's next command.
    let deadline = timer::deadline_us(ms * 1000);
    while timer::counter() < deadline {
        super::idle();
    }
    let after = read();
    after
        .iter()
        .filter(|a| before.iter().any(|b| b.0 == a.0 && b.1 == a.1 && a.2 > b.2))
        .map(|a| (a.0, a.1))
        .collect()
}

pub fn list(args: &[&str]) {
    // Restarted domains (on_crash, on_reboot) get their consoles served again.
    crate::consback::rescan(None);
    let ids: Vec<u64> = match args.first() {
        Some(a) => match resolve("list", Some(a)) {
            Some((id, _)) => alloc::vec![id],
            None => return,
        },
        None => ctl::domain_ids(),
    };
    let mut infos = Vec::new();
    for id in ids {
        match ctl::get_info(id) {
            Ok(i) => infos.push(i),
            Err(Errno::NoEnt) => {}
            Err(e) => return fail("list", &alloc::format!("dom{id}"), e),
        }
    }
    let running: Vec<(u64, u32)> = infos
        .iter()
        .filter(|i| i.state == state::RUNNING)
        .map(|i| (i.id as u64, i.vcpus))
        .collect();
    let samples = sample_busy(&running, 20);
    println!(
        "{:<32} {:>5} {:>6} {:>5}     {:<6} {:>9}",
        "Name", "ID", "Mem", "VCPUs", "State", "Time(s)"
    );
    for i in &infos {
        let id = i.id as u64;
        println!(
            "{:<32} {:>5} {:>6} {:>5}     {:<6} {:>9.1}",
            i.name(),
            id,
            i.mem_kib / 1024,
            i.vcpus,
            parse::state_letters(i.state, busy(&samples, id)),
            i.cpu_ns as f64 / 1e9
        );
    }
}

pub fn info() {
    let p = match ctl::physinfo() {
        Ok(p) => p,
        Err(e) => return println!("error: info: PHYSINFO: {} ({})", why(e), e.name()),
    };
    let mib = |frames: u64| frames * 4096 / (1024 * 1024);
    println!("hypervisor             : Ferrite");
    println!("nr_cpus                : {}", p.pcpus);
    println!("total_memory           : {} MiB", mib(p.total_frames));
    println!("free_memory            : {} MiB", mib(p.free_frames));
    println!("total_frames           : {}", p.total_frames);
    println!("free_frames            : {}", p.free_frames);
    println!("domains                : {}", p.domains);
    println!("hypervisor_heap_used   : {} KiB", p.heap_used / 1024);
    println!(
        "domu_image             : {} KiB packed in dom0",
        super::image().len() / 1024
    );
}

/// Builds a domain; prints `created domain <id> (<name>)...` or the error.
fn create_one(config: &str) -> Option<u64> {
    if super::image().is_empty() {
        println!("error: create: dom0 was built without a PV domU image (FERRITE_DOMU_IMAGE)");
        return None;
    }
    match ctl::create(super::image(), config) {
        Ok(id) => Some(id),
        Err((e, reason)) => {
            let name = parse::config_name(config).unwrap_or("");
            if reason.is_empty() {
                println!("error: create {name}: {} ({})", why_create(e), e.name());
            } else {
                println!("error: create {name}: {reason} ({})", e.name());
            }
            None
        }
    }
}

fn why_create(e: Errno) -> &'static str {
    match e {
        Errno::Inval => "bad configuration",
        Errno::Exist => "a domain of that name exists",
        e => why(e),
    }
}

/// `create [-p] <config>`: xl's `create`, unpaused unless `-p`.
pub fn create(args: &[&str]) {
    let (paused, words) = match args.first() {
        Some(&"-p") => (true, &args[1..]),
        _ => (false, args),
    };
    if words.is_empty() {
        return println!(
            "error: create: give a configuration, e.g. create name=web mem=8M cmd=hog"
        );
    }
    let config = parse::config(words);
    let Some(id) = create_one(&config) else {
        return;
    };
    crate::consback::rescan(None);
    let name = ctl::get_info(id)
        .map(|i| String::from(i.name()))
        .unwrap_or_default();
    if paused {
        return println!("created domain {id} ({name}), paused");
    }
    match ctl::unpause(id) {
        Ok(()) => println!("created domain {id} ({name})"),
        Err(e) => println!(
            "error: create: domain {id} ({name}) was created but not unpaused: {} ({})",
            why(e),
            e.name()
        ),
    }
}

/// Runs `f` on the domain named by the first argument; prints `<done> <domain>` on success.
fn on_domain(cmd: &str, args: &[&str], done: &str, f: impl FnOnce(u64) -> Result<()>) {
    let Some((id, info)) = resolve(cmd, args.first().copied()) else {
        return;
    };
    let l = label(id, &info);
    if id == 0 {
        return println!("error: {cmd} {l}: not dom0 (the toolstack runs in it)");
    }
    match f(id) {
        Ok(()) => println!("{done} {l}"),
        Err(e) => fail(cmd, &l, e),
    }
}

pub fn pause(args: &[&str]) {
    on_domain("pause", args, "paused", ctl::pause)
}

pub fn unpause(args: &[&str]) {
    on_domain("unpause", args, "unpaused", ctl::unpause)
}

/// Destroys `id`. Ferrite answers `EBUSY` while the domain is still being taken apart (a vCPU
/// leaving its CPU, frames still mapped): call again, up to 2 s, until it is gone (`ENOENT`
/// after an `EBUSY` means just that).
pub fn destroy_id(id: u64) -> Result<()> {
    let deadline = timer::deadline_us(2_000_000);
    let mut busy = false;
    loop {
        match ctl::destroy(id) {
            Err(Errno::Busy) if timer::counter() < deadline => {
                busy = true;
                super::idle();
            }
            Err(Errno::NoEnt) if busy => return Ok(()),
            r => return r,
        }
    }
}

pub fn destroy(args: &[&str]) {
    on_domain("destroy", args, "destroyed", |id| {
        destroy_id(id)?;
        crate::consback::rescan(Some(id));
        Ok(())
    })
}

/// `shutdown [-w] <dom>`, `reboot [-w] <dom>`: asks the domain; with `-w`, waits (up to 10 s)
/// until it has shut down, is gone, or (reboot) was built again.
pub fn shutdown(args: &[&str], reboot: bool) {
    let (cmd, reason, done) = if reboot {
        ("reboot", SHUTDOWN_REBOOT, "asked to reboot:")
    } else {
        ("shutdown", SHUTDOWN_POWEROFF, "asked to shut down:")
    };
    let (wait, args) = match args.first() {
        Some(&"-w") => (true, &args[1..]),
        _ => (false, args),
    };
    let mut asked = None;
    on_domain(cmd, args, done, |id| {
        ctl::shutdown(id, reason)?;
        asked = Some(id);
        Ok(())
    });
    let (Some(id), true) = (asked, wait) else {
        return;
    };
    let restarts = ctl::get_info(id).map_or(0, |i| i.restarts);
    let deadline = timer::deadline_us(10_000_000);
    while timer::counter() < deadline {
        match ctl::get_info(id) {
            Err(_) => return println!("dom{id} is gone"),
            Ok(i) if i.state == state::SHUTDOWN || i.state == state::CRASHED => {
                return println!("dom{id} has shut down");
            }
            Ok(i) if i.restarts != restarts => return println!("dom{id} was built again"),
            Ok(_) => super::idle(),
        }
    }
    println!("error: {cmd} dom{id}: still running after 10 s");
}

/// Waits (up to 5 s) until no domain is dying, so its frames are back.
fn settle() {
    let deadline = timer::deadline_us(5_000_000);
    while timer::counter() < deadline {
        let dying = ctl::domain_ids()
            .into_iter()
            .any(|d| ctl::get_info(d).is_ok_and(|i| i.state == state::DYING));
        if !dying {
            return;
        }
        super::idle();
    }
}

type Step = fn(u64) -> Result<()>;

/// `cycle <n> <config>`: n × (create, unpause, pause, unpause, destroy), then free frames
/// before and after: `cycle: <n> cycles, free frames <a> before, <b> after: ok` (or `LEAK`).
pub fn cycle(args: &[&str]) {
    let (Some(n), Some(_)) = (args.first().and_then(|a| parse::number(a)), args.get(1)) else {
        return println!("error: cycle: usage: cycle <n> <config>");
    };
    let config = parse::config(&args[1..]);
    let before = match ctl::physinfo() {
        Ok(p) => p.free_frames,
        Err(e) => return println!("error: cycle: PHYSINFO: {} ({})", why(e), e.name()),
    };
    println!(
        "cycle: {n} x (create, unpause, pause, unpause, destroy) of \"{config}\"; free frames {before}"
    );
    let start = timer::counter();
    for i in 0..n {
        let Some(id) = create_one(&config) else {
            return println!("cycle: stopped at cycle {i}: create failed");
        };
        let steps: [(&str, Step); 4] = [
            ("unpause", ctl::unpause),
            ("pause", ctl::pause),
            ("unpause", ctl::unpause),
            ("destroy", destroy_id),
        ];
        for (what, f) in steps {
            if let Err(e) = f(id) {
                println!(
                    "cycle: stopped at cycle {i}: {what} dom{id}: {} ({})",
                    why(e),
                    e.name()
                );
                let _ = destroy_id(id);
                return;
            }
        }
        if (i + 1) % 50 == 0 {
            println!("cycle: {} done", i + 1);
        }
    }
    settle();
    let after = match ctl::physinfo() {
        Ok(p) => p.free_frames,
        Err(e) => return println!("error: cycle: PHYSINFO: {} ({})", why(e), e.name()),
    };
    let ms = timer::ticks_to_us(timer::counter() - start) / 1000;
    let verdict = if after == before {
        String::from("ok")
    } else {
        alloc::format!("LEAK of {} frames", before as i64 - after as i64)
    };
    println!("cycle: {n} cycles in {ms} ms, free frames {before} before, {after} after: {verdict}");
}
