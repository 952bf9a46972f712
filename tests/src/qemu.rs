//! The QEMU target: a configuration builder and the running QEMU process.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Context, Error, ErrorKind, Result};
use crate::paths;
use crate::process::{QemuMachine, die_with_parent};
use crate::run::{Machine, Run};
use crate::serial;
use crate::target::{Boot, Target};

/// The default overall timeout of a run, after which QEMU is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A QEMU machine Ferrite supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    /// `-M virt,virtualization=on`.
    Virt,
    /// `-M raspi4b`, with Debian's `bcm2711-rpi-4-b.dtb`.
    Raspi4b,
}

impl Board {
    /// The directory of its image under `$FERRITE_IMAGE_DIR`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Board::Virt => "qemu-virt",
            Board::Raspi4b => "rpi4",
        }
    }

    /// The PL011 the console is on (QEMU's first serial port).
    pub fn uart_base(self) -> u64 {
        match self {
            Board::Virt => 0x0900_0000,
            Board::Raspi4b => 0xfe20_1000,
        }
    }

    /// The default image: `$FERRITE_IMAGE_DIR/<board>/ferrite.bin`.
    pub fn default_image(self) -> PathBuf {
        paths::image_dir().join(self.dir_name()).join("ferrite.bin")
    }
}

/// How the console reaches the harness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serial {
    /// `-serial stdio -monitor none`: the console is QEMU's stdout.
    Stdio,
    /// `-serial pty`: QEMU starts paused (`-S`), the harness opens the pty it reports, like a
    /// board runner opens `/dev/ttyUSB0`, and then resumes QEMU through the monitor on stdio.
    Pty,
}

/// A QEMU configuration. `Qemu::virt().cpus(4).gic(3).memory("1G").bootargs("...").spawn()`.
#[derive(Clone, Debug)]
pub struct Qemu {
    board: Board,
    cpus: u32,
    topology: Option<String>,
    gic: u32,
    memory: String,
    cpu_model: Option<String>,
    image: Option<PathBuf>,
    dtb: Option<PathBuf>,
    bootargs: String,
    machine_opts: Vec<String>,
    extra: Vec<String>,
    icount: bool,
    /// Load the image with QEMU's generic loader at this address instead of `-kernel`: the
    /// CPU starts there with x0 = 0, i.e. with no device tree.
    loader_at: Option<u64>,
    timeout: Duration,
    serial: Serial,
    label: Option<String>,
}

impl Qemu {
    /// Defaults: 4 CPUs, cortex-a72 (virt), GICv3 (virt), 1 GiB on virt and 2 GiB (the only size
    /// QEMU allows) on raspi4b, the default image, no bootargs, console on stdio, 60 s timeout.
    pub fn new(board: Board) -> Qemu {
        Qemu {
            board,
            cpus: 4,
            topology: None,
            gic: 3,
            memory: match board {
                Board::Virt => "1G".into(),
                Board::Raspi4b => "2G".into(),
            },
            cpu_model: match board {
                Board::Virt => Some("cortex-a72".into()),
                // The machine has its own, fixed CPU (cortex-a72).
                Board::Raspi4b => None,
            },
            image: None,
            dtb: None,
            bootargs: String::new(),
            machine_opts: Vec::new(),
            extra: Vec::new(),
            icount: false,
            loader_at: None,
            timeout: DEFAULT_TIMEOUT,
            serial: Serial::Stdio,
            label: None,
        }
    }

    pub fn virt() -> Qemu {
        Qemu::new(Board::Virt)
    }

    pub fn raspi4b() -> Qemu {
        Qemu::new(Board::Raspi4b)
    }

    pub fn board(&self) -> Board {
        self.board
    }

    /// `-smp N` (raspi4b accepts only 4).
    pub fn cpus(mut self, n: u32) -> Qemu {
        self.cpus = n;
        self
    }

