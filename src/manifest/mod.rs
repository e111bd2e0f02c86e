//! Loading a plan: parameters, templating, YAML, typed entries, validation and the graph.
//!
//! `load` is the one entry point. It never stops at the first problem: everything that can be
//! checked is checked, and the caller gets either a valid plan (with warnings) or every problem.

pub mod format;
pub mod keys;
pub mod model;
pub mod params;
pub mod read;
pub mod revision;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::Path;
use std::sync::Arc;

pub use params::Overrides;

use crate::diagnostics::{Diagnostics, Problem, SourceText};
use crate::graph::{self, PlanGraph};
use model::Manifest;

/// A plan that passed validation.
#[derive(Debug)]
pub struct Loaded {
    pub manifest: Manifest,
    pub graph: PlanGraph,
    /// The rendered text, which spans point into.
    pub source: SourceText,
    pub warnings: Vec<Problem>,
    /// The plan file's text, before templating.
    pub text: String,
}

/// Why a plan could not be loaded: every problem found, and the text they point into.
#[derive(Debug)]
pub struct LoadFailure {
    pub source: SourceText,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Warnings (kcli keys siteplan ignores) become errors.
    pub strict: bool,
    /// A file that declares nothing is taken (`plan destroy`, which deletes what the plan's
    /// marks name whatever the file holds).
    pub declaring_nothing: bool,
}

/// Reads the plan file at `path` and loads it.
///
/// A file that declares nothing to make (only parameters or profiles, or nothing once
/// templated) is refused, as kcli refuses it: applying it would delete everything its plan
/// made. (An empty text is still a plan to `load_text`: a destroy whose file is gone, or the
/// first version of a file in `diff --against`.)
pub fn load(path: &Path, overrides: &Overrides, options: Options) -> Result<Loaded, LoadFailure> {
    let text = read_plan(path)?;
    let loaded = load_text(&text, path, overrides, options)?;
    let declares_nothing = loaded
        .manifest
        .entries
        .iter()
        .all(|e| matches!(e.kind, model::EntryKind::Profile));
    if declares_nothing && !options.declaring_nothing {
        return Err(LoadFailure {
            source: loaded.source,
            problems: vec![Problem::error(
                "plan::empty",
                format!(
                    "{} declares no VM, network, pool, image or disk: it is not a plan",
                    path.display()
                ),
            )
            .help(
                "is it a parameter file or a profiles file? Pass parameters with --paramfile. \
                 Applying a plan that declares nothing would delete everything the plan made; \
                 to do that, use `plan destroy` on it",
            )],
        });
    }
    Ok(loaded)
}

/// Renders the plan file's template, for `plan render`.
pub fn render(path: &Path, overrides: &Overrides) -> Result<String, LoadFailure> {
    let text = read_plan(path)?;
    let original = original_source(path, &text);
    let mut d = Diagnostics::default();
    let params = params::resolve(&text, path, overrides, &mut d);
    if d.has_errors() {
        return Err(fail(original, d));
    }
    template::render(&text, &values(&params)).map_err(|p| {
        d.push(p);
        fail(original, d)
    })
}

fn read_plan(path: &Path) -> Result<String, LoadFailure> {
    std::fs::read_to_string(path).map_err(|e| LoadFailure {
        source: original_source(path, ""),
        problems: vec![Problem::error(
            "plan::read",
            format!("cannot read {}: {e}", path.display()),
        )],
    })
}

fn original_source(path: &Path, text: &str) -> SourceText {
    SourceText {
        name: path.display().to_string(),
        text: Arc::new(text.to_string()),
    }
}

fn values(
    params: &std::collections::BTreeMap<String, params::Param>,
) -> std::collections::BTreeMap<String, serde_json::Value> {
    params
        .iter()
        .map(|(k, p)| (k.clone(), p.value.clone()))
        .collect()
}

fn fail(source: SourceText, d: Diagnostics) -> LoadFailure {
    LoadFailure {
        source,
        problems: d.into_sorted(),
    }
}

/// Loads plan text as if read from `path` (which locates the default parameter file).
pub fn load_text(
    text: &str,
    path: &Path,
    overrides: &Overrides,
    options: Options,
) -> Result<Loaded, LoadFailure> {
    let original = original_source(path, text);
    let mut d = Diagnostics::default();

    let params = params::resolve(text, path, overrides, &mut d);
    if d.has_errors() {
        return Err(fail(original, d));
    }
    let values = values(&params);
    let rendered = match template::render(text, &values) {
        Ok(rendered) => rendered,
        Err(problem) => {
            d.push(problem);
            return Err(fail(original, d));
        }
    };

    // Problems from here on point into the rendered text; say so when it differs from the file.
    let source = if rendered == text {
        original
    } else {
        SourceText {
            name: format!("{} (after templating; see `plan render`)", path.display()),
            text: Arc::new(rendered),
        }
    };

    let root = match yaml::parse(&source.text) {
        Ok((root, problems)) => {
            for p in problems {
                params::report_yaml(p, 0, &mut d);
            }
            root
        }
        Err(problem) => {
            params::report_yaml(problem, 0, &mut d);
            return Err(fail(source, d));
        }
    };

    let read = read::read_entries(&root, &mut d);
    let manifest = Manifest {
        parameters: values,
        entries: read.entries,
    };
    validate::validate(&manifest, &mut d);
    let graph = graph::build_skipping(&manifest, &read.unreadable, &mut d);

    if options.strict {
        d.escalate_warnings();
    }
    if d.has_errors() {
        return Err(fail(source, d));
    }
    Ok(Loaded {
        manifest,
        graph,
        source,
        warnings: d.into_sorted(),
        text: text.to_string(),
    })
}
