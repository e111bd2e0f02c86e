//! Lab snapshots as providers keep them: one snapshot per VM, all with the same name, each
//! carrying a mark that says which plan took it, when, in which run, and which VMs the lab
//! snapshot covers. There is no record elsewhere: listing the VMs' snapshots finds the lab's.
//! How a lab snapshot is taken, reverted and deleted as one (pauses, all-or-nothing) is
//! `ops::snapshot`; each backend only pauses, resumes, and takes, reverts and deletes one VM's.

use serde::{Deserialize, Serialize};

use crate::plan::model::spec::VmSpec;

/// What begins the description of a VM snapshot that belongs to a lab snapshot.
pub const MARK_PREFIX: &str = "siteplan lab snapshot ";

/// The mark on each VM's snapshot of a lab snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMark {
    pub plan: String,
    /// The lab snapshot's name, which is also each VM snapshot's.
    pub name: String,
    /// When the lab was snapshotted (RFC 3339): the same on every VM.
    pub created: String,
    /// Every VM the lab snapshot covers, on whatever provider: a VM that lacks its snapshot
    /// shows that it is incomplete.
    pub vms: Vec<String>,
    /// The `plan snapshot create` run that took it.
    pub run: String,
    /// The VM ran before it was paused for the snapshot: a revert resumes it.
    pub was_running: bool,
}

impl SnapshotMark {
    /// The description a VM snapshot carries.
    pub fn description(&self) -> String {
        format!(
            "{MARK_PREFIX}{}",
            serde_json::to_string(self).unwrap_or_default()
        )
    }

    /// The mark in a VM snapshot's description; `None` for a snapshot a person took.
    pub fn from_description(text: &str) -> Option<SnapshotMark> {
        serde_json::from_str(text.trim().strip_prefix(MARK_PREFIX)?).ok()
    }
}

/// One VM's snapshot of a lab snapshot, as found on a provider.
#[derive(Debug, Clone, PartialEq)]
pub struct VmSnapshot {
    pub vm: String,
    pub mark: SnapshotMark,
    /// The VM's definition when it was taken (what siteplan had made it from), if known.
    pub definition: Option<VmSpec>,
}

/// The snapshots a provider holds of a plan's VMs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FoundSnapshots {
    /// Those of lab snapshots of the plan.
    pub marked: Vec<VmSnapshot>,
    /// `(vm, name)` of the ones a person took.
    pub others: Vec<(String, String)>,
}

/// Whether `name` can name a lab snapshot: it becomes each VM snapshot's name, and appears
/// in commands and file names.
pub fn check_name(name: &str) -> Result<(), String> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if fine {
        Ok(())
    } else {
        Err(format!(
            "`{name}` cannot name a snapshot: use up to 64 letters, digits, `-`, `_` and `.`, \
             not starting with `-` or `.`"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_reads_back_from_its_description_and_nothing_else_does() {
        let mark = SnapshotMark {
            plan: "lab".into(),
            name: "before-test".into(),
            created: "2026-11-24T21:00:00Z".into(),
            vms: vec!["a".into(), "b".into()],
            run: "r1".into(),
            was_running: true,
        };
        assert_eq!(
            SnapshotMark::from_description(&mark.description()),
            Some(mark)
        );
        assert_eq!(SnapshotMark::from_description("before the upgrade"), None);
        assert_eq!(SnapshotMark::from_description(""), None);
    }

    #[test]
    fn names_are_checked() {
        for good in ["before-test", "v1.2", "a_b", "x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", ".x", "a b", "a/b", &"x".repeat(65), "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
