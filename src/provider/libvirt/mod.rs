//! The libvirt provider: networks, dir pools, volumes and domains through the libvirt API.
//!
//! libvirt's API blocks, so every call runs on tokio's blocking threads through `blocking`, never
//! on the executor. One connection is shared: libvirt connections are thread-safe.
//!
//! Ownership: domains and networks carry a `<metadata>` mark (plan and created-from spec, plus
//! kcli's `plan` so `kcli list plan` shows them); pools and volumes are recorded in each pool's
//! ledger volume (`ledger.rs`).

pub mod content;
pub mod hostkey;
pub mod ledger;
pub mod lock;
pub mod readiness;
pub mod records;
pub mod snapshot;
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

use super::crashpoint;
use super::fetch;
use super::lock::{FoundLock, LockAttempt, LockHolder};
use super::snapshot::{FoundSnapshots, SnapshotMark};
use super::{
    Address, AddressQuery, AddressSource, Addresses, Console, Done, Health, HealthStatus,
    LiveResource, MadeBy, NetworkUser, Observed, Owner, OwnerMark, Pending, PlanMember, Power,
    Provider, ProviderError, Scope, VmDetails,
};
use crate::plan::model::spec::*;
use content::ContentStore;
use ledger::{Ledger, LEDGER_CAPACITY, LEDGER_VOLUME};
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

    /// How long a VM may take to shut down when asked before it is forced off (default 60 s).
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.shutdown_timeout = timeout;
        }
        self
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

    /// Waits for a VM asked to shut down to be off, polling with `tokio::time` (no blocking
    /// thread sleeps), and forces it off when the shutdown timeout has passed.
    async fn finish_stopping(&self, vm: &str) -> Result<(), ProviderError> {
        self.finish_stopping_within(vm, self.inner.shutdown_timeout)
            .await
            .map(|_| ())
    }

    /// As `finish_stopping`, within `grace`; says whether the VM had to be forced off.
    async fn finish_stopping_within(
        &self,
        vm: &str,
        grace: Duration,
    ) -> Result<bool, ProviderError> {
        let deadline = tokio::time::Instant::now() + grace;
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        while tokio::time::Instant::now() < deadline {
            ticks.tick().await;
            let name = vm.to_string();
            let active = self
                .blocking(move |inner| Ok(inner.domain(&name)?.is_active().unwrap_or(false)))
                .await?;
            if !active {
                return Ok(false);
            }
        }
        let name = vm.to_string();
        self.blocking(move |inner| inner.force_off(&name))
            .await
            .map(|()| true)
    }

    /// Asks a VM `owner` owns to shut down (or forces it off if it cannot be asked), and waits
    /// for it within `grace`. Says what happened.
    async fn stop_owned(
        &self,
        vm: &str,
        grace: Duration,
        owner: &Owner,
    ) -> Result<&'static str, ProviderError> {
        let (name, owner) = (vm.to_string(), owner.clone());
        let asked = self
            .blocking(move |inner| {
                let d = inner.owned_domain(&name, &owner)?;
                if !d.is_active().unwrap_or(false) {
                    return Ok(None);
                }
                match d.shutdown() {
                    Ok(()) => Ok(Some(true)),
                    Err(_) => inner.force_off(&name).map(|()| Some(false)),
                }
            })
            .await?;
        match asked {
            None => Ok("was not running"),
            Some(false) => Ok("forced off"),
            Some(true) if self.finish_stopping_within(vm, grace).await? => {
                Ok("forced off after it did not shut down")
            }
            Some(true) => Ok("shut down"),
        }
    }

    async fn start_owned(&self, vm: &str, owner: &Owner) -> Result<&'static str, ProviderError> {
        let (name, owner) = (vm.to_string(), owner.clone());
        self.blocking(move |inner| {
            let d = inner.owned_domain(&name, &owner)?;
            // A paused domain (a lab snapshot stopped half-way) is started by resuming it.
            let paused = d.state().is_ok_and(|(state, _)| {
                state == virt::domain::DomainStateEnum::Known(virt::domain::DomainState::Paused)
            });
            if paused {
                d.resume()
                    .map_err(|e| ProviderError::backend(&ResourceId::vm(&name), err(e)))?;
                return Ok("resumed (it was paused)");
            }
            if d.is_active().unwrap_or(false) {
                return Ok("was running");
            }
            d.create()
                .map_err(|e| ProviderError::backend(&ResourceId::vm(&name), err(e)))?;
            Ok("started")
        })
        .await
    }
}

