//! Opening a sandbox's saved state: the checkpoint and journal of this version, the single-file
//! state and node files of earlier ones, or a new sandbox's first state.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use super::{saved, BLOB_DIR, JOURNAL_FILE, NODE_FILE, STATE_FILE};
use crate::plan::model::spec::*;
use crate::provider::libvirt::{content, xml};

/// What the test driver is opened with. Earlier versions saved exactly this as `state.json`.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct State {
    /// The test driver's node file.
    pub(super) node: String,
    /// The node file has no place for autostart flags.
    pub(super) autostart: Autostart,
    /// Which blob holds each volume's bytes.
    pub(super) volumes: content::Index,
    /// Each pool's ledger (earlier versions kept them as bytes in `volumes`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) ledgers: content::Ledgers,
    /// The saved definitions of running domains that run with another one (a change waiting
    /// for a restart), by name: the node file holds what they run with, and the node file has
    /// no place for a second definition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) defined: BTreeMap<String, String>,
    /// Each domain's snapshots (their XML, parents first): the node file has no place for
    /// them that this code writes, so they are defined again on opening.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) snapshots: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Autostart {
    pub(super) networks: Vec<String>,
    pub(super) pools: Vec<String>,
    pub(super) domains: Vec<String>,
}

/// The ledgers that earlier versions kept as volume bytes, as records, and the index without
/// them.
pub(super) fn ledgers_as_records(
    blobs: &Path,
    mut volumes: content::Index,
    mut ledgers: content::Ledgers,
) -> std::io::Result<(content::Index, content::Ledgers)> {
    use crate::provider::libvirt::ledger::{Ledger, LEDGER_VOLUME};
    let kept_as_bytes: Vec<String> = volumes
        .keys()
        .filter(|k| k.ends_with(&format!("/{LEDGER_VOLUME}")))
        .cloned()
        .collect();
    for key in kept_as_bytes {
        let (Some(file), Some((pool, _))) = (volumes.remove(&key), key.split_once('/')) else {
            continue;
        };
        let ledger =
            Ledger::from_bytes(&std::fs::read(blobs.join(file))?).map_err(std::io::Error::other)?;
        ledgers.insert(pool.to_string(), ledger);
    }
    Ok((volumes, ledgers))
}

/// What opening found on disk.
pub(super) struct Loaded {
    pub(super) state: State,
    /// The last journal record it holds.
    pub(super) seq: u64,
    pub(super) checkpoint_bytes: u64,
    /// The journal is not empty, or the state is of an earlier version: write a checkpoint.
    pub(super) fold: bool,
}

/// The checkpoint and the journal's records after it; for a sandbox of an earlier version, its
/// single-file state (or, before that, its node file, autostart flags and volume files); for a
/// new one, the first state.
pub(super) fn load_state(dir: &Path) -> std::io::Result<Loaded> {
    let earlier = |state| Loaded {
        state,
        seq: 0,
        checkpoint_bytes: 0,
        fold: true,
    };
    let text = match std::fs::read(dir.join(STATE_FILE)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return load_unsaved(dir).map(earlier)
        }
        Err(e) => return Err(e),
    };
    let format = serde_json::from_slice::<Format>(&text).map_err(std::io::Error::other)?;
    match format.format {
        None => {
            let state = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
            Ok(earlier(state))
        }
        Some(saved::FORMAT) => {
            let checkpoint: saved::Checkpoint =
                serde_json::from_slice(&text).map_err(std::io::Error::other)?;
            let records = saved::replay(&dir.join(JOURNAL_FILE), checkpoint.seq)?;
            let seq = checkpoint.seq + records.len() as u64;
            // Whatever the journal holds, even only a line cut short, goes into a checkpoint:
            // records must not be appended after a cut line, where replay would never reach.
            let fold = std::fs::metadata(dir.join(JOURNAL_FILE)).is_ok_and(|m| m.len() > 0);
            let mut objects = checkpoint.objects;
            for record in records {
                objects.apply(record);
            }
            Ok(Loaded {
                state: state_of(&objects)?,
                seq,
                checkpoint_bytes: text.len() as u64,
                fold,
            })
        }
        Some(other) => Err(std::io::Error::other(format!(
            "it is saved in format {other}, which a later version of siteplan wrote; this one \
             reads format {} and earlier",
            saved::FORMAT
        ))),
    }
}

/// Only the format of `state.json`.
#[derive(serde::Deserialize)]
struct Format {
    format: Option<u32>,
}

/// What the test driver opens with, made from the saved objects.
fn state_of(objects: &saved::Objects) -> std::io::Result<State> {
    let names = |on: &dyn Fn(&String) -> bool, keys: Vec<&String>| -> Vec<String> {
        keys.into_iter().filter(|k| on(k)).cloned().collect()
    };
    Ok(State {
        node: objects.node()?,
        autostart: Autostart {
            networks: names(
                &|k| objects.networks[k].autostart,
                objects.networks.keys().collect(),
            ),
            pools: names(
                &|k| objects.pools[k].autostart,
                objects.pools.keys().collect(),
            ),
            domains: names(
                &|k| objects.domains[k].autostart,
                objects.domains.keys().collect(),
            ),
        },
        volumes: objects.blobs(),
        ledgers: objects.ledgers(),
        defined: objects
            .domains
            .iter()
            .filter_map(|(name, d)| d.defined.clone().map(|x| (name.clone(), x)))
            .collect(),
        snapshots: objects
            .domains
            .iter()
            .filter(|(_, d)| !d.snapshots.is_empty())
            .map(|(name, d)| (name.clone(), d.snapshots.clone()))
            .collect(),
    })
}

/// A sandbox saved before `state.json` existed (or a node file written by hand): the node
/// file, autostart flags and volume files it had; for a new one, the first state.
fn load_unsaved(dir: &Path) -> std::io::Result<State> {
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
        ..State::default()
    })
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
