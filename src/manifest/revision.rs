//! Plan text from a git revision (`origin/main:site.yml`), read with libgit2: the repository is
//! found from the working file's directory, as `git` finds it.

use std::path::{Path, PathBuf};

/// Where an old version of a plan comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// A revision and a path: from the repository's root, or from the current directory when
    /// it starts with `./` (as in `git show`).
    Revision {
        rev: String,
        path: String,
    },
}

impl Source {
    /// A file that exists is a file; otherwise `REV:PATH` is a revision.
    pub fn parse(spec: &str) -> Source {
        if Path::new(spec).exists() {
            return Source::File(spec.into());
        }
        match spec.split_once(':') {
            Some((rev, path)) if !rev.is_empty() && !path.is_empty() => Source::Revision {
                rev: rev.to_string(),
                path: path.to_string(),
            },
            _ => Source::File(spec.into()),
        }
    }
}

/// The text of `source`. `near` is a path inside the repository (the new plan file).
pub fn read(source: &Source, near: &Path) -> Result<String, String> {
    match source {
        Source::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display())),
        Source::Revision { rev, path } => read_revision(rev, path, near),
    }
}

/// Reads a file by its path in the working tree, as it is at some revision.
pub type FileReader = Box<dyn Fn(&Path) -> std::io::Result<String>>;

/// A reader of files as they are at `source`'s revision, for the files a plan names
/// (`scripts`, `files: origin`); `None` for a plain file, whose neighbours are read from disk.
pub fn file_reader(source: &Source, near: &Path) -> Result<Option<FileReader>, String> {
    let Source::Revision { rev, .. } = source else {
        return Ok(None);
    };
    let start = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let repo = git2::Repository::discover(start).map_err(|e| e.message().to_string())?;
    let root = repo
        .workdir()
        .and_then(|w| w.canonicalize().ok())
        .ok_or_else(|| "the repository has no working directory".to_string())?;
    let rev = rev.clone();
    Ok(Some(Box::new(move |path: &Path| {
        let not_found = |what: String| std::io::Error::new(std::io::ErrorKind::NotFound, what);
        let full = std::path::absolute(path)?;
        let full = full
            .parent()
            .and_then(|p| p.canonicalize().ok())
            .map(|p| p.join(full.file_name().unwrap_or_default()))
            .unwrap_or(full);
        let inside = full
            .strip_prefix(&root)
            .map_err(|_| not_found(format!("{} is outside the repository", path.display())))?;
        let tree = repo
            .revparse_single(&rev)
            .and_then(|o| o.peel_to_commit())
            .and_then(|c| c.tree())
            .map_err(|e| not_found(e.message().to_string()))?;
        let entry = tree
            .get_path(inside)
            .map_err(|_| not_found(format!("it does not exist at `{rev}`")))?;
        let blob = repo
            .find_blob(entry.id())
            .map_err(|_| not_found(format!("it is not a file at `{rev}`")))?;
        String::from_utf8(blob.content().to_vec())
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not text"))
    })))
}

fn read_revision(rev: &str, path: &str, near: &Path) -> Result<String, String> {
    let start = near
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let repo = git2::Repository::discover(start).map_err(|e| {
        format!(
            "`{rev}:{path}`: no git repository around {}: {}",
            start.display(),
            e.message()
        )
    })?;
    let in_repo = match path.strip_prefix("./") {
        Some(relative) => {
            let root = repo
                .workdir()
                .ok_or_else(|| "the repository has no working directory".to_string())?;
            let here = std::env::current_dir().map_err(|e| e.to_string())?;
            let root = root.canonicalize().map_err(|e| e.to_string())?;
            let here = here.canonicalize().map_err(|e| e.to_string())?;
            let under = here.strip_prefix(&root).map_err(|_| {
                format!("`{path}`: the current directory is outside the repository")
            })?;
            under.join(relative).to_string_lossy().into_owned()
        }
        None => path.to_string(),
    };
    let commit = repo
        .revparse_single(rev)
        .and_then(|object| object.peel_to_commit())
        .map_err(|e| format!("`{rev}` is no revision of this repository: {}", e.message()))?;
    let tree = commit.tree().map_err(|e| e.message().to_string())?;
    let entry = tree
        .get_path(Path::new(&in_repo))
        .map_err(|_| format!("`{in_repo}` does not exist at `{rev}`"))?;
    let blob = repo
        .find_blob(entry.id())
        .map_err(|_| format!("`{in_repo}` at `{rev}` is not a file"))?;
    String::from_utf8(blob.content().to_vec())
        .map_err(|_| format!("`{in_repo}` at `{rev}` is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_revisions() {
        assert_eq!(
            Source::parse("origin/main:site.yml"),
            Source::Revision {
                rev: "origin/main".into(),
                path: "site.yml".into()
            }
        );
        assert_eq!(
            Source::parse("Cargo.toml"),
            Source::File("Cargo.toml".into())
        );
        assert_eq!(
            Source::parse("HEAD~1:./x.yml"),
            Source::Revision {
                rev: "HEAD~1".into(),
                path: "./x.yml".into()
            }
        );
    }
}
