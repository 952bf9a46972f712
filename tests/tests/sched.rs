//! The Credit scheduler on the real image: PV domUs (`guest/domu` hogs, a latency probe, an
//! SMP domU) share pCPUs with dom0, whose `dom0.sched.report=<ms>` reads every vCPU's
//! statistics through `SCHED_CTL` after that much guest time and prints them. Everything runs
//! under `-icount`, so the numbers repeat.

use std::collections::BTreeMap;
use std::time::Duration;

use ferrite_systests::console::parse_latency_max_us;
use ferrite_systests::paths::dom0_image;
use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(240);

/// One vCPU's line of dom0's report.
#[derive(Clone, Debug, Default)]
struct VcpuLine {
    weight: u64,
    cap: u64,
    running_ns: u64,
    runnable_ns: u64,
    blocked_ns: u64,
    runs: u64,
    migrations: u64,
    pcpu: u64,
}

/// `dom0: sched: dom<d> vcpu<v> weight <w> cap <c> running_ns <n> runnable_ns <n> blocked_ns
/// <n> runs <n> migrations <n> pcpu <p> prio <p>`, by (domain, vCPU).
fn report(out: &Outcome) -> BTreeMap<(u32, u32), VcpuLine> {
    let mut m = BTreeMap::new();
    for l in out.console.lines() {
        let Some(rest) = l.split("dom0: sched: dom").nth(1) else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        if w.len() < 19 || !w[1].starts_with("vcpu") {
            continue;
        }
        let num = |key: &str| -> u64 {
            w.iter()
                .position(|x| *x == key)
                .and_then(|i| w.get(i + 1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let (Ok(d), Ok(v)) = (w[0].parse::<u32>(), w[1][4..].parse::<u32>()) else {
            continue;
        };
        m.insert(
            (d, v),
            VcpuLine {
                weight: num("weight"),
                cap: num("cap"),
                running_ns: num("running_ns"),
                runnable_ns: num("runnable_ns"),
                blocked_ns: num("blocked_ns"),
                runs: num("runs"),
                migrations: num("migrations"),
                pcpu: num("pcpu"),
            },
        );
    }
    m
}

fn run(label: &str, cpus: u32, bootargs: &str) -> Result<Outcome> {
    let q = Qemu::virt()
        .gic(3)
        .cpus(cpus)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label(label)
        .image(dom0_image("qemu-virt"))
        .bootargs(format!("semihosting {bootargs}"));
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    out.ensure(
        out.console.contains("dom0: sched: report done"),
        "dom0 printed no report",
    )?;
    Ok(out)
}

/// Three CPU hogs pinned to pCPU 1 with weights 256, 512 and 1024 share it 1:2:4.
#[test]
fn weights_share_a_pcpu_in_proportion() -> Result<()> {
    let out = run(
        "sched-weights",
        2,
        "dom0_vcpus=1 domu=name=w256,mem=4M,weight=256,cpus=1,cmd=hog \
         domu=name=w512,mem=4M,weight=512,cpus=1,cmd=hog \
         domu=name=w1024,mem=4M,weight=1024,cpus=1,cmd=hog \
         -- dom0.sched.report=3000 poweroff",
    )?;
    let r = report(&out);
    let run: Vec<u64> = (1..=3)
        .map(|d| r.get(&(d, 0)).map_or(0, |l| l.running_ns))
        .collect();
    let total: u64 = run.iter().sum();
    out.ensure(
        total > 2_000_000_000,
        format!("the hogs ran only {total} ns in all"),
    )?;
    for (i, want) in [1.0 / 7.0, 2.0 / 7.0, 4.0 / 7.0].iter().enumerate() {
        let got = run[i] as f64 / total as f64;
        out.ensure(
            (got - want).abs() <= 0.03,
            format!(
                "weight {}: share {:.3}, want {:.3} ± 0.03 (running ns {run:?})",
                256 << i,
                got,
                want
            ),
        )?;
        let l = &r[&(i as u32 + 1, 0)];
        out.ensure(
            l.weight == 256 << i,
            format!("weight read back as {}", l.weight),
        )?;
        out.ensure(
            l.pcpu == 1 && l.migrations == 0,
            "a pinned hog ran elsewhere",
        )?;
    }
    Ok(())
}

/// A domU capped at 25 % gets no more than 27 % of a pCPU that is otherwise idle.
#[test]
fn a_capped_domain_stays_under_its_cap() -> Result<()> {
    let out = run(
        "sched-cap",
        2,
        "dom0_vcpus=1 domu=name=capped,mem=4M,cap=25,cpus=1,cmd=hog \
         -- dom0.sched.report=3000 poweroff",
    )?;
    let r = report(&out);
    let l = r.get(&(1, 0)).cloned().unwrap_or_default();
    out.ensure(l.cap == 25, format!("cap read back as {}", l.cap))?;
    let life = (l.running_ns + l.runnable_ns + l.blocked_ns) as f64;
    let share = l.running_ns as f64 / life;
    out.ensure(
        life > 2.5e9 && (0.15..=0.27).contains(&share),
        format!(
            "the capped hog had {share:.3} of its pCPU over {:.2} s",
            life / 1e9
        ),
    )
}

/// `vwfi=native` never lets an idle vCPU keep its pCPU from one with work: a hog pinned to
/// dom0's pCPU gets as much of it as with WFI trapped, because dom0's WFI traps again as soon
/// as the hog waits behind it (without that, the idle dom0 would count as running and keep
/// half of its pCPU).
#[test]
fn native_wfi_gives_way_to_a_waiting_vcpu() -> Result<()> {
    let mut hog = Vec::new();
    let mut last = None;
    for vwfi in ["trap", "native"] {
        let out = run(
            &format!("sched-vwfi-{vwfi}"),
            2,
            &format!(
                "vwfi={vwfi} dom0_vcpus=1 domu=name=hog,mem=4M,cpus=0,cmd=hog \
                 -- dom0.sched.report=2000 poweroff"
            ),
        )?;
        out.ensure(
            out.console.contains(&format!("vwfi {vwfi}")),
            "the scheduler runs with the WFI policy asked for",
        )?;
        let l = report(&out).get(&(1, 0)).cloned().unwrap_or_default();
        hog.push(l.running_ns as f64);
        last = Some(out);
    }
    let out = last.expect("two runs");
    out.ensure(
        hog[0] > 1.5e9 && hog[1] >= hog[0] * 0.97,
        format!(
            "the hog ran {:.3} s beside dom0 with WFI trapped, {:.3} s with vwfi=native",
            hog[0] / 1e9,
            hog[1] / 1e9
        ),
    )
}

/// An event-driven domU woken while CPU hogs run on its pCPU answers within one tick.
#[test]
fn a_woken_domain_preempts_cpu_hogs_within_a_tick() -> Result<()> {
    let out = run(
        "sched-latency",
        2,
        "dom0_vcpus=1 domu=name=hog1,mem=4M,cpus=1,cmd=hog domu=name=hog2,mem=4M,cpus=1,cmd=hog \
         domu=name=lat,mem=4M,cpus=1,cmd=latency+50 -- dom0.sched.report=2000 poweroff",
    )?;
    let line = out
        .console
        .find("domU3: latency: n=50 max=")
        .map(str::to_string)
        .ok_or_else(|| out.fail("the latency probe did not report"))?;
    let max_us =
        parse_latency_max_us(&line).ok_or_else(|| out.fail(format!("cannot read `{line}`")))?;
    out.ensure(
        max_us < 10_000,
        format!("worst wake-up latency {max_us} us, more than a 10 ms tick"),
    )
}

/// 32 vCPUs over 4 pCPUs all run; the domU pinned to pCPU 2 never runs anywhere else.
#[test]
fn thirty_two_vcpus_on_four_pcpus_all_progress() -> Result<()> {
    let out = run(
        "sched-32",
        4,
        "dom0_vcpus=1 domu=name=s1,mem=8M,vcpus=8,cmd=smp+stay domu=name=s2,mem=8M,vcpus=8,cmd=smp+stay \
         domu=name=s3,mem=8M,vcpus=8,cmd=smp+stay domu=name=pinned,mem=8M,vcpus=8,cpus=2,cmd=smp+stay \
         -- dom0.sched.pin=1:0:0x8 dom0.sched.weight=2:512 dom0.sched.cap=3:200 \
         dom0.sched.report=4000 poweroff",
    )?;
    // dom0 changed these at run time through SCHED_CTL.
    for needle in [
        "dom0: sched: dom1 vcpu0 pin 0x8: ok",
        "dom0: sched: dom2 weight 512: ok",
        "dom0: sched: dom3 cap 200: ok",
    ] {
        out.ensure(out.console.contains(needle), format!("missing `{needle}`"))?;
    }
    for d in 1..=4 {
        out.ensure(
            out.console
                .contains(&format!("domU{d}: smp: 8 vcpus all progressed")),
            format!("domU{d}: not every vCPU progressed"),
        )?;
    }
    let r = report(&out);
    for d in 1..=4u32 {
        for v in 0..8u32 {
            let l = r
                .get(&(d, v))
                .ok_or_else(|| out.fail(format!("no report for dom{d} vcpu{v}")))?;
            out.ensure(
                l.runs > 0 && l.running_ns > 0,
                format!("dom{d} vcpu{v} never ran"),
            )?;
            if (d, v) == (1, 0) {
                out.ensure(
                    l.pcpu == 3,
                    format!("dom1 vcpu0 pinned to pcpu 3 is on {}", l.pcpu),
                )?;
            }
            if d == 2 {
                out.ensure(l.weight == 512, format!("dom2's weight reads {}", l.weight))?;
            }
            if d == 3 {
                out.ensure(l.cap == 200, format!("dom3's cap reads {}", l.cap))?;
            }
            if d == 4 {
                out.ensure(
                    l.pcpu == 2 && l.migrations == 0,
                    format!(
                        "pinned dom4 vcpu{v} was on pcpu {} ({} migrations)",
                        l.pcpu, l.migrations
                    ),
                )?;
            }
        }
    }
    Ok(())
}
