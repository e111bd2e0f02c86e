//! Which local files a plan may read, and reading them within bounds.
//!
//! A plan may come from a stranger's pull request and run in CI, where what it reads can reach a
//! pull-request comment (a script's text is part of a seed's review). So the files a plan names
//! (scripts, `origin` files, included plans, its base plan, local images) are read only inside
//! the plan's directory tree, symbolic links resolved, or inside what the user allowed besides
//! (`--allow-read PATH`, `SITEPLAN_ALLOW_READ`). Whoever names a file, only a regular file is
//! read (no device, FIFO, socket or directory), nothing under /proc, /sys or /dev, and a text
//! file is at most `TEXT_LIMIT` bytes. Files given on the command line (the plan itself,
//! `--paramfile`) are the user's own choice: they may be anywhere, within the other bounds.

use std::io::Read;
use std::path::{Path, PathBuf};

/// The most a plan, a parameter file, a script or a file for a guest may hold.
pub const TEXT_LIMIT: u64 = 4 * 1024 * 1024;

/// Paths (separated by `:`) a plan may read besides its own tree, as `--allow-read` gives them.
pub const ALLOW_ENV: &str = "SITEPLAN_ALLOW_READ";

/// What a plan may never read, even when allowed: the kernel's and the devices' files.
const SYSTEM: [&str; 3] = ["/proc", "/sys", "/dev"];

/// Where the files a plan names may be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileAccess {
    /// The plan's directory, its real path; `None` reads nothing a plan names.
    root: Option<PathBuf>,
    /// The plan's directory as the user named it, for messages.
    root_shown: String,
    /// What the user allowed besides, real paths (a directory and what is under it, or a file).
    allowed: Vec<PathBuf>,
}

