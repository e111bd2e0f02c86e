//! The AWS backend: EC2 through the AWS SDK for Rust. Its settings (the providers file's section
//! for it) and its kinds are always built, so that a file or a saved state naming them reads in
//! any build; the provider itself (`backend/`) is the `aws` cargo feature, off by default (the
//! SDK is a long build).

pub mod kinds;
pub mod settings;

#[cfg(feature = "aws")]
mod backend;
#[cfg(feature = "aws")]
pub use backend::*;
