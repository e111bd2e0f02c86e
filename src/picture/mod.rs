//! A picture of the lab: its VMs, the networks they sit on (with their addresses), their disks
//! and the pools that hold them, grouped by where they are (provider, host), each marked by
//! what the change does to it (added, removed, replaced and why, updated live, waiting for a
//! restart, drifted) and by how it stands (running, stopped, missing).
//!
//! `Picture` is what is drawn, built from what `plan status` knows (the plan, the live state,
//! the changes), from the plan alone, or from plan against plan. It is drawn as SVG and as a
//! self-contained HTML page (`svg`, laid out by layout-rs), and as a Mermaid diagram for a
//! pull request's comment (`mermaid`); its JSON is for tools that draw their own.

pub mod html;
pub mod mermaid;
pub mod svg;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::plan::model::rules::Rules;
use crate::plan::model::spec::{ResourceId, Role, Spec, VolumeSource};
use crate::plan::model::{Disruption, LiveResource, Observed};
use crate::plan::{Action, Change};

/// The version of the picture's JSON (`plan graph --view topology -o json`, and the diff
/// JSON's `topology`).
pub const PICTURE_FORMAT_VERSION: &str = "1";

/// A lab, as drawn.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Picture {
    /// `PICTURE_FORMAT_VERSION`.
    pub format_version: String,
    pub plan: String,
    /// Where things are: a provider's name, or a host of a group; in the plan's order.
    pub places: Vec<String>,
    pub nodes: Vec<Node>,
    /// A VM to a network it sits on, a VM to its disk, a disk to its pool.
    pub links: Vec<Link>,
    /// What the picture knows: the live state (`live`), the plan alone (`plan`), or a plan
    /// against an older one (`plans`).
    pub drawn_from: DrawnFrom,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DrawnFrom {
    #[default]
    Live,
    Plan,
    Plans,
}

#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Network,
    Vm,
    Disk,
    Pool,
    /// A spanning network's tunnel, a DNS record, a Kubernetes object of no other role.
    Other,
}

/// What the change does to an element, most telling first.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Replaced,
    Removed,
    Added,
    Drifted,
    WaitsRestart,
    UpdatedLive,
    Unchanged,
}

impl Mark {
    pub const ALL: [Mark; 7] = [
        Mark::Added,
        Mark::Removed,
        Mark::Replaced,
        Mark::UpdatedLive,
        Mark::WaitsRestart,
        Mark::Drifted,
        Mark::Unchanged,
    ];

    /// Whether the element's state says more than its mark (an added one is missing).
    pub fn shows_state(self) -> bool {
        self != Mark::Added
    }

    /// Its name in class names and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Replaced => "replaced",
            Mark::Removed => "removed",
            Mark::Added => "added",
            Mark::Drifted => "drifted",
            Mark::WaitsRestart => "waits_restart",
            Mark::UpdatedLive => "updated_live",
            Mark::Unchanged => "unchanged",
        }
    }

    /// For the legend and the labels: the diff's symbol and the words.
    pub fn legend(self) -> &'static str {
        match self {
            Mark::Added => "+ added",
            Mark::Removed => "- removed",
            Mark::Replaced => "-/+ replaced",
            Mark::UpdatedLive => "~ updated live",
            Mark::WaitsRestart => "~ waits for a restart",
            Mark::Drifted => "! drifted",
            Mark::Unchanged => "unchanged",
        }
    }

    /// The diff's symbol, before a label.
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Added => "+",
            Mark::Removed => "-",
            Mark::Replaced => "-/+",
            Mark::UpdatedLive | Mark::WaitsRestart => "~",
            Mark::Drifted => "!",
            Mark::Unchanged => "",
        }
    }

    /// Fill and stroke colours, the same in every drawing.
    pub fn colours(self) -> (&'static str, &'static str) {
        match self {
            Mark::Added => ("#e6f4ea", "#1e8e3e"),
            Mark::Removed => ("#fce8e6", "#d93025"),
            Mark::Replaced => ("#fef0e0", "#e8710a"),
            Mark::UpdatedLive => ("#e8f0fe", "#1a73e8"),
            Mark::WaitsRestart => ("#fef7e0", "#b06000"),
            Mark::Drifted => ("#f3e8fd", "#9334e6"),
            Mark::Unchanged => ("#ffffff", "#5f6368"),
        }
    }
}

