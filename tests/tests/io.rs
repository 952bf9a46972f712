//! Shared-memory I/O between domains: event channels, grant copies and the console split
//! driver. Each domU's console ring reaches dom0's console through dom0's back end (grant
//! copies only, notified over an event channel); a hostile domU's bad event-channel and grant
//! calls are refused with the ABI's errors, its flood of events and corrupted ring are
//! survived, and the back end keeps serving the honest domU.

use std::path::PathBuf;
use std::time::Duration;

use ferrite_systests::{Exit, Outcome, Qemu, Result};

const TIMEOUT: Duration = Duration::from_secs(120);

fn firmware(board: &str) -> PathBuf {
    let dir = std::env::var("FERRITE_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build"));
    dir.join(board).join("ferrite-dom0.bin")
}

fn run(label: &str, gic: u32, domus: &str, report_ms: u32) -> Result<Outcome> {
    let q = Qemu::virt()
        .gic(gic)
        .cpus(2)
        .memory("1G")
        .icount(true)
        .timeout(TIMEOUT)
        .label(label)
        .image(firmware("qemu-virt"))
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

/// The positions of `needles` in the transcript, each after the previous one.
fn in_order(text: &str, needles: &[String]) -> std::result::Result<(), String> {
    let mut at = 0;
    for n in needles {
        match text[at..].find(n.as_str()) {
            Some(i) => at += i + n.len(),
            None => return Err(format!("missing (or out of order): {n}")),
        }
    }
    Ok(())
}

#[test]
fn domu_console_ring_reaches_dom0_and_a_hostile_frontend_is_refused() -> Result<()> {
    for gic in [3, 2] {
        let out = run(
            &format!("io-console-gicv{gic}"),
            gic,
            "domu=name=con,mem=8M,cmd=ring-console+40+1 domu=name=evilio,mem=8M,cmd=evil-io",
            2000,
        )?;
        let c = &out.console;
        let text = c.text();
        out.ensure(
            c.contains("dom0: events: shared-info page at"),
            "dom0 set up its shared-info page",
        )?;
        out.ensure(
            c.contains("dom0: console: dom1: connected")
                && c.contains("dom0: console: dom2: connected"),
            "dom0's console back end connected to both domUs",
        )?;
        // Every line, once, in order, through the ring and dom0.
        let lines: Vec<String> = (1..=40)
            .map(|i| format!("dom0: console: dom1: ring line {i} of 40\n"))
            .collect();
        if let Err(e) = in_order(&text, &lines) {
            out.ensure(false, &e)?;
        }
        for l in &lines {
            out.ensure(
                text.matches(l.as_str()).count() == 1,
                format!("line delivered exactly once: {}", l.trim_end()),
            )?;
        }
        out.ensure(
            c.contains("domU1: ring-console: 40 lines consumed by dom0"),
            "the honest domU saw dom0 consume its whole ring",
        )?;
        let rt = text
            .lines()
            .find(|l| l.contains("ring-console: round trip"))
            .unwrap_or("");
        out.ensure(
            rt.contains(" over ") && !rt.contains(" over 0 of"),
            format!("event round trips through dom0 came back: {rt}"),
        )?;
        // The hostile domU: every attempt refused as documented, nothing allowed.
        out.ensure(
            c.contains("domU2: evil-io: done, 18 refused, 0 allowed"),
            "all 18 bad calls refused",
        )?;
        out.ensure(
            !text.contains("(unexpected"),
            "each refusal with the documented errno",
        )?;
        out.ensure(
            c.contains("dom0: console: dom2: ring corrupt (out_cons") && c.contains("disconnected"),
            "dom0 detected the corrupted ring and disconnected that domU alone",
        )?;
    }
    Ok(())
}
