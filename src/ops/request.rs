//! What an operation is asked to do, decided once from the command line.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::manifest::Overrides;

/// The plan an operation works on and where it goes.
#[derive(Debug, Clone)]
pub struct Request {
    /// The plan file, as given.
    pub file: PathBuf,
    /// The plan's name, which marks everything it creates: `--name`, else the file's stem.
    pub name: String,
    /// The plan file's directory, which relative paths in the plan start from.
    pub base: PathBuf,
    /// `--provider`: where entries without a `client:` go (the default provider if `None`).
    pub provider: Option<String>,
    /// `--target`: entry names or addresses.
    pub targets: Vec<String>,
    /// `--replace`: entry names or resource addresses.
    pub replace: Vec<String>,
    /// The parameter files and `-P` values the plan was read with, for a saved plan to record.
    pub overrides: Overrides,
    /// Where the plan is applied from (`plan_source`), recorded in every mark it writes.
    pub source: String,
    /// `--plan-moved`: resources this plan's name marks that were applied from another file
    /// are this plan's all the same (the file was moved or renamed); their marks then record
    /// this file.
    pub plan_moved: bool,
    /// `--adopt`: entries (by name or address) and resources (by address) that exist without
    /// any plan's mark, which the plan takes over as they are.
    pub adopt: Vec<String>,
    /// `plan drain HOST`: the host whose VMs move to the other hosts of its group, and which
    /// step of the drain the run is.
    pub drain: Option<Drain>,
}

/// A host being drained, and the step of it a run makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    pub host: String,
    pub step: DrainStep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStep {
    /// Everything the moving VMs need on their new hosts but the VMs themselves (which
    /// libvirt moves next, disks and all), and nothing deleted on the drained host.
    MakeRoom,
    /// The plan as it is once they moved: what it has left on the drained host goes.
    Finish,
}

/// Where a plan is applied from, as its marks record it: the plan file's absolute path, with
/// symbolic links resolved when it exists. Two labs whose plans share a name (`--name`, or
/// two `site.yml`) are told apart by it.
pub fn plan_source(file: &Path) -> String {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    // A file that is gone (a destroy after it was deleted) is where it was: its directory's
    // real path, with its name.
    let gone = || {
        let parent = std::fs::canonicalize(absolute.parent()?).ok()?;
        Some(parent.join(absolute.file_name()?))
    };
    std::fs::canonicalize(&absolute)
        .ok()
        .or_else(gone)
        .unwrap_or(absolute)
        .display()
        .to_string()
}

impl Request {
    /// A request for `file`, named `name` or after the file.
    pub fn new(file: &Path, name: Option<String>) -> Request {
        let name = name.unwrap_or_else(|| crate::manifest::default_plan_name(file));
        Request {
            file: file.to_path_buf(),
            name,
            base: file.parent().unwrap_or(Path::new(".")).to_path_buf(),
            provider: None,
            targets: Vec::new(),
            replace: Vec::new(),
            overrides: Overrides::default(),
            source: plan_source(file),
            plan_moved: false,
            adopt: Vec::new(),
            drain: None,
        }
    }
}

/// How `apply` and `destroy` make their changes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// At most this many changes at once (each provider may take fewer).
    pub parallelism: usize,
    /// `--wait`: how long to wait for every running VM to have an address.
    pub wait: Option<Duration>,
    /// `--restart`: VMs whose changes wait for a restart are restarted after them. Without
    /// it nothing running is ever restarted.
    pub restart: bool,
    /// `--shutdown-timeout`: how long a VM restarted by `--restart` may take to shut down
    /// before it is forced off (the provider's own default when `None`).
    pub shutdown_timeout: Option<Duration>,
    /// Ctrl-C and SIGTERM: listened for while the run changes things.
    pub interruption: super::Interruption,
    /// This run as the plan's lock records its holder, for a run the lock refuses to show:
    /// its command line, as the command line writes it (secret values left out).
    pub holder: String,
}
