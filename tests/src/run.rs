//! A running target: its console, read line by line in a thread, and its lifecycle.

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::console::{Transcript, is_terminal};
use crate::error::{Context, Error, ErrorKind, Result};

/// How a target stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status (QEMU: semihosting exit code, 0 after PSCI SYSTEM_OFF).
    Code(i32),
    /// Killed by this signal (9 when the harness killed it).
    Signal(i32),
}

impl Exit {
    pub fn success(&self) -> bool {
        *self == Exit::Code(0)
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// The lifecycle side of a target (a QEMU process; later a board's power and reset control).
pub trait Machine: Send {
    /// `Some` once the target has stopped; never blocks.
    fn try_wait(&mut self) -> std::io::Result<Option<Exit>>;
    /// Stop the target now (kill QEMU, power the board off). Must be idempotent.
    fn kill(&mut self);
    /// Output other than the console, for error messages (QEMU's stderr).
    fn diagnostics(&self) -> String;
    /// A process id, where there is one.
    fn pid(&self) -> Option<u32> {
        None
    }
    /// Types `bytes` on the console, where the target can take input that way.
    fn send_console(&mut self, _bytes: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("this target takes no console input"))
    }
}

#[derive(Default)]
struct ConsoleState {
    lines: Vec<String>,
    partial: Vec<u8>,
    closed: bool,
}

/// Console lines as they arrive, shared between the reader thread and the [`Run`].
#[derive(Default)]
struct ConsoleBuf {
    state: Mutex<ConsoleState>,
    changed: Condvar,
}

impl ConsoleBuf {
    fn lock(&self) -> MutexGuard<'_, ConsoleState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn text(&self) -> String {
        let state = self.lock();
        let mut text = state.lines.join("\n");
        if !state.lines.is_empty() {
            text.push('\n');
        }
        text.push_str(&String::from_utf8_lossy(&state.partial));
        text
    }
}

fn verbose() -> bool {
    std::env::var("FERRITE_TEST_VERBOSE").is_ok_and(|v| v == "1")
}

/// Reads `source` to its end (or an error: a pty reports EIO once QEMU has gone), splitting it
/// into lines (`\r\n` or `\n`) into `buf`.
fn read_console(mut source: Box<dyn Read + Send>, buf: Arc<ConsoleBuf>, label: String) {
    let echo = verbose();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match source.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut state = buf.lock();
        for &b in &chunk[..n] {
            if b == b'\n' {
                let mut line = std::mem::take(&mut state.partial);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                let line = String::from_utf8_lossy(&line).into_owned();
                if echo {
                    eprintln!("{label}| {line}");
                }
                state.lines.push(line);
            } else {
                state.partial.push(b);
            }
        }
        drop(state);
        buf.changed.notify_all();
    }
    let mut state = buf.lock();
    if !state.partial.is_empty() {
        let line = String::from_utf8_lossy(&std::mem::take(&mut state.partial)).into_owned();
        if echo {
            eprintln!("{label}| {line}");
        }
        state.lines.push(line);
    }
    state.closed = true;
    drop(state);
    buf.changed.notify_all();
}

fn lock_machine(m: &Mutex<Box<dyn Machine>>) -> MutexGuard<'_, Box<dyn Machine>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running target. Dropping it kills the target (also while a failing test unwinds).
pub struct Run {
    label: String,
    target: String,
    console: Arc<ConsoleBuf>,
    machine: Arc<Mutex<Box<dyn Machine>>>,
    started: Instant,
    overall: Duration,
    timed_out: Arc<AtomicBool>,
    watchdog: Option<(mpsc::Sender<()>, thread::JoinHandle<()>)>,
    cursor: usize,
    exit: Option<Exit>,
}

/// The end of a run: how the target stopped and everything it printed.
#[derive(Debug)]
pub struct Outcome {
    pub exit: Exit,
    pub console: Transcript,
    pub target: String,
    pub diagnostics: String,
}

