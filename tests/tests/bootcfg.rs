//! Boot domains from `domains.toml` (docs/domains.md): a firmware packed with
//! `tests/fixtures/domains.toml` starts its four domUs with their settings when the command
//! line names none, only the command line's when it does, none for `domu=none`; a file with
//! mistakes fails the build with each one's line and key.
//!
//! The firmware is `$FERRITE_IMAGE_DIR/bootcfg/ferrite-dom0.bin`, which `make system-test`
//! builds (`make build BUILD=build/bootcfg CARGO_TARGET_DOM0=target/boards/bootcfg-dom0
//! DOMAINS=tests/fixtures/domains.toml`), beside and not over `build/qemu-virt`.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ferrite_systests::paths::{image_dir, workspace_root};
use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(120);

fn boot(label: &str, domus: &str, disk: Option<&std::path::Path>) -> Result<Outcome> {
    let mut q = Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label(label)
        .image(image_dir().join("bootcfg/ferrite-dom0.bin"))
        .bootargs(format!(
            "semihosting dom0_vcpus=1 {domus} -- dom0.sched.report=3000 poweroff"
        ));
    if let Some(d) = disk {
        q = q.virtio_disk(d);
    }
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
fn the_packed_domains_start_with_their_settings() -> Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/systest-disks");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("bootcfg.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let out = boot("bootcfg-packed", "", Some(&disk))?;
    let c = &out.console;
    let from = "started from tests/fixtures/domains.toml (packed into the image)";
    for name in ["pong", "ping", "con", "store"] {
        out.ensure(
            c.contains(&format!("{name}: {from}")),
            format!("{name} started from the packed file"),
        )?;
    }
    out.ensure(
        c.contains("pong: domain 1, PV, 2 vcpus, 16 MiB")
            && c.contains("ping: domain 2, PV, 1 vcpus, 16 MiB")
            && c.contains("weight 512, cap 90, cpus 0x3, command line \"net-ping 1 5\"")
            && c.contains("con: domain 3, PV, 1 vcpus, 8 MiB"),
        "each domain has the file's memory, vCPUs, weight, cap, affinity and command line",
    )?;
    out.ensure(
        c.contains("domU2: net-ping: 5/5 echoes from dom1"),
        "ping and pong exchanged frames through dom0's switch",
    )?;
    out.ensure(
        c.contains("dom0: console: dom3: ring line 3 of 3"),
        "con's console ring reached dom0's console",
    )?;
    out.ensure(
        c.contains("dom0: blk: dom4: connected, 8192 sectors at sector 2048 of dom0's disk")
            && c.contains("domU4: blk: wrote 64 sectors (seed 7), flushed, read back: ok"),
        "store got its disk = \"offset=1M,size=4M\" and wrote it",
    )?;
    let _ = std::fs::remove_file(&disk);
    Ok(())
}

#[test]
fn domu_options_on_the_command_line_replace_the_packed_domains_and_none_starts_none() -> Result<()>
{
    let out = boot(
        "bootcfg-override",
        "domu=name=solo,mem=8M,cmd=ring-console+2",
        None,
    )?;
    let c = &out.console;
    out.ensure(
        c.contains("solo: started from the command line (domu=)"),
        "the command line's domU started",
    )?;
    out.ensure(
        !c.text().contains("packed into the image") && !c.contains("pong: domain"),
        "no packed domain started",
    )?;
    out.ensure(
        c.contains("dom0: console: dom1: ring line 2 of 2"),
        "the command line's domU ran",
    )?;
    let out = boot("bootcfg-none", "domu=none", None)?;
    let c = &out.console;
    out.ensure(
        c.contains(
            "domU: domu=none: not starting the 4 domains packed from tests/fixtures/domains.toml",
        ) && !c.text().contains("started from")
            && !c.text().contains("bad domu settings"),
        "domu=none started no domU, and said so",
    )?;
    Ok(())
}

#[test]
fn a_bad_domains_file_fails_the_build_naming_each_mistake() {
    // A host `cargo check` runs build.rs as the firmware's build does, in its own target
    // directory so that no other build is disturbed.
    let root = workspace_root();
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["check", "-q", "-p", "ferrite", "--target-dir"])
        .arg(root.join("target/bootcfg-check"))
        .env("FERRITE_DOMAINS", "tests/fixtures/domains-bad.toml")
        .env("FERRITE_DOMU_IMAGE", "")
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build must fail:\n{stderr}");
    for want in [
        "tests/fixtures/domains-bad.toml:5: kernel: 'linux' does not exist: the only kernel is \"pv\"",
        "tests/fixtures/domains-bad.toml:6: vcpus: 1 to 32",
        "tests/fixtures/domains-bad.toml:9: name: 'a' is already the name of the domain on line 3",
        "tests/fixtures/domains-bad.toml:10: colour: unknown key (known: name, kernel,",
        "tests/fixtures/domains-bad.toml:11: disk: size= is missing",
        "tests/fixtures/domains-bad.toml:19: disk: overlaps the disk of 'c' (line 13): two domains may not share sectors",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
}
