//! The diff as a versioned JSON document, for tools: CI bots, dashboards, policy checks.
//! Its JSON Schema is `schemas/diff.schema.json` (`plan schema diff`). `format_version` changes
//! whenever a field is removed or changes meaning; new fields may appear without it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Impact;
use crate::plan::model::Disruption;
use crate::plan::{Action, AttributeChange, Change, Plan};

/// "2": a delete of what holds no data has the impact `deleted` (it was `recreate`), and what
/// holds data is the backend's word (KubeVirt's DataVolumes and VirtualMachines too).
pub const FORMAT_VERSION: &str = "2";

/// What `plan diff --format json` prints.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct DiffDocument {
    /// The document format's version: "2".
    pub format_version: String,
    /// The plan's name, which marks what it creates.
    pub plan: String,
    pub summary: Summary,
    /// Every change, in the order apply considers them.
    pub changes: Vec<ResourceChange>,
    /// Resources changed outside siteplan since they were applied; the changes above set them
    /// back.
    pub drift: Vec<Drift>,
    /// The lab with the change drawn on it: what a tool needs to draw its own picture (the
    /// elements by place, each with its mark and state, and the links between them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<crate::picture::Picture>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    pub create: usize,
    pub update: usize,
    pub replace: usize,
    pub delete: usize,
    /// Running VMs whose definition changed in an earlier apply and that wait for a restart
    /// (and nothing else).
    #[serde(default)]
    pub restart: usize,
    /// Resources already as declared.
    pub unchanged: usize,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ResourceChange {
    /// `kind/name`, or `volume/pool/name`.
    pub address: String,
    /// `network`, `pool`, `volume` or `vm`.
    pub kind: String,
    pub name: String,
    /// A volume's pool.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The provider it is on, when the plan spans several (`client:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The plan entry it comes from (`vm/web1`); absent for deletes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    pub action: Action,
    /// Why a replace or a delete happens; for a VM made on a host of a group, why there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the change costs what runs on it.
    pub impact: Impact,
    /// The resource exists without siteplan's mark, as a killed run leaves it, and is taken over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub takes_over: bool,
    /// The resource exists without any plan's mark and the plan adopts it (`--adopt`): its
    /// update (`action` is `update`) marks it as the plan's and changes only what differs.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// The attributes that differ (all of them, for a create).
    pub attributes: Vec<Attribute>,
    /// A running VM's attributes changed in its definition earlier, which it does not run
    /// with until it restarts: `before` is what it runs with, `after` what it takes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<Attribute>,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Attribute {
    pub name: String,
    /// Absent when the resource does not exist yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<serde_json::Value>,
    /// Absent when the resource goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<serde_json::Value>,
    /// Changing this attribute alone forces the resource to be replaced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct Drift {
    pub address: String,
    /// `before` is what siteplan applied, `after` what the provider has now.
    pub attributes: Vec<Attribute>,
}

fn attribute(a: &AttributeChange, action: Action) -> Attribute {
    Attribute {
        name: a.name.clone(),
        before: a.before.clone(),
        after: a.after.clone(),
        forces_replacement: action == Action::Replace && a.disruption == Disruption::Replace,
    }
}

fn resource_change(change: &Change) -> ResourceChange {
    ResourceChange {
        address: change.id.to_string(),
        kind: change.id.kind.to_string(),
        name: change.id.name.clone(),
        pool: change.id.pool.clone(),
        provider: change.provider.clone(),
        entry: change.entry.clone(),
        action: change.action,
        reason: change.reason.clone(),
        impact: Impact::of(change),
        takes_over: change.claim,
        adopt: change.adopt,
        attributes: change
            .attributes
            .iter()
            .map(|a| attribute(a, change.action))
            .collect(),
        pending_restart: change
            .pending_restart
            .iter()
            .map(|a| attribute(a, Action::Update))
            .collect(),
    }
}

pub fn document(plan: &Plan) -> DiffDocument {
    DiffDocument {
        format_version: FORMAT_VERSION.into(),
        plan: plan.name.clone(),
        summary: Summary {
            create: plan.count(Action::Create),
            update: plan.count(Action::Update),
            replace: plan.count(Action::Replace),
            delete: plan.count(Action::Delete),
            restart: plan.count(Action::Restart),
            unchanged: plan.unchanged,
        },
        changes: plan.changes.iter().map(resource_change).collect(),
        drift: plan
            .changes
            .iter()
            .filter(|c| !c.drift.is_empty())
            .map(|c| Drift {
                address: c.id.to_string(),
                attributes: c
                    .drift
                    .iter()
                    .map(|a| attribute(a, Action::Update))
                    .collect(),
            })
            .collect(),
        topology: None,
    }
}

/// The document, pretty-printed, with a final newline.
pub fn json(plan: &Plan) -> String {
    let mut text = serde_json::to_string_pretty(&document(plan)).unwrap_or_default();
    text.push('\n');
    text
}

/// The document with the lab's picture (`topology`).
pub fn with_picture(plan: &Plan, picture: &crate::picture::Picture) -> String {
    let document = DiffDocument {
        topology: Some(picture.clone()),
        ..document(plan)
    };
    let mut text = serde_json::to_string_pretty(&document).unwrap_or_default();
    text.push('\n');
    text
}

/// `schemas/diff.schema.json`.
pub fn schema_text() -> String {
    let mut text =
        serde_json::to_string_pretty(&schemars::schema_for!(DiffDocument)).unwrap_or_default();
    text.push('\n');
    text
}
