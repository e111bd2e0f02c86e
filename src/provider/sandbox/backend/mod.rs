//! The sandbox: the libvirt provider on libvirt's in-process test driver, saved to a directory.
//! It is that provider with a hook (`libvirt::Hook`): each change the provider makes is saved
//! here, so every method of the provider is the sandbox's too.
//!
//! libvirt's test driver reads a node file (`test:///path/node.xml`) but never writes it, and
//! keeps no volume content. The sandbox keeps every object it holds (domains with their run
//! state, networks, pools, volumes, autostart flags, and which file holds each volume's bytes)
//! in a checkpoint and a journal of the changes since (`saved.rs`), so a change is saved whole or
//! not at all, however the process ends; `node.xml` is made from them on opening. Nothing else
//! needs to be installed.

mod leases;
mod load;
mod saved;
mod tunnels;

use load::{ledgers_as_records, load_state, Autostart};

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use virt::connect::Connect;
use virt::sys;

use crate::plan::model::spec::*;
use crate::provider::libvirt::content::{self, ContentStore};
use crate::provider::libvirt::{xml, Hook, LibvirtProvider, Touched};
use crate::provider::{
    AddressQuery, Addresses, Health, HealthStatus, Observed, ProviderError, ResourceId,
};

/// Everything the sandbox holds, as of a journal record (`saved::Checkpoint`).
const STATE_FILE: &str = "state.json";
/// The changes since the checkpoint (`saved::Record`, one per line).
const JOURNAL_FILE: &str = "journal";
/// The journal is folded into a new checkpoint once it is as large as the checkpoint, and
/// not before it holds this much.
const JOURNAL_MIN_BYTES: u64 = 1024 * 1024;
/// What the test driver reads, made from the state on opening.
const NODE_FILE: &str = "node.xml";
/// Volume bytes, one file per distinct content.
const BLOB_DIR: &str = "blobs";
/// Simulated DHCP leases (see `simulated_addresses`).
const LEASES_FILE: &str = "leases.json";
/// The marks of its tunnels (`tunnels.rs`).
const TUNNELS_FILE: &str = "tunnels.json";

/// The sandbox: a libvirt provider whose hook is its directory. It is used as that provider
/// (`Deref`, `into_provider`).
pub struct Sandbox {
    provider: LibvirtProvider,
    disk: Arc<Disk>,
}

impl std::ops::Deref for Sandbox {
    type Target = LibvirtProvider;

    fn deref(&self) -> &LibvirtProvider {
        &self.provider
    }
}

/// The sandbox's directory: the provider's hook. It holds no provider (the provider holds it);
/// each call is given the provider's connection.
struct Disk {
    dir: PathBuf,
    /// Held for the sandbox's lifetime: two processes must not write one sandbox at once.
    _lock: File,
    /// Saves and lease updates must not interleave.
    saving: std::sync::Mutex<Saving>,
}

struct Saving {
    journal: saved::Journal,
    /// The size of the last checkpoint.
    checkpoint_bytes: u64,
    /// In builds with debug assertions (the tests), the objects as saved, checked against the
    /// test driver after every change: a change that touched an object its record left out
    /// would be lost on reopening.
    expected: Option<saved::Objects>,
}

/// Where the sandbox lives: `$SITEPLAN_SANDBOX_DIR`, else the XDG state directory.
pub fn default_dir() -> PathBuf {
    super::settings::default_dir()
}