    /// Appended to `-smp N,`, e.g. `"sockets=2,cores=2"`.
    pub fn topology(mut self, topology: impl Into<String>) -> Qemu {
        self.topology = Some(topology.into());
        self
    }

    /// `gic-version=N` on virt (2 or 3).
    pub fn gic(mut self, version: u32) -> Qemu {
        self.gic = version;
        self
    }

    /// `-m SIZE`, e.g. `"1G"`, `"5G"`, `"512M"`.
    pub fn memory(mut self, size: impl Into<String>) -> Qemu {
        self.memory = size.into();
        self
    }

    /// `-cpu MODEL`.
    pub fn cpu_model(mut self, model: impl Into<String>) -> Qemu {
        self.cpu_model = Some(model.into());
        self
    }

    /// The firmware image (a raw binary) instead of `$FERRITE_IMAGE_DIR/<board>/ferrite.bin`.
    pub fn image(mut self, path: impl Into<PathBuf>) -> Qemu {
        self.image = Some(path.into());
        self
    }

    /// `-dtb PATH` (raspi4b: instead of the fetched Debian one).
    pub fn dtb(mut self, path: impl Into<PathBuf>) -> Qemu {
        self.dtb = Some(path.into());
        self
    }

    /// `-append BOOTARGS` (QEMU puts it in `/chosen/bootargs`, on virt and on raspi4b).
    pub fn bootargs(mut self, bootargs: impl Into<String>) -> Qemu {
        self.bootargs = bootargs.into();
        self
    }

    /// An extra `-M` option, e.g. `"highmem=on"`.
    pub fn machine_opt(mut self, opt: impl Into<String>) -> Qemu {
        self.machine_opts.push(opt.into());
        self
    }

    /// An extra QEMU argument.
    pub fn arg(mut self, arg: impl Into<String>) -> Qemu {
        self.extra.push(arg.into());
        self
    }

    /// Extra QEMU arguments.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Qemu {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    /// A raw disk image as a virtio-mmio block device (drive `d0`).
    pub fn virtio_disk(self, image: &std::path::Path) -> Qemu {
        self.virtio_disk_with(image, "")
    }

    /// [`Qemu::virtio_disk`] with more `-drive` options (`opts`, comma-separated, e.g.
    /// `throttling.bps-read=500000000`).
    pub fn virtio_disk_with(self, image: &std::path::Path, opts: &str) -> Qemu {
        self.virtio_disk_device(image, opts, "")
    }

    /// [`Qemu::virtio_disk_with`] with options of the virtio-blk device too (`device_opts`,
    /// e.g. `indirect_desc=off`).
    pub fn virtio_disk_device(
        self,
        image: &std::path::Path,
        drive_opts: &str,
        device_opts: &str,
    ) -> Qemu {
        let comma = |o: &str| if o.is_empty() { "" } else { "," };
        self.args([
            "-drive".to_string(),
            format!(
                "file={},if=none,format=raw,id=d0{}{drive_opts}",
                image.display(),
                comma(drive_opts)
            ),
            "-device".into(),
            format!(
                "virtio-blk-device,drive=d0{}{device_opts}",
                comma(device_opts)
            ),
        ])
    }

    /// Boots the image through `-device loader` at `addr` (no device tree reaches it).
    pub fn loader_at(mut self, addr: u64) -> Qemu {
        self.loader_at = Some(addr);
        self
    }

    /// `-icount shift=0,sleep=off`: guest time follows instructions (repeatable runs).
    pub fn icount(mut self, on: bool) -> Qemu {
        self.icount = on;
        self
    }

    /// The overall timeout, after which QEMU is killed.
    pub fn timeout(mut self, timeout: Duration) -> Qemu {
        self.timeout = timeout;
        self
    }

    pub fn serial(mut self, serial: Serial) -> Qemu {
        self.serial = serial;
        self
    }

    /// The prefix of echoed console lines and of error messages.
    pub fn label(mut self, label: impl Into<String>) -> Qemu {
        self.label = Some(label.into());
        self
    }

