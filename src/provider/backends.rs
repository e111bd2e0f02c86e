//! The backends this build has, and how a configured provider becomes a `Provider`. A new
//! backend adds its `ProviderType`, a match arm here behind its cargo feature, and nothing else
//! (see docs/providers.md).

use std::sync::Arc;

use super::{Provider, ProviderError};
use crate::registry::config::ProviderConfig;
#[cfg(feature = "libvirt")]
use crate::registry::config::ProviderType;

/// Connects to the provider `config` describes. Blocking: call it off the async executor.
pub fn open(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    match config.kind {
        #[cfg(feature = "libvirt")]
        ProviderType::Libvirt => {
            let uri = config.connect_uri().unwrap_or_default();
            Ok(Arc::new(super::libvirt::LibvirtProvider::connect(&uri)?))
        }
        #[cfg(feature = "libvirt")]
        ProviderType::Sandbox => {
            let dir = config
                .dir
                .clone()
                .unwrap_or_else(super::sandbox::default_dir);
            Ok(Arc::new(super::sandbox::Sandbox::open(&dir)?))
        }
        #[cfg(not(feature = "libvirt"))]
        other => Err(ProviderError::Unsupported(format!(
            "this build of siteplan has no {} backend: build it with the `libvirt` feature",
            other.as_str()
        ))),
    }
}
