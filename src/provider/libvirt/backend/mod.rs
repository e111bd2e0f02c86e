//! The libvirt provider itself: networks, dir pools, volumes and domains through the libvirt
//! API (the `libvirt` cargo feature: it links libvirt's client library).
//!
//! libvirt's API blocks, so every call runs on tokio's blocking threads through `blocking`, never
//! on the executor. One connection is shared: libvirt connections are thread-safe.
//!
//! Ownership: domains and networks carry a `<metadata>` mark (plan and created-from spec, plus
//! kcli's `plan` so `kcli list plan` shows them); pools and volumes are recorded in each pool's
//! ledger volume (`ledger.rs`).

pub mod content;
mod domains;
mod hook;
pub mod hostkey;
mod inventory;
mod leases;
pub mod ledger;
pub mod lock;
mod migrate;
mod networks;
mod observe;
mod pools;
pub mod readiness;
pub mod records;
mod repair;
pub mod snapshot;
pub mod tunnels;
mod volumes;
pub mod xml;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use virt::connect::Connect;
use virt::domain::Domain;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

use crate::plan::model::spec::*;
use crate::provider::capability;
use crate::provider::crashpoint;
use crate::provider::fetch;
use crate::provider::{
    Address, AddressQuery, AddressSource, Addresses, Console, Done, Health, HealthStatus,
    LiveResource, Observed, Owner, OwnerMark, Pending, Power, Provider, ProviderError, Scope,
};
use content::ContentStore;
use domains::with_uuid;
pub use hook::{Hook, Touched};
use ledger::{Ledger, LEDGER_CAPACITY, LEDGER_VOLUME};
use networks::network_definition;
use xml::DomainFlavor;

/// How long a graceful shutdown may take before the domain is forced off.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// libvirtd's default `max_client_requests`.
const LIBVIRTD_CLIENT_REQUESTS: usize = 5;

/// A handle on one libvirt connection; clones share it.
#[derive(Clone)]
pub struct LibvirtProvider {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Connect,
    uri: String,
    test_driver: bool,
    content: ContentStore,
    /// Ledger writes of one pool must not interleave.
    ledger_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    shutdown_timeout: Duration,
    /// Download images. The sandbox does not: its volumes hold no data worth a download.
    fetch_images: bool,
    /// What a backend built on this one adds (the sandbox's saving); `None` for libvirt itself.
    hook: Option<Arc<dyn Hook>>,
    /// With a hook, one change at a time, each kept before the next starts: what the hook keeps
    /// then never holds half of a change.
    one_change: tokio::sync::Mutex<()>,
}

/// libvirt prints every error to stderr by default, including lookups that are expected to fail;
/// errors are returned to the caller instead.
pub(crate) fn quiet_libvirt() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(virt::error::clear_error_callback);
}

fn err(e: virt::error::Error) -> String {
    e.message().to_string()
}

impl LibvirtProvider {
    /// Connects to `uri` (qemu:///system, qemu+ssh://host/system, test:///default...).
    pub fn connect(uri: &str) -> Result<Self, ProviderError> {
        quiet_libvirt();
        let conn = Connect::open(Some(uri)).map_err(|e| {
            let error = err(e);
            ProviderError::Connection(match hostkey::explain(uri, &error) {
                Some(why) => format!("cannot connect to {uri}: {why}"),
                None => format!("cannot connect to {uri}: {error}"),
            })
        })?;
        let test_driver = uri.starts_with("test:");
        let content = if test_driver {
            // The test driver keeps no bytes; without a directory, uploads are dropped.
            ContentStore::Files(content::Blobs::new(
                std::env::temp_dir().join(format!("siteplan-test-{}", std::process::id())),
                content::Index::new(),
                content::Ledgers::new(),
            ))
        } else {
            ContentStore::Streams
        };
        Ok(Self::with(conn, uri, content))
    }

