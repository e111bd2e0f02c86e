//! A sandbox provider's section of the providers file, and how it is opened.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::files::expand;
use crate::provider::settings::{Planning, Settings};
use crate::provider::{Provider, ProviderError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SandboxSettings {
    /// Its directory; default `$XDG_STATE_HOME/siteplan/sandbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
}

/// Where the sandbox lives by default: `$SITEPLAN_SANDBOX_DIR`, else the XDG state directory.
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SITEPLAN_SANDBOX_DIR") {
        return PathBuf::from(dir);
    }
    crate::files::state_dir().join("sandbox")
}

impl SandboxSettings {
    /// Its directory, or the default one.
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(default_dir)
    }
}

#[async_trait]
impl Settings for SandboxSettings {
    fn endpoint(&self) -> String {
        self.dir().display().to_string()
    }

    fn expand_paths(&mut self) -> Result<(), (&'static str, String)> {
        if let Some(dir) = &mut self.dir {
            *dir = expand(dir).map_err(|e| ("dir", e))?;
        }
        Ok(())
    }

    /// The sandbox's tunnels go nowhere: an address of the loopback range, the same for the
    /// same directory, tells its end apart from the others'.
    fn tunnel_address(&self) -> Result<String, String> {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.dir().display().to_string().as_bytes());
        Ok(format!(
            "127.{}.{}.{}",
            digest[0],
            digest[1],
            digest[2].max(1)
        ))
    }

    /// The libvirt family's, with what libvirt's test driver cannot do.
    fn planning(&self) -> Result<Planning, ProviderError> {
        Ok(Planning::libvirt(
            crate::provider::libvirt::rules::TestDriverRules,
        ))
    }

    /// Opening reads and writes files, and libvirt's client blocks: on a blocking thread.
    async fn open(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        #[cfg(feature = "libvirt")]
        {
            let dir = self.dir();
            crate::provider::settings::on_blocking_thread(move || {
                Ok(Arc::new(super::Sandbox::open(&dir)?.into_provider()))
            })
            .await
        }
        // The sandbox is the libvirt provider.
        #[cfg(not(feature = "libvirt"))]
        Err(crate::provider::settings::not_built("sandbox", "libvirt"))
    }
}
