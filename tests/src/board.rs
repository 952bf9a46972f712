//! A board on the bench as a [`Target`]: a Raspberry Pi 4 (or any board Ferrite boots on) whose
//! console is a serial device (a USB serial adapter on `/dev/ttyUSB0`), with shell commands to
//! install an image on it and to switch it off and on. This is what the hardware-in-loop
//! runner (`hil --target serial`) drives; docs/rpi4.md shows a rig.
//!
//! A boot ([`Target::boot`]) runs, in this order:
//! 1. `power_off` (if configured), so the install never races a running board;
//! 2. `install` (if configured) with the image and boot options in the environment (below), e.g.
//!    `tools/hil-install-netboot.sh /srv/tftp/<serial>` or a script driving an SD-card mux;
//! 3. opens the serial device raw at `baud` and discards what is queued on it, so the console
//!    is read from the first byte of this boot and nothing of an earlier one is;
//! 4. `power_cycle`, which restarts the board and returns (a USB relay, `uhubctl`, a PoE switch).
//!
//! Killing the run (a scenario ends, a timeout, a panic unwinding) runs `power_off` and stops the
//! console reader. Commands run with `sh -c` in the workspace root, each with a time limit, their
//! whole process group killed if they overrun; their output goes to the run's diagnostics.
//! The environment of every command:
//!
//! | variable | value |
//! |---|---|
//! | `FERRITE_IMAGE` | absolute path of the image to boot (`build/rpi4/ferrite-dom0.bin`) |
//! | `FERRITE_BOOTARGS` | Ferrite's boot options for this boot (one line) |
//! | `FERRITE_CMDLINE` | a file holding them, ready to be copied as `cmdline.txt` |
//! | `FERRITE_BOARD` | the board's `name` |
//! | `FERRITE_SERIAL` | the serial device |
//!
//! Configuration: a file of `key = value` lines (`#` starts a comment) and/or environment variables
//! `FERRITE_HIL_<KEY>` (upper case), which override the file. Keys: `name` (default `board`),
//! `serial` (required), `baud` (default 115200; `none` for a pty), `power_cycle` (required),
//! `power_off`, `install`, `images` (the directory under `build/` holding the images, default
//! `rpi4`), `startup` (seconds the board may take before Ferrite starts: firmware, network
//! boot; default 30) and `command_timeout` (seconds per command, default 120).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, ErrorKind, Result};
use crate::paths;
use crate::run::{Exit, Machine, Run};
use crate::serial;
use crate::target::{Boot, Target};

/// Every key a configuration may set.
pub const KEYS: [&str; 9] = [
    "name",
    "serial",
    "baud",
    "power_cycle",
    "power_off",
    "install",
    "images",
    "startup",
    "command_timeout",
];

/// How the harness reaches a board.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardConfig {
    /// Names the board in labels and in `FERRITE_BOARD`.
    pub name: String,
    /// The serial device its console is on.
    pub serial: PathBuf,
    /// The line speed; `None` leaves it alone (a pty has none).
    pub baud: Option<u32>,
    /// Restarts the board (off, then on) and returns.
    pub power_cycle: String,
    /// Switches it off; without it a board keeps running after a run, until the next cycle.
    pub power_off: Option<String>,
    /// Puts the image and boot options where the board boots from.
    pub install: Option<String>,
    /// The directory under `$FERRITE_IMAGE_DIR` with the images (`rpi4`).
    pub images: String,
    /// What the board may take before Ferrite starts, added to each scenario's timeout.
    pub startup: Duration,
    /// The time limit of each command.
    pub command_timeout: Duration,
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Start, message)
}

