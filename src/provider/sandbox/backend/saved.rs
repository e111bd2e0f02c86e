//! How the sandbox is saved: a checkpoint of every object (`state.json`) and a journal of the
//! objects each change touched since (`journal`, one JSON line per change).
//!
//! Rewriting the whole state after every change made an apply quadratic in the size of the lab
//! (a 400-VM lab rewrote and fsynced its state 1,200 times). A change now appends only what it
//! touched, read back from the test driver, and the checkpoint is rewritten once the journal
//! has grown as large as it: the cost of saving stays proportional to the change.
//!
//! A journal line is a whole record or is not there: a line cut short by a crash does not parse
//! and ends the replay, and a record holds every object a change touched, so a change is still
//! saved whole or not at all. Records carry a sequence number, and the checkpoint the last one it
//! holds: a crash between writing a checkpoint and emptying the journal replays nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use virt::connect::Connect;
use virt::sys;

use crate::provider::libvirt::content::{Blobs, Index, Ledgers};
use crate::provider::libvirt::xml;
use crate::provider::libvirt::Touched;
use crate::provider::OwnerMark;

/// The checkpoint's format; a `state.json` without it is the single-file state of earlier
/// versions.
pub const FORMAT: u32 = 2;

/// Every object of the sandbox, as the test driver's node file needs it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objects {
    pub networks: BTreeMap<String, Network>,
    pub pools: BTreeMap<String, Pool>,
    /// By `pool/volume`.
    pub volumes: BTreeMap<String, Volume>,
    pub domains: BTreeMap<String, Domain>,
    /// The marks of each pool's ledger (`libvirt::ledger`): of the pool, by pool, ...
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_marks: BTreeMap<String, OwnerMark>,
    /// ... and of its volumes, by `pool/volume`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_marks: BTreeMap<String, OwnerMark>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub xml: String,
    pub autostart: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    pub xml: String,
    pub autostart: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub xml: String,
    /// The file holding its bytes, if it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Domain {
    /// As the node file holds it: the definition it runs with, and its run state.
    pub xml: String,
    pub autostart: bool,
    /// The definition it takes when it restarts, when that differs (a change waiting for a
    /// restart): the node file has no place for a second definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defined: Option<String>,
    /// Its snapshots' XML, parents first: defined again on opening.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
}

/// `state.json` from this version on.
#[derive(Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format: u32,
    /// The last journal record it holds.
    pub seq: u64,
    pub objects: Objects,
}

/// What one change touched, as it is after the change; `None` for what is gone.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Option<Network>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pools: BTreeMap<String, Option<Pool>>,
    /// Pools whose volumes are all listed in `volumes`: the others are gone.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub whole_pools: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volumes: BTreeMap<String, Option<Volume>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub domains: BTreeMap<String, Option<Domain>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pool_marks: BTreeMap<String, Option<OwnerMark>>,
    /// Of whole pools, all their marks: the others are gone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub volume_marks: BTreeMap<String, Option<OwnerMark>>,
}

impl Objects {
    /// The objects with a record's changes.
    pub fn apply(&mut self, record: Record) {
        fn set<T>(map: &mut BTreeMap<String, T>, key: String, value: Option<T>) {
            match value {
                Some(v) => {
                    map.insert(key, v);
                }
                None => {
                    map.remove(&key);
                }
            }
        }
        for (k, v) in record.networks {
            set(&mut self.networks, k, v);
        }
        for (k, v) in record.pools {
            set(&mut self.pools, k, v);
        }
        for pool in &record.whole_pools {
            let prefix = format!("{pool}/");
            self.volumes.retain(|key, _| !key.starts_with(&prefix));
            self.volume_marks.retain(|key, _| !key.starts_with(&prefix));
        }
        for (k, v) in record.volumes {
            set(&mut self.volumes, k, v);
        }
        for (k, v) in record.domains {
            set(&mut self.domains, k, v);
        }
        for (k, v) in record.pool_marks {
            set(&mut self.pool_marks, k, v);
        }
        for (k, v) in record.volume_marks {
            set(&mut self.volume_marks, k, v);
        }
    }

