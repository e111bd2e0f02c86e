//! A libvirt provider's section of the providers file, and how it is opened.

use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::provider::settings::{Planning, Settings};
use crate::provider::{Provider, ProviderError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LibvirtSettings {
    /// The connection URI (`qemu:///system`, `qemu+ssh://root@lab1/system`).
    pub uri: String,
    /// Over ssh, check the host's key against known_hosts. Default true; false adds
    /// `no_verify=1` to the URI.
    #[serde(default = "yes")]
    pub verify_host_key: bool,
}

fn yes() -> bool {
    true
}

impl LibvirtSettings {
    /// The URI to connect to, with host-key checking turned off only when asked.
    pub fn connect_uri(&self) -> String {
        let uri = &self.uri;
        if self.verify_host_key || !uri.contains("+ssh") || uri.contains("no_verify=") {
            return uri.clone();
        }
        let joiner = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{joiner}no_verify=1")
    }
}

#[async_trait]
impl Settings for LibvirtSettings {
    fn endpoint(&self) -> String {
        self.uri.clone()
    }

    fn planning(&self) -> Result<Planning, ProviderError> {
        Ok(Planning::libvirt(super::rules::LibvirtRules))
    }

    /// libvirt's client blocks: it connects on a blocking thread.
    async fn open(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        #[cfg(feature = "libvirt")]
        {
            let uri = self.connect_uri();
            crate::provider::settings::on_blocking_thread(move || {
                Ok(Arc::new(super::LibvirtProvider::connect(&uri)?))
            })
            .await
        }
        #[cfg(not(feature = "libvirt"))]
        Err(crate::provider::settings::not_built("libvirt", "libvirt"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_keys_are_checked_unless_told_not_to() {
        let p = LibvirtSettings {
            uri: "qemu+ssh://h/system".into(),
            verify_host_key: true,
        };
        assert_eq!(p.connect_uri(), "qemu+ssh://h/system");
    }
}
