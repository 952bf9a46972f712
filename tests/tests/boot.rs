//! Boot scenarios: the real Ferrite image in QEMU, checked through its console.
//!
//! Needs the images (`make build` makes `build/qemu-virt/ferrite.bin` and
//! `build/rpi4/ferrite.bin`); a missing image fails the test, saying so. raspi4b also needs
//! Debian's DTB, fetched with `tools/fetch-debian.sh` when missing (the test is skipped, loudly,
//! if that is impossible). Each boots with `loglevel=debug poweroff semihosting`, so Ferrite
//! powers off after its ready line and QEMU exits 0.

use std::time::Duration;

use ferrite_systests::console::{POWER_OFF, READY, UNEXPECTED_EXCEPTION, coalesce};
use ferrite_systests::{ErrorKind, Exit, Outcome, Qemu, Range, Result, Serial};

const BOOTARGS: &str = "loglevel=debug poweroff semihosting";
/// Time to the ready line, and then to QEMU's exit (a whole run is also limited to 60 s).
const BOOT_TIMEOUT: Duration = Duration::from_secs(45);
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

const MIB: u64 = 1 << 20;

/// What a boot must show.
struct Expected<'a> {
    cpus: u32,
    gic: Option<u32>,
    banks: &'a [Range],
}

/// Boots `q` to its ready line and power-off, then checks the whole console.
fn boot(q: Qemu, expected: &Expected) -> Result<Outcome> {
    let mut run = q.spawn()?;
    let ready = run.expect(READY, BOOT_TIMEOUT)?;
    eprintln!("{}: {ready}", run.label());
    let out = run.wait_exit(EXIT_TIMEOUT)?;
    check_boot(&out, expected)?;
    Ok(out)
}

fn check_boot(out: &Outcome, expected: &Expected) -> Result<()> {
    let console = &out.console;
    out.ensure(!console.has_panic(), "Ferrite panicked")?;
    out.ensure(
        !console.contains(UNEXPECTED_EXCEPTION),
        "Ferrite took an unexpected exception",
    )?;
    out.ensure_exit(Exit::Code(0))?;

    let online = console.online_cpus();
    let all: std::collections::BTreeSet<u32> = (0..expected.cpus).collect();
    out.ensure(
        online == all,
        format!("expected `cpuN online` for CPUs {all:?}, saw {online:?}"),
    )?;

    let ready = console
        .ready()
        .ok_or_else(|| out.fail("no parsable ready line"))?;
    out.ensure(
        ready.cpus == expected.cpus,
        format!(
            "ready line says {} cpus, expected {}",
            ready.cpus, expected.cpus
        ),
    )?;

    // One `memory:` line per bank; Ferrite may merge banks that touch (QEMU's NUMA nodes do),
    // so compare the addresses covered, and that no two lines overlap.
    let banks = console.memory_banks();
    let ranges: Vec<Range> = banks.iter().map(|b| b.range).collect();
    let covered = coalesce(&ranges);
    out.ensure(
        covered == coalesce(expected.banks),
        format!(
            "expected `memory:` lines covering {:?}, saw {ranges:?}",
            expected.banks
        ),
    )?;
    let printed: u64 = ranges.iter().map(Range::size).sum();
    let union: u64 = covered.iter().map(Range::size).sum();
    out.ensure(
        printed == union,
        format!("`memory:` lines overlap: {ranges:?}"),
    )?;
    for bank in &banks {
        out.ensure(
            bank.mib == bank.range.size() / MIB,
            format!("bank {} says {} MiB", bank.range, bank.mib),
        )?;
    }
    let total_mib: u64 = expected.banks.iter().map(|r| r.size() / MIB).sum();
    out.ensure(
        ready.free_mib > 0 && ready.free_mib <= total_mib,
        format!(
            "ready line says {} MiB free of {total_mib} MiB of RAM",
            ready.free_mib
        ),
    )?;
    if let Some(frames) = console.frames() {
        out.ensure(
            frames.free_mib <= frames.total_mib && frames.total_mib <= total_mib,
            format!("implausible frames line {frames:?} for {total_mib} MiB of RAM"),
        )?;
    }
    if let Some(gic) = expected.gic {
        out.ensure(
            console.gic_version() == Some(gic),
            format!("expected a `gic: v{gic}` line"),
        )?;
    }
    Ok(())
}

/// Every `reserved:` region that is an address range lies in a RAM bank, and there is one.
fn check_reserved_in_banks(out: &Outcome, banks: &[Range]) -> Result<()> {
    let reserved = out.console.reserved();
    out.ensure(!reserved.is_empty(), "no `reserved:` line")?;
    for r in reserved {
        if let Some(range) = r.range {
            out.ensure(
                banks.iter().any(|b| b.contains(&range)),
                format!(
                    "reserved region {range} ({}) is in no RAM bank {banks:?}",
                    r.what
                ),
            )?;
        }
    }
    Ok(())
}

