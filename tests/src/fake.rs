//! Tiny hand-made aarch64 images that print a text on a PL011 and then exit through semihosting
//! or spin: they check the harness itself when no Ferrite image is built.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// Position-independent code; the data follows at offset 0x40:
///
/// ```text
///     adr  x1, msg            ; 0x00
///     ldr  x2, uart
/// 1:  ldrb w0, [x1], #1
///     cbz  w0, 3f
/// 2:  ldr  w4, [x2, #0x18]    ; UARTFR
///     tbnz w4, #5, 2b         ; TXFF
///     str  w0, [x2]           ; UARTDR
///     b    1b
/// 3:  ldr  x5, exitflag
///     cbz  x5, 4f
///     mov  x0, #0x20          ; SYS_EXIT_EXTENDED
///     adr  x1, block
///     hlt  #0xf000            ; semihosting call
/// 4:  wfe
///     b    4b
///     nop
/// exitflag: .quad             ; 0x40
/// block:    .quad 0x20026     ; 0x48: ADP_Stopped_ApplicationExit
///           .quad code        ; 0x50
/// uart:     .quad             ; 0x58
/// msg:      .asciz            ; 0x60
/// ```
const CODE: [u32; 16] = [
    0x1000_0301,
    0x5800_02a2,
    0x3840_1420,
    0x3400_00a0,
    0xb940_1844,
    0x372f_ffe4,
    0xb900_0040,
    0x17ff_fffb,
    0x5800_0105,
    0xb400_0085,
    0xd280_0400,
    0x1000_00e1,
    0xd45e_0000,
    0xd503_205f,
    0x17ff_ffff,
    0xd503_201f,
];

/// An image printing `text` (`\n` becomes `\r\n`) on the PL011 at `uart`, then exiting QEMU with
/// `exit` (semihosting must be enabled) or, with `None`, spinning forever.
pub fn image(uart: u64, text: &str, exit: Option<u32>) -> Vec<u8> {
    let mut bin: Vec<u8> = CODE.iter().flat_map(|w| w.to_le_bytes()).collect();
    for quad in [
        u64::from(exit.is_some()),
        0x20026,
        u64::from(exit.unwrap_or(0)),
        uart,
    ] {
        bin.extend(quad.to_le_bytes());
    }
    assert!(!text.contains('\0'));
    bin.extend(text.replace('\n', "\r\n").bytes());
    bin.push(0);
    bin
}

/// Writes [`image`] to a new file in `dir` and returns its path.
pub fn write_image(
    dir: &Path,
    uart: u64,
    text: &str,
    exit: Option<u32>,
) -> std::io::Result<PathBuf> {
    static N: AtomicU32 = AtomicU32::new(0);
    std::fs::create_dir_all(dir)?;
    let n = N.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("fake-{}-{n}.bin", std::process::id()));
    std::fs::write(&path, image(uart, text, exit))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn layout() {
        let bin = super::image(0x0900_0000, "a\nb", Some(3));
        assert_eq!(&bin[0x40..0x48], &1u64.to_le_bytes());
        assert_eq!(&bin[0x50..0x58], &3u64.to_le_bytes());
        assert_eq!(&bin[0x58..0x60], &0x0900_0000u64.to_le_bytes());
        assert_eq!(&bin[0x60..], b"a\r\nb\0");
        let bin = super::image(0, "", None);
        assert_eq!(&bin[0x40..0x48], &0u64.to_le_bytes());
    }
}
