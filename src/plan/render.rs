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
    let _ = writeln!(
        out,
        "\nPlan: {} to add, {} to change, {} to replace, {} to destroy.",
        plan.count(Action::Create),
        plan.count(Action::Update),
        plan.count(Action::Replace),
        plan.count(Action::Delete)
    );
    out
}
