//! Links the domU with its own `linker.ld` as a fixed-address (non-PIE) executable, for the
//! bare-metal target only (host builds of the workspace are untouched).
//!
//! The root `.cargo/config.toml` compiles every `aarch64-unknown-none` crate with
//! `-C relocation-model=pie` (for Ferrite and dom0, which relocate themselves). Ferrite's
//! domain builder loads a domU's PT_LOAD segments at their `p_vaddr` and applies no
//! relocations, so this image is linked `--no-pie` at its final address: the position-
//! independent code links fine into a static executable, and no dynamic relocation is left.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=--no-pie");
        println!("cargo:rustc-link-arg-bins=-zmax-page-size=4096");
    }
}
