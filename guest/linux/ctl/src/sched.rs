//! `sched-credit` and `vcpu-pin`: the scheduler's control calls (`SCHED_CTL`), shaped like
//! xl's.

use crate::{Ctrl, Res, display_name, domains, err_text, resolve};
use ferrite_abi::call::sched_ctl;
use ferrite_abi::ctl::DomInfo;
use ferrite_abi::errno::Errno;

/// A number in decimal or `0x` hex.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn why_value(e: Errno) -> String {
    match e {
        Errno::Inval => format!("out of range ({})", e.name()),
        e => err_text(e),
    }
}

/// `sched-credit [-d dom [-w weight] [-c cap]]`: without `-w`/`-c`, the weight and cap of
/// every domain (or of `-d`'s); with them, sets the domain's, then shows it.
pub fn sched_credit(c: &Ctrl, args: &[&str]) -> Res<()> {
    let usage = "usage: sched-credit [-d <domain> [-w <weight>] [-c <cap>]]";
    let (mut dom, mut weight, mut cap) = (None, None, None);
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let Some(&v) = it.next() else {
            return Err(format!("sched-credit: {a} needs a value\n{usage}"));
        };
        match a {
            "-d" => dom = Some(v),
            "-w" => {
                weight =
                    Some(number(v).ok_or(format!("sched-credit: weight '{v}' is not a number"))?)
            }
            "-c" => {
                cap = Some(number(v).ok_or(format!("sched-credit: cap '{v}' is not a number"))?)
            }
            _ => return Err(format!("sched-credit: unknown option '{a}'\n{usage}")),
        }
    }
    let ds: Vec<DomInfo> = match dom {
        Some(d) => vec![resolve(c, d)?],
        None if weight.is_some() || cap.is_some() => {
            return Err(format!("sched-credit: -w and -c need -d <domain>\n{usage}"));
        }
        None => domains(c)?,
    };
    if let Some(d) = ds.first()
        && dom.is_some()
    {
        let id = d.id as u64;
        if let Some(w) = weight {
            c.sched_ctl(sched_ctl::SET_WEIGHT, id, w, 0).map_err(|e| {
                format!(
                    "sched-credit {} (domain {id}): weight {w}: {}",
                    display_name(d),
                    why_value(e)
                )
            })?;
        }
        if let Some(cp) = cap {
            c.sched_ctl(sched_ctl::SET_CAP, id, cp, 0).map_err(|e| {
                format!(
                    "sched-credit {} (domain {id}): cap {cp}: {}",
                    display_name(d),
                    why_value(e)
                )
            })?;
        }
    }
    println!("{:<32} {:>5} {:>6} {:>4}", "Name", "ID", "Weight", "Cap");
    for d in &ds {
        let id = d.id as u64;
        let get = |cmd| {
            c.sched_ctl(cmd, id, 0, 0).map_err(|e| {
                format!(
                    "sched-credit {} (domain {id}): {}",
                    display_name(d),
                    err_text(e)
                )
            })
        };
        let (w, cp) = match (get(sched_ctl::GET_WEIGHT), get(sched_ctl::GET_CAP)) {
            (Ok(w), Ok(cp)) => (w, cp),
            // It went between the walk and the question.
            (Err(_), _) | (_, Err(_)) if dom.is_none() => continue,
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        println!("{:<32} {id:>5} {w:>6} {cp:>4}", display_name(d));
    }
    Ok(())
}

/// `vcpu-pin <dom> <vcpu|all> <cpus>`: the pCPUs the vCPU may run on (`0-1,3`, `all`).
pub fn vcpu_pin(c: &Ctrl, dom: &str, vcpu: &str, cpus: &str) -> Res<()> {
    let d = resolve(c, dom)?;
    let (id, name) = (d.id as u64, display_name(&d));
    let pcpus = c
        .sched_ctl(sched_ctl::GET_PCPUS, 0, 0, 0)
        .map_err(|e| format!("vcpu-pin: GET_PCPUS: {}", err_text(e)))?;
    let mask = ferrite_abi::sched::parse_cpu_list(cpus, pcpus).ok_or(format!(
        "vcpu-pin {name}: '{cpus}' is not a list of CPUs 0..{} (like 0-1,3 or all)",
        pcpus.saturating_sub(1)
    ))?;
    let vcpus: Vec<u64> = if vcpu == "all" {
        (0..d.vcpus as u64).collect()
    } else {
        vec![number(vcpu).ok_or(format!(
            "vcpu-pin {name}: vcpu '{vcpu}' is not a number or all"
        ))?]
    };
    for v in vcpus {
        match c.sched_ctl(sched_ctl::SET_AFFINITY, id, v, mask) {
            Ok(_) => println!(
                "Domain {id} ({name}) vcpu {v} pinned to cpus {}",
                ferrite_abi::sched::CpuList(mask)
            ),
            Err(Errno::NoEnt) => {
                return Err(format!(
                    "vcpu-pin {name} (domain {id}): no vcpu {v} (ENOENT)"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "vcpu-pin {name} (domain {id}) vcpu {v}: {}",
                    why_value(e)
                ));
            }
        }
    }
    Ok(())
}
