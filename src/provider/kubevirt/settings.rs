//! A KubeVirt provider's section of the providers file, and how it is opened.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::files::expand;
use crate::provider::settings::{Planning, Settings};
use crate::provider::{Provider, ProviderError};

/// A Kubernetes cluster with KubeVirt and CDI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct KubevirtSettings {
    /// The kubeconfig file; default: `$KUBECONFIG`, else `~/.kube/config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig's context to use; default: its current context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// The namespace the plan's objects go to; default: the context's namespace, else `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// How long a delete waits for the object to be gone (its finalizers done, what it owns
    /// deleted by the garbage collector), in seconds; default: 300.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_timeout: Option<u64>,
}

#[async_trait]
impl Settings for KubevirtSettings {
    /// The cluster's URL is in the kubeconfig, read only when the provider is opened.
    fn endpoint(&self) -> String {
        format!(
            "{}{}{}",
            self.kubeconfig
                .as_ref()
                .map_or("kubeconfig".into(), |p| p.display().to_string()),
            self.context
                .as_ref()
                .map_or(String::new(), |c| format!(" context {c}")),
            self.namespace
                .as_ref()
                .map_or(String::new(), |n| format!(" namespace {n}")),
        )
    }

    fn expand_paths(&mut self) -> Result<(), (&'static str, String)> {
        if let Some(path) = &mut self.kubeconfig {
            *path = expand(path).map_err(|e| ("kubeconfig", e))?;
        }
        Ok(())
    }

    /// Its objects in the namespace the settings name (the kubeconfig's is not read: nothing is
    /// asked), and its rules as they stand before a cluster says which storage classes grow.
    fn planning(&self) -> Result<Planning, ProviderError> {
        #[cfg(feature = "kubevirt")]
        {
            let namespace = self.namespace.clone().unwrap_or_else(|| "default".into());
            Ok(Planning {
                lower: Box::new(move |intents| super::objects::lower(intents, &namespace)),
                rules: Box::new(super::rules::KubevirtRules::default()),
            })
        }
        #[cfg(not(feature = "kubevirt"))]
        Err(crate::provider::settings::not_built("kubevirt", "kubevirt"))
    }

    /// Kubernetes' client is async: it connects here.
    async fn open(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        #[cfg(feature = "kubevirt")]
        return Ok(Arc::new(super::KubevirtProvider::connect(self).await?));
        #[cfg(not(feature = "kubevirt"))]
        Err(crate::provider::settings::not_built("kubevirt", "kubevirt"))
    }
}
