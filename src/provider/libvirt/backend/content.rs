//! Reading and writing the bytes of a volume.
//!
//! A real libvirt moves bytes through streams (virStorageVolUpload/Download), which work on remote
//! hosts too. libvirt's test driver has no volume content at all, so the sandbox keeps each
//! volume's bytes in a file of its own state directory instead.

use super::LibvirtProvider;
use crate::provider::ProviderError;
use crate::provider::ResourceId;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use virt::connect::Connect;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

use super::ledger::{Ledger, LEDGER_VOLUME};
use crate::provider::capability;
use crate::provider::OwnerMark;

const CHUNK: usize = 256 * 1024;
/// Text is read in smaller pieces: what follows it is padding.
const TEXT_CHUNK: usize = 64 * 1024;

pub enum ContentStore {
    Streams,
    Files(Blobs),
}

impl ContentStore {
    pub fn write(
        &self,
        conn: &Connect,
        pool: &str,
        vol: &StorageVol,
        bytes: &[u8],
    ) -> Result<(), String> {
        match self {
            ContentStore::Streams => {
                let stream = Stream::new(conn, 0).map_err(|e| e.to_string())?;
                vol.upload(&stream, 0, bytes.len() as u64, 0)
                    .map_err(|e| e.to_string())?;
                let mut sent = 0;
                while sent < bytes.len() {
                    let end = (sent + CHUNK).min(bytes.len());
                    let n = stream.send(&bytes[sent..end]).map_err(|e| e.to_string())?;
                    if n <= 0 {
                        let _ = stream.abort();
                        return Err("the upload stream closed early".into());
                    }
                    sent += n as usize;
                }
                stream.finish().map_err(|e| e.to_string())
            }
            ContentStore::Files(blobs) => {
                let name = vol.name().map_err(|e| e.to_string())?;
                blobs.put(pool, &name, bytes)
            }
        }
    }

    pub fn read(&self, conn: &Connect, pool: &str, vol: &StorageVol) -> Result<Vec<u8>, String> {
        match self {
            ContentStore::Streams => {
                let stream = Stream::new(conn, 0).map_err(|e| e.to_string())?;
                vol.download(&stream, 0, 0, 0).map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let n = stream.recv(&mut buf).map_err(|e| e.to_string())?;
                    if n <= 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n as usize]);
                }
                stream.finish().map_err(|e| e.to_string())?;
                Ok(out)
            }
            ContentStore::Files(blobs) => {
                let name = vol.name().map_err(|e| e.to_string())?;
                blobs.get(pool, &name)
            }
        }
    }

    /// The bytes of a volume that holds text padded with zero bytes (a ledger), up to the first
    /// zero: a download stops there rather than carry the padding.
    pub fn read_text(
        &self,
        conn: &Connect,
        pool: &str,
        vol: &StorageVol,
    ) -> Result<Vec<u8>, String> {
        let ContentStore::Streams = self else {
            let mut bytes = self.read(conn, pool, vol)?;
            bytes.truncate(bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len()));
            return Ok(bytes);
        };
        let stream = Stream::new(conn, 0).map_err(|e| e.to_string())?;
        vol.download(&stream, 0, 0, 0).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; TEXT_CHUNK];
        loop {
            let n = stream.recv(&mut buf).map_err(|e| e.to_string())?;
            if n <= 0 {
                stream.finish().map_err(|e| e.to_string())?;
                return Ok(out);
            }
            let got = &buf[..n as usize];
            if let Some(end) = got.iter().position(|&b| b == 0) {
                out.extend_from_slice(&got[..end]);
                let _ = stream.abort();
                return Ok(out);
            }
            out.extend_from_slice(got);
        }
    }

    pub fn forget(&self, pool: &str, name: &str) {
        if let ContentStore::Files(blobs) = self {
            blobs.forget(pool, name);
        }
    }

    /// A pool's ledger, when the store keeps ledgers as records rather than bytes.
    pub fn ledger(&self, pool: &str) -> Option<Ledger> {
        match self {
            ContentStore::Streams => None,
            ContentStore::Files(blobs) => Some(blobs.ledger(pool)),
        }
    }
}

/// Writes `bytes` to a new file readable by its owner only (a seed holds passwords), leaving
/// holes where they are zero: a seed is a megabyte of mostly nothing.
fn write_sparse(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    use std::os::unix::fs::OpenOptionsExt;
    const BLOCK: usize = 4096;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    for (n, block) in bytes.chunks(BLOCK).enumerate() {
        if block.iter().any(|&b| b != 0) {
            file.seek(SeekFrom::Start((n * BLOCK) as u64))?;
            file.write_all(block)?;
        }
    }
    file.set_len(bytes.len() as u64)
}

