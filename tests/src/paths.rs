//! Where the firmware images and the Debian board files are.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::error::{Error, ErrorKind, Result};

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A path from the environment variable `var`, relative ones taken from the workspace root
/// (tests run with the crate directory as their working directory, which nobody expects).
fn env_dir(var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var).filter(|v| !v.is_empty())?;
    Some(workspace_root().join(value))
}

/// `$FERRITE_IMAGE_DIR`, by default `<workspace root>/build`. Holds `<board>/ferrite.bin`.
pub fn image_dir() -> PathBuf {
    env_dir("FERRITE_IMAGE_DIR").unwrap_or_else(|| workspace_root().join("build"))
}

/// Ferrite with its dom0 and PV domU packed in, as `make build` writes it for `board`.
pub fn dom0_image(board: &str) -> PathBuf {
    image_dir().join(board).join("ferrite-dom0.bin")
}

/// `$FERRITE_DEBIAN_DIR`, by default `<workspace root>/build/debian`: what
/// `tools/fetch-debian.sh` fetches.
pub fn debian_dir() -> PathBuf {
    env_dir("FERRITE_DEBIAN_DIR").unwrap_or_else(|| workspace_root().join("build/debian"))
}

pub const RPI4_DTB: &str = "bcm2711-rpi-4-b.dtb";

static FETCH: Mutex<()> = Mutex::new(());

/// The Raspberry Pi 4 B DTB, fetched with `tools/fetch-debian.sh` when missing. Fails with
/// [`ErrorKind::DtbUnavailable`] (tests skip on it, loudly) when it cannot be fetched.
pub fn rpi4_dtb() -> Result<PathBuf> {
    let dir = debian_dir();
    let dtb = dir.join(RPI4_DTB);
    // One fetch at a time: tests run in parallel.
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if dtb.is_file() {
        return Ok(dtb);
    }
    let script = workspace_root().join("tools/fetch-debian.sh");
    eprintln!(
        "systests: {} is missing; running {} {}",
        dtb.display(),
        script.display(),
        dir.display()
    );
    let unavailable = |why: String| {
        Error::new(
            ErrorKind::DtbUnavailable,
            format!(
                "{} is missing and could not be fetched: {why}\nrun `tools/fetch-debian.sh {}` (as \
                 root, on Debian) and re-run the tests",
                dtb.display(),
                dir.display()
            ),
        )
    };
    let out = Command::new("bash")
        .arg(&script)
        .arg(&dir)
        .output()
        .map_err(|e| unavailable(format!("cannot run {}: {e}", script.display())))?;
    let log = String::from_utf8_lossy(&out.stderr);
    eprint!("{log}");
    if !out.status.success() || !dtb.is_file() {
        return Err(unavailable(format!(
            "fetch-debian.sh failed ({}):\n{log}",
            out.status
        )));
    }
    Ok(dtb)
}
