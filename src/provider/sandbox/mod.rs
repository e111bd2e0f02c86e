//! The sandbox backend: the libvirt provider on libvirt's in-process test driver, with its state
//! saved in a directory. Its settings are always built; the backend (`backend/`) comes with the
//! `libvirt` cargo feature, as it is the libvirt provider.

pub mod settings;

#[cfg(feature = "libvirt")]
mod backend;
#[cfg(feature = "libvirt")]
pub use backend::*;
