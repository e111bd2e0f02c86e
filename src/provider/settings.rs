//! What every backend's settings (its section of the providers file) implement, for the
//! registration table (`backends`) to open a configured provider without knowing its backend.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Provider, ProviderError};
use crate::plan::intent::Intents;
use crate::plan::model::desired::Desired;
use crate::plan::model::rules::Rules;

/// A backend's lowering: a plan's intents as the resources it holds.
pub type Lowering = Box<dyn Fn(&Intents) -> Result<Desired, String> + Send + Sync>;

/// A backend's lowering and rules, as planning needs them with no provider opened.
pub struct Planning {
    pub lower: Lowering,
    pub rules: Box<dyn Rules>,
}

impl Planning {
    /// The libvirt family's: its lowering, and `rules` (libvirtd's, or its test driver's).
    pub fn libvirt(rules: impl Rules + 'static) -> Planning {
        Planning {
            lower: Box::new(super::libvirt::lower::libvirt),
            rules: Box::new(rules),
        }
    }
}

/// Opens a provider whose client blocks on a blocking thread, off the executor.
pub async fn on_blocking_thread(
    open: impl FnOnce() -> Result<Arc<dyn Provider>, ProviderError> + Send + 'static,
) -> Result<Arc<dyn Provider>, ProviderError> {
    tokio::task::spawn_blocking(open)
        .await
        .map_err(|e| ProviderError::Connection(format!("opening the provider: {e}")))?
}

/// A backend's own settings in the providers file: what only it knows of a configured provider.
#[async_trait]
pub trait Settings: Send + Sync {
    /// Where the provider is, for display, before it is opened.
    fn endpoint(&self) -> String;

    /// Expands `~` and `$VARS` in the paths it names, with the key of the one that fails.
    fn expand_paths(&mut self) -> Result<(), (&'static str, String)> {
        Ok(())
    }

    /// How this backend plans without being asked anything: its lowering and its rules, for
    /// `plan diff --against`, which compares two versions of a plan with no provider.
    fn planning(&self) -> Result<Planning, ProviderError>;

    /// The address the host's end of a tunnel uses (a network that spans the hosts of a
    /// group), and other hosts send to; why there is none, for backends that hold no tunnels.
    fn tunnel_address(&self) -> Result<String, String> {
        Err("it holds no tunnels".into())
    }

    /// Connects to the provider these settings describe. Backends whose clients block connect
    /// on a blocking thread.
    async fn open(&self) -> Result<Arc<dyn Provider>, ProviderError>;
}

/// What a backend that this build leaves out answers when opened.
pub fn not_built(kind: &str, feature: &str) -> ProviderError {
    ProviderError::Unsupported(format!(
        "this build of siteplan has no {kind} backend: build it with the `{feature}` feature"
    ))
}
