//! PV domUs under Ferrite: `guest/domu` (packed into `build/<board>/ferrite-dom0.bin` beside
//! dom0) started by `domu=` boot options. It builds address spaces through validated,
//! batched page-table updates, and an adversarial mode tries every illegal thing; each attempt
//! must be refused with the documented error (or crash that domU alone) while dom0 keeps
//! running. dom0 (`dom0.sched.report=<ms> poweroff`) waits, prints the scheduler's table and
//! switches the machine off, which ends each run.

use std::time::Duration;

use ferrite_systests::paths::dom0_image;
use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(120);

/// Boots dom0 (1 vCPU) and the given domUs on `cpus` CPUs; dom0 reports after `report_ms`
/// and powers off.
fn run(
    label: &str,
    gic: u32,
    cpus: u32,
    cpu: &str,
    domus: &str,
    report_ms: u32,
) -> Result<Outcome> {
    let q = Qemu::virt()
        .gic(gic)
        .cpus(cpus)
        .cpu_model(cpu)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label(label)
        .image(dom0_image("qemu-virt"))
        .bootargs(format!(
            "semihosting dom0_vcpus=1 {domus} -- dom0.sched.report={report_ms} poweroff"
        ));
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    out.ensure(
        out.console.contains("dom0: sched: report done"),
        "dom0 did not keep running to its report",
    )?;
    Ok(out)
}

