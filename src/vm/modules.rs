//! Where dom0's kernel, initrd and command line come from: packed into Ferrite's image at build
//! time (unikernel style, one file to flash), or loaded beside it by the boot loader and named
//! in the device tree's `/chosen/module@...` nodes (`multiboot,kernel` / `multiboot,ramdisk`,
//! as QEMU's `guest-loader` and U-Boot pass them). The device tree wins: it is the later choice.

use crate::dt::{MachineInfo, ModuleKind};
use alloc::string::{String, ToString};

mod packed {
    include!(concat!(env!("OUT_DIR"), "/packed.rs"));
}

/// The PV domU image packed into this build (`FERRITE_DOMU_IMAGE`), if any: an ELF.
pub static DOMU_IMAGE: Option<&[u8]> = packed::DOMU_IMAGE;

pub struct Dom0Images {
    pub kernel: &'static [u8],
    pub ramdisk: Option<&'static [u8]>,
    pub cmdline: String,
    pub source: &'static str,
}

/// The bytes of a boot module the loader put in RAM.
fn module_bytes(r: &crate::mm::region::Region) -> &'static [u8] {
    // SAFETY: boot modules lie in RAM (identity-mapped), are reserved from the frame allocator
    // and never written, so they live as long as Ferrite.
    unsafe { core::slice::from_raw_parts(r.start as *const u8, r.size as usize) }
}

/// `cmdline_override`: the words after `--` on Ferrite's command line.
pub fn dom0(info: &MachineInfo, cmdline_override: Option<&str>) -> Option<Dom0Images> {
    let dt_kernel = info.modules.iter().find(|m| m.kind == ModuleKind::Kernel);
    let mut images = if let Some(k) = dt_kernel {
        let ramdisk = info.modules.iter().find(|m| m.kind == ModuleKind::Ramdisk);
        Dom0Images {
            kernel: module_bytes(&k.region),
            ramdisk: ramdisk.map(|r| module_bytes(&r.region)),
            cmdline: k.bootargs.clone().unwrap_or_default(),
            source: "device-tree module",
        }
    } else {
        Dom0Images {
            kernel: packed::DOM0_KERNEL?,
            ramdisk: packed::DOM0_RAMDISK,
            cmdline: packed::DOM0_CMDLINE.to_string(),
            source: "packed in the image",
        }
    };
    if let Some(c) = cmdline_override {
        images.cmdline = c.to_string();
    }
    Some(images)
}
