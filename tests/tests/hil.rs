//! The hardware-in-loop runner, proved without hardware: every scenario of
//! `ferrite_systests::scenarios` passes on QEMU virt and raspi4b with the console read from
//! QEMU's pty (as from a board's `/dev/ttyUSB0`), and on a stand-in board: a
//! [`SerialBoard`] whose serial device is one end of a null-modem pty pair, whose install
//! command writes the Pi's network-boot files and whose power commands start and stop a QEMU
//! raspi4b booting those files (tools/hil-qemu-board.sh). Scenarios can fail, board mistakes
//! say what is wrong, the `hil` binary prints its table and exit status, and no QEMU outlives
//! its run.
//!
//! Needs `build/<board>/ferrite-dom0.bin` (`make build`) and, for raspi4b, Debian's DTB and (for
//! the stand-in board's network-boot files) the Pi firmware, fetched when missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferrite_systests::board::{BoardConfig, SerialBoard};
use ferrite_systests::nullmodem::NullModem;
use ferrite_systests::scenarios::{self, Report};
use ferrite_systests::{
    Board, Boot, ErrorKind, Image, Qemu, Result, Run, Serial, Target, fake, paths, sdcard,
};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("hil")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs every scenario on `target`; fails with the table when one fails.
fn all_pass(target: &dyn Target) -> Vec<Report> {
    eprintln!("target: {}", target.describe());
    let all: Vec<_> = scenarios::ALL.iter().collect();
    let reports = scenarios::run_all(target, &all);
    let table = scenarios::table(&reports);
    eprint!("{table}");
    assert!(reports.iter().all(|r| r.result.is_ok()), "{table}");
    assert_eq!(reports.len(), 5);
    reports
}

/// Whether process `pid` still runs (a zombie does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// Live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(needle) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn every_scenario_passes_on_virt_through_a_pty() {
    let target = scenarios::qemu(Board::Virt, Serial::Pty).label("hil-virt");
    // The console is QEMU's pty, opened like a tty: not its stdio.
    assert!(target.describe().contains("-serial pty"));
    assert!(!target.describe().contains("-serial stdio"));
    all_pass(&target);
}

#[test]
fn every_scenario_passes_on_raspi4b_through_a_pty() {
    if let Err(e) = paths::rpi4_dtb() {
        assert_eq!(e.kind(), ErrorKind::DtbUnavailable, "{e}");
        eprintln!("\n!!! SKIPPED: the raspi4b DTB is unavailable:\n{e}\n");
        return;
    }
    let target = scenarios::qemu(Board::Raspi4b, Serial::Pty).label("hil-raspi4b");
    assert!(target.describe().contains("-serial pty"));
    all_pass(&target);
}

/// The stand-in board of the module documentation, configured as a rig's file would be.
struct StandIn {
    board: SerialBoard,
    dir: PathBuf,
    _cable: NullModem,
}

