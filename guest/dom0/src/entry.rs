//! Entry: the arm64 `Image` header, self-relocation, and the hand-off to Rust for the boot vCPU
//! and for secondaries started by PSCI CPU_ON.
//!
//! The loader (bare QEMU `-kernel`, later Ferrite's domain builder) enters at the first byte at
//! EL1 with the MMU off and x0 = the device tree. dom0 is linked at 0 as a position-independent
//! executable; before any Rust code runs, the entry code applies the `R_AARCH64_RELATIVE`
//! relocations for the address it was loaded at.
//!
//! With the MMU off every data access is Device-nGnRnE: no atomics, no unaligned accesses. So the
//! only Rust that runs before the MMU is on is [`crate::mmu::early_enable`], which makes plain,
//! aligned stores.

use core::arch::global_asm;
use core::cell::UnsafeCell;

/// The most vCPUs dom0 brings up.
pub const MAX_CPUS: usize = 64;

/// Stack size of each vCPU.
pub const STACK_SIZE: usize = 64 * 1024;

/// Data the boot vCPU shares with code running with the MMU off (its own entry, secondaries).
pub struct BootShared<T>(UnsafeCell<T>);

// SAFETY: written by the boot vCPU only before any reader exists (the entry code runs on one
// vCPU; a secondary reads its slot only after it is written, cleaned to the point of coherency
// and the vCPU started by PSCI, which orders the two).
unsafe impl<T> Sync for BootShared<T> {}

impl<T> BootShared<T> {
    pub const fn new(v: T) -> Self {
        Self(UnsafeCell::new(v))
    }
    pub fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The translation-regime registers every vCPU loads before turning its MMU on.
#[repr(C)]
pub struct MmuRegs {
    pub ttbr0: u64,
    pub tcr: u64,
    pub mair: u64,
    pub sctlr: u64,
}

pub static MMU_REGS: BootShared<MmuRegs> = BootShared::new(MmuRegs {
    ttbr0: 0,
    tcr: 0,
    mair: 0,
    sctlr: 0,
});

/// Each secondary's stack top, indexed by the vCPU index it gets as its PSCI context id.
pub static STACK_TOPS: BootShared<[u64; MAX_CPUS]> = BootShared::new([0; MAX_CPUS]);

/// CPACR_EL1.FPEN = 0b11: the target uses FP/SIMD registers (memcpy, formatting), and the boot
/// protocol leaves the trap setting unknown.
const CPACR_FPEN: u64 = 3 << 20;

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
1:  b       dom0_primary_entry

    .section .text.boot, "ax"
dom0_primary_entry:
    mov     x19, x0                 // the device tree
    mov     x0, #{cpacr}
    msr     cpacr_el1, x0
    isb
    // Drop whatever the caches hold for the image and BSS: we write them with the MMU off, and
    // a stale line written back later would undo that.
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
    adrp    x0, {vectors}
    add     x0, x0, :lo12:{vectors}
    msr     vbar_el1, x0
    isb
    mrs     x1, CurrentEL
    ubfx    x1, x1, #2, #2
    cmp     x1, #1
    b.ne    9f                      // dom0 is a guest kernel: EL1 only (see docs/dom0.md)
    mov     x0, x19
    bl      {early}                 // builds the first map, turns the MMU on
    mov     x0, x19
    bl      {primary_main}
9:  wfe
    b       9b

    // Secondary vCPUs (PSCI CPU_ON) arrive here with the MMU off and x0 = their index.
    .global dom0_secondary_entry
dom0_secondary_entry:
    mov     x19, x0
    mov     x1, #{cpacr}
    msr     cpacr_el1, x1
    isb
    adrp    x1, {stack_tops}
    add     x1, x1, :lo12:{stack_tops}
    ldr     x5, [x1, x19, lsl #3]
    cbz     x5, 9b                  // no stack: not ours to run
    adrp    x1, {mmu_regs}
    add     x1, x1, :lo12:{mmu_regs}
    ldp     x2, x3, [x1]
    ldp     x4, x6, [x1, #16]
    msr     mair_el1, x4
    msr     tcr_el1, x3
    msr     ttbr0_el1, x2
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     sctlr_el1, x6
    isb
    mov     sp, x5
    adrp    x0, {vectors}
    add     x0, x0, :lo12:{vectors}
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    bl      {secondary_main}
    b       9b
    "#,
    cpacr = const CPACR_FPEN,
    boot_stack = sym BOOT_STACK,
    stack_size = const STACK_SIZE,
    vectors = sym crate::exceptions::VECTORS_SYM,
    early = sym early_entry,
    primary_main = sym crate::boot::primary_main,
    secondary_main = sym crate::boot::secondary_main,
    stack_tops = sym STACK_TOPS,
    mmu_regs = sym MMU_REGS,
);

unsafe extern "C" {
    #[link_name = "dom0_secondary_entry"]
    fn dom0_secondary_entry_sym();
    static __image_start: u8;
    static __image_end: u8;
    static __file_end: u8;
    static __text_end: u8;
}

/// The entry point for secondary vCPUs, as a physical address for PSCI CPU_ON.
pub fn secondary_entry_address() -> u64 {
    dom0_secondary_entry_sym as *const () as u64
}

/// Where the image (including BSS) lies in memory: [start, end).
pub fn image_region() -> (u64, u64) {
    (
        &raw const __image_start as u64,
        &raw const __image_end as u64,
    )
}

/// dom0's code: from the image start to the end of `.text`.
pub fn text_region() -> (u64, u64) {
    (
        &raw const __image_start as u64,
        &raw const __text_end as u64,
    )
}

/// The size of the loadable image (what the loader copied).
pub fn file_size() -> u64 {
    &raw const __file_end as u64 - &raw const __image_start as u64
}

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// The boot vCPU's stack; secondaries get theirs from the heap.
static BOOT_STACK: BootShared<Stack> = BootShared::new(Stack([0; STACK_SIZE]));

/// Runs with the MMU off, no heap and no atomics.
extern "C" fn early_entry(dtb: usize) {
    crate::mmu::early_enable(dtb);
}
