//! The backends: one registration table (`backends!` below), a line per backend naming the
//! settings it reads from the providers file. Each backend's folder holds those settings and
//! implements `Settings` for them: where the provider is, and how it is opened (behind the
//! backend's cargo feature). From the table come the providers file's `type:` values, their
//! schema, and opening a configured provider. See docs/providers.md.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::settings::Settings;
use super::{Provider, ProviderError};

/// Makes `Backend` from the table: the backend a provider is, with its own settings, tagged by
/// `type:` in the providers file.
macro_rules! backends {
    ($( $(#[doc = $doc:literal])* $(#[cfg($cfg:meta)])? $kind:literal => $variant:ident($settings:ty), )*) => {
        /// The backend a provider is, with the settings only that backend has (`type:` in the
        /// providers file).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
        #[serde(tag = "type")]
        pub enum Backend {
            $( $(#[doc = $doc])* $(#[cfg($cfg)])? #[serde(rename = $kind)] $variant($settings), )*
        }

        impl Backend {
            /// The backend's type, as the file's `type:` says it.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $( $(#[cfg($cfg)])? Backend::$variant(_) => $kind, )*
                }
            }

            pub fn settings(&self) -> &dyn Settings {
                match self {
                    $( $(#[cfg($cfg)])? Backend::$variant(settings) => settings, )*
                }
            }

            pub fn settings_mut(&mut self) -> &mut dyn Settings {
                match self {
                    $( $(#[cfg($cfg)])? Backend::$variant(settings) => settings, )*
                }
            }
        }
    };
}

backends! {
    /// A libvirt daemon: local (`qemu:///system`) or over ssh (`qemu+ssh://`).
    "libvirt" => Libvirt(super::libvirt::settings::LibvirtSettings),
    /// libvirt's test driver, saved in a directory: needs no hypervisor.
    "sandbox" => Sandbox(super::sandbox::settings::SandboxSettings),
    /// A Kubernetes cluster with KubeVirt and CDI.
    "kubevirt" => Kubevirt(super::kubevirt::settings::KubevirtSettings),
    /// An AWS account's EC2, in one region.
    "aws" => Aws(super::aws::settings::AwsSettings),
    /// The test suite's in-memory backend, added through this table alone.
    #[cfg(test)]
    "memory" => Memory(super::memory::MemorySettings),
}

/// Connects to the provider `backend` (a configured provider's) describes: the one place a
/// configured provider becomes a `Provider`.
pub async fn open(backend: &Backend) -> Result<Arc<dyn Provider>, ProviderError> {
    backend.settings().open().await
}

/// How the default provider (the local libvirt) plans: what a plan is planned with offline
/// when the provider it goes to cannot be told.
pub fn default_planning() -> super::settings::Planning {
    super::settings::Planning::libvirt(super::libvirt::rules::LibvirtRules)
}
