//! The KubeVirt backend: a Kubernetes cluster with KubeVirt and CDI, through kube's client (no
//! kubectl, no shell).
//!
//! It connects from a kubeconfig (a context, a namespace) and says whether the cluster can be
//! used (the API answers, KubeVirt and CDI are served, the namespace exists). A plan becomes
//! objects (`objects.rs`), found again by one LIST per kind with the plan's label, and sent by
//! server-side apply under one field manager, so fields other controllers own are left alone.
//! Storage classes play the part of a plan's pools.

pub mod console;
mod delete;
pub mod lease;
pub mod objects;
mod observe;
mod placement;
mod power;
pub mod rules;
mod said;
mod snapshots;

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use super::settings::KubevirtSettings;
use crate::plan::model::spec::{ObjectSpec, PoolSpec, ResourceId, ResourceKind, Spec};
use crate::provider::capability;
use crate::provider::kubevirt::kinds;
use crate::provider::{
    Address, AddressQuery, AddressSource, Addresses, Done, Health, HealthStatus, LiveResource,
    MadeBy, Observed, Owner, OwnerMark, Pending, PlanMember, Power, Provider, ProviderError, Scope,
};
use objects::{CREATED_FROM, KCLI_PLAN, PLAN_LABEL, PREVENT_DESTROY};
use observe::*;
use said::Said;

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

/// The field manager siteplan's server-side applies are made under.
const FIELD_MANAGER: &str = "siteplan";

/// How long a delete may take to finish (finalizers, a VM shutting down).
const DELETE_TIMEOUT: Duration = Duration::from_secs(300);

/// The kinds of object siteplan makes on a cluster.
const KINDS: [ResourceKind; 4] = [
    kinds::NETWORK_ATTACHMENT_DEFINITION,
    kinds::DATA_VOLUME,
    kinds::SECRET,
    kinds::VIRTUAL_MACHINE,
];

/// The API resource of one of `KINDS`.
fn api_resource(kind: ResourceKind) -> ApiResource {
    let (object_kind, api_version) = objects::kube_type(kind).unwrap_or(("Unknown", "v1"));
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        kinds::VIRTUAL_MACHINE => "virtualmachines",
        kinds::DATA_VOLUME => "datavolumes",
        kinds::NETWORK_ATTACHMENT_DEFINITION => "network-attachment-definitions",
        _ => "secrets",
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: api_version.into(),
        kind: object_kind.into(),
        plural: plural.into(),
    }
}