impl BoardConfig {
    /// The settings of `text` (a configuration file's contents; `origin` names it in errors).
    pub fn parse_settings(text: &str, origin: &str) -> Result<BTreeMap<String, String>> {
        let mut settings = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(config_error(format!(
                    "{origin}:{}: `{line}` is not `key = value`",
                    n + 1
                )));
            };
            let key = key.trim();
            if !KEYS.contains(&key) {
                return Err(config_error(format!(
                    "{origin}:{}: unknown key `{key}` (keys: {})",
                    n + 1,
                    KEYS.join(", ")
                )));
            }
            settings.insert(key.to_string(), value.trim().to_string());
        }
        Ok(settings)
    }

    /// The configuration from the file `file` (if any), overridden by `FERRITE_HIL_<KEY>`
    /// environment variables.
    pub fn load(file: Option<&Path>) -> Result<BoardConfig> {
        let mut settings = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    config_error(format!(
                        "cannot read the board configuration {}: {e}",
                        path.display()
                    ))
                })?;
                Self::parse_settings(&text, &path.display().to_string())?
            }
            None => BTreeMap::new(),
        };
        for key in KEYS {
            let var = format!("FERRITE_HIL_{}", key.to_uppercase());
            if let Ok(value) = std::env::var(&var) {
                settings.insert(key.to_string(), value);
            }
        }
        Self::from_settings(&settings)
    }

    /// The configuration from its settings, with defaults; says which required key is missing.
    pub fn from_settings(settings: &BTreeMap<String, String>) -> Result<BoardConfig> {
        let get = |key: &str| settings.get(key).filter(|v| !v.is_empty()).cloned();
        let required = |key: &str| {
            get(key).ok_or_else(|| {
                config_error(format!(
                    "the board configuration has no `{key}`: set `{key} = ...` in the file given \
                     with --config, or FERRITE_HIL_{}",
                    key.to_uppercase()
                ))
            })
        };
        let seconds = |key: &str, default: u64| -> Result<Duration> {
            match get(key) {
                None => Ok(Duration::from_secs(default)),
                Some(v) => v
                    .parse::<u64>()
                    .map(Duration::from_secs)
                    .map_err(|_| config_error(format!("`{key} = {v}`: a whole number of seconds"))),
            }
        };
        let baud = match get("baud").as_deref() {
            None => Some(115_200),
            Some("none") => None,
            Some(v) => Some(v.parse().map_err(|_| {
                config_error(format!("`baud = {v}`: a number (e.g. 115200) or `none`"))
            })?),
        };
        Ok(BoardConfig {
            name: get("name").unwrap_or_else(|| "board".into()),
            serial: PathBuf::from(required("serial")?),
            baud,
            power_cycle: required("power_cycle")?,
            power_off: get("power_off"),
            install: get("install"),
            images: get("images").unwrap_or_else(|| "rpi4".into()),
            startup: seconds("startup", 30)?,
            command_timeout: seconds("command_timeout", 120)?,
        })
    }
}

/// The output of a command that ran to its end.
#[derive(Debug)]
pub struct CommandOutput {
    pub status: Exit,
    /// Its standard output and error, interleaved.
    pub output: String,
}

/// A scratch file name unique in this process.
fn scratch_file(what: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("ferrite-hil-{}-{n}-{what}", std::process::id()))
}

/// Runs `command` with `sh -c` in the workspace root with `env` added, at most `timeout`; on a
/// timeout its whole process group is killed. Its output goes to a file, not a pipe: a command
/// that leaves a process running (a board's stand-in) must not keep the harness waiting for EOF.
pub fn run_command(
    command: &str,
    env: &[(String, String)],
    timeout: Duration,
) -> std::io::Result<CommandOutput> {
    let log = scratch_file("command.log");
    let out = File::create(&log)?;
    let result = (|| {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(command)
            .current_dir(paths::workspace_root())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out.try_clone()?)
            .process_group(0);
        let mut child = cmd.spawn()?;
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                // SAFETY: kill(2) on the child's process group (its pid: process_group(0)).
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut output = String::new();
        File::open(&log)?.read_to_string(&mut output)?;
        match status {
            None => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("did not finish within {timeout:?} and was killed; its output:\n{output}"),
            )),
            Some(status) => Ok(CommandOutput {
                status: match (status.code(), status.signal()) {
                    (Some(c), _) => Exit::Code(c),
                    (None, s) => Exit::Signal(s.unwrap_or(0)),
                },
                output,
            }),
        }
    })();
    let _ = std::fs::remove_file(&log);
    result
}