    /// The test driver's node file.
    pub fn node(&self) -> std::io::Result<String> {
        let networks: Vec<String> = self.networks.values().map(|n| n.xml.clone()).collect();
        let pools: Vec<(String, Vec<String>)> = self
            .pools
            .iter()
            .map(|(name, pool)| {
                let prefix = format!("{name}/");
                let volumes = self
                    .volumes
                    .range(prefix.clone()..)
                    .take_while(|(key, _)| key.starts_with(&prefix))
                    .map(|(_, v)| v.xml.clone())
                    .collect();
                (pool.xml.clone(), volumes)
            })
            .collect();
        let domains: Vec<String> = self.domains.values().map(|d| d.xml.clone()).collect();
        xml::node_xml(&networks, &pools, &domains)
    }

    /// Which file holds each volume's bytes.
    pub fn blobs(&self) -> Index {
        self.volumes
            .iter()
            .filter_map(|(key, v)| v.blob.clone().map(|b| (key.clone(), b)))
            .collect()
    }

    /// Each pool's ledger.
    pub fn ledgers(&self) -> Ledgers {
        let mut ledgers = Ledgers::new();
        for (pool, mark) in &self.pool_marks {
            ledgers.entry(pool.clone()).or_default().pool = Some(mark.clone());
        }
        for (key, mark) in &self.volume_marks {
            if let Some((pool, volume)) = key.split_once('/') {
                let ledger = ledgers.entry(pool.to_string()).or_default();
                ledger.volumes.insert(volume.to_string(), mark.clone());
            }
        }
        ledgers
    }

    /// A short account of how two sets of objects differ, for a report that should not happen.
    pub fn differences(&self, other: &Objects) -> Vec<String> {
        fn keys<T: PartialEq>(
            kind: &str,
            a: &BTreeMap<String, T>,
            b: &BTreeMap<String, T>,
            out: &mut Vec<String>,
        ) {
            let all: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            out.extend(
                all.into_iter()
                    .filter(|k| a.get(*k) != b.get(*k))
                    .map(|k| format!("{kind} {k}")),
            );
        }
        let mut out = Vec::new();
        keys("network", &self.networks, &other.networks, &mut out);
        keys("pool", &self.pools, &other.pools, &mut out);
        keys("volume", &self.volumes, &other.volumes, &mut out);
        keys("domain", &self.domains, &other.domains, &mut out);
        keys("pool mark", &self.pool_marks, &other.pool_marks, &mut out);
        keys(
            "volume mark",
            &self.volume_marks,
            &other.volume_marks,
            &mut out,
        );
        out
    }
}

fn message(e: virt::error::Error) -> String {
    e.message().to_string()
}