#[test]
fn pv_domu_starts_with_its_start_info_and_shuts_down() -> Result<()> {
    let out = run(
        "domu-hello",
        3,
        2,
        "cortex-a72",
        "domu=name=hello,mem=8M,cmd=hello+from+the+test",
        300,
    )?;
    let c = &out.console;
    for needle in [
        "hello: domain 1, PV, 1 vcpus, 8 MiB",
        "domU1: hello: ABI 1.0, features ",
        "2048 pages, 1 vcpus, cmdline 'hello from the test'",
        "ferrite: domain 1 (hello) shut down from vcpu0: power off",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    Ok(())
}

#[test]
fn pv_domu_builds_an_address_space_with_batched_updates_and_runs_in_it() -> Result<()> {
    for (gic, cpu) in [(3, "cortex-a72"), (2, "max")] {
        let out = run(
            &format!("domu-ptbuild-v{gic}-{cpu}"),
            gic,
            2,
            cpu,
            "domu=name=pt,mem=16M,cmd=ptbuild domu=name=long,mem=16M,cmd=bench-mmu+2048+3",
            500,
        )?;
        let c = &out.console;
        out.ensure(
            c.contains("domU1: ptbuild: ok"),
            format!("{cpu}, GICv{gic}: the address-space build did not finish"),
        )?;
        out.ensure(!c.contains("FAIL"), "a step failed")?;
        out.ensure(
            c.contains("ferrite: domain 1 (pt) shut down from vcpu0: power off"),
            "the domU did not shut down cleanly",
        )?;
        // 2048 entries per call: more than Ferrite handles per trap, so each call is
        // preempted and continued, and must still report every entry done.
        out.ensure(
            c.contains("domU2: bench-mmu: batch=2048 rounds=3 ok"),
            "a batch longer than one trap's budget did not complete",
        )?;
        out.ensure(
            c.contains("hcall: mmu_update"),
            "no mmu_update statistics in the power-off report",
        )?;
    }
    Ok(())
}

/// A domU brings up three more vCPUs with `VCPU_OP UP` on two pCPUs, sees them all run, then
/// takes them down again (while they run on the other pCPU) and sees them stop.
#[test]
fn pv_vcpus_come_up_and_go_down() -> Result<()> {
    let out = run(
        "domu-smp",
        3,
        2,
        "cortex-a72",
        "domu=name=smp,mem=8M,vcpus=4,cmd=smp",
        1500,
    )?;
    let c = &out.console;
    for needle in [
        "domU1: smp: 4 vcpus all progressed",
        "domU1: smp: 3 vcpus taken down",
        "ferrite: domain 1 (smp) shut down from vcpu0: power off",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    out.ensure(!c.contains("FAIL"), "a step failed")
}

/// Two vCPUs of one domU take turns on one pCPU, each with its own translation of one VA under
/// the same ASID: neither ever reads the other's page through a TLB entry the other left
/// (Ferrite invalidates when it loads a vCPU where another of its domain ran last,
/// `src/mm/tlb.rs`). Without that invalidation every one of vCPU 1's reads came back stale.
#[test]
fn a_vcpu_never_sees_another_vcpus_tlb_entries() -> Result<()> {
    let out = run(
        "domu-vcpu-tlb",
        3,
        2,
        "cortex-a72",
        "domu=name=tlb,mem=8M,vcpus=2,cpus=0,cmd=vcpu-tlb+200",
        1500,
    )?;
    let c = &out.console;
    let line = c
        .lines()
        .iter()
        .find(|l| l.contains("vcpu-tlb: 200 turns each"))
        .cloned()
        .ok_or_else(|| out.fail("vcpu-tlb did not report"))?;
    let alternations: u32 = line
        .split(", ")
        .nth(1)
        .and_then(|w| w.split(' ').next()?.parse().ok())
        .ok_or_else(|| out.fail(format!("unreadable report `{line}`")))?;
    out.ensure(
        alternations >= 100,
        format!("the vCPUs hardly took turns on their pCPU: `{line}`"),
    )?;
    out.ensure(
        line.ends_with(", 0 stale reads"),
        format!("a vCPU saw the other's translation: `{line}`"),
    )?;
    out.ensure(!c.contains("FAIL"), "a step failed")
}

/// Every illegal attempt is refused as docs/abi.md says, one line each; the domU that crashes
/// on purpose takes nobody with it.
#[test]
fn adversarial_domu_is_refused_every_time_and_dom0_keeps_running() -> Result<()> {
    for cpu in ["cortex-a72", "max"] {
        let out = run(
            &format!("domu-evil-{cpu}"),
            3,
            2,
            cpu,
            "domu=name=evil,mem=16M,cmd=evil domu=name=crasher,mem=4M,cmd=evil-crash",
            800,
        )?;
        let c = &out.console;
        let lines = c.messages_starting("domU1: evil: ");
        let refused = c
            .lines()
            .iter()
            .filter(|l| l.contains("domU1: evil: ") && l.contains(": refused "))
            .count();
        out.ensure(
            !c.lines().iter().any(|l| l.contains("ALLOWED")),
            format!("{cpu}: an illegal attempt was allowed"),
        )?;
        out.ensure(
            refused >= 15,
            format!(
                "{cpu}: only {refused} refusals reported ({} lines)",
                lines.len()
            ),
        )?;
        for (what, how) in [
            ("foreign frame", "EPERM"),
            ("device memory", "EPERM"),
            ("own page table writable", "EBUSY"),
            ("unpinned ttbr", "EINVAL"),
            ("msr ttbr0", "undef"),
            ("mmu off", "undef"),
            ("write page table directly", "fault"),
            ("garbage buffer", "EFAULT"),
            ("unknown call", "ENOSYS"),
            ("foreign domid", "EPERM"),
        ] {
            out.ensure(
                c.lines()
                    .iter()
                    .any(|l| l.contains("domU1: evil: ") && l.contains(what) && l.contains(how)),
                format!("{cpu}: no `{what}` attempt refused with {how}"),
            )?;
        }
        out.ensure(
            c.contains("domU1: evil: done"),
            "the evil domU did not finish",
        )?;
        out.ensure(
            c.contains("domU2: crashing on purpose"),
            "the crashing domU did not run",
        )?;
        out.ensure(
            c.contains("ferrite: domain 2 (crasher) shut down from vcpu0: crash"),
            "the crash was not reported with the domain's name",
        )?;
    }
    Ok(())
}

/// The same PV domUs on the Raspberry Pi 4 model (GIC-400, spin-table CPUs, RAM from 0).
#[test]
fn pv_domus_on_raspi4b() -> Result<()> {
    let q = Qemu::raspi4b()
        .timeout(TIMEOUT)
        .label("domu-raspi4b")
        .image(dom0_image("rpi4"))
        .bootargs(
            "semihosting dom0_vcpus=1 domu=name=pt,mem=16M,cmd=ptbuild \
             domu=name=evil,mem=16M,cmd=evil -- dom0.sched.report=1000 poweroff",
        );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    let c = &out.console;
    out.ensure(!c.has_panic(), "Ferrite panicked")?;
    for needle in [
        "domU1: ptbuild: ok",
        "domU2: evil: done",
        "ferrite: domain 2 (evil) shut down from vcpu0: power off",
        "dom0: sched: report done",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    out.ensure(!c.contains("ALLOWED"), "an illegal attempt was allowed")
}

/// Bad `domu=` settings are each refused with the reason, and skipped; the good domU and dom0
/// start anyway.
#[test]
fn bad_domu_settings_are_reported_and_the_rest_start() -> Result<()> {
    let out = run(
        "domu-bad",
        3,
        2,
        "cortex-a72",
        "domu=vcpus=99 domu=name=big,mem=4G,cmd=hello domu=name=noimg,image=linux \
         domu=name=ok,mem=8M,cmd=hello domu=name=pinned,cpus=7,cmd=hello domu=name=capped,cap=500",
        300,
    )?;
    let c = &out.console;
    for needle in [
        "ignoring \"domu=vcpus=99 (vcpus=99: 1 to 32)\": bad domu settings",
        "domU: cannot start it: big: no 4096 MiB of free memory for it",
        "domU noimg: no image 'linux' in this build",
        "domU: cannot start it: pinned: cpus= names no CPU this machine has (2 CPUs)",
        "domU: cannot start it: capped: cap=500 is more than 2 CPUs' worth (200)",
        "domU1: hello: ABI 1.0",
        "ferrite: domain 1 (ok) shut down from vcpu0: power off",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    Ok(())
}

/// The reservation goes up and back down (the new frames are the domain's: it can give them
/// back), and stops at the domain's maximum with ENOMEM after the frames that fit. A domU's
/// PSCI CPU_ON is refused and its SYSTEM_OFF stops only it: dom0 and another domU go on.
#[test]
fn ballooning_and_psci_from_a_domu() -> Result<()> {
    let out = run(
        "domu-balloon-psci",
        3,
        2,
        "cortex-a72",
        "domu=name=bal,mem=8M,maxmem=8224K,cmd=balloon domu=name=off,mem=4M,cmd=psci \
         domu=name=after,mem=4M,cmd=hello",
        400,
    )?;
    let c = &out.console;
    for needle in [
        "domU1: balloon: 2048 frames, up 8 to 2056, down to 2048; 12 past a maximum of 2056: 8 \
         given, then Err(\"ENOMEM\")",
        "domU2: psci: CPU_ON answered -1",
        "ferrite: domain 2 (off) shut down from vcpu0: PSCI system off/reset",
        "domU3: hello: ABI 1.0",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    out.ensure(!c.contains("FAIL"), "a step failed")
}
