//! Domain lifecycle from dom0's toolstack (guest/dom0/src/toolstack, docs/toolstack.md): PV
//! domUs created from the image packed into dom0, paused, unpaused and destroyed through
//! Ferrite's `DOMCTL`, typed at the shell on dom0's console or run from `dom0.exec`; 200
//! create/destroy cycles give every frame back.

use std::time::Duration;

use ferrite_systests::console::parse_latency_max_us;
use ferrite_systests::paths::dom0_image;
use ferrite_systests::{ErrorKind, Exit, Outcome, Qemu, Result, Run};

const TIMEOUT: Duration = Duration::from_secs(300);
/// One command's answer.
const STEP: Duration = Duration::from_secs(60);

fn qemu(label: &str, dom0_args: &str) -> Qemu {
    Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .timeout(TIMEOUT)
        .label(label)
        .image(dom0_image("qemu-virt"))
        .bootargs(format!("semihosting dom0_vcpus=1 -- {dom0_args}"))
}

fn check_clean(out: &Outcome) -> Result<()> {
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    out.ensure(!out.console.contains("dom0: PANIC"), "dom0 panicked")?;
    out.ensure(
        !out.console.contains("crashed on vcpu"),
        "Ferrite crashed dom0",
    )
}

/// Types a command and waits for the shell to echo it (`ferrite# <cmd>`).
fn type_cmd(run: &mut Run, cmd: &str) -> Result<()> {
    run.send(&format!("{cmd}\n"))?;
    let echo = format!("ferrite# {cmd}");
    run.expect_line(&format!("{echo:?}"), STEP, |l| l.trim_end() == echo)?;
    Ok(())
}

/// Types a command followed by `echo <marker>`; returns the lines in between (its output).
fn output_of(run: &mut Run, cmd: &str, marker: &str) -> Result<Vec<String>> {
    type_cmd(run, cmd)?;
    run.send(&format!("echo {marker}\n"))?;
    let mut lines = Vec::new();
    run.expect_line(marker, STEP, |l| {
        if l.trim() == marker {
            return true;
        }
        lines.push(l.to_string());
        false
    })?;
    // The echo of `echo <marker>` itself is not the command's output.
    lines.retain(|l| !l.contains(&format!("echo {marker}")));
    Ok(lines)
}

/// The `list` row of the domain named `name`: (id, state letters).
fn row<'a>(lines: &'a [String], name: &str) -> Option<(u64, &'a str)> {
    lines.iter().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        (w.len() >= 6 && w[0] == name).then(|| (w[1].parse().unwrap_or(u64::MAX), w[4]))
    })
}

/// 200 × (create, unpause, pause, unpause, destroy) of a PV domU with 4 MiB, from
/// `dom0.exec`: Ferrite's free frames after the last destroy are what they were before the
/// first create.
#[test]
fn two_hundred_create_destroy_cycles_give_every_frame_back() -> Result<()> {
    let q = qemu(
        "lifecycle-cycles",
        "dom0.exec=\"cycle 70 name=cyc mem=4M cmd=hog;info;cycle 200 name=cyc mem=4M cmd=hog;info;list\" poweroff",
    );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    out.ensure(
        out.console.contains("dom0: exec: done"),
        "dom0.exec did not finish",
    )?;
    let Some(done) = out.console.find("cycle: 200 cycles in") else {
        return Err(out.fail("no `cycle: 200 cycles` summary (a cycle failed?)"));
    };
    out.ensure(
        done.ends_with(": ok"),
        format!("free memory did not come back: {done}"),
    )?;
    out.ensure(
        !out.console.lines().iter().any(|l| l.starts_with("cyc ")),
        "a cycled domain is still listed",
    )?;
    // Ferrite's own heap: after 70 warm-up cycles (every domain id used once: tables grown),
    // 200 more do not make it grow: a destroyed domain's record and tables are freed. It may
    // end a little lower: the first reading can catch something still in flight (it once read
    // 4 KiB more than the second, under load).
    let heap: Vec<u64> = out
        .console
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("hypervisor_heap_used"))
        .filter_map(|l| {
            l.trim_start_matches([' ', ':'])
                .strip_suffix(" KiB")?
                .parse()
                .ok()
        })
        .collect();
    out.ensure(
        heap.len() == 2 && heap[1] <= heap[0],
        format!("Ferrite's heap grew over 200 cycles: {heap:?} KiB"),
    )
}

