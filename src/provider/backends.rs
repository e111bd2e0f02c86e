//! The backends this build has, and how a configured provider becomes a `Provider`. A new
//! backend adds its settings variant (`registry::config::Backend`), a match arm here behind its
//! cargo feature, and nothing else (see docs/providers.md).

use std::sync::Arc;

use super::{Provider, ProviderError};
#[cfg(any(feature = "libvirt", feature = "kubevirt"))]
use crate::registry::config::Backend;
use crate::registry::config::ProviderConfig;

/// Connects to the provider `config` describes: the one place a configured provider becomes a
/// `Provider`. Backends whose clients block connect on a blocking thread; async clients
/// (Kubernetes) connect here directly.
pub async fn open(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    match &config.backend {
        #[cfg(feature = "kubevirt")]
        Backend::Kubevirt(kube) => Ok(Arc::new(
            super::kubevirt::KubevirtProvider::connect(kube).await?,
        )),
        _ => {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_blocking(&config))
                .await
                .map_err(|e| ProviderError::Connection(format!("opening the provider: {e}")))?
        }
    }
}

fn open_blocking(config: &ProviderConfig) -> Result<Arc<dyn Provider>, ProviderError> {
    match &config.backend {
        #[cfg(feature = "libvirt")]
        Backend::Libvirt(libvirt) => Ok(Arc::new(super::libvirt::LibvirtProvider::connect(
            &libvirt.connect_uri(),
        )?)),
        #[cfg(feature = "libvirt")]
        Backend::Sandbox(sandbox) => {
            let dir = sandbox
                .dir
                .clone()
                .unwrap_or_else(super::sandbox::default_dir);
            Ok(Arc::new(
                super::sandbox::Sandbox::open(&dir)?.into_provider(),
            ))
        }
        other => Err(ProviderError::Unsupported(format!(
            "this build of siteplan has no {} backend: build it with the `{}` feature",
            other.as_str(),
            match other.as_str() {
                "sandbox" => "libvirt",
                kind => kind,
            }
        ))),
    }
}
