//! The terminal diff: Terraform's symbols, a reason for every replace and delete, and how
//! disruptive each change is.

use std::fmt::Write;

use super::{address, has_text, is_text, leaves, summary, symbol, unified, value, Impact};
use crate::plan::{Action, AttributeChange, Plan};
use crate::provider::Disruption;

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
            for line in unified(&old, &new).lines() {
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
        let mut head = format!("  {} {}", symbol(change.action), address(change));
        if let Some(reason) = &change.reason {
            let _ = write!(head, ": {reason}");
        }
        if let Some(cost) = Impact::of(change).words() {
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