/// Volume bytes in files of their own, and an index from volume to file. A file is written once
/// under a new name and never changed, so writing one early does no harm: a volume's content
/// changes only when its index does, which the sandbox saves in one atomic write together with
/// everything else it holds. (New names rather than digests: hashing every seed and ledger
/// write cost a third of a large apply.)
///
/// Ledgers are kept as records, not bytes: rewriting a pool's whole ledger for every volume made
/// an apply quadratic in the size of the lab, and the sandbox saves each mark on its own.
pub struct Blobs {
    dir: PathBuf,
    index: Mutex<Index>,
    ledgers: Mutex<Ledgers>,
    /// Files the index no longer names, by the key that named them: removed once the index
    /// without them is saved.
    dropped: Mutex<Vec<(String, String)>>,
}

/// `pool/volume` → the file holding its content.
pub type Index = BTreeMap<String, String>;

/// Each pool's ledger, by pool.
pub type Ledgers = BTreeMap<String, Ledger>;

impl Blobs {
    /// The blobs in `dir`, which only its owner may enter: seeds hold passwords, and files that
    /// earlier versions wrote are readable by anyone.
    pub fn new(dir: PathBuf, index: Index, ledgers: Ledgers) -> Self {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir);
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        Blobs {
            dir,
            index: Mutex::new(index),
            ledgers: Mutex::new(ledgers),
            dropped: Mutex::new(Vec::new()),
        }
    }

    fn key(pool: &str, name: &str) -> String {
        format!("{pool}/{name}")
    }

    fn put(&self, pool: &str, name: &str, bytes: &[u8]) -> Result<(), String> {
        // Held while the file is written: a garbage collection must not see the file before
        // the index names it.
        let mut index = self.lock();
        let file = Self::new_name();
        let path = self.dir.join(&file);
        write_sparse(&path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let key = Self::key(pool, name);
        if let Some(old) = index.insert(key.clone(), file) {
            self.drop_later(key, old);
        }
        Ok(())
    }

    /// A name no file of this or an earlier process has: the time, and a counter within it.
    fn new_name() -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!(
            "{nanos:x}-{:x}-{:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn get(&self, pool: &str, name: &str) -> Result<Vec<u8>, String> {
        if name == LEDGER_VOLUME {
            return Ok(self.ledger(pool).to_bytes());
        }
        let Some(digest) = self.lock().get(&Self::key(pool, name)).cloned() else {
            return Ok(Vec::new());
        };
        std::fs::read(self.dir.join(&digest)).map_err(|e| e.to_string())
    }

    fn forget(&self, pool: &str, name: &str) {
        if name == LEDGER_VOLUME {
            self.ledgers().remove(pool);
        }
        let key = Self::key(pool, name);
        if let Some(old) = self.lock().remove(&key) {
            self.drop_later(key, old);
        }
    }

    fn drop_later(&self, key: String, file: String) {
        self.dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key, file));
    }

    pub fn ledgers(&self) -> std::sync::MutexGuard<'_, Ledgers> {
        self.ledgers.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn ledger(&self, pool: &str) -> Ledger {
        self.ledgers().get(pool).cloned().unwrap_or_default()
    }

    /// The mark the ledger of `pool` holds for the pool.
    pub fn pool_mark(&self, pool: &str) -> Option<OwnerMark> {
        self.ledgers().get(pool)?.pool.clone()
    }

    /// The mark the ledger of `pool` holds for `volume`.
    pub fn volume_mark(&self, pool: &str, volume: &str) -> Option<OwnerMark> {
        self.ledgers().get(pool)?.volumes.get(volume).cloned()
    }

    /// The file holding the content of `pool/volume`, if any.
    pub fn file(&self, key: &str) -> Option<String> {
        self.lock().get(key).cloned()
    }

    /// Removes the files that keys in `saved` no longer name: the index without them is on
    /// disk. Those of other keys wait for `collect_garbage`.
    pub fn remove_dropped(&self, saved: impl Fn(&str) -> bool) {
        let mut dropped = self.dropped.lock().unwrap_or_else(|p| p.into_inner());
        dropped.retain(|(key, file)| {
            if !saved(key) {
                return true;
            }
            let _ = std::fs::remove_file(self.dir.join(file));
            false
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the files no volume refers to (after the index that dropped them is saved).
    pub fn collect_garbage(&self) {
        let index = self.lock();
        self.dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let used: BTreeSet<&String> = index.values().collect();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !used.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

#[async_trait]
impl capability::VolumeContent for LibvirtProvider {
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