    /// A provider over an open connection, keeping volume bytes in `content`.
    pub(crate) fn with(conn: Connect, uri: &str, content: ContentStore) -> Self {
        LibvirtProvider {
            inner: Arc::new(Inner {
                test_driver: uri.starts_with("test:"),
                conn,
                uri: uri.to_string(),
                content,
                ledger_locks: Mutex::new(HashMap::new()),
                shutdown_timeout: SHUTDOWN_TIMEOUT,
                fetch_images: true,
                hook: None,
                one_change: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The connection, for the sandbox's state file.
    pub(crate) fn connection(&self) -> &Connect {
        &self.inner.conn
    }

    pub(crate) fn content(&self) -> &ContentStore {
        &self.inner.content
    }

    /// Records images without downloading them (the sandbox).
    pub(crate) fn without_image_downloads(mut self) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.fetch_images = false;
        }
        self
    }

    /// The provider with `hook` told of every change (see `hook`).
    pub(crate) fn with_hook(mut self, hook: Arc<dyn Hook>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.hook = Some(hook);
        }
        self
    }

    /// Makes a change that `touched` these objects, and tells the hook, if there is one, once
    /// it is made (even when it failed: part of it may have happened).
    async fn change<T: Send + 'static>(
        &self,
        touched: impl FnOnce() -> Touched,
        change: impl std::future::Future<Output = Result<T, ProviderError>> + Send,
    ) -> Result<T, ProviderError> {
        let Some(hook) = self.inner.hook.clone() else {
            return change.await;
        };
        let _one_change_at_a_time = self.inner.one_change.lock().await;
        let result = change.await;
        crashpoint::point("change made, sandbox not saved yet");
        let touched = touched();
        let kept = self
            .blocking(move |inner| hook.changed(&inner.conn, &inner.content, &touched))
            .await;
        let value = result?;
        kept?;
        Ok(value)
    }

    /// How long a VM may take to shut down when asked before it is forced off (default 60 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.shutdown_timeout = timeout;
        }
        self
    }

    /// Every domain and network on the connection, whoever made it.
    async fn observe_everything(&self) -> Result<Observed, ProviderError> {
        self.blocking(|inner| {
            let names = |found: Vec<String>, id: fn(&str) -> ResourceId| {
                found.iter().map(|n| id(n)).collect::<Vec<_>>()
            };
            let conn = &inner.conn;
            let domains = conn.list_all_domains(0).unwrap_or_default();
            let networks = conn.list_all_networks(0).unwrap_or_default();
            let mut ids = names(
                domains.iter().filter_map(|d| d.name().ok()).collect(),
                ResourceId::vm,
            );
            ids.extend(names(
                networks.iter().filter_map(|n| n.name().ok()).collect(),
                ResourceId::network,
            ));
            inner.observe(&Scope {
                plan: String::new(),
                ids,
            })
        })
        .await
    }

    /// Starts, stops or restarts a VM `owner` owns.
    async fn power_owned(
        &self,
        vm: &str,
        power: Power,
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let grace = |g: Option<Duration>| g.unwrap_or(self.inner.shutdown_timeout);
        let summary = match power {
            Power::Start => format!("vm {vm} {}", self.start_owned(vm, owner).await?),
            Power::Stop { grace: g } => {
                format!("vm {vm} {}", self.stop_owned(vm, grace(g), owner).await?)
            }
            Power::Restart { grace: g } => {
                let stopped = self.stop_owned(vm, grace(g), owner).await?;
                self.start_owned(vm, owner).await?;
                format!("vm {vm} restarted ({stopped}, started)")
            }
        };
        Ok(Done {
            id: ResourceId::vm(vm),
            summary,
            needs_reboot: false,
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, ProviderError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, ProviderError> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || match f(&inner) {
            // A failure on a connection that died is the connection's, whatever the call
            // made of it (a lookup that fails says "does not exist").
            Err(_) if !inner.alive() => Err(inner.connection_lost()),
            done => done,
        })
        .await
        .map_err(|e| ProviderError::Connection(format!("a libvirt call panicked: {e}")))?
    }
}

