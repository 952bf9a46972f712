//! Domains and their vCPUs, as policy: identities, power states and the PSCI rules that move
//! vCPUs between them. The arch code owns the registers; this owns what is allowed.

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
