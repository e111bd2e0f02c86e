//! Reading and writing the bytes of a volume.
//!
//! A real libvirt moves bytes through streams (virStorageVolUpload/Download), which work on remote
//! hosts too. libvirt's test driver has no volume content at all, so the sandbox keeps each
//! volume's bytes in a file of its own state directory instead.

use std::path::PathBuf;

use virt::connect::Connect;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;

const CHUNK: usize = 256 * 1024;

pub enum ContentStore {
    Streams,
    Files(PathBuf),
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
            ContentStore::Files(dir) => {
                let name = vol.name().map_err(|e| e.to_string())?;
                let path = dir.join(pool).join(&name);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
                }
                // Written aside and renamed, so a reader never sees half a file.
                let mut tmp = path.as_os_str().to_owned();
                tmp.push(".tmp");
                let tmp = PathBuf::from(tmp);
                std::fs::write(&tmp, bytes)
                    .and_then(|_| std::fs::rename(&tmp, &path))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
            ContentStore::Files(dir) => {
                let name = vol.name().map_err(|e| e.to_string())?;
                match std::fs::read(dir.join(pool).join(name)) {
                    Ok(bytes) => Ok(bytes),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }

    pub fn forget(&self, pool: &str, name: &str) {
        if let ContentStore::Files(dir) = self {
            let _ = std::fs::remove_file(dir.join(pool).join(name));
        }
    }
}
