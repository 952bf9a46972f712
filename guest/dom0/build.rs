//! Links dom0 with its own `linker.ld`, position-independent, for the bare-metal target.
//!
//! The root `.cargo/config.toml` already compiles every `aarch64-unknown-none` crate with
//! `-C relocation-model=pie`; this adds the link side: linked at 0 as a PIE, relocated by
//! `src/entry.rs` wherever the loader (QEMU `-kernel`, Ferrite's domain builder) put it.

fn main() {
    println!("cargo:rerun-if-changed=linker.ld");
    if std::env::var("TARGET").as_deref() == Ok("aarch64-unknown-none") {
        let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
        println!("cargo:rustc-link-arg-bins=-T{dir}/linker.ld");
        println!("cargo:rustc-link-arg-bins=-pie");
        println!("cargo:rustc-link-arg-bins=--no-dynamic-linker");
        println!("cargo:rustc-link-arg-bins=-znotext");
    }
}