#[async_trait]
impl Provider for LibvirtProvider {
    fn kind(&self) -> &'static str {
        self.inner.hook.as_ref().map_or("libvirt", |h| h.kind())
    }

    /// libvirtd serves at most `max_client_requests` (5 by default) calls of one client at once
    /// and makes the rest wait unseen; holding them here keeps the progress display truthful.
    fn parallelism(&self) -> Option<usize> {
        (!self.inner.test_driver).then_some(LIBVIRTD_CLIENT_REQUESTS)
    }

    fn endpoint(&self) -> String {
        match &self.inner.hook {
            Some(hook) => hook.endpoint(),
            None => self.inner.uri.clone(),
        }
    }

    async fn health(&self) -> Health {
        let result = self
            .blocking(|inner| {
                inner
                    .conn
                    .is_alive()
                    .map_err(|e| ProviderError::Connection(err(e)))?;
                inner
                    .conn
                    .lib_version()
                    .map_err(|e| ProviderError::Connection(err(e)))?;
                Ok(())
            })
            .await;
        let health = match result {
            Ok(()) => Health {
                status: HealthStatus::Ready,
                reason: None,
            },
            Err(e) => Health {
                status: HealthStatus::Unavailable,
                reason: Some(e.to_string()),
            },
        };
        match &self.inner.hook {
            Some(hook) => hook.health(health),
            None => health,
        }
    }

    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let scope = scope.clone();
        if !tunnels::names_a_tunnel(&scope) {
            return self.blocking(move |inner| inner.observe(&scope)).await;
        }
        // The host's tunnels are asked over ssh, alongside libvirt's calls.
        let objects_scope = scope.clone();
        let (probed, observed) = tokio::join!(
            self.blocking(|inner| Ok(inner.probe_tunnels())),
            self.blocking(move |inner| inner.observe_objects(&objects_scope))
        );
        let mut observed = observed?;
        self.inner
            .observe_tunnels(&scope, &mut observed, Some(probed?))?;
        Ok(observed)
    }

    async fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let touched = || Touched::spec(spec).and_lock_of(&owner.plan);
        let (spec, owner) = (spec.clone(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.create(&spec, &owner)),
        )
        .await
    }

    async fn update(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let touched = || Touched::spec(spec).and_lock_of(&owner.plan);
        let (spec, owner) = (spec.clone(), owner.clone());
        self.change(touched, async move {
            let (done, stopping) = self
                .blocking(move |inner| inner.update(&spec, &owner))
                .await?;
            if let Some(vm) = stopping {
                self.finish_stopping(&vm).await?;
            }
            Ok(done)
        })
        .await
    }

    async fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        let touched = || Touched::resource(id).and_lock_of(&owner.plan);
        let (id, owner) = (id.clone(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.delete(&id, &owner)),
        )
        .await
    }

    async fn addresses(&self, vms: &[AddressQuery]) -> Result<Addresses, ProviderError> {
        if let Some(hook) = self.inner.hook.clone() {
            let seen = self.observe_everything().await?;
            let vms = vms.to_vec();
            let handed_out = self
                .blocking(move |_| hook.addresses(&seen, &vms).transpose())
                .await?;
            if let Some(addresses) = handed_out {
                return Ok(addresses);
            }
        }
        let vms = vms.to_vec();
        self.blocking(move |inner| {
            let mut found = Addresses::new();
            for query in vms {
                let ips = inner.addresses(&query.vm, query.agent)?;
                found.insert(query.vm, ips);
            }
            Ok(found)
        })
        .await
    }

    fn lower(
        &self,
        intents: &crate::plan::intent::Intents,
    ) -> Result<crate::plan::model::desired::Desired, String> {
        super::lower::libvirt(intents)
    }

    /// The test driver cannot hot-plug devices.
    fn rules(&self) -> &dyn crate::plan::model::rules::Rules {
        if self.inner.test_driver {
            &super::rules::TestDriverRules
        } else {
            &super::rules::LibvirtRules
        }
    }

    fn plan_locks(&self) -> Option<&dyn capability::PlanLocks> {
        Some(self)
    }

    fn lab_snapshots(&self) -> Option<&dyn capability::LabSnapshots> {
        Some(self)
    }

    fn power_control(&self) -> Option<&dyn capability::PowerControl> {
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

    fn repair(&self) -> Option<&dyn capability::Repair> {
        Some(self)
    }

    fn guest_readiness(&self) -> Option<&dyn capability::GuestReadiness> {
        Some(self)
    }

    fn volume_content(&self) -> Option<&dyn capability::VolumeContent> {
        Some(self)
    }
}

