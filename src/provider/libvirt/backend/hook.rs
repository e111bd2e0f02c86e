//! What a backend built on the libvirt provider adds to it: the sandbox is this provider on
//! libvirt's test driver with a `Hook` that saves what each change touched, makes the checks
//! libvirtd makes and the test driver does not, and hands out the leases a DHCP server would.
//!
//! Every change the provider makes goes through `LibvirtProvider::change`, which tells the hook
//! what it touched; reads need nothing. A method added to the provider is the sandbox's at once.

use std::collections::BTreeSet;

use virt::connect::Connect;

use super::content::ContentStore;
use crate::plan::model::spec::{ResourceId, ResourceKind, Spec};
use crate::provider::{AddressQuery, Addresses, Health, Observed, ProviderError};

/// What a backend built on the libvirt provider adds. Called on blocking threads, with the
/// provider's connection and volume store; one change at a time when a hook is present.
pub trait Hook: Send + Sync {
    /// The backend's type, such as `sandbox`.
    fn kind(&self) -> &'static str;

    /// Where it keeps its state, for display.
    fn endpoint(&self) -> String;

    /// The provider's health as the backend reports it.
    fn health(&self, libvirt: Health) -> Health {
        libvirt
    }

    /// Refuses `spec` before it is created, where libvirtd would and the connection does not.
    fn before_create(&self, conn: &Connect, spec: &Spec) -> Result<(), ProviderError> {
        let _ = (conn, spec);
        Ok(())
    }

    /// Keeps what a change `touched`, whether it succeeded or not (part of it may have
    /// happened).
    fn changed(
        &self,
        conn: &Connect,
        content: &ContentStore,
        touched: &Touched,
    ) -> Result<(), ProviderError>;

    /// What makes the backend's tunnels, when it keeps them itself; `None` for commands on
    /// the host.
    fn links(&self) -> Option<Box<dyn super::tunnels::HostLinks>> {
        None
    }

    /// The addresses of `vms` when the backend hands them out itself (no DHCP server runs),
    /// from everything `seen` on the connection; `None` to ask libvirt.
    fn addresses(
        &self,
        seen: &Observed,
        vms: &[AddressQuery],
    ) -> Option<Result<Addresses, ProviderError>> {
        let _ = (seen, vms);
        None
    }
}

/// The objects a change may touch.
#[derive(Debug, Default, Clone)]
pub struct Touched {
    pub(crate) networks: BTreeSet<String>,
    /// The pool's own definition.
    pub(crate) pools: BTreeSet<String>,
    /// The pool and every volume in it.
    pub(crate) whole_pools: BTreeSet<String>,
    pub(crate) volumes: BTreeSet<(String, String)>,
    pub(crate) domains: BTreeSet<String>,
}

/// The volume in each pool that holds who owns what (see `libvirt::ledger`).
const LEDGER: &str = super::ledger::LEDGER_VOLUME;

impl Touched {
    pub fn domain(name: &str) -> Self {
        let mut t = Touched::default();
        t.domains.insert(name.to_string());
        t
    }

    pub fn network(name: &str) -> Self {
        let mut t = Touched::default();
        t.networks.insert(name.to_string());
        t
    }

    /// What making, changing or deleting the resource `id` touches.
    pub fn resource(id: &ResourceId) -> Self {
        let mut t = Touched::default();
        match id.kind {
            ResourceKind::NETWORK => {
                t.networks.insert(id.name.clone());
            }
            // A record lives in its network's definition.
            ResourceKind::DNS_RECORD => {
                t.networks.extend(id.pool.clone());
            }
            // A pool holds its ledger, and its volumes go with it.
            ResourceKind::POOL => {
                t.whole_pools.insert(id.name.clone());
            }
            // A volume changes its pool's space and its ledger.
            ResourceKind::VOLUME => {
                let pool = id.pool.clone().unwrap_or_default();
                t.volumes.insert((pool.clone(), id.name.clone()));
                t.volumes.insert((pool.clone(), LEDGER.to_string()));
                t.pools.insert(pool);
            }
            ResourceKind::VM => {
                t.domains.insert(id.name.clone());
            }
            // Another backend's kind: none of the connection's objects.
            _ => {}
        }
        t
    }

    pub fn spec(spec: &Spec) -> Self {
        Touched::resource(&spec.id())
    }

    /// And the lock of `plan`, where a change notes what it leaves without a mark for a while.
    pub fn and_lock_of(mut self, plan: &str) -> Self {
        self.networks
            .insert(crate::provider::lock::object_name(plan));
        self
    }
}
