//! Failure paths: what Ferrite says and does when it cannot or must not go on. Each is what a
//! user sees on a new board or a broken set-up, so each must be a clear message, never a hang
//! or a silent fault.

use std::time::Duration;

use ferrite_systests::{Exit, Outcome, Qemu, Result};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn run_to_exit(q: Qemu) -> Result<Outcome> {
    q.spawn()?.wait_exit(EXIT_TIMEOUT)
}

/// Runs until `needle` has been printed and a little more, then stops QEMU (for paths that
/// park the CPU instead of exiting).
fn run_until_parked(q: Qemu, needle: &str) -> Result<Outcome> {
    let run = q.spawn()?;
    let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
    while !run.transcript().contains(needle) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    Ok(run.stop())
}

#[test]
fn panic_reports_and_exits_with_failure() -> Result<()> {
    let out = run_to_exit(Qemu::virt().cpus(4).bootargs("semihosting selftest=panic"))?;
    out.ensure_exit(Exit::Code(1))?;
    let c = &out.console;
    out.ensure(
        c.contains("ferrite: ready: 4 cpus"),
        "no ready line before the panic",
    )?;
    out.ensure(
        c.contains("ferrite: PANIC on cpu0 at src/boot.rs:")
            && c.contains("selftest=panic: panicking on purpose"),
        "the panic line lacks the CPU, location or message",
    )?;
    out.ensure(
        !c.contains("ferrite: power off"),
        "power-off ran after a panic",
    )
}

#[test]
fn fault_in_ferrite_dumps_state_and_exits_with_failure() -> Result<()> {
    let out = run_to_exit(Qemu::virt().cpus(2).bootargs("semihosting selftest=fault"))?;
    out.ensure_exit(Exit::Code(1))?;
    let c = &out.console;
    for needle in [
        "ferrite: unexpected exception: synchronous from EL2 on cpu0",
        "EC 0x25 (data abort at the same EL), translation fault at level 0, read",
        "FAR_EL2 0x0000fffffffff000",
        "= ferrite.elf 0x",
        " x30 0x",
        "ferrite: PANIC on cpu0 at src/arch/aarch64/exceptions.rs:",
    ] {
        out.ensure(
            c.contains(needle),
            format!("the fault report lacks `{needle}`"),
        )?;
    }
    Ok(())
}

#[test]
fn entered_at_el1_says_why_and_parks() -> Result<()> {
    let q = Qemu::virt().cpus(1).machine_opt("virtualization=off");
    let out = run_until_parked(q, "ferrite: halted")?;
    out.ensure(
        out.console
            .contains("ferrite: fatal: entered at EL1; Ferrite needs EL2"),
        "no message about the wrong exception level",
    )?;
    out.ensure(out.console.contains("ferrite: halted"), "did not halt")
}

#[test]
fn missing_device_tree_says_why_and_parks() -> Result<()> {
    let q = Qemu::virt().cpus(1).loader_at(0x4020_0000);
    let out = run_until_parked(q, "ferrite: halted")?;
    out.ensure(
        out.console
            .contains("ferrite: fatal: no device tree: the loader passed x0 = 0"),
        "no message about the missing device tree",
    )
}

#[test]
fn reboot_option_resets_through_psci() -> Result<()> {
    // QEMU runs with -no-reboot, so a PSCI SYSTEM_RESET ends the run with status 0.
    let out = run_to_exit(Qemu::virt().cpus(2).bootargs("reboot semihosting"))?;
    out.ensure_exit(Exit::Code(0))?;
    out.ensure(out.console.contains("ferrite: reboot"), "no reboot line")?;
    out.ensure(!out.console.has_panic(), "panicked")
}

#[test]
fn unknown_boot_options_are_reported() -> Result<()> {
    let out = run_to_exit(
        Qemu::virt()
            .cpus(1)
            .bootargs("poweroff loglevel=loud frobnicate"),
    )?;
    out.ensure_exit(Exit::Code(0))?;
    for needle in [
        "bootargs: ignoring \"loglevel=loud\": unknown log level",
        "bootargs: ignoring \"frobnicate\": unknown option",
    ] {
        out.ensure(
            out.console.contains(needle),
            format!("missing warning `{needle}`"),
        )?;
    }
    Ok(())
}