fn virt(label: &str) -> Qemu {
    Qemu::virt().label(label).bootargs(BOOTARGS)
}

#[test]
fn virt_gicv3_4cpus_1g() -> Result<()> {
    let q = virt("virt-gicv3").gic(3).cpus(4).memory("1G");
    let expected = Expected {
        cpus: 4,
        gic: Some(3),
        banks: &[Range::new(0x4000_0000, 0x7fff_ffff)],
    };
    boot(q, &expected)?;
    Ok(())
}

#[test]
fn virt_gicv2_2cpus() -> Result<()> {
    let q = virt("virt-gicv2").gic(2).cpus(2).memory("1G");
    let expected = Expected {
        cpus: 2,
        gic: Some(2),
        banks: &[Range::new(0x4000_0000, 0x7fff_ffff)],
    };
    boot(q, &expected)?;
    Ok(())
}

/// 5 GiB from 0x4000_0000: the bank ends above 4 GiB.
#[test]
fn virt_ram_above_4g() -> Result<()> {
    let q = virt("virt-5g").gic(3).cpus(2).memory("5G");
    let bank = Range::new(0x4000_0000, 0x1_7fff_ffff);
    let out = boot(
        q,
        &Expected {
            cpus: 2,
            gic: Some(3),
            banks: &[bank],
        },
    )?;
    let end = out.console.memory_banks()[0].range.end;
    out.ensure(
        end > 0x1_0000_0000,
        format!("the bank ends at {end:#x}, below 4 GiB"),
    )?;
    Ok(())
}

/// Two RAM banks: QEMU virt makes one /memory node per NUMA node (checked by the harness test
/// `numa_gives_two_memory_banks`). Unequal sizes, so equal-bank assumptions show. The two nodes
/// touch, so Ferrite may print them as one `memory:` line; reserved regions must lie in RAM.
#[test]
fn virt_two_memory_banks() -> Result<()> {
    let q = virt("virt-numa")
        .gic(3)
        .cpus(4)
        .topology("sockets=2,cores=2")
        .memory("2G")
        .args(["-object", "memory-backend-ram,id=m0,size=512M"])
        .args(["-object", "memory-backend-ram,id=m1,size=1536M"])
        .args([
            "-numa",
            "node,memdev=m0,cpus=0-1",
            "-numa",
            "node,memdev=m1,cpus=2-3",
        ]);
    let banks = [
        Range::new(0x4000_0000, 0x5fff_ffff),
        Range::new(0x6000_0000, 0xbfff_ffff),
    ];
    let out = boot(
        q,
        &Expected {
            cpus: 4,
            gic: Some(3),
            banks: &banks,
        },
    )?;
    check_reserved_in_banks(&out, &banks)?;
    Ok(())
}

/// The GICv3 scenario with the console read from a pty, as a board runner reads a tty.
#[test]
fn virt_gicv3_pty() -> Result<()> {
    let q = virt("virt-pty")
        .gic(3)
        .cpus(4)
        .memory("1G")
        .serial(Serial::Pty);
    let expected = Expected {
        cpus: 4,
        gic: Some(3),
        banks: &[Range::new(0x4000_0000, 0x7fff_ffff)],
    };
    boot(q, &expected)?;
    Ok(())
}

/// raspi4b: 4 CPUs (spin-table), GIC-400. QEMU's DTB describes 960 MiB at 0 as /memory, and puts
/// `-append` in /chosen/bootargs; without PSCI, `poweroff` exits through semihosting.
#[test]
fn raspi4b_4cpus() -> Result<()> {
    let q = Qemu::raspi4b().label("rpi4").bootargs(BOOTARGS);
    q.require_image()?;
    let mut run = match q.spawn() {
        Err(e) if e.kind() == ErrorKind::DtbUnavailable => {
            eprintln!("\n!!! SKIPPED raspi4b_4cpus: the raspi4b DTB is unavailable:\n{e}\n");
            return Ok(());
        }
        run => run?,
    };
    run.expect(READY, BOOT_TIMEOUT)?;
    let out = run.wait_exit(EXIT_TIMEOUT)?;
    check_boot(
        &out,
        &Expected {
            cpus: 4,
            gic: Some(2),
            banks: &[Range::new(0, 0x3bff_ffff)],
        },
    )?;
    out.ensure(
        out.console.contains(POWER_OFF),
        format!("no `{POWER_OFF}` line"),
    )?;
    Ok(())
}