fn stand_in(name: &str, extra: &[(&str, String)]) -> StandIn {
    let dir = scratch(name);
    let cable = NullModem::new().expect("a null-modem pty pair");
    let mut settings: BTreeMap<String, String> = [
        ("name", name.to_string()),
        ("serial", cable.host_end().display().to_string()),
        ("baud", "115200".into()),
        (
            "power_cycle",
            format!(
                "FERRITE_HIL_QEMU_ICOUNT=1 tools/hil-qemu-board.sh on {} {}",
                dir.display(),
                cable.board_end().display()
            ),
        ),
        (
            "power_off",
            format!("tools/hil-qemu-board.sh off {}", dir.display()),
        ),
        (
            "install",
            format!("tools/hil-install-netboot.sh {}", dir.display()),
        ),
        ("startup", "20".into()),
        ("command_timeout", "60".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in extra {
        settings.insert(k.to_string(), v.clone());
    }
    let config = BoardConfig::from_settings(&settings).unwrap_or_else(|e| panic!("{e}"));
    StandIn {
        board: SerialBoard::new(config),
        dir,
        _cable: cable,
    }
}

#[test]
fn every_scenario_passes_on_a_serial_board() {
    paths::rpi4_dtb().unwrap_or_else(|e| panic!("{e}"));
    sdcard::ensure_pi_boot_files().unwrap_or_else(|e| panic!("{e}"));
    let rig = stand_in("standin", &[]);
    all_pass(&rig.board);

    // The install command wrote the network-boot files of the last scenario...
    let image = paths::image_dir().join("rpi4/ferrite-dom0.bin");
    assert!(
        std::fs::read(rig.dir.join("ferrite-dom0.bin")).unwrap() == std::fs::read(image).unwrap()
    );
    let cmdline = std::fs::read_to_string(rig.dir.join("cmdline.txt")).unwrap();
    assert!(cmdline.contains("cmd=evil-crash"), "cmdline.txt: {cmdline}");
    // ...and each run ended by switching the board off: no QEMU is left.
    assert!(
        !rig.dir.join("qemu.pid").exists(),
        "the stand-in was not switched off"
    );
    let dir = rig.dir.display().to_string();
    assert_eq!(
        processes_mentioning(&dir),
        Vec::<u32>::new(),
        "QEMU left running"
    );
}

/// The board's console can be typed on: bytes sent through the run reach the board's tty.
#[test]
fn a_serial_board_takes_console_input() -> Result<()> {
    let cable = NullModem::new()?;
    let dir = scratch("typist");
    let mut settings = BTreeMap::new();
    settings.insert("serial".into(), cable.host_end().display().to_string());
    settings.insert("baud".into(), "none".into());
    // A "board" that prints a banner and then echoes a line back, upper-cased.
    let script = dir.join("board.sh");
    std::fs::write(
        &script,
        "exec <\"$1\" >\"$1\"; echo 'ferrite: ready: 1 cpus, 1 MiB free'; read -r line; \
         echo \"got $line\" | tr a-z A-Z",
    )?;
    settings.insert(
        "power_cycle".into(),
        format!(
            "setsid sh {} {} & echo $! > {}/pid",
            script.display(),
            cable.board_end().display(),
            dir.display()
        ),
    );
    settings.insert(
        "power_off".into(),
        format!(
            "kill $(cat {0}/pid) 2>/dev/null; rm -f {0}/pid",
            dir.display()
        ),
    );
    let board = SerialBoard::new(BoardConfig::from_settings(&settings)?);
    let mut run = board.start()?;
    run.expect("ferrite: ready:", Duration::from_secs(10))?;
    run.send("hello\n")?;
    run.expect("GOT HELLO", Duration::from_secs(10))?;
    let out = run.stop();
    assert!(!dir.join("pid").exists(), "power_off did not run");
    assert_eq!(
        out.console.lines().last().map(String::as_str),
        Some("GOT HELLO")
    );
    Ok(())
}

#[test]
fn serial_board_mistakes_say_what_is_wrong() {
    let dir = scratch("mistakes");
    let marker = dir.join("switched-off");
    let base = |serial: &str, cycle: &str| {
        let mut s = BTreeMap::new();
        s.insert("name".to_string(), "pi".to_string());
        s.insert("serial".to_string(), serial.to_string());
        s.insert("power_cycle".to_string(), cycle.to_string());
        s.insert(
            "power_off".to_string(),
            format!("touch {}", marker.display()),
        );
        s
    };
    let boot = Boot::new("t", Image::WithDomains, "loglevel=info");

    // No such serial device: named, with what to check.
    let board =
        SerialBoard::new(BoardConfig::from_settings(&base("/dev/ttyUSB99", "true")).unwrap());
    let e = board.boot(&boot).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Start);
    assert!(
        e.message().contains("/dev/ttyUSB99") && e.message().contains("dialout"),
        "{e}"
    );

    // A failing power-cycle command: its status and output, and the board switched off again.
    let cable = NullModem::new().unwrap();
    let host = cable.host_end().display().to_string();
    let board = SerialBoard::new(
        BoardConfig::from_settings(&base(&host, "echo relay not found >&2; exit 7")).unwrap(),
    );
    let _ = std::fs::remove_file(&marker);
    let e = board.boot(&boot).unwrap_err();
    assert!(
        e.message().contains("power-cycle command")
            && e.message().contains("exit status 7")
            && e.message().contains("relay not found"),
        "{e}"
    );
    assert!(
        marker.exists(),
        "the board was not switched off after the failure"
    );

    // An install command that fails stops the boot before the board is powered.
    let mut s = base(&host, &format!("touch {}/powered", dir.display()));
    s.insert("install".into(), "echo no tftp dir >&2; false".into());
    let board = SerialBoard::new(BoardConfig::from_settings(&s).unwrap());
    let e = board.boot(&boot).unwrap_err();
    assert!(
        e.message().contains("install command") && e.message().contains("no tftp dir"),
        "{e}"
    );
    assert!(
        !dir.join("powered").exists(),
        "powered after a failed install"
    );

    // An image that is not built.
    let mut s = base(&host, "true");
    s.insert("images".into(), "no-such-board".into());
    let board = SerialBoard::new(BoardConfig::from_settings(&s).unwrap());
    let e = board.boot(&boot).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ImageMissing, "{e}");
    assert!(
        e.message().contains("make build BOARD=no-such-board"),
        "{e}"
    );
}