pub struct KubevirtProvider {
    client: kube::Client,
    /// What the client was made from: a console's websocket needs a client of its own, on its
    /// own runtime, without the read timeout.
    config: kube::Config,
    namespace: String,
    cluster: String,
    rules: rules::KubevirtRules,
    /// How long a delete waits for the object to be gone.
    delete_timeout: Duration,
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
        // Who asked, in the server's audit log and its metrics.
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("siteplan/", env!("CARGO_PKG_VERSION"))),
        ));
        config.connect_timeout = Some(REQUEST_TIMEOUT);
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        let namespace = settings
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let cluster = config.cluster_url.to_string();
        let client =
            kube::Client::try_from(config.clone()).map_err(|e| failed("making a client", &e))?;
        Ok(KubevirtProvider {
            client,
            config,
            namespace,
            cluster,
            rules: rules::KubevirtRules::default(),
            delete_timeout: settings
                .delete_timeout
                .map_or(DELETE_TIMEOUT, Duration::from_secs),
        })
    }

    /// The namespace's Leases, where the plan lock is kept.
    fn leases(&self) -> Api<k8s_openapi::api::coordination::v1::Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn api(&self, kind: ResourceKind) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &api_resource(kind))
    }

    /// A live object as JSON, if it exists.
    async fn get(&self, id: &ResourceId) -> Result<Option<Value>, ProviderError> {
        let found = self
            .api(id.kind)
            .get_opt(&id.name)
            .await
            .map_err(|e| ProviderError::backend(id, e))?;
        Ok(found.and_then(|o| serde_json::to_value(o).ok()))
    }

    /// One kind's objects: the plan's (by label), and those `named`.
    async fn list(
        &self,
        kind: ResourceKind,
        plan: &str,
        named: Vec<String>,
    ) -> Result<Vec<Value>, ProviderError> {
        let failed = |e: kube::Error| {
            let api = api_resource(kind);
            match e {
                // The path itself is unknown: the cluster lacks the API, not the object.
                kube::Error::Api(status) if status.code == 404 => {
                    ProviderError::Connection(format!(
                        "the cluster does not serve {}s ({}): {} is not installed there",
                        api.kind,
                        api.api_version,
                        match api.group.as_str() {
                            "kubevirt.io" => "KubeVirt",
                            "cdi.kubevirt.io" => "CDI (KubeVirt's Containerized Data Importer)",
                            "k8s.cni.cncf.io" => "Multus",
                            _ => "the API",
                        }
                    ))
                }
                e => ProviderError::Connection(format!("listing {}s: {}", api.kind, Said(&e))),
            }
        };
        let api = self.api(kind);
        let mut found: Vec<Value> = Vec::new();
        if !plan.is_empty() {
            let marked = api
                .list(&ListParams::default().labels(&format!("{PLAN_LABEL}={plan}")))
                .await
                .map_err(failed)?;
            found.extend(
                marked
                    .items
                    .into_iter()
                    .filter_map(|o| serde_json::to_value(o).ok()),
            );
        }
        let missing: Vec<String> = named
            .into_iter()
            .filter(|n| !found.iter().any(|o| o["metadata"]["name"] == n.as_str()))
            .collect();
        if !missing.is_empty() {
            let all = api.list(&ListParams::default()).await.map_err(failed)?;
            found.extend(
                all.items
                    .into_iter()
                    .filter(|o| {
                        o.metadata
                            .name
                            .as_ref()
                            .is_some_and(|n| missing.contains(n))
                    })
                    .filter_map(|o| serde_json::to_value(o).ok()),
            );
        }
        Ok(found)
    }

    /// Sends an object by server-side apply, as siteplan's field manager, taking over fields
    /// it set before even if another manager changed them since (that change is drift).
    async fn apply(&self, spec: &ObjectSpec, owner: &Owner) -> Result<(), ProviderError> {
        let id = Spec::Object(spec.clone()).id();
        let manifest = objects::manifest(spec, &self.namespace, owner);
        self.api(spec.object)
            .patch(
                &spec.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&manifest),
            )
            .await
            .map_err(|e| ProviderError::backend(&id, e))?;
        // The object and its mark are one write: a run killed here left an object the next
        // run knows as its own.
        crate::provider::crashpoint::point("object applied");
        Ok(())
    }

    /// A running VM's VirtualMachineInstance, if it is there.
    async fn instance(&self, vm: &str) -> Option<Value> {
        let vmis = ApiResource {
            plural: "virtualmachineinstances".into(),
            kind: "VirtualMachineInstance".into(),
            ..api_resource(kinds::VIRTUAL_MACHINE)
        };
        Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &vmis)
            .get_opt(vm)
            .await
            .ok()
            .flatten()
            .and_then(|o| serde_json::to_value(o).ok())
    }

    /// The live object `id`, which must be `owner`'s.
    async fn owned(&self, id: &ResourceId, owner: &Owner) -> Result<Value, ProviderError> {
        let live = self
            .get(id)
            .await?
            .ok_or_else(|| ProviderError::NotFound(id.clone()))?;
        match mark_of(id.kind, &live) {
            Some(mark) if mark.plan == owner.plan => Ok(live),
            // Adopted: this update writes the plan's mark.
            None if owner.adopt => Ok(live),
            _ => Err(ProviderError::NotOwned {
                id: id.clone(),
                plan: owner.plan.clone(),
            }),
        }
    }

    /// The storage classes, under the names a plan gives them: their own, and `default` for the
    /// one the cluster marks as its default.
    async fn storage_classes(&self) -> Result<Vec<String>, ProviderError> {
        let classes = Api::<StorageClass>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                ProviderError::Connection(format!("listing storage classes: {}", Said(&e)))
            })?;
        let mut names = Vec::new();
        let mut expandable = std::collections::BTreeSet::new();
        for class in classes {
            let grows = class.allow_volume_expansion == Some(true);
            let is_default = class
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS))
                .is_some_and(|v| v == "true");
            if is_default {
                names.push("default".to_string());
                if grows {
                    expandable.insert("default".to_string());
                }
            }
            if let Some(name) = class.metadata.name {
                if grows {
                    expandable.insert(name.clone());
                }
                names.push(name);
            }
        }
        *self
            .rules
            .expandable
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = expandable;
        let mut own: Vec<String> = names.iter().filter(|n| *n != "default").cloned().collect();
        own.sort();
        *self.rules.classes.lock().unwrap_or_else(|p| p.into_inner()) = own;
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
            // It answers, and refuses: the server is there, the credentials are not right.
            Err(e) if !said::does_not_answer(&e) => {
                return unhealthy(format!("{}: {}", self.cluster, Said(&e)))
            }
            Err(e) => {
                return Health {
                    status: HealthStatus::Unavailable,
                    reason: Some(format!("{}: {}", self.cluster, Said(&e))),
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

    /// One LIST per kind by the plan's label (and one more for a kind whose objects the scope
    /// names without the label: another plan's, or nobody's), storage classes as pools, and
    /// PVCs for images the plan expects to exist. A VM asked for as `vm/NAME` (the VM table)
    /// is its VirtualMachine.
    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        self.observe_all(scope).await
    }

    fn lower(
        &self,
        intents: &crate::plan::intent::Intents,
    ) -> Result<crate::plan::model::desired::Desired, String> {
        objects::lower(intents, &self.namespace)
    }

    fn rules(&self) -> &dyn crate::plan::model::rules::Rules {
        &self.rules
    }

    async fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        let Spec::Object(object) = spec else {
            return Err(ProviderError::Invalid(format!(
                "{id}: a cluster holds Kubernetes objects only"
            )));
        };
        match self.get(&id).await? {
            // One being deleted (what a killed run asked for): made again once it is gone.
            Some(live) if !live["metadata"]["deletionTimestamp"].is_null() => {
                self.gone(&id).await?
            }
            Some(_) => return Err(ProviderError::backend(&id, "already exists")),
            None => {}
        }
        self.apply(object, owner).await?;
        Ok(Done {
            summary: format!("{id} created in namespace {}", self.namespace),
            id,
            needs_reboot: false,
        })
    }

    async fn update(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        let Spec::Object(object) = spec else {
            return Err(ProviderError::Invalid(format!(
                "{id}: a cluster holds Kubernetes objects only"
            )));
        };
        let live = self.owned(&id, owner).await?;
        let made_from = mark_of(id.kind, &live).and_then(|m| match m.spec {
            Spec::Object(o) => Some(o),
            _ => None,
        });
        let before = objects::read_back(id.kind, &live, made_from.as_ref());
        self.apply(object, owner).await?;
        // Grown disks: their claims are expanded (the planner refused what cannot grow).
        let disks = rules::disks(&Spec::Object(before.clone()), spec);
        let disks_added = disks.added;
        for (claim, _, _, size) in disks.grown {
            // A merge patch changes the claim CDI made, and never makes one: a claim not there
            // yet (a VM made again a moment ago) is CDI's to make, from the template.
            let patch = serde_json::json!({"spec": {"resources": {"requests": {"storage": size}}}});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..PatchParams::default()
            };
            Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &self.namespace)
                .patch(&claim, &params, &Patch::Merge(&patch))
                .await
                .map_err(|e| match e {
                    kube::Error::Api(status) if status.code == 404 => ProviderError::backend(
                        &id,
                        format!(
                            "claim {claim} is not there yet to expand: CDI makes it from the \
                             VM's disk template; apply again once it is"
                        ),
                    ),
                    e => ProviderError::backend(&id, format!("expanding {claim}: {}", Said(&e))),
                })?;
        }
        // A running VM's template changes wait for its restart (KubeVirt's RestartRequired).
        let needs_reboot = id.kind == kinds::VIRTUAL_MACHINE
            && runs(&live)
            && (disks_added
                || object.fields.iter().any(|(path, value)| {
                    path.starts_with("spec.template.") && before.fields.get(path) != Some(value)
                }));
        Ok(Done {
            summary: if needs_reboot {
                format!("{id} updated; the change takes effect when it restarts")
            } else {
                format!("{id} updated")
            },
            id,
            needs_reboot,
        })
    }

    /// Deletes an object the plan owns, and waits until it is gone.
    async fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        self.delete_owned(id, owner).await
    }

    async fn addresses(&self, vms: &[AddressQuery]) -> Result<Addresses, ProviderError> {
        let vmis = ApiResource {
            plural: "virtualmachineinstances".into(),
            kind: "VirtualMachineInstance".into(),
            ..api_resource(kinds::VIRTUAL_MACHINE)
        };
        let list =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &vmis)
                .list(&ListParams::default())
                .await
                .map_err(|e| {
                    ProviderError::Connection(format!("listing VirtualMachineInstances: {e}"))
                })?;
        let mut found = Addresses::new();
        for vmi in list.items {
            let Some(name) = vmi.metadata.name.clone() else {
                continue;
            };
            if !vms.iter().any(|q| q.vm == name) {
                continue;
            }
            let status = vmi.data.get("status").cloned().unwrap_or_default();
            let mut addresses = Vec::new();
            for interface in status["interfaces"].as_array().into_iter().flatten() {
                let mac = interface["mac"].as_str().map(str::to_ascii_lowercase);
                let mut ips: Vec<&str> = interface["ipAddresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                ips.extend(interface["ipAddress"].as_str());
                for ip in ips {
                    // An address may come with its prefix length.
                    let ip = ip.split('/').next().unwrap_or(ip);
                    if let Ok(ip) = ip.parse() {
                        addresses.push(Address {
                            ip,
                            mac: mac.clone(),
                            source: AddressSource::Vmi,
                        });
                    }
                }
            }
            addresses.dedup();
            found.insert(name, addresses);
        }
        Ok(found)
    }

    fn exporter(&self) -> Option<&dyn capability::Export> {
        Some(self)
    }

    fn serial_console(&self) -> Option<&dyn capability::SerialConsole> {
        Some(self)
    }

    fn inventory(&self) -> Option<&dyn capability::Inventory> {
        Some(self)
    }

    fn placement(&self) -> Option<&dyn capability::Placement> {
        Some(self)
    }

    fn lab_snapshots(&self) -> Option<&dyn capability::LabSnapshots> {
        Some(self)
    }

    fn power_control(&self) -> Option<&dyn capability::PowerControl> {
        Some(self)
    }

    fn plan_locks(&self) -> Option<&dyn capability::PlanLocks> {
        Some(self)
    }
}

