//! The one error type: a message plus everything CI logs need to show what happened.

use std::fmt;

/// What went wrong, for tests that react to some failures (e.g. skip when a DTB is unavailable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The firmware image is not built.
    ImageMissing,
    /// A board file (e.g. the raspi4b DTB) is missing and could not be fetched.
    DtbUnavailable,
    /// The target could not be started (QEMU missing, bad arguments, pty not found...).
    Start,
    /// A wait ran out of time (the target was killed if the overall timeout passed).
    Timeout,
    /// The target stopped (exited, or its console closed) before what was awaited happened.
    Stopped,
    /// The firmware panicked or halted while something else was awaited.
    Panicked,
    /// A check on the console or the exit status failed.
    Check,
    /// Any other I/O error.
    Io,
}

/// The transcript and diagnostics of the run an error came from.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// What ran, e.g. the QEMU command line.
    pub target: String,
    /// The whole console output so far.
    pub console: String,
    /// Other output of the target (QEMU's stderr and monitor).
    pub diagnostics: String,
}

/// An error of the harness or a failed check. Its `Display` and `Debug` (what a test returning
/// `Result<(), Error>` prints) both include the whole console transcript.
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Option<Box<Context>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            context: None,
        }
    }

    pub fn with_context(mut self, context: Context) -> Error {
        self.context = Some(Box::new(context));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn context(&self) -> Option<&Context> {
        self.context.as_deref()
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(c) = &self.context {
            write!(f, "\n--- target: {}", c.target)?;
            let lines = c.console.lines().count();
            write!(f, "\n--- console ({lines} lines) ---\n{}", c.console)?;
            if !c.console.is_empty() && !c.console.ends_with('\n') {
                writeln!(f)?;
            }
            write!(f, "--- end of console ---")?;
            if !c.diagnostics.trim().is_empty() {
                write!(
                    f,
                    "\n--- diagnostics (QEMU stderr/monitor) ---\n{}",
                    c.diagnostics.trim_end()
                )?;
                write!(f, "\n--- end of diagnostics ---")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:?}] {self}", self.kind)
    }
}

impl std::error::Error for Error {}