#[async_trait]
impl Provider for LibvirtProvider {
    fn kind(&self) -> &'static str {
        "libvirt"
    }

    /// libvirtd serves at most `max_client_requests` (5 by default) calls of one client at once
    /// and makes the rest wait unseen; holding them here keeps the progress display truthful.
    fn parallelism(&self) -> Option<usize> {
        (!self.inner.test_driver).then_some(LIBVIRTD_CLIENT_REQUESTS)
    }

    fn endpoint(&self) -> String {
        self.inner.uri.clone()
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
        match result {
            Ok(()) => Health {
                status: HealthStatus::Ready,
                reason: None,
            },
            Err(e) => Health {
                status: HealthStatus::Unavailable,
                reason: Some(e.to_string()),
            },
        }
    }

    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let scope = scope.clone();
        self.blocking(move |inner| inner.observe(&scope)).await
    }

    async fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let (spec, owner) = (spec.clone(), owner.clone());
        self.blocking(move |inner| inner.create(&spec, &owner))
            .await
    }

    async fn update(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let (spec, owner) = (spec.clone(), owner.clone());
        let (done, stopping) = self
            .blocking(move |inner| inner.update(&spec, &owner))
            .await?;
        if let Some(vm) = stopping {
            self.finish_stopping(&vm).await?;
        }
        Ok(done)
    }

    async fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        let (id, owner) = (id.clone(), owner.clone());
        self.blocking(move |inner| inner.delete(&id, &owner)).await
    }

    async fn claim(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let (spec, owner) = (spec.clone(), owner.clone());
        self.blocking(move |inner| inner.claim(&spec, &owner)).await
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

    async fn addresses(&self, vms: &[AddressQuery]) -> Result<Addresses, ProviderError> {
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
        vms: &[super::ReadinessQuery],
    ) -> Result<std::collections::BTreeMap<String, super::Readiness>, ProviderError> {
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
                    super::Readiness::Ready
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
        let holder = holder.clone();
        self.blocking(move |inner| lock::create(&inner.conn, &holder).map_err(|e| inner.lost(e)))
            .await
    }

    async fn read_lock(&self, plan: &str) -> Result<Option<FoundLock>, ProviderError> {
        let plan = plan.to_string();
        self.blocking(move |inner| lock::read(&inner.conn, &plan).map_err(|e| inner.lost(e)))
            .await
    }

    async fn renew_lock(&self, holder: &LockHolder, token: &str) -> Result<(), ProviderError> {
        let (holder, token) = (holder.clone(), token.to_string());
        self.blocking(move |inner| {
            lock::renew(&inner.conn, &holder, &token).map_err(|e| inner.lost(e))
        })
        .await
    }

    async fn delete_lock(&self, plan: &str, token: &str) -> Result<bool, ProviderError> {
        let (plan, token) = (plan.to_string(), token.to_string());
        self.blocking(move |inner| {
            lock::delete(&inner.conn, &plan, &token).map_err(|e| inner.lost(e))
        })
        .await
    }

    async fn reattach(
        &self,
        vm: &str,
        networks: &[String],
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let (vm, networks, owner) = (vm.to_string(), networks.to_vec(), owner.clone());
        self.blocking(move |inner| inner.reattach(&vm, &networks, &owner))
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
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.blocking(move |inner| inner.pause(&vm, &owner)).await
    }

    async fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError> {
        let (vm, owner) = (vm.to_string(), owner.clone());
        self.blocking(move |inner| inner.resume(&vm, &owner)).await
    }

    async fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let (vm, mark, owner) = (vm.to_string(), mark.clone(), owner.clone());
        self.blocking(move |inner| inner.create_snapshot(&vm, &mark, &owner))
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
        let (vm, name, owner) = (vm.to_string(), name.to_string(), owner.clone());
        self.blocking(move |inner| inner.revert_snapshot(&vm, &name, &owner))
            .await
    }

    async fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError> {
        let (vm, name, owner) = (vm.to_string(), name.to_string(), owner.clone());
        self.blocking(move |inner| inner.delete_snapshot(&vm, &name, &owner))
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

/// A domain's console as a libvirt stream (blocking: `recv` waits for the guest).
struct StreamConsole {
    stream: virt::stream::Stream,
    /// The stream is the domain's: keep it while attached.
    _domain: Domain,
}

impl Console for StreamConsole {
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stream
            .recv(buf)
            .map(|n| usize::try_from(n).unwrap_or(0))
            .map_err(|e| std::io::Error::other(err(e)))
    }

    fn send(&self, data: &[u8]) -> std::io::Result<()> {
        let mut sent = 0;
        while sent < data.len() {
            let n = self
                .stream
                .send(&data[sent..])
                .map_err(|e| std::io::Error::other(err(e)))?;
            sent += usize::try_from(n).unwrap_or(0).max(1);
        }
        Ok(())
    }
}

/// A network's persistent definition, which holds its mark as last written (a running network
/// keeps the metadata it was started with). The test driver has only the one definition.
/// Deletes from a running network's `section` the entries of `have` that `want` lacks, then
/// adds those of `want` that `have` lacks.
fn update_live<T: PartialEq>(
    net: &virt::network::Network,
    section: sys::virNetworkUpdateSection,
    have: &[T],
    want: &[T],
    xml: impl Fn(&T) -> std::io::Result<String>,
) -> Result<(), String> {
    let gone = have.iter().filter(|h| !want.contains(h));
    let new = want.iter().filter(|h| !have.contains(h));
    let changes = gone
        .map(|h| (sys::VIR_NETWORK_UPDATE_COMMAND_DELETE, h))
        .chain(new.map(|h| (sys::VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, h)));
    for (command, entry) in changes {
        let text = xml(entry).map_err(|e| e.to_string())?;
        net.update(
            command,
            section,
            -1,
            &text,
            sys::VIR_NETWORK_UPDATE_AFFECT_LIVE,
        )
        .map_err(err)?;
    }
    Ok(())
}