/// A domain never sees what the domain before it left in its frames: the first `hello` domain
/// finds its free memory zero and fills it; the second, created on the same frames after the
/// first is destroyed, finds it zero again (Ferrite zeroes a new domain's memory with
/// `DC ZVA`, docs/lifecycle.md).
#[test]
fn a_new_domain_gets_its_frames_zeroed() -> Result<()> {
    let q = qemu(
        "lifecycle-zeroed",
        "dom0.exec=\"create name=first mem=8M cmd=hello;sleep 500;\
         create name=second mem=8M cmd=hello;sleep 500\" poweroff",
    );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    let at = |name: &str| {
        out.console.find(&format!("{name}: domain ")).and_then(|l| {
            l.split(" MiB at ")
                .nth(1)?
                .split(',')
                .next()
                .map(str::to_string)
        })
    };
    let (a, b) = (at("first"), at("second"));
    out.ensure(
        a.is_some() && a == b,
        format!("the second domain is not on the first's frames ({a:?}, {b:?}): nothing to check"),
    )?;
    for d in ["domU1", "domU2"] {
        let start = format!("{d}: hello: ");
        out.ensure(
            out.console.lines().iter().any(|l| {
                l.starts_with(&start) && l.contains(" free pages, all zero; filled with 0xa5")
            }),
            format!("{d} did not find its free memory zero"),
        )?;
    }
    Ok(())
}

/// A domain whose per-frame records outgrow Ferrite's boot heap (4 MiB; a 512 MiB domain's
/// frame list alone is 1 MiB, and its table of frame states 2 MiB more) is created: the heap
/// grows from the frame allocator. It used to stop Ferrite with "memory allocation of 1048576
/// bytes failed". Created twice, the second on the heap the first left.
#[test]
fn a_domain_larger_than_ferrites_boot_heap_is_created() -> Result<()> {
    let q = Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .timeout(TIMEOUT)
        .label("lifecycle-big")
        .image(dom0_image("qemu-virt"))
        .bootargs(
            "semihosting dom0_vcpus=1 dom0_mem=256M -- dom0.exec=\"\
             create name=big mem=512M cmd=hello;unpause big;sleep 1500;\
             create name=again mem=512M cmd=hello;unpause again;sleep 1500;\
             create name=huge mem=2G cmd=hello\" poweroff",
        );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    for d in ["domU1", "domU2"] {
        out.ensure(
            out.console
                .lines()
                .iter()
                .any(|l| l.starts_with(&format!("{d}: hello: ")) && l.contains(" 131072 pages, ")),
            format!("{d} did not start with its 131072 pages"),
        )?;
        out.ensure(
            out.console.lines().iter().any(|l| {
                l.starts_with(&format!("{d}: hello: "))
                    && l.contains(" free pages, all zero; filled with 0xa5")
            }),
            format!("{d} did not find its free memory zero"),
        )?;
    }
    out.ensure(
        out.console
            .contains("error: create huge: huge: no 2048 MiB of free memory for it (ENOMEM)"),
        "a domain larger than the machine was not refused with ENOMEM",
    )
}

/// A restore zeroes the pages the save skipped (zero pages are not in the file; `RESTORE_END`
/// zeroes what `RESTORE_PAGE` did not write) on frames that held another domain's data: a
/// `hello` domain saved before it ever ran is restored onto the frames of one that filled its
/// free pages with 0xa5, and on unpause checks its free pages are zero.
#[test]
fn a_restored_domain_finds_its_zero_pages_zero() -> Result<()> {
    let q = qemu(
        "lifecycle-restore-zeroed",
        "dom0.exec=\"create name=a mem=8M cmd=hello;save a f;\
         create name=dirty mem=8M cmd=hello;unpause dirty;sleep 500;\
         restore f;unpause a;sleep 500\" poweroff",
    );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    out.ensure(
        out.console.contains("domU2: hello: ")
            && out.console.contains("filled with 0xa5 for the next domain"),
        "the dirtying domain did not fill its pages",
    )?;
    let dirty = out.console.find("dirty: domain 2, PV").and_then(|l| {
        l.split(" MiB at ")
            .nth(1)?
            .split(',')
            .next()
            .map(str::to_string)
    });
    let restored = out
        .console
        .find("a: domain 3 is being restored")
        .and_then(|l| {
            l.split(" pages at ")
                .nth(1)?
                .split(')')
                .next()
                .map(str::to_string)
        });
    out.ensure(
        dirty.is_some() && dirty == restored,
        format!(
            "the restore is not on the dirtied frames ({dirty:?}, {restored:?}): nothing to check"
        ),
    )?;
    out.ensure(
        out.console.lines().iter().any(|l| {
            l.starts_with("domU3: hello: ") && l.contains(" free pages, all zero; filled with 0xa5")
        }),
        "the restored domain did not find its free memory zero",
    )
}

