//! The scheduling and observation commands: `sched-credit`, `vcpu-pin`, `vcpu-list`,
//! `console`, `top`, `dmesg`, `sleep`.

use super::cmds::{fail, resolve, why};
use super::{ctl, parse};
use crate::{console, sched, timer};
use alloc::string::String;
use alloc::vec::Vec;
use ferrite_abi::ctl::state;
use ferrite_abi::errno::Errno;

/// `sched-credit [-d dom] [-w weight] [-c cap]`: without `-w`/`-c`, the table (one domain with
/// `-d`); with them, sets the domain's weight and cap.
pub fn sched_credit(args: &[&str]) {
    let (mut dom, mut weight, mut cap) = (None, None, None);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let v = it.next().copied();
        match (a, v) {
            ("-d", Some(v)) => dom = Some(v),
            ("-w", Some(v)) => match parse::number(v) {
                Some(n) => weight = Some(n),
                None => return println!("error: sched-credit: weight \"{v}\" is not a number"),
            },
            ("-c", Some(v)) => match parse::number(v) {
                Some(n) => cap = Some(n),
                None => return println!("error: sched-credit: cap \"{v}\" is not a number"),
            },
            _ => {
                return println!(
                    "error: sched-credit: usage: sched-credit [-d dom] [-w weight] [-c cap]"
                );
            }
        }
    }
    if weight.is_some() || cap.is_some() {
        let Some((id, _)) = resolve("sched-credit", dom) else {
            return;
        };
        let d = alloc::format!("dom{id}");
        if let Some(w) = weight
            && let Err(e) = sched::set_weight(id, w)
        {
            return println!(
                "error: sched-credit {d}: weight {w}: {} ({})",
                why_value(e),
                e.name()
            );
        }
        if let Some(c) = cap
            && let Err(e) = sched::set_cap(id, c)
        {
            return println!(
                "error: sched-credit {d}: cap {c}: {} ({})",
                why_value(e),
                e.name()
            );
        }
    }
    let ids = match dom {
        Some(d) => match resolve("sched-credit", Some(d)) {
            Some((id, _)) => alloc::vec![id],
            None => return,
        },
        None => ctl::domain_ids(),
    };
    let mut rows = Vec::new();
    for id in ids {
        match (sched::get_weight(id), sched::get_cap(id)) {
            (Ok(w), Ok(c)) => {
                rows.push(alloc::format!("{:<32} {id:>5} {w:>6} {c:>4}", name_of(id)))
            }
            (Err(e), _) | (_, Err(e)) => fail("sched-credit", &alloc::format!("dom{id}"), e),
        }
    }
    if !rows.is_empty() {
        println!("{:<32} {:>5} {:>6} {:>4}", "Name", "ID", "Weight", "Cap");
        for r in rows {
            println!("{r}");
        }
    }
}

fn why_value(e: Errno) -> &'static str {
    match e {
        Errno::Inval => "out of range",
        e => why(e),
    }
}

fn name_of(id: u64) -> String {
    match ctl::get_info(id) {
        Ok(i) => i.name().into(),
        Err(_) if id == 0 => "Domain-0".into(),
        Err(_) => alloc::format!("dom{id}"),
    }
}