impl Run {
    /// Starts reading `console` and watching `machine`: after `overall` the machine is killed
    /// whatever the test is doing. `label` prefixes echoed lines; `target` describes what runs.
    pub fn start(
        label: impl Into<String>,
        target: impl Into<String>,
        machine: Box<dyn Machine>,
        console: Box<dyn Read + Send>,
        overall: Duration,
    ) -> Run {
        let label = label.into();
        let buf = Arc::new(ConsoleBuf::default());
        {
            let buf = buf.clone();
            let label = label.clone();
            thread::Builder::new()
                .name(format!("{label}-console"))
                .spawn(move || read_console(console, buf, label))
                .expect("spawn console reader thread");
        }
        let machine = Arc::new(Mutex::new(machine));
        let timed_out = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let watchdog = {
            let machine = machine.clone();
            let timed_out = timed_out.clone();
            let buf = buf.clone();
            thread::Builder::new()
                .name(format!("{label}-watchdog"))
                .spawn(move || {
                    if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(overall) {
                        timed_out.store(true, Ordering::SeqCst);
                        lock_machine(&machine).kill();
                        buf.changed.notify_all();
                    }
                })
                .expect("spawn watchdog thread")
        };
        Run {
            label,
            target: target.into(),
            console: buf,
            machine,
            started: Instant::now(),
            overall,
            timed_out,
            watchdog: Some((stop, watchdog)),
            cursor: 0,
            exit: None,
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id of QEMU, where there is one.
    pub fn pid(&self) -> Option<u32> {
        lock_machine(&self.machine).pid()
    }

    /// The console so far.
    pub fn transcript(&self) -> Transcript {
        Transcript::from_text(&self.console.text())
    }

    /// The transcript and diagnostics, to attach to an error.
    pub fn context(&self) -> Context {
        Context {
            target: self.target.clone(),
            console: self.console.text(),
            diagnostics: lock_machine(&self.machine).diagnostics(),
        }
    }

    /// An error of `kind` carrying the whole console so far.
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::new(kind, message).with_context(self.context())
    }

    fn deadline(&self, timeout: Duration) -> Instant {
        (Instant::now() + timeout).min(self.started + self.overall)
    }

    /// Whether the overall timeout has passed (whether or not the watchdog has killed yet).
    fn overall_expired(&self) -> bool {
        self.timed_out.load(Ordering::SeqCst) || self.started.elapsed() >= self.overall
    }

    fn poll_exit(&mut self) -> Option<Exit> {
        if self.exit.is_none() {
            self.exit = lock_machine(&self.machine).try_wait().ok().flatten();
        }
        self.exit
    }

    fn overall_timeout_error(&self, waiting_for: &str) -> Error {
        self.error(
            ErrorKind::Timeout,
            format!(
                "{}: overall timeout of {:?} reached while waiting for {waiting_for}; the target \
                 was killed",
                self.label, self.overall
            ),
        )
    }

    /// Waits for a console line containing `needle`, among the lines after the one the previous
    /// `expect` matched; returns that line. Fails when `timeout` (or the overall timeout) passes,
    /// when the target stops first, and when the firmware panics or halts first (a line of
    /// [`crate::console::TERMINAL`], unless `needle` is in that line).
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let what = format!("{needle:?}");
        self.expect_line(&what, timeout, |line| line.contains(needle))
    }

    /// Waits for a console line containing `needle` anywhere in the console, earlier lines
    /// included, and leaves [`Run::expect`]'s place where it was: for a line whose order against
    /// the lines around it is not fixed (Ferrite's log against a guest's user space).
    pub fn seen(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let cursor = self.cursor;
        self.cursor = 0;
        let r = self.expect(needle, timeout);
        self.cursor = cursor;
        r.map(drop)
    }

    /// Like [`Run::expect`], for the first later line that `matches`; `what` names it in errors.
    pub fn expect_line(
        &mut self,
        what: &str,
        timeout: Duration,
        mut matches: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let deadline = self.deadline(timeout);
        loop {
            let state = self.console.lock();
            while self.cursor < state.lines.len() {
                let line = &state.lines[self.cursor];
                self.cursor += 1;
                if matches(line) {
                    return Ok(line.clone());
                }
                if is_terminal(line) {
                    let line = line.clone();
                    drop(state);
                    return Err(self.error(
                        ErrorKind::Panicked,
                        format!(
                            "{}: Ferrite stopped (`{line}`) while waiting for {what}",
                            self.label
                        ),
                    ));
                }
            }
            let closed = state.closed;
            // Sleep until more output, at most a little, to notice exits and deadlines.
            let now = Instant::now();
            if !closed && now < deadline {
                let slice = (deadline - now).min(Duration::from_millis(50));
                drop(self.console.changed.wait_timeout(state, slice));
            } else {
                drop(state);
            }
            if self.overall_expired() {
                self.kill();
                return Err(self.overall_timeout_error(what));
            }
            if closed {
                let how = match self.wait_stopped(Duration::from_secs(2)) {
                    Some(exit) => format!("stopped ({exit})"),
                    None => "closed its console".to_string(),
                };
                return Err(self.error(
                    ErrorKind::Stopped,
                    format!("{}: target {how} before {what} appeared", self.label),
                ));
            }
            if Instant::now() >= deadline {
                return Err(self.error(
                    ErrorKind::Timeout,
                    format!(
                        "{}: timed out after {timeout:?} waiting for {what}",
                        self.label
                    ),
                ));
            }
        }
    }

