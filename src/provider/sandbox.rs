//! The sandbox: the libvirt provider on libvirt's in-process test driver, saved to a directory.
//!
//! libvirt's test driver reads a node file (`test:///path/node.xml`) but never writes it, and
//! keeps no volume content. The sandbox keeps its whole state in `state.json`: the node (domains
//! with their run state, networks, pools with their volumes), autostart flags, and which file
//! holds each volume's bytes. It is rewritten atomically after every change, so a change is
//! saved whole or not at all, however the process ends; `node.xml` is made from it on opening.
//! Nothing else needs to be installed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use virt::connect::Connect;
use virt::sys;

use super::libvirt::content::{self, ContentStore};
use super::libvirt::{xml, LibvirtProvider};
use super::snapshot::{FoundSnapshots, SnapshotMark};
use super::spec::*;
use super::{
    Address, AddressQuery, AddressSource, Addresses, Done, Health, HealthStatus, LiveResource,
    Observed, Owner, Power, Provider, ProviderError, ResourceId, Scope,
};

/// Everything the sandbox holds (`State`).
const STATE_FILE: &str = "state.json";
/// What the test driver reads, made from the state on opening.
const NODE_FILE: &str = "node.xml";
/// Volume bytes, one file per distinct content.
const BLOB_DIR: &str = "blobs";
/// Simulated DHCP leases (see `simulated_addresses`).
const LEASES_FILE: &str = "leases.json";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// The test driver's node file.
    node: String,
    /// The node file has no place for autostart flags.
    autostart: Autostart,
    /// Which blob holds each volume's bytes.
    volumes: content::Index,
    /// The saved definitions of running domains that run with another one (a change waiting
    /// for a restart), by name: the node file holds what they run with, and the node file has
    /// no place for a second definition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    defined: BTreeMap<String, String>,
    /// Each domain's snapshots (their XML, parents first): the node file has no place for
    /// them that this code writes, so they are defined again on opening.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    snapshots: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Autostart {
    networks: Vec<String>,
    pools: Vec<String>,
    domains: Vec<String>,
}

pub struct Sandbox {
    inner: LibvirtProvider,
    /// What is saved, and the libvirt calls that read it: run on blocking threads.
    disk: Arc<Disk>,
    /// One change at a time, each saved before the next starts: the saved state then never
    /// holds half of a change. (The test driver serialises its calls anyway.)
    changing: tokio::sync::Mutex<()>,
}

/// The sandbox's directory and the connection it saves from.
struct Disk {
    provider: LibvirtProvider,
    dir: PathBuf,
    /// Held for the sandbox's lifetime: two processes must not write one sandbox at once.
    _lock: File,
    /// Saves and lease updates must not interleave.
    saving: std::sync::Mutex<()>,
}

/// Where the sandbox lives: `$SITEPLAN_SANDBOX_DIR`, else the XDG state directory.
pub fn default_dir() -> PathBuf {
    crate::registry::config::default_sandbox_dir()
}

