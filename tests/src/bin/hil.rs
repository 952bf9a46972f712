//! `hil`: the hardware-in-loop runner. Runs the scenarios of `ferrite_systests::scenarios` on
//! one target and prints a pass/fail table; exits 0 when every scenario passed, 1 when one
//! failed, 2 on a usage or configuration error.
//!
//! ```text
//! hil --target qemu-pty [--board virt|rpi4]       QEMU, console read from its pty
//! hil --target qemu [--board virt|rpi4]           QEMU, console on its stdio
//! hil --target serial [--config FILE]             a board (FERRITE_HIL_* variables override FILE)
//!     [--only NAME]...  [--list]
//! ```
//!
//! `make hil` runs it (`HIL_ARGS=...`); docs/rpi4.md shows a board's configuration and a CI job.

use std::path::PathBuf;
use std::process::ExitCode;

use ferrite_systests::board::{BoardConfig, SerialBoard};
use ferrite_systests::scenarios::{self, Scenario};
use ferrite_systests::target::{Image, Target};
use ferrite_systests::{Board, Serial};

const USAGE: &str = "usage: hil --target qemu-pty|qemu|serial [--board virt|rpi4] [--config FILE] \
                     [--only NAME]... [--list]";

struct Args {
    target: String,
    board: Board,
    config: Option<PathBuf>,
    only: Vec<String>,
    list: bool,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        target: "qemu-pty".into(),
        board: Board::Virt,
        config: None,
        only: Vec::new(),
        list: false,
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--target" => a.target = value("--target")?,
            "--board" => {
                a.board = match value("--board")?.as_str() {
                    "virt" | "qemu-virt" => Board::Virt,
                    "rpi4" | "raspi4b" => Board::Raspi4b,
                    other => return Err(format!("unknown board `{other}` (virt or rpi4)")),
                }
            }
            "--config" => a.config = Some(PathBuf::from(value("--config")?)),
            "--only" => a.only.push(value("--only")?),
            "--list" => a.list = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

fn target(a: &Args) -> Result<Box<dyn Target>, String> {
    match a.target.as_str() {
        // The image the scenarios boot, so that the printed command line shows it.
        "qemu-pty" | "qemu" => {
            let image = Image::WithDomains.path(a.board.dir_name());
            let serial = if a.target == "qemu" {
                Serial::Stdio
            } else {
                Serial::Pty
            };
            Ok(Box::new(scenarios::qemu(a.board, serial).image(image)))
        }
        "serial" => {
            let config = BoardConfig::load(a.config.as_deref()).map_err(|e| e.to_string())?;
            Ok(Box::new(SerialBoard::new(config)))
        }
        other => Err(format!(
            "unknown target `{other}` (qemu-pty, qemu or serial)"
        )),
    }
}

fn selected(only: &[String]) -> Result<Vec<&'static Scenario>, String> {
    if only.is_empty() {
        return Ok(scenarios::ALL.iter().collect());
    }
    only.iter()
        .map(|name| {
            scenarios::find(name).ok_or_else(|| {
                let names: Vec<&str> = scenarios::ALL.iter().map(|s| s.name).collect();
                format!("no scenario `{name}` (scenarios: {})", names.join(", "))
            })
        })
        .collect()
}

fn main() -> ExitCode {
    let usage_error = |message: String| {
        if !message.is_empty() {
            eprintln!("hil: {message}");
        }
        eprintln!("{USAGE}");
        ExitCode::from(2)
    };
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => return usage_error(e),
    };
    let chosen = match selected(&args.only) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    if args.list {
        for s in &chosen {
            println!("{:<18} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let target = match target(&args) {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    println!("hil: target: {}", target.describe());
    let reports = scenarios::run_all(target.as_ref(), &chosen);
    print!("{}", scenarios::table(&reports));
    if reports.iter().all(|r| r.result.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
