//! The scripts and `origin` files a VM ships, rendered as kcli renders them: Jinja templates
//! that see the plan's parameters and `config_*` values, every key of the VM and its profile
//! (known to siteplan or not), and `name`; a file also sees its own entry's keys.
//!
//! `plan::intent` renders them when it builds a VM's seed; `check` renders them when the plan
//! is loaded, so that `plan validate` points into a script as it points into the plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::model::{EntryKind, FileSource, GuestFile, Manifest, Vm};
use super::template;
use crate::diagnostics::{Diagnostics, Problem, SourceText};

/// What a VM's scripts see: the plan's context, the VM's keys over it, and its name.
pub fn vm_variables(
    manifest: &Manifest,
    name: &str,
    vm: &Vm,
) -> BTreeMap<String, serde_json::Value> {
    let mut vars = manifest.context.clone();
    vars.extend(vm.variables.clone());
    vars.insert("name".into(), name.into());
    vars
}

/// What one of a VM's files sees: the VM's variables with the file entry's keys over them.
pub fn file_variables(
    vm_vars: &BTreeMap<String, serde_json::Value>,
    file: &GuestFile,
) -> BTreeMap<String, serde_json::Value> {
    let mut vars = vm_vars.clone();
    vars.extend(file.variables.clone());
    vars
}

/// Renders a script or file's `text` read from `shown` (its name in messages): what the guest
/// gets, and where secrets are in it.
pub fn render(
    text: &str,
    shown: &str,
    vars: &BTreeMap<String, serde_json::Value>,
) -> Result<template::Rendering, Problem> {
    template::render_guest_file(text, vars)
        .map_err(|p| p.in_source(SourceText::new(shown, text.to_string())))
}

/// A one-line account of a rendering problem, for callers that report strings: the message,
/// the file and line, and the help.
pub fn one_line(problem: &Problem) -> String {
    let place = match (&problem.source, problem.labels.first()) {
        (Some(source), Some((span, _))) => {
            let line = source.text[..span.offset.min(source.text.len())]
                .matches('\n')
                .count()
                + 1;
            format!(" at {}:{line}", source.name)
        }
        (Some(source), None) => format!(" in {}", source.name),
        _ => String::new(),
    };
    match &problem.help {
        Some(help) => format!("{}{place} ({help})", problem.message),
        None => format!("{}{place}", problem.message),
    }
}

/// Where a path the plan names is, from the plan's directory `base` (`~/` from the home).
pub fn locate(path: &str, base: &Path) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => base.join(path),
    }
}

/// Renders every script and `origin` file of every VM that can be read here, reporting what
/// fails. A file that cannot be read is left to the plan, which says so when it needs it.
pub fn check(manifest: &Manifest, base: &Path, d: &mut Diagnostics) {
    for entry in &manifest.entries {
        let EntryKind::Vm(vm) = &entry.kind else {
            continue;
        };
        let vars = vm_variables(manifest, &entry.name, vm);
        let mut one = |path: &str, vars: &BTreeMap<String, serde_json::Value>| {
            let file = locate(path, base);
            // A file the plan may not read was reported at its line when the plan was read.
            let Ok(text) = manifest.access.read_text(&file) else {
                return;
            };
            if let Err(problem) = render(&text, &file.display().to_string(), vars) {
                let message = format!("vm `{}`: {}", entry.name, problem.message);
                d.push(Problem { message, ..problem });
            }
        };
        for script in &vm.scripts {
            one(script, &vars);
        }
        for file in &vm.files {
            if let (FileSource::Origin(origin), true) = (&file.source, file.render) {
                one(origin, &file_variables(&vars, file));
            }
        }
    }
}
