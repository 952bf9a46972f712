//! Reading a Raspberry Pi 4 SD-card image as the Pi's boot ROM and firmware would: its MBR
//! partition table, the FAT32 boot sector of its partition, and the files in it (through
//! mtools, at the partition's offset: no root, no loop device). tests/tests/sdcard.rs checks
//! what `make sdcard` writes with it.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use crate::error::{Error, ErrorKind, Result};
use crate::paths;

pub const SECTOR: u64 = 512;

/// One primary partition entry of an MBR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    pub bootable: bool,
    /// The partition type (0x0c: FAT32 with LBA addressing).
    pub kind: u8,
    pub start_lba: u32,
    pub sectors: u32,
}

impl Partition {
    pub fn offset(&self) -> u64 {
        u64::from(self.start_lba) * SECTOR
    }

    pub fn size(&self) -> u64 {
        u64::from(self.sectors) * SECTOR
    }
}

/// A classic MBR: the disk signature and the four primary entries (unused ones are `None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mbr {
    pub disk_id: u32,
    pub partitions: [Option<Partition>; 4],
}

fn check(condition: bool, message: impl Into<String>) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Check, message))
    }
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// Parses the first sector of a disk.
pub fn parse_mbr(sector: &[u8]) -> Result<Mbr> {
    check(sector.len() >= 512, "the image is shorter than one sector")?;
    check(
        sector[510] == 0x55 && sector[511] == 0xaa,
        format!(
            "no MBR signature 55 aa at offset 510 (found {:02x} {:02x})",
            sector[510], sector[511]
        ),
    )?;
    let mut partitions = [None; 4];
    for (i, p) in partitions.iter_mut().enumerate() {
        let e = &sector[446 + 16 * i..446 + 16 * (i + 1)];
        check(
            e[0] == 0 || e[0] == 0x80,
            format!("partition {} has boot flag {:#x} (0 or 0x80)", i + 1, e[0]),
        )?;
        if e[4] != 0 {
            *p = Some(Partition {
                bootable: e[0] == 0x80,
                kind: e[4],
                start_lba: le32(e, 8),
                sectors: le32(e, 12),
            });
        }
    }
    Ok(Mbr {
        disk_id: le32(sector, 440),
        partitions,
    })
}

/// What a FAT32 boot sector (BPB) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fat32 {
    pub bytes_per_sector: u16,
    pub sectors_per_cluster: u8,
    pub hidden_sectors: u32,
    pub total_sectors: u32,
    pub label: String,
    pub clusters: u32,
}

/// Parses the boot sector of a FAT32 file system; a FAT12/16 one is an error.
pub fn parse_fat32(sector: &[u8]) -> Result<Fat32> {
    check(sector.len() >= 512, "the boot sector is short")?;
    check(
        sector[510] == 0x55 && sector[511] == 0xaa,
        "the partition's boot sector has no 55 aa signature",
    )?;
    let bytes_per_sector = le16(sector, 11);
    let sectors_per_cluster = sector[13];
    let reserved = u32::from(le16(sector, 14));
    let fats = u32::from(sector[16]);
    let root_entries = le16(sector, 17);
    let fat16_size = le16(sector, 22);
    let fat32_size = le32(sector, 36);
    let total_sectors = le32(sector, 32);
    check(
        root_entries == 0 && fat16_size == 0 && fat32_size > 0,
        format!(
            "not FAT32: {root_entries} root entries, FAT16 size {fat16_size}, FAT32 size \
             {fat32_size}"
        ),
    )?;
    check(
        &sector[82..90] == b"FAT32   ",
        format!(
            "file system type {:?}, not \"FAT32   \"",
            String::from_utf8_lossy(&sector[82..90])
        ),
    )?;
    check(
        bytes_per_sector == 512 && sectors_per_cluster > 0,
        format!("{bytes_per_sector} bytes per sector, {sectors_per_cluster} per cluster"),
    )?;
    let data = total_sectors.saturating_sub(reserved + fats * fat32_size);
    Ok(Fat32 {
        bytes_per_sector,
        sectors_per_cluster,
        hidden_sectors: le32(sector, 28),
        total_sectors,
        label: String::from_utf8_lossy(&sector[71..82])
            .trim_end()
            .to_string(),
        clusters: data / u32::from(sectors_per_cluster),
    })
}