/// A board reached through a serial device and commands: see the module documentation.
#[derive(Clone, Debug)]
pub struct SerialBoard {
    config: BoardConfig,
}

/// Appends a command's story to the diagnostics.
fn note(diagnostics: &Mutex<String>, text: &str) {
    let mut d = diagnostics.lock().unwrap_or_else(|e| e.into_inner());
    d.push_str(text);
    if !text.ends_with('\n') {
        d.push('\n');
    }
}

impl SerialBoard {
    pub fn new(config: BoardConfig) -> SerialBoard {
        SerialBoard { config }
    }

    pub fn config(&self) -> &BoardConfig {
        &self.config
    }

    fn env(&self, image: Option<&Path>, bootargs: &str, cmdline: &Path) -> Vec<(String, String)> {
        let mut env = vec![
            ("FERRITE_BOOTARGS".to_string(), bootargs.to_string()),
            ("FERRITE_CMDLINE".into(), cmdline.display().to_string()),
            ("FERRITE_BOARD".into(), self.config.name.clone()),
            (
                "FERRITE_SERIAL".into(),
                self.config.serial.display().to_string(),
            ),
        ];
        if let Some(image) = image {
            env.push(("FERRITE_IMAGE".into(), image.display().to_string()));
        }
        env
    }

    /// Runs the `what` command (`power_cycle`, ...); its output goes to `diagnostics`. A failure
    /// (non-zero status, timeout, cannot start) is an error naming the command.
    fn command(
        &self,
        what: &str,
        command: &str,
        env: &[(String, String)],
        diagnostics: &Mutex<String>,
    ) -> Result<()> {
        let result = run_command(command, env, self.config.command_timeout);
        let fail = |why: String| {
            Error::new(
                ErrorKind::Start,
                format!("{}: the {what} command `{command}` {why}", self.config.name),
            )
            .with_context(Context {
                target: self.describe(),
                console: String::new(),
                diagnostics: diagnostics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            })
        };
        match result {
            Ok(out) => {
                note(
                    diagnostics,
                    &format!("hil: {what}: `{command}`: {}\n{}", out.status, out.output),
                );
                if out.status.success() {
                    Ok(())
                } else {
                    Err(fail(format!("failed ({}):\n{}", out.status, out.output)))
                }
            }
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// Steps 1-4 of the module documentation; `image` is `None` for [`Target::start`] (boot
    /// whatever is installed).
    fn power_up(
        &self,
        label: String,
        image: Option<&Path>,
        bootargs: &str,
        timeout: Duration,
    ) -> Result<Run> {
        let c = &self.config;
        let diagnostics = Arc::new(Mutex::new(String::new()));
        let cmdline = scratch_file("cmdline.txt");
        std::fs::write(&cmdline, format!("{bootargs}\n"))?;
        let env = self.env(image, bootargs, &cmdline);
        let result = (|| {
            if let Some(off) = &c.power_off {
                self.command("power-off", off, &env, &diagnostics)?;
            }
            if let (Some(install), Some(_)) = (&c.install, image) {
                self.command("install", install, &env, &diagnostics)?;
            }
            let tty = serial::open_raw(&c.serial, c.baud).map_err(|e| {
                Error::new(
                    ErrorKind::Start,
                    format!(
                        "{}: cannot open the serial device {}: {e} (is the USB serial adapter \
                         plugged in, and may this user open it, e.g. as a member of `dialout`?)",
                        c.name,
                        c.serial.display()
                    ),
                )
            })?;
            // SAFETY: tcflush on an open terminal fd.
            unsafe { libc::tcflush(tty.as_raw_fd(), libc::TCIFLUSH) };
            let stop = Arc::new(AtomicBool::new(false));
            let machine = BoardMachine {
                name: c.name.clone(),
                power_off: c.power_off.clone(),
                env: env.clone(),
                command_timeout: c.command_timeout,
                exit: None,
                stop: stop.clone(),
                diagnostics: diagnostics.clone(),
                tty: tty.try_clone()?,
            };
            let console = StoppableTty { tty, stop };
            if let Err(e) = self.command("power-cycle", &c.power_cycle, &env, &diagnostics) {
                drop(machine); // powers the board off again
                return Err(e);
            }
            Ok(Run::start(
                label,
                self.describe(),
                Box::new(machine),
                Box::new(console),
                c.startup + timeout,
            ))
        })();
        let _ = std::fs::remove_file(&cmdline);
        result
    }
}

impl Target for SerialBoard {
    fn describe(&self) -> String {
        let c = &self.config;
        let mut d = format!(
            "board {}: console {} at {}, power-cycle `{}`",
            c.name,
            c.serial.display(),
            c.baud
                .map_or("its own speed".into(), |b| format!("{b} 8N1")),
            c.power_cycle
        );
        if let Some(off) = &c.power_off {
            d.push_str(&format!(", power-off `{off}`"));
        }
        if let Some(install) = &c.install {
            d.push_str(&format!(", install `{install}`"));
        }
        d
    }

    /// Power-cycles the board into whatever is installed.
    fn start(&self) -> Result<Run> {
        self.power_up(
            self.config.name.clone(),
            None,
            "",
            crate::qemu::DEFAULT_TIMEOUT,
        )
    }

    fn boot(&self, boot: &Boot) -> Result<Run> {
        let image = boot.image.path(&self.config.images);
        if !image.is_file() {
            return Err(Error::new(
                ErrorKind::ImageMissing,
                format!(
                    "the image {} is missing: run `make build BOARD={}`",
                    image.display(),
                    self.config.images
                ),
            ));
        }
        let image = image.canonicalize()?;
        self.power_up(
            format!("{}-{}", self.config.name, boot.label),
            Some(&image),
            &boot.bootargs,
            boot.timeout,
        )
    }
}

/// The serial console, read until the run is killed: a board's serial device never reaches an
/// end by itself, so the reader polls and stops when the machine says so (otherwise its thread
/// would keep reading, and steal the next run's first lines).
struct StoppableTty {
    tty: File,
    stop: Arc<AtomicBool>,
}

impl Read for StoppableTty {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Ok(0);
            }
            let mut pfd = libc::pollfd {
                fd: self.tty.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, 100) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                continue;
            }
            if pfd.revents & libc::POLLIN != 0 {
                return self.tty.read(buf);
            }
            // Hung up or failed (an adapter unplugged): the console has ended.
            return Ok(0);
        }
    }
}

