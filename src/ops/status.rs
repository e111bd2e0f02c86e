//! `plan status`: every resource of the plan as it is live, beside what the plan says: its
//! state, a VM's addresses, what waits for a restart, what changed outside siteplan, and what
//! apply would do. Nothing is changed.

use serde::Serialize;

use super::outcome::Refusal;
use super::request::Request;
use super::session::{Goal, Session};
use super::view::View;
use crate::manifest::Loaded;
use crate::picture::Picture;
use crate::plan::model::spec::{ResourceId, ResourceKind, Role};
use crate::plan::{Action, AttributeChange, Change};
use crate::provider::LiveResource;

/// The version of `plan status -o json|yaml` documents this siteplan writes.
pub const STATUS_FORMAT_VERSION: &str = "2";

/// The lab as it is, for `plan status -o json|yaml` and its table.
#[derive(Debug, Serialize)]
pub struct LabStatus {
    /// `STATUS_FORMAT_VERSION`: "2" gives addresses as `{ip, sources}` (they were strings).
    pub format_version: &'static str,
    pub plan: String,
    /// The providers hold exactly what the plan says: nothing to apply, nothing waiting.
    pub matches: bool,
    pub resources: Vec<ResourceStatus>,
    /// The lab snapshots of the plan (`plan snapshot create`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<super::snapshot::LabSnapshot>,
    /// The same, to be drawn (`plan status -o svg|html|mermaid`).
    #[serde(skip)]
    pub picture: Picture,
}

#[derive(Debug, Serialize)]
pub struct ResourceStatus {
    /// `vm/web1`, `volume/default/web1_0.img`.
    pub address: String,
    pub provider: String,
    /// `running`, `stopped` (VMs); `active`, `inactive` (networks, pools); `present`;
    /// `missing` (declared, not there); `not declared` (created by the plan, no longer in it).
    pub state: String,
    /// A running VM's addresses, each with where it comes from; none for anything else.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<super::outcome::ShownAddress>,
    /// What `plan apply` would do to it (`create`, `update`, `replace`, `delete`,
    /// `restart`), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply: Option<Action>,
    /// A running VM's attributes saved but not running yet (`before` is what it runs with).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<ShownAttribute>,
    /// Attributes changed outside siteplan since it applied them (`before` is what it set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<ShownAttribute>,
}

#[derive(Debug, Serialize)]
pub struct ShownAttribute {
    pub name: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

fn shown(attributes: &[AttributeChange]) -> Vec<ShownAttribute> {
    attributes
        .iter()
        .map(|a| ShownAttribute {
            name: a.name.clone(),
            before: a.before.clone(),
            after: a.after.clone(),
        })
        .collect()
}

fn state(kind: ResourceKind, live: Option<&LiveResource>) -> &'static str {
    match (kind, live) {
        (_, None) => "missing",
        (kind, Some(l)) if kind.is_vm() && l.paused => "paused",
        (kind, Some(l)) if kind.is_vm() && l.active => "running",
        (kind, Some(_)) if kind.is_vm() => "stopped",
        (kind, Some(l)) if starts_and_stops(kind) && l.active => "active",
        (kind, Some(_)) if starts_and_stops(kind) => "inactive",
        (_, Some(_)) => "present",
    }
}

/// A network or pool with a running state of its own (a libvirt network, a storage pool).
fn starts_and_stops(kind: ResourceKind) -> bool {
    matches!(kind.role(), Role::Network | Role::Pool)
}

/// Observes the plan's providers and says how each resource stands.
pub async fn status(
    request: &Request,
    loaded: &Loaded,
    view: &dyn View,
) -> Result<LabStatus, Refusal> {
    let session = Session::open(loaded, Goal::Converge, request, view).await?;
    let unmarked = session.tell_holders(view).await;
    let mut observed = session.observe(view).await?;
    Session::note_killed_runs(&mut observed, &unmarked);
    session.held_elsewhere(&observed).await?;
    let plans = session.plan(&observed)?;
    let rows = session.vms_seen(&observed).await;
    let mut resources = Vec::new();
    for ((site, observed), plan) in session.sites.iter().zip(&observed).zip(&plans) {
        let provider = site.shown();
        let change_of = |id: &ResourceId| plan.changes.iter().find(|c| c.id == *id);
        let row = |address: String, state: &str, change: Option<&Change>, name: &str| {
            let addresses = rows
                .iter()
                .find(|r| r.name == name && r.provider == provider)
                .map(|r| r.addresses.clone())
                .unwrap_or_default();
            ResourceStatus {
                address,
                provider: provider.clone(),
                state: state.to_string(),
                addresses,
                apply: change.map(|c| c.action),
                pending_restart: change
                    .map(|c| shown(&c.pending_restart))
                    .unwrap_or_default(),
                drift: change.map(|c| shown(&c.drift)).unwrap_or_default(),
            }
        };
        for wanted in &site.desired.resources {
            let id = wanted.spec.id();
            let is_vm = id.kind.is_vm();
            let name = if is_vm { id.name.as_str() } else { "" };
            resources.push(row(
                id.to_string(),
                state(id.kind, observed.get(&id)),
                change_of(&id),
                name,
            ));
        }
        // What the plan created and no longer declares: apply deletes it.
        for change in plan.changes.iter().filter(|c| c.action == Action::Delete) {
            resources.push(row(change.id.to_string(), "not declared", Some(change), ""));
        }
    }
    Ok(LabStatus {
        format_version: STATUS_FORMAT_VERSION,
        plan: request.name.clone(),
        matches: plans.iter().all(|p| p.is_empty()),
        resources,
        snapshots: super::snapshot::of_session(&session).await,
        picture: super::picture::of_session(&session, &observed, &plans, &rows),
    })
}
