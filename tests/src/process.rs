//! The running QEMU process: started so that it dies with the test, its console and monitor
//! pipes, the pseudo-terminal it may serve the console on, and its exit status.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::qemu::qemu_binary;
use crate::run::{Exit, Machine};
use crate::serial;
pub(crate) fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; the closure allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A QEMU process. Killed on drop.
pub(crate) struct QemuMachine {
    pub(crate) child: Child,
    pub(crate) stdin: Option<ChildStdin>,
    pub(crate) diagnostics: Arc<Mutex<String>>,
    pub(crate) exit: Option<Exit>,
    /// Pty mode: a duplicate of QEMU's pty master and our slave end (see
    /// [`QemuMachine::hold_pty_master`]).
    pub(crate) pty: Option<(OwnedFd, File)>,
}

/// Duplicates the pty master of process `pid` whose slave is `/dev/pts/<n>`.
fn dup_pty_master(pid: u32, n: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscalls; every fd they return is wrapped in an OwnedFd at once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        if pidfd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
            let entry = entry?;
            let is_ptmx = std::fs::read_link(entry.path())
                .is_ok_and(|t| t.file_name().is_some_and(|f| f == "ptmx"));
            let Some(target) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if !is_ptmx {
                continue;
            }
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd as RawFd);
            let mut ptn: libc::c_uint = 0;
            if libc::ioctl(fd.as_raw_fd(), libc::TIOCGPTN, &mut ptn) == 0 && ptn == n {
                return Ok(fd);
            }
        }
    }
    Err(std::io::Error::other(format!(
        "no pty master for /dev/pts/{n} in process {pid}"
    )))
}

/// Bytes waiting to be read on a tty.
fn pending_input(tty: &File) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD stores one int.
    let ok = unsafe { libc::ioctl(tty.as_raw_fd(), libc::FIONREAD, &mut n) } == 0;
    if ok { n.max(0) as usize } else { 0 }
}

fn to_exit(status: ExitStatus) -> Exit {
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Signal(0),
    }
}

impl QemuMachine {
    pub(crate) fn spawn(args: &[String]) -> std::io::Result<QemuMachine> {
        let mut cmd = Command::new(qemu_binary());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("{}: {e} (tools/setup-host.sh installs QEMU)", qemu_binary()),
            )
        })?;
        let stdin = child.stdin.take();
        Ok(QemuMachine {
            child,
            stdin,
            diagnostics: Arc::default(),
            exit: None,
            pty: None,
        })
    }

    /// Keeps the pty's master open beyond QEMU's exit. When the last master closes, Linux hangs
    /// the slave up and discards what the reader has not read yet: QEMU's last lines before it
    /// exits (the power-off or panic message) would be lost. Holding a duplicate of the master
    /// (`pidfd_getfd`) lets the reader drain the slave; [`QemuMachine::release_pty`] closes it.
    /// Best effort: without it the last lines may be lost, which the diagnostics then say.
    pub(crate) fn hold_pty_master(&mut self, path: &str, tty: &File) {
        let n = path.strip_prefix("/dev/pts/").and_then(|n| n.parse().ok());
        let held = n
            .ok_or_else(|| std::io::Error::other("not a /dev/pts path"))
            .and_then(|n| {
                let master = dup_pty_master(self.child.id(), n)?;
                Ok((master, tty.try_clone()?))
            });
        match held {
            Ok(held) => self.pty = Some(held),
            Err(e) => Self::append_diagnostics(
                &self.diagnostics,
                &format!("systests: cannot hold the pty master ({e}); the last lines may be lost"),
            ),
        }
    }

    /// After QEMU stopped: lets the console reader take what is left, then closes the master so
    /// that the reader sees the end.
    pub(crate) fn release_pty(&mut self) {
        if let Some((master, slave)) = self.pty.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            let mut quiet = 0;
            while quiet < 3 && std::time::Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
                quiet = if pending_input(&slave) == 0 {
                    quiet + 1
                } else {
                    0
                };
            }
            drop(master);
        }
    }

    pub(crate) fn append_diagnostics(diagnostics: &Mutex<String>, line: &str) {
        let mut d = diagnostics.lock().unwrap_or_else(|e| e.into_inner());
        d.push_str(line);
        d.push('\n');
    }

    /// Collects stderr into the diagnostics, in a thread.
    pub(crate) fn drain_stderr(&mut self) {
        if let Some(stderr) = self.child.stderr.take() {
            let diagnostics = self.diagnostics.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    Self::append_diagnostics(&diagnostics, &line);
                }
            });
        }
    }

    /// Collects stdout (the monitor) into the diagnostics, in a thread, and sends the path of
    /// the pty once QEMU reports it.
    pub(crate) fn drain_stdout_for_pty(&mut self) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = self.child.stdout.take() {
            let diagnostics = self.diagnostics.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(stdout);
                let mut raw = Vec::new();
                while matches!(reader.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
                    let line = String::from_utf8_lossy(&raw);
                    let line = line.trim_end();
                    if let Some(path) = serial::parse_redirect(line) {
                        let _ = tx.send(path.to_string());
                    }
                    // The monitor echoes with terminal escapes; keep its text readable.
                    if !line.starts_with("(qemu)") {
                        Self::append_diagnostics(&diagnostics, line);
                    }
                    raw.clear();
                }
            });
        }
        rx
    }

    /// Sends a command to the monitor (pty mode only).
    pub(crate) fn monitor(&mut self, command: &str) -> std::io::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no monitor"))?;
        stdin.write_all(format!("{command}\n").as_bytes())?;
        stdin.flush()
    }
}

impl Machine for QemuMachine {
    fn send_console(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        // With `-serial stdio` QEMU's standard input is the console; in pty mode it is the
        // monitor, and typing there would be wrong.
        if self.pty.is_some() {
            return Err(std::io::Error::other(
                "console input through the pty is not wired",
            ));
        }
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    fn try_wait(&mut self) -> std::io::Result<Option<Exit>> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait()?.map(to_exit);
            if self.exit.is_some() {
                self.release_pty();
            }
        }
        Ok(self.exit)
    }

    fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            if let Ok(status) = self.child.wait() {
                self.exit = Some(to_exit(status));
            }
        }
        // Killed: what is left unread does not matter.
        self.pty = None;
    }

    fn diagnostics(&self) -> String {
        self.diagnostics
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn pid(&self) -> Option<u32> {
        Some(self.child.id())
    }
}

impl Drop for QemuMachine {
    fn drop(&mut self) {
        self.kill();
    }
}
