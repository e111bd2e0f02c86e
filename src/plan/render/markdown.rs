//! The diff as a pull-request comment: a one-line summary, a warning when anything is deleted,
//! replaced or loses data, a table of changes, and each resource's details folded away, with
//! multi-line values as unified diffs (GitHub, GitLab and Gitea render all of it).

use std::fmt::Write;

use super::{
    address, change_symbol, changed_leaves, for_people, is_text, leaves, shown_name, shown_value,
    summary, value, Impact, Leaf,
};
use crate::plan::model::Disruption;
use crate::plan::{Action, AttributeChange, Change, Plan};

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// A code block fence longer than any run of backticks in `text`.
fn fence(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// The attribute's lines for a ```diff block: `-` before, `+` after, unified diffs for text.
fn diff_lines(out: &mut String, a: &AttributeChange, action: Action) {
    let forces = if action == Action::Replace && a.disruption == Disruption::Replace {
        "  # forces replacement"
    } else {
        ""
    };
    let a = &for_people(a);
    let split =
        |v: &Option<serde_json::Value>| v.as_ref().map(|v| leaves(v, "")).unwrap_or_default();
    let (before, after) = (split(&a.before), split(&a.after));
    let has_text = before.iter().chain(after.iter()).any(|(_, v)| is_text(v));
    if !has_text {
        let name = shown_name(&a.name);
        if a.before.is_some() {
            let _ = writeln!(out, "- {name}: {}", shown_value(&a.name, &a.before));
        }
        if a.after.is_some() {
            let _ = writeln!(out, "+ {name}: {}{forces}", shown_value(&a.name, &a.after));
        }
        return;
    }
    for leaf in changed_leaves(a) {
        match leaf {
            Leaf::Text { name, diff } => {
                let _ = writeln!(out, "  {name}:{forces}");
                for line in diff.lines() {
                    if line.starts_with("@@") {
                        let _ = writeln!(out, "{line}");
                        continue;
                    }
                    // `-`/`+` first, so the block's diff colouring applies.
                    let (sign, rest) = line.split_at(line.len().min(1));
                    let _ = writeln!(out, "{sign}     {rest}");
                }
            }
            Leaf::Value { name, old, new } => {
                if old.is_some() {
                    let _ = writeln!(out, "- {name}: {}", value(&old));
                }
                if new.is_some() {
                    let _ = writeln!(out, "+ {name}: {}{forces}", value(&new));
                }
            }
        }
    }
}

fn details(out: &mut String, change: &Change) {
    let mut title = format!(
        "<code>{} {}</code>: {}",
        change_symbol(change),
        address(change),
        match change.action {
            Action::Create => "create",
            Action::Update if change.adopt => "adopt",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Restart => "waits for a restart",
        }
    );
    if let Some(words) = Impact::of(change).words() {
        let _ = write!(title, " ({words})");
    }
    let _ = writeln!(out, "<details><summary>{title}</summary>\n");
    if let Some(reason) = &change.reason {
        let _ = writeln!(out, "{}\n", cell(reason));
    }
    if !change.drift.is_empty() {
        let names: Vec<String> = change
            .drift
            .iter()
            .map(|a| format!("`{}`", a.name))
            .collect();
        let _ = writeln!(
            out,
            "Changed outside siteplan since it was applied: {}. This plan sets it back.\n",
            names.join(", ")
        );
    }
    if change.action != Action::Delete && !change.attributes.is_empty() {
        let mut block = String::new();
        for a in &change.attributes {
            diff_lines(&mut block, a, change.action);
        }
        let fence = fence(&block);
        let _ = writeln!(out, "{fence}diff\n{block}{fence}\n");
    }
    if !change.pending_restart.is_empty() {
        let mut block = String::new();
        for a in &change.pending_restart {
            diff_lines(&mut block, a, Action::Update);
        }
        let fence = fence(&block);
        let _ = writeln!(
            out,
            "Saved by an earlier apply, taken when the VM restarts (`-` is what it runs with):\n\n\
             {fence}diff\n{block}{fence}\n"
        );
    }
    let _ = writeln!(out, "</details>\n");
}

/// The report with the lab's picture: a Mermaid diagram, which GitHub and GitLab draw, with
/// the same marks as the table.
pub fn with_picture(plan: &Plan, picture: &crate::picture::Picture) -> String {
    let mut out = markdown(plan);
    let marks: Vec<String> = picture
        .counts()
        .iter()
        .map(|(mark, n)| format!("{n} {}", mark.legend()))
        .collect();
    let _ = write!(
        out,
        "\n<details open><summary>The lab, with the change drawn on it ({})</summary>\n\n\
         ```mermaid\n{}```\n\n</details>\n",
        marks.join(", "),
        crate::picture::mermaid::mermaid(picture)
    );
    out
}

pub fn markdown(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.is_empty() {
        let _ = writeln!(
            out,
            "### `plan diff` for `{}`: no changes\n\nThe providers match the plan ({} resource{} up to date).",
            plan.name,
            plan.unchanged,
            if plan.unchanged == 1 { "" } else { "s" }
        );
        return out;
    }
    let _ = writeln!(
        out,
        "### `plan diff` for `{}`: {}\n",
        plan.name,
        summary(plan)
            .trim_start_matches("Plan: ")
            .trim_end_matches('.')
    );

    let destructive: Vec<&Change> = plan
        .changes
        .iter()
        .filter(|c| matches!(c.action, Action::Delete | Action::Replace))
        .collect();
    let losing: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| Impact::of(c) == Impact::DataLoss)
        .map(|c| format!("`{}`", address(c)))
        .collect();
    if !destructive.is_empty() {
        let _ = writeln!(out, "> [!WARNING]");
        let _ = writeln!(
            out,
            "> This plan deletes or replaces {} resource{}.{}",
            destructive.len(),
            if destructive.len() == 1 { "" } else { "s" },
            if losing.is_empty() {
                String::new()
            } else {
                format!(" Data is lost in: {}.", losing.join(", "))
            }
        );
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "| | Resource | Action | Impact | Why |");
    let _ = writeln!(out, "|:-:|---|---|---|---|");
    for change in &plan.changes {
        let action = match change.action {
            Action::Create => "create",
            Action::Update if change.adopt => "adopt",
            Action::Update => "update",
            Action::Replace => "**replace**",
            Action::Delete => "**delete**",
            Action::Restart => "waits for a restart",
        };
        let impact = Impact::of(change).words().unwrap_or("");
        let mut why = change.reason.as_deref().map(cell).unwrap_or_default();
        if !change.drift.is_empty() {
            if !why.is_empty() {
                why.push_str("; ");
            }
            why.push_str("changed outside siteplan");
        }
        let _ = writeln!(
            out,
            "| `{}` | `{}` | {action} | {impact} | {why} |",
            change_symbol(change),
            address(change)
        );
    }
    let _ = writeln!(out);
    for change in &plan.changes {
        details(&mut out, change);
    }
    out
}