    /// The image this configuration boots.
    pub fn image_path(&self) -> PathBuf {
        self.image
            .clone()
            .unwrap_or_else(|| self.board.default_image())
    }

    /// The image, which must exist (else [`ErrorKind::ImageMissing`], saying to build it).
    pub fn require_image(&self) -> Result<PathBuf> {
        let image = self.image_path();
        if image.is_file() {
            return Ok(image);
        }
        Err(Error::new(
            ErrorKind::ImageMissing,
            format!(
                "the Ferrite image {} is missing: run `make build` first (or set \
                 FERRITE_IMAGE_DIR to a directory holding {}/ferrite.bin)",
                image.display(),
                self.board.dir_name()
            ),
        ))
    }

    /// The DTB passed with `-dtb`: for raspi4b the fetched Debian one unless set.
    pub fn require_dtb(&self) -> Result<Option<PathBuf>> {
        match (&self.dtb, self.board) {
            (Some(dtb), _) => Ok(Some(dtb.clone())),
            (None, Board::Raspi4b) => paths::rpi4_dtb().map(Some),
            (None, Board::Virt) => Ok(None),
        }
    }

    fn machine_arg(&self, extra: Option<&str>) -> String {
        let mut m = match self.board {
            Board::Virt => {
                format!(
                    "virt,virtualization=on,gic-version={},dtb-randomness=off",
                    self.gic
                )
            }
            Board::Raspi4b => "raspi4b".to_string(),
        };
        for opt in self.machine_opts.iter().map(String::as_str).chain(extra) {
            m.push(',');
            m.push_str(opt);
        }
        m
    }

    /// The QEMU arguments, given the image and DTB to use.
    pub fn command_args(
        &self,
        image: &Path,
        dtb: Option<&Path>,
        serial: Serial,
        extra_machine_opt: Option<&str>,
    ) -> Vec<String> {
        let mut a: Vec<String> = vec!["-M".into(), self.machine_arg(extra_machine_opt)];
        if let Some(model) = &self.cpu_model {
            a.extend(["-cpu".into(), model.clone()]);
        }
        let smp = match &self.topology {
            Some(t) => format!("{},{t}", self.cpus),
            None => self.cpus.to_string(),
        };
        a.extend(["-smp".into(), smp, "-m".into(), self.memory.clone()]);
        if let Some(dtb) = dtb {
            a.extend(["-dtb".into(), dtb.display().to_string()]);
        }
        match self.loader_at {
            Some(addr) => a.extend([
                "-device".into(),
                format!("loader,file={},addr={addr:#x},cpu-num=0", image.display()),
            ]),
            None => a.extend(["-kernel".into(), image.display().to_string()]),
        }
        if !self.bootargs.is_empty() {
            a.extend(["-append".into(), self.bootargs.clone()]);
        }
        a.extend([
            "-semihosting-config".into(),
            "enable=on,target=native".into(),
        ]);
        a.extend(["-nographic".into(), "-no-reboot".into()]);
        match serial {
            Serial::Stdio => a.extend(["-serial", "stdio", "-monitor", "none"].map(String::from)),
            Serial::Pty => {
                a.extend(["-S", "-serial", "pty", "-monitor", "stdio"].map(String::from))
            }
        }
        if self.icount {
            a.extend(["-icount".into(), "shift=0,sleep=off".into()]);
        }
        a.extend(self.extra.iter().cloned());
        a
    }