impl Sandbox {
    /// Opens the sandbox in `dir`, creating it (with a `default` network and pool) if new.
    pub fn open(dir: &Path) -> Result<Self, ProviderError> {
        let fail = |what: &str, e: std::io::Error| {
            ProviderError::Connection(format!("sandbox {}: {what}: {e}", dir.display()))
        };
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create it", e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| fail("cannot resolve it", e))?;
        let lock = open_exclusively(&dir)?;
        let state = load_state(&dir).map_err(|e| fail("cannot read its state", e))?;
        let node = dir.join(NODE_FILE);
        crate::files::write_atomic(&node, state.node.as_bytes())
            .map_err(|e| fail("cannot write its node file", e))?;
        let uri = format!("test://{}", node.display());
        super::libvirt::quiet_libvirt();
        let conn = Connect::open(Some(&uri)).map_err(|e| {
            ProviderError::Connection(format!("cannot open the sandbox {uri}: {}", e.message()))
        })?;
        restore_autostart(&conn, &state.autostart);
        // Defining a running domain saves the definition it takes when it restarts.
        for (name, saved) in &state.defined {
            conn.define_domain_xml(saved).map_err(|e| {
                ProviderError::Connection(format!(
                    "sandbox {}: cannot restore the saved definition of {name}: {}",
                    dir.display(),
                    e.message()
                ))
            })?;
        }
        restore_snapshots(&conn, &state.snapshots)
            .map_err(|e| ProviderError::Connection(format!("sandbox {}: {e}", dir.display())))?;
        let blobs = content::Blobs::new(dir.join(BLOB_DIR), state.volumes);
        let inner =
            LibvirtProvider::with(conn, &uri, ContentStore::Files(blobs)).without_image_downloads();
        Ok(Sandbox {
            disk: Arc::new(Disk {
                provider: inner.clone(),
                dir,
                _lock: lock,
                saving: std::sync::Mutex::new(()),
            }),
            inner,
            changing: tokio::sync::Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.disk.dir
    }

    /// Writes `node.xml` as the sandbox is now, for tools that read libvirt's test driver
    /// files (`virsh -c test:///DIR/node.xml`), and returns its path.
    pub fn write_node_file(&self) -> Result<PathBuf, ProviderError> {
        self.disk.write_node_file()
    }

    /// Runs `f` on the sandbox's disk on a blocking thread: libvirt calls and file writes stay
    /// off the async executor.
    async fn on_disk<T, F>(&self, f: F) -> Result<T, ProviderError>
    where
        T: Send + 'static,
        F: FnOnce(&Disk) -> Result<T, ProviderError> + Send + 'static,
    {
        let disk = self.disk.clone();
        tokio::task::spawn_blocking(move || f(&disk))
            .await
            .map_err(|e| ProviderError::Connection(format!("saving the sandbox failed: {e}")))?
    }
}

impl Disk {
    fn dir(&self) -> &Path {
        &self.dir
    }

    /// Saves everything the sandbox holds, in one atomic write.
    fn save(&self) -> Result<(), ProviderError> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let state = self.snapshot()?;
        let text = serde_json::to_string(&state).unwrap_or_default();
        crate::files::write_atomic(&self.dir().join(STATE_FILE), text.as_bytes())
            .map_err(|e| ProviderError::Connection(format!("saving the sandbox: {e}")))?;
        if let ContentStore::Files(blobs) = self.provider.content() {
            blobs.collect_garbage();
        }
        Ok(())
    }

    /// Writes `node.xml` as the sandbox is now, for tools that read libvirt's test driver
    /// files (`virsh -c test:///DIR/node.xml`), and returns its path.
    pub fn write_node_file(&self) -> Result<PathBuf, ProviderError> {
        let path = self.dir().join(NODE_FILE);
        crate::files::write_atomic(&path, self.snapshot()?.node.as_bytes())
            .map_err(|e| ProviderError::Connection(format!("writing the node file: {e}")))?;
        Ok(path)
    }

    fn snapshot(&self) -> Result<State, ProviderError> {
        let conn = self.provider.connection();
        let fail = |e: virt::error::Error| {
            ProviderError::Connection(format!("saving the sandbox: {}", e.message()))
        };
        let io = |e: std::io::Error| ProviderError::Connection(format!("saving the sandbox: {e}"));
        let mut networks = Vec::new();
        for net in conn.list_all_networks(0).map_err(fail)? {
            networks.push(net.xml_desc(0).map_err(fail)?);
        }
        let mut pools = Vec::new();
        for pool in conn.list_all_storage_pools(0).map_err(fail)? {
            let volumes = pool
                .list_all_volumes(0)
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.xml_desc(0).ok())
                .collect();
            pools.push((pool.xml_desc(0).map_err(fail)?, volumes));
        }
        let mut domains = Vec::new();
        let mut defined = BTreeMap::new();
        let mut snapshots = BTreeMap::new();
        // A paused domain is saved paused: a lab snapshot stopped half-way must not come back
        // as running.
        let paused: Vec<String> = conn
            .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_PAUSED)
            .map_err(fail)?
            .iter()
            .filter_map(|d| d.name().ok())
            .collect();
        for dom in conn.list_all_domains(0).map_err(fail)? {
            let saved = dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(fail)?;
            let running = dom.is_active().unwrap_or(false);
            let xml = if running {
                let live = dom.xml_desc(0).map_err(fail)?;
                if xml::without_domain_id(&live) != saved {
                    defined.insert(dom.name().map_err(fail)?, saved);
                }
                live
            } else {
                saved
            };
            let state = match (running, dom.name().is_ok_and(|n| paused.contains(&n))) {
                (true, true) => xml::RunState::Paused,
                (true, false) => xml::RunState::Running,
                (false, _) => xml::RunState::Off,
            };
            domains.push(xml::test_driver_domain(&xml, state).map_err(io)?);
            let taken: Vec<String> = dom
                .list_all_snapshots(sys::VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
                .map_err(fail)?
                .iter()
                .map(|s| s.xml_desc(sys::VIR_DOMAIN_SNAPSHOT_XML_SECURE))
                .collect::<Result<_, _>>()
                .map_err(fail)?;
            if !taken.is_empty() {
                snapshots.insert(dom.name().map_err(fail)?, taken);
            }
        }
        let node = xml::node_xml(&networks, &pools, &domains).map_err(io)?;
        let autostart = Autostart {
            networks: conn
                .list_all_networks(0)
                .unwrap_or_default()
                .iter()
                .filter(|n| n.autostart().unwrap_or(false))
                .filter_map(|n| n.name().ok())
                .collect(),
            pools: conn
                .list_all_storage_pools(0)
                .unwrap_or_default()
                .iter()
                .filter(|p| p.autostart().unwrap_or(false))
                .filter_map(|p| p.name().ok())
                .collect(),
            domains: conn
                .list_all_domains(0)
                .unwrap_or_default()
                .iter()
                .filter(|d| d.autostart().unwrap_or(false))
                .filter_map(|d| d.name().ok())
                .collect(),
        };
        let volumes = match self.provider.content() {
            ContentStore::Files(blobs) => blobs.index(),
            ContentStore::Streams => content::Index::new(),
        };
        Ok(State {
            node,
            autostart,
            volumes,
            defined,
            snapshots,
        })
    }
}