fn network_definition(net: &virt::network::Network) -> Result<String, virt::error::Error> {
    net.xml_desc(sys::VIR_NETWORK_XML_INACTIVE)
        .or_else(|_| net.xml_desc(0))
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

    /// Rewrites the records ledger of a network the plan does not make (see `records`).
    fn edit_records(
        &self,
        network: &str,
        edit: impl FnOnce(&mut records::Records),
    ) -> Result<(), ProviderError> {
        let id = ResourceId::network(network);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let net = self.network(network)?;
        let xml = network_definition(&net).map_err(fail)?;
        let mut ledger = records::ledger(&xml);
        edit(&mut ledger);
        let defined =
            records::with_ledger(&xml, &ledger).map_err(|e| ProviderError::backend(&id, e))?;
        // As for the plan's own networks: the test driver takes a definition only while the
        // network is stopped, which costs nothing there.
        let restart = self.test_driver && net.is_active().unwrap_or(false);
        if restart {
            net.destroy().map_err(fail)?;
        }
        self.conn.define_network_xml(&defined).map_err(fail)?;
        if restart {
            net.create().map_err(fail)?;
        }
        Ok(())
    }

    fn network(&self, name: &str) -> Result<virt::network::Network, ProviderError> {
        self.conn
            .lookup_network_by_name(name)
            .map_err(|_| ProviderError::NotFound(ResourceId::network(name)))
    }

    // ---- observing ----

    fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let wanted = |id: &ResourceId, owner: Option<&OwnerMark>| {
            owner.is_some_and(|o| o.plan == scope.plan) || scope.ids.contains(id)
        };
        let conn_err =
            |e: virt::error::Error| ProviderError::Connection(format!("{}: {}", self.uri, err(e)));
        let mut observed = Observed::default();

        let named_networks = |flags| -> Result<HashSet<String>, ProviderError> {
            Ok(self
                .conn
                .list_all_networks(flags)
                .map_err(conn_err)?
                .iter()
                .filter_map(|n| n.name().ok())
                .collect())
        };
        let active_networks = named_networks(sys::VIR_CONNECT_LIST_NETWORKS_ACTIVE)?;
        let autostarting_networks = named_networks(sys::VIR_CONNECT_LIST_NETWORKS_AUTOSTART)?;
        for net in self.conn.list_all_networks(0).map_err(conn_err)? {
            let name = net.name().unwrap_or_default();
            let (Ok(xml), autostart, active) = (
                network_definition(&net),
                autostarting_networks.contains(&name),
                active_networks.contains(&name),
            ) else {
                continue; // deleted while listing
            };
            let (spec, owner) =
                xml::parse_network(&xml, autostart).map_err(ProviderError::Connection)?;
            for (id, live) in records::observe(&spec.name, &xml, &spec.dns_hosts, wanted) {
                observed.resources.insert(id, live);
            }
            let id = ResourceId::network(&spec.name);
            if wanted(&id, owner.as_ref()) {
                observed.resources.insert(
                    id,
                    LiveResource {
                        spec: Spec::Network(spec),
                        owner,
                        active,
                        empty: None,
                        pending_restart: Vec::new(),
                        paused: false,
                    },
                );
            }
        }

        // Volume paths, to resolve backing files and disks given by path.
        let mut by_path: HashMap<String, (String, String)> = HashMap::new();
        let mut volumes: Vec<(String, xml::VolumeInfo, Option<OwnerMark>)> = Vec::new();
        for pool in self.conn.list_all_storage_pools(0).map_err(conn_err)? {
            let Ok(xml) = pool.xml_desc(0) else { continue };
            let spec = xml::parse_pool(&xml, pool.autostart().unwrap_or(false))
                .map_err(ProviderError::Connection)?;
            let active = pool.is_active().unwrap_or(false);
            let ledger = if active {
                self.read_ledger(&pool, &spec.name)?
            } else {
                Ledger::default()
            };
            let id = ResourceId::pool(&spec.name);
            let mut holds = 0;
            if active {
                for vol in pool.list_all_volumes(0).unwrap_or_default() {
                    let Ok(vxml) = vol.xml_desc(0) else { continue };
                    let info = xml::parse_volume(&vxml).map_err(ProviderError::Connection)?;
                    if info.name == LEDGER_VOLUME {
                        continue;
                    }
                    holds += 1;
                    by_path.insert(info.path.clone(), (spec.name.clone(), info.name.clone()));
                    let vmark = ledger.volumes.get(&info.name).cloned();
                    volumes.push((spec.name.clone(), info, vmark));
                }
            }
            if wanted(&id, ledger.pool.as_ref()) {
                observed.resources.insert(
                    id,
                    LiveResource {
                        spec: Spec::Pool(spec),
                        owner: ledger.pool,
                        active,
                        empty: active.then_some(holds == 0),
                        pending_restart: Vec::new(),
                        paused: false,
                    },
                );
            }
        }
        for (pool, info, owner) in volumes {
            let id = ResourceId::volume(&pool, &info.name);
            if !wanted(&id, owner.as_ref()) {
                continue;
            }
            let created_from = owner.as_ref().and_then(|m| match &m.spec {
                Spec::Volume(v) => Some(v),
                _ => None,
            });
            let spec = VolumeSpec {
                name: info.name.clone(),
                pool: pool.clone(),
                // An image keeps its own size unless the plan set one.
                capacity_bytes: match created_from {
                    Some(v) if v.capacity_bytes.is_none() => None,
                    _ => Some(info.capacity),
                },
                // A fetched image's format is its bytes' (a kernel is raw whatever the plan
                // guessed): libvirt's reading of it is no change of the plan's.
                format: match created_from {
                    Some(v) if matches!(v.source, VolumeSource::Fetch { .. }) => v.format,
                    _ => info.format,
                },
                // Written content fills a volume, thin or not: only a blank one shows it.
                // The test driver's volumes are all thin (see `create_volume`).
                thin: match created_from {
                    Some(v) if v.source != VolumeSource::Blank || self.test_driver => v.thin,
                    _ => info.thin,
                },
                backing: info.backing_path.as_ref().map(|p| {
                    by_path
                        .get(p)
                        .cloned()
                        .unwrap_or_else(|| (String::new(), p.clone()))
                }),
                source: created_from.map_or(VolumeSource::Blank, |v| v.source.clone()),
            };
            observed.resources.insert(
                id,
                LiveResource {
                    spec: Spec::Volume(spec),
                    owner,
                    active: true,
                    empty: None,
                    pending_restart: Vec::new(),
                    paused: false,
                },
            );
        }

        // Which domains run and which start with the host: two calls for all of them, rather
        // than two per domain (each call is a round trip, which over ssh is what costs).
        let named = |flags| -> Result<HashSet<String>, ProviderError> {
            Ok(self
                .conn
                .list_all_domains(flags)
                .map_err(conn_err)?
                .iter()
                .filter_map(|d| d.name().ok())
                .collect())
        };
        let running_domains = named(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)?;
        let autostarting_domains = named(sys::VIR_CONNECT_LIST_DOMAINS_AUTOSTART)?;
        let paused_domains = named(sys::VIR_CONNECT_LIST_DOMAINS_PAUSED)?;
        for dom in self.conn.list_all_domains(0).map_err(conn_err)? {
            let Ok(xml) = dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE) else {
                continue;
            };
            let name = dom.name().unwrap_or_default();
            let running = running_domains.contains(&name);
            let autostart = autostarting_domains.contains(&name);
            let mut info =
                xml::parse_domain(&xml, running, autostart).map_err(ProviderError::Connection)?;
            info.resolve_paths(&by_path);
            let id = ResourceId::vm(&info.spec.name);
            if wanted(&id, info.mark.as_ref()) {
                let pending_restart = if running {
                    self.pending_restart(&dom, &info, &by_path)
                } else {
                    Vec::new()
                };
                observed.resources.insert(
                    id,
                    LiveResource {
                        spec: Spec::Vm(info.spec),
                        owner: info.mark,
                        active: running,
                        empty: None,
                        pending_restart,
                        paused: paused_domains.contains(&name),
                    },
                );
            }
        }
        Ok(observed)
    }

    /// What a running domain's saved definition changed that the running domain does not
    /// have yet: its live definition read as a spec, against the saved one. The live CPU is
    /// the host model expanded, so the model it started with comes from the live definition's
    /// mark (the spec it was started from) when it has one.
    fn pending_restart(
        &self,
        dom: &Domain,
        defined: &xml::DomainInfo,
        by_path: &HashMap<String, (String, String)>,
    ) -> Vec<Pending> {
        let Ok(live_xml) = dom.xml_desc(0) else {
            return Vec::new();
        };
        let Ok(mut booted) = xml::parse_domain(&live_xml, true, defined.spec.autostart) else {
            return Vec::new();
        };
        booted.resolve_paths(by_path);
        booted.spec.cpu_model = match &booted.mark {
            Some(OwnerMark {
                spec: Spec::Vm(started),
                ..
            }) => started.cpu_model.clone(),
            _ => defined.spec.cpu_model.clone(),
        };
        // Started before siteplan recorded its seed: nothing says the seed changed since.
        if booted.spec.seed_sha256.is_none() {
            booted.spec.seed_sha256 = defined.spec.seed_sha256.clone();
        }
        Pending::between(&Spec::Vm(booted.spec), &Spec::Vm(defined.spec.clone()))
    }

    // ---- the ledger ----

    fn ledger_lock(&self, pool: &str) -> Arc<Mutex<()>> {
        let mut locks = self.ledger_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(pool.to_string()).or_default().clone()
    }

    /// Reads a pool's ledger, waiting for any write of it in progress.
    fn read_ledger(&self, pool: &StoragePool, pool_name: &str) -> Result<Ledger, ProviderError> {
        let lock = self.ledger_lock(pool_name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.read_ledger_locked(pool, pool_name)
    }

    /// The mark a pool's ledger holds for one of its volumes.
    fn read_volume_mark(
        &self,
        pool: &StoragePool,
        pool_name: &str,
        volume: &str,
    ) -> Result<Option<OwnerMark>, ProviderError> {
        if let ContentStore::Files(blobs) = &self.content {
            let lock = self.ledger_lock(pool_name);
            let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
            return Ok(blobs.volume_mark(pool_name, volume));
        }
        Ok(self.read_ledger(pool, pool_name)?.volumes.remove(volume))
    }

    fn read_ledger_locked(
        &self,
        pool: &StoragePool,
        pool_name: &str,
    ) -> Result<Ledger, ProviderError> {
        let Ok(vol) = pool.lookup_storage_vol_by_name(LEDGER_VOLUME) else {
            return Ok(Ledger::default());
        };
        if let Some(ledger) = self.content.ledger(pool_name) {
            return Ok(ledger);
        }
        let bytes = self
            .content
            .read_text(&self.conn, pool_name, &vol)
            .map_err(|e| {
                ProviderError::backend(
                    &ResourceId::pool(pool_name),
                    format!("reading its ledger: {e}"),
                )
            })?;
        Ledger::from_bytes(&bytes)
            .map_err(|e| ProviderError::backend(&ResourceId::pool(pool_name), e))
    }

    /// Read-modify-write of a pool's ledger, serialised per pool.
    fn edit_ledger(
        &self,
        pool_name: &str,
        edit: impl FnOnce(&mut Ledger),
    ) -> Result<(), ProviderError> {
        let lock = self.ledger_lock(pool_name);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        let id = ResourceId::pool(pool_name);
        let pool = self.pool(pool_name)?;
        let vol = match pool.lookup_storage_vol_by_name(LEDGER_VOLUME) {
            Ok(vol) => vol,
            Err(_) => {
                let vxml = xml::volume_xml(
                    LEDGER_VOLUME,
                    LEDGER_CAPACITY,
                    VolumeFormat::Raw,
                    true,
                    None,
                )
                .map_err(|e| ProviderError::backend(&id, e))?;
                StorageVol::create_xml(&pool, &vxml, 0).map_err(|e| {
                    ProviderError::backend(&id, format!("creating its ledger: {}", err(e)))
                })?
            }
        };
        crashpoint::point("ledger volume ready");
        if let ContentStore::Files(blobs) = &self.content {
            edit(blobs.ledgers().entry(pool_name.to_string()).or_default());
            return Ok(());
        }
        let before = self
            .content
            .read_text(&self.conn, pool_name, &vol)
            .map_err(|e| ProviderError::backend(&id, format!("reading its ledger: {e}")))?;
        let mut ledger = Ledger::from_bytes(&before).map_err(|e| ProviderError::backend(&id, e))?;
        edit(&mut ledger);
        let bytes = ledger.to_bytes();
        if bytes.len() as u64 > LEDGER_CAPACITY {
            vol.resize(bytes.len() as u64, 0)
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
        }
        // Zeros over what the ledger held before, and no further: the rest is zero already.
        let mut padded = bytes;
        padded.resize(padded.len().max(before.len()), 0);
        self.content
            .write(&self.conn, pool_name, &vol, &padded)
            .map_err(|e| ProviderError::backend(&id, format!("writing its ledger: {e}")))
    }

    // ---- creating ----

    fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        if let Some(message) = crashpoint::injected_failure(&id.to_string()) {
            return Err(ProviderError::backend(&id, message));
        }
        let mark = mark(owner, spec);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let io = |e: std::io::Error| ProviderError::backend(&id, e);
        let summary = match spec {
            Spec::Dns(record) => {
                let net = self.network(&record.network)?;
                let xml = network_definition(&net).map_err(fail)?;
                let (live, _) =
                    xml::parse_network(&xml, false).map_err(ProviderError::Connection)?;
                if let Some(host) = records::taken(&live.dns_hosts, &record.name) {
                    return Err(records::conflict(&id, host));
                }
                records::change_host(&net, &records::host(record), true).map_err(fail)?;
                crashpoint::point("dns record added");
                self.edit_records(&record.network, |r| {
                    r.insert(record.name.clone(), mark.clone());
                })?;
                format!("{} answers for {}", record.network, record.names.join(", "))
            }
            Spec::Network(net) => {
                if self.network(&net.name).is_ok() {
                    return Err(ProviderError::backend(&id, "already exists"));
                }
                let n = self
                    .conn
                    .define_network_xml(&xml::network_xml(net, Some(&mark)).map_err(io)?)
                    .map_err(fail)?;
                crashpoint::point("network defined");
                if let Err(e) = n.create() {
                    let _ = n.undefine();
                    return Err(fail(e));
                }
                crashpoint::point("network started");
                n.set_autostart(net.autostart).map_err(fail)?;
                format!("network {} is active on bridge {}", net.name, net.bridge)
            }
            Spec::Pool(pool) => {
                if self.pool(&pool.name).is_ok() {
                    return Err(ProviderError::backend(&id, "already exists"));
                }
                // Between defining the pool and writing its ledger it has no mark: noted in
                // the plan's lock first, so that only a pool this run was making is taken
                // over if it dies in that window.
                lock::note_unmarked(&self.conn, &owner.plan, &id.to_string())
                    .map_err(|e| ProviderError::backend(&id, e))?;
                let p = self
                    .conn
                    .define_storage_pool_xml(&xml::pool_xml(pool).map_err(io)?, 0)
                    .map_err(fail)?;
                crashpoint::point("pool defined");
                let started = p.build(0).and_then(|_| p.create(0));
                if let Err(e) = started {
                    let _ = p.undefine();
                    return Err(fail(e));
                }
                crashpoint::point("pool started");
                p.set_autostart(pool.autostart).map_err(fail)?;
                self.edit_ledger(&pool.name, |l| l.pool = Some(mark.clone()))?;
                format!("pool {} is active at {}", pool.name, pool.path)
            }
            Spec::Volume(vol) => self.create_volume(vol, &mark)?,
            Spec::Object(_) => {
                return Err(ProviderError::Invalid(format!(
                    "{id}: libvirt holds no Kubernetes objects"
                )))
            }
            Spec::Vm(vm) => {
                if self.domain(&vm.name).is_ok() {
                    return Err(ProviderError::backend(&id, "already exists"));
                }
                let xml =
                    xml::domain_xml(vm, Some(&mark), None, self.flavor(), &self.volume_facts(vm))
                        .map_err(io)?;
                let d = self.conn.define_domain_xml(&xml).map_err(fail)?;
                crashpoint::point("vm defined");
                d.set_autostart(vm.autostart).map_err(fail)?;
                crashpoint::point("vm autostart set");
                if vm.running {
                    d.create().map_err(fail)?;
                    format!("vm {} is defined and running", vm.name)
                } else {
                    format!("vm {} is defined", vm.name)
                }
            }
        };
        Ok(Done {
            id,
            summary,
            needs_reboot: false,
        })
    }

    fn create_volume(&self, vol: &VolumeSpec, mark: &OwnerMark) -> Result<String, ProviderError> {
        let id = ResourceId::volume(&vol.pool, &vol.name);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let pool = self.pool(&vol.pool)?;
        if pool.lookup_storage_vol_by_name(&vol.name).is_ok() {
            return Err(ProviderError::backend(&id, "already exists"));
        }
        // Content first: a failed download must leave nothing behind.
        let content = match &vol.source {
            VolumeSource::Blank => None,
            VolumeSource::Fetch { .. } if !self.fetch_images => None,
            VolumeSource::Fetch { url, sha256 } => Some(
                fetch::fetch(url, sha256.as_deref()).map_err(|e| ProviderError::backend(&id, e))?,
            ),
            VolumeSource::Generated { generator, .. } => Some(generator.bytes().map_err(|e| {
                ProviderError::backend(&id, format!("cannot make its content: {e}"))
            })?),
        };
        let backing = match &vol.backing {
            Some((bpool, bname)) => {
                let b = self.volume(bpool, bname)?;
                let info = xml::parse_volume(&b.xml_desc(0).map_err(fail)?)
                    .map_err(|e| ProviderError::backend(&id, e))?;
                Some(info)
            }
            None => None,
        };
        let (format, capacity) = match &content {
            Some(bytes) => {
                let format = if fetch::is_qcow2(bytes) {
                    VolumeFormat::Qcow2
                } else {
                    vol.format
                };
                (format, bytes.len() as u64)
            }
            None => {
                let from_backing = backing.as_ref().map_or(0, |b| b.capacity);
                (
                    vol.format,
                    vol.capacity_bytes.unwrap_or(from_backing).max(from_backing),
                )
            }
        };
        let vxml = xml::volume_xml(
            &vol.name,
            capacity.max(1),
            format,
            // The test driver's pools have a fixed size and its volumes hold no bytes: allocating
            // space there would only make large thick disks fail for nothing.
            vol.thin || self.test_driver,
            backing.as_ref().map(|b| (b.path.as_str(), b.format)),
        )
        .map_err(|e| ProviderError::backend(&id, e))?;
        // The mark goes first: if the process dies after the volume exists, the next run still
        // knows it as the plan's own. A mark without a volume is ignored. Until the content is
        // written, the mark says the volume is blank, so a run killed before that sees the
        // source differ and replaces the volume.
        let first = match (&content, &mark.spec) {
            (Some(_), Spec::Volume(spec)) => OwnerMark {
                spec: Spec::Volume(VolumeSpec {
                    source: VolumeSource::Blank,
                    ..spec.clone()
                }),
                ..mark.clone()
            },
            _ => mark.clone(),
        };
        self.edit_ledger(&vol.pool, |l| {
            l.volumes.insert(vol.name.clone(), first);
        })?;
        crashpoint::point("volume marked");
        let unmark = || {
            let _ = self.edit_ledger(&vol.pool, |l| {
                l.volumes.remove(&vol.name);
            });
        };
        let created = match StorageVol::create_xml(&pool, &vxml, 0) {
            Ok(v) => v,
            Err(e) => {
                unmark();
                return Err(fail(e));
            }
        };
        crashpoint::point("volume created");
        if let Some(bytes) = &content {
            if let Err(e) = self.content.write(&self.conn, &vol.pool, &created, bytes) {
                let _ = created.delete(0);
                unmark();
                return Err(ProviderError::backend(&id, format!("upload failed: {e}")));
            }
            crashpoint::point("volume filled");
            // Let libvirt read the image's own header (its virtual size).
            let _ = pool.refresh(0);
            if let Some(wanted) = vol.capacity_bytes {
                let size = fetch::qcow2_virtual_size(bytes).unwrap_or(bytes.len() as u64);
                if wanted > size {
                    self.resize(&vol.pool, &vol.name, wanted, vol.thin)?;
                }
            }
            self.edit_ledger(&vol.pool, |l| {
                l.volumes.insert(vol.name.clone(), mark.clone());
            })?;
        }
        Ok(match &vol.source {
            VolumeSource::Fetch { url, .. } if self.fetch_images => {
                format!("image {} imported from {url}", vol.name)
            }
            VolumeSource::Fetch { .. } => format!(
                "image {} recorded (the sandbox downloads nothing)",
                vol.name
            ),
            _ => format!("volume {} created in pool {}", vol.name, vol.pool),
        })
    }

    /// Grows a volume. libvirt's test driver cannot resize, but its volumes hold no bytes (the
    /// sandbox keeps them elsewhere), so there the volume is defined again with the new size.
    fn resize(
        &self,
        pool: &str,
        name: &str,
        capacity: u64,
        thin: bool,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::volume(pool, name);
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let vol = self.volume(pool, name)?;
        if !self.test_driver {
            // A thick volume stays thick: allocate the space it grows by.
            let flags = if thin {
                0
            } else {
                sys::VIR_STORAGE_VOL_RESIZE_ALLOCATE
            };
            return vol.resize(capacity, flags).map_err(fail);
        }
        let info = xml::parse_volume(&vol.xml_desc(0).map_err(fail)?)
            .map_err(|e| ProviderError::backend(&id, e))?;
        let p = self.pool(pool)?;
        let backing = info
            .backing_path
            .as_ref()
            .map(|path| (path.as_str(), self.format_of_path(&p, path)));
        let redefined = xml::volume_xml(name, capacity, info.format, thin, backing)
            .map_err(|e| ProviderError::backend(&id, e))?;
        vol.delete(0).map_err(fail)?;
        StorageVol::create_xml(&p, &redefined, 0).map_err(fail)?;
        Ok(())
    }

    fn format_of_path(&self, pool: &StoragePool, path: &str) -> VolumeFormat {
        pool.list_all_volumes(0)
            .unwrap_or_default()
            .iter()
            .filter_map(|v| v.xml_desc(0).ok())
            .filter_map(|x| xml::parse_volume(&x).ok())
            .find(|info| info.path == path)
            .map_or(VolumeFormat::Qcow2, |info| info.format)
    }

    // ---- updating ----

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
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let io = |e: std::io::Error| ProviderError::backend(&id, e);
        let replace_needed = |what: &str| {
            ProviderError::Unsupported(format!(
                "{id}: changing {what} needs the resource to be replaced"
            ))
        };
        let mut needs_reboot = false;
        let mut stopping = None;
        let summary = match (spec, &live.spec) {
            (Spec::Network(want), Spec::Network(have)) => {
                let comparable = |n: &NetworkSpec| NetworkSpec {
                    hosts: Vec::new(),
                    dns_hosts: Vec::new(),
                    autostart: false,
                    ..n.clone()
                };
                if comparable(want) != comparable(have) {
                    return Err(replace_needed("a network's addressing or forwarding"));
                }
                let net = self.network(&want.name)?;
                if !live.active {
                    net.create().map_err(fail)?;
                }
                if live.active {
                    // Reservations and DNS records change on the running network: dnsmasq
                    // answers for them at once.
                    let ip_hosts = sys::VIR_NETWORK_SECTION_IP_DHCP_HOST;
                    update_live(&net, ip_hosts, &have.hosts, &want.hosts, xml::dhcp_host_xml)
                        .map_err(|e| ProviderError::backend(&id, e))?;
                    let dns_hosts = sys::VIR_NETWORK_SECTION_DNS_HOST;
                    update_live(
                        &net,
                        dns_hosts,
                        &have.dns_hosts,
                        &want.dns_hosts,
                        xml::dns_host_xml,
                    )
                    .map_err(|e| ProviderError::backend(&id, e))?;
                }
                // Redefining saves the new reservations and the new mark.
                let uuid = net.uuid_string().map_err(fail)?;
                let defined = xml::network_xml(want, Some(&mark)).map_err(io)?;
                let defined = with_uuid(&defined, "network", &uuid).map_err(io)?;
                // The test driver ignores a definition given to a running network, even once it
                // restarts: it takes one only while stopped. Stopping costs nothing there (no
                // bridge, no guest traffic), and a run killed meanwhile leaves a stopped network,
                // which the next run starts.
                let restart = self.test_driver && live.active;
                if restart {
                    net.destroy().map_err(fail)?;
                }
                self.conn.define_network_xml(&defined).map_err(fail)?;
                crashpoint::point("network redefined");
                if restart {
                    net.create().map_err(fail)?;
                }
                net.set_autostart(want.autostart).map_err(fail)?;
                format!("network {} updated", want.name)
            }
            (Spec::Pool(want), Spec::Pool(have)) => {
                if want.path != have.path {
                    return Err(replace_needed("a pool's path"));
                }
                let p = self.pool(&want.name)?;
                if !live.active {
                    p.create(0).map_err(fail)?;
                }
                p.set_autostart(want.autostart).map_err(fail)?;
                self.edit_ledger(&want.name, |l| l.pool = Some(mark.clone()))?;
                format!("pool {} updated", want.name)
            }
            (Spec::Volume(want), Spec::Volume(have)) => {
                if want.format != have.format
                    || want.thin != have.thin
                    || want.backing != have.backing
                    || want.source != have.source
                {
                    return Err(replace_needed("a volume's format, backing image or source"));
                }
                if let (Some(w), Some(h)) = (want.capacity_bytes, have.capacity_bytes) {
                    if w < h {
                        return Err(ProviderError::Unsupported(format!(
                            "{id}: shrinking a volume loses data; it must be replaced"
                        )));
                    }
                    if w > h {
                        self.resize(&want.pool, &want.name, w, want.thin)?;
                    }
                }
                self.edit_ledger(&want.pool, |l| {
                    l.volumes.insert(want.name.clone(), mark.clone());
                })?;
                format!("volume {} updated", want.name)
            }
            (Spec::Vm(want), Spec::Vm(have)) => {
                let d = self.domain(&want.name)?;
                let uuid = d.uuid_string().map_err(fail)?;
                let xml = xml::domain_xml(
                    want,
                    Some(&mark),
                    Some(&uuid),
                    self.flavor(),
                    &self.volume_facts(want),
                )
                .map_err(io)?;
                self.conn.define_domain_xml(&xml).map_err(fail)?;
                crashpoint::point("vm redefined");
                if live.active && want.running {
                    // The test driver cannot hot-plug; its saved definition is all there is.
                    if !self.test_driver {
                        self.hotplug(&d, &xml, have, want)?;
                    }
                    // What was not attached to the running domain waits for its restart.
                    let hotplugged = !self.test_driver;
                    let rest = |v: &VmSpec| VmSpec {
                        disks: if hotplugged {
                            Vec::new()
                        } else {
                            v.disks.clone()
                        },
                        nics: if hotplugged {
                            Vec::new()
                        } else {
                            v.nics.clone()
                        },
                        running: false,
                        autostart: false,
                        ..v.clone()
                    };
                    needs_reboot = rest(want) != rest(have);
                }
                d.set_autostart(want.autostart).map_err(fail)?;
                match (live.active, want.running) {
                    (false, true) => d.create().map_err(fail)?,
                    // Asked to shut down; one that does not by the timeout is forced off.
                    (true, false) => match d.shutdown() {
                        Ok(()) => stopping = Some(want.name.clone()),
                        Err(_) => self.force_off(&want.name)?,
                    },
                    _ => {}
                }
                if needs_reboot {
                    format!(
                        "vm {} updated; the change takes effect when it restarts",
                        want.name
                    )
                } else {
                    format!("vm {} updated", want.name)
                }
            }
            (Spec::Dns(want), Spec::Dns(have)) => {
                let net = self.network(&want.network)?;
                records::change_host(&net, &records::host(have), false).map_err(fail)?;
                records::change_host(&net, &records::host(want), true).map_err(fail)?;
                self.edit_records(&want.network, |r| {
                    r.insert(want.name.clone(), mark.clone());
                })?;
                format!("{} answers for {}", want.network, want.names.join(", "))
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

    /// Attaches and detaches disks and NICs of a running domain to match `want`, using the device
    /// elements of the domain XML just defined.
    fn hotplug(
        &self,
        d: &Domain,
        defined_xml: &str,
        have: &VmSpec,
        want: &VmSpec,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::vm(&want.name);
        let live = sys::VIR_DOMAIN_AFFECT_LIVE;
        let doc =
            roxmltree::Document::parse(defined_xml).map_err(|e| ProviderError::backend(&id, e))?;
        let device = |tag: &str, matches: &dyn Fn(roxmltree::Node) -> bool| {
            doc.descendants()
                .find(|n| n.has_tag_name(tag) && matches(*n))
                .map(|n| defined_xml[n.range()].to_string())
        };
        for disk in want.disks.iter().filter(|d| !have.disks.contains(d)) {
            let found = device("disk", &|n| {
                n.children().any(|c| {
                    c.has_tag_name("source")
                        && c.attribute("pool") == Some(disk.pool.as_str())
                        && c.attribute("volume") == Some(disk.volume.as_str())
                })
            });
            if let Some(xml) = found {
                d.attach_device_flags(&xml, live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        for nic in want.nics.iter().filter(|n| {
            !have
                .nics
                .iter()
                .any(|h| h.mac == n.mac && h.network == n.network)
        }) {
            let found = device("interface", &|n| {
                n.children()
                    .any(|c| c.has_tag_name("mac") && c.attribute("address") == nic.mac.as_deref())
            });
            if let Some(xml) = found {
                d.attach_device_flags(&xml, live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        // Detaching needs the running domain's own device XML.
        let running_xml = d
            .xml_desc(0)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        let running =
            roxmltree::Document::parse(&running_xml).map_err(|e| ProviderError::backend(&id, e))?;
        for disk in have.disks.iter().filter(|d| !want.disks.contains(d)) {
            let found = running.descendants().find(|n| {
                n.has_tag_name("disk")
                    && n.children().any(|c| {
                        c.has_tag_name("source")
                            && c.attribute("pool") == Some(disk.pool.as_str())
                            && c.attribute("volume") == Some(disk.volume.as_str())
                    })
            });
            if let Some(n) = found {
                d.detach_device_flags(&running_xml[n.range()], live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        for nic in have.nics.iter().filter(|h| {
            !want
                .nics
                .iter()
                .any(|n| n.mac == h.mac && n.network == h.network)
        }) {
            let found = running.descendants().find(|n| {
                n.has_tag_name("interface")
                    && n.children().any(|c| {
                        c.has_tag_name("mac") && c.attribute("address") == nic.mac.as_deref()
                    })
            });
            if let Some(n) = found {
                d.detach_device_flags(&running_xml[n.range()], live)
                    .map_err(|e| ProviderError::backend(&id, err(e)))?;
            }
        }
        Ok(())
    }

    /// A domain that `owner`'s plan created (its saved definition carries the plan's mark).
    /// Moves a running domain's NICs on `networks` onto those networks as they are now (made
    /// again since it started), live.
    fn reattach(
        &self,
        vm: &str,
        networks: &[String],
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let id = ResourceId::vm(vm);
        let dom = self.owned_domain(vm, owner)?;
        let done = |summary: String| Done {
            id: id.clone(),
            summary,
            needs_reboot: false,
        };
        if self.test_driver {
            return Ok(done(format!(
                "vm {vm}: the sandbox has no bridges, so its NICs on {} need no moving",
                networks.join(", ")
            )));
        }
        if !dom.is_active().unwrap_or(false) {
            return Ok(done(format!(
                "vm {vm} is off: it joins {} when it starts",
                networks.join(", ")
            )));
        }
        let live = dom
            .xml_desc(0)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        let mut moved = Vec::new();
        for network in networks {
            let bridge = self
                .network(network)?
                .bridge_name()
                .map_err(|e| ProviderError::backend(&id, err(e)))?;
            for (mac, steps) in xml::replug_updates(&live, network, &bridge) {
                for step in &steps {
                    dom.update_device_flags(step, sys::VIR_DOMAIN_AFFECT_LIVE)
                        .map_err(|e| {
                            ProviderError::backend(
                                &id,
                                format!("moving NIC {mac} onto network {network}: {}", err(e)),
                            )
                        })?;
                }
                moved.push(format!("{mac} onto {network}"));
            }
        }
        Ok(done(if moved.is_empty() {
            format!("vm {vm}: no NIC on {} to move", networks.join(", "))
        } else {
            format!("vm {vm}: NIC {} (made again), live", moved.join(", NIC "))
        }))
    }

    fn owned_domain(&self, name: &str, owner: &Owner) -> Result<Domain, ProviderError> {
        let id = ResourceId::vm(name);
        let d = self.domain(name)?;
        let xml = d
            .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| ProviderError::backend(&id, err(e)))?;
        let info = xml::parse_domain(&xml, false, false).map_err(ProviderError::Connection)?;
        check_owner(&id, info.mark.as_ref(), owner)?;
        Ok(d)
    }

    /// Forces a VM off, unless it is off already.
    fn force_off(&self, name: &str) -> Result<(), ProviderError> {
        let d = self.domain(name)?;
        match d.destroy() {
            Ok(()) => Ok(()),
            Err(_) if !d.is_active().unwrap_or(true) => Ok(()),
            Err(e) => Err(ProviderError::backend(&ResourceId::vm(name), err(e))),
        }
    }

    // ---- taking over ----

    /// A pool is defined before its ledger can exist (the ledger lives in it), and its ledger
    /// goes before it on deletion, so a killed run can leave a pool without a mark. Such a pool
    /// is taken over only if it is exactly where the plan puts it and holds no volume.
    fn claim(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        let Spec::Pool(want) = spec else {
            return Err(ProviderError::Unsupported(format!(
                "{id}: only pools are taken over"
            )));
        };
        let fail = |e: virt::error::Error| ProviderError::backend(&id, err(e));
        let p = self.pool(&want.name)?;
        let have = xml::parse_pool(&p.xml_desc(0).map_err(fail)?, false)
            .map_err(|e| ProviderError::backend(&id, e))?;
        let not_ours = || ProviderError::NotOwned {
            id: id.clone(),
            plan: owner.plan.clone(),
        };
        if have.path != want.path {
            return Err(not_ours());
        }
        if !p.is_active().unwrap_or(false) {
            // Killed before its directory was made, perhaps: building an existing one is harmless.
            p.build(0).and_then(|_| p.create(0)).map_err(fail)?;
        }
        let ledger = self.read_ledger(&p, &want.name)?;
        match &ledger.pool {
            Some(mark) if mark.plan != owner.plan => return Err(not_ours()),
            Some(_) => {}
            None => {
                let held: Vec<String> = p
                    .list_volumes()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|v| v != LEDGER_VOLUME)
                    .collect();
                if !held.is_empty() {
                    return Err(ProviderError::backend(
                        &id,
                        format!(
                            "exists without siteplan's mark and holds volumes ({}): not taking it over",
                            held.join(", ")
                        ),
                    ));
                }
            }
        }
        p.set_autostart(want.autostart).map_err(fail)?;
        self.edit_ledger(&want.name, |l| l.pool = Some(mark(owner, spec)))?;
        Ok(Done {
            id,
            summary: format!("pool {} taken over and marked", want.name),
            needs_reboot: false,
        })
    }

    // ---- deleting ----

    fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        if let Some(message) = crashpoint::injected_failure(&id.to_string()) {
            return Err(ProviderError::backend(id, message));
        }
        let fail = |e: virt::error::Error| ProviderError::backend(id, err(e));
        let summary = match id.kind {
            ResourceKind::DnsRecord => {
                let network = id.pool.clone().unwrap_or_default();
                let net = self.network(&network)?;
                let xml = network_definition(&net).map_err(fail)?;
                let ours = records::ledger(&xml).remove(&id.name);
                check_owner(id, ours.as_ref(), owner)?;
                let (live, _) =
                    xml::parse_network(&xml, false).map_err(ProviderError::Connection)?;
                if let Some(host) = live
                    .dns_hosts
                    .iter()
                    .find(|h| h.names.first() == Some(&id.name))
                {
                    records::change_host(&net, host, false).map_err(fail)?;
                }
                crashpoint::point("dns record removed");
                self.edit_records(&network, |r| {
                    r.remove(&id.name);
                })?;
                format!("{network} no longer answers for {}", id.name)
            }
            ResourceKind::VirtualMachine
            | ResourceKind::DataVolume
            | ResourceKind::NetworkAttachmentDefinition
            | ResourceKind::Secret => {
                return Err(ProviderError::Invalid(format!(
                    "{id}: libvirt holds no Kubernetes objects"
                )))
            }
            ResourceKind::Vm => {
                let d = self.domain(&id.name)?;
                let xml = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(fail)?;
                let info = xml::parse_domain(&xml, false, false)
                    .map_err(|e| ProviderError::backend(id, e))?;
                check_owner(id, info.mark.as_ref(), owner)?;
                if d.is_active().unwrap_or(false) {
                    d.destroy().map_err(fail)?;
                }
                crashpoint::point("vm stopped for deletion");
                // Its snapshots go with it (libvirt refuses to undefine a domain that has any).
                snapshot::delete_all(&d);
                let both =
                    sys::VIR_DOMAIN_UNDEFINE_NVRAM | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
                if d.undefine_flags(both).is_err()
                    && d.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
                        .is_err()
                {
                    d.undefine().map_err(fail)?;
                }
                format!("vm {} deleted", id.name)
            }
            ResourceKind::Network => {
                let n = self.network(&id.name)?;
                let (_, mark) = xml::parse_network(&network_definition(&n).map_err(fail)?, false)
                    .map_err(|e| ProviderError::backend(id, e))?;
                check_owner(id, mark.as_ref(), owner)?;
                if n.is_active().unwrap_or(false) {
                    n.destroy().map_err(fail)?;
                }
                crashpoint::point("network stopped for deletion");
                n.undefine().map_err(fail)?;
                format!("network {} deleted", id.name)
            }
            ResourceKind::Pool => {
                let p = self.pool(&id.name)?;
                let ledger = self.read_ledger(&p, &id.name)?;
                check_owner(id, ledger.pool.as_ref(), owner)?;
                let left: Vec<String> = p
                    .list_volumes()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|v| v != LEDGER_VOLUME)
                    .collect();
                if !left.is_empty() {
                    return Err(ProviderError::backend(
                        id,
                        format!(
                            "still holds volumes ({}); delete them first",
                            left.join(", ")
                        ),
                    ));
                }
                // Without its ledger the pool has no mark until it is gone: noted in the
                // plan's lock first, as for a pool being made.
                lock::note_unmarked(&self.conn, &owner.plan, &id.to_string())
                    .map_err(|e| ProviderError::backend(id, e))?;
                if let Ok(vol) = p.lookup_storage_vol_by_name(LEDGER_VOLUME) {
                    vol.delete(0).map_err(fail)?;
                    self.content.forget(&id.name, LEDGER_VOLUME);
                }
                crashpoint::point("pool ledger deleted");
                if p.is_active().unwrap_or(false) {
                    p.destroy().map_err(fail)?;
                }
                crashpoint::point("pool stopped for deletion");
                // Removes the directory if it is empty; a non-empty one is left alone.
                let _ = p.delete(0);
                p.undefine().map_err(fail)?;
                format!("pool {} deleted", id.name)
            }
            ResourceKind::Volume => {
                let pool_name = id.pool.clone().unwrap_or_default();
                let p = self.pool(&pool_name)?;
                let mark = self.read_volume_mark(&p, &pool_name, &id.name)?;
                check_owner(id, mark.as_ref(), owner)?;
                let vol = self.volume(&pool_name, &id.name)?;
                vol.delete(0).map_err(fail)?;
                self.content.forget(&pool_name, &id.name);
                crashpoint::point("volume deleted, mark kept");
                self.edit_ledger(&pool_name, |l| {
                    l.volumes.remove(&id.name);
                })?;
                format!("volume {} deleted from pool {pool_name}", id.name)
            }
        };
        Ok(Done {
            id: id.clone(),
            summary,
            needs_reboot: false,
        })
    }

    /// A running VM's addresses: the leases its NICs hold on libvirt networks, and what its
    /// guest agent reports (asked only of VMs the plan gives one; a domain without the channel
    /// answers with an error, which means nothing known).
    fn addresses(&self, vm: &str, has_agent: bool) -> Result<Vec<Address>, ProviderError> {
        let d = self.domain(vm)?;
        if !d.is_active().unwrap_or(false) {
            return Ok(Vec::new());
        }
        let mut sources = vec![(
            sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            AddressSource::Lease,
        )];
        if has_agent && !self.test_driver {
            sources.push((
                sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
                AddressSource::Agent,
            ));
        }
        let mut found = Vec::new();
        for (flag, source) in sources {
            // An agent not started yet is an error here, and just means: nothing known yet.
            let Ok(ifaces) = d.interface_addresses(flag, 0) else {
                continue;
            };
            for iface in ifaces {
                let mac = iface
                    .hwaddr
                    .as_ref()
                    .filter(|m| !m.is_empty())
                    .map(|m| m.to_ascii_lowercase());
                found.extend(iface.addrs.iter().filter_map(|a| {
                    Some(Address {
                        ip: a.addr.parse::<IpAddr>().ok()?,
                        mac: mac.clone(),
                        source,
                    })
                }));
            }
        }
        found.retain(Address::reachable);
        Ok(found)
    }
}

/// Puts `<uuid>` into a just-built definition, so redefining updates the existing object.
fn with_uuid(xml: &str, root: &str, uuid: &str) -> std::io::Result<String> {
    use quick_xml::events::{BytesText, Event};
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut w = quick_xml::Writer::new(Vec::new());
    let mut depth = 0usize;
    loop {
        match reader.read_event().map_err(std::io::Error::other)? {
            Event::Start(s) => {
                depth += 1;
                let is_root = depth == 1 && s.name().as_ref() == root;
                w.write_event(Event::Start(s))?;
                if is_root {
                    w.create_element("uuid")
                        .write_text_content(BytesText::new(uuid))?;
                }
            }
            Event::End(e) => {
                depth = depth.saturating_sub(1);
                w.write_event(Event::End(e))?;
            }
            Event::Eof => break,
            other => w.write_event(other)?,
        }
    }
    Ok(String::from_utf8(w.into_inner()).unwrap_or_default())
}
