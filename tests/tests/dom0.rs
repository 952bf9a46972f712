//! dom0 under Ferrite: Ferrite's own Rust dom0 (guest/dom0), packed into
//! `build/<board>/ferrite-dom0.bin`, boots at EL1 under stage 2 with its virtual GIC, timer and
//! PSCI, and drives the virtio-mmio disk and NIC QEMU gives it. Runs under `-icount` so its
//! timer-rate check is exact and repeatable.

use std::path::PathBuf;
use std::time::Duration;

use ferrite_systests::paths::dom0_image;
use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(90);

/// A fresh disk image for one run.
fn disk(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/systest-disks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.img"));
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(8 << 20).unwrap();
    path
}

fn with_devices(q: Qemu, disk: &std::path::Path) -> Qemu {
    q.args([
        "-drive".to_string(),
        format!("file={},if=none,format=raw,id=d0", disk.display()),
        "-device".into(),
        "virtio-blk-device,drive=d0".into(),
        "-netdev".into(),
        "user,id=n0".into(),
        "-device".into(),
        "virtio-net-device,netdev=n0".into(),
    ])
}

/// Boots dom0 with a fresh disk; `selftest`: its boot check also writes the disk
/// (`dom0.blk.selftest`).
fn boot_dom0(name: &str, gic: u32, cpus: u32, selftest: bool) -> Result<(Outcome, PathBuf)> {
    let disk = disk(name);
    let q = Qemu::virt()
        .gic(gic)
        .cpus(cpus)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label(name)
        .image(dom0_image("qemu-virt"))
        .bootargs(format!(
            "loglevel=debug semihosting -- {}poweroff",
            if selftest { "dom0.blk.selftest " } else { "" }
        ));
    let out = with_devices(q, &disk).spawn()?.wait_exit(TIMEOUT)?;
    Ok((out, disk))
}