impl Sandbox {
    /// Opens the sandbox in `dir`, creating it (with a `default` network and pool) if new.
    pub fn open(dir: &Path) -> Result<Self, ProviderError> {
        let fail = |what: &str, e: std::io::Error| {
            ProviderError::Connection(format!("sandbox {}: {what}: {e}", dir.display()))
        };
        refuse_foreign(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create it", e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| fail("cannot resolve it", e))?;
        let lock = open_exclusively(&dir)?;
        let loaded = load_state(&dir).map_err(|e| fail("cannot read its state", e))?;
        let state = loaded.state;
        let node = dir.join(NODE_FILE);
        crate::files::write_atomic(&node, state.node.as_bytes())
            .map_err(|e| fail("cannot write its node file", e))?;
        let uri = format!("test://{}", node.display());
        crate::provider::libvirt::quiet_libvirt();
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
        let (volumes, ledgers) =
            ledgers_as_records(&dir.join(BLOB_DIR), state.volumes, state.ledgers)
                .map_err(|e| fail("cannot read its ledgers", e))?;
        let blobs = content::Blobs::new(dir.join(BLOB_DIR), volumes, ledgers);
        let content = ContentStore::Files(blobs);
        let journal = saved::Journal::open(&dir.join(JOURNAL_FILE), loaded.seq)
            .map_err(|e| fail("cannot open its journal", e))?;
        let disk = Disk {
            dir,
            _lock: lock,
            saving: std::sync::Mutex::new(Saving {
                journal,
                checkpoint_bytes: loaded.checkpoint_bytes,
                expected: None,
            }),
        };
        {
            let on = On {
                conn: &conn,
                content: &content,
            };
            let mut saving = disk.lock_saving();
            if loaded.fold {
                disk.checkpoint(on, &mut saving)?;
            }
            if cfg!(debug_assertions) {
                saving.expected = Some(on.read_all()?);
            }
        }
        let disk = Arc::new(disk);
        let provider = LibvirtProvider::with(conn, &uri, content)
            .without_image_downloads()
            .with_hook(disk.clone());
        Ok(Sandbox { provider, disk })
    }

    pub fn dir(&self) -> &Path {
        &self.disk.dir
    }

    /// The provider the sandbox is.
    pub fn into_provider(self) -> LibvirtProvider {
        self.provider
    }

    /// Writes `node.xml` as the sandbox is now, for tools that read libvirt's test driver
    /// files (`virsh -c test:///DIR/node.xml`), and returns its path.
    pub fn write_node_file(&self) -> Result<PathBuf, ProviderError> {
        let on = On {
            conn: self.provider.connection(),
            content: self.provider.content(),
        };
        self.disk.write_node_file(on)
    }
}

/// The connection and volume store a hook call is given.
#[derive(Clone, Copy)]
struct On<'a> {
    conn: &'a Connect,
    content: &'a ContentStore,
}

impl On<'_> {
    fn blobs(&self) -> Option<&content::Blobs> {
        match self.content {
            ContentStore::Files(blobs) => Some(blobs),
            ContentStore::Streams => None,
        }
    }

    fn read_all(&self) -> Result<saved::Objects, ProviderError> {
        saved::read_all(self.conn, self.blobs()).map_err(saving_failed)
    }
}

impl Hook for Disk {
    fn kind(&self) -> &'static str {
        "sandbox"
    }

    fn endpoint(&self) -> String {
        self.dir.display().to_string()
    }

    /// A sandbox that is there but does not answer is unhealthy, not unavailable.
    fn health(&self, libvirt: Health) -> Health {
        if libvirt.status == HealthStatus::Ready {
            return libvirt;
        }
        Health {
            status: HealthStatus::Unhealthy,
            reason: libvirt.reason,
        }
    }

    fn before_create(&self, conn: &Connect, spec: &Spec) -> Result<(), ProviderError> {
        match spec {
            Spec::Network(net) => refuse_taken(conn, net),
            _ => Ok(()),
        }
    }

    fn changed(
        &self,
        conn: &Connect,
        content: &ContentStore,
        touched: &Touched,
    ) -> Result<(), ProviderError> {
        self.save(On { conn, content }, touched)
    }

    /// The test driver invents addresses unrelated to the networks; the sandbox gives the
    /// leases a DHCP server on those networks would.
    fn links(&self) -> Option<Box<dyn crate::provider::libvirt::tunnels::HostLinks>> {
        Some(Box::new(tunnels::Tunnels {
            file: self.dir.join(TUNNELS_FILE),
        }))
    }

    fn addresses(
        &self,
        seen: &Observed,
        vms: &[AddressQuery],
    ) -> Option<Result<Addresses, ProviderError>> {
        Some(self.lease(vms, seen))
    }
}

impl Disk {
    fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_saving(&self) -> std::sync::MutexGuard<'_, Saving> {
        self.saving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Saves what a change `touched`: one journal record, or a checkpoint when the journal has
    /// grown as large as the last one.
    fn save(&self, on: On, touched: &Touched) -> Result<(), ProviderError> {
        let mut saving = self.lock_saving();
        let journal = &saving.journal;
        if journal.broken || journal.bytes >= saving.checkpoint_bytes.max(JOURNAL_MIN_BYTES) {
            return self.checkpoint(on, &mut saving);
        }
        let record =
            saved::read(on.conn, on.blobs(), touched, journal.seq + 1).map_err(saving_failed)?;
        saving
            .journal
            .append(&record)
            .map_err(|e| saving_failed(e.to_string()))?;
        if let Some(blobs) = on.blobs() {
            blobs.remove_dropped(|key| record.volumes.contains_key(key));
        }
        if let Some(mut expected) = saving.expected.take() {
            expected.apply(record);
            let found = on.read_all()?;
            let missed = expected.differences(&found);
            if !missed.is_empty() {
                return Err(saving_failed(format!(
                    "a change touched what its journal record left out: {}",
                    missed.join(", ")
                )));
            }
            saving.expected = Some(found);
        }
        Ok(())
    }

