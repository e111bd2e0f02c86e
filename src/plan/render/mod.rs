//! Plans for people and programs: the terminal diff (`human`), a pull-request comment
//! (`markdown`) and a versioned document for tools (`json`). All three say the same things: the
//! action, the reason, how disruptive, and each attribute's old and new value.

mod human;
pub mod json;
pub mod markdown;

pub use human::human;
pub use markdown::markdown;

use crate::plan::model::Disruption;
use crate::plan::{Action, Change, Plan};

pub(crate) fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
        Action::Restart => "↻",
    }
}

/// A change's symbol: its action's, or `<=` for one that adopts what exists.
pub(crate) fn change_symbol(change: &Change) -> &'static str {
    if change.adopt {
        "<="
    } else {
        symbol(change.action)
    }
}

pub(crate) fn value(v: &Option<serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "(none)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// How people name an attribute: a size without its unit (`capacity_bytes` is `capacity`,
/// `memory_mib` is `memory`), since its value says the unit.
pub(crate) fn shown_name(name: &str) -> &str {
    if name == "seed_sha256" {
        // Its value is never shown, only whether it changed.
        return "seed content";
    }
    name.strip_suffix("_bytes")
        .or_else(|| name.strip_suffix("_mib"))
        .unwrap_or(name)
}

/// A value as people write it: a size in the largest unit that keeps it whole (`10 GiB`, not
/// `10737418240`); anything else as `value` shows it. The machine format keeps the numbers.
pub(crate) fn shown_value(name: &str, v: &Option<serde_json::Value>) -> String {
    let unit: u64 = if name.ends_with("_bytes") {
        1
    } else if name.ends_with("_mib") {
        1024 * 1024
    } else {
        return value(v);
    };
    match v.as_ref().and_then(serde_json::Value::as_u64) {
        Some(n) => size(n.saturating_mul(unit)),
        None => value(v),
    }
}

/// `bytes` in TiB, GiB, MiB or KiB when that is whole, else in bytes.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [(u64, &str); 4] = [
        (1 << 40, "TiB"),
        (1 << 30, "GiB"),
        (1 << 20, "MiB"),
        (1 << 10, "KiB"),
    ];
    UNITS
        .iter()
        .find(|(unit, _)| bytes >= *unit && bytes.is_multiple_of(*unit))
        .map_or_else(
            || format!("{bytes} bytes"),
            |(unit, name)| format!("{} {name}", bytes / unit),
        )
}

/// `a` as people read it: a list of records (a VM's disks, its NICs) as a YAML block, so that
/// it shows one field a line and a change as a unified diff, rather than one line of JSON.
pub(crate) fn for_people(a: &crate::plan::AttributeChange) -> crate::plan::AttributeChange {
    let block = |v: &Option<serde_json::Value>| match v {
        Some(serde_json::Value::Array(items))
            if items.iter().any(|i| i.is_object() || i.is_array()) =>
        {
            serde_norway::to_string(items)
                .ok()
                .map(serde_json::Value::String)
        }
        other => other.clone(),
    };
    crate::plan::AttributeChange {
        name: a.name.clone(),
        before: block(&a.before),
        after: block(&a.after),
        disruption: a.disruption,
    }
}

/// What a change costs the things that run on it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Impact {
    /// Nothing exists yet.
    None,
    /// Applied to the running resource.
    Live,
    /// Takes effect when the VM restarts.
    Reboot,
    /// Deleted and made again; it holds no data.
    Recreate,
    /// Deleted, and not made again; it holds no data.
    Deleted,
    /// Deleted (and perhaps made again): what it holds is lost.
    DataLoss,
}

impl Impact {
    /// What `change` costs; whether what it deletes holds data is the backend's word
    /// (`Rules::holds_data`, recorded on the change by the planner).
    pub fn of(change: &Change) -> Impact {
        match (change.action, change.disruption) {
            (Action::Delete | Action::Replace, _) if change.loses_data => Impact::DataLoss,
            (Action::Delete, _) => Impact::Deleted,
            (Action::Replace, _) => Impact::Recreate,
            (Action::Update, Some(Disruption::Reboot)) | (Action::Restart, _) => Impact::Reboot,
            (Action::Update, _) => Impact::Live,
            (Action::Create, _) => Impact::None,
        }
    }

