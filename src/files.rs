//! Files siteplan keeps for itself: where they live (XDG directories) and how they are written
//! (whole or not at all).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that a reader (or a run killed meanwhile) sees the old content
/// or the new, never a part: a temporary file beside it, synced, renamed over it, and the
/// directory synced so the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

/// `$XDG_STATE_HOME/siteplan` (by default `~/.local/state/siteplan`): what siteplan remembers
/// between runs (the provider registry, the sandbox).
pub fn state_dir() -> PathBuf {
    dirs::state_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".local/state")))
        .unwrap_or_else(std::env::temp_dir)
        .join("siteplan")
}

/// `$XDG_CACHE_HOME/siteplan` (by default `~/.cache/siteplan`): what siteplan fetched and can
/// fetch again (plans included by URL).
pub fn cache_dir() -> PathBuf {
    dirs::cache_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("siteplan")
}

/// `$XDG_CONFIG_HOME/siteplan` (by default `~/.config/siteplan`): the providers file.
pub fn config_dir() -> Option<PathBuf> {
    dirs::config_dir().map(|d| d.join("siteplan"))
}

/// `path` with `~` and `$VARS` (`${VARS}`) expanded, as a shell would.
pub fn expand(path: &std::path::Path) -> Result<PathBuf, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    shellexpand::full(text)
        .map(|expanded| PathBuf::from(expanded.as_ref()))
        .map_err(|e| format!("{e} (in {text})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_nothing_beside_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("a/b.json");
        write_atomic(&path, b"first").expect("write");
        write_atomic(&path, b"second").expect("write again");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("a"))
            .expect("dir")
            .collect();
        assert_eq!(left.len(), 1, "no temporary file is left");
    }
}
