//! What an operation ended with, as values: the command line turns them into words and an
//! exit status.

use std::net::IpAddr;

use crate::apply::Report;
use crate::manifest::LoadFailure;
use crate::plan::Plan;
use crate::provider::AddressSource;

#[derive(Debug)]
pub enum Outcome {
    /// The providers already match the plan. `apply` also reports the plan's VMs.
    UpToDate { vms: Option<Vms> },
    /// `plan diff`: these changes would be made; nothing was.
    Planned(Plan),
    /// `apply` or `destroy` made its changes, or tried to: the report says how each went.
    Applied { report: Report, vms: Option<Vms> },
}

#[derive(Debug)]
pub enum Refusal {
    /// The request cannot be carried out as given (a provider, a name, a file).
    Invalid(String),
    /// Planning found problems: names taken, external references missing, guards.
    Problems(Vec<Problem>),
    /// The person said no.
    Declined,
    /// Nobody could be asked before doing this, and `--yes` was not given.
    CannotAsk(Asked),
    /// A saved plan no longer holds: what changed since it was saved, and how to review it
    /// again as it was saved (the view makes `plan diff … --out PLANFILE` of it).
    Stale { what: String, review: Box<Review> },
    /// A plan read along the way does not load.
    Load(LoadFailure),
    /// A signal came before any change was made.
    Interrupted(super::Signal),
    /// Another run holds the plan's lock.
    Locked(Box<super::Locked>),
    /// A refusal, with what the person can do about it (the command line words it).
    Hinted(Box<Refusal>, Vec<Hint>),
}

/// What a person can do about a refusal. The operations say which; the command line says it
/// in its own words (a command to run, a flag to pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Applying the plan makes what is missing.
    Apply,
    /// Leave a VM out (`--target` the others).
    LeaveOut,
    /// Delete the plan's snapshot of this name first, or choose another name.
    DeleteSnapshot { name: String },
    /// Say where the plan goes: a provider of `elsewhere` to work on the lab where it is, or
    /// `here` to make it here too.
    WhereItGoes {
        elsewhere: Vec<String>,
        here: String,
    },
    /// Start the local libvirt daemon, or choose another provider.
    StartLibvirt,
    /// Name the plan's file (or where it was, when it is gone).
    NameThePlanFile,
}

/// One thing that stops an operation: what is wrong, and what the person can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub fact: String,
    pub hints: Vec<Hint>,
}

impl Problem {
    pub fn hinted(fact: String, hints: Vec<Hint>) -> Problem {
        Problem { fact, hints }
    }
}

impl From<String> for Problem {
    fn from(fact: String) -> Self {
        Problem {
            fact,
            hints: Vec::new(),
        }
    }
}

impl Refusal {
    /// Planning found these problems, none with a hint.
    pub fn problems(facts: Vec<String>) -> Refusal {
        Refusal::Problems(facts.into_iter().map(Problem::from).collect())
    }

    /// This refusal with `hints`.
    pub fn hint(self, hints: Vec<Hint>) -> Refusal {
        Refusal::Hinted(Box::new(self), hints)
    }
}

/// A saved plan, to be reviewed again: the request it was made with (its secret `-P` values by
/// name only) and the file it is saved in.
#[derive(Debug, Clone)]
pub struct Review {
    pub request: super::Request,
    pub planfile: std::path::PathBuf,
}

/// What a person is asked to go ahead with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Apply,
    Destroy,
    /// `plan snapshot revert`.
    Revert,
    /// `plan unlock`.
    RemoveLock,
}

impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Refusal::Invalid(message)
    }
}

/// The plan's VMs as they are after a run.
#[derive(Debug, Default)]
pub struct Vms {
    pub rows: Vec<VmRow>,
    /// `--wait` ran out before these running VMs had an address.
    pub unreachable: Vec<String>,
    /// `--wait` ran out before these guests were ready: why each is not.
    pub unready: Vec<(String, String)>,
    /// Guests whose cloud-init failed: what it said, and its output's last lines.
    pub failed: Vec<(String, Vec<String>, Vec<String>)>,
    /// How long `--wait` would wait, when it was asked for.
    pub waited: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmState {
    Running,
    /// Defined and started, but paused: it runs nothing and answers nothing until resumed.
    Paused,
    /// Declared to run and not running yet (a KubeVirt VM whose instance is not up).
    Starting,
    Stopped,
    Missing,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Running => "running",
            VmState::Paused => "paused",
            VmState::Starting => "starting",
            VmState::Stopped => "stopped",
            VmState::Missing => "missing",
        }
    }
}

/// One VM: where it runs, whether it runs, and its addresses.
#[derive(Debug, Clone)]
pub struct VmRow {
    pub name: String,
    /// The provider's name (or type).
    pub provider: String,
    pub state: VmState,
    /// Each address once, with every source that gives it: the plan's static addresses, and
    /// what the provider reports (leases, the guest agent).
    pub addresses: Vec<ShownAddress>,
    /// Running, and its address is not known yet: a static one the guest agent could confirm
    /// but has not, or (with no static address) none at all; or its guest is not ready yet.
    /// `--wait` waits for these.
    pub waiting: bool,
    /// Whether its guest has run what cloud-init was given, where the provider can tell (a
    /// running VM with a seed).
    pub ready: Option<crate::provider::Readiness>,
}

/// An address of a running VM, with every source that gives it (`static`, `lease`,
/// `agent`, `vmi`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ShownAddress {
    pub ip: IpAddr,
    pub sources: Vec<AddressSource>,
}

impl std::fmt::Display for ShownAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<&str> = self.sources.iter().map(|s| s.as_str()).collect();
        write!(f, "{} ({})", self.ip, sources.join(", "))
    }
}