/// A 512 MiB domain created, saved, restored and destroyed by dom0 on a pCPU shared with a
/// `latency` domU (a timer wake-up every 2 ms, BOOSTed over dom0): the work of each step grows
/// with the domain's memory, and Ferrite does it in slices of about 1 ms (`CREATE`,
/// `RESTORE_END`: the call is rewound and continued) or without walking its tables (the
/// destruction), so the probe's worst lateness stays a few ms. Before: 62 ms (`CREATE` to the
/// end at once), 28 ms (the destruction's walk of its tables), 19.6 ms (`RESTORE_BEGIN`
/// zeroing the whole region); now about 3.8 ms (`-icount`, repeatable).
#[test]
fn a_large_domains_lifecycle_does_not_starve_its_pcpu() -> Result<()> {
    let q = Qemu::virt()
        .gic(3)
        .cpus(1)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label("lifecycle-slices")
        .image(dom0_image("qemu-virt"))
        .bootargs(
            "semihosting dom0_mem=256M domu=name=lat,mem=4M,cmd=latency+1000 -- \
             dom0.exec=\"create name=big mem=512M cmd=counter 100;unpause big;sleep 200;\
             save big f;restore f;sleep 300;destroy big;sleep 1000\" poweroff",
        );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    for (want, what) in [
        (
            "big: domain 2, PV, 1 vcpus, 512 MiB",
            "the domain was not built",
        ),
        ("domU2: counter: ", "the domain did not run"),
        ("restored \"f\" as dom3", "the domain was not restored"),
        ("domU3: counter: ", "the restored domain did not run"),
    ] {
        out.ensure(out.console.contains(want), what)?;
    }
    // Everything must fall inside the probe's two seconds of wake-ups.
    let destroyed = out
        .console
        .find("big: domain 3 destroyed; 131072 frames freed")
        .ok_or_else(|| out.fail("the restored domain was not destroyed"))?;
    let done = out
        .console
        .find("domU1: latency: n=1000 max=")
        .map(str::to_string)
        .ok_or_else(|| out.fail("the latency probe did not report"))?;
    let pos = |l: &str| out.console.lines().iter().position(|x| x == l);
    out.ensure(
        pos(destroyed) < pos(&done),
        "the probe ended before the domain was destroyed: not all was measured",
    )?;
    let max_us =
        parse_latency_max_us(&done).ok_or_else(|| out.fail(format!("cannot read `{done}`")))?;
    out.ensure(
        max_us < 10_000,
        format!("a wake-up was {max_us} us late during the domain's lifecycle"),
    )
}

