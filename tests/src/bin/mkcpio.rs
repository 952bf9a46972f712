//! `mkcpio <dir> <out>`: packs a directory tree into an uncompressed cpio archive in the "newc"
//! format, the one the Linux kernel unpacks as its initramfs. Used to build Linux dom0's
//! initramfs without depending on the host's cpio.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

fn header(out: &mut Vec<u8>, ino: u32, mode: u32, size: u32, name: &str) {
    let fields = [
        ino,
        mode,
        0,
        0,
        1,
        0,
        size,
        0,
        0,
        0,
        0,
        name.len() as u32 + 1,
        0,
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<u8>, ino: &mut u32) -> std::io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let rel = rel.join(e.file_name());
        let name = rel.to_string_lossy().into_owned();
        let meta = fs::symlink_metadata(root.join(&rel))?;
        *ino += 1;
        let perm = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(root.join(&rel))?;
            let t = target.to_string_lossy();
            header(out, *ino, 0o120000 | perm, t.len() as u32, &name);
            out.extend_from_slice(t.as_bytes());
            pad(out);
        } else if meta.is_dir() {
            header(out, *ino, 0o040000 | perm, 0, &name);
            walk(root, &rel, out, ino)?;
        } else {
            let data = fs::read(root.join(&rel))?;
            let _ = meta.size();
            header(out, *ino, 0o100000 | perm, data.len() as u32, &name);
            out.extend_from_slice(&data);
            pad(out);
        }
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: mkcpio <dir> <out.cpio>");
        std::process::exit(2);
    }
    let mut out = Vec::new();
    let mut ino = 0;
    if let Err(e) = walk(Path::new(&args[1]), Path::new(""), &mut out, &mut ino) {
        eprintln!("mkcpio: {}: {e}", args[1]);
        std::process::exit(1);
    }
    header(&mut out, 0, 0, 0, "TRAILER!!!");
    fs::File::create(&args[2])
        .and_then(|mut f| f.write_all(&out))
        .unwrap_or_else(|e| {
            eprintln!("mkcpio: {}: {e}", args[2]);
            std::process::exit(1);
        });
}
