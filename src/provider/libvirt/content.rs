//! Reading and writing the bytes of a volume.
//!
//! A real libvirt moves bytes through streams (virStorageVolUpload/Download), which work on remote
//! hosts too. libvirt's test driver has no volume content at all, so the sandbox keeps each
//! volume's bytes in a file of its own state directory instead.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use virt::connect::Connect;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

const CHUNK: usize = 256 * 1024;

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

    pub fn forget(&self, pool: &str, name: &str) {
        if let ContentStore::Files(blobs) = self {
            blobs.forget(pool, name);
        }
    }
}

/// Volume bytes in files of their own, and an index from volume to file. A file is written once
/// under a new name and never changed, so writing one early does no harm: a volume's content
/// changes only when its index does, which the sandbox saves in one atomic write together with
/// everything else it holds. (New names rather than digests: hashing every seed and ledger
/// write cost a third of a large apply.)
pub struct Blobs {
    dir: PathBuf,
    index: Mutex<Index>,
}

/// `pool/volume` → the file holding its content.
pub type Index = BTreeMap<String, String>;

impl Blobs {
    pub fn new(dir: PathBuf, index: Index) -> Self {
        Blobs {
            dir,
            index: Mutex::new(index),
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
        std::fs::create_dir_all(&self.dir).map_err(|e| e.to_string())?;
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        index.insert(Self::key(pool, name), file);
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
        let Some(digest) = self.lock().get(&Self::key(pool, name)).cloned() else {
            return Ok(Vec::new());
        };
        std::fs::read(self.dir.join(&digest)).map_err(|e| e.to_string())
    }

    fn forget(&self, pool: &str, name: &str) {
        self.lock().remove(&Self::key(pool, name));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The index as it is now, to be saved.
    pub fn index(&self) -> Index {
        self.lock().clone()
    }

    /// Removes the files no volume refers to (after the index that dropped them is saved).
    pub fn collect_garbage(&self) {
        let index = self.lock();
        let used: BTreeSet<&String> = index.values().collect();
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !used.contains(&name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