/// The lifecycle of a powered board: it never stops by itself; killing it powers it off.
struct BoardMachine {
    name: String,
    power_off: Option<String>,
    env: Vec<(String, String)>,
    command_timeout: Duration,
    exit: Option<Exit>,
    stop: Arc<AtomicBool>,
    diagnostics: Arc<Mutex<String>>,
    tty: File,
}

impl Machine for BoardMachine {
    fn try_wait(&mut self) -> std::io::Result<Option<Exit>> {
        Ok(self.exit)
    }

    /// Runs `power_off` once; the run then counts as killed (`Exit::Signal(9)`).
    fn kill(&mut self) {
        if self.exit.is_some() {
            return;
        }
        self.exit = Some(Exit::Signal(9));
        if let Some(off) = &self.power_off {
            let text = match run_command(off, &self.env, self.command_timeout) {
                Ok(out) => format!("hil: power-off: `{off}`: {}\n{}", out.status, out.output),
                Err(e) => format!(
                    "hil: power-off: `{off}` failed: {e} ({} may still be on)",
                    self.name
                ),
            };
            note(&self.diagnostics, &text);
        }
        self.stop.store(true, Ordering::SeqCst);
    }

    fn diagnostics(&self) -> String {
        self.diagnostics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn send_console(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tty.write_all(bytes)?;
        self.tty.flush()
    }
}

impl Drop for BoardMachine {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<BTreeMap<String, String>> {
        BoardConfig::parse_settings(text, "test.conf")
    }

