//! Plans for people: Terraform's symbols, a reason for every replace and delete, and how
//! disruptive each change is.

use std::fmt::Write;

use super::{Action, AttributeChange, Change, Plan};
use crate::provider::spec::ResourceKind;
use crate::provider::Disruption;

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+",
        Action::Update => "~",
        Action::Replace => "-/+",
        Action::Delete => "-",
    }
}

fn value(v: &Option<serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "(none)".into(),
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// What a change costs, in words.
fn cost(change: &Change) -> Option<&'static str> {
    let holds_data = matches!(
        change.id.kind,
        ResourceKind::Volume | ResourceKind::Vm | ResourceKind::Pool
    );
    match (change.action, change.disruption) {
        (Action::Delete | Action::Replace, _) if holds_data => Some("data loss"),
        (Action::Delete | Action::Replace, _) => Some("recreated"),
        (Action::Update, Some(Disruption::Reboot)) => Some("needs a reboot"),
        (Action::Update, _) => Some("live"),
        (Action::Create, _) => None,
    }
}

fn attribute_line(out: &mut String, a: &AttributeChange, width: usize, action: Action) {
    let forces = if action == Action::Replace && a.disruption == Disruption::Replace {
        "  # forces replacement"
    } else {
        ""
    };
    if has_text(&a.before) || has_text(&a.after) {
        return text_attribute(out, a, forces);
    }
    let _ = match action {
        Action::Create => writeln!(
            out,
            "      {:width$} {}",
            format!("{}:", a.name),
            value(&a.after)
        ),
        Action::Delete => writeln!(
            out,
            "      {:width$} {}",
            format!("{}:", a.name),
            value(&a.before)
        ),
        _ => writeln!(
            out,
            "      {:width$} {} → {}{forces}",
            format!("{}:", a.name),
            value(&a.before),
            value(&a.after)
        ),
    };
}

/// Whether a value holds multi-line text somewhere (a cloud-init seed, a script).
fn has_text(v: &Option<serde_json::Value>) -> bool {
    v.as_ref()
        .is_some_and(|v| leaves(v, "").iter().any(|(_, l)| is_text(l)))
}

fn is_text(v: &serde_json::Value) -> bool {
    v.as_str().is_some_and(|s| s.contains('\n'))
}

/// A value's leaves with their dotted paths (`generated.sha256`); arrays count as leaves.
fn leaves(v: &serde_json::Value, path: &str) -> Vec<(String, serde_json::Value)> {
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

/// An attribute holding multi-line text, leaf by leaf: short leaves as `old → new`, text as a
/// unified diff (or the whole text, indented, when it is new or gone).
fn text_attribute(out: &mut String, a: &AttributeChange, forces: &str) {
    let split = |v: &Option<serde_json::Value>| -> Vec<(String, serde_json::Value)> {
        v.as_ref().map(|v| leaves(v, "")).unwrap_or_default()
    };
    let (before, after) = (split(&a.before), split(&a.after));
    let mut paths: Vec<&String> = before.iter().chain(after.iter()).map(|(p, _)| p).collect();
    paths.sort();
    paths.dedup();
    let find = |side: &[(String, serde_json::Value)], path: &str| {
        side.iter().find(|(p, _)| p == path).map(|(_, v)| v.clone())
    };
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
        let text = |v: &Option<serde_json::Value>| {
            v.as_ref()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        };
        if old.as_ref().is_some_and(is_text) || new.as_ref().is_some_and(is_text) {
            let _ = writeln!(out, "      {name}:{forces}");
            let (old, new) = (text(&old), text(&new));
            let diff = similar::TextDiff::from_lines(&old, &new);
            let unified = diff
                .unified_diff()
                .context_radius(3)
                .missing_newline_hint(false)
                .to_string();
            // A hunk header says nothing when all of the text is new or gone.
            let whole = old.is_empty() || new.is_empty();
            for line in unified.lines() {
                if whole && line.starts_with("@@") {
                    continue;
                }
                let _ = writeln!(out, "        {line}");
            }
        } else {
            let _ = match (&old, &new) {
                (None, _) => writeln!(out, "      {name}: {}", value(&new)),
                (_, None) => writeln!(out, "      {name}: {} → (none){forces}", value(&old)),
                _ => writeln!(
                    out,
                    "      {name}: {} → {}{forces}",
                    value(&old),
                    value(&new)
                ),
            };
        }
    }
}

pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "No changes. The providers match plan `{}` ({} resource{} up to date).",
            plan.name,
            plan.unchanged,
            if plan.unchanged == 1 { "" } else { "s" }
        );
        return out;
    }
    let _ = writeln!(out, "Plan `{}` will make these changes:\n", plan.name);
    for change in &plan.changes {
        let mut head = format!("  {} {}", symbol(change.action), change.id);
        if let Some(reason) = &change.reason {
            let _ = write!(head, ": {reason}");
        }
        if let Some(cost) = cost(change) {
            let _ = write!(head, " ({cost})");
        }
        let _ = writeln!(out, "{head}");
        let width = change
            .attributes
            .iter()
            .map(|a| a.name.len() + 1)
            .max()
            .unwrap_or(0);
        if change.action != Action::Delete {
            for a in &change.attributes {
                attribute_line(&mut out, a, width, change.action);
            }
        }
        if !change.drift.is_empty() {
            let names: Vec<&str> = change.drift.iter().map(|a| a.name.as_str()).collect();
            let _ = writeln!(
                out,
                "      ! changed outside siteplan since it was applied: {}; this plan sets it back",
                names.join(", ")
            );
        }
    }
    let _ = writeln!(out, "\n{}", summary(plan));
    out
}

/// The plan's counts in one line: the footer of `human`, and all `-q` shows.
pub fn summary(plan: &Plan) -> String {
    if plan.is_empty() {
        return format!("No changes to plan `{}`.", plan.name);
    }
    format!(
        "Plan: {} to add, {} to change, {} to replace, {} to destroy.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    )
}