    fn label_or_default(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.board.dir_name().to_string())
    }

    /// Starts QEMU. The image must exist (it fails loudly otherwise, see
    /// [`Qemu::require_image`]); for raspi4b the DTB is fetched if missing.
    pub fn spawn(&self) -> Result<Run> {
        let image = self.require_image()?;
        let dtb = self.require_dtb()?;
        let args = self.command_args(&image, dtb.as_deref(), self.serial, None);
        let describe = shell_line(&qemu_binary(), &args);
        let label = self.label_or_default();
        let mut machine = QemuMachine::spawn(&args).map_err(|e| {
            Error::new(ErrorKind::Start, format!("{label}: cannot start QEMU: {e}")).with_context(
                Context {
                    target: describe.clone(),
                    ..Context::default()
                },
            )
        })?;
        let console: Box<dyn Read + Send> = match self.serial {
            Serial::Stdio => {
                let stdout = machine.child.stdout.take().expect("piped stdout");
                machine.drain_stderr();
                Box::new(stdout)
            }
            Serial::Pty => {
                machine.drain_stderr();
                let pty = machine.drain_stdout_for_pty();
                let fail = |machine: &QemuMachine, msg: String| {
                    Error::new(ErrorKind::Start, format!("{label}: {msg}")).with_context(Context {
                        target: describe.clone(),
                        console: String::new(),
                        diagnostics: machine.diagnostics(),
                    })
                };
                let path = match pty.recv_timeout(Duration::from_secs(20)) {
                    Ok(path) => path,
                    Err(_) => {
                        machine.kill();
                        return Err(fail(&machine, "QEMU reported no pty".into()));
                    }
                };
                let tty = match serial::open_raw(Path::new(&path), None) {
                    Ok(tty) => tty,
                    Err(e) => {
                        machine.kill();
                        return Err(fail(&machine, format!("cannot open the pty {path}: {e}")));
                    }
                };
                machine.hold_pty_master(&path, &tty);
                // The console is connected: let the guest run.
                if let Err(e) = machine.monitor("cont") {
                    machine.kill();
                    return Err(fail(&machine, format!("cannot resume QEMU: {e}")));
                }
                Box::new(tty)
            }
        };
        Ok(Run::start(
            label,
            describe,
            Box::new(machine),
            console,
            self.timeout,
        ))
    }

    /// Runs QEMU with this configuration to dump the DTB the guest would get (`dumpdtb=`), and
    /// returns it. Needs no image (an empty kernel stands in when it is missing).
    pub fn dump_dtb(&self, scratch: &Path) -> Result<Vec<u8>> {
        let image = self
            .require_image()
            .unwrap_or_else(|_| PathBuf::from("/dev/null"));
        let dtb = self.require_dtb()?;
        let out = scratch.join(format!(
            "{}-{}.dtb",
            self.label_or_default(),
            std::process::id()
        ));
        let opt = format!("dumpdtb={}", out.display());
        let args = self.command_args(&image, dtb.as_deref(), Serial::Stdio, Some(&opt));
        let mut cmd = Command::new(qemu_binary());
        cmd.args(&args).stdin(Stdio::null());
        die_with_parent(&mut cmd);
        let result = cmd
            .output()
            .map_err(|e| Error::new(ErrorKind::Start, format!("cannot run QEMU: {e}")))?;
        let dumped = std::fs::read(&out);
        let _ = std::fs::remove_file(&out);
        match dumped {
            Ok(bytes) if result.status.success() => Ok(bytes),
            _ => Err(Error::new(
                ErrorKind::Start,
                format!(
                    "QEMU did not dump a DTB ({}): {}",
                    result.status,
                    String::from_utf8_lossy(&result.stderr)
                ),
            )
            .with_context(Context {
                target: shell_line(&qemu_binary(), &args),
                ..Context::default()
            })),
        }
    }

    /// The command line, for logs.
    pub fn describe(&self) -> String {
        let image = self.image_path();
        let dtb = self.dtb.clone().or_else(|| {
            (self.board == Board::Raspi4b).then(|| paths::debian_dir().join(paths::RPI4_DTB))
        });
        shell_line(
            &qemu_binary(),
            &self.command_args(&image, dtb.as_deref(), self.serial, None),
        )
    }
}

impl Target for Qemu {
    fn describe(&self) -> String {
        Qemu::describe(self)
    }

