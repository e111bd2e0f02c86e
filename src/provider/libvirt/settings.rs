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
    /// The host's address on the network between the hosts, for the tunnels of networks that
    /// span a group's hosts. Default: the address of the URI's host (none for a local URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

fn yes() -> bool {
    true
}

/// The host a libvirt URI names (`qemu+ssh://user@host:22/system` → `host`), if any.
fn uri_host(uri: &str) -> Option<String> {
    let authority = uri.split_once("://")?.1.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split_once(']')?.0,
        None => host_port.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_string())
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

    fn tunnel_address(&self) -> Result<String, String> {
        use std::net::ToSocketAddrs;
        if self.uri.contains("socket=") {
            return Err(format!(
                "{} is reached through a socket, and siteplan cannot run the tunnel's commands                  on the host behind it: give the host as qemu+ssh://",
                self.uri
            ));
        }
        if let Some(address) = &self.address {
            return address
                .parse::<std::net::IpAddr>()
                .map(|ip| ip.to_string())
                .map_err(|_| format!("its `address:` `{address}` is not an IP address"));
        }
        let host = uri_host(&self.uri).ok_or_else(|| {
            format!(
                "its URI {} names no host: give the host's address on the network between                  the hosts as `address:`",
                self.uri
            )
        })?;
        let resolved = (host.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| format!("its host `{host}` does not resolve: {e}"))?
            .map(|a| a.ip())
            .find(|ip| !ip.is_loopback());
        resolved.map(|ip| ip.to_string()).ok_or_else(|| {
            format!(
                "its host `{host}` is this machine's loopback, which other hosts cannot reach:                  give its address as `address:`"
            )
        })
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
            address: None,
        };
        assert_eq!(p.connect_uri(), "qemu+ssh://h/system");
    }

    #[test]
    fn a_tunnel_goes_to_the_address_given_else_the_uris_host() {
        let mut p = LibvirtSettings {
            uri: "qemu+ssh://root@10.1.2.3:2222/system?keyfile=/k".into(),
            verify_host_key: true,
            address: None,
        };
        assert_eq!(p.tunnel_address().unwrap(), "10.1.2.3");
        p.uri = "qemu:///system".into();
        assert!(p.tunnel_address().unwrap_err().contains("address:"));
        p.address = Some("192.0.2.7".into());
        assert_eq!(p.tunnel_address().unwrap(), "192.0.2.7");
        p.address = Some("nowhere".into());
        assert!(p.tunnel_address().is_err());
    }
}
