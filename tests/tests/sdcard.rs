//! The Raspberry Pi 4 boot files: `make sdcard BOARD=rpi4` (a whole-card image) and `make netboot
//! BOARD=rpi4 DIR=...` (a TFTP directory), checked as the Pi's boot ROM and firmware read them:
//! the MBR (one bootable FAT32 LBA partition), the FAT32 file system, every file (the firmware
//! and the device tree as Debian ships them, config.txt, cmdline.txt, and Ferrite's image
//! byte for byte), and the card's own files booted on QEMU's raspi4b to dom0.
//!
//! Needs `build/rpi4/ferrite-dom0.bin` (`make build BOARD=rpi4`; `make system-test` builds it
//! first). The make targets run with `-o build`: a test never rebuilds the images other tests are
//! booting. The firmware, the DTB, mtools and sfdisk are fetched or installed when missing
//! (`tools/setup-host.sh sdcard`, `tools/fetch-*.sh`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ferrite_systests::paths::{debian_dir, image_dir, workspace_root};
use ferrite_systests::sdcard::{self, SECTOR};
use ferrite_systests::{ErrorKind, Qemu, Result};

const BOOTARGS: &str = "loglevel=debug dom0_vcpus=1 -- dom0.sched.report=500";
const IMAGE: &str = "ferrite-dom0.bin";

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("sdcard")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `make -o build ARGS` in the workspace root (not connected to an outer make's jobserver).
fn make(args: &[&str]) -> Output {
    Command::new("make")
        .args(["--no-print-directory", "-o", "build"])
        .args(args)
        .current_dir(workspace_root())
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("run make")
}

fn make_ok(args: &[&str]) {
    sdcard::ensure_pi_boot_files().unwrap_or_else(|e| panic!("{e}"));
    let out = make(args);
    assert!(
        out.status.success(),
        "make {} failed ({}):\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file the card must hold, with the contents it must have, but config.txt (checked by
/// its settings).
fn expected_files() -> BTreeMap<&'static str, Vec<u8>> {
    let fw = debian_dir().join("raspi-firmware");
    BTreeMap::from([
        ("start4.elf", read(&fw.join("start4.elf"))),
        ("fixup4.dat", read(&fw.join("fixup4.dat"))),
        ("LICENCE.broadcom", read(&fw.join("LICENCE.broadcom"))),
        (
            "bcm2711-rpi-4-b.dtb",
            read(&debian_dir().join("bcm2711-rpi-4-b.dtb")),
        ),
        ("cmdline.txt", format!("{BOOTARGS}\n").into_bytes()),
        (IMAGE, read(&image_dir().join("rpi4").join(IMAGE))),
    ])
}

/// The settings config.txt must make, whatever its comments say.
fn check_config(text: &str) {
    let settings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for want in [
        "[pi4]",
        "arm_64bit=1",
        "enable_uart=1",
        "enable_gic=1",
        "kernel=ferrite-dom0.bin",
        "device_tree=bcm2711-rpi-4-b.dtb",
    ] {
        assert!(
            settings.contains(&want),
            "config.txt lacks `{want}`:\n{text}"
        );
    }
    // One kernel, no template left, and nothing that stops the Pi starting at EL2 in AArch64.
    assert_eq!(
        settings.iter().filter(|l| l.starts_with("kernel=")).count(),
        1
    );
    assert!(
        !text.contains('@'),
        "a template placeholder is left:\n{text}"
    );
    for bad in ["arm_64bit=0", "armstub=", "kernel_old=", "enable_gic=0"] {
        assert!(
            !settings.iter().any(|l| l.starts_with(bad)),
            "config.txt sets {bad}"
        );
    }
}

/// The card's single partition, checked.
fn partition(card: &Path) -> sdcard::Partition {
    let bytes = read(card);
    let mbr = sdcard::parse_mbr(&bytes[..512]).unwrap_or_else(|e| panic!("{e}"));
    let used: Vec<_> = mbr.partitions.iter().flatten().collect();
    assert_eq!(used.len(), 1, "expected one partition: {mbr:?}");
    let p = *used[0];
    assert_eq!(
        mbr.partitions[0],
        Some(p),
        "the partition is not the first entry"
    );
    assert!(p.bootable, "the partition is not marked bootable: {p:?}");
    assert_eq!(
        p.kind, 0x0c,
        "partition type {:#04x}, not 0x0c (FAT32 LBA)",
        p.kind
    );
    assert_eq!(p.start_lba, 2048, "the partition does not start at 1 MiB");
    assert_eq!(
        p.offset() + p.size(),
        bytes.len() as u64,
        "the partition does not end with the image"
    );

    let boot = &bytes[p.offset() as usize..p.offset() as usize + SECTOR as usize];
    let fat = sdcard::parse_fat32(boot).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fat.hidden_sectors, p.start_lba, "the BPB's hidden sectors");
    assert_eq!(fat.total_sectors, p.sectors, "the file system's size");
    assert!(
        fat.clusters >= 65_525,
        "{} clusters: too few for FAT32",
        fat.clusters
    );
    assert_eq!(fat.label, "FERRITE");
    p
}

#[test]
fn sdcard_image_has_one_bootable_fat32_partition_with_the_boot_files() {
    let dir = scratch("card");
    let card = dir.join("sdcard.img");
    let sdcard_arg = format!("SDCARD={}", card.display());
    let bootargs_arg = format!("BOOTARGS={BOOTARGS}");
    make_ok(&["sdcard", "BOARD=rpi4", &sdcard_arg, &bootargs_arg]);

    assert_eq!(std::fs::metadata(&card).unwrap().len(), 64 << 20);
    let p = partition(&card);
    let expected = expected_files();
    let mut names: Vec<String> = expected.keys().map(|s| s.to_string()).collect();
    names.push("config.txt".into());
    names.sort();
    let files = sdcard::list_files(&card, p.offset()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files, names, "the files on the card");
    for (name, want) in &expected {
        let got = sdcard::read_file(&card, p.offset(), name).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            got == *want,
            "{name} on the card differs from its source ({} bytes, want {})",
            got.len(),
            want.len()
        );
    }
    let config = sdcard::read_file(&card, p.offset(), "config.txt").unwrap();
    check_config(&String::from_utf8(config).unwrap());
}