impl capability::Export for KubevirtProvider {
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
}

#[async_trait]
impl capability::SerialConsole for KubevirtProvider {
    /// The VirtualMachineInstance's `console` subresource (a websocket), as `virtctl console`.
    async fn console(
        &self,
        vm: &str,
        owner: &Owner,
    ) -> Result<std::sync::Arc<dyn crate::provider::Console>, ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let live = self.owned(&id, owner).await?;
        if !runs(&live) {
            return Err(ProviderError::backend(
                &id,
                "is not running: start it first (`plan start`)",
            ));
        }
        let mut config = self.config.clone();
        config.read_timeout = None;
        let path = format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/{}/virtualmachineinstances/{vm}/console",
            self.namespace
        );
        tokio::task::spawn_blocking(move || console::open(config, path))
            .await
            .map_err(|e| ProviderError::backend(&id, e))?
            .map_err(|e| ProviderError::backend(&id, format!("cannot attach to its console: {e}")))
    }
}

#[async_trait]
impl capability::Inventory for KubevirtProvider {
    /// The VirtualMachines of the namespace, whoever made them, whose template attaches one of
    /// `networks` (NetworkAttachmentDefinitions, by Multus network name).
    async fn network_users(
        &self,
        networks: &[String],
    ) -> Result<Vec<crate::provider::NetworkUser>, ProviderError> {
        let vms = self
            .api(kinds::VIRTUAL_MACHINE)
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                ProviderError::Connection(format!("listing VirtualMachines: {}", Said(&e)))
            })?;
        let mut users = Vec::new();
        for vm in vms.items {
            let Ok(live) = serde_json::to_value(&vm) else {
                continue;
            };
            let metadata = &live["metadata"];
            // A VM being deleted is going: it keeps no network.
            if !metadata["deletionTimestamp"].is_null() {
                continue;
            }
            let plan = metadata["labels"][PLAN_LABEL]
                .as_str()
                .or_else(|| metadata["annotations"][KCLI_PLAN].as_str())
                .map(str::to_string);
            let attached = live["spec"]["template"]["spec"]["networks"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n["multus"]["networkName"].as_str())
                // `namespace/name`, or the name in the VM's own namespace.
                .map(|n| n.rsplit('/').next().unwrap_or(n).to_string())
                .filter(|n| networks.contains(n));
            for network in attached {
                users.push(crate::provider::NetworkUser {
                    network,
                    vm: metadata["name"].as_str().unwrap_or_default().to_string(),
                    plan: plan.clone(),
                    running: runs(&live),
                });
            }
        }
        Ok(users)
    }

    async fn plans(&self) -> Result<Vec<PlanMember>, ProviderError> {
        let vms = self
            .api(kinds::VIRTUAL_MACHINE)
            .list(&ListParams::default())
            .await
            .map_err(|e| ProviderError::Connection(format!("listing VirtualMachines: {e}")))?;
        let mut found = Vec::new();
        for vm in vms.items {
            let Ok(live) = serde_json::to_value(&vm) else {
                continue;
            };
            let metadata = &live["metadata"];
            let (plan, made_by) = match (
                metadata["labels"][PLAN_LABEL].as_str(),
                metadata["annotations"][KCLI_PLAN].as_str(),
            ) {
                (Some(plan), _) => (plan.to_string(), MadeBy::Siteplan),
                (None, Some(plan)) => (plan.to_string(), MadeBy::Kcli),
                (None, None) => continue,
            };
            found.push(PlanMember {
                plan,
                made_by,
                vm: metadata["name"].as_str().unwrap_or_default().to_string(),
                running: runs(&live),
            });
        }
        Ok(found)
    }
}

#[async_trait]
impl capability::PlanLocks for KubevirtProvider {
    /// From the VirtualMachineInstances' status (one LIST): each interface's addresses.
    async fn create_lock(
        &self,
        holder: &crate::provider::lock::LockHolder,
    ) -> Result<crate::provider::lock::LockAttempt, ProviderError> {
        lease::create(&self.leases(), holder, &self.namespace).await
    }

    async fn read_lock(
        &self,
        plan: &str,
    ) -> Result<Option<crate::provider::lock::FoundLock>, ProviderError> {
        lease::read(&self.leases(), plan).await
    }

    async fn renew_lock(
        &self,
        holder: &crate::provider::lock::LockHolder,
        token: &str,
    ) -> Result<(), ProviderError> {
        lease::renew(&self.leases(), holder, token, &self.namespace).await
    }

    async fn delete_lock(&self, plan: &str, token: &str) -> Result<bool, ProviderError> {
        lease::delete(&self.leases(), plan, token).await
    }
}
