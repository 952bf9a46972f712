//! Domain lifecycle seen from Ferrite alone (no toolstack): a domU that faults is reported
//! (reason, registers, its last console lines) and handled by its `on_crash` setting while the
//! others keep running; a domU that calls a control operation gets `-EPERM`.

use std::time::Duration;

use ferrite_systests::paths::dom0_image;
use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(120);

fn run(label: &str, domus: &str, report_ms: u32) -> Result<Outcome> {
    let out = Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label(label)
        .image(dom0_image("qemu-virt"))
        .bootargs(format!(
            "semihosting dom0_vcpus=1 {domus} -- dom0.sched.report={report_ms} poweroff"
        ))
        .spawn()?
        .wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    out.ensure(
        out.console.contains("dom0: sched: report done"),
        "dom0 did not keep running to its report",
    )?;
    Ok(out)
}

/// The highest `counter: N` a domain printed.
fn last_count(text: &str, dom: u32) -> u64 {
    let prefix = format!("domU{dom}: counter: ");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|r| r.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn a_crashing_domu_is_reported_and_restarted_while_the_others_keep_running() -> Result<()> {
    let out = run(
        "crash-restart",
        "domu=name=crashy,mem=8M,on_crash=restart,cmd=counter+20+fault+3 \
         domu=name=steady,mem=8M,cmd=counter+50 \
         domu=name=kept,mem=8M,on_crash=preserve,cmd=counter+20+fault+2",
        1500,
    )?;
    let text = out.console.text();
    // The report: the reason, the guest's own fault line, and its last console lines.
    out.ensure(
        text.contains("ferrite: domain 1 (crashy) shut down from vcpu0: crash"),
        "no crash line for crashy",
    )?;
    out.ensure(
        text.contains("ferrite: domain 1 (crashy): its last console lines:")
            && text.contains("ferrite:   | domU1: counter: faulting on purpose at 3"),
        "the report does not show crashy's last console lines",
    )?;
    out.ensure(
        text.contains("ferrite: domain 1 (crashy): on_crash=restart"),
        "on_crash=restart not applied",
    )?;
    // Each restart takes the next free id, as Xen's do.
    let restarts = text.matches(" (crashy) restarted as domain ").count();
    out.ensure(
        restarts >= 3,
        format!("crashy was restarted {restarts} times, expected at least 3"),
    )?;
    out.ensure(
        text.contains("crashy: domain 1 destroyed; 2048 frames freed"),
        "crashy's 8 MiB were not freed before its restart",
    )?;
    // preserve: kept, not restarted.
    out.ensure(
        text.contains("(kept) is kept for inspection"),
        "on_crash=preserve did not keep the domain",
    )?;
    out.ensure(
        !text.contains("(kept) restarted"),
        "a preserved domain was restarted",
    )?;
    // The bystander counted all along: ~1.5 s at 50 ms a count.
    let steady = last_count(&text, 2);
    out.ensure(
        steady >= 15,
        format!("steady only counted to {steady} while crashy crashed"),
    )?;
    Ok(())
}

#[test]
fn a_domu_calling_control_operations_gets_eperm() -> Result<()> {
    let out = run(
        "evil-ctl",
        "domu=name=evil,mem=8M,cmd=evil-ctl domu=name=steady,mem=8M,cmd=counter+50",
        500,
    )?;
    out.ensure(
        out.console
            .contains("domU1: evil-ctl: 12 refused with EPERM, 0 allowed"),
        "a domU's control call was not refused with EPERM",
    )?;
    out.ensure(
        out.console
            .contains("evil: vcpu0: DOMCTL refused: dom0 only"),
        "no log line names the refused domain",
    )?;
    out.ensure(
        last_count(&out.console.text(), 2) >= 5,
        "the other domU stopped counting",
    )
}

/// Ctrl-A three times hands the console to Ferrite, whose keys list the domains and the
/// memory without dom0's help; three more go to each running domU's console ring in turn (one
/// echoes what it gets), then back to dom0. A preserved crashed domain is listed as crashed.
#[test]
fn ctrl_a_three_times_switches_the_console_between_ferrite_domus_and_dom0() -> Result<()> {
    let mut run = Qemu::virt()
        .gic(3)
        .cpus(2)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label("console-switch")
        .image(dom0_image("qemu-virt"))
        .bootargs(
            "semihosting dom0_vcpus=1 domu=name=echo,mem=8M,cmd=console-echo+2 \
             domu=name=steady,mem=8M,cmd=counter+100 \
             domu=name=kept,mem=8M,on_crash=preserve,cmd=counter+20+fault+2 \
             -- dom0.sched.report=6000 poweroff",
        )
        .spawn()?;
    run.expect("domU1: console-echo: ready", TIMEOUT)?;
    run.expect("(kept) is kept for inspection", TIMEOUT)?;
    let step = Duration::from_secs(30);
    run.send("\x01\x01\x01")?;
    run.expect("console input goes to Ferrite", step)?;
    run.send("l")?;
    run.expect_line("steady listed running", step, |l| {
        l.starts_with("steady ") && l.contains("r-----")
    })?;
    run.send("m")?;
    run.expect("ferrite: memory:", step)?;
    run.send("\x01\x01\x01")?;
    run.expect("console input goes to domain 1 (echo)", step)?;
    run.send("hello ring\r")?;
    run.expect("domU1: console-echo: got 'hello ring'", step)?;
    run.send("again\r")?;
    run.expect("domU1: console-echo: got 'again'", step)?;
    run.send("\x01\x01\x01")?;
    run.expect("console input goes to domain 2 (steady)", step)?;
    run.send("\x01\x01\x01")?;
    run.expect("console input goes to dom0", step)?;
    let out = run.wait_exit(TIMEOUT)?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(!out.console.has_panic(), "Ferrite panicked")?;
    out.ensure(
        out.console
            .lines()
            .iter()
            .any(|l| l.starts_with("kept ") && l.contains("----c-")),
        "the preserved crashed domain is not listed as crashed",
    )
}
