//! What a backend may do beyond the core of `Provider`. Each capability is a trait; a backend
//! opts into one by answering `Some(self)` from the `Provider` method of that name, and the
//! operations ask for it through `require`, which words the refusal, here and only here, when
//! the backend has not opted in.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::lock::{FoundLock, LockAttempt, LockHolder};
use super::snapshot::{FoundSnapshots, SnapshotMark};
use super::{
    Console, Done, NetworkUser, Owner, PlanMember, Power, Provider, ProviderError, Readiness,
    ReadinessQuery, Spec, VmDetails,
};
use crate::plan::intent::Intents;

/// A capability a backend may lack, for the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    PlanLock,
    LabSnapshots,
    Power,
    SerialConsole,
    Export,
    Inventory,
    Repair,
    GuestReadiness,
    VolumeContent,
}

impl Capability {
    /// What a backend without it cannot do, after "the KIND provider".
    fn lacking(self) -> &'static str {
        match self {
            Capability::PlanLock => "keeps no plan lock",
            Capability::LabSnapshots => "cannot take lab snapshots",
            Capability::Power => "cannot start or stop VMs",
            Capability::SerialConsole => "has no serial console to attach to",
            Capability::Export => {
                "takes no Kubernetes objects, and `plan export` prints Kubernetes objects \
                 only: choose a kubevirt provider with --provider"
            }
            Capability::Inventory => "cannot tell which plans and VMs it holds",
            Capability::Repair => "cannot take over unmarked resources or move a running VM's NICs",
            Capability::GuestReadiness => "cannot tell whether a guest is ready",
            Capability::VolumeContent => "cannot read volumes",
        }
    }
}

/// The capability `found` (a `Provider` method's answer), or the one refusal for `provider`
/// lacking `what`.
pub fn require<'a, T: ?Sized>(
    found: Option<&'a T>,
    provider: &dyn Provider,
    what: Capability,
) -> Result<&'a T, ProviderError> {
    found.ok_or_else(|| {
        ProviderError::Unsupported(format!(
            "the {} provider {}",
            provider.kind(),
            what.lacking()
        ))
    })
}

/// A lock object per plan on the backend (see `lock`): two runs of one plan exclude each other
/// wherever they run.
#[async_trait]
pub trait PlanLocks: Send + Sync {
    /// Creates the plan's lock object, atomically: two runs that try at once cannot both
    /// succeed. When one exists, it is returned as found.
    async fn create_lock(&self, holder: &LockHolder) -> Result<LockAttempt, ProviderError>;

    /// The plan's lock object, if there is one.
    async fn read_lock(&self, plan: &str) -> Result<Option<FoundLock>, ProviderError>;

    /// Writes `holder` (renewed) into the lock object `token` names; an error when that object
    /// is gone or is another run's.
    async fn renew_lock(&self, holder: &LockHolder, token: &str) -> Result<(), ProviderError>;

    /// Deletes the plan's lock object if it is still the one `token` names; `false` when it
    /// was gone or another one.
    async fn delete_lock(&self, plan: &str, token: &str) -> Result<bool, ProviderError>;
}

/// Lab snapshots (`plan snapshot`): every VM of a plan paused, snapshotted and resumed together.
#[async_trait]
pub trait LabSnapshots: Send + Sync {
    /// Why these VMs cannot have a lab snapshot taken, one reason each, checked before any
    /// is paused (firmware or disks the backend cannot snapshot).
    async fn snapshot_refusals(
        &self,
        vms: &[String],
        owner: &Owner,
    ) -> Result<Vec<String>, ProviderError>;

    /// Pauses a running VM `owner` owns; `false` when it was not running (nothing to do).
    async fn pause(&self, vm: &str, owner: &Owner) -> Result<bool, ProviderError>;

    /// Resumes a paused VM `owner` owns.
    async fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError>;

    /// Takes one VM's snapshot of a lab snapshot, named and marked by `mark` (with its
    /// memory when it runs). A paused VM stays paused.
    async fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError>;

    /// Every snapshot of the VMs `plan` owns, with its mark when it is a lab snapshot's;
    /// `(vm, name)` for the ones a person took.
    async fn snapshots(&self, plan: &str) -> Result<FoundSnapshots, ProviderError>;

    /// Brings a VM `owner` owns back to its snapshot `name`: disks, memory and definition.
    /// A VM that ran comes back paused, for the lab to resume all at once.
    async fn revert_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError>;

    /// Deletes a VM's lab snapshot `name` if it carries `owner`'s plan's mark; `false` when
    /// there was none. A snapshot a person took is refused.
    async fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError>;
}

/// Starting, stopping and restarting VMs (`plan start|stop|restart`, `apply --restart`).
#[async_trait]
pub trait PowerControl: Send + Sync {
    /// Starts, stops or restarts a VM `owner` owns; refuses one it does not. Starting one that
    /// runs, or stopping one that is off, does nothing and says so.
    async fn power(&self, vm: &str, power: Power, owner: &Owner) -> Result<Done, ProviderError>;
}