#[test]
fn netboot_directory_holds_the_same_files() {
    let dir = scratch("tftp");
    let dir_arg = format!("DIR={}", dir.display());
    let bootargs_arg = format!("BOOTARGS={BOOTARGS}");
    make_ok(&["netboot", "BOARD=rpi4", &dir_arg, &bootargs_arg]);

    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = expected_files().keys().map(|s| s.to_string()).collect();
    want.push("config.txt".into());
    want.sort();
    assert_eq!(names, want, "the files in the TFTP directory");
    for (name, want) in expected_files() {
        assert!(
            read(&dir.join(name)) == want,
            "{name} differs from its source"
        );
    }
    let config = std::fs::read_to_string(dir.join("config.txt")).unwrap();
    check_config(&config);
    let template =
        std::fs::read_to_string(workspace_root().join("boards/rpi4/config.txt")).unwrap();
    assert_eq!(config, template.replace("@KERNEL@", IMAGE));
}

/// What the firmware would load from the card, booted by QEMU's raspi4b as far as it models a
/// Pi 4: the kernel config.txt names, the card's device tree, cmdline.txt as bootargs.
#[test]
fn the_cards_own_files_boot_ferrite_and_dom0_on_raspi4b() -> Result<()> {
    let dir = scratch("boot");
    let card = dir.join("sdcard.img");
    let sdcard_arg = format!("SDCARD={}", card.display());
    let bootargs_arg = format!("BOOTARGS={BOOTARGS}");
    make_ok(&["sdcard", "BOARD=rpi4", &sdcard_arg, &bootargs_arg]);
    let p = partition(&card);
    let file = |name: &str| {
        let bytes = sdcard::read_file(&card, p.offset(), name).unwrap_or_else(|e| panic!("{e}"));
        let path = dir.join(name);
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    };
    let (_, config) = file("config.txt");
    let config = String::from_utf8(config).unwrap();
    let kernel = config
        .lines()
        .find_map(|l| l.strip_prefix("kernel="))
        .expect("a kernel= line");
    let (kernel, _) = file(kernel);
    let (dtb, _) = file("bcm2711-rpi-4-b.dtb");
    let (_, cmdline) = file("cmdline.txt");
    let cmdline = String::from_utf8(cmdline).unwrap();

    let mut run = Qemu::raspi4b()
        .label("sdcard-raspi4b")
        .image(&kernel)
        .dtb(&dtb)
        .bootargs(cmdline.trim_end())
        // Guest time follows instructions: dom0's timer self-check holds on a busy host.
        .args(["-icount", ferrite_systests::scenarios::QEMU_ICOUNT])
        .timeout(Duration::from_secs(60))
        .spawn()?;
    let ready = run.expect("ferrite: ready: 4 cpus", Duration::from_secs(45))?;
    eprintln!("{ready}");
    // Ferrite logs its bootargs before the ready line: cmdline.txt reached /chosen/bootargs.
    if !run
        .transcript()
        .contains(&format!("bootargs \"{BOOTARGS}\""))
    {
        return Err(run.error(
            ErrorKind::Check,
            "cmdline.txt's text is not the bootargs Ferrite logged",
        ));
    }
    run.expect("dom0: ready", Duration::from_secs(30))?;
    run.expect("dom0: sched: report done", Duration::from_secs(30))?;
    run.stop();
    Ok(())
}

#[test]
fn mistakes_are_refused_with_what_to_do() {
    let out = make(&["sdcard", "BOARD=qemu-virt"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("add BOARD=rpi4"),
        "{err}"
    );
    let out = make(&["netboot", "BOARD=rpi4"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("DIR=/srv/tftp"),
        "{err}"
    );
    let out = make(&["sdcard", "BOARD=rpi4", "DOM0=linux"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("DOM0=linux"), "{err}");

    let dir = scratch("mistakes");
    let script = workspace_root().join("tools/mk-sdcard.sh");
    let run = |firmware: &Path, image: &Path| {
        Command::new("bash")
            .arg(&script)
            .args(["--image".as_ref(), image.as_os_str()])
            .args([
                "--dtb".as_ref(),
                debian_dir().join("bcm2711-rpi-4-b.dtb").as_os_str(),
            ])
            .args(["--firmware".as_ref(), firmware.as_os_str()])
            .args([
                "--config".as_ref(),
                workspace_root().join("boards/rpi4/config.txt").as_os_str(),
            ])
            .args(["--bootargs", "", "sdcard"])
            .arg(dir.join("card.img"))
            .output()
            .unwrap()
    };
    let image = image_dir().join("rpi4").join(IMAGE);
    let out = run(&dir, &image);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a card without firmware was written");
    assert!(
        err.contains("start4.elf") && err.contains("tools/fetch-rpi-firmware.sh"),
        "{err}"
    );
    let out = run(
        &debian_dir().join("raspi-firmware"),
        &dir.join("nothing.bin"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("make build BOARD=rpi4"),
        "{err}"
    );
    assert!(!dir.join("card.img").exists());
}
