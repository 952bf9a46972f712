//! Entry: the arm64 `Image` header, self-relocation, the first page tables, and the hand-off to
//! [`crate::boot::primary_main`] and [`crate::boot::secondary_main`].
//!
//! Loaders (QEMU `-kernel`, the Raspberry Pi firmware, U-Boot `booti`) enter at the first byte
//! with the MMU off and x0 = the device tree. Ferrite is linked at 0 as a position-independent
//! executable; before any Rust code runs, the entry code applies the `R_AARCH64_RELATIVE`
//! relocations for the address it was loaded at, so one image boots on every board.
//!
//! Nothing before the MMU is on may use atomics: exclusives on the Device memory the CPU sees
//! with its MMU off are not guaranteed to work on real hardware. So the first translation table
//! is built here with plain stores (1 GiB blocks covering the image, the device tree and the
//! early console), and the precise map is built later by [`super::mmu`] with the heap.

use core::arch::global_asm;
use core::cell::UnsafeCell;

/// The most CPUs Ferrite brings up.
pub const MAX_CPUS: usize = 64;

/// Stack size of each CPU.
pub const STACK_SIZE: usize = 64 * 1024;

/// MPIDR affinity fields (Aff3, Aff2, Aff1, Aff0), the CPU's identity in the device tree.
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Where a secondary CPU finds its stack and index; matched by MPIDR in assembly.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SecondaryBoot {
    pub mpidr: u64,
    pub stack_top: u64,
    pub index: u64,
}

/// The translation-regime registers every CPU loads before turning its MMU on.
#[repr(C)]
pub struct MmuRegs {
    pub ttbr0: u64,
    pub tcr: u64,
    pub mair: u64,
    pub sctlr: u64,
}

/// Data the primary CPU hands to secondaries that start with their MMU and caches off.
pub struct BootShared<T>(UnsafeCell<T>);

// SAFETY: written by the primary CPU only before the secondary that reads it is started (and
// cleaned to the point of coherency first, see `smp`); read by that secondary in assembly.
unsafe impl<T> Sync for BootShared<T> {}

impl<T> BootShared<T> {
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }
    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}

pub static SECONDARY_BOOT: BootShared<[SecondaryBoot; MAX_CPUS]> = BootShared::new(
    [SecondaryBoot {
        mpidr: 0,
        stack_top: 0,
        index: 0,
    }; MAX_CPUS],
);
pub static MMU_REGS: BootShared<MmuRegs> = BootShared::new(MmuRegs {
    ttbr0: 0,
    tcr: 0,
    mair: 0,
    sctlr: 0,
});

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _head
_head:
    b       1f                      // code0
    .long   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   __image_size            // image_size, BSS included
    .quad   0xa                     // flags: little endian, 4 KiB pages, anywhere in RAM
    .quad   0, 0, 0
    .ascii  "ARM\x64"
    .long   0
1:  b       {primary_entry}

    .section .text.boot, "ax"
    .global ferrite_primary_entry
ferrite_primary_entry:
    mov     x19, x0                 // the device tree
    // Drop whatever the caches hold for our image and BSS (not .noinit): we write them with the MMU off,
    // and a stale line written back later would undo that.
    adrp    x0, __image_start
    add     x0, x0, :lo12:__image_start
    adrp    x1, __bss_end
    add     x1, x1, :lo12:__bss_end
    mrs     x2, ctr_el0
    ubfx    x2, x2, #16, #4
    mov     x3, #4
    lsl     x2, x3, x2              // D-cache line size
    sub     x3, x2, #1
    bic     x0, x0, x3
2:  dc      ivac, x0
    add     x0, x0, x2
    cmp     x0, x1
    b.lo    2b
    dsb     sy

    // Self-relocation: each R_AARCH64_RELATIVE entry says *(base + offset) = base + addend.
    adrp    x20, __image_start
    add     x20, x20, :lo12:__image_start
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
3:  cmp     x1, x2
    b.hs    5f
    ldp     x3, x4, [x1], #16
    ldr     x5, [x1], #8
    cmp     w4, #1027               // R_AARCH64_RELATIVE
    b.ne    3b
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       3b

5:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
6:  cmp     x1, x2
    b.hs    7f
    stp     xzr, xzr, [x1], #16
    b       6b