/// What `touched` is now, as record `seq`.
pub fn read(
    conn: &Connect,
    blobs: Option<&Blobs>,
    touched: &Touched,
    seq: u64,
) -> Result<Record, String> {
    let file = |key: &str| blobs.and_then(|b| b.file(key));
    let mut record = Record {
        seq,
        ..Record::default()
    };
    for name in &touched.networks {
        let found = conn.lookup_network_by_name(name).ok();
        let network = found.map(|n| network(&n)).transpose()?;
        record.networks.insert(name.clone(), network);
    }
    for name in touched.pools.iter().chain(&touched.whole_pools) {
        let found = conn.lookup_storage_pool_by_name(name).ok();
        let pool_entry = found.as_ref().map(pool).transpose()?;
        record.pools.insert(name.clone(), pool_entry);
        record
            .pool_marks
            .insert(name.clone(), blobs.and_then(|b| b.pool_mark(name)));
        if touched.whole_pools.contains(name) {
            record.whole_pools.insert(name.clone());
            let ledger = blobs.map(|b| b.ledger(name)).unwrap_or_default();
            for (volume, mark) in ledger.volumes {
                record
                    .volume_marks
                    .insert(format!("{name}/{volume}"), Some(mark));
            }
            for vol in found
                .as_ref()
                .and_then(|p| p.list_all_volumes(0).ok())
                .unwrap_or_default()
            {
                let vname = vol.name().map_err(message)?;
                let key = format!("{name}/{vname}");
                record
                    .volumes
                    .insert(key.clone(), Some(volume(&vol, file(&key))?));
            }
        }
    }
    for (pool, name) in &touched.volumes {
        if touched.whole_pools.contains(pool) {
            continue;
        }
        let key = format!("{pool}/{name}");
        let found = conn
            .lookup_storage_pool_by_name(pool)
            .ok()
            .and_then(|p| p.lookup_storage_vol_by_name(name).ok());
        let entry = found.map(|v| volume(&v, file(&key))).transpose()?;
        let mark = blobs.and_then(|b| b.volume_mark(pool, name));
        record.volume_marks.insert(key.clone(), mark);
        record.volumes.insert(key, entry);
    }
    for name in &touched.domains {
        let found = conn.lookup_domain_by_name(name).ok();
        let entry = found.map(|d| domain(&d)).transpose()?;
        record.domains.insert(name.clone(), entry);
    }
    Ok(record)
}

/// Every object the sandbox holds.
pub fn read_all(conn: &Connect, blobs: Option<&Blobs>) -> Result<Objects, String> {
    let mut touched = Touched::default();
    for n in conn.list_all_networks(0).map_err(message)? {
        touched.networks.insert(n.name().map_err(message)?);
    }
    for p in conn.list_all_storage_pools(0).map_err(message)? {
        touched.whole_pools.insert(p.name().map_err(message)?);
    }
    for d in conn.list_all_domains(0).map_err(message)? {
        touched.domains.insert(d.name().map_err(message)?);
    }
    let mut objects = Objects::default();
    objects.apply(read(conn, blobs, &touched, 0)?);
    Ok(objects)
}

fn network(net: &virt::network::Network) -> Result<Network, String> {
    Ok(Network {
        xml: net.xml_desc(0).map_err(message)?,
        autostart: net.autostart().unwrap_or(false),
    })
}

fn pool(pool: &virt::storage_pool::StoragePool) -> Result<Pool, String> {
    Ok(Pool {
        xml: pool.xml_desc(0).map_err(message)?,
        autostart: pool.autostart().unwrap_or(false),
    })
}

fn volume(vol: &virt::storage_vol::StorageVol, blob: Option<String>) -> Result<Volume, String> {
    Ok(Volume {
        xml: vol.xml_desc(0).map_err(message)?,
        blob,
    })
}

fn domain(dom: &virt::domain::Domain) -> Result<Domain, String> {
    let saved = dom
        .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE)
        .map_err(message)?;
    let running = dom.is_active().unwrap_or(false);
    let (xml, defined) = if running {
        let live = dom.xml_desc(0).map_err(message)?;
        let defined = (xml::without_domain_id(&live) != saved).then_some(saved);
        (live, defined)
    } else {
        (saved, None)
    };
    // A paused domain is saved paused: a lab snapshot stopped half-way must not come back
    // as running.
    let paused = dom
        .state()
        .is_ok_and(|(state, _)| state.is(virt::domain::DomainState::Paused));
    let state = match (running, paused) {
        (true, true) => xml::RunState::Paused,
        (true, false) => xml::RunState::Running,
        (false, _) => xml::RunState::Off,
    };
    let snapshots = dom
        .list_all_snapshots(sys::VIR_DOMAIN_SNAPSHOT_LIST_TOPOLOGICAL)
        .map_err(message)?
        .iter()
        .map(|s| s.xml_desc(sys::VIR_DOMAIN_SNAPSHOT_XML_SECURE))
        .collect::<Result<_, _>>()
        .map_err(message)?;
    Ok(Domain {
        xml: xml::test_driver_domain(&xml, state).map_err(|e| e.to_string())?,
        autostart: dom.autostart().unwrap_or(false),
        defined,
        snapshots,
    })
}