/// One element of the lab.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
pub struct Node {
    /// Unique in the picture: the place and the resource's address (`h1:vm/web1`).
    pub key: String,
    pub place: String,
    /// `vm/web1`, `network/lab`, `volume/default/web1_0.img`.
    pub address: String,
    pub shape: Shape,
    pub name: String,
    /// What a reader wants beside the name: a network's range, a VM's size and addresses, a
    /// disk's size.
    pub detail: Vec<String>,
    pub mark: Mark,
    /// Why: a replace's reason, what waits for a restart, what drifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// `running`, `stopped`, `paused`, `missing`, `active`, `inactive`, `present`; none when
    /// drawn without the live state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Referred to by the plan and not declared in it (the `default` network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
}

impl Node {
    /// The lines of its label, in every drawing: its name (with the change's symbol), its
    /// details, its state where that says more than the mark.
    pub fn lines(&self) -> Vec<String> {
        let symbol = self.mark.symbol();
        let mut lines = vec![if symbol.is_empty() {
            self.name.clone()
        } else {
            format!("{symbol} {}", self.name)
        }];
        lines.extend(self.detail.iter().cloned());
        if let Some(state) = self.state.as_ref().filter(|_| self.mark.shows_state()) {
            lines.push(format!("[{state}]"));
        }
        lines
    }
}

/// `from` sits above `to` in the drawing: a network above its VMs, a VM above its disks.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord)]
pub struct Link {
    pub from: String,
    pub to: String,
}

/// What one place gives the picture.
pub struct PlaceInput<'a> {
    pub name: String,
    /// What the plan wants there.
    pub desired: Vec<&'a Spec>,
    /// What is there (none: drawn from the plan alone).
    pub observed: Option<&'a Observed>,
    /// The plan's changes there.
    pub changes: &'a [Change],
    /// A VM's addresses, by VM name, as the status table shows them.
    pub addresses: BTreeMap<String, Vec<String>>,
    /// The backend's: what each resource needs, which the links show.
    pub rules: &'a dyn Rules,
}

impl Picture {
    pub fn build(plan: &str, drawn_from: DrawnFrom, places: Vec<PlaceInput<'_>>) -> Picture {
        let mut picture = Picture {
            format_version: PICTURE_FORMAT_VERSION.to_string(),
            plan: plan.to_string(),
            places: Vec::new(),
            nodes: Vec::new(),
            links: Vec::new(),
            drawn_from,
        };
        for place in &places {
            picture.places.push(place.name.clone());
            let change_of = |id: &ResourceId| place.changes.iter().find(|c| c.id == *id);
            let mut specs: Vec<(&Spec, Option<&Change>)> = place
                .desired
                .iter()
                .map(|s| (*s, change_of(&s.id())))
                .collect();
            // What the plan made and no longer declares: the change removes it.
            for change in place.changes.iter().filter(|c| c.action == Action::Delete) {
                if let Some(live) = &change.live {
                    specs.push((live, Some(change)));
                }
            }
            for (spec, change) in specs {
                let id = spec.id();
                let live = place.observed.and_then(|o| o.get(&id));
                let (mark, why) = change.map_or((Mark::Unchanged, None), mark_of);
                let state = place.observed.map(|_| {
                    if change.is_some_and(|c| c.action == Action::Delete) {
                        "not declared".to_string()
                    } else {
                        state(&id, live).to_string()
                    }
                });
                picture.nodes.push(Node {
                    key: key(&place.name, &id),
                    place: place.name.clone(),
                    address: id.to_string(),
                    shape: shape(&id),
                    name: name(spec),
                    detail: detail(spec, &place.addresses),
                    mark,
                    why,
                    state,
                    external: false,
                });
                picture.link(&place.name, spec, place.rules);
            }
        }
        picture.add_external();
        picture.links.sort();
        picture.links.dedup();
        picture
    }