    /// Polls for the machine's exit until `timeout`.
    fn wait_stopped(&mut self, timeout: Duration) -> Option<Exit> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = self.poll_exit() {
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the console to reach its end (after the target stopped), briefly.
    fn drain_console(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut state = self.console.lock();
        while !state.closed {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            state = self
                .console
                .changed
                .wait_timeout(state, deadline - now)
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Waits until the target stops by itself, at most `timeout` (and the overall timeout);
    /// returns how it stopped and the whole console. On a timeout the target is killed and the
    /// error carries the console.
    pub fn wait_exit(mut self, timeout: Duration) -> Result<Outcome> {
        let deadline = self.deadline(timeout);
        let exit = loop {
            if self.overall_expired() {
                self.kill();
                return Err(self.overall_timeout_error("the target to exit"));
            }
            if let Some(exit) = self.poll_exit() {
                break exit;
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.error(
                    ErrorKind::Timeout,
                    format!("{}: did not exit within {timeout:?}; killed it", self.label),
                ));
            }
            thread::sleep(Duration::from_millis(10));
        };
        if self.timed_out.load(Ordering::SeqCst) {
            return Err(self.overall_timeout_error("the target to exit"));
        }
        self.drain_console(Duration::from_secs(2));
        let context = self.context();
        Ok(Outcome {
            exit,
            console: Transcript::from_text(&context.console),
            target: context.target,
            diagnostics: context.diagnostics,
        })
    }

    /// Types `text` on the target's console (as a person at the serial line would).
    pub fn send(&mut self, text: &str) -> Result<()> {
        lock_machine(&self.machine)
            .send_console(text.as_bytes())
            .map_err(|e| {
                self.error(
                    ErrorKind::Start,
                    format!("{}: cannot type on the console: {e}", self.label),
                )
            })
    }

    /// Stops the target now.
    pub fn kill(&mut self) {
        lock_machine(&self.machine).kill();
    }

    /// Kills the target and returns everything it printed (for tests that need no exit).
    pub fn stop(mut self) -> Outcome {
        self.kill();
        let exit = self
            .wait_stopped(Duration::from_secs(5))
            .unwrap_or(Exit::Signal(9));
        self.drain_console(Duration::from_secs(1));
        let context = self.context();
        Outcome {
            exit,
            console: Transcript::from_text(&context.console),
            target: context.target,
            diagnostics: context.diagnostics,
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Run")
            .field("label", &self.label)
            .field("target", &self.target)
            .finish()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        lock_machine(&self.machine).kill();
        if let Some((stop, watchdog)) = self.watchdog.take() {
            drop(stop);
            let _ = watchdog.join();
        }
    }
}

impl Outcome {
    fn context(&self) -> Context {
        Context {
            target: self.target.clone(),
            console: self.console.text(),
            diagnostics: self.diagnostics.clone(),
        }
    }

    /// A failed check, with the whole console attached.
    pub fn fail(&self, message: impl Into<String>) -> Error {
        Error::new(
            ErrorKind::Check,
            format!("{} ({})", message.into(), self.exit),
        )
        .with_context(self.context())
    }

    /// `Ok` if `condition`, else a [`ErrorKind::Check`] error saying `message`, with the console.
    pub fn ensure(&self, condition: bool, message: impl Into<String>) -> Result<()> {
        if condition {
            Ok(())
        } else {
            Err(self.fail(message))
        }
    }

    /// Checks the exit status.
    pub fn ensure_exit(&self, expected: Exit) -> Result<()> {
        self.ensure(
            self.exit == expected,
            format!("expected {expected}, got {}", self.exit),
        )
    }
}