fn check_dom0(
    out: &Outcome,
    disk: &std::path::Path,
    gic: u32,
    cpus: u32,
    selftest: bool,
) -> Result<()> {
    let c = &out.console;
    out.ensure(!c.has_panic(), "Ferrite panicked")?;
    out.ensure(!c.contains("dom0: PANIC"), "dom0 panicked")?;
    out.ensure(
        !c.contains("crashed on vcpu"),
        "dom0 was crashed by Ferrite",
    )?;
    out.ensure_exit(Exit::Code(0))?;
    for needle in [
        "ferrite: ready:".to_string(),
        "dom0: Ferrite dom0 ".to_string(),
        format!("at EL1, {cpus} vcpus"),
        "dom0: hypervisor: ferrite ABI 1.0".into(),
        "dom0: hypervisor: VERSION call answers 1.0".into(),
        "dom0: hypervisor: CONSOLE_IO works".into(),
        "CONSOLE_IO wrote 35 bytes; from an unmapped buffer: -14".into(),
        format!("dom0: gic: v{gic}"),
        format!("dom0: smp: {cpus}/{cpus} vcpus online"),
        format!("dom0: timer: ticks on {cpus}/{cpus} vcpus"),
        "dom0: ready".into(),
        "dom0: powering off".into(),
        "ferrite: power off".into(),
    ] {
        out.ensure(c.contains(&needle), format!("missing `{needle}`"))?;
    }
    for v in 1..cpus {
        out.ensure(
            c.contains(&format!("dom0: vcpu{v} online")),
            format!("vcpu{v} not online"),
        )?;
    }
    // The virtual timer ticks at the rate dom0 programmed (guest time is exact under -icount).
    let line = c
        .lines()
        .iter()
        .find(|l| l.contains("dom0: timer: 50 ticks in"))
        .ok_or_else(|| out.fail("no timer-rate line"))?;
    let ms: u64 = line
        .split("ticks in ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| out.fail(format!("unparsable timer line `{line}`")))?;
    out.ensure(
        (490..=520).contains(&ms),
        format!("50 ticks at 100 Hz took {ms} ms"),
    )?;
    // The disk and NIC, through dom0's own virtio drivers on passed-through devices.
    let blk = c
        .lines()
        .iter()
        .find(|l| l.starts_with("dom0: blk:"))
        .cloned()
        .unwrap_or_default();
    out.ensure(blk.ends_with(": ok"), format!("block test: `{blk}`"))?;
    let net = c
        .lines()
        .iter()
        .find(|l| l.starts_with("dom0: net:"))
        .cloned()
        .unwrap_or_default();
    out.ensure(net.ends_with(": ok"), format!("network test: `{net}`"))?;
    // Every completion came as an interrupt: device SPIs are forwarded to dom0 through its vGIC.
    out.ensure(
        !c.contains("dom0: WARNING"),
        "dom0 warned (an interrupt did not arrive?)",
    )?;
    out.ensure(
        c.contains("dom0: net: reply by interrupt (INTID"),
        "no network interrupt",
    )?;
    let by_irq = c
        .lines()
        .iter()
        .find(|l| l.contains("completions by interrupt"))
        .cloned()
        .unwrap_or_default();
    let counts: Vec<&str> = by_irq
        .trim_start_matches("dom0: blk: ")
        .split(' ')
        .next()
        .unwrap_or("")
        .split('/')
        .collect();
    out.ensure(
        counts.len() == 2 && counts[0] == counts[1] && counts[0] != "0",
        format!("block completions by interrupt: `{by_irq}`"),
    )?;
    let image = std::fs::read(disk).unwrap();
    if selftest {
        out.ensure(
            image.windows(22).any(|w| w == b"FERRITE-DOM0-BLK-TEST "),
            "the disk image does not hold what dom0 wrote",
        )
    } else {
        // Unasked, dom0 only reads its disk: a partition table or domUs' disks may be there.
        out.ensure(
            blk.contains("read sectors 0 and 16383 (written only with dom0.blk.selftest): ok"),
            format!("read-only block check: `{blk}`"),
        )?;
        out.ensure(
            image.iter().all(|&b| b == 0),
            "dom0 wrote to its disk without dom0.blk.selftest",
        )
    }
}

#[test]
fn dom0_gicv3_4_vcpus() -> Result<()> {
    let (out, disk) = boot_dom0("dom0-gicv3-4", 3, 4, true)?;
    check_dom0(&out, &disk, 3, 4, true)
}

#[test]
fn dom0_gicv3_1_vcpu() -> Result<()> {
    let (out, disk) = boot_dom0("dom0-gicv3-1", 3, 1, false)?;
    check_dom0(&out, &disk, 3, 1, false)
}

#[test]
fn dom0_gicv2_4_vcpus() -> Result<()> {
    let (out, disk) = boot_dom0("dom0-gicv2-4", 2, 4, true)?;
    check_dom0(&out, &disk, 2, 4, true)
}

#[test]
fn dom0_gicv2_1_vcpu() -> Result<()> {
    let (out, disk) = boot_dom0("dom0-gicv2-1", 2, 1, false)?;
    check_dom0(&out, &disk, 2, 1, false)
}

/// dom0 reads an address with nothing behind it: Ferrite crashes dom0 alone, says why, and
/// stays up (its own `poweroff` then ends the run cleanly once no domain is left).
#[test]
fn dom0_touching_unmapped_memory_is_crashed_not_ferrite() -> Result<()> {
    let disk = disk("dom0-fault");
    let q = Qemu::virt()
        .gic(3)
        .cpus(2)
        .timeout(TIMEOUT)
        .label("dom0-fault")
        .image(dom0_image("qemu-virt"))
        .bootargs("poweroff semihosting -- dom0.fault=unmapped");
    let out = with_devices(q, &disk).spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    let c = &out.console;
    out.ensure(
        c.contains("dom0: ready"),
        "dom0 did not get as far as its fault probe",
    )?;
    for needle in [
        "ferrite: domain 0 (dom0) crashed on vcpu0: read of ",
        "no memory or device is there",
        " x0  0x",
        "ferrite: dom0 is gone; Ferrite keeps running",
        "ferrite: power off",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    out.ensure(!c.has_panic(), "Ferrite panicked")
}

/// The boot loader, not the build, supplies dom0: Ferrite alone, with dom0's kernel loaded by
/// QEMU's guest-loader and named in `/chosen/module@...` (as U-Boot does on boards).
#[test]
fn dom0_from_a_device_tree_module() -> Result<()> {
    let guest = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/guest/dom0.bin");
    let out = Qemu::virt()
        .gic(3)
        .cpus(2)
        .timeout(TIMEOUT)
        .label("dom0-module")
        .bootargs("loglevel=info semihosting")
        .args([
            "-device".to_string(),
            format!(
                "guest-loader,addr=0x50000000,kernel={},bootargs=poweroff",
                guest.display()
            ),
        ])
        .spawn()?
        .wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    let c = &out.console;
    for needle in [
        "reserved: 0x50000000-",
        "kernel (device-tree module,",
        "dom0: bootargs: \"poweroff\"",
        "dom0: smp: 2/2 vcpus online",
        "dom0: ready",
        "ferrite: power off",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    Ok(())
}

/// dom0 on other CPU models: Cortex-A53 (40-bit PA: a 39-bit IPA space with a level-1 stage-2
/// root) and `max` (VHE, SVE, MTE and more, which dom0 must not see: its ID registers are
/// sanitised).
#[test]
fn dom0_on_cortex_a53_and_max() -> Result<()> {
    for cpu in ["cortex-a53", "max"] {
        let disk = disk(&format!("dom0-{cpu}"));
        let q = Qemu::virt()
            .gic(3)
            .cpus(2)
            .cpu_model(cpu)
            .timeout(TIMEOUT)
            .label(format!("dom0-{cpu}"))
            .image(dom0_image("qemu-virt"))
            .bootargs("loglevel=info semihosting -- poweroff");
        let out = with_devices(q, &disk).spawn()?.wait_exit(TIMEOUT)?;
        out.ensure_exit(Exit::Code(0))?;
        let c = &out.console;
        out.ensure(c.contains("dom0: ready"), format!("{cpu}: dom0 not ready"))?;
        out.ensure(
            !c.contains("crashed on vcpu"),
            format!("{cpu}: dom0 crashed"),
        )?;
        out.ensure(!c.contains("dom0: WARNING"), format!("{cpu}: dom0 warned"))?;
        out.ensure(
            !c.contains("is not emulated"),
            format!("{cpu}: an unemulated register"),
        )?;
    }
    Ok(())
}

/// dom0 on QEMU's Raspberry Pi 4 (GIC-400, no PSCI in the host tree, no virtio devices): its
/// console and GIC sit under `/soc`, whose `ranges` map bus addresses (0x7e201000) to physical
/// ones (0xfe201000), so dom0 must translate them to find its console at all. Ferrite powers off
/// through semihosting.
#[test]
fn dom0_on_raspi4b() -> Result<()> {
    let out = Qemu::raspi4b()
        .cpus(4)
        .timeout(TIMEOUT)
        .label("dom0-rpi4")
        .image(dom0_image("rpi4"))
        .bootargs("loglevel=info semihosting -- poweroff")
        .spawn()?
        .wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    let c = &out.console;
    for needle in [
        "dom0: smp: 4/4 vcpus online",
        "dom0: timer: ticks on 4/4 vcpus",
        "dom0: ready",
        "ferrite: power off",
    ] {
        out.ensure(c.contains(needle), format!("missing `{needle}`"))?;
    }
    out.ensure(!c.contains("crashed on vcpu"), "dom0 crashed")?;
    out.ensure(!c.contains("PANIC"), "a panic")?;
    Ok(())
}
