//! The KubeVirt backend: a Kubernetes cluster with KubeVirt and CDI, through kube's client (no
//! kubectl, no shell).
//!
//! What it does so far: connect from a kubeconfig (a context, a namespace), say whether the
//! cluster can be used (the API answers, KubeVirt and CDI are served, the namespace exists),
//! and find storage classes, which play the part of a plan's pools. Plans are refused, naming
//! the provider, until VMs, networks and images map onto KubeVirt's objects.

pub mod objects;

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::spec::{PoolSpec, ResourceId, ResourceKind, Spec};
use super::{
    AddressQuery, Addresses, Done, Health, HealthStatus, LiveResource, Observed, Owner, Provider,
    ProviderError, Scope,
};
use crate::registry::config::KubevirtSettings;

/// The API groups a cluster must serve for siteplan to put VMs on it, with the version used.
pub const REQUIRED_APIS: &[(&str, &str, &str)] = &[
    ("kubevirt.io", "v1", "KubeVirt"),
    (
        "cdi.kubevirt.io",
        "v1beta1",
        "CDI (the Containerized Data Importer)",
    ),
];

/// A plan's `pool: default` is the cluster's default storage class, marked by this annotation.
const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

/// How long one request may take: a cluster that does not answer is unavailable, not a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KubevirtProvider {
    client: kube::Client,
    namespace: String,
    cluster: String,
}

impl KubevirtProvider {
    /// Reads the kubeconfig and makes a client; nothing is asked of the cluster yet.
    pub async fn connect(settings: &KubevirtSettings) -> Result<Self, ProviderError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            ProviderError::Connection(format!("kubevirt: {what}: {e}"))
        };
        let kubeconfig = match &settings.kubeconfig {
            Some(path) => Kubeconfig::read_from(path),
            None => Kubeconfig::read(),
        }
        .map_err(|e| failed("reading the kubeconfig", &e))?;
        let options = KubeConfigOptions {
            context: settings.context.clone(),
            ..KubeConfigOptions::default()
        };
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| failed("the kubeconfig", &e))?;
        config.connect_timeout = Some(REQUEST_TIMEOUT);
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        let namespace = settings
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let cluster = config.cluster_url.to_string();
        let client = kube::Client::try_from(config).map_err(|e| failed("making a client", &e))?;
        Ok(KubevirtProvider {
            client,
            namespace,
            cluster,
        })
    }

    /// The storage classes, under the names a plan gives them: their own, and `default` for the
    /// one the cluster marks as its default.
    async fn storage_classes(&self) -> Result<Vec<String>, ProviderError> {
        let classes = Api::<StorageClass>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| ProviderError::Connection(format!("listing storage classes: {e}")))?;
        let mut names = Vec::new();
        for class in classes {
            let is_default = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS))
                .is_some_and(|v| v == "true");
            if is_default {
                names.push("default".to_string());
            }
            names.extend(class.metadata.name);
        }
        Ok(names)
    }
}

#[async_trait]
impl Provider for KubevirtProvider {
    fn kind(&self) -> &'static str {
        "kubevirt"
    }

    fn endpoint(&self) -> String {
        format!("{} namespace {}", self.cluster, self.namespace)
    }

    /// Ready when the API answers, serves KubeVirt and CDI, and the namespace exists.
    async fn health(&self) -> Health {
        let unhealthy = |reason: String| Health {
            status: HealthStatus::Unhealthy,
            reason: Some(reason),
        };
        let groups = match self.client.list_api_groups().await {
            Ok(groups) => groups,
            Err(e) => {
                return Health {
                    status: HealthStatus::Unavailable,
                    reason: Some(format!("{}: {e}", self.cluster)),
                }
            }
        };
        for (group, version, what) in REQUIRED_APIS {
            let served = groups
                .groups
                .iter()
                .any(|g| g.name == *group && g.versions.iter().any(|v| v.version == *version));
            if !served {
                return unhealthy(format!(
                    "{what} is not installed: the cluster does not serve {group}/{version}"
                ));
            }
        }
        match Api::<Namespace>::all(self.client.clone())
            .get_opt(&self.namespace)
            .await
        {
            Ok(Some(_)) => Health {
                status: HealthStatus::Ready,
                reason: None,
            },
            Ok(None) => unhealthy(format!("namespace {} does not exist", self.namespace)),
            Err(e) => unhealthy(format!("namespace {}: {e}", self.namespace)),
        }
    }

    /// So far only storage classes, as pools (one LIST).
    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let mut observed = Observed::default();
        if !scope.ids.iter().any(|id| id.kind == ResourceKind::Pool) {
            return Ok(observed);
        }
        let classes = self.storage_classes().await?;
        for id in &scope.ids {
            if id.kind == ResourceKind::Pool && classes.contains(&id.name) {
                observed.resources.insert(
                    id.clone(),
                    LiveResource {
                        spec: Spec::Pool(PoolSpec {
                            name: id.name.clone(),
                            path: String::new(),
                            autostart: true,
                        }),
                        owner: None,
                        active: true,
                        empty: None,
                    },
                );
            }
        }
        Ok(observed)
    }

    fn lower(
        &self,
        _: &crate::plan::intent::Intents,
    ) -> Result<crate::plan::desired::Desired, String> {
        Err(format!(
            "the KubeVirt backend does not apply plans yet: it connects to {} and reports its \
             health (`plan provider list`), but VMs, networks and images do not map onto \
             KubeVirt's objects yet; send these entries to a libvirt provider",
            self.cluster
        ))
    }

    /// The manifests apply will send: the plan's objects, marked as `owner`'s.
    fn export(
        &self,
        intents: &crate::plan::intent::Intents,
        owner: &Owner,
    ) -> Result<Vec<serde_json::Value>, String> {
        let desired = objects::lower(intents, &self.namespace)?;
        Ok(desired
            .resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Object(object) => {
                    let guarded = desired
                        .guards
                        .get(&r.spec.id())
                        .is_some_and(|g| g.prevent_destroy);
                    let owner = Owner {
                        prevent_destroy: guarded,
                        ..owner.clone()
                    };
                    Some(objects::manifest(object, &self.namespace, &owner))
                }
                _ => None,
            })
            .collect())
    }

    async fn create(&self, spec: &Spec, _: &Owner) -> Result<Done, ProviderError> {
        Err(not_yet(&spec.id()))
    }

    async fn update(&self, spec: &Spec, _: &Owner) -> Result<Done, ProviderError> {
        Err(not_yet(&spec.id()))
    }

    async fn delete(&self, id: &ResourceId, _: &Owner) -> Result<Done, ProviderError> {
        Err(not_yet(id))
    }

    async fn addresses(&self, _: &[AddressQuery]) -> Result<Addresses, ProviderError> {
        Ok(Addresses::new())
    }
}

fn not_yet(id: &ResourceId) -> ProviderError {
    ProviderError::Unsupported(format!(
        "{id}: the KubeVirt backend does not change resources yet"
    ))
}
