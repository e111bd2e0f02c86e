//! kcli's `plan` entries: a plan that includes other plan files, as one graph.
//!
//! `name: {type: plan, file: sub/plan.yml}` loads the file as kcli runs it: with its own
//! parameters (its block and default files) under the including plan's, which it inherits; its
//! entries join the including plan's, under the same plan name. Paths in the included plan
//! (scripts, origin files, images given as `./` paths) are relative to its own directory, as
//! kcli, which changes into it, reads them. `url:` (with an optional `sha256:` pin) fetches the
//! plan instead (`remote`), with what it names beside it.

use std::path::{Path, PathBuf};

use super::model::{EntryKind, FileSource, Vm};
use super::yaml::{Node, Value};
use crate::diagnostics::{Diagnostics, Problem, Span};

/// How deep plans may include plans: a plan including itself stops here.
pub const MAX_DEPTH: usize = 8;

/// One `type: plan` entry.
#[derive(Debug)]
pub struct Include {
    pub name: String,
    pub span: Span,
    pub source: Source,
}

/// Where an included plan is read from.
#[derive(Debug)]
pub enum Source {
    /// A file, relative to the including plan's directory.
    File(PathBuf),
    /// A URL (`remote::plan_url`), with the SHA-256 its text must have, if pinned.
    Url { url: String, pin: Option<String> },
}

/// Takes the `type: plan` entries out of the plan's tree, returning what they include. Those
/// that cannot be followed are reported.
pub fn split(root: &mut Node, d: &mut Diagnostics) -> Vec<Include> {
    let Value::Map(entries) = &mut root.value else {
        return Vec::new();
    };
    let mut includes = Vec::new();
    entries.retain(|(key, value)| {
        let is_plan = value
            .get("type")
            .and_then(Node::key_text)
            .is_some_and(|t| t == "plan");
        if !is_plan {
            return true;
        }
        let name = key.key_text().unwrap_or_default();
        let text = |k: &str| {
            value
                .get(k)
                .and_then(Node::key_text)
                .filter(|t| !t.is_empty())
        };
        match (text("file"), text("url")) {
            (file, Some(url)) => match super::remote::plan_url(&url, file.as_deref()) {
                Ok(url) => {
                    let pin = text("sha256").map(|p| p.trim_start_matches("sha256:").to_string());
                    match pin {
                        Some(pin)
                            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) =>
                        {
                            d.push(
                                Problem::error("plan::bad-checksum", "not a SHA-256 digest")
                                    .label(key.span, "its `sha256` is not 64 hexadecimal digits"),
                            )
                        }
                        pin => includes.push(Include {
                            name,
                            span: key.span,
                            source: Source::Url { url, pin },
                        }),
                    }
                }
                Err(why) => d.push(
                    Problem::error(
                        "plan::included-url",
                        format!("plan `{name}` cannot be fetched: {why}"),
                    )
                    .label(key.span, "a plan from a URL")
                    .help(
                        "give an http(s) URL (a plan file, or a directory with a \
                         kcli_plan.yml), or name a local plan with `file:` alone",
                    ),
                ),
            },
            (Some(file), None) => {
                let mut file = PathBuf::from(file);
                // kcli: a directory means its kcli_plan.yml.
                if file.extension().is_none() {
                    file.push("kcli_plan.yml");
                }
                includes.push(Include {
                    name,
                    span: key.span,
                    source: Source::File(file),
                });
            }
            (None, None) => d.push(
                Problem::error(
                    "plan::included-nothing",
                    format!("plan `{name}` names no plan file"),
                )
                .label(key.span, "no `file`")
                .help(
                    "add `file: path/to/plan.yml`, relative to this plan, or `url:` (http(s), \
                     with `sha256:` to pin it)",
                ),
            ),
        }
        false
    });
    includes
}

/// Makes the relative paths of a VM read from an included plan relative to the including
/// plan's directory: `dir` is the included plan's directory, seen from there.
pub fn rebase(kind: &mut EntryKind, dir: &Path) {
    if dir.as_os_str().is_empty() {
        return;
    }
    let moved = |path: &str| -> Option<String> {
        let relative = !path.starts_with('/') && !path.starts_with("~/") && !path.contains("://");
        relative.then(|| dir.join(path).display().to_string())
    };
    match kind {
        EntryKind::Vm(vm) => rebase_vm(vm, &moved),
        EntryKind::Image(image) => {
            if let Some(url) = image
                .url
                .as_deref()
                .filter(|u| u.starts_with("./") || u.starts_with("../"))
            {
                image.url = moved(url).map(|u| match u.starts_with("../") || u.starts_with('/') {
                    true => u,
                    false => format!("./{u}"),
                });
            }
        }
        _ => {}
    }
}

fn rebase_vm(vm: &mut Vm, moved: &dyn Fn(&str) -> Option<String>) {
    for script in &mut vm.scripts {
        if let Some(path) = moved(script) {
            *script = path;
        }
    }
    for file in &mut vm.files {
        if let FileSource::Origin(origin) = &mut file.source {
            if let Some(path) = moved(origin) {
                *origin = path;
            }
        }
    }
}
