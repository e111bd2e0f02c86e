//! Backends behind one interface: what exists, what a change costs, and making changes.
//!
//! A provider reports live state as `Spec`s normalised like the planner's desired specs, and says
//! which resources a plan owns through ownership marks it keeps on the backend itself (there is no
//! state file). It never deletes what the plan does not own.
//!
//! Providers: `libvirt` (qemu:///system, qemu+ssh://, test:///) and `sandbox` (the libvirt
//! provider on libvirt's in-process test driver, with its state saved in a file).
//! See docs/providers.md for how to add one.

pub mod aws;
pub mod backends;
pub mod capability;
pub mod crashpoint;
pub mod fetch;
pub mod kubevirt;
pub mod libvirt;
pub mod lock;
#[cfg(test)]
pub mod memory;
pub mod sandbox;
pub mod settings;
pub mod snapshot;

use std::collections::BTreeMap;
use std::net::IpAddr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use crate::plan::model::spec::{ResourceId, ResourceKind, Spec};
pub use crate::plan::model::{
    Disruption, LiveResource, Observed, OwnerMark, Pending, Power, ReadinessQuery,
};

/// Which plan a change is made for, and the guard to record with it. Written into every mark
/// the provider keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub plan: String,
    /// The resource's `prevent_destroy`, recorded in its mark so that the guard holds even when
    /// the plan file can no longer be read.
    pub prevent_destroy: bool,
    /// The plan file it is applied from (`ops::request::plan_source`), recorded in its mark.
    pub applied_from: Option<String>,
    /// The group of hosts the resource was placed on, recorded in its mark.
    pub group: Option<String>,
    /// An update may take a resource that carries no plan's mark (adoption): it becomes this
    /// plan's. Never set for a delete.
    pub adopt: bool,
}

impl Owner {
    /// The owner for changes that record no guard and no file (deletes, day-two commands,
    /// and tests).
    pub fn plan(plan: &str) -> Owner {
        Owner {
            plan: plan.to_string(),
            prevent_destroy: false,
            applied_from: None,
            group: None,
            adopt: false,
        }
    }
}

/// Where an address shown for a VM comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressSource {
    /// The plan configures it in the guest (cloud-init's network config).
    Static,
    /// A DHCP lease of the VM's network.
    Lease,
    /// The guest agent, asked through the hypervisor: what the guest itself has.
    Agent,
    /// A KubeVirt VirtualMachineInstance's status (its guest agent's report, or the pod's
    /// address on the pod network).
    Vmi,
    /// A cloud instance's public address, as the cloud's API reports it.
    Public,
    /// A cloud instance's private address in its subnet, as the cloud's API reports it.
    Private,
}

impl AddressSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressSource::Static => "static",
            AddressSource::Lease => "lease",
            AddressSource::Agent => "agent",
            AddressSource::Vmi => "vmi",
            AddressSource::Public => "public",
            AddressSource::Private => "private",
        }
    }
}

/// Whether a guest is ready: cloud-init has finished its work (the VM's `cmds` and scripts
/// have run), and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Not yet, and why.
    Pending(String),
    Ready,
    /// cloud-init finished with errors: what it said, and the last lines of its output.
    Failed {
        errors: Vec<String>,
        log: Vec<String>,
    },
}

/// An address a provider reports for a VM, on the NIC with `mac` when it knows which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub ip: IpAddr,
    pub mac: Option<String>,
    pub source: AddressSource,
}

impl Address {
    /// Worth showing: not loopback, not IPv6 link-local (every interface has one).
    pub fn reachable(&self) -> bool {
        match self.ip {
            IpAddr::V4(ip) => !ip.is_loopback() && !ip.is_link_local(),
            IpAddr::V6(ip) => !ip.is_loopback() && (ip.segments()[0] & 0xffc0) != 0xfe80,
        }
    }
}

/// Addresses by VM name.
pub type Addresses = BTreeMap<String, Vec<Address>>;

/// A VM whose addresses are asked for, with the MACs of the NICs its guest configures
/// statically (those ask no DHCP server for a lease, which a simulated one must know), and
/// whether it has a guest agent to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressQuery {
    pub vm: String,
    pub static_macs: Vec<String>,
    /// The plan gives it a guest agent, which may be asked.
    pub agent: bool,
}

/// What observing should cover.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Resources marked with this plan are always included.
    pub plan: String,
    /// Resources the plan refers to or declares, owned or not.
    pub ids: Vec<ResourceId>,
}

/// Which tool made a plan found on a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MadeBy {
    Siteplan,
    Kcli,
}

/// A VM that belongs to a plan, as a provider's marks say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanMember {
    pub plan: String,
    pub made_by: MadeBy,
    pub vm: String,
    pub running: bool,
}

/// A VM attached to a network, with the plan that made it (siteplan's mark or kcli's), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkUser {
    pub network: String,
    pub vm: String,
    pub plan: Option<String>,
    pub running: bool,
}

/// A VM's serial console, attached: what the guest writes, and what is typed to it. Calls
/// block; `plan console` makes them from threads of its own.
pub trait Console: Send + Sync {
    /// Bytes from the guest; 0 when the console closed (the VM stopped).
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Bytes to the guest.
    fn send(&self, data: &[u8]) -> std::io::Result<()>;
}

