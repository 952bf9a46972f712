//! `make bench`: Ferrite's benchmarks, deterministic (`-icount shift=0,sleep=off`, one guest
//! instruction per virtual nanosecond; `dtb-randomness=off`), printed as a table and written to
//! `build/bench/results.txt`. Not a test: nothing here passes or fails on a number.
//!
//! Rows: Ferrite's boot to its ready line (EL2 instructions on the boot CPU); EL2 instructions
//! per guest exit by kind (Ferrite's own dom0, from its power-off report); Linux dom0's time to
//! its shell marker under Ferrite against the same kernel and initramfs on QEMU with no
//! hypervisor, as a ratio; a PV domU's null hypercall and `mmu_update` cost per entry at batch
//! sizes 1, 16 and 512; the vCPU switch between domains; the Credit scheduler's decision cost
//! with 1, 16 and 256 runnable vCPUs; shared-memory I/O through dom0: the event-channel round
//! trip (through dom0's echo device, min and median of 100, and through its console back end),
//! block reads by a domU against dom0 reading directly, domU-to-domU frames; a domain's
//! creation to its first instruction, and save and restore of a 64 MiB domU.
//!
//! `FERRITE_BENCH=<group>[,<group>...]` runs only those groups (the table then holds only their
//! rows, and `results.txt` is not overwritten): `boot`, `dom0` (exits under Ferrite's dom0),
//! `pv` (hypercalls, `mmu_update`, switches, scheduling decisions), `evtchn` (the event round
//! trips), `io` (block and domU-to-domU frames; `blk` and `net` are its halves), `lifecycle`
//! (creation, save, restore), `linux`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use ferrite_systests::{Outcome, Qemu};

const T: Duration = Duration::from_secs(300);

fn build(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../build")
        .join(p)
}

/// The first console line of `out` that contains `needle`, or an empty one.
fn line_with(out: &Outcome, needle: &str) -> String {
    out.console
        .lines()
        .iter()
        .find(|l| l.contains(needle))
        .cloned()
        .unwrap_or_default()
}

fn num_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split(key).nth(1)?.split_whitespace().next()
}

