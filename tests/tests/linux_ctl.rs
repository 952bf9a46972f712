//! The toolstack from Linux dom0's user space (issue: domain lifecycle, "everything the
//! toolstack does is also reachable from Linux dom0 user space"): `ferrite-ctl` in the busybox
//! initramfs maps dom0's control page and drives `DOMCTL` through it (docs/linux-dom0.md). A
//! PV domU is created from `/domu.elf` in the initramfs, started, seen running on the console,
//! destroyed; a bad request gets a clear error. A counting domU is saved to a file in Linux's
//! filesystem and restored from it, and counts on; the scheduler's weight is set and shown.
//! The user-space back ends: a domU's disk served from a file, domUs' frames switched.

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

/// The `(id N)` of `ferrite-ctl create`'s line.
fn created_id(line: &str) -> u32 {
    line.split("(id ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("an id in the create line")
}

/// The number after `key` in `line` (up to the next space or punctuation).
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(key).nth(1)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The weight `ferrite-ctl sched-credit` shows for `name` (the table's third column).
fn weight_of(lines: &[String], name: &str) -> Option<u64> {
    let row = lines
        .iter()
        .find(|l| l.split_whitespace().next() == Some(name))?;
    row.split_whitespace().nth(2)?.parse().ok()
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
    let id = created_id(&line);
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
        page + 0x38,
        page + 0x80,
        page + 0xF00
    ))?;
    run.expect("offset 0x1 ignored (Width)", STEP)?;
    run.expect("offset 0x38 ignored (Offset)", STEP)?;
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

/// `ferrite-ctl save` writes a counting domU to a file in the initramfs's root filesystem and
/// destroys it; `ferrite-ctl restore` builds it again from the file and it counts on from where
/// it was. The weight set with `sched-credit` is saved with it; `vcpu-pin` moves its vCPU; a
/// truncated file is refused and the half-built domain destroyed.
#[test]
fn linux_dom0_ferrite_ctl_save_restore() -> Result<()> {
    let mut run = linux("linux-ctl-save", 2).spawn()?;
    run.expect("linux-dom0: shell ready", TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(500));
    let check = |run: &ferrite_systests::Run, ok: bool, what: String| {
        if ok {
            Ok(())
        } else {
            Err(run.error(ferrite_systests::ErrorKind::Check, what))
        }
    };

    run.send("ferrite-ctl create name=web,mem=16M,cmd=counter+100 /domu.elf\n")?;
    let id = created_id(&run.expect("Created domain web (id ", STEP)?);

    // The credit scheduler's weight: set, then shown (also in the whole table).
    run.send("ferrite-ctl sched-credit -d web -w 512; echo sc-$((2 * 3))\n")?;
    run.expect("sc-6", STEP)?;
    run.send("ferrite-ctl sched-credit; echo sc-$((2 * 4))\n")?;
    run.expect("sc-8", STEP)?;
    let out = output_of(
        run.transcript().lines(),
        "ferrite-ctl sched-credit;",
        "sc-8",
    );
    check(
        &run,
        out.iter()
            .any(|l| l.starts_with("Name ") && l.contains("Weight"))
            && weight_of(&out, "web") == Some(512)
            && weight_of(&out, "Domain-0").is_some(),
        format!("`ferrite-ctl sched-credit` did not show web's weight 512: {out:?}"),
    )?;
    run.send("ferrite-ctl sched-credit -d web -w 0 || echo failed-$((2 * 5))\n")?;
    run.expect("weight 0: out of range (EINVAL)", STEP)?;
    run.expect("failed-10", STEP)?;

    // Let it count, then save it to a file: the domain is gone, the file is there.
    run.send(&format!("ferrite-ctl unpause {id}\n"))?;
    run.expect(&format!("domU{id}: counter: 6"), STEP)?;
    run.send("ferrite-ctl save web /tmp/web.sav\n")?;
    let saved = run.expect(&format!("saved dom{id} to \"/tmp/web.sav\": "), STEP)?;
    check(
        &run,
        saved.contains("domain destroyed"),
        format!("save did not destroy the domain: {saved}"),
    )?;
    let lines = run.transcript().lines().to_vec();
    let count_of = |l: &String, d: u32| number_after(l, &format!("domU{d}: counter: "));
    let last_before = lines
        .iter()
        .filter_map(|l| count_of(l, id))
        .max()
        .unwrap_or(0);
    run.send("ls -l /tmp/web.sav; echo ls-$((3 * 3))\n")?;
    run.expect("ls-9", STEP)?;
    let out = output_of(run.transcript().lines(), "ls -l /tmp/web.sav", "ls-9");
    let size = out
        .iter()
        .find(|l| l.starts_with('-') && l.trim_end().ends_with("/tmp/web.sav"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|s| s.parse::<u64>().ok());
    // The documented format: the 128-byte header, the vCPUs, an 8-byte type and 4096 bytes per
    // page but 8 bytes for a page of zeros.
    let (pages, zeros, vcpus) = (
        number_after(&saved, ": "),
        number_after(&saved, "pages ("),
        number_after(&saved, "zeros), "),
    );
    let expected = match (pages, zeros, vcpus) {
        (Some(p), Some(z), Some(v)) => Some(128 + 944 * v + (p - z) * (8 + 4096) + z * 8),
        _ => None,
    };
    check(
        &run,
        size.is_some() && size == expected && pages == Some(4096),
        format!("the file is {size:?} bytes, {expected:?} expected from `{saved}`: {out:?}"),
    )?;
    run.send("ferrite-ctl list; echo list-$((3 * 4))\n")?;
    run.expect("list-12", STEP)?;
    let out = output_of(run.transcript().lines(), "ferrite-ctl list", "list-12");
    check(
        &run,
        !out.iter().any(|l| l.starts_with("web ")),
        format!("web is still listed after the save: {out:?}"),
    )?;

    // Restore: a new domain, counting on from the saved value, with the saved weight.
    run.send("ferrite-ctl restore /tmp/web.sav\n")?;
    let restored = run.expect("restored \"/tmp/web.sav\" as dom", STEP)?;
    let new = number_after(&restored, " as dom").expect("the restored domain's id") as u32;
    run.expect(&format!("domU{new}: counter: {}", last_before + 5), STEP)?;
    let lines = run.transcript().lines().to_vec();
    let from = lines
        .iter()
        .rposition(|l| l.contains("ferrite-ctl restore /tmp/web.sav"))
        .unwrap_or(0);
    let after: Vec<u64> = lines[from..]
        .iter()
        .filter_map(|l| count_of(l, new))
        .collect();
    check(
        &run,
        last_before >= 6
            && after
                .first()
                .is_some_and(|&n| n > last_before && n <= last_before + 2),
        format!(
            "counted to {last_before} before the save, then {:?} after the restore",
            after.first()
        ),
    )?;
    run.send("ferrite-ctl sched-credit -d web; echo sc-$((4 * 4))\n")?;
    run.expect("sc-16", STEP)?;
    let out = output_of(
        run.transcript().lines(),
        "ferrite-ctl sched-credit -d web;",
        "sc-16",
    );
    check(
        &run,
        weight_of(&out, "web") == Some(512),
        format!("the restored web's weight is not the saved 512: {out:?}"),
    )?;
    run.send("ferrite-ctl vcpu-pin web 0 1\n")?;
    run.expect(&format!("Domain {new} (web) vcpu 0 pinned to cpus 1"), STEP)?;

    // `save -c` keeps it, paused; `restore -p` builds a paused copy beside it (on other
    // frames). The original goes, the copy counts on from where both were.
    run.send("ferrite-ctl save -c web /tmp/web2.sav\n")?;
    let saved = run.expect(&format!("saved dom{new} to \"/tmp/web2.sav\": "), STEP)?;
    check(
        &run,
        saved.contains("domain left paused"),
        format!("save -c did not keep the domain paused: {saved}"),
    )?;
    let lines = run.transcript().lines().to_vec();
    let last_before = lines
        .iter()
        .filter_map(|l| count_of(l, new))
        .max()
        .unwrap_or(0);
    run.send("ferrite-ctl restore -p /tmp/web2.sav\n")?;
    let restored = run.expect("restored \"/tmp/web2.sav\" as dom", STEP)?;
    let copy = number_after(&restored, " as dom").expect("the copy's id") as u32;
    check(
        &run,
        restored.trim_end().ends_with(", paused") && copy != new,
        format!("restore -p did not leave a new domain paused: {restored}"),
    )?;
    run.send(&format!(
        "ferrite-ctl destroy {new}; ferrite-ctl unpause {copy}\n"
    ))?;
    run.expect(&format!("Domain {new} (web) destroyed"), STEP)?;
    run.expect(&format!("Domain {copy} (web) unpaused"), STEP)?;
    // (Its first count may come before the tool's line: from the command on.)
    run.expect(&format!("domU{copy}: counter: {}", last_before + 4), STEP)?;
    let lines = run.transcript().lines().to_vec();
    let from = lines
        .iter()
        .rposition(|l| l.contains(&format!("ferrite-ctl unpause {copy}")))
        .unwrap_or(0);
    let first = lines[from..].iter().find_map(|l| count_of(l, copy));
    check(
        &run,
        first.is_some_and(|n| n > last_before && n <= last_before + 2),
        format!("dom{new} counted to {last_before} before save -c, its copy then {first:?}"),
    )?;
    run.send("ferrite-ctl destroy web\n")?;
    run.expect(&format!("Domain {copy} (web) destroyed"), STEP)?;

    // A file cut short inside its pages: RESTORE_BEGIN has built a domain, which is destroyed
    // again, with the reason. A file that is not a save file is refused before any call.
    run.send(
        "head -c $(($(wc -c < /tmp/web.sav) / 2)) /tmp/web.sav > /tmp/cut.sav; \
         ferrite-ctl restore /tmp/cut.sav || echo failed-$((4 * 5))\n",
    )?;
    let line = run.expect("restore /tmp/cut.sav: the file ends inside page ", STEP)?;
    check(
        &run,
        line.contains("the half-built dom") && line.trim_end().ends_with("was destroyed"),
        format!("the half-built domain was not destroyed: {line}"),
    )?;
    run.expect("failed-20", STEP)?;
    // A doctored file: the first page's type word (after the 128-byte header and one 944-byte
    // vCPU) made 5 (no such type). Ferrite refuses RESTORE_PAGE and logs why; the tool prints
    // that reason and destroys the domain.
    run.send(
        "cp /tmp/web.sav /tmp/bad.sav; printf '\\005' | dd of=/tmp/bad.sav bs=1 seek=1072 \
         conv=notrunc 2>/dev/null; ferrite-ctl restore /tmp/bad.sav || echo failed-$((4 * 7))\n",
    )?;
    let line = run.expect("restore /tmp/bad.sav: RESTORE_PAGE 0 ", STEP)?;
    check(
        &run,
        line.contains("frame 0: bad page type") && line.trim_end().ends_with("was destroyed"),
        format!("the doctored file's refusal is not explained: {line}"),
    )?;
    run.expect("failed-28", STEP)?;
    run.send("ferrite-ctl restore /init || echo failed-$((4 * 6))\n")?;
    run.expect("not a Ferrite save file", STEP)?;
    run.expect("failed-24", STEP)?;
    run.send("ferrite-ctl list; echo list-$((5 * 5))\n")?;
    run.expect("list-25", STEP)?;
    let out = output_of(run.transcript().lines(), "ferrite-ctl list", "list-25");
    check(
        &run,
        out.iter().any(|l| l.starts_with("Domain-0 "))
            && !out
                .iter()
                .any(|l| l.starts_with("web ") || l.contains("--p---")),
        format!("after the restores, only dom0 should be listed: {out:?}"),
    )?;

    run.send("poweroff -f\n")?;
    let out = run.wait_exit(STEP)?;
    out.ensure_exit(Exit::Code(0))?;
    let c = &out.console;
    out.ensure(!c.contains("crashed on vcpu"), "a domain crashed")?;
    out.ensure(!c.has_panic(), "Ferrite panicked")
}

/// A user-space block backend in Linux dom0 (`ferrite-ctl blkback`): a domU's disk is a file in
/// Linux's file system on dom0's virtio disk. One domU writes a pattern through it and reads
/// it back; a new domU reads the same pattern after the file system was remounted, so the data
/// went through Linux's file system and its virtio-blk driver.
#[test]
fn linux_dom0_serves_a_domu_disk_from_a_file() -> Result<()> {
    let disk = std::env::temp_dir().join(format!("ferrite-linux-blk-{}.img", std::process::id()));
    std::fs::File::create(&disk)?.set_len(32 << 20)?;
    let spawned = linux("linux-blkback", 2).virtio_disk(&disk).spawn();
    let result = (|| -> Result<()> {
        let mut run = spawned?;
        run.expect("linux-dom0: disk: vda", TIMEOUT)?;
        run.expect("linux-dom0: shell ready", TIMEOUT)?;
        std::thread::sleep(Duration::from_millis(500));
        run.send(
            "mount -t ext2 /dev/vda /mnt && dd if=/dev/zero of=/mnt/domu.img bs=1M count=8 \
             2>/dev/null && echo image-$((5 * 5))\n",
        )?;
        run.expect("image-25", STEP)?;
        run.send("ferrite-ctl blkback /mnt/domu.img 120 &\n")?;
        run.expect(
            "ferrite-ctl: blkback: serving domUs' disks from /mnt/domu.img (16384 sectors)",
            STEP,
        )?;

        run.send(
            "ferrite-ctl create name=w,mem=8M,disk=1M:4M,cmd=blk-write+7 /domu.elf && \
             ferrite-ctl unpause w\n",
        )?;
        let line = run.expect("Created domain w (id ", STEP)?;
        let w = created_id(&line);
        run.expect(
            &format!(
                "ferrite-ctl: blkback: dom{w}: connected, 8192 sectors at sector 2048 of \
                 /mnt/domu.img, indirect requests (responses announced on port"
            ),
            STEP,
        )?;
        run.expect(
            &format!("domU{w}: blk: wrote 64 sectors (seed 7), flushed, read back: ok"),
            STEP,
        )?;
        // 512 sectors in one request: its 64 segments in an indirect page.
        run.expect(
            &format!(
                "domU{w}: blk: indirect: wrote 512 sectors at sector 64 in one request, flushed, \
                 read back: ok"
            ),
            STEP,
        )?;
        // It copies: it did not promise to keep the domU's pages mapped.
        run.expect(
            &format!("domU{w}: blk: the backend keeps no pages mapped (no persistent grants)"),
            STEP,
        )?;
        // It powers off and is destroyed: the backend sees its disk close or its ring go.
        run.expect_line("the backend letting go of the first domU", STEP, |l| {
            l.contains(&format!("ferrite-ctl: blkback: dom{w}: "))
                && l.contains("disconnected after")
        })?;

        // Its disk region is free again once it is gone (a second domain may not have it).
        run.seen(&format!("w: domain {w} destroyed"), STEP)?;
        // Stop the backend, remount: what the next domU reads comes from the disk.
        run.send("kill %1; wait; umount /mnt && mount -t ext2 /dev/vda /mnt && echo remounted-$((6 * 6))\n")?;
        run.expect("remounted-36", STEP)?;
        run.send("ferrite-ctl blkback /mnt/domu.img 120 &\n")?;
        run.expect("ferrite-ctl: blkback: serving domUs' disks", STEP)?;
        run.send(
            "ferrite-ctl create name=r,mem=8M,disk=1M:4M,cmd=blk-read+7 /domu.elf && \
             ferrite-ctl unpause r\n",
        )?;
        let line = run.expect("Created domain r (id ", STEP)?;
        let r = created_id(&line);
        run.expect(
            &format!("domU{r}: blk: read 64 sectors: pattern 7 ok"),
            STEP,
        )?;
        run.expect(
            &format!("domU{r}: blk: indirect: read 512 sectors at sector 64: pattern 1007 ok"),
            STEP,
        )?;

        run.seen(&format!("r: domain {r} destroyed"), STEP)?;
        // A domU whose disk lies outside the file is refused, with the reason.
        run.send(
            "ferrite-ctl create name=big,mem=8M,disk=4M:8M,cmd=blk-read+7 /domu.elf && \
             ferrite-ctl unpause big\n",
        )?;
        let line = run.expect("Created domain big (id ", STEP)?;
        let big = created_id(&line);
        run.expect(
            &format!(
                "ferrite-ctl: blkback: dom{big}: not connected: its disk (sectors 8192+16384) \
                 is outside /mnt/domu.img (16384 sectors)"
            ),
            STEP,
        )?;

        run.send("poweroff -f\n")?;
        let out = run.wait_exit(STEP)?;
        out.ensure_exit(Exit::Code(0))?;
        out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
        out.ensure(!out.console.contains("crashed on vcpu"), "a domain crashed")
    })();
    let _ = std::fs::remove_file(&disk);
    result
}

/// A network backend in Linux dom0's user space (`ferrite-ctl netback -u eth0`): two domUs
/// exchange frames through it; the echoing domU, saved to a file and restored under a new id,
/// connects again with the MAC address it had (read through the control page's x6), so a new
/// domU still reaches it at that address; a hostile netfront's bad frames are refused and its
/// corrupted ring disconnects it alone, and the switch serves the next domU; a last domU
/// reaches QEMU's user-mode gateway through Linux's NIC and gets every answer back.
#[test]
fn linux_dom0_switches_frames_between_domus() -> Result<()> {
    let mut run = linux("linux-netback", 2)
        .args([
            "-netdev",
            "user,id=n0",
            "-device",
            "virtio-net-device,netdev=n0",
        ])
        .spawn()?;
    run.expect("linux-dom0: shell ready", TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(500));
    run.send("ferrite-ctl netback -u eth0 200 &\n")?;
    run.expect(
        "ferrite-ctl: netback: switching domUs' frames (control page version 2), to and from \
         the wire through eth0 (promiscuous)",
        STEP,
    )?;
    let start = |run: &mut ferrite_systests::Run, name: &str, cmd: &str| -> Result<u32> {
        run.send(&format!(
            "ferrite-ctl create name={name},mem=8M,cmd={cmd} /domu.elf && \
             ferrite-ctl unpause {name}\n"
        ))?;
        Ok(created_id(
            &run.expect(&format!("Created domain {name} (id "), STEP)?,
        ))
    };
    let p = start(&mut run, "pong", "net-pong+1000+200")?;
    let mac = format!("02:fe:00:00:{:02x}:{:02x}", p >> 8, p & 0xff);
    run.expect(
        &format!("ferrite-ctl: netback: dom{p}: connected (MAC {mac})"),
        STEP,
    )?;
    let a = start(&mut run, "ping", &format!("net-ping+{p}+20"))?;
    run.expect(
        &format!("domU{a}: net-ping: 20/20 echoes from dom{p}, payloads ok"),
        STEP,
    )?;
    run.expect_line("the first ping's frontend closing", STEP, |l| {
        l.contains(&format!("ferrite-ctl: netback: dom{a}: "))
            && l.contains("disconnected (20 frames sent, 20 received, 0 dropped; 0 to the wire")
    })?;

    // Saved and restored under a new id, the pong asks for its address back.
    run.send("ferrite-ctl save pong /tmp/pong.sav && ferrite-ctl restore /tmp/pong.sav\n")?;
    let restored = run.expect("restored \"/tmp/pong.sav\" as dom", STEP)?;
    let q = number_after(&restored, "as dom").expect("an id in the restore line") as u32;
    // In either order: the backend's line and the frontend's race.
    run.seen(
        &format!("ferrite-ctl: netback: dom{q}: connected (MAC {mac}, its own)"),
        STEP,
    )?;
    run.seen(&format!("domU{q}: net: connected again, MAC {mac}"), STEP)?;
    let b = start(&mut run, "ping2", &format!("net-ping+{p}+20"))?;
    run.expect(
        &format!("domU{b}: net-ping: 20/20 echoes from dom{p}, payloads ok"),
        STEP,
    )?;

    let e = start(&mut run, "evil", "net-evil")?;
    for case in [
        "a frame shorter than its header: refused EINVAL",
        "a frame longer than 1514 bytes: refused EINVAL",
        "a frame running past its page: refused EINVAL",
        "a grant reference it never made: refused EPERM",
        "a frame from another domain's address: refused EPERM",
    ] {
        run.seen(&format!("domU{e}: net-evil: {case}"), STEP)?;
    }
    run.expect(
        &format!("ferrite-ctl: netback: dom{e}: frame 5 refused: its source address"),
        STEP,
    )?;
    run.expect(
        &format!(
            "domU{e}: net-evil: flooded 1024 frames for a domain that does not exist: 1024 answered"
        ),
        STEP,
    )?;
    run.expect(
        &format!("domU{e}: net-evil: a good frame after them: ok"),
        STEP,
    )?;
    // In either order: the backend's poll and the domU's last line race.
    run.seen(
        &format!("ferrite-ctl: netback: dom{e}: ring corrupt (req_prod"),
        STEP,
    )?;
    run.seen(
        &format!("domU{e}: net-evil: done, 5 refused, 0 allowed"),
        STEP,
    )?;
    let d = start(&mut run, "ping3", &format!("net-ping+{p}+5"))?;
    run.expect(
        &format!("domU{d}: net-ping: 5/5 echoes from dom{p}, payloads ok"),
        STEP,
    )?;

    // Out through Linux's NIC to QEMU's gateway, and back.
    let w = start(&mut run, "wire", "net-wire+5")?;
    run.expect(
        &format!("domU{w}: net-wire: ARP: 10.0.2.2 is at 52:55:0a:00:02:02"),
        STEP,
    )?;
    run.expect(
        &format!("domU{w}: net-wire: 5/5 pings to 10.0.2.2 answered, payloads ok"),
        STEP,
    )?;
    let line = run.expect_line("the wire domU's counters", STEP, |l| {
        l.contains(&format!("ferrite-ctl: netback: dom{w}: ")) && l.contains("disconnected (")
    })?;
    let count = |key: &str| -> u64 {
        line.split(key)
            .next()
            .and_then(|h| h.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    if count(" to the wire") < 6 || count(" from it") < 6 {
        return Err(run.error(
            ferrite_systests::ErrorKind::Check,
            format!("the switch did not count the wire domU's frames to and from eth0: {line}"),
        ));
    }

    run.send("poweroff -f\n")?;
    let out = run.wait_exit(STEP)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    out.ensure(!out.console.contains("crashed on vcpu"), "a domain crashed")
}

/// The console backend in Linux dom0's user space (`ferrite-ctl consoled`, Xen's
/// `xenconsoled`): the lines a domU writes into its console ring reach Linux's console, each
/// once and in order, and the domU sees them all consumed.
#[test]
fn linux_dom0_serves_domu_consoles() -> Result<()> {
    let mut run = linux("linux-consoled", 2).spawn()?;
    run.expect("linux-dom0: shell ready", TIMEOUT)?;
    std::thread::sleep(Duration::from_millis(500));
    run.send("ferrite-ctl consoled 200 &\n")?;
    run.expect("ferrite-ctl: console: serving domUs' consoles", STEP)?;
    run.send(
        "ferrite-ctl create name=con,mem=8M,cmd=ring-console+20 /domu.elf && \
         ferrite-ctl unpause con\n",
    )?;
    let id = created_id(&run.expect("Created domain con (id ", STEP)?);
    run.expect(&format!("ferrite-ctl: console: dom{id}: connected"), STEP)?;
    for i in 1..=20 {
        run.expect(
            &format!("ferrite-ctl: console: dom{id}: ring line {i} of 20"),
            STEP,
        )?;
    }
    run.seen(
        &format!("domU{id}: ring-console: 20 lines consumed by dom0"),
        STEP,
    )?;
    run.seen(
        &format!("ferrite-ctl: console: dom{id}: its domain is gone"),
        STEP,
    )?;
    let once = (1..=20).all(|i| {
        let line = format!("ferrite-ctl: console: dom{id}: ring line {i} of 20");
        run.transcript()
            .lines()
            .iter()
            .filter(|l| l.ends_with(&line))
            .count()
            == 1
    });
    if !once {
        return Err(run.error(
            ferrite_systests::ErrorKind::Check,
            "a console line was printed more than once".to_string(),
        ));
    }
    run.send("poweroff -f\n")?;
    let out = run.wait_exit(STEP)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")
}