/// The journal, open for appending.
pub struct Journal {
    file: File,
    /// Its length, which decides when to write a checkpoint.
    pub bytes: u64,
    /// The last record written (or held by the checkpoint).
    pub seq: u64,
    /// A write failed part-way: the next save writes a checkpoint instead.
    pub broken: bool,
}

impl Journal {
    pub fn open(path: &Path, seq: u64) -> std::io::Result<Journal> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let bytes = file.metadata()?.len();
        Ok(Journal {
            file,
            bytes,
            seq,
            broken: false,
        })
    }

    /// Appends `record` as one line, on disk when this returns.
    pub fn append(&mut self, record: &Record) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // Half first: a kill between the halves leaves the line a crash would cut.
        let (first, rest) = line.split_at(line.len() / 2);
        let written = self
            .file
            .write_all(first)
            .inspect(|()| crate::provider::crashpoint::point("journal record half written"))
            .and_then(|()| self.file.write_all(rest))
            .and_then(|()| self.file.sync_data());
        if written.is_err() {
            self.broken = true;
        }
        written?;
        self.bytes += line.len() as u64;
        self.seq = record.seq;
        Ok(())
    }

    /// Empties it, after a checkpoint that holds all it held.
    pub fn clear(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.bytes = 0;
        self.broken = false;
        Ok(())
    }
}

/// The records of the journal at `path` after `seq`, in order, up to the first that is not
/// whole (cut short by a crash) or not the next one.
pub fn replay(path: &Path, seq: u64) -> std::io::Result<Vec<Record>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut records = Vec::new();
    let mut next = seq + 1;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let Ok(record) = serde_json::from_slice::<Record>(&line?) else {
            break;
        };
        if record.seq < next {
            continue;
        }
        if record.seq != next {
            break;
        }
        next += 1;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(xml: &str) -> Option<Network> {
        Some(Network {
            xml: xml.into(),
            autostart: false,
        })
    }

    fn record(seq: u64, name: &str, xml: &str) -> Record {
        Record {
            seq,
            networks: [(name.to_string(), network(xml))].into(),
            ..Record::default()
        }
    }

    #[test]
    fn replay_stops_at_a_line_cut_short_and_skips_what_the_checkpoint_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal");
        let mut journal = Journal::open(&path, 0).unwrap();
        for (seq, xml) in [(1, "<a/>"), (2, "<b/>"), (3, "<c/>")] {
            journal.append(&record(seq, "n", xml)).unwrap();
        }
        let whole = std::fs::read(&path).unwrap();
        // The third line cut in the middle, as a kill during the write leaves it.
        let cut = whole.len() - 10;
        std::fs::write(&path, &whole[..cut]).unwrap();

        let records = replay(&path, 0).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
        let records = replay(&path, 1).unwrap();
        assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [2]);

        let mut objects = Objects::default();
        for r in replay(&path, 0).unwrap() {
            objects.apply(r);
        }
        assert_eq!(objects.networks["n"].xml, "<b/>");
    }

    #[test]
    fn a_whole_pool_record_drops_the_volumes_and_marks_it_does_not_list() {
        let mut objects = Objects::default();
        let volume = |xml: &str| Volume {
            xml: xml.into(),
            blob: None,
        };
        objects.volumes.insert("p/a".into(), volume("<a/>"));
        objects.volumes.insert("p/b".into(), volume("<b/>"));
        objects.volumes.insert("q/a".into(), volume("<qa/>"));
        let mut record = Record {
            seq: 1,
            ..Record::default()
        };
        record.whole_pools.insert("p".into());
        record.volumes.insert("p/b".into(), Some(volume("<b2/>")));
        objects.apply(record);
        assert_eq!(
            objects.volumes.keys().collect::<Vec<_>>(),
            ["p/b", "q/a"],
            "p/a is gone with its pool's record, q/a is another pool's"
        );
        assert_eq!(objects.volumes["p/b"].xml, "<b2/>");
    }
}