fn disk(name: &str, size: u64) -> PathBuf {
    let p = build(&format!("bench/{name}.img"));
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

fn linux_args(disk: &std::path::Path, loader: bool) -> Vec<String> {
    let kernel = build("debian/vmlinuz");
    let initrd = build("linux/initramfs.cpio");
    let mut a = Vec::new();
    if loader {
        a.extend([
            "-device".to_string(),
            format!(
                "guest-loader,addr=0x50000000,kernel={},bootargs=console=ttyAMA0 linux-dom0.test",
                kernel.display()
            ),
            "-device".into(),
            format!("guest-loader,addr=0x54000000,initrd={}", initrd.display()),
        ]);
    }
    a.extend([
        "-drive".to_string(),
        format!("file={},if=none,format=raw,id=d0", disk.display()),
        "-device".into(),
        "virtio-blk-device,drive=d0".into(),
        "-netdev".into(),
        "user,id=n0".into(),
        "-device".into(),
        "virtio-net-device,netdev=n0".into(),
    ]);
    a
}

/// Whether group `g` runs: all of them unless `FERRITE_BENCH` names some.
fn wanted(g: &str) -> bool {
    match std::env::var("FERRITE_BENCH") {
        Ok(list) if !list.is_empty() => list.split(',').any(|w| w.trim() == g),
        _ => true,
    }
}

fn main() {
    std::fs::create_dir_all(build("bench")).unwrap();
    let all = std::env::var("FERRITE_BENCH").map_or(true, |l| l.is_empty());
    let mut table = String::new();
    let mut row = |name: &str, value: String| {
        println!("{name:<58} {value}");
        writeln!(table, "{name:<58} {value}").unwrap();
    };

    // One CPU: under -icount QEMU's instruction counter is global, so another busy CPU would
    // add its instructions to the EL2 counts.
    let pv_on = |cpus: u32, label: &str, bootargs: &str| {
        Qemu::virt()
            .cpus(cpus)
            .icount(true)
            .timeout(T)
            .label(label)
            .image(build("qemu-virt/ferrite-dom0.bin"))
            .bootargs(format!("semihosting {bootargs}"))
            .spawn()
            .and_then(|r| r.wait_exit(T))
            .expect("the PV benchmark runs")
    };
    let pv = |label: &str, bootargs: &str| pv_on(1, label, bootargs);

    // 1. Ferrite alone: boot to ready.
    if wanted("boot") {
        let out = Qemu::virt()
            .cpus(4)
            .icount(true)
            .timeout(T)
            .label("bench-boot")
            .bootargs("poweroff semihosting")
            .spawn()
            .and_then(|r| r.wait_exit(T))
            .expect("Ferrite boots");
        let ready = line_with(&out, "boot: ready");
        row(
            "ferrite boot to ready, 4 cpus (EL2 instructions, cpu0)",
            num_after(&ready, "entry, ").unwrap_or("?").to_string(),
        );
        row(
            "ferrite boot to ready, 4 cpus (virtual us)",
            num_after(&ready, "ready ").unwrap_or("?").to_string(),
        );
        let size = std::fs::metadata(build("qemu-virt/ferrite.bin"))
            .map(|m| m.len())
            .unwrap_or(0);
        row("ferrite image, no guests (bytes)", size.to_string());
    }
    // 2. Exits under Ferrite's own dom0.
    if wanted("dom0") {
        let d = disk("dom0", 16 << 20);
        let out = Qemu::virt()
            .cpus(4)
            .icount(true)
            .timeout(T)
            .label("bench-dom0")
            .image(build("qemu-virt/ferrite-dom0.bin"))
            .bootargs("semihosting -- poweroff")
            .args(linux_args(&d, false))
            .spawn()
            .and_then(|r| r.wait_exit(T))
            .expect("dom0 runs");
        for l in out.console.lines().iter().filter(|l| l.contains("exits: ")) {
            let rest = l.split("exits: ").nth(1).unwrap_or("");
            let kind = rest.split_whitespace().next().unwrap_or("?");
            let min = num_after(rest, "min ").unwrap_or("?");
            let avg = num_after(rest, "avg ").unwrap_or("?");
            row(
                &format!("dom0 exit `{kind}`: EL2 instructions min / avg"),
                format!("{min} / {avg}"),
            );
        }
    }
    // 3. PV domUs: hypercalls, batched page-table updates, vCPU switches, scheduling decisions.
    if wanted("pv") {
        let out = pv(
            "bench-null",
            "domu=mem=4M,cmd=bench-null+20000 -- dom0.sched.report=100 poweroff",
        );
        if let Some(l) = out
            .console
            .lines()
            .iter()
            .find(|l| l.contains("exits: hvc"))
        {
            row(
                "domU null hypercall (VERSION): EL2 instructions min / avg",
                format!(
                    "{} / {}",
                    num_after(l, "min ").unwrap_or("?"),
                    num_after(l, "avg ").unwrap_or("?")
                ),
            );
        }
        for (batch, rounds) in [(1, 4000), (16, 500), (512, 40)] {
            let out = pv(
                &format!("bench-mmu-{batch}"),
                &format!(
                    "domu=mem=16M,cmd=bench-mmu+{batch}+{rounds} -- dom0.sched.report=100 poweroff"
                ),
            );
            let l = line_with(&out, "hcall: mmu_update");
            row(
                &format!("domU mmu_update, batch {batch}: EL2 instructions per entry / per call"),
                format!(
                    "{} / {}",
                    num_after(&l, "per entry ").map_or("?", |s| s.trim_end_matches(',')),
                    num_after(&l, "per call ").unwrap_or("?")
                ),
            );
        }
        let out = pv(
            "bench-switch",
            "domu=mem=4M,cmd=hog domu=mem=4M,cmd=hog sched_credit_tslice_ms=1 \
         -- dom0.sched.report=500 poweroff",
        );
        if let Some(l) = out
            .console
            .lines()
            .iter()
            .find(|l| l.contains("switches: "))
        {
            row(
                "vCPU switch between domains: EL2 instructions min / avg",
                format!(
                    "{} / {}",
                    num_after(l, "min ").unwrap_or("?"),
                    num_after(l, "avg ").unwrap_or("?")
                ),
            );
        }
        let out = pv("bench-sched", "bench=sched -- poweroff");
        for l in out
            .console
            .lines()
            .iter()
            .filter(|l| l.contains("bench: sched decision with "))
        {
            let n = num_after(l, "decision with ").unwrap_or("?");
            row(
                &format!("scheduling decision, {n} runnable vcpus (EL2 instructions)"),
                num_after(l, "vcpus: ").unwrap_or("?").to_string(),
            );
        }
    }
    // 4. Shared-memory I/O through dom0 (one CPU: virtual ns are instructions of every
    // domain and Ferrite together).
    if wanted("evtchn") {
        // The event round trip proper: dom0's echo device answers from its interrupt handler.
        // Once on one pCPU, once on dedicated pCPUs: dom0 on pCPU 0, the domU pinned to pCPU 1,
        // both waiting in WFI at EL1 (`vwfi=native`). Under -icount both CPUs' instructions
        // count on one clock, and one of the two always runs in the round trip, so virtual ns
        // are still instructions.
        for (cpus, label, what, args) in [
            (
                1,
                "bench-evtchn",
                "echo, one pCPU (instructions, all domains)",
                "",
            ),
            (
                2,
                "bench-evtchn-native",
                "dom0 and the domU on a pCPU each, vwfi=native (instructions, both CPUs)",
                "vwfi=native dom0_vcpus=1 ",
            ),
        ] {
            let out = pv_on(
                cpus,
                label,
                &format!(
                    "{args}domu=mem=8M,cpus={},cmd=evt-ping+100 -- dom0.sched.report=300 poweroff",
                    cpus - 1
                ),
            );
            let l = line_with(&out, "evt-ping: round trip");
            row(
                &format!("event round trip domU -> dom0 -> domU, {what} min / median"),
                format!(
                    "{} / {}",
                    num_after(&l, " min ").unwrap_or("?"),
                    num_after(&l, " median ").unwrap_or("?")
                ),
            );
        }
        // The same through dom0's console back end, which grant-copies the ring's indices first.
        let out = pv(
            "bench-evtchn-console",
            "domu=mem=8M,cmd=ring-console+1 -- dom0.sched.report=300 poweroff",
        );
        let rt = line_with(&out, "ring-console: round trip");
        row(
            "event round trip through the console back end (instructions, all domains)",
            rt.split('(')
                .nth(1)
                .and_then(|r| r.split(" ns").next())
                .unwrap_or("?")
                .to_string(),
        );
    }
    if wanted("io") || wanted("blk") {
        blk(&mut row);
    }
    if wanted("io") || wanted("net") {
        let out = pv(
            "bench-net",
            "domu=mem=8M,cmd=net-sink+500 domu=mem=8M,cmd=net-blast+1+500 \
         -- dom0.sched.report=3000 poweroff",
        );
        let l = line_with(&out, "net-sink: ");
        row(
            "domU -> domU through dom0, 1514-byte frames, 32 in flight (KiB/s; frames)",
            format!(
                "{}; {}",
                l.rsplit(": ").next().unwrap_or("?"),
                num_after(&l, "net-sink: ").unwrap_or("?")
            ),
        );
    }
    // 5. Domain lifecycle: a 64 MiB domU's creation, from the start of its build to its first
    // instruction (zeroing its memory, the image, its page tables validated), at boot.
    if wanted("lifecycle") {
        let out = pv(
            "bench-create",
            "domu=name=big,mem=64M,cmd=counter+100 -- dom0.sched.report=300 poweroff",
        );
        let l = out
            .console
            .lines()
            .iter()
            .find(|l| l.contains("big: domain") && l.contains("first instruction"))
            .cloned()
            .unwrap_or_default();
        row(
            "64 MiB domU built at boot to first instruction (virtual us)",
            num_after(&l, "first instruction ")
                .unwrap_or("?")
                .to_string(),
        );

        // A 64 MiB domU created by dom0's toolstack (the image copied from dom0's memory), to its
        // first instruction after unpause; then saved into dom0's RAM and restored from it.
        let out = pv(
            "bench-save",
            "-- dom0.exec=\"create name=big mem=64M cmd=counter 100;sleep 300;save big f;\
         restore f;sleep 200;destroy big\" poweroff",
        );
        let find = |needle: &str| line_with(&out, needle);
        let l = find("big: domain 1: first instruction");
        row(
            "64 MiB domU from dom0 CREATE to first instruction (virtual us)",
            num_after(&l, "first instruction ")
                .unwrap_or("?")
                .to_string(),
        );
        let l = find("saved dom1 to");
        row(
            "save a 64 MiB domU into dom0's RAM (virtual us)",
            num_after(&l, " RAM in ").unwrap_or("?").to_string(),
        );
        let l = find("restored \"f\" as dom");
        row(
            "restore a 64 MiB domU from dom0's RAM (virtual us)",
            num_after(&l, " in ").unwrap_or("?").to_string(),
        );
    }
    // 6. Linux dom0 to its shell marker, against Linux on bare QEMU.
    if wanted("linux") {
        let uptime = |o: &ferrite_systests::Outcome| -> Option<f64> {
            let l = o
                .console
                .lines()
                .iter()
                .find(|l| l.contains("shell ready (uptime"))?
                .clone();
            l.split("uptime ").nth(1)?.split(' ').next()?.parse().ok()
        };
        let d = disk("linux-ferrite", 64 << 20);
        let under = Qemu::virt()
            .cpus(4)
            .memory("2G")
            .icount(true)
            .timeout(T)
            .label("bench-linux-ferrite")
            .bootargs("semihosting")
            .args(linux_args(&d, true))
            .spawn()
            .and_then(|r| r.wait_exit(T))
            .expect("Linux dom0 runs");
        let ferrite_us: f64 = under
            .console
            .lines()
            .iter()
            .find_map(|l| num_after(l, "boot: ready ").and_then(|n| n.parse().ok()))
            .unwrap_or(0.0);
        let d = disk("linux-bare", 64 << 20);
        let bare = Qemu::virt()
            .cpus(4)
            .memory("2G")
            .icount(true)
            .timeout(T)
            .label("bench-linux-bare")
            // At EL1, as under Ferrite: entered at EL2, Linux would also bring up KVM.
            .machine_opt("virtualization=off")
            .image(build("debian/vmlinuz"))
            .bootargs("console=ttyAMA0 linux-dom0.test")
            .args([
                "-initrd".to_string(),
                build("linux/initramfs.cpio").display().to_string(),
            ])
            .args(linux_args(&d, false))
            .spawn()
            .and_then(|r| r.wait_exit(T))
            .expect("Linux runs bare");
        match (uptime(&under), uptime(&bare)) {
            (Some(u), Some(b)) => {
                let total = u + ferrite_us / 1e6;
                row(
                    "linux to shell marker under ferrite (virtual s, incl. ferrite boot)",
                    format!("{total:.3}"),
                );
                row(
                    "linux to shell marker on bare QEMU (virtual s)",
                    format!("{b:.3}"),
                );
                row("ratio under ferrite / bare", format!("{:.2}", total / b));
            }
            other => row("linux to shell marker", format!("not measured: {other:?}")),
        }
    }

    if all {
        std::fs::write(build("bench/results.txt"), &table).unwrap();
        println!("written to build/bench/results.txt");
    }
}

/// A block benchmark's requests, the same on both sides: KiB each, how many in flight.
#[derive(Clone, Copy)]
struct Shape {
    kib: u32,
    depth: u32,
}

/// 8 segments of 4 KiB (the most a direct blkif request moves), a full ring of them.
const DIRECT: Shape = Shape { kib: 32, depth: 32 };
/// 64 segments (an indirect request's most), 8 in flight: 2 MiB, as many pages as the domU
/// grants for its benchmark.
const INDIRECT: Shape = Shape { kib: 256, depth: 8 };

impl Shape {
    fn name(self) -> String {
        format!("{} KiB x {}", self.kib, self.depth)
    }

    /// The domU's command and dom0's option for 224 MiB in this shape.
    fn domu_cmd(self) -> String {
        format!("blk-bench+224+{}+{}", self.kib, self.depth)
    }

    fn dom0_opt(self) -> String {
        format!("dom0.bench.blk=224:{}:{}", self.kib, self.depth)
    }
}

/// Block reads in real time on 2 CPUs, dom0 reading its disk directly against a domU reading
/// its region of the same disk through blkfront, blkback and dom0's virtio-blk. Both sides time
/// 128 MiB after 96 MiB of warm-up (going round their disk again) in requests of the same
/// shape, so the rates compare: 32 KiB requests (8 segments of 4 KiB, the most one direct blkif
/// request moves) with 32 outstanding (a full blkif ring), and 256 KiB indirect requests with 8
/// outstanding. The domU
/// runs on pCPU 0 (`cpus=0`), beside dom0's vCPU 0, which serves it: dom0 alone also does its
/// I/O from one pCPU, and on a shared host the events between two pCPUs (QEMU threads) cost
/// far more than between two vCPUs of one. Under -icount with sleep=off every wait for the disk
/// warps virtual time to the next timer, which says more about timers than about I/O, hence
/// real time; and as real time on a busy host varies a lot between boots, three boots, each
/// with its ratio, and the median. The image file sits in the host's page cache, so this
/// "disk" is as fast as memory and the CPU cost of each path decides; the last set throttles it
/// to a real device's rate (QEMU's `throttling.bps-read`, 500 MB/s, a SATA SSD's), where the
/// question is whether the domU gets what the disk gives.
fn blk(row: &mut impl FnMut(&str, String)) {
    blk_cpu(row, DIRECT);
    blk_cpu(row, INDIRECT);
    let shared = |s: Shape| format!("domu=mem=8M,disk=1M:8M,cpus=0,cmd={}", s.domu_cmd());
    // Dedicated pCPUs: dom0 alone on pCPU 0, the domU on pCPU 1, both waiting in WFI at EL1.
    let dedicated = |s: Shape| {
        format!(
            "vwfi=native dom0_vcpus=1 domu=mem=8M,disk=1M:8M,cpus=1,cmd={}",
            s.domu_cmd()
        )
    };
    for shape in [DIRECT, INDIRECT] {
        blk_set(row, shape, "", &shared(shape), "");
        blk_set(
            row,
            shape,
            ", pCPU each, vwfi=native",
            &dedicated(shape),
            "",
        );
    }
    blk_set(
        row,
        DIRECT,
        ", disk throttled to 500 MB/s",
        &shared(DIRECT),
        "throttling.bps-read=500000000",
    );
}

/// The CPU each path spends per request of `shape`, under -icount (instructions, repeatable):
/// dom0 submitting to and completing from its disk directly, against blkback taking, checking,
/// mapping and submitting a domU's request and answering it (over all its requests, the first
/// ones mapping their pages). The counter is the machine's (-icount counts every CPU's
/// instructions), so what the domU runs while dom0 is inside one of blkback's phases counts
/// there too. The real-time ratio below follows from these and the disk's own time; what
/// blkback adds is what keeps it under 1 on a disk as fast as memory.
fn blk_cpu(row: &mut impl FnMut(&str, String), shape: Shape) {
    let out = blk_boot(
        "bench-blk-cpu",
        true,
        shape,
        &format!("domu=mem=8M,disk=1M:8M,cpus=0,cmd={}", shape.domu_cmd()),
        "",
    );
    let find = |key: &str| {
        out.console
            .lines()
            .iter()
            .find(|l| l.contains(key))
            .cloned()
    };
    let ns = |line: &Option<String>, after: &str| -> Option<u64> {
        line.as_ref()?
            .split(after)
            .nth(1)?
            .split(" ns")
            .next()?
            .trim()
            .parse()
            .ok()
    };
    let direct = find("dom0: bench: blk: CPU per request:");
    let back = find("dom0: blk: CPU per request:");
    let (submit, complete) = (ns(&direct, "submit "), ns(&direct, "complete "));
    let (serve, answer) = (ns(&back, "take and submit "), ns(&back, "answer "));
    let sum = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a + b);
    let show = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    let name = shape.name();
    row(
        &format!("block CPU per request, {name}, dom0 direct: submit + complete (instr.)"),
        format!(
            "{} + {} = {}",
            show(submit),
            show(complete),
            show(sum(submit, complete))
        ),
    );
    row(
        &format!("block CPU per request, {name}, blkback: take/map/submit + answer"),
        format!(
            "{} + {} = {}",
            show(serve),
            show(answer),
            show(sum(serve, answer))
        ),
    );
    row(
        &format!("block CPU per request, {name}, through blkback / direct"),
        sum(serve, answer)
            .zip(sum(submit, complete))
            .map_or("?".into(), |(b, d)| {
                format!("{:.2}", b as f64 / d.max(1) as f64)
            }),
    );
}

