//! What the lab snapshot commands report: what was taken, reverted, deleted or found.

use super::*;

/// What `plan snapshot create` did.
#[derive(Debug, Default)]
pub struct Created {
    pub name: String,
    /// Every VM the snapshot covers.
    pub vms: Vec<String>,
    /// The VMs that ran, paused for the snapshot.
    pub paused: Vec<String>,
    /// The VMs that ran and whose provider cannot pause them (EC2): snapshotted running, each
    /// consistent in itself, the lab not to the instant.
    pub not_paused: Vec<String>,
    /// From the first pause to the last resume.
    pub pause: Option<Duration>,
    /// The whole command: opening the providers, checking, and the snapshots.
    pub took: Duration,
    /// Disks several VMs share (`pool/volume`), and those VMs: each one's snapshot holds it.
    pub shared: BTreeMap<String, Vec<String>>,
    /// The VMs whose pause or snapshot failed, and why: nothing was kept.
    pub failed: Vec<(String, String)>,
    /// After a failure, VMs whose snapshot could not be deleted again.
    pub not_removed: Vec<(String, String)>,
    /// VMs that could not be resumed: they are still paused.
    pub not_resumed: Vec<(String, String)>,
    /// Ctrl-C or SIGTERM came while it ran: it finished (a lab is never left paused).
    pub interrupted: bool,
}

impl Created {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.not_removed.is_empty() && self.not_resumed.is_empty()
    }
}

/// What `plan snapshot revert` did.
#[derive(Debug, Default)]
pub struct Reverted {
    pub name: String,
    pub created: String,
    /// The VMs now at the snapshot.
    pub reverted: Vec<String>,
    /// The VMs whose revert failed, and why: they are as they were before.
    pub failed: Vec<(String, String)>,
    /// VMs that could not be resumed: they are still paused.
    pub not_resumed: Vec<(String, String)>,
    /// The VMs running again (those that ran when the snapshot was taken).
    pub running: Vec<String>,
    /// From the first pause to the last resume.
    pub pause: Option<Duration>,
    /// No VM could be paused (EC2): they were stopped for the revert instead.
    pub stopped_instead: bool,
    pub took: Duration,
}

impl Reverted {
    pub fn ok(&self) -> bool {
        self.failed.is_empty() && self.not_resumed.is_empty()
    }
}

/// What `plan snapshot delete` did.
#[derive(Debug, Default)]
pub struct Deleted {
    pub name: String,
    pub deleted: Vec<String>,
    pub failed: Vec<(String, String)>,
}

/// One lab snapshot, as `plan snapshot list` and `plan status` show it.
#[derive(Debug, Clone, Serialize)]
pub struct LabSnapshot {
    pub name: String,
    pub created: String,
    /// The VMs that hold their snapshot.
    pub vms: Vec<SnapshotVm>,
    /// VMs it covers that hold none (deleted since, or a run that died): it cannot be
    /// reverted whole.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotVm {
    pub name: String,
    pub provider: String,
    /// It ran when the snapshot was taken (its memory is in the snapshot).
    pub running: bool,
    /// Its definition then, as siteplan had made it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definition: Option<Definition>,
}

/// What a VM was defined with when it was snapshotted.
#[derive(Debug, Clone, Serialize)]
pub struct Definition {
    pub memory_mib: u64,
    pub vcpus: u32,
    pub disks: Vec<String>,
    pub networks: Vec<String>,
}

/// The plan's lab snapshots, for `plan snapshot list`.
#[derive(Debug, Serialize)]
pub struct Listed {
    pub version: u32,
    pub plan: String,
    pub snapshots: Vec<LabSnapshot>,
    /// Snapshots of the plan's VMs that no `plan snapshot create` took (`vm`, `name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<OtherSnapshot>,
}

#[derive(Debug, Serialize)]
pub struct OtherSnapshot {
    pub vm: String,
    pub name: String,
}
