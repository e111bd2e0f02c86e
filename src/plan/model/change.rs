//! One change of a plan: what happens to one resource, attribute by attribute, and why.

use serde::{Deserialize, Serialize};

use super::spec::{ResourceId, Spec};
use super::Disruption;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    /// Delete, then create again.
    Replace,
    Delete,
    /// Nothing to change: a running VM whose definition was changed before restarts to run
    /// it (only with `apply --restart`; otherwise it keeps waiting, and the diff says so).
    Restart,
}

/// One attribute that differs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeChange {
    pub name: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub disruption: Disruption,
}

#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub id: ResourceId,
    /// The plan entry this resource belongs to (`vm/web1`).
    pub entry: Option<String>,
    /// The provider it is on, when a plan spans several (`client:`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub action: Action,
    pub attributes: Vec<AttributeChange>,
    /// Why a replace or a delete happens; for a VM made on a host of a group, why there.
    pub reason: Option<String>,
    /// The most disruptive attribute change (updates and replaces).
    pub disruption: Option<Disruption>,
    /// Attributes changed outside siteplan since the resource was created or last updated.
    pub drift: Vec<AttributeChange>,
    /// The resource exists without siteplan's mark, as a killed run leaves it: it is taken over
    /// (marked) first.
    pub claim: bool,
    /// The resource exists without any plan's mark, and this run adopts it (`Identity::adopt`):
    /// the update writes this plan's mark and changes only what differs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub adopt: bool,
    /// A delete or replace loses what the resource holds (`Rules::holds_data`): data loss,
    /// rather than something made again as it was.
    #[serde(skip)]
    pub loses_data: bool,
    /// A running VM's attributes already changed in its definition that it does not run with
    /// yet (`before` is what it runs with): they take effect when it restarts.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<AttributeChange>,
    /// How apply restarts the VM after this change (`apply --restart`), so that what waits
    /// for a restart takes effect.
    #[serde(skip)]
    pub restart: Option<super::Power>,
    /// Networks made again in this run that the running VM's NICs are moved onto, live.
    #[serde(skip)]
    pub reattach: Vec<String>,
    /// What to create or update to.
    #[serde(skip)]
    pub desired: Option<Spec>,
    /// What exists now (for deletes and replaces).
    #[serde(skip)]
    pub live: Option<Spec>,
}
