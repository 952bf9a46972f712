//! A stock Debian arm64 kernel as dom0 under Ferrite (issue: "A stock Linux kernel boots as
//! dom0"): Ferrite alone (`build/qemu-virt/ferrite.bin`), the kernel and the busybox initramfs
//! (`build/linux/initramfs.cpio`, from tools/mk-linux-initramfs.sh) loaded beside it by QEMU's
//! guest-loader, as U-Boot would. The kernel and busybox come from Debian at build time.

use std::path::PathBuf;
use std::time::Duration;

use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(150);

fn build(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../build")
        .join(path)
}

fn disk(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/systest-disks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.img"));
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    path
}

/// QEMU's option parser takes `,,` for a literal comma.
fn linux(name: &str, gic: u32, cpus: u32, cmdline: &str) -> Qemu {
    let kernel = build("debian/vmlinuz");
    let initrd = build("linux/initramfs.cpio");
    assert!(
        kernel.exists() && initrd.exists(),
        "Linux dom0 needs {} and {}: run `make linux-dom0` (make test does)",
        kernel.display(),
        initrd.display()
    );
    let disk = disk(name);
    Qemu::virt()
        .gic(gic)
        .cpus(cpus)
        .memory("2G")
        .timeout(TIMEOUT)
        .label(name)
        .bootargs("loglevel=info semihosting")
        .args([
            "-device".to_string(),
            format!(
                "guest-loader,addr=0x50000000,kernel={},bootargs={}",
                kernel.display(),
                cmdline.replace(',', ",,")
            ),
            "-device".into(),
            format!("guest-loader,addr=0x54000000,initrd={}", initrd.display()),
            "-drive".into(),
            format!("file={},if=none,format=raw,id=d0", disk.display()),
            "-device".into(),
            "virtio-blk-device,drive=d0".into(),
            "-netdev".into(),
            "user,id=n0".into(),
            "-device".into(),
            "virtio-net-device,netdev=n0".into(),
        ])
}

fn check(out: &Outcome, cpus: u32) -> Result<()> {
    out.ensure_exit(Exit::Code(0))?;
    let c = &out.console;
    let online = if cpus == 1 {
        "0".to_string()
    } else {
        format!("0-{}", cpus - 1)
    };
    for needle in [
        "Booting Linux on physical CPU".to_string(),
        "linux-dom0: init on Linux 6.".to_string(),
        format!("cpus online {online}"),
        "linux-dom0: hypervisor: ferrite,hypervisor, ABI 1.0".into(),
        "linux-dom0: disk: vda, 131072 sectors, ext2 mounted, wrote and read back: ok".into(),
        "ARP reply from 10.0.2.2: ok".into(),
        "linux-dom0: shell ready".into(),
        "linux-dom0: kernel warnings: 0".into(),
        "reboot: Power down".into(),
        "ferrite: power off".into(),
    ] {
        out.ensure(c.contains(&needle), format!("missing `{needle}`"))?;
    }
    out.ensure(!c.contains("linux-dom0: WARNING"), "dom0's init warned")?;
    out.ensure(!c.contains("crashed on vcpu"), "Ferrite crashed dom0")?;
    out.ensure(
        !c.contains("is not emulated"),
        "Linux touched an unemulated register",
    )?;
    out.ensure(!c.has_panic(), "Ferrite panicked")
}

#[test]
fn linux_dom0_gicv3_4_vcpus() -> Result<()> {
    let q = linux("linux-gicv3-4", 3, 4, "console=ttyAMA0 linux-dom0.test");
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    check(&out, 4)
}

/// On GICv2, and with `vwfi=native`: dom0's vCPUs each have a pCPU to themselves, so Linux's
/// idle WFI runs at EL1 and never traps, and everything still works.
#[test]
fn linux_dom0_gicv2_2_vcpus() -> Result<()> {
    let q = linux("linux-gicv2-2", 2, 2, "console=ttyAMA0 linux-dom0.test")
        .bootargs("loglevel=info semihosting vwfi=native");
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    check(&out, 2)?;
    out.ensure(
        out.console.contains("vwfi native"),
        "Ferrite runs with vwfi=native",
    )?;
    // The power-off report has a line per kind of exit taken.
    out.ensure(
        out.console.contains("exits: irq") && !out.console.contains("exits: wfi"),
        "no WFI exit under vwfi=native with nothing else to run",
    )
}

/// The shell on dom0's console answers what is typed at Ferrite's console (input travels
/// through Ferrite's UART interrupt into dom0's emulated PL011), and `reboot` restarts the
/// machine (PSCI SYSTEM_RESET; QEMU runs with -no-reboot, so it exits 0).
#[test]
fn linux_dom0_interactive_shell() -> Result<()> {
    let q = linux("linux-shell", 3, 2, "console=ttyAMA0");
    let mut run = q.spawn()?;
    run.expect("linux-dom0: shell ready", TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(500));
    run.send("echo answer-$((6 * 7))\n")?;
    run.expect("answer-42", Duration::from_secs(30))?;
    run.send("reboot -f\n")?;
    let out = run.wait_exit(Duration::from_secs(60))?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(
        out.console.contains("PSCI SYSTEM_RESET"),
        "Linux did not ask for a reset",
    )?;
    out.ensure(out.console.contains("ferrite: reboot"), "no reset")
}

/// The other shapes the issue names: Cortex-A53 and `max` (pointer authentication, SVE, MTE...:
/// what Ferrite hides or hands over), one vCPU, and RAM above 4 GiB.
#[test]
fn linux_dom0_on_a53_max_and_high_ram() -> Result<()> {
    for (cpu, mem, gic, cpus) in [
        ("cortex-a53", "2G", 3, 2),
        ("max", "2G", 3, 4),
        ("cortex-a72", "5G", 2, 1),
    ] {
        let name = format!("linux-{cpu}-{mem}");
        let q = linux(&name, gic, cpus, "console=ttyAMA0 linux-dom0.test")
            .cpu_model(cpu)
            .memory(mem);
        let out = q.spawn()?.wait_exit(TIMEOUT)?;
        check(&out, cpus)?;
    }
    Ok(())
}