    fn start(&self) -> Result<Run> {
        self.spawn()
    }

    /// This configuration with the scenario's image (from this board's build directory), boot
    /// options and timeout.
    fn boot(&self, boot: &Boot) -> Result<Run> {
        self.clone()
            .image(boot.image.path(self.board.dir_name()))
            .bootargs(boot.bootargs.clone())
            .timeout(boot.timeout)
            .label(format!("{}-{}", self.label_or_default(), boot.label))
            .spawn()
    }
}

/// `$FERRITE_QEMU`, by default `qemu-system-aarch64`.
pub fn qemu_binary() -> String {
    std::env::var("FERRITE_QEMU")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "qemu-system-aarch64".into())
}

fn shell_line(program: &str, args: &[String]) -> String {
    let quote = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,./:+@".contains(c))
        {
            s.to_string()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    };
    std::iter::once(program)
        .chain(args.iter().map(String::as_str))
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Makes the child die with the thread that spawns it (Linux `PR_SET_PDEATHSIG`): even a test
/// process killed by a signal, which runs no destructors, leaves no QEMU behind.
#[cfg(test)]
mod tests {
    use super::*;

    fn joined(q: &Qemu, dtb: Option<&Path>, serial: Serial) -> String {
        q.command_args(Path::new("/img/ferrite.bin"), dtb, serial, None)
            .join(" ")
    }

    #[test]
    fn virt_command_line() {
        let q = Qemu::virt()
            .cpus(2)
            .gic(2)
            .memory("5G")
            .bootargs("loglevel=debug poweroff")
            .icount(true);
        let line = joined(&q, None, Serial::Stdio);
        assert_eq!(
            line,
            "-M virt,virtualization=on,gic-version=2,dtb-randomness=off -cpu cortex-a72 -smp 2 -m 5G \
             -kernel /img/ferrite.bin -append loglevel=debug poweroff \
             -semihosting-config enable=on,target=native -nographic -no-reboot -serial stdio \
             -monitor none -icount shift=0,sleep=off"
        );
        let q = Qemu::virt()
            .machine_opt("highmem=on")
            .topology("sockets=2,cores=2")
            .arg("-s");
        let line = joined(&q, None, Serial::Pty);
        assert!(
            line.starts_with(
                "-M virt,virtualization=on,gic-version=3,dtb-randomness=off,highmem=on "
            )
        );
        assert!(line.contains(" -smp 4,sockets=2,cores=2 -m 1G "));
        assert!(line.contains(" -S -serial pty -monitor stdio"));
        assert!(line.ends_with(" -s"));
        assert!(!line.contains("-append"));
    }

    #[test]
    fn raspi4b_command_line() {
        let q = Qemu::raspi4b().bootargs("poweroff semihosting");
        let line = joined(&q, Some(Path::new("/d/bcm2711-rpi-4-b.dtb")), Serial::Stdio);
        assert!(line.starts_with("-M raspi4b -smp 4 -m 2G -dtb /d/bcm2711-rpi-4-b.dtb -kernel "));
        assert!(line.contains("-append poweroff semihosting"));
        assert!(!line.contains("-cpu"));
    }

    #[test]
    fn default_image_paths() {
        assert!(
            Board::Virt
                .default_image()
                .ends_with("qemu-virt/ferrite.bin")
        );
        assert!(Board::Raspi4b.default_image().ends_with("rpi4/ferrite.bin"));
        let q = Qemu::virt().image("/nonexistent/ferrite.bin");
        let err = q.require_image().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ImageMissing);
        assert!(err.to_string().contains("make build"), "{err}");
    }

    #[test]
    fn quoting() {
        assert_eq!(
            shell_line(
                "qemu",
                &[
                    "-append".into(),
                    "a b".into(),
                    "it's".into(),
                    "x=1,y".into()
                ]
            ),
            r"qemu -append 'a b' 'it'\''s' x=1,y"
        );
    }
}