7:  adrp    x0, {boot_stack}
    add     x0, x0, :lo12:{boot_stack}
    add     sp, x0, #{stack_size}
    mrs     x1, CurrentEL
    ubfx    x1, x1, #2, #2
    cmp     x1, #2
    b.ne    8f
    adrp    x0, {vectors}
    add     x0, x0, :lo12:{vectors}
    msr     vbar_el2, x0
    isb
8:  mov     x0, x19
    bl      {early}                 // builds the first map, turns the MMU on (at EL2)
    mov     x0, x19
    bl      {primary_main}
9:  wfe
    b       9b

    // Secondary CPUs (PSCI CPU_ON or the spin-table) arrive here with the MMU off.
    .global ferrite_secondary_entry
ferrite_secondary_entry:
    mrs     x1, CurrentEL
    ubfx    x1, x1, #2, #2
    cmp     x1, #2
    b.ne    9b
    mrs     x0, mpidr_el1
    mov     x2, #0xffffff
    movk    x2, #0xff, lsl #32
    and     x0, x0, x2
    adrp    x1, {secondary_boot}
    add     x1, x1, :lo12:{secondary_boot}
    mov     x3, #{max_cpus}
10: ldr     x4, [x1]
    ldr     x5, [x1, #8]
    cmp     x4, x0
    b.ne    11f
    cbnz    x5, 12f
11: add     x1, x1, #24
    subs    x3, x3, #1
    b.ne    10b
    b       9b                      // not ours to run: park
12: ldr     x6, [x1, #16]
    adrp    x1, {mmu_regs}
    add     x1, x1, :lo12:{mmu_regs}
    ldp     x2, x3, [x1]
    ldp     x4, x7, [x1, #16]
    msr     mair_el2, x4
    msr     tcr_el2, x3
    msr     ttbr0_el2, x2
    isb
    tlbi    alle2
    dsb     nsh
    isb
    msr     sctlr_el2, x7
    isb
    mov     sp, x5
    adrp    x0, {vectors}
    add     x0, x0, :lo12:{vectors}
    msr     vbar_el2, x0
    isb
    mov     x0, x6
    bl      {secondary_main}
    b       9b
    "#,
    primary_entry = sym ferrite_primary_entry_sym,
    boot_stack = sym BOOT_STACK,
    stack_size = const STACK_SIZE,
    vectors = sym super::exceptions::VECTORS_SYM,
    early = sym early_entry,
    primary_main = sym crate::boot::primary_main,
    secondary_main = sym crate::boot::secondary_main,
    secondary_boot = sym SECONDARY_BOOT,
    mmu_regs = sym MMU_REGS,
    max_cpus = const MAX_CPUS,
);

unsafe extern "C" {
    #[link_name = "ferrite_primary_entry"]
    fn ferrite_primary_entry_sym();
    #[link_name = "ferrite_secondary_entry"]
    fn ferrite_secondary_entry_sym();
    static __image_start: u8;
    static __image_end: u8;
    static __file_end: u8;
    static __text_end: u8;
}

/// The entry point for secondary CPUs, as a physical address for PSCI CPU_ON or the spin-table.
pub fn secondary_entry_address() -> u64 {
    ferrite_secondary_entry_sym as *const () as u64
}

/// Where the image (including BSS) lies in physical memory.
pub fn image_region() -> (u64, u64) {
    (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    )
}

/// Ferrite's code: from the image start to the end of `.text`.
pub fn text_region() -> (u64, u64) {
    (
        &raw const __image_start as u64,
        &raw const __text_end as u64,
    )
}

/// The size of the loadable image (what the loader copied), for the boot log.
pub fn file_size() -> u64 {
    &raw const __file_end as u64 - &raw const __image_start as u64
}

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// The boot CPU's stack; secondaries get theirs from the heap.
static BOOT_STACK: BootShared<Stack> = BootShared::new(Stack([0; STACK_SIZE]));

pub fn boot_stack_top() -> u64 {
    BOOT_STACK.get() as u64 + STACK_SIZE as u64
}

/// Exception level at entry, recorded for the boot log.
pub static ENTRY_EL: BootShared<u64> = BootShared::new(0);

/// Runs with the MMU off, no heap and no atomics.
extern "C" fn early_entry(dtb: usize) {
    let el = super::cpu::current_el();
    // SAFETY: single CPU, before anything else reads ENTRY_EL.
    unsafe { *ENTRY_EL.get() = el };
    if el != 2 {
        // No MMU of ours to set up at EL1/EL3: primary_main reports and parks.
        return;
    }
    super::mmu::early_enable(dtb);
}
