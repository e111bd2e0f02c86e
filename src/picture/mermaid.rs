//! The picture as a Mermaid flowchart, which GitHub and GitLab draw in a comment: a subgraph
//! per place, networks as stadiums, VMs as boxes, disks and pools as cylinders, each coloured
//! by its mark (the same colours as the SVG). A place with many VMs stays readable: past
//! `COLLAPSE_PAST` VMs, those the change leaves alone are drawn as one box per set of networks
//! they sit on (`12 unchanged VMs`), without their disks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::{Mark, Node, Picture, Shape};

/// The VMs a place may show one by one before its unchanged ones are collapsed.
pub const COLLAPSE_PAST: usize = 12;

/// Text for a Mermaid label in quotes: its own entity codes for what would end the label.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("#quot;"),
            '<' => out.push_str("#lt;"),
            '>' => out.push_str("#gt;"),
            '#' => out.push_str("#35;"),
            '&' => out.push_str("#amp;"),
            '`' => out.push_str("#96;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn label(node: &Node) -> String {
    let mut lines: Vec<String> = node.lines().iter().map(|l| esc(l)).collect();
    if let Some(why) = &node.why {
        lines.push(format!("<i>{}</i>", esc(why)));
    }
    lines.join("<br/>")
}

fn shaped(id: &str, shape: Shape, label: &str) -> String {
    match shape {
        Shape::Network => format!("{id}([\"{label}\"])"),
        Shape::Disk | Shape::Pool => format!("{id}[(\"{label}\")]"),
        Shape::Vm | Shape::Other => format!("{id}[\"{label}\"]"),
    }
}

/// The picture as a Mermaid flowchart (without the fence).
pub fn mermaid(picture: &Picture) -> String {
    let mut out = String::from("flowchart TB\n");
    // Each node drawn, by key, and the id it is drawn as (a collapsed VM: its group's).
    let mut drawn: BTreeMap<&str, String> = BTreeMap::new();
    let mut classes: BTreeMap<Mark, Vec<String>> = BTreeMap::new();
    let mut externals = Vec::new();
    for (p, place) in picture.places.iter().enumerate() {
        let members: Vec<(usize, &Node)> = picture
            .nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| &n.place == place)
            .collect();
        let vms = members.iter().filter(|(_, n)| n.shape == Shape::Vm).count();
        let collapse = vms > COLLAPSE_PAST;
        // Collapsed: the unchanged VMs, by the networks they sit on.
        let mut groups: BTreeMap<BTreeSet<&str>, Vec<&Node>> = BTreeMap::new();
        let mut hidden: BTreeSet<&str> = BTreeSet::new();
        if collapse {
            for (_, node) in &members {
                if node.shape == Shape::Vm && node.mark == Mark::Unchanged {
                    let networks: BTreeSet<&str> = picture
                        .links
                        .iter()
                        .filter(|l| l.to == node.key)
                        .map(|l| l.from.as_str())
                        .collect();
                    groups.entry(networks).or_default().push(node);
                    hidden.insert(node.key.as_str());
                }
            }
            // Their disks are left out with them.
            for link in &picture.links {
                if hidden.contains(link.from.as_str()) {
                    hidden.insert(link.to.as_str());
                }
            }
            // ...unless a disk is changed, or another VM shown uses it.
            for (_, node) in &members {
                if node.shape == Shape::Disk && node.mark != Mark::Unchanged {
                    hidden.remove(node.key.as_str());
                }
                if node.shape == Shape::Pool {
                    hidden.remove(node.key.as_str());
                }
            }
        }
        let _ = writeln!(out, "  subgraph p{p}[\"{}\"]", esc(place));
        for (i, node) in &members {
            if hidden.contains(node.key.as_str()) {
                continue;
            }
            let id = format!("n{i}");
            let _ = writeln!(out, "    {}", shaped(&id, node.shape, &label(node)));
            if node.external {
                externals.push(id.clone());
            } else {
                classes.entry(node.mark).or_default().push(id.clone());
            }
            drawn.insert(node.key.as_str(), id);
        }
        for (g, vms) in groups.values().enumerate() {
            let id = format!("p{p}g{g}");
            let mut names: Vec<String> = vms.iter().take(6).map(|n| esc(&n.name)).collect();
            if vms.len() > names.len() {
                names.push(format!("and {} more", vms.len() - names.len()));
            }
            let _ = writeln!(
                out,
                "    {id}[\"{} unchanged VMs<br/><i>{}</i>\"]",
                vms.len(),
                names.join(", ")
            );
            classes.entry(Mark::Unchanged).or_default().push(id.clone());
            for vm in vms {
                drawn.insert(vm.key.as_str(), id.clone());
            }
        }
        out.push_str("  end\n");
    }
    let mut lines = BTreeSet::new();
    for link in &picture.links {
        if let (Some(from), Some(to)) = (drawn.get(link.from.as_str()), drawn.get(link.to.as_str()))
        {
            if from != to {
                lines.insert((from.clone(), to.clone()));
            }
        }
    }
    for (from, to) in lines {
        let _ = writeln!(out, "  {from} --- {to}");
    }
    for mark in Mark::ALL {
        let (fill, stroke) = mark.colours();
        let _ = writeln!(
            out,
            "  classDef {} fill:{fill},stroke:{stroke},color:#202124",
            mark.as_str()
        );
    }
    out.push_str("  classDef external fill:#ffffff,stroke:#5f6368,stroke-dasharray:4 3\n");
    for (mark, ids) in classes {
        let _ = writeln!(out, "  class {} {}", ids.join(","), mark.as_str());
    }
    if !externals.is_empty() {
        let _ = writeln!(out, "  class {} external", externals.join(","));
    }
    out
}