/// One boot of the block benchmarks on a fresh 16 MiB disk: dom0 reads 224 MiB directly in
/// requests of `shape`, then the domU `domus` names reads through blkback; `drive` is added to
/// the disk's `-drive` options.
fn blk_boot(label: &str, icount: bool, shape: Shape, domus: &str, drive: &str) -> Outcome {
    let d = disk("io-blk", 16 << 20);
    Qemu::virt()
        .cpus(2)
        .icount(icount)
        .timeout(T)
        .label(label)
        .image(build("qemu-virt/ferrite-dom0.bin"))
        .bootargs(format!(
            "semihosting {domus} -- {} dom0.sched.report=3000 poweroff",
            shape.dom0_opt()
        ))
        .virtio_disk_with(&d, drive)
        .spawn()
        .and_then(|r| r.wait_exit(T))
        .expect("the block benchmark runs")
}

/// Three boots of one block benchmark configuration, `domus` (and Ferrite options) on the
/// command line and `drive` added to the disk's `-drive` options; `what` names it in the rows.
fn blk_set(row: &mut impl FnMut(&str, String), shape: Shape, what: &str, domus: &str, drive: &str) {
    let mut ratios = Vec::new();
    for run in 1..=3 {
        let out = blk_boot("bench-blk", false, shape, domus, drive);
        let rate = |key: &str| -> Option<f64> {
            let l = out
                .console
                .lines()
                .iter()
                .find(|l| l.contains(key))?
                .clone();
            l.rsplit(": ").next()?.split(' ').next()?.parse().ok()
        };
        let (direct, domu) = (rate("dom0: bench: blk: read"), rate("blk-bench: read"));
        let ratio = direct.zip(domu).map(|(a, b)| b / a);
        ratios.extend(ratio);
        row(
            &format!(
                "block read, {}{what}, run {run}: dom0 / domU KiB/s (ratio)",
                shape.name()
            ),
            format!(
                "{} / {} ({})",
                direct.map_or("?".into(), |v| format!("{v:.0}")),
                domu.map_or("?".into(), |v| format!("{v:.0}")),
                ratio.map_or("?".into(), |r| format!("{r:.2}"))
            ),
        );
    }
    ratios.sort_by(f64::total_cmp);
    row(
        &format!(
            "block read domU / dom0 direct, {}{what} (median of 3 boots)",
            shape.name()
        ),
        ratios
            .get(ratios.len() / 2)
            .map_or("?".into(), |r| format!("{r:.2}")),
    );
}