/// What `plan info` shows of a VM beyond its spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmDetails {
    /// Each disk's path on the host, by `pool/volume`.
    pub disk_paths: BTreeMap<String, String>,
    /// The VM's snapshots, by name.
    pub snapshots: Vec<String>,
    /// Those of them that belong to a lab snapshot (`plan snapshot create`).
    pub lab_snapshots: Vec<String>,
    /// Its size where its spec does not hold it as numbers (a cloud's instance type).
    pub memory_mib: Option<u64>,
    pub cpus: Option<u64>,
    /// Its disks and NICs where its spec does not list them as the model's.
    pub disks: Vec<DiskDetails>,
    pub nics: Vec<NicDetails>,
}

/// A disk of a VM, as its backend holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskDetails {
    /// Its name in the plan.
    pub name: String,
    /// Where it is attached (a bus, a device).
    pub attached: String,
    pub size_bytes: Option<u64>,
    /// Its format or storage type (`qcow2`, `gp3`).
    pub format: Option<String>,
    /// Where the backend keeps it (a path, a volume id).
    pub path: Option<String>,
}

/// A NIC of a VM, as its backend holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NicDetails {
    pub network: String,
    pub mac: Option<String>,
    pub model: String,
}

/// What a create, update or delete did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub id: ResourceId,
    pub summary: String,
    /// The change is saved but takes effect only after the VM restarts.
    pub needs_reboot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ready,
    Unhealthy,
    Unavailable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub status: HealthStatus,
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{0} does not exist")]
    NotFound(ResourceId),
    #[error("{id} was not created by plan `{plan}`; siteplan never changes or deletes what a plan does not own")]
    NotOwned { id: ResourceId, plan: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("{id}: {message}")]
    Backend { id: ResourceId, message: String },
    /// The backend itself failed (connecting, listing), not one resource.
    #[error("{0}")]
    Connection(String),
    #[error("{0}")]
    Invalid(String),
}

impl ProviderError {
    pub fn backend(id: &ResourceId, message: impl std::fmt::Display) -> Self {
        ProviderError::Backend {
            id: id.clone(),
            message: message.to_string(),
        }
    }
}

/// The core every backend implements: what it holds, what changing it costs, and changing it.
/// What a backend may do besides is a capability (`capability`) it opts into by answering
/// `Some(self)` from the method of that name; the operations ask through `capability::require`.
///
/// Methods are async so that backends with async clients (Kubernetes) fit; backends with blocking
/// APIs (libvirt) run them on blocking threads, never on the executor's.
#[async_trait]
pub trait Provider: Send + Sync {
    /// The provider's type, such as `libvirt` or `sandbox`.
    fn kind(&self) -> &'static str;

    /// Where it connects, for display (a URI or a path).
    fn endpoint(&self) -> String;

    /// How many changes this backend takes at once, whatever `--parallelism` says; `None` for
    /// no limit of its own.
    fn parallelism(&self) -> Option<usize> {
        None
    }

    /// Whether the backend answers and can be used.
    async fn health(&self) -> Health;

    /// Everything in `scope`, in as few round trips as the backend allows.
    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError>;

    /// The resources this backend holds for a plan's intents. Pure.
    fn lower(
        &self,
        intents: &crate::plan::intent::Intents,
    ) -> Result<crate::plan::model::desired::Desired, String>;

    /// What only this backend knows about changing its resources (costs, leftovers, restarts)
    /// and what it can do at all; the planner asks.
    fn rules(&self) -> &dyn crate::plan::model::rules::Rules;

    async fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError>;

    /// Brings an owned resource to `spec` without replacing it. Attributes whose disruption is
    /// `Replace` are refused: the planner replaces instead.
    async fn update(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError>;

    /// Deletes a resource `owner` owns; refuses anything else.
    async fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError>;

    /// Addresses of the NICs of each of `vms` that runs, from DHCP leases and the guest agent.
    /// A VM is absent (or has none) when they are not known yet. One call for all, so a
    /// provider can look once.
    async fn addresses(&self, vms: &[AddressQuery]) -> Result<Addresses, ProviderError>;

    // The capabilities it opts into (see `capability`).

    fn plan_locks(&self) -> Option<&dyn capability::PlanLocks> {
        None
    }

    fn lab_snapshots(&self) -> Option<&dyn capability::LabSnapshots> {
        None
    }

    fn power_control(&self) -> Option<&dyn capability::PowerControl> {
        None
    }

    fn serial_console(&self) -> Option<&dyn capability::SerialConsole> {
        None
    }

    fn exporter(&self) -> Option<&dyn capability::Export> {
        None
    }

    fn inventory(&self) -> Option<&dyn capability::Inventory> {
        None
    }

    fn placement(&self) -> Option<&dyn capability::Placement> {
        None
    }

    fn repair(&self) -> Option<&dyn capability::Repair> {
        None
    }

    fn guest_readiness(&self) -> Option<&dyn capability::GuestReadiness> {
        None
    }

    fn volume_content(&self) -> Option<&dyn capability::VolumeContent> {
        None
    }
}
