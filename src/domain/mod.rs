//! Domains and their vCPUs, as policy: identities, power states and the PSCI rules that move
//! vCPUs between them. The arch code owns the registers; this owns what is allowed.

pub mod bootcfg;
pub mod config;
pub mod layout;
pub mod power;
pub mod pvbuild;

/// A domain's identity. dom0 is 0.
pub type DomId = u16;

/// Why a domain stopped running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainState {
    Running,
    /// A fault Ferrite could not hand back to the guest; the reason is for the log.
    Crashed(alloc::string::String),
    PoweredOff,
    Rebooting,
}

/// The boot domains packed into this image by `build.rs` from the file `FERRITE_DOMAINS` names
/// (`boards/<board>/domains.toml`, checked by [`bootcfg`] at build time): `SOURCE`, that file's
/// name (empty if none), and `DOMUS`, each domain's `domu=` settings, which boot parses with
/// [`config::DomuSpec::parse`] as it does the command line's.
pub mod packed {
    include!(concat!(env!("OUT_DIR"), "/domains.rs"));
}
