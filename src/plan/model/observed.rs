//! What the planner knows of live state: each resource as a provider observed it, with the mark
//! that says which plan made it from which spec, and the words in which a change's cost and a
//! VM's power are said. Providers report in these terms; the planner reads nothing else of them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::spec::{ResourceId, Spec};

/// The ownership mark found on a live resource: which plan created it, from which spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnerMark {
    pub plan: String,
    /// The spec the resource was created (or last updated) from; comparing it with the live spec
    /// tells a change made outside siteplan (drift) from a change to the plan.
    pub spec: Spec,
    /// The plan had `prevent_destroy` on it when it was created or last updated. Destroy and
    /// prune read it from here, so the guard cannot be lost with the plan file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub prevent_destroy: bool,
    /// When it was created (RFC 3339), kept through updates, for `plan info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// The plan file it was last applied from; marks written before siteplan recorded it have
    /// none. A plan of the same name applied from another file is refused (`plan::identity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_from: Option<String>,
    /// The group of hosts whose placement put it on this host, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// What makes a VM's guest ready: cloud-init finished, where it was given a seed, and a
/// command of the plan's (kcli's `waitcommand`) that succeeds in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReadinessQuery {
    pub vm: String,
    pub cloud_init: bool,
    pub command: Option<String>,
}

/// One resource as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveResource {
    pub spec: Spec,
    pub owner: Option<OwnerMark>,
    /// Active network or pool, running VM. Volumes are always active.
    pub active: bool,
    /// Whether it holds nothing (a pool without volumes), when the provider can tell: an
    /// unmarked empty pool is what an interrupted run leaves, and taking it over loses nothing.
    pub empty: Option<bool>,
    /// A running VM's attributes whose saved definition differs from what it runs with: the
    /// change waits for the VM to restart. Empty for anything else.
    pub pending_restart: Vec<Pending>,
    /// A VM that is paused (it is `active` too): a lab snapshot stopped half-way leaves it so,
    /// or a person did. Apply resumes it where the plan says it runs.
    pub paused: bool,
}

/// One attribute of a running VM that was changed in its definition and not in the running
/// VM: what it runs with, and what it takes when it restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    pub attribute: String,
    pub running: Option<serde_json::Value>,
    pub defined: Option<serde_json::Value>,
}

impl Pending {
    /// The attributes of `defined` that differ from `booted` (the definition the VM runs
    /// with), compared as the planner compares specs. Power state and autostart are not part
    /// of a running definition.
    pub fn between(booted: &Spec, defined: &Spec) -> Vec<Pending> {
        let fields = |s: &Spec| -> BTreeMap<String, serde_json::Value> {
            match serde_json::to_value(s) {
                Ok(serde_json::Value::Object(map)) => map
                    .into_iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "kind" | "running" | "autostart"))
                    .collect(),
                _ => BTreeMap::new(),
            }
        };
        let (running, defined) = (fields(booted), fields(defined));
        let mut names: Vec<&String> = running.keys().chain(defined.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|n| running.get(*n) != defined.get(*n))
            .map(|n| Pending {
                attribute: n.clone(),
                running: running.get(n).cloned(),
                defined: defined.get(n).cloned(),
            })
            .collect()
    }
}

/// What a provider saw: resources by id.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub resources: BTreeMap<ResourceId, LiveResource>,
    /// What a run of the plan that died left without a mark (as its lock noted): only these are
    /// taken over (`Rules::leftover`). Addresses (`pool/lab`).
    pub unmarked_by_killed_run: std::collections::BTreeSet<String>,
    /// The plan kcli's metadata names on a resource that has no siteplan mark: another
    /// plan's, to kcli, unless it is this plan's name.
    pub kcli_plans: BTreeMap<ResourceId, String>,
}

impl Observed {
    pub fn get(&self, id: &ResourceId) -> Option<&LiveResource> {
        self.resources.get(id)
    }

    /// The VM `name`, of whichever backend's kind (a libvirt domain, a KubeVirt
    /// VirtualMachine).
    pub fn vm(&self, name: &str) -> Option<&LiveResource> {
        self.resources
            .iter()
            .find(|(id, _)| id.kind.is_vm() && id.name == name)
            .map(|(_, live)| live)
    }

    /// Everything marked as created by `plan`.
    pub fn owned_by<'a>(
        &'a self,
        plan: &'a str,
    ) -> impl Iterator<Item = (&'a ResourceId, &'a LiveResource)> {
        self.resources
            .iter()
            .filter(move |(_, r)| r.owner.as_ref().is_some_and(|o| o.plan == plan))
    }
}

/// How disruptive changing one attribute is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Disruption {
    /// Applied to the running resource.
    Live,
    /// Saved now, effective when the VM restarts.
    Reboot,
    /// Only by deleting and creating the resource again: its data is lost.
    Replace,
}

/// What `plan start|stop|restart` and `apply --restart` ask of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    /// Asked to shut down, and forced off when it has not after `grace` (the provider's
    /// own timeout when `None`).
    Stop {
        grace: Option<std::time::Duration>,
    },
    /// Stopped as above, then started: a guest's own reboot would keep running the old
    /// definition, so this is what makes a saved change take effect.
    Restart {
        grace: Option<std::time::Duration>,
    },
}