/// Defines the saved snapshots again, parents first, as they were.
fn restore_snapshots(conn: &Connect, saved: &BTreeMap<String, Vec<String>>) -> Result<(), String> {
    for (name, snapshots) in saved {
        let domain = conn
            .lookup_domain_by_name(name)
            .map_err(|e| format!("cannot find {name} for its snapshots: {}", e.message()))?;
        for xml in snapshots {
            domain
                .create_snapshot_xml(xml, sys::VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)
                .map_err(|e| format!("cannot restore a snapshot of {name}: {}", e.message()))?;
        }
    }
    Ok(())
}

impl Sandbox {
    async fn saved<T>(&self, result: Result<T, ProviderError>) -> Result<T, ProviderError> {
        super::crashpoint::point("change made, sandbox not saved yet");
        // Save even after a failure: part of the change may have happened.
        let saved = self.on_disk(Disk::save).await;
        let value = result?;
        saved?;
        Ok(value)
    }
}

impl Sandbox {
    /// A running VM's addresses as dnsmasq would hand them out: the reservation for its MAC, else
    /// the lease that MAC already holds, else the first free address of the network's DHCP range.
    /// Leases are kept in `leases.json`, so they stay put from run to run; the leases of MACs no VM
    /// has any more are freed.
    /// A NIC its guest configures statically asks for no lease.
    async fn simulated_addresses(&self, vms: &[AddressQuery]) -> Result<Addresses, ProviderError> {
        let ids = self
            .on_disk(|disk| {
                let conn = disk.provider.connection();
                let mut ids: Vec<ResourceId> = conn
                    .list_all_domains(0)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|d| d.name().ok())
                    .map(|n| ResourceId::vm(&n))
                    .collect();
                ids.extend(
                    conn.list_all_networks(0)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|n| n.name().ok())
                        .map(|n| ResourceId::network(&n)),
                );
                Ok(ids)
            })
            .await?;
        let seen = self
            .inner
            .observe(&Scope {
                plan: String::new(),
                ids,
            })
            .await?;
        let in_use: BTreeSet<String> = seen
            .resources
            .values()
            .filter_map(|r| match &r.spec {
                Spec::Vm(v) => Some(v.nics.iter().filter_map(|n| n.mac.clone())),
                _ => None,
            })
            .flatten()
            .map(|m| m.to_ascii_lowercase())
            .collect();

        let vms = vms.to_vec();
        self.on_disk(move |disk| disk.lease(&vms, &seen, in_use))
            .await
    }
}