/// The shell, typed at the console: create a domain, see it in `list`, pause it (state `p`),
/// unpause it, read its console, watch `top` until a key, destroy it, and it is gone from `list`; an unknown domain and
/// a bad configuration get one-line errors naming them; the machine powers off from the shell.
#[test]
fn shell_creates_lists_pauses_and_destroys_a_domain() -> Result<()> {
    let q = qemu("lifecycle-shell", "dom0.shell=run");
    let mut run = q.spawn()?;
    run.expect("dom0: toolstack: shell ready", TIMEOUT)?;

    type_cmd(
        &mut run,
        "create name=web mem=8M cmd=ring-console 10000 100",
    )?;
    let created = run.expect("created domain", STEP)?;
    let list = output_of(&mut run, "list", "end-of-list-1")?;
    let Some((id, st)) = row(&list, "web") else {
        return Err(run.error(
            ErrorKind::Check,
            format!("list does not show web: {created}; {list:?}"),
        ));
    };
    if !(st.starts_with('r') || st.contains('b')) {
        return Err(run.error(
            ErrorKind::Check,
            format!("web should run or block, is {st}"),
        ));
    }
    if row(&list, "Domain-0").is_none() && !list.iter().any(|l| l.contains(" 0 ")) {
        return Err(run.error(
            ErrorKind::Check,
            format!("list does not show dom0: {list:?}"),
        ));
    }

    type_cmd(&mut run, "pause web")?;
    run.expect(&format!("paused web (dom{id})"), STEP)?;
    let list = output_of(&mut run, "list web", "end-of-list-2")?;
    match row(&list, "web") {
        Some((_, st)) if st.contains('p') => {}
        other => return Err(run.error(ErrorKind::Check, format!("paused web shows as {other:?}"))),
    }
    type_cmd(&mut run, &format!("unpause {id}"))?;
    run.expect(&format!("unpaused web (dom{id})"), STEP)?;

    // Its console: the lines it wrote so far, then it detaches on a key.
    type_cmd(&mut run, "console web")?;
    run.expect(&format!("console dom{id}:"), STEP)?;
    run.expect("ring line", STEP)?;
    run.send("\x1d")?;
    run.expect(&format!("console dom{id}: detached"), STEP)?;

    // top refreshes until a key is typed.
    type_cmd(&mut run, "top -b -d 300")?;
    run.expect("top: 2 domains", STEP)?;
    run.expect("top: 2 domains", STEP)?;
    run.send("q")?;
    run.expect("top: done", STEP)?;

    type_cmd(&mut run, "destroy web")?;
    run.expect(&format!("destroyed web (dom{id})"), STEP)?;
    let list = output_of(&mut run, "list", "end-of-list-3")?;
    if row(&list, "web").is_some() {
        return Err(run.error(
            ErrorKind::Check,
            format!("web is still listed after destroy: {list:?}"),
        ));
    }

    // Mistakes: one clear line each, and the shell goes on.
    type_cmd(&mut run, "pause nosuch")?;
    run.expect("error: pause nosuch: no domain named \"nosuch\"", STEP)?;
    type_cmd(&mut run, "destroy 42")?;
    run.expect("error: destroy 42: no such domain (ENOENT)", STEP)?;
    type_cmd(&mut run, "create name=bad mem=lots cmd=hog")?;
    let e = run.expect("error: create bad:", STEP)?;
    type_cmd(&mut run, "frobnicate")?;
    run.expect("error: unknown command \"frobnicate\"", STEP)?;
    let list = output_of(&mut run, "list", "end-of-list-4")?;
    if row(&list, "bad").is_some() {
        return Err(run.error(
            ErrorKind::Check,
            format!("a refused create left a domain ({e}): {list:?}"),
        ));
    }

    type_cmd(&mut run, "poweroff")?;
    let out = run.wait_exit(STEP)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)
}

/// Without Ferrite's answers nothing hangs: every command of `help` run from `dom0.exec` on a
/// domain that does not exist prints one error line, and dom0 goes on to power off.
#[test]
fn every_command_fails_cleanly_on_a_missing_domain() -> Result<()> {
    let cmds = "list 9;pause 9;unpause 9;shutdown 9;reboot 9;destroy 9;save 9 f;restore f;\
                sched-credit -d 9;sched-credit -d 9 -w 0;vcpu-pin 9 0 all;vcpu-list 9;console 9;\
                top -b -n 1;dmesg;create;cycle;bogus";
    let q = qemu(
        "lifecycle-errors",
        &format!("dom0.exec=\"{cmds}\" poweroff"),
    );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    out.ensure(
        out.console.contains("dom0: exec: done"),
        "dom0.exec did not finish",
    )?;
    for c in cmds.split(';') {
        let c = c.trim();
        let Some(at) = out
            .console
            .lines()
            .iter()
            .position(|l| l.trim_end() == format!("ferrite# {c}"))
        else {
            return Err(out.fail(format!("`{c}` was not run")));
        };
        // The next line answers it.
        let next = out.console.lines().get(at + 1).cloned().unwrap_or_default();
        let fine = next.starts_with("error: ")
            || (c.starts_with("top") && next.starts_with("top: "))
            || (c == "dmesg" && !next.starts_with("ferrite# "));
        out.ensure(fine, format!("`{c}` answered `{next}`"))?;
    }
    Ok(())
}