/// A VM's serial console (`plan console`).
#[async_trait]
pub trait SerialConsole: Send + Sync {
    /// Attaches to the serial console of a running VM `owner` owns.
    async fn console(&self, vm: &str, owner: &Owner) -> Result<Arc<dyn Console>, ProviderError>;
}

/// The objects a plan becomes, printed rather than sent (`plan export`).
pub trait Export: Send + Sync {
    /// The objects for a plan's intents, as the backend would send them (Kubernetes
    /// manifests).
    fn export(&self, intents: &Intents, owner: &Owner) -> Result<Vec<serde_json::Value>, String>;
}

/// What else the backend holds, whoever made it: other plans' VMs, and what uses a network.
#[async_trait]
pub trait Inventory: Send + Sync {
    /// Every VM on the backend attached to one of `networks`, whoever made it: what deleting
    /// those networks would cut off.
    async fn network_users(&self, networks: &[String]) -> Result<Vec<NetworkUser>, ProviderError>;

    /// Every VM on the backend that belongs to a plan: siteplan's marks, and kcli's (`plan
    /// list`).
    async fn plans(&self) -> Result<Vec<PlanMember>, ProviderError>;

    /// What `plan info` shows of a VM beyond its spec (disk paths, snapshots); nothing by
    /// default.
    async fn details(&self, vm: &str) -> Result<VmDetails, ProviderError> {
        let _ = vm;
        Ok(VmDetails::default())
    }
}

/// What the backend offers to place VMs on (DCM's capacity metadata).
#[async_trait]
pub trait Placement: Send + Sync {
    /// The CPUs and memory of its hosts or nodes, in all; `None` where it reports none (a
    /// cluster without nodes).
    async fn capacity(&self) -> Result<Option<Capacity>, ProviderError>;

    /// What is allocated there already (the VMs defined, by any plan or by hand) and the free
    /// space of each active storage pool; `None` where the backend cannot say.
    async fn allocation(&self) -> Result<Option<Allocation>, ProviderError> {
        Ok(None)
    }

    /// The DHCP leases of `network` there (the home of a network that spans hosts hands out
    /// the leases of VMs on the other hosts); none where the backend keeps none.
    async fn leases(&self, network: &str) -> Result<Vec<crate::provider::Address>, ProviderError> {
        let _ = network;
        Ok(Vec::new())
    }

    /// Whether it can move VMs to another host (`migrate`), or why not.
    fn migrates(&self) -> Result<(), String> {
        Err("this backend moves no VM between hosts".into())
    }

    /// Moves the VM `vm` to the host of the provider `to` (its endpoint), its disks' content
    /// with it, into volumes made for it there beforehand (`plan drain`).
    async fn migrate(&self, vm: &str, to: &str) -> Result<Migrated, ProviderError> {
        let _ = (vm, to);
        Err(ProviderError::Unsupported(
            "this backend moves no VM between hosts".into(),
        ))
    }
}

/// How a VM was moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// It ran, and ran on while it moved; else it was stopped, and is stopped there.
    pub live: bool,
}

/// What the VMs defined on a host take of it, and the room left in its pools.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Allocation {
    /// The vCPUs of the VMs defined there, running or not.
    pub cpus: u64,
    /// Their memory.
    pub memory_bytes: u64,
    /// Each active storage pool's free bytes, by pool name.
    pub pools_free_bytes: std::collections::BTreeMap<String, u64>,
}

/// What a backend's hosts or nodes offer, in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capacity {
    pub cpus: u64,
    pub memory_bytes: u64,
}

/// Repairs an apply makes where a run was killed half-way or a network was made again.
#[async_trait]
pub trait Repair: Send + Sync {
    /// Takes over a resource that exists unmarked, as a run killed between creating it and
    /// marking it leaves it, and brings it to `spec`. Refuses anything that holds something or
    /// carries another plan's mark.
    async fn claim(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError>;

    /// Moves a running VM's NICs on `networks` onto those networks as they are now: each was
    /// made again (replaced) while the VM ran, and its NICs were left on the bridge that went
    /// with the old one.
    async fn reattach(
        &self,
        vm: &str,
        networks: &[String],
        owner: &Owner,
    ) -> Result<Done, ProviderError>;
}

/// What the guests themselves say, through the backend.
#[async_trait]
pub trait GuestReadiness: Send + Sync {
    /// Whether the guest agents of VMs that have one can answer (so that a static address
    /// can be confirmed rather than assumed).
    fn hears_guest_agents(&self) -> bool;

    /// Whether each of these running VMs' guests is ready (cloud-init has run its commands and
    /// scripts); a VM left out is one the backend cannot tell about.
    async fn readiness(
        &self,
        vms: &[ReadinessQuery],
    ) -> Result<BTreeMap<String, Readiness>, ProviderError>;
}

/// A volume's bytes, read back (tests and inspection).
#[async_trait]
pub trait VolumeContent: Send + Sync {
    async fn read_volume(&self, pool: &str, name: &str) -> Result<Vec<u8>, ProviderError>;
}