impl Disk {
    /// Leases for `vms` from what was `seen`, freeing those of MACs not `in_use`, saved.
    fn lease(
        &self,
        vms: &[AddressQuery],
        seen: &Observed,
        in_use: BTreeSet<String>,
    ) -> Result<Addresses, ProviderError> {
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.dir.join(LEASES_FILE);
        let mut leases: Leases = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        for held in leases.values_mut() {
            held.retain(|mac, _| in_use.contains(mac));
        }
        let mut all = Addresses::new();
        for query in vms {
            let running = match seen.get(&ResourceId::vm(&query.vm)) {
                Some(LiveResource {
                    spec: Spec::Vm(spec),
                    active: true,
                    ..
                }) => spec,
                _ => continue,
            };
            let found = all.entry(query.vm.clone()).or_default();
            lease(running, &query.static_macs, seen, &mut leases, found);
        }
        let text = serde_json::to_string_pretty(&leases).unwrap_or_default();
        crate::files::write_atomic(&path, text.as_bytes())
            .map_err(|e| ProviderError::Connection(format!("saving the sandbox's leases: {e}")))?;
        Ok(all)
    }
}

/// A VM's leases: reserved, already leased, or newly leased, for each NIC whose guest asks.
fn lease(
    spec: &VmSpec,
    static_macs: &[String],
    seen: &Observed,
    leases: &mut Leases,
    found: &mut Vec<Address>,
) {
    for nic in &spec.nics {
        let (Some(mac), Some(Spec::Network(net))) = (
            nic.mac.as_ref().map(|m| m.to_ascii_lowercase()),
            seen.get(&ResourceId::network(&nic.network))
                .map(|r| &r.spec),
        ) else {
            continue;
        };
        if static_macs.iter().any(|m| m.eq_ignore_ascii_case(&mac)) {
            continue;
        }
        let held = leases.entry(net.name.clone()).or_default();
        let ip = match net.hosts.iter().find(|h| h.mac.eq_ignore_ascii_case(&mac)) {
            Some(host) => Some(host.ip),
            None => match held.get(&mac) {
                Some(ip) => Some(*ip),
                None => first_free(net, held).inspect(|ip| {
                    held.insert(mac.clone(), *ip);
                }),
            },
        };
        found.extend(ip.map(|ip| Address {
            ip,
            mac: Some(mac),
            source: AddressSource::Lease,
        }));
    }
}

/// Simulated DHCP leases: network name → MAC → address.
type Leases = BTreeMap<String, BTreeMap<String, IpAddr>>;

/// The lowest address of the network's IPv4 DHCP range that is neither reserved nor leased.
fn first_free(net: &NetworkSpec, held: &BTreeMap<String, IpAddr>) -> Option<IpAddr> {
    let Some((IpAddr::V4(start), IpAddr::V4(end))) = net.dhcp else {
        return None;
    };
    let taken: BTreeSet<IpAddr> = held
        .values()
        .copied()
        .chain(net.hosts.iter().map(|h| h.ip))
        .collect();
    (u32::from(start)..=u32::from(end))
        .map(|n| IpAddr::V4(n.into()))
        .find(|ip| !taken.contains(ip))
}