    /// Writes every object as the new checkpoint, and empties the journal it now holds.
    fn checkpoint(&self, on: On, saving: &mut Saving) -> Result<(), ProviderError> {
        let objects = on.read_all()?;
        let checkpoint = saved::Checkpoint {
            format: saved::FORMAT,
            seq: saving.journal.seq,
            objects,
        };
        let text = serde_json::to_vec(&checkpoint).unwrap_or_default();
        crate::files::write_atomic(&self.dir().join(STATE_FILE), &text)
            .map_err(|e| saving_failed(e.to_string()))?;
        saving.checkpoint_bytes = text.len() as u64;
        crate::provider::crashpoint::point("checkpoint written, journal not emptied yet");
        saving
            .journal
            .clear()
            .map_err(|e| saving_failed(e.to_string()))?;
        if let Some(blobs) = on.blobs() {
            blobs.collect_garbage();
        }
        if saving.expected.is_some() {
            saving.expected = Some(checkpoint.objects);
        }
        Ok(())
    }

    /// Writes `node.xml` as the sandbox is now, for tools that read libvirt's test driver
    /// files (`virsh -c test:///DIR/node.xml`), and returns its path.
    fn write_node_file(&self, on: On) -> Result<PathBuf, ProviderError> {
        let path = self.dir().join(NODE_FILE);
        let node = on
            .read_all()?
            .node()
            .map_err(|e| saving_failed(e.to_string()))?;
        crate::files::write_atomic(&path, node.as_bytes())
            .map_err(|e| ProviderError::Connection(format!("writing the node file: {e}")))?;
        Ok(path)
    }
}

/// What libvirt refuses and its test driver does not: a network on a bridge, or with
/// addresses, that another active network has.
fn refuse_taken(conn: &Connect, want: &NetworkSpec) -> Result<(), ProviderError> {
    let id = ResourceId::network(&want.name);
    for net in conn.list_all_networks(0).unwrap_or_default() {
        if !net.is_active().unwrap_or(false) || net.name().is_ok_and(|n| n == want.name) {
            continue;
        }
        let Ok((have, _)) = net
            .xml_desc(0)
            .map_err(|e| e.to_string())
            .and_then(|x| xml::parse_network(&x, false))
        else {
            continue;
        };
        let bridged = |n: &NetworkSpec| n.mode == ForwardMode::Bridge;
        if !bridged(want) && !bridged(&have) && have.bridge == want.bridge {
            return Err(ProviderError::backend(
                &id,
                format!(
                    "bridge name '{}' is already in use by network {}",
                    want.bridge, have.name
                ),
            ));
        }
        if let (Some(a), Some(b)) = (want.cidr, have.cidr) {
            if a.contains(&b.network()) || b.contains(&a.network()) {
                return Err(ProviderError::backend(
                    &id,
                    format!("{a} is already in use by network {} ({b})", have.name),
                ));
            }
        }
    }
    Ok(())
}

fn saving_failed(e: String) -> ProviderError {
    ProviderError::Connection(format!("saving the sandbox: {e}"))
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

/// A directory that holds files but no sandbox is someone else's: the sandbox would write among
/// them, and removes files in its `blobs` that it does not know.
fn refuse_foreign(dir: &Path) -> Result<(), ProviderError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // new: created next
    };
    let names: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let ours = [STATE_FILE, NODE_FILE, "lock"];
    if names.is_empty() || names.iter().any(|n| ours.contains(&n.as_str())) {
        return Ok(());
    }
    Err(ProviderError::Connection(format!(
        "{} holds files and no sandbox ({}{}): a sandbox keeps a directory of its own; name a \
         new or empty one",
        dir.display(),
        names.iter().take(3).cloned().collect::<Vec<_>>().join(", "),
        if names.len() > 3 { ", ..." } else { "" }
    )))
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
        crate::provider::lock::rfc3339(std::time::SystemTime::now())
    );
    let _ = lock
        .set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| lock.write_all(holder.as_bytes()));
    Ok(lock)
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
