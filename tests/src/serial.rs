//! Opening a terminal device (a pty QEMU made, or a board's `/dev/ttyUSB0`) as a raw console.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` read-write, not as the controlling terminal, in raw mode (no echo back to the
/// target, no `\r` translation, no line buffering), at `baud` if given (ignored by a pty).
pub fn open_raw(path: &Path, baud: Option<u32>) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for the lifetime of `file`; termios is plain data, filled by tcgetattr.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(fd, &mut t) != 0 {
            return Err(io::Error::last_os_error());
        }
        libc::cfmakeraw(&mut t);
        t.c_cflag |= libc::CLOCAL | libc::CREAD;
        // Blocking reads that return as soon as one byte is there.
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        if let Some(baud) = baud {
            let speed = baud_constant(baud).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("unsupported baud rate {baud}"),
                )
            })?;
            libc::cfsetispeed(&mut t, speed);
            libc::cfsetospeed(&mut t, speed);
        }
        if libc::tcsetattr(fd, libc::TCSANOW, &t) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(file)
}

fn baud_constant(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        1500000 => libc::B1500000,
        _ => return None,
    })
}

/// The pty path in QEMU's `char device redirected to /dev/pts/N (label serial0)`.
pub fn parse_redirect(line: &str) -> Option<&str> {
    let rest =
        &line[line.find("char device redirected to ")? + "char device redirected to ".len()..];
    let path = rest.split_whitespace().next()?;
    path.starts_with('/').then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_line() {
        assert_eq!(
            parse_redirect("char device redirected to /dev/pts/3 (label serial0)"),
            Some("/dev/pts/3")
        );
        assert_eq!(
            parse_redirect("char device redirected to /dev/pts/12\r"),
            Some("/dev/pts/12")
        );
        assert_eq!(
            parse_redirect("QEMU 10.0.2 monitor - type 'help' for more information"),
            None
        );
    }
}