    /// The links of one resource, from what the backend says it needs (`Rules::needs`): a
    /// network it sits on above it, its disks, seed and pool below it. A disk's backing image
    /// is said in the disk's box rather than drawn.
    fn link(&mut self, place: &str, spec: &Spec, rules: &dyn Rules) {
        let id = spec.id();
        let from = key(place, &id);
        for needed in rules.needs(spec) {
            match (id.kind.role(), needed.kind.role()) {
                (Role::Volume, Role::Volume) => {}
                (_, Role::Network | Role::Attachment) => self.links.push(Link {
                    from: key(place, &needed),
                    to: from.clone(),
                }),
                _ => self.links.push(Link {
                    from: from.clone(),
                    to: key(place, &needed),
                }),
            }
        }
    }

    /// What a link names and the plan does not declare there (the `default` network, a pool
    /// of the host's): drawn too, as external.
    fn add_external(&mut self) {
        let known: std::collections::BTreeSet<String> =
            self.nodes.iter().map(|n| n.key.clone()).collect();
        let mut added = std::collections::BTreeSet::new();
        for link in &self.links {
            for end in [&link.from, &link.to] {
                if known.contains(end) || !added.insert(end.clone()) {
                    continue;
                }
                let (place, address) = end.split_once(':').unwrap_or(("", end));
                let (kind, name) = address.split_once('/').unwrap_or(("", address));
                let shape = match kind {
                    "network" => Shape::Network,
                    "pool" => Shape::Pool,
                    "volume" => Shape::Disk,
                    _ => Shape::Other,
                };
                self.nodes.push(Node {
                    key: end.clone(),
                    place: place.to_string(),
                    address: address.to_string(),
                    shape,
                    name: name.rsplit('/').next().unwrap_or(name).to_string(),
                    detail: vec!["not in the plan".to_string()],
                    mark: Mark::Unchanged,
                    why: None,
                    state: None,
                    external: true,
                });
            }
        }
    }

    /// How many of each mark, in the legend's order (those present only).
    pub fn counts(&self) -> Vec<(Mark, usize)> {
        Mark::ALL
            .iter()
            .map(|m| (*m, self.nodes.iter().filter(|n| n.mark == *m).count()))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }
}

fn key(place: &str, id: &ResourceId) -> String {
    format!("{place}:{id}")
}

fn shape(id: &ResourceId) -> Shape {
    match id.kind.role() {
        Role::Vm => Shape::Vm,
        Role::Network | Role::Attachment => Shape::Network,
        Role::Pool => Shape::Pool,
        Role::Volume => Shape::Disk,
        _ => Shape::Other,
    }
}

fn name(spec: &Spec) -> String {
    match spec {
        Spec::Volume(v) => v.name.clone(),
        Spec::Tunnel(t) => format!("tunnel {}", t.device),
        // A backend's own kind of object (a subnet, a security group, a secret) says which:
        // several share the name of the entry they were made for.
        other => {
            let id = other.id();
            match id.kind.role() {
                Role::Other => format!("{} {}", id.kind, id.name),
                _ => id.name,
            }
        }
    }
}