/// `vcpu-pin <dom> <vcpu|all> <cpus>`.
pub fn vcpu_pin(args: &[&str]) {
    let (Some(_), Some(&v), Some(&cpus)) = (args.first(), args.get(1), args.get(2)) else {
        return println!("error: vcpu-pin: usage: vcpu-pin <dom> <vcpu|all> <cpus>");
    };
    let Some((id, _)) = resolve("vcpu-pin", args.first().copied()) else {
        return;
    };
    let d = alloc::format!("dom{id}");
    let pcpus = match sched::get_pcpus() {
        Ok(p) => p,
        Err(e) => return fail("vcpu-pin", &d, e),
    };
    let Some(mask) = ferrite_abi::sched::parse_cpu_list(cpus, pcpus) else {
        return println!(
            "error: vcpu-pin {d}: \"{cpus}\" is not a list of CPUs 0..{} (like 0-1,3 or all)",
            pcpus.saturating_sub(1)
        );
    };
    let vcpus: Vec<u64> = if v == "all" {
        match sched::get_info(id) {
            Ok(n) => (0..n).collect(),
            Err(e) => return fail("vcpu-pin", &d, e),
        }
    } else if let Some(n) = parse::number(v) {
        alloc::vec![n]
    } else {
        return println!("error: vcpu-pin {d}: vcpu \"{v}\" is not a number or all");
    };
    for c in vcpus {
        match sched::set_affinity(id, c, mask) {
            Ok(()) => println!(
                "{d} vcpu{c} pinned to cpus {}",
                ferrite_abi::sched::CpuList(mask)
            ),
            Err(Errno::NoEnt) => {
                return println!("error: vcpu-pin {d}: no such domain or no vcpu {c} (ENOENT)");
            }
            Err(e) => return fail("vcpu-pin", &alloc::format!("{d} vcpu{c}"), e),
        }
    }
}

/// `vcpu-list [dom]`: one line per vCPU.
pub fn vcpu_list(args: &[&str]) {
    let ids = match args.first() {
        Some(a) => match resolve("vcpu-list", Some(a)) {
            Some((id, _)) => alloc::vec![id],
            None => return,
        },
        None => ctl::domain_ids(),
    };
    let mut rows = Vec::new();
    for id in ids {
        let n = match sched::get_info(id) {
            Ok(n) => n,
            Err(e) => {
                fail("vcpu-list", &alloc::format!("dom{id}"), e);
                continue;
            }
        };
        let info = ctl::get_info(id).ok();
        let name = name_of(id);
        for c in 0..n {
            let s = match sched::get_vcpu_stats(id, c) {
                Ok(s) => s,
                Err(e) => {
                    fail("vcpu-list", &alloc::format!("dom{id} vcpu{c}"), e);
                    continue;
                }
            };
            let st = match info.map(|i| i.state) {
                Some(state::PAUSED) => "p",
                Some(state::SHUTDOWN | state::CRASHED | state::DYING) => "-",
                _ if id == 0 && c == crate::cpu::index() as u64 => "r",
                _ if s.priority == 0 => "b",
                _ => "r",
            };
            rows.push(alloc::format!(
                "{name:<32} {id:>5} {c:>5} {:>4} {st:>5} {:>9.1} {:>6} {:>10}",
                s.pcpu,
                s.running_ns as f64 / 1e9,
                s.runs,
                s.migrations
            ));
        }
    }
    if !rows.is_empty() {
        println!(
            "{:<32} {:>5} {:>5} {:>4} {:>5} {:>9} {:>6} {:>10}",
            "Name", "ID", "VCPU", "CPU", "State", "Time(s)", "Runs", "Migrations"
        );
        for r in rows {
            println!("{r}");
        }
    }
}

/// `console <dom>`: the domain's last lines, then its new ones as they come, until a key is
/// typed (Ctrl-] as in xl, or any other: input is not forwarded to the domain). From
/// `dom0.exec`, only the lines so far. What the domain writes with `CONSOLE_IO` goes straight
/// to Ferrite's console and is not seen here: only its console ring is.
pub fn console(args: &[&str]) {
    let Some((id, _)) = resolve("console", args.first().copied()) else {
        return;
    };
    crate::consback::rescan(None);
    let Some(lines) = crate::consback::history(id) else {
        return println!(
            "error: console dom{id}: dom0 does not serve its console (dom0 itself, or none)"
        );
    };
    let scripted = super::scripted();
    let how = if scripted {
        ""
    } else {
        "; any key (Ctrl-]) detaches"
    };
    println!("console dom{id}: {} earlier line(s){how}", lines.len());
    for l in &lines {
        println!("{l}");
    }
    if scripted {
        return println!("console dom{id}: detached");
    }
    crate::consback::follow(id);
    loop {
        if console::read_byte().is_some() {
            break;
        }
        if ctl::get_info(id).is_err_and(|e| e == Errno::NoEnt) {
            crate::consback::service(true);
            println!("console dom{id}: the domain is gone");
            break;
        }
        super::idle();
    }
    crate::consback::unfollow();
    println!("console dom{id}: detached");
}