/// `save` keeps a counting domain in dom0's RAM and destroys it; `restore` builds it again and
/// it counts on from where it was (its count lives in its registers and stack), not from 1.
#[test]
fn a_saved_domain_is_restored_and_goes_on_counting() -> Result<()> {
    let q = qemu(
        "lifecycle-save",
        // `save -c` keeps the original (paused) and its frames: the restore must land on
        // others. It is destroyed before the copy runs.
        "dom0.exec=\"create name=cnt mem=8M cmd=counter 100;sleep 1500;pause cnt;save -c cnt f;\
         files;restore -p f;destroy 1;unpause 2;sleep 1500;list;destroy cnt\" poweroff",
    );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    let lines = out.console.lines();
    let at = |needle: &str| lines.iter().position(|l| l.contains(needle));
    let Some(saved) = at("saved dom1 to \"f\"") else {
        return Err(out.fail("no `saved dom1 to \"f\"` line"));
    };
    let Some(restored) = at("restored \"f\" as dom") else {
        return Err(out.fail("no `restored \"f\" as dom<N>` line"));
    };
    // The counter's values (`domU<N>: counter: <n>`) before the save and after the restore.
    let count = |l: &String| -> Option<u64> { l.split("counter: ").nth(1)?.trim().parse().ok() };
    let last_before = lines[..saved].iter().filter_map(count).max().unwrap_or(0);
    // From the command on: the restored domain may print before the shell says it is back.
    let restore_cmd = at("ferrite# restore f").unwrap_or(restored);
    let after: Vec<u64> = lines[restore_cmd..].iter().filter_map(count).collect();
    out.ensure(
        last_before >= 5,
        format!("it counted only to {last_before} before the save"),
    )?;
    out.ensure(!after.is_empty(), "the restored domain printed no count")?;
    out.ensure(
        after[0] > last_before && after[0] <= last_before + 2,
        format!(
            "counted to {last_before} before the save, then {} after the restore",
            after[0]
        ),
    )?;
    out.ensure(
        out.console.contains("destroyed cnt"),
        "the restored domain was not destroyed by name",
    )?;
    // On other machine frames: the original's base and the restored domain's.
    let base_of = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split(" at 0x").nth(1))
            .and_then(|r| r.split([',', ')']).next())
            .map(str::to_string)
    };
    let (old, new) = (
        base_of("cnt: domain 1, PV"),
        base_of("cnt: domain 2 is being restored"),
    );
    out.ensure(
        old.is_some() && new.is_some() && old != new,
        format!("restored at {new:?}, the original was at {old:?}: not other frames"),
    )
}

/// The scheduling and observation commands on a running domain: `sched-credit` sets and shows
/// its weight and cap, `vcpu-pin` moves it to pCPU 1 and `vcpu-list` shows it there, `top`
/// shows it taking CPU time, `dmesg` gives Ferrite's log, `info` the machine.
#[test]
fn scheduling_and_observation_commands() -> Result<()> {
    let q = qemu(
        "lifecycle-sched",
        "dom0.exec=\"create name=h mem=4M cmd=hog;sched-credit -d h -w 512 -c 50;\
         vcpu-pin h 0 1;sleep 300;vcpu-list h;top -b -n 2 -d 500;dmesg;info;destroy h\" poweroff",
    );
    let out = q.spawn()?.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    check_clean(&out)?;
    let lines = out.console.lines();
    let words = |l: &String| l.split_whitespace().map(String::from).collect::<Vec<_>>();
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(words)
        .filter(|w| w.first().map(String::as_str) == Some("h"))
        .collect();
    // sched-credit: Name ID Weight Cap.
    out.ensure(
        rows.iter()
            .any(|w| w.len() == 4 && w[2] == "512" && w[3] == "50"),
        format!("no `h <id> 512 50` row: {rows:?}"),
    )?;
    out.ensure(
        out.console.contains("vcpu0 pinned to cpus 1"),
        "vcpu-pin did not answer",
    )?;
    // vcpu-list: Name ID VCPU CPU State Time(s) Runs Migrations.
    out.ensure(
        rows.iter()
            .any(|w| w.len() == 8 && w[2] == "0" && w[3] == "1"),
        format!("vcpu-list does not show h's vcpu0 on pCPU 1: {rows:?}"),
    )?;
    // top: NAME ID STATE CPU(sec) CPU(%) MEM(k) MAXMEM(k) VCPUS; the second round measures.
    let top: Vec<&Vec<String>> = rows
        .iter()
        .filter(|w| w.len() == 8 && w[2].len() == 6)
        .collect();
    let pct = top
        .last()
        .and_then(|w| w[4].parse::<f64>().ok())
        .unwrap_or(0.0);
    out.ensure(
        top.len() == 2 && pct > 10.0 && pct <= 55.0,
        format!("top should show the hog near its 50% cap: {top:?}"),
    )?;
    out.ensure(out.console.contains("top: done"), "top did not end")?;
    // dmesg replays Ferrite's own boot lines: the ready line appears twice.
    let ready = lines
        .iter()
        .filter(|l| l.starts_with("ferrite: ready:"))
        .count();
    out.ensure(ready >= 2, "dmesg did not replay Ferrite's log")?;
    out.ensure(
        out.console.contains("free_memory") && out.console.contains("destroyed h (dom"),
        "info or destroy did not answer",
    )
}