    #[test]
    fn a_full_configuration() {
        let s = settings(
            "# the Pi on the left\nname = pi4-a\nserial = /dev/ttyUSB0\nbaud = 921600\n\
             power_cycle = uhubctl -l 1-1 -p 2 -a cycle\npower_off = uhubctl -l 1-1 -p 2 -a off\n\
             install = tools/hil-install-netboot.sh /srv/tftp/abcd1234\nstartup = 45\n\
             command_timeout = 10\n",
        )
        .unwrap();
        let c = BoardConfig::from_settings(&s).unwrap();
        assert_eq!(c.name, "pi4-a");
        assert_eq!(c.serial, Path::new("/dev/ttyUSB0"));
        assert_eq!(c.baud, Some(921_600));
        assert_eq!(c.power_cycle, "uhubctl -l 1-1 -p 2 -a cycle");
        assert_eq!(c.power_off.as_deref(), Some("uhubctl -l 1-1 -p 2 -a off"));
        assert_eq!(
            c.install.as_deref(),
            Some("tools/hil-install-netboot.sh /srv/tftp/abcd1234")
        );
        assert_eq!(c.images, "rpi4");
        assert_eq!(c.startup, Duration::from_secs(45));
        assert_eq!(c.command_timeout, Duration::from_secs(10));
    }

    #[test]
    fn defaults_and_a_pty() {
        let s = settings("serial=/dev/pts/9\npower_cycle=true\nbaud=none").unwrap();
        let c = BoardConfig::from_settings(&s).unwrap();
        assert_eq!((c.name.as_str(), c.baud), ("board", None));
        assert_eq!((c.power_off, c.install), (None, None));
        assert_eq!(c.startup, Duration::from_secs(30));
    }

    #[test]
    fn mistakes_are_named() {
        let e = settings("serial /dev/ttyUSB0").unwrap_err();
        assert!(e.message().contains("test.conf:1"), "{e}");
        let e = settings("serail = /dev/ttyUSB0").unwrap_err();
        assert!(e.message().contains("unknown key `serail`"), "{e}");
        let e =
            BoardConfig::from_settings(&settings("serial = /dev/ttyUSB0").unwrap()).unwrap_err();
        assert!(e.message().contains("no `power_cycle`"), "{e}");
        assert!(e.message().contains("FERRITE_HIL_POWER_CYCLE"), "{e}");
        let e = BoardConfig::from_settings(
            &settings("serial=/x\npower_cycle=true\nbaud=fast").unwrap(),
        )
        .unwrap_err();
        assert!(e.message().contains("`baud = fast`"), "{e}");
    }

    #[test]
    fn commands_report_status_output_and_timeouts() {
        let env = [("FERRITE_BOOTARGS".to_string(), "a b".to_string())];
        let out = run_command(
            "echo \"$FERRITE_BOOTARGS\"; echo err >&2; exit 3",
            &env,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status, Exit::Code(3));
        assert_eq!(out.output, "a b\nerr\n");
        // Runs in the workspace root, so `tools/...` works in a configuration.
        let out = run_command("test -x tools/mk-sdcard.sh", &[], Duration::from_secs(10)).unwrap();
        assert!(out.status.success());
        let started = Instant::now();
        let e = run_command("sleep 30", &[], Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(10));
        // A process left running does not keep the command from finishing.
        let started = Instant::now();
        let out = run_command("sleep 5 & echo $!", &[], Duration::from_secs(10)).unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        let pid: i32 = out.output.trim().parse().unwrap();
        // SAFETY: kill(2); the test leaves no process behind.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}