    /// In words, for people; `None` says nothing.
    pub fn words(self) -> Option<&'static str> {
        match self {
            Impact::None => None,
            Impact::Live => Some("live"),
            Impact::Reboot => Some("needs a reboot"),
            Impact::Recreate => Some("recreated"),
            Impact::Deleted => Some("deleted"),
            Impact::DataLoss => Some("data loss"),
        }
    }
}

/// Whether a value holds multi-line text somewhere (a cloud-init seed, a script).
pub(crate) fn has_text(v: &Option<serde_json::Value>) -> bool {
    v.as_ref()
        .is_some_and(|v| leaves(v, "").iter().any(|(_, l)| is_text(l)))
}

pub(crate) fn is_text(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| s.contains('\n'))
}

/// A value's leaves with their dotted paths (`generated.sha256`); arrays count as leaves.
pub(crate) fn leaves(v: &serde_json::Value, path: &str) -> Vec<(String, serde_json::Value)> {
    match v {
        serde_json::Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let path = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                leaves(v, &path)
            })
            .collect(),
        other => vec![(path.to_string(), other.clone())],
    }
}

/// One leaf of an attribute that holds multi-line text: its dotted name, and either a unified
/// diff of its text or its old and new values.
pub(crate) enum Leaf {
    Text {
        name: String,
        diff: String,
    },
    Value {
        name: String,
        old: Option<serde_json::Value>,
        new: Option<serde_json::Value>,
    },
}

/// The leaves of `a` that differ (for attributes where `has_text` holds).
pub(crate) fn changed_leaves(a: &crate::plan::AttributeChange) -> Vec<Leaf> {
    let split =
        |v: &Option<serde_json::Value>| v.as_ref().map(|v| leaves(v, "")).unwrap_or_default();
    let (before, after) = (split(&a.before), split(&a.after));
    let mut paths: Vec<&String> = before.iter().chain(after.iter()).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let find = |side: &[(String, serde_json::Value)], path: &str| {
        side.iter().find(|(p, _)| p == path).map(|(_, v)| v.clone())
    };
    let text = |v: &Option<serde_json::Value>| {
        v.as_ref()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for path in paths {
        let (old, new) = (find(&before, path), find(&after, path));
        if old == new {
            continue;
        }
        let name = if path.is_empty() {
            a.name.clone()
        } else {
            format!("{}.{path}", a.name)
        };
        if old.as_ref().is_some_and(is_text) || new.as_ref().is_some_and(is_text) {
            out.push(Leaf::Text {
                name,
                diff: unified(&text(&old), &text(&new)),
            });
        } else {
            out.push(Leaf::Value { name, old, new });
        }
    }
    out
}

/// A unified diff of two texts, three lines of context; hunk headers left out when one side is
/// empty (all of it is new, or all gone).
/// `vm/web1`, or `vm/web1 on lab2` when the plan spans providers.
pub(crate) fn address(change: &Change) -> String {
    match &change.provider {
        Some(p) => format!("{} on {p}", change.id),
        None => change.id.to_string(),
    }
}

pub(crate) fn unified(old: &str, new: &str) -> String {
    let diff = similar::TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .missing_newline_hint(false)
        .to_string();
    if old.is_empty() || new.is_empty() {
        text.lines()
            .filter(|l| !l.starts_with("@@"))
            .map(|l| format!("{l}\n"))
            .collect()
    } else {
        text
    }
}

/// The plan's counts in one line: the footer of `human`, and all `-q` shows.
pub fn summary(plan: &Plan) -> String {
    if plan.is_empty() {
        return format!("No changes to plan `{}`.", plan.name);
    }
    // `--restart` restarts, in this run, what would otherwise wait.
    let (now, waiting): (Vec<&Change>, Vec<&Change>) = plan
        .changes
        .iter()
        .filter(|c| c.action == Action::Restart)
        .partition(|c| c.restart.is_some());
    let restarts = match (now.len(), waiting.len()) {
        (0, 0) => String::new(),
        (0, n) => format!(" {n} waiting for a restart."),
        (n, 0) => format!(" {n} to restart."),
        (n, m) => format!(" {n} to restart, {m} waiting for a restart."),
    };
    let adopted = plan.changes.iter().filter(|c| c.adopt).count();
    let adopts = match adopted {
        0 => String::new(),
        n => format!(" {n} to adopt."),
    };
    format!(
        "Plan: {} to add, {} to change, {} to replace, {} to destroy.{restarts}{adopts}",
        plan.count(Action::Create),
        plan.count(Action::Update) - adopted,
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    )
}