/// `save <dom> disk:<name>` writes the saved domain to the save area on dom0's disk; after a
/// reboot of the whole machine (a new QEMU run on the same disk image), `restore disk:<name>`
/// brings it back and it counts on from where it was saved.
#[test]
fn a_domain_saved_to_dom0s_disk_is_restored_after_a_reboot() -> Result<()> {
    let disk = std::env::temp_dir().join(format!("ferrite-save-{}.img", std::process::id()));
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(64 << 20))
        .map_err(|e| ferrite_systests::Error::new(ErrorKind::Start, e.to_string()))?;
    let boot = |label: &str, exec: &str| -> Result<Outcome> {
        let out = qemu(
            label,
            &format!("dom0.savearea=8M:48M dom0.exec=\"{exec}\" poweroff"),
        )
        .virtio_disk(&disk)
        .spawn()?
        .wait_exit(TIMEOUT)?;
        out.ensure_exit(Exit::Code(0))?;
        check_clean(&out)?;
        Ok(out)
    };
    let first = boot(
        "lifecycle-disk-save",
        "create name=cnt mem=8M cmd=counter 100;sleep 1500;save cnt disk:cnt;files;\
         create name=ov mem=4M disk=9M:1M cmd=hog;create name=c2 mem=4M cmd=counter 100;\
         sleep 300;save c2 disk:c2;files",
    )?;
    let count = |l: &String| -> Option<u64> { l.split("counter: ").nth(1)?.trim().parse().ok() };
    let last = first
        .console
        .lines()
        .iter()
        .filter_map(count)
        .max()
        .unwrap_or(0);
    first.ensure(
        first.console.contains("saved dom1 to \"disk:cnt\"")
            && first.console.contains("on dom0's disk"),
        "the domain was not saved to dom0's disk",
    )?;
    first.ensure(
        last >= 5,
        format!("it counted only to {last} before the save"),
    )?;
    // A domain whose disk lies in the save area: nothing more is written there.
    first.ensure(
        first.console.contains(
            "the save area (50331648 bytes at 8388608) overlaps dom2's disk (1048576 bytes at 9437184): nothing written",
        ) && !first
            .console
            .lines()
            .iter()
            .any(|l| l.starts_with("disk:c2") && l.contains("on dom0's disk")),
        "a save over a domain's disk was refused",
    )?;
    let second = boot(
        "lifecycle-disk-restore",
        "files;restore disk:cnt;sleep 1000;list;destroy cnt",
    )?;
    let _ = std::fs::remove_file(&disk);
    second.ensure(
        second.console.contains("restored \"disk:cnt\" as dom"),
        "the saved domain was not restored from the disk",
    )?;
    let after: Vec<u64> = second.console.lines().iter().filter_map(count).collect();
    second.ensure(
        after.first().is_some_and(|&a| a > last && a <= last + 2),
        format!("counted to {last} before the reboot, then {after:?} after the restore"),
    )
}