/// The sandbox's lock file, locked for this process, which it says who holds: two processes
/// must not write one sandbox at once, and the one refused is told which process has it.
fn open_exclusively(dir: &Path) -> Result<File, ProviderError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join("lock");
    let mut lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| {
            ProviderError::Connection(format!(
                "sandbox {}: cannot create its lock: {e}",
                dir.display()
            ))
        })?;
    if lock.try_lock().is_err() {
        let mut holder = String::new();
        let _ = lock.read_to_string(&mut holder);
        let holder = holder.trim();
        return Err(ProviderError::Connection(format!(
            "sandbox {} is in use by another plan process{}",
            dir.display(),
            if holder.is_empty() {
                String::new()
            } else {
                format!(": {holder}")
            }
        )));
    }
    // Only the subcommand: the rest of the command line may hold secrets (`-P password=`).
    let subcommand = std::env::args().nth(1).unwrap_or_default();
    let holder = format!(
        "`plan {subcommand}` (pid {}, since {})",
        std::process::id(),
        super::lock::rfc3339(std::time::SystemTime::now())
    );
    let _ = lock
        .set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(holder.as_bytes()));
    Ok(lock)
}

/// The saved state; for a sandbox saved before `state.json` existed (or a node file written by
/// hand), the node file, autostart flags and volume files it had; for a new one, the first state.
fn load_state(dir: &Path) -> std::io::Result<State> {
    match std::fs::read_to_string(dir.join(STATE_FILE)) {
        Ok(text) => return serde_json::from_str(&text).map_err(std::io::Error::other),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let node = match std::fs::read_to_string(dir.join(NODE_FILE)) {
        Ok(node) => node,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return initial_state(),
        Err(e) => return Err(e),
    };
    let autostart = std::fs::read_to_string(dir.join("autostart.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    // Volume bytes were kept as volumes/POOL/NAME.
    let mut volumes = content::Index::new();
    let blobs = dir.join(BLOB_DIR);
    for pool in std::fs::read_dir(dir.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for vol in std::fs::read_dir(pool.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let file = format!(
                "imported-{}-{}",
                pool.file_name().to_string_lossy(),
                vol.file_name().to_string_lossy()
            );
            std::fs::create_dir_all(&blobs)?;
            std::fs::copy(vol.path(), blobs.join(&file))?;
            volumes.insert(
                format!(
                    "{}/{}",
                    pool.file_name().to_string_lossy(),
                    vol.file_name().to_string_lossy()
                ),
                file,
            );
        }
    }
    Ok(State {
        node,
        autostart,
        volumes,
        defined: BTreeMap::new(),
        snapshots: BTreeMap::new(),
    })
}

fn restore_autostart(conn: &Connect, flags: &Autostart) {
    for name in &flags.networks {
        if let Ok(n) = conn.lookup_network_by_name(name) {
            let _ = n.set_autostart(true);
        }
    }
    for name in &flags.pools {
        if let Ok(p) = conn.lookup_storage_pool_by_name(name) {
            let _ = p.set_autostart(true);
        }
    }
    for name in &flags.domains {
        if let Ok(d) = conn.lookup_domain_by_name(name) {
            let _ = d.set_autostart(true);
        }
    }
}

fn initial_state() -> std::io::Result<State> {
    Ok(State {
        node: initial_node()?,
        ..State::default()
    })
}

/// A new sandbox has what a fresh libvirt host has: a `default` NAT network and a `default` pool.
fn initial_node() -> std::io::Result<String> {
    let network = xml::network_xml(
        &NetworkSpec {
            name: "default".into(),
            mode: ForwardMode::Nat,
            bridge: "virbr0".into(),
            cidr: "192.168.122.0/24".parse().ok(),
            dhcp: Some((
                "192.168.122.2"
                    .parse()
                    .unwrap_or(IpAddr::from([0, 0, 0, 0])),
                "192.168.122.254"
                    .parse()
                    .unwrap_or(IpAddr::from([0, 0, 0, 0])),
            )),
            hosts: Vec::new(),
            dns_hosts: Vec::new(),
            domain: None,
            mtu: None,
            dns: true,
            autostart: true,
        },
        None,
    )?;
    let pool = xml::pool_xml(&PoolSpec {
        name: "default".into(),
        path: "/var/lib/libvirt/images".into(),
        autostart: true,
    })?;
    xml::node_xml(&[network], &[(pool, Vec::new())], &[])
}

#[async_trait]
impl Provider for Sandbox {
    fn kind(&self) -> &'static str {
        "sandbox"
    }

    fn endpoint(&self) -> String {
        self.dir().display().to_string()
    }

    async fn health(&self) -> Health {
        let health = self.inner.health().await;
        if health.status == HealthStatus::Ready {
            return health;
        }
        Health {
            status: HealthStatus::Unhealthy,
            reason: health.reason,
        }
    }

    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        self.inner.observe(scope).await
    }

    async fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let _one_change_at_a_time = self.changing.lock().await;
        let result = self.inner.create(spec, owner).await;
        self.saved(result).await
    }

    async fn update(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let _one_change_at_a_time = self.changing.lock().await;
        let result = self.inner.update(spec, owner).await;
        self.saved(result).await
    }

    async fn power(&self, vm: &str, power: Power, owner: &Owner) -> Result<Done, ProviderError> {
        let _one_change_at_a_time = self.changing.lock().await;
        let result = self.inner.power(vm, power, owner).await;
        self.saved(result).await
    }

    async fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        let _one_change_at_a_time = self.changing.lock().await;
        let result = self.inner.delete(id, owner).await;
        self.saved(result).await
    }

    async fn claim(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let _one_change_at_a_time = self.changing.lock().await;
        let result = self.inner.claim(spec, owner).await;
        self.saved(result).await
    }

    /// The test driver invents addresses unrelated to the networks; the sandbox gives the
    /// leases a DHCP server on those networks would.
    async fn addresses(&self, vms: &[AddressQuery]) -> Result<Addresses, ProviderError> {
        self.simulated_addresses(vms).await
    }

    fn rules(&self) -> &dyn crate::plan::rules::Rules {
        self.inner.rules()
    }

    async fn console(
        &self,
        vm: &str,
        owner: &Owner,
    ) -> Result<std::sync::Arc<dyn super::Console>, ProviderError> {
        self.inner.console(vm, owner).await
    }

    async fn plans(&self) -> Result<Vec<super::PlanMember>, ProviderError> {
        self.inner.plans().await
    }

    async fn network_users(
        &self,
        networks: &[String],
    ) -> Result<Vec<super::NetworkUser>, ProviderError> {
        self.inner.network_users(networks).await
    }

    async fn details(&self, vm: &str) -> Result<super::VmDetails, ProviderError> {
        self.inner.details(vm).await
    }

    async fn reattach(
        &self,
        vm: &str,
        networks: &[String],
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        self.inner.reattach(vm, networks, owner).await
    }

    async fn create_lock(
        &self,
        holder: &super::lock::LockHolder,
    ) -> Result<super::lock::LockAttempt, ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.create_lock(holder).await;
        self.saved(result).await
    }

    async fn read_lock(&self, plan: &str) -> Result<Option<super::lock::FoundLock>, ProviderError> {
        self.inner.read_lock(plan).await
    }

    async fn renew_lock(
        &self,
        holder: &super::lock::LockHolder,
        token: &str,
    ) -> Result<(), ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.renew_lock(holder, token).await;
        self.saved(result).await
    }

    async fn delete_lock(&self, plan: &str, token: &str) -> Result<bool, ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.delete_lock(plan, token).await;
        self.saved(result).await
    }

    async fn read_volume(&self, pool: &str, name: &str) -> Result<Vec<u8>, ProviderError> {
        self.inner.read_volume(pool, name).await
    }

    async fn snapshot_refusals(
        &self,
        vms: &[String],
        owner: &Owner,
    ) -> Result<Vec<String>, ProviderError> {
        self.inner.snapshot_refusals(vms, owner).await
    }

    async fn pause(&self, vm: &str, owner: &Owner) -> Result<bool, ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.pause(vm, owner).await;
        self.saved(result).await
    }

    async fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.resume(vm, owner).await;
        self.saved(result).await
    }

    async fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.create_snapshot(vm, mark, owner).await;
        self.saved(result).await
    }

    async fn snapshots(&self, plan: &str) -> Result<FoundSnapshots, ProviderError> {
        self.inner.snapshots(plan).await
    }

    async fn revert_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.revert_snapshot(vm, name, owner).await;
        self.saved(result).await
    }

    async fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError> {
        let _one = self.changing.lock().await;
        let result = self.inner.delete_snapshot(vm, name, owner).await;
        self.saved(result).await
    }
}
