//! The toolstack from Linux dom0's user space (issue: domain lifecycle, "everything the
//! toolstack does is also reachable from Linux dom0 user space"): `ferrite-ctl` in the busybox
//! initramfs maps dom0's control page and drives `DOMCTL` through it (docs/linux-dom0.md). A
//! PV domU is created from `/domu.elf` in the initramfs, started, seen running on the console,
//! destroyed; a bad request gets a clear error.

use std::path::PathBuf;
use std::time::Duration;

use ferrite_systests::{Exit, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(240);
const STEP: Duration = Duration::from_secs(60);

fn build(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../build")
        .join(path)
}

/// Linux dom0 to its shell: Ferrite alone, the kernel and initramfs beside it (as in
/// tests/linux.rs), no disk or NIC.
fn linux(name: &str, cpus: u32) -> Qemu {
    let kernel = build("debian/vmlinuz");
    let initrd = build("linux/initramfs.cpio");
    assert!(
        kernel.exists() && initrd.exists(),
        "Linux dom0 needs {} and {}: run `make linux-dom0` (make test does)",
        kernel.display(),
        initrd.display()
    );
    Qemu::virt()
        .gic(3)
        .cpus(cpus)
        .memory("2G")
        .timeout(TIMEOUT)
        .label(name)
        .bootargs("loglevel=info semihosting")
        .args([
            "-device".to_string(),
            format!(
                "guest-loader,addr=0x50000000,kernel={},bootargs=console=ttyAMA0",
                kernel.display()
            ),
            "-device".into(),
            format!("guest-loader,addr=0x54000000,initrd={}", initrd.display()),
        ])
}

/// The console lines between the last echo of `command` and the line `end` (exclusive).
fn output_of(lines: &[String], command: &str, end: &str) -> Vec<String> {
    let stop = lines.iter().rposition(|l| l.contains(end)).unwrap_or(0);
    let start = lines[..stop]
        .iter()
        .rposition(|l| l.contains(command))
        .map_or(0, |i| i + 1);
    lines[start..stop].to_vec()
}

#[test]
fn linux_dom0_ferrite_ctl_lifecycle() -> Result<()> {
    let mut run = linux("linux-ctl", 2).spawn()?;
    let line = run.expect(
        "linux-dom0: ferrite-ctl: control page ferrite-ctrl@",
        TIMEOUT,
    )?;
    let page = line
        .split("ferrite-ctrl@")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .expect("the control page's address");
    run.expect("linux-dom0: shell ready", TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(500));

    // Only dom0 at first.
    run.send("ferrite-ctl list; echo list-$((1 + 1))\n")?;
    run.expect("list-2", STEP)?;
    let out = output_of(run.transcript().lines(), "ferrite-ctl list", "list-2");
    let ok = out
        .iter()
        .any(|l| l.starts_with("Name ") && l.contains("VCPUs"))
        && out
            .iter()
            .any(|l| l.starts_with("Domain-0 ") && l.contains("r-----"));
    if !ok {
        return Err(run.error(
            ferrite_systests::ErrorKind::Check,
            format!("`ferrite-ctl list` did not show Domain-0 running: {out:?}"),
        ));
    }

    // Create the counter domU from the initramfs's image, paused; then start it.
    run.send("ferrite-ctl create name=web,mem=16M,cmd=counter+100 /domu.elf\n")?;
    let line = run.expect("Created domain web (id ", STEP)?;
    let id: u32 = line
        .split("(id ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("an id in the create line");
    run.send("ferrite-ctl list; echo list-$((1 + 2))\n")?;
    run.expect("list-3", STEP)?;
    let out = output_of(run.transcript().lines(), "ferrite-ctl list", "list-3");
    if !out
        .iter()
        .any(|l| l.starts_with("web ") && l.contains("--p---"))
    {
        return Err(run.error(
            ferrite_systests::ErrorKind::Check,
            format!("`ferrite-ctl list` did not show web paused: {out:?}"),
        ));
    }
    run.send(&format!("ferrite-ctl unpause {id}\n"))?;
    run.expect(&format!("Domain {id} (web) unpaused"), STEP)?;
    run.expect(&format!("domU{id}: counter: 3"), STEP)?;

    // Destroy it by name: gone from the list, its counter stops.
    run.send("ferrite-ctl destroy web\n")?;
    run.expect(&format!("Domain {id} (web) destroyed"), STEP)?;
    run.send("ferrite-ctl list; echo list-$((2 + 2))\n")?;
    run.expect("list-4", STEP)?;
    let out = output_of(run.transcript().lines(), "ferrite-ctl list", "list-4");
    if out.iter().any(|l| l.starts_with("web ")) || !out.iter().any(|l| l.starts_with("Domain-0 "))
    {
        return Err(run.error(
            ferrite_systests::ErrorKind::Check,
            format!("after destroy, `ferrite-ctl list` is wrong: {out:?}"),
        ));
    }

    // Bad input: an unknown domain, by id and by name; the exit status says so too.
    run.send("ferrite-ctl pause 42 || echo failed-$((3 * 3))\n")?;
    run.expect("ferrite-ctl: domain 42: no such domain (ENOENT)", STEP)?;
    run.expect("failed-9", STEP)?;
    run.send("ferrite-ctl destroy nosuch || echo failed-$((3 * 4))\n")?;
    run.expect("ferrite-ctl: domain 'nosuch': no such domain", STEP)?;
    run.expect("failed-12", STEP)?;
    // dom0 cannot be destroyed from its own user space either.
    run.send("ferrite-ctl destroy 0 || echo failed-$((3 * 5))\n")?;
    run.expect(
        "ferrite-ctl: destroy Domain-0 (domain 0): invalid in its state (EINVAL)",
        STEP,
    )?;
    run.expect("failed-15", STEP)?;

    // Hostile accesses to the page from user space (busybox devmem through /dev/mem): a byte
    // read, a read of a hole, a write to a result register. Ignored with a log line each; dom0
    // goes on and the tool still works.
    run.send(&format!(
        "devmem {:#x} 8; devmem {:#x} 64; devmem {:#x} 64 0x1234; devmem {:#x} 32\n",
        page + 1,
        page + 0x30,
        page + 0x80,
        page + 0xF00
    ))?;
    run.expect("offset 0x1 ignored (Width)", STEP)?;
    run.expect("offset 0x30 ignored (Offset)", STEP)?;
    run.expect("offset 0x80 ignored (Offset)", STEP)?;
    run.expect("0x46524354", STEP)?;
    run.send("ferrite-ctl list | grep -c Domain-0\n")?;
    run.expect_line("the list after bad accesses", STEP, |l| l.trim() == "1")?;

    // Ferrite's log through the same page.
    run.send("ferrite-ctl dmesg | grep -c 'dom0: ' ; echo dmesg-$((4 * 4))\n")?;
    run.expect("dmesg-16", STEP)?;

    run.send("poweroff -f\n")?;
    let out = run.wait_exit(STEP)?;
    out.ensure_exit(Exit::Code(0))?;
    let c = &out.console;
    out.ensure(!c.contains("crashed on vcpu"), "a domain crashed")?;
    // (Without a disk and NIC, init warns about those: only its control-page check counts.)
    out.ensure(
        !c.contains("WARNING: ferrite-ctl"),
        "init's ferrite-ctl check warned",
    )?;
    out.ensure(!c.has_panic(), "Ferrite panicked")
}