/// The mark a resource carries: the plan, and the spec it was made from.
fn mark(owner: &Owner, spec: &Spec) -> OwnerMark {
    OwnerMark {
        plan: owner.plan.clone(),
        spec: spec.clone(),
        prevent_destroy: owner.prevent_destroy,
        created: Some(humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()),
        applied_from: owner.applied_from.clone(),
        group: owner.group.clone(),
    }
}

fn check_owner(
    id: &ResourceId,
    found: Option<&OwnerMark>,
    owner: &Owner,
) -> Result<(), ProviderError> {
    match found {
        Some(m) if m.plan == owner.plan => Ok(()),
        _ => Err(ProviderError::NotOwned {
            id: id.clone(),
            plan: owner.plan.clone(),
        }),
    }
}

impl Inner {
    /// Whether the connection still answers (a remote one dies with its daemon or host).
    fn alive(&self) -> bool {
        self.conn.is_alive().unwrap_or(false)
    }

    fn connection_lost(&self) -> ProviderError {
        ProviderError::Connection(format!(
            "lost the connection to {}: libvirtd stopped or restarted, or the host or the \
             network to it went away; run the same command again once it answers",
            self.uri
        ))
    }

    /// A failure of the connection rather than of one resource, naming where it connects.
    fn lost(&self, message: String) -> ProviderError {
        ProviderError::Connection(format!("{}: {message}", self.uri))
    }

    fn flavor(&self) -> DomainFlavor {
        DomainFlavor {
            test_driver: self.test_driver,
        }
    }

    /// The format of each disk volume a VM uses and the path of each volume it boots, as
    /// libvirt records them.
    fn volume_facts(&self, vm: &VmSpec) -> xml::VolumeFacts {
        let info = |pool: &str, volume: &str| {
            let vol = self.volume(pool, volume).ok()?;
            xml::parse_volume(&vol.xml_desc(0).ok()?).ok()
        };
        let key = |pool: &str, volume: &str| (pool.to_string(), volume.to_string());
        let mut facts = xml::VolumeFacts::default();
        for d in &vm.disks {
            if let Some(i) = info(&d.pool, &d.volume) {
                facts.formats.insert(key(&d.pool, &d.volume), i.format);
            }
        }
        for file in vm.kernel.iter().chain(&vm.initrd) {
            if let BootFile::Volume { pool, volume } = file {
                if let Some(i) = info(pool, volume) {
                    facts.paths.insert(key(pool, volume), i.path);
                }
            }
        }
        facts
    }

    fn pool(&self, name: &str) -> Result<StoragePool, ProviderError> {
        self.conn
            .lookup_storage_pool_by_name(name)
            .map_err(|_| ProviderError::NotFound(ResourceId::pool(name)))
    }

    fn volume(&self, pool: &str, name: &str) -> Result<StorageVol, ProviderError> {
        self.pool(pool)?
            .lookup_storage_vol_by_name(name)
            .map_err(|_| ProviderError::NotFound(ResourceId::volume(pool, name)))
    }

    fn domain(&self, name: &str) -> Result<Domain, ProviderError> {
        self.conn
            .lookup_domain_by_name(name)
            .map_err(|_| ProviderError::NotFound(ResourceId::vm(name)))
    }

    fn network(&self, name: &str) -> Result<virt::network::Network, ProviderError> {
        self.conn
            .lookup_network_by_name(name)
            .map_err(|_| ProviderError::NotFound(ResourceId::network(name)))
    }

    // Each change goes to its resource's module (networks, pools, volumes, domains), after the
    // checks every kind shares: an injected crash for the crash suite, the mark to write.

    fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        if let Some(message) = crashpoint::injected_failure(&id.to_string()) {
            return Err(ProviderError::backend(&id, message));
        }
        if let Some(hook) = &self.hook {
            hook.before_create(&self.conn, spec)?;
        }
        let mark = mark(owner, spec);
        let summary = match spec {
            Spec::Dns(record) => self.create_dns(record, &mark, &id)?,
            Spec::Tunnel(tunnel) => self.create_tunnel(tunnel, &mark, &id)?,
            Spec::Network(net) => self.create_network(net, &mark, &id)?,
            Spec::Pool(pool) => self.create_pool(pool, &mark, &id, owner)?,
            Spec::Volume(vol) => self.create_volume(vol, &mark)?,
            Spec::Object(_) => {
                return Err(ProviderError::Invalid(format!(
                    "{id}: libvirt holds no Kubernetes objects"
                )))
            }
            Spec::Vm(vm) => self.create_vm(vm, &mark, &id)?,
        };
        Ok(Done {
            id,
            summary,
            needs_reboot: false,
        })
    }

    /// Returns what it did, and the VM it asked to shut down, if any: waiting for that happens
    /// off the blocking thread (`finish_stopping`).
    fn update(&self, spec: &Spec, owner: &Owner) -> Result<(Done, Option<String>), ProviderError> {
        let id = spec.id();
        if let Some(message) = crashpoint::injected_failure(&id.to_string()) {
            return Err(ProviderError::backend(&id, message));
        }
        let current = self.observe(&Scope {
            plan: owner.plan.clone(),
            ids: vec![id.clone()],
        })?;
        let live = current
            .get(&id)
            .ok_or_else(|| ProviderError::NotFound(id.clone()))?;
        // An adopted resource carries no mark yet: this update writes the plan's.
        if !(owner.adopt && live.owner.is_none()) {
            check_owner(&id, live.owner.as_ref(), owner)?;
        }
        let mut mark = mark(owner, spec);
        // Created once: an update keeps the time.
        if let Some(created) = live.owner.as_ref().and_then(|m| m.created.clone()) {
            mark.created = Some(created);
        }
        let mut needs_reboot = false;
        let mut stopping = None;
        let summary = match (spec, &live.spec) {
            (Spec::Network(want), Spec::Network(have)) => {
                self.update_network(want, have, live, &mark, &id)?
            }
            (Spec::Pool(want), Spec::Pool(have)) => {
                self.update_pool(want, have, live, &mark, &id)?
            }
            (Spec::Volume(want), Spec::Volume(have)) => {
                self.update_volume(want, have, &mark, &id)?
            }
            (Spec::Vm(want), Spec::Vm(have)) => {
                let (summary, reboot, stop) = self.update_vm(want, have, live, &mark, &id)?;
                needs_reboot = reboot;
                stopping = stop;
                summary
            }
            (Spec::Dns(want), Spec::Dns(have)) => self.update_dns(want, have, &mark, &id)?,
            (Spec::Tunnel(want), Spec::Tunnel(have)) => {
                self.update_tunnel(want, have, &mark, &id)?
            }
            _ => return Err(ProviderError::Invalid(format!("{id}: kind mismatch"))),
        };
        Ok((
            Done {
                id,
                summary,
                needs_reboot,
            },
            stopping,
        ))
    }

    fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        if let Some(message) = crashpoint::injected_failure(&id.to_string()) {
            return Err(ProviderError::backend(id, message));
        }
        let summary = match id.kind {
            ResourceKind::DNS_RECORD => self.delete_dns(id, owner)?,
            ResourceKind::TUNNEL => self.delete_tunnel(id, owner)?,
            ResourceKind::VM => self.delete_vm(id, owner)?,
            ResourceKind::NETWORK => self.delete_network(id, owner)?,
            ResourceKind::POOL => self.delete_pool(id, owner)?,
            ResourceKind::VOLUME => self.delete_volume(id, owner)?,
            // Another backend's kind.
            _ => {
                return Err(ProviderError::Invalid(format!(
                    "{id}: libvirt holds no {}",
                    id.kind
                )))
            }
        };
        Ok(Done {
            id: id.clone(),
            summary,
            needs_reboot: false,
        })
    }
}
