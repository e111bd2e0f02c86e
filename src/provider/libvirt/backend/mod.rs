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
pub mod ledger;
pub mod lock;
mod networks;
mod observe;
mod pools;
pub mod readiness;
pub mod records;
pub mod snapshot;
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
use crate::provider::crashpoint;
use crate::provider::fetch;
use crate::provider::lock::{FoundLock, LockAttempt, LockHolder};
use crate::provider::snapshot::{FoundSnapshots, SnapshotMark};
use crate::provider::{
    Address, AddressQuery, AddressSource, Addresses, Console, Done, Health, HealthStatus,
    LiveResource, MadeBy, NetworkUser, Observed, Owner, OwnerMark, Pending, PlanMember, Power,
    Provider, ProviderError, Scope, VmDetails,
};
use content::ContentStore;
use domains::{with_uuid, StreamConsole};
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
        self.blocking(move |inner| inner.observe(&scope)).await
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

    async fn claim(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let touched = || Touched::spec(spec).and_lock_of(&owner.plan);
        let (spec, owner) = (spec.clone(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.claim(&spec, &owner)),
        )
        .await
    }

    async fn network_users(&self, networks: &[String]) -> Result<Vec<NetworkUser>, ProviderError> {
        let networks = networks.to_vec();
        self.blocking(move |inner| {
            let domains = inner
                .conn
                .list_all_domains(0)
                .map_err(|e| ProviderError::Connection(err(e)))?;
            let mut users = Vec::new();
            for dom in domains {
                // The saved definition, and what a running domain runs with (a NIC hot-plugged
                // or moved lives there only).
                let running = dom.is_active().unwrap_or(false);
                let mut seen = std::collections::BTreeSet::new();
                let mut plan = None;
                let mut name = String::new();
                for flags in [sys::VIR_DOMAIN_XML_INACTIVE, 0] {
                    let Ok(xml) = dom.xml_desc(flags) else {
                        continue;
                    };
                    let Ok(info) = xml::parse_domain(&xml, running, false) else {
                        continue;
                    };
                    plan = plan.or(info.mark.map(|m| m.plan)).or(info.kcli_plan);
                    name = info.spec.name.clone();
                    for nic in info.spec.nics {
                        if networks.contains(&nic.network) {
                            seen.insert(nic.network);
                        }
                    }
                }
                users.extend(seen.into_iter().map(|network| NetworkUser {
                    network,
                    vm: name.clone(),
                    plan: plan.clone(),
                    running,
                }));
            }
            Ok(users)
        })
        .await
    }

    async fn plans(&self) -> Result<Vec<PlanMember>, ProviderError> {
        self.blocking(|inner| {
            let domains = inner
                .conn
                .list_all_domains(0)
                .map_err(|e| ProviderError::Connection(err(e)))?;
            let mut found = Vec::new();
            for dom in domains {
                let Ok(xml) = dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE) else {
                    continue;
                };
                let Ok(info) = xml::parse_domain(&xml, false, false) else {
                    continue;
                };
                let (plan, made_by) = match (info.mark, info.kcli_plan) {
                    (Some(mark), _) => (mark.plan, MadeBy::Siteplan),
                    (None, Some(plan)) => (plan, MadeBy::Kcli),
                    (None, None) => continue,
                };
                found.push(PlanMember {
                    plan,
                    made_by,
                    vm: info.spec.name,
                    running: dom.is_active().unwrap_or(false),
                });
            }
            Ok(found)
        })
        .await
    }

    /// libvirt's console stream of the domain's first console (its serial port), as
    /// `virsh console` opens it.
    async fn console(&self, vm: &str, owner: &Owner) -> Result<Arc<dyn Console>, ProviderError> {
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.blocking(move |inner| {
            let id = ResourceId::vm(&vm);
            let d = inner.owned_domain(&vm, &owner)?;
            if !d.is_active().unwrap_or(false) {
                return Err(ProviderError::backend(
                    &id,
                    "is not running: start it first (`plan start`)",
                ));
            }
            let stream = virt::stream::Stream::new(&inner.conn, 0)
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
            d.open_console(None, &stream, 0).map_err(|e| {
                ProviderError::backend(&id, format!("cannot attach to its console: {}", err(e)))
            })?;
            Ok(Arc::new(StreamConsole { stream, _domain: d }) as Arc<dyn Console>)
        })
        .await
    }

    async fn details(&self, vm: &str) -> Result<VmDetails, ProviderError> {
        let vm = vm.to_string();
        self.blocking(move |inner| {
            let id = ResourceId::vm(&vm);
            let d = inner.domain(&vm)?;
            let xml = d
                .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
            let info = xml::parse_domain(&xml, false, false).map_err(ProviderError::Connection)?;
            let mut details = VmDetails::default();
            for disk in &info.spec.disks {
                if let Ok(path) = inner
                    .volume(&disk.pool, &disk.volume)
                    .and_then(|v| v.path().map_err(|e| ProviderError::backend(&id, err(e))))
                {
                    details
                        .disk_paths
                        .insert(format!("{}/{}", disk.pool, disk.volume), path);
                }
            }
            for s in d.list_all_snapshots(0).unwrap_or_default() {
                let Ok(name) = s.name() else { continue };
                if s.xml_desc(0)
                    .is_ok_and(|text| snapshot::is_lab_snapshot(&text))
                {
                    details.lab_snapshots.push(name.clone());
                }
                details.snapshots.push(name);
            }
            details.snapshots.sort();
            details.lab_snapshots.sort();
            Ok(details)
        })
        .await
    }

    async fn power(&self, vm: &str, power: Power, owner: &Owner) -> Result<Done, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        self.change(touched, self.power_owned(vm, power, owner))
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

    /// The test driver cannot hot-plug devices.
    fn rules(&self) -> &dyn crate::plan::model::rules::Rules {
        if self.inner.test_driver {
            &super::rules::TestDriverRules
        } else {
            &super::rules::LibvirtRules
        }
    }

    /// The test driver has no guests, so no agents; a real hypervisor's do answer.
    fn hears_guest_agents(&self) -> bool {
        !self.inner.test_driver
    }

    /// Through each guest's agent; the test driver's guests, which run nothing, are ready
    /// once running.
    async fn readiness(
        &self,
        vms: &[crate::provider::ReadinessQuery],
    ) -> Result<std::collections::BTreeMap<String, crate::provider::Readiness>, ProviderError> {
        let vms = vms.to_vec();
        self.blocking(move |inner| {
            let mut found = std::collections::BTreeMap::new();
            for query in vms {
                let Ok(domain) = inner.conn.lookup_domain_by_name(&query.vm) else {
                    continue;
                };
                if !domain.is_active().unwrap_or(false) {
                    continue;
                }
                let ready = if inner.test_driver {
                    crate::provider::Readiness::Ready
                } else {
                    readiness::of(&domain, &query)
                };
                found.insert(query.vm, ready);
            }
            Ok(found)
        })
        .await
    }

    async fn create_lock(&self, holder: &LockHolder) -> Result<LockAttempt, ProviderError> {
        let touched = || Touched::network(&crate::provider::lock::object_name(&holder.plan));
        let holder = holder.clone();
        self.change(
            touched,
            self.blocking(move |inner| {
                lock::create(&inner.conn, &holder).map_err(|e| inner.lost(e))
            }),
        )
        .await
    }

    async fn read_lock(&self, plan: &str) -> Result<Option<FoundLock>, ProviderError> {
        let plan = plan.to_string();
        self.blocking(move |inner| lock::read(&inner.conn, &plan).map_err(|e| inner.lost(e)))
            .await
    }

    async fn renew_lock(&self, holder: &LockHolder, token: &str) -> Result<(), ProviderError> {
        let touched = || Touched::network(&crate::provider::lock::object_name(&holder.plan));
        let (holder, token) = (holder.clone(), token.to_string());
        self.change(
            touched,
            self.blocking(move |inner| {
                lock::renew(&inner.conn, &holder, &token).map_err(|e| inner.lost(e))
            }),
        )
        .await
    }

    async fn delete_lock(&self, plan: &str, token: &str) -> Result<bool, ProviderError> {
        let touched = || Touched::network(&crate::provider::lock::object_name(plan));
        let (plan, token) = (plan.to_string(), token.to_string());
        self.change(
            touched,
            self.blocking(move |inner| {
                lock::delete(&inner.conn, &plan, &token).map_err(|e| inner.lost(e))
            }),
        )
        .await
    }

    async fn reattach(
        &self,
        vm: &str,
        networks: &[String],
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, networks, owner) = (vm.to_string(), networks.to_vec(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.reattach(&vm, &networks, &owner)),
        )
        .await
    }

    async fn snapshot_refusals(
        &self,
        vms: &[String],
        owner: &Owner,
    ) -> Result<Vec<String>, ProviderError> {
        let (vms, owner) = (vms.to_vec(), owner.clone());
        self.blocking(move |inner| {
            let mut refusals = Vec::new();
            for vm in &vms {
                refusals.extend(inner.snapshot_refusal(vm, &owner)?);
            }
            Ok(refusals)
        })
        .await
    }

    async fn pause(&self, vm: &str, owner: &Owner) -> Result<bool, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.pause(&vm, &owner)),
        )
        .await
    }

    async fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.resume(&vm, &owner)),
        )
        .await
    }

    async fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, mark, owner) = (vm.to_string(), mark.clone(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.create_snapshot(&vm, &mark, &owner)),
        )
        .await
    }

    async fn snapshots(&self, plan: &str) -> Result<FoundSnapshots, ProviderError> {
        let plan = plan.to_string();
        self.blocking(move |inner| inner.snapshots(&plan)).await
    }

    async fn revert_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, name, owner) = (vm.to_string(), name.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.revert_snapshot(&vm, &name, &owner)),
        )
        .await
    }

    async fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError> {
        let touched = || Touched::domain(vm).and_lock_of(&owner.plan);
        let (vm, name, owner) = (vm.to_string(), name.to_string(), owner.clone());
        self.change(
            touched,
            self.blocking(move |inner| inner.delete_snapshot(&vm, &name, &owner)),
        )
        .await
    }

    async fn read_volume(&self, pool: &str, name: &str) -> Result<Vec<u8>, ProviderError> {
        let (pool, name) = (pool.to_string(), name.to_string());
        self.blocking(move |inner| {
            let id = ResourceId::volume(&pool, &name);
            let vol = inner.volume(&pool, &name)?;
            inner
                .content
                .read(&inner.conn, &pool, &vol)
                .map_err(|e| ProviderError::backend(&id, e))
        })
        .await
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
        check_owner(&id, live.owner.as_ref(), owner)?;
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
            ResourceKind::DnsRecord => self.delete_dns(id, owner)?,
            ResourceKind::VirtualMachine
            | ResourceKind::DataVolume
            | ResourceKind::NetworkAttachmentDefinition
            | ResourceKind::Secret => {
                return Err(ProviderError::Invalid(format!(
                    "{id}: libvirt holds no Kubernetes objects"
                )))
            }
            ResourceKind::Vm => self.delete_vm(id, owner)?,
            ResourceKind::Network => self.delete_network(id, owner)?,
            ResourceKind::Pool => self.delete_pool(id, owner)?,
            ResourceKind::Volume => self.delete_volume(id, owner)?,
        };
        Ok(Done {
            id: id.clone(),
            summary,
            needs_reboot: false,
        })
    }
}
