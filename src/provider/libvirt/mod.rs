//! The libvirt backend: how a plan's intents become libvirt's resources (`lower.rs`), what
//! changing them costs (`rules.rs`), both pure and always built (plan-against-plan uses them
//! with no provider), and the provider that talks to libvirtd (`backend/`, behind the
//! `libvirt` cargo feature). Its settings (the providers file's section for it) are always
//! built. The sandbox is this provider on libvirt's test driver.

pub mod lower;
pub mod rules;
pub mod settings;

#[cfg(feature = "libvirt")]
mod backend;
#[cfg(feature = "libvirt")]
pub use backend::*;
