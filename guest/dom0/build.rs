//! Links dom0 with its own `linker.ld`, position-independent, for the bare-metal target, and
//! packs the PV domU image the toolstack builds domains from.
//!
//! The root `.cargo/config.toml` already compiles every `aarch64-unknown-none` crate with
//! `-C relocation-model=pie`; this adds the link side: linked at 0 as a PIE, relocated by
//! `src/entry.rs` wherever the loader (QEMU `-kernel`, Ferrite's domain builder) put it.
//!
//! `FERRITE_DOMU_IMAGE` (set by the Makefile to `build/guest/domu.elf`) is copied to
//! `$OUT_DIR/domu.elf`, which `src/toolstack/mod.rs` includes; without it the file is empty and
//! `create` says there is no image.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-env-changed=FERRITE_DOMU_IMAGE");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("domu.elf");
    let image = match std::env::var("FERRITE_DOMU_IMAGE") {
        Ok(p) if !p.is_empty() => {
            println!("cargo:rerun-if-changed={p}");
            std::fs::read(&p).unwrap_or_else(|e| panic!("FERRITE_DOMU_IMAGE={p}: {e}"))
        }
        _ => Vec::new(),
    };
    // Only rewritten when it changed, so an unchanged image does not relink dom0.
    if std::fs::read(&out).ok().as_deref() != Some(&image[..]) {
        std::fs::write(&out, &image).unwrap();
    }
    if std::env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=-pie");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-znotext");
    }
}