fn detail(spec: &Spec, addresses: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    match spec {
        Spec::Network(n) => {
            let mut d = Vec::new();
            if let Some(cidr) = n.cidr {
                d.push(cidr.to_string());
            }
            d.push(format!("{:?}", n.mode).to_lowercase());
            d
        }
        Spec::Vm(vm) => {
            let mut d = vec![format!("{} CPU, {} MiB", vm.vcpus, vm.memory_mib)];
            d.extend(addresses.get(&vm.name).cloned().unwrap_or_default());
            d
        }
        Spec::Volume(v) => {
            let mut d: Vec<String> = v.capacity_bytes.map(size).into_iter().collect();
            if let Some((_, image)) = &v.backing {
                d.push(format!("on {image}"));
            }
            match v.source {
                VolumeSource::Fetch { .. } => d.push("image".to_string()),
                VolumeSource::Generated { .. } => d.push("cloud-init seed".to_string()),
                VolumeSource::Blank => {}
            }
            d
        }
        Spec::Pool(p) => vec![p.path.clone()],
        Spec::Tunnel(t) => vec![format!("VXLAN {} to {}", t.vni, t.peers.join(", "))],
        // A backend's VM object (a KubeVirt VM, an EC2 instance): where it is reached.
        Spec::Object(o) if o.object.role() == Role::Vm => {
            addresses.get(&o.name).cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// A size as people write it: whole GiB, else MiB.
fn size(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;
    if bytes >= GIB && bytes.is_multiple_of(GIB) {
        format!("{} GiB", bytes / GIB)
    } else if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes.div_ceil(MIB))
    }
}

/// How a resource stands, as `plan status` says it.
fn state(id: &ResourceId, live: Option<&LiveResource>) -> &'static str {
    let kind = id.kind;
    match live {
        None => "missing",
        Some(l) if kind.is_vm() && l.paused => "paused",
        Some(l) if kind.is_vm() && l.active => "running",
        Some(_) if kind.is_vm() => "stopped",
        Some(l) if matches!(kind.role(), Role::Network | Role::Pool) && l.active => "active",
        Some(_) if matches!(kind.role(), Role::Network | Role::Pool) => "inactive",
        Some(_) => "present",
    }
}

/// The mark of a change, and why.
fn mark_of(change: &Change) -> (Mark, Option<String>) {
    // Each attribute by name, with its values when they are short (a size, a count).
    let names = |attributes: &[crate::plan::AttributeChange]| {
        let short = |v: &Option<serde_json::Value>| match v {
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                Some(v.to_string())
            }
            Some(serde_json::Value::String(s)) if s.len() <= 24 => Some(s.clone()),
            None | Some(serde_json::Value::Null) => Some("(none)".to_string()),
            _ => None,
        };
        // Sizes as sizes: `capacity_bytes`, `memory_mib`.
        let unit = |name: &str, v: &Option<serde_json::Value>| {
            let n = v.as_ref().and_then(|v| v.as_u64());
            match (name.strip_suffix("_bytes"), name.strip_suffix("_mib"), n) {
                (Some(base), _, Some(n)) => Some((base.to_string(), size(n))),
                (_, Some(base), Some(n)) => Some((base.to_string(), format!("{n} MiB"))),
                _ => None,
            }
        };
        attributes
            .iter()
            .map(
                |a| match (unit(&a.name, &a.before), unit(&a.name, &a.after)) {
                    (Some((name, before)), Some((_, after))) => {
                        format!("{name} {before} → {after}")
                    }
                    _ => match (short(&a.before), short(&a.after)) {
                        (Some(before), Some(after)) => format!("{} {before} → {after}", a.name),
                        _ => a.name.clone(),
                    },
                },
            )
            .collect::<Vec<_>>()
            .join(", ")
    };
    match change.action {
        Action::Create => (Mark::Added, change.reason.clone()),
        Action::Delete => (Mark::Removed, change.reason.clone()),
        Action::Replace => (Mark::Replaced, change.reason.clone()),
        Action::Restart => (
            Mark::WaitsRestart,
            Some(format!("restarts for {}", names(&change.pending_restart))),
        ),
        Action::Update if !change.drift.is_empty() => (
            Mark::Drifted,
            Some(format!(
                "changed outside siteplan: {}",
                names(&change.drift)
            )),
        ),
        Action::Update if change.disruption == Some(Disruption::Reboot) => (
            Mark::WaitsRestart,
            Some(format!(
                "at the next restart: {}",
                names(&change.attributes)
            )),
        ),
        Action::Update if change.attributes.is_empty() && !change.pending_restart.is_empty() => (
            Mark::WaitsRestart,
            Some(format!(
                "waits for a restart: {}",
                names(&change.pending_restart)
            )),
        ),
        Action::Update => (
            Mark::UpdatedLive,
            Some(format!("updated live: {}", names(&change.attributes))),
        ),
    }
}

#[cfg(test)]
mod tests;