/// `top [-b] [-d ms] [-n count]`: per-domain CPU% (of one pCPU) and memory, every `-d` ms
/// (1000), `-n` times (until a key); `-b` does not clear the screen.
pub fn top(args: &[&str]) {
    let (mut batch, mut delay, mut count) = (false, 1000u64, u64::MAX);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        match a {
            "-b" => batch = true,
            "-d" | "-n" => {
                let Some(n) = it.next().and_then(|v| parse::number(v)) else {
                    return println!("error: top: {a} needs a number");
                };
                if a == "-d" {
                    delay = n.max(100);
                } else {
                    count = n;
                }
            }
            _ => return println!("error: top: usage: top [-b] [-d ms] [-n count]"),
        }
    }
    let mut prev: Vec<(u64, u64)> = Vec::new();
    let mut prev_t = timer::counter();
    let mut round = 0;
    while round < count {
        let now = timer::counter();
        let wall_ns = timer::ticks_to_us(now - prev_t) * 1000;
        prev_t = now;
        let mut cur = Vec::new();
        let mut rows = Vec::new();
        for id in ctl::domain_ids() {
            let Ok(i) = ctl::get_info(id) else { continue };
            let last = prev.iter().find(|p| p.0 == id).map(|p| p.1);
            let pct = match last {
                Some(l) if wall_ns > 0 => {
                    (i.cpu_ns.saturating_sub(l)) as f64 * 100.0 / wall_ns as f64
                }
                _ => 0.0,
            };
            cur.push((id, i.cpu_ns));
            rows.push((i, pct));
        }
        prev = cur;
        if !batch {
            console::write_bytes(b"\x1b[H\x1b[2J");
        }
        let p = ctl::physinfo().ok();
        println!(
            "top: {} domains, {} pcpus, free memory {} MiB (any key quits)",
            rows.len(),
            p.map_or(0, |p| p.pcpus),
            p.map_or(0, |p| (p.free_frames * 4096) >> 20)
        );
        println!(
            "{:<24} {:>5} {:>6} {:>10} {:>7} {:>9} {:>9} {:>5}",
            "NAME", "ID", "STATE", "CPU(sec)", "CPU(%)", "MEM(k)", "MAXMEM(k)", "VCPUS"
        );
        for (i, pct) in rows {
            println!(
                "{:<24} {:>5} {:>6} {:>10.1} {:>7.1} {:>9} {:>9} {:>5}",
                i.name(),
                i.id,
                parse::state_letters(i.state, i.state == state::RUNNING),
                i.cpu_ns as f64 / 1e9,
                pct,
                i.mem_kib,
                i.maxmem_kib,
                i.vcpus
            );
        }
        round += 1;
        if round < count && super::sleep_or_key(delay) {
            break;
        }
    }
    println!("top: done");
}

/// `dmesg`: Ferrite's log ring, oldest kept line first. It is read whole before any is printed
/// (dom0's printing adds to Ferrite's log).
pub fn dmesg(_args: &[&str]) {
    let mut all = Vec::new();
    let mut seq = 0;
    let mut buf = alloc::vec![0u8; 2048];
    while all.len() < 512 * 1024 {
        match ctl::dmesg(seq, &mut buf) {
            Ok((0, _)) => break,
            Ok((n, next)) => {
                all.extend_from_slice(&buf[..n.min(buf.len())]);
                if next <= seq {
                    break;
                }
                seq = next;
            }
            Err(e) => {
                if all.is_empty() {
                    return println!("error: dmesg: {} ({})", why(e), e.name());
                }
                break;
            }
        }
    }
    for line in String::from_utf8_lossy(&all).lines() {
        println!("{line}");
    }
}

/// `sleep <ms>`: waits, serving the domains (scripts).
pub fn sleep(args: &[&str]) {
    let Some(ms) = args.first().and_then(|a| parse::number(a)) else {
        return println!("error: sleep: usage: sleep <ms>");
    };
    let deadline = timer::deadline_us(ms.saturating_mul(1000));
    while timer::counter() < deadline {
        super::idle();
    }
}