/// Makes sure the Pi 4 boot files are there (the firmware from Debian's raspi-firmware, the device
/// tree) and the tools to write a card (mtools, sfdisk), running `tools/setup-host.sh sdcard`,
/// `tools/fetch-debian.sh` and `tools/fetch-rpi-firmware.sh`, which do nothing when all is there.
/// Test processes running at the same time take turns (a lock file beside the downloads).
pub fn ensure_pi_boot_files() -> Result<()> {
    let root = paths::workspace_root();
    let debian = paths::debian_dir();
    std::fs::create_dir_all(&debian)?;
    let lock = File::create(debian.join(".rpi-boot-files.lock"))?;
    // SAFETY: flock(2) on an open fd; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    let firmware = debian.join("raspi-firmware");
    for (script, args) in [
        (
            "tools/setup-host.sh",
            vec!["sdcard".to_string(), firmware.display().to_string()],
        ),
        ("tools/fetch-debian.sh", vec![debian.display().to_string()]),
        (
            "tools/fetch-rpi-firmware.sh",
            vec![debian.display().to_string()],
        ),
    ] {
        let out = Command::new("bash")
            .arg(root.join(script))
            .args(&args)
            .output()
            .map_err(|e| Error::new(ErrorKind::Start, format!("cannot run {script}: {e}")))?;
        if !out.status.success() {
            return Err(Error::new(
                ErrorKind::Start,
                format!(
                    "{script} {} failed ({}): the Raspberry Pi 4 boot files or the tools to \
                     write a card are missing and could not be installed:\n{}",
                    args.join(" "),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
    }
    Ok(())
}

/// mtools' name for the file system at `offset` in `image`.
fn mtools_drive(image: &Path, offset: u64) -> String {
    format!("{}@@{offset}", image.display())
}

fn mtools(tool: &str, args: &[&str]) -> Result<Vec<u8>> {
    let out = Command::new(tool)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .map_err(|e| {
            Error::new(
                ErrorKind::Start,
                format!("cannot run {tool}: {e} (tools/setup-host.sh sdcard installs mtools)"),
            )
        })?;
    if !out.status.success() {
        return Err(Error::new(
            ErrorKind::Check,
            format!(
                "{tool} {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    Ok(out.stdout)
}

/// The names of the files in the root directory of the FAT file system at `offset` (long
/// names where there are, as the firmware sees them).
pub fn list_files(image: &Path, offset: u64) -> Result<Vec<String>> {
    let drive = mtools_drive(image, offset);
    let out = mtools("mdir", &["-i", &drive, "-b", "::"])?;
    let mut names: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("::/").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

/// The contents of `name` in the root directory of the FAT file system at `offset`.
pub fn read_file(image: &Path, offset: u64, name: &str) -> Result<Vec<u8>> {
    let drive = mtools_drive(image, offset);
    let path = format!("::{name}");
    mtools("mtype", &["-i", &drive, &path])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mbr_with(entry: [u8; 16]) -> Vec<u8> {
        let mut s = vec![0u8; 512];
        s[440..444].copy_from_slice(&0x4645_5252u32.to_le_bytes());
        s[446..462].copy_from_slice(&entry);
        s[510] = 0x55;
        s[511] = 0xaa;
        s
    }

    #[test]
    fn one_bootable_fat32_partition() {
        let mut e = [0u8; 16];
        e[0] = 0x80;
        e[4] = 0x0c;
        e[8..12].copy_from_slice(&2048u32.to_le_bytes());
        e[12..16].copy_from_slice(&129_024u32.to_le_bytes());
        let mbr = parse_mbr(&mbr_with(e)).unwrap();
        assert_eq!(mbr.disk_id, 0x4645_5252);
        let p = mbr.partitions[0].unwrap();
        assert!(p.bootable);
        assert_eq!((p.kind, p.offset(), p.size()), (0x0c, 1 << 20, 63 << 20));
        assert_eq!(mbr.partitions[1..], [None, None, None]);
    }

    #[test]
    fn broken_tables_are_refused() {
        let mut s = mbr_with([0; 16]);
        s[511] = 0;
        assert!(
            parse_mbr(&s)
                .unwrap_err()
                .message()
                .contains("no MBR signature")
        );
        let mut e = [0u8; 16];
        e[0] = 0x12;
        assert!(
            parse_mbr(&mbr_with(e))
                .unwrap_err()
                .message()
                .contains("boot flag 0x12")
        );
        assert!(parse_mbr(&[0u8; 100]).is_err());
    }

    #[test]
    fn fat16_is_not_fat32() {
        let mut s = vec![0u8; 512];
        s[11..13].copy_from_slice(&512u16.to_le_bytes());
        s[13] = 4;
        s[17..19].copy_from_slice(&512u16.to_le_bytes()); // root entries: FAT12/16
        s[22..24].copy_from_slice(&64u16.to_le_bytes());
        s[510] = 0x55;
        s[511] = 0xaa;
        assert!(parse_fat32(&s).unwrap_err().message().contains("not FAT32"));
    }
}
