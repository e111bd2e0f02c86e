//! The terminal diff: Terraform's symbols, a reason for every replace and delete, and how
//! disruptive each change is.

use std::fmt::Write;

use super::{
    address, change_symbol, changed_leaves, for_people, has_text, shown_name, shown_value, summary,
    value, Impact, Leaf,
};
use crate::plan::model::spec::Spec;
use crate::plan::model::Disruption;
use crate::plan::{Action, AttributeChange, Change, Plan};

fn attribute_line(out: &mut String, a: &AttributeChange, width: usize, action: Action) {
    let forces = if action == Action::Replace && a.disruption == Disruption::Replace {
        "  # forces replacement"
    } else {
        ""
    };
    let a = &for_people(a);
    if has_text(&a.before) || has_text(&a.after) {
        return text_attribute(out, a, forces);
    }
    let name = format!("{}:", shown_name(&a.name));
    let _ = match action {
        Action::Create => writeln!(
            out,
            "      {name:width$} {}",
            shown_value(&a.name, &a.after)
        ),
        Action::Delete => writeln!(
            out,
            "      {name:width$} {}",
            shown_value(&a.name, &a.before)
        ),
        _ => writeln!(
            out,
            "      {name:width$} {} → {}{forces}",
            shown_value(&a.name, &a.before),
            shown_value(&a.name, &a.after)
        ),
    };
}

/// An attribute holding multi-line text, leaf by leaf: short leaves as `old → new`, text as a
/// unified diff (or the whole text, indented, when it is new or gone).
fn text_attribute(out: &mut String, a: &AttributeChange, forces: &str) {
    for leaf in changed_leaves(a) {
        let _ = match leaf {
            Leaf::Text { name, diff } => {
                let _ = writeln!(out, "      {name}:{forces}");
                diff.lines()
                    .try_for_each(|line| writeln!(out, "        {line}"))
            }
            Leaf::Value {
                name,
                old: None,
                new,
            } => writeln!(out, "      {name}: {}", value(&new)),
            Leaf::Value {
                name,
                old,
                new: None,
            } => writeln!(out, "      {name}: {} → (none){forces}", value(&old)),
            Leaf::Value { name, old, new } => writeln!(
                out,
                "      {name}: {} → {}{forces}",
                value(&old),
                value(&new)
            ),
        };
    }
}

/// For a running VM whose change takes effect when it restarts: that this run restarts it
/// (`--restart`), which the plan says before it is applied.
fn restarted_now(change: &Change) -> &'static str {
    let runs = change.desired.as_ref().is_some_and(Spec::runs);
    if change.restart.is_some() && runs && Impact::of(change) == Impact::Reboot {
        ": restarted by this run"
    } else {
        ""
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
        let mut head = format!("  {} {}", change_symbol(change), address(change));
        if let Some(reason) = &change.reason {
            let _ = write!(head, ": {reason}");
        }
        if let Some(cost) = Impact::of(change).words() {
            let _ = write!(head, " ({cost}{})", restarted_now(change));
        }
        let _ = writeln!(out, "{head}");
        let width = change
            .attributes
            .iter()
            .map(|a| shown_name(&a.name).len() + 1)
            .max()
            .unwrap_or(0);
        if change.action != Action::Delete {
            for a in &change.attributes {
                attribute_line(&mut out, a, width, change.action);
            }
        }
        if !change.pending_restart.is_empty() {
            if change.action != Action::Restart {
                let _ = writeln!(
                    out,
                    "      and, saved by an earlier apply, taken when it restarts \
                     (it runs with the left side):"
                );
            }
            let width = change
                .pending_restart
                .iter()
                .map(|a| shown_name(&a.name).len() + 1)
                .max()
                .unwrap_or(0);
            for a in &change.pending_restart {
                attribute_line(&mut out, a, width, Action::Update);
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