/// A target booting a tiny image that prints `text` in place of Ferrite: the scenarios must fail
/// on it, each saying why.
struct Impostor {
    text: &'static str,
}

impl Target for Impostor {
    fn describe(&self) -> String {
        format!("an impostor printing {:?}", self.text)
    }

    fn start(&self) -> Result<Run> {
        self.boot(&Boot::new("impostor", Image::Ferrite, ""))
    }

    fn boot(&self, boot: &Boot) -> Result<Run> {
        let image = fake::write_image(
            &scratch("impostor"),
            Board::Virt.uart_base(),
            self.text,
            None,
        )?;
        Qemu::virt()
            .cpus(2)
            .image(image)
            .serial(Serial::Pty)
            .timeout(Duration::from_secs(20))
            .label(format!("impostor-{}", boot.label))
            .spawn()
    }
}

#[test]
fn scenarios_fail_on_a_firmware_that_is_not_right() {
    let all: Vec<_> = scenarios::ALL.iter().collect();
    // A panic ends every scenario at once.
    let reports = scenarios::run_all(
        &Impostor {
            text: "ferrite: PANIC on cpu0 at src/boot.rs:1: impostor\n",
        },
        &all,
    );
    let table = scenarios::table(&reports);
    assert!(table.contains("0 of 5 scenarios passed"), "{table}");
    for r in &reports {
        let e = r.result.as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked, "{}: {e}", r.name);
    }
    // A ready line that does not match the CPUs brought online fails the boot check.
    let reports = scenarios::run_all(
        &Impostor {
            text: "[    0.1] cpu0 INFO  memory: 0x40000000-0x7fffffff (1024 MiB)\n\
                   [    0.2] cpu0 INFO  gic: v3\n\
                   [    0.3] cpu0 INFO  cpu0 online (mpidr 0x0)\n\
                   ferrite: ready: 2 cpus, 1000 MiB free\n",
        },
        &[scenarios::find("boot").unwrap()],
    );
    let e = reports[0].result.as_ref().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Check, "{e}");
    assert!(e.message().contains("the ready line says 2 cpus"), "{e}");
}

fn hil(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hil"));
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("FERRITE_HIL_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("run hil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_hil_binary_prints_a_table_and_an_exit_status() {
    let (code, out, _) = hil(&["--list"]);
    assert_eq!(code, 0);
    for s in &scenarios::ALL {
        assert!(out.contains(s.name), "{out}");
    }
    let (code, out, err) = hil(&[
        "--target",
        "qemu-pty",
        "--board",
        "virt",
        "--only",
        "domu-hello",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("-serial pty"), "{out}");
    assert!(out.contains("domu-hello         pass"), "{out}");
    assert!(out.contains("1 of 1 scenarios passed"), "{out}");

    let (code, _, err) = hil(&["--only", "nope"]);
    assert_eq!(code, 2);
    assert!(err.contains("no scenario `nope`"), "{err}");
    let dir = scratch("hil-bin");
    let config = dir.join("board.conf");
    std::fs::write(&config, "serial = /dev/ttyUSB0\n").unwrap();
    let (code, _, err) = hil(&["--target", "serial", "--config", config.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("no `power_cycle`"), "{err}");
    // A board whose serial device is missing: the scenarios fail, the status says so.
    std::fs::write(&config, "serial = /dev/ttyUSB99\npower_cycle = true\n").unwrap();
    let (code, out, _) = hil(&[
        "--target",
        "serial",
        "--config",
        config.to_str().unwrap(),
        "--only",
        "boot",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("boot               FAIL") && out.contains("/dev/ttyUSB99"),
        "{out}"
    );
}
