//! Two pseudo-terminals joined like a null-modem cable: what a USB serial adapter and its wires
//! are to a board on the bench, for a board that is QEMU.
//!
//! The board end ([`NullModem::board_end`]) is a tty path for QEMU's `-serial`; the host end
//! ([`NullModem::host_end`]) is the `/dev/ttyUSB0` the harness opens. Both exist before the
//! "board" is powered and after it is switched off, as a real adapter does, so the
//! [`crate::board::SerialBoard`] code path (open the device, then power-cycle, then read) runs
//! unchanged against QEMU. Two threads copy bytes between the two pty masters. Like a UART,
//! the cable drops what nobody reads for two seconds instead of blocking.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::serial;

/// A pty pair: the master, its slave's path, and the slave held open (raw) so that the master
/// never sees a hang-up while the far side is closed, and the slave's settings stay raw.
struct Pty {
    master: File,
    path: PathBuf,
    _slave: File,
}

fn open_pty() -> io::Result<Pty> {
    // SAFETY: posix_openpt returns a new fd (wrapped at once); grantpt/unlockpt/ptsname_r act
    // on it; the name buffer is large enough and NUL-terminated by ptsname_r.
    let (master, path) = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let master = File::from(OwnedFd::from_raw_fd(fd));
        if libc::grantpt(fd) != 0 || libc::unlockpt(fd) != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut name = [0 as libc::c_char; 128];
        let e = libc::ptsname_r(fd, name.as_mut_ptr(), name.len());
        if e != 0 {
            return Err(io::Error::from_raw_os_error(e));
        }
        let path = std::ffi::CStr::from_ptr(name.as_ptr())
            .to_string_lossy()
            .into_owned();
        (master, PathBuf::from(path))
    };
    let slave = serial::open_raw(&path, None)?;
    Ok(Pty {
        master,
        path,
        _slave: slave,
    })
}

/// Copies what `from`'s slave side writes to `to`'s slave side until `stop`.
fn relay(mut from: File, mut to: File, stop: Arc<AtomicBool>) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let mut pfd = libc::pollfd {
            fd: from.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 50) } <= 0 || pfd.revents & libc::POLLIN == 0 {
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        let mut rest = &buf[..n];
        let deadline = Instant::now() + Duration::from_secs(2);
        while !rest.is_empty() && Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
            match to.write(rest) {
                Ok(w) => rest = &rest[w..],
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    }
}

/// See the module documentation. Dropping it stops the relay threads.
pub struct NullModem {
    board: PathBuf,
    host: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<()>>,
    _ptys: [Pty; 2],
}

impl NullModem {
    pub fn new() -> io::Result<NullModem> {
        let board = open_pty()?;
        let host = open_pty()?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (from, to, name) in [
            (&board.master, &host.master, "nullmodem-to-host"),
            (&host.master, &board.master, "nullmodem-to-board"),
        ] {
            let (from, to, stop) = (from.try_clone()?, to.try_clone()?, stop.clone());
            threads.push(
                thread::Builder::new()
                    .name(name.into())
                    .spawn(move || relay(from, to, stop))?,
            );
        }
        Ok(NullModem {
            board: board.path.clone(),
            host: host.path.clone(),
            stop,
            threads,
            _ptys: [board, host],
        })
    }

    /// The tty the board (QEMU) writes its console to.
    pub fn board_end(&self) -> &Path {
        &self.board
    }

    /// The tty the harness reads, as it would read `/dev/ttyUSB0`.
    pub fn host_end(&self) -> &Path {
        &self.host
    }
}

impl Drop for NullModem {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes written at one end come out of the other, both ways, and untranslated.
    #[test]
    fn bytes_cross_both_ways() {
        let modem = NullModem::new().unwrap();
        let mut host = serial::open_raw(modem.host_end(), None).unwrap();
        let mut board = serial::open_raw(modem.board_end(), None).unwrap();
        board.write_all(b"ferrite: ready\r\n").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while got.len() < 16 {
            let n = host.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"ferrite: ready\r\n");
        host.write_all(b"x\n").unwrap();
        let mut got = Vec::new();
        while got.len() < 2 {
            let n = board.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"x\n");
    }
}