/// Why a file cannot be read, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub message: String,
    pub help: Option<String>,
    /// It is simply not there (which `plan validate` leaves to the run that needs it).
    pub missing: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.help {
            Some(help) => write!(f, "{} ({help})", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl Refused {
    fn new(message: String, help: Option<String>) -> Refused {
        Refused {
            message,
            help,
            missing: false,
        }
    }
}

impl FileAccess {
    /// The access of the plan in `plan_file`: its directory's tree, and `allowed` (from the
    /// command line) with what `SITEPLAN_ALLOW_READ` names.
    pub fn for_plan(plan_file: &Path, allowed: &[PathBuf]) -> FileAccess {
        let real = |p: &Path| {
            std::fs::canonicalize(p)
                .or_else(|_| std::path::absolute(p))
                .unwrap_or_else(|_| p.to_path_buf())
        };
        let directory = std::path::absolute(plan_file)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let from_env = std::env::var_os(ALLOW_ENV)
            .map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
            .unwrap_or_default();
        let named = plan_file
            .parent()
            .map_or_else(String::new, |p| p.display().to_string());
        // Plans included by URL, and what they name, are fetched there (`remote`).
        let fetched = crate::files::cache_dir().join("plans");
        FileAccess {
            root: Some(real(&directory)),
            root_shown: if named.is_empty() { ".".into() } else { named },
            allowed: allowed
                .iter()
                .chain(&from_env)
                .filter(|p| !p.as_os_str().is_empty())
                .chain(std::iter::once(&fetched))
                .map(|p| real(p))
                .collect(),
        }
    }

    /// The plan's directory, as a real path.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }

    /// Where `path` really is, if a plan may read it there.
    pub fn check(&self, path: &Path) -> Result<PathBuf, Refused> {
        let real = regular_file(path)?;
        let inside = self
            .root
            .iter()
            .chain(&self.allowed)
            .any(|dir| real.starts_with(dir));
        if inside {
            return Ok(real);
        }
        let root = if self.root.is_some() {
            self.root_shown.as_str()
        } else {
            "(none)"
        };
        let suggested = real.parent().unwrap_or(&real).display().to_string();
        Err(Refused::new(
            format!(
                "{} is outside the plan's directory ({root}), and a plan reads nothing outside \
                 it unless you allow it",
                shown(path, &real)
            ),
            Some(format!(
                "if you trust this plan to read it, run with --allow-read {suggested} \
                 (or set {ALLOW_ENV}={suggested}); or copy the file into the plan's directory"
            )),
        ))
    }

    /// As `check`, for a text file: also within `TEXT_LIMIT`.
    pub fn check_text(&self, path: &Path) -> Result<PathBuf, Refused> {
        let real = self.check(path)?;
        within_limit(path, &real)?;
        Ok(real)
    }

    /// The text of `path`, if a plan may read it (`check_text`).
    pub fn read_text(&self, path: &Path) -> Result<String, Refused> {
        let real = self.check_text(path)?;
        read_bounded(path, &real)
    }
}

/// The text of a file the user named on the command line (the plan, a parameter file): from
/// anywhere, but only a regular file, outside /proc, /sys and /dev, within `TEXT_LIMIT`.
pub fn read_given(path: &Path) -> Result<String, Refused> {
    let real = regular_file(path)?;
    read_bounded(path, &real)
}

/// `path`, and where it really is when that differs (a symbolic link, `..`).
fn shown(path: &Path, real: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if absolute == real {
        path.display().to_string()
    } else {
        format!("{} (which is {})", path.display(), real.display())
    }
}

/// Where `path` really is, when it is a regular file outside the system's own trees (what an
/// image fetched from a local file must be too).
pub fn regular_file(path: &Path) -> Result<PathBuf, Refused> {
    let real = std::fs::canonicalize(path).map_err(|e| Refused {
        message: format!("cannot read {}: {e}", path.display()),
        help: None,
        missing: e.kind() == std::io::ErrorKind::NotFound,
    })?;
    if let Some(system) = SYSTEM.iter().find(|s| real.starts_with(s)) {
        return Err(Refused::new(
            format!(
                "{} is under {system}, which siteplan never reads for a plan",
                shown(path, &real)
            ),
            None,
        ));
    }
    let kind = std::fs::metadata(&real)
        .map(|m| m.file_type())
        .map_err(|e| Refused::new(format!("cannot read {}: {e}", path.display()), None))?;
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(Refused::new(
            format!(
                "{} is {what}: siteplan reads only regular files",
                shown(path, &real)
            ),
            None,
        ));
    }
    Ok(real)
}

/// Refuses a text file larger than `TEXT_LIMIT`, by its size.
fn within_limit(path: &Path, real: &Path) -> Result<(), Refused> {
    match std::fs::metadata(real) {
        Ok(meta) if meta.len() > TEXT_LIMIT => Err(too_large(path)),
        _ => Ok(()),
    }
}

fn too_large(path: &Path) -> Refused {
    Refused::new(
        format!(
            "{} is larger than {} MiB, the most siteplan reads as a plan's text file",
            path.display(),
            TEXT_LIMIT / (1024 * 1024)
        ),
        None,
    )
}

/// Reads `real` (named `path`) as UTF-8 text of at most `TEXT_LIMIT` bytes (read bounded too:
/// the file may grow meanwhile).
fn read_bounded(path: &Path, real: &Path) -> Result<String, Refused> {
    let failed =
        |e: std::io::Error| Refused::new(format!("cannot read {}: {e}", path.display()), None);
    let file = std::fs::File::open(real).map_err(failed)?;
    let mut bytes = Vec::new();
    file.take(TEXT_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > TEXT_LIMIT {
        return Err(too_large(path));
    }
    String::from_utf8(bytes)
        .map_err(|_| Refused::new(format!("{} is not UTF-8 text", path.display()), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_its_own_tree_and_what_was_allowed_and_nothing_else() {
        let tmp = tempfile::tempdir().unwrap();
        let plan = tmp.path().join("lab/site.yml");
        std::fs::create_dir_all(plan.parent().unwrap()).unwrap();
        std::fs::write(tmp.path().join("lab/ok.sh"), "ok").unwrap();
        std::fs::write(tmp.path().join("outside.sh"), "no").unwrap();
        std::os::unix::fs::symlink(
            tmp.path().join("outside.sh"),
            tmp.path().join("lab/link.sh"),
        )
        .unwrap();
        let access = FileAccess::for_plan(&plan, &[]);
        assert_eq!(
            access.read_text(&tmp.path().join("lab/ok.sh")).unwrap(),
            "ok"
        );
        for refused in ["lab/../outside.sh", "lab/link.sh", "outside.sh"] {
            let e = access.read_text(&tmp.path().join(refused)).unwrap_err();
            assert!(e.message.contains("outside the plan's directory"), "{e}");
            assert!(e.to_string().contains("--allow-read"), "{e}");
        }
        let allowed = FileAccess::for_plan(&plan, &[tmp.path().join("outside.sh")]);
        assert_eq!(
            allowed.read_text(&tmp.path().join("lab/link.sh")).unwrap(),
            "no"
        );
        let missing = access
            .read_text(&tmp.path().join("lab/gone.sh"))
            .unwrap_err();
        assert!(missing.missing);
    }

    #[test]
    fn system_files_devices_and_fifos_are_never_read() {
        let everything = FileAccess {
            root: Some(PathBuf::from("/")),
            ..FileAccess::default()
        };
        for path in [
            "/proc/self/environ",
            "/dev/zero",
            "/dev/null",
            "/sys/kernel/uevent_seqnum",
        ] {
            let e = everything.read_text(Path::new(path)).unwrap_err();
            assert!(e.message.contains("never reads"), "{path}: {e}");
        }
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = everything.read_text(&fifo).unwrap_err();
        assert!(e.message.contains("is a FIFO"), "{e}");
        let e = read_given(tmp.path()).unwrap_err();
        assert!(e.message.contains("is a directory"), "{e}");
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![b'a'; TEXT_LIMIT as usize + 1]).unwrap();
        assert!(read_given(&big)
            .unwrap_err()
            .message
            .contains("larger than"));
    }
}
