//! Loading a plan: parameters, templating, YAML, typed entries, validation and the graph.
//!
//! `load` is the one entry point. It never stops at the first problem: everything that can be
//! checked is checked, and the caller gets either a valid plan (with warnings) or every problem.

pub mod access;
pub mod format;
pub mod guestfiles;
pub mod include;
pub mod kcli;
pub mod keys;
pub mod model;
pub mod named;
pub mod params;
pub mod read;
pub mod remote;
pub mod revision;
pub mod template;
pub mod validate;
pub mod yaml;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use params::Overrides;

use crate::diagnostics::{Diagnostics, Problem, SourceText};
use crate::graph::{self, PlanGraph};
use kcli::KcliConfig;
use model::Manifest;
use named::MISSING_FILE;
use std::collections::BTreeMap;

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
    /// Files read besides the plan: parameter files, base plans, the kcli configuration.
    pub read: Vec<PathBuf>,
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
    if options.declaring_nothing {
        // `plan destroy`: neither emptiness nor the VMs' scripts matter to it.
        return Ok(loaded);
    }
    let loaded = refuse_empty(loaded, path)?;
    check_guest_files(loaded, path, options)
}

fn refuse_empty(loaded: Loaded, path: &Path) -> Result<Loaded, LoadFailure> {
    let declares_nothing = loaded
        .manifest
        .entries
        .iter()
        .all(|e| matches!(e.kind, model::EntryKind::Profile));
    if !declares_nothing {
        return Ok(loaded);
    }
    Err(LoadFailure {
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
    })
}

/// Renders the VMs' scripts and files, so that their template errors are found now; a missing
/// one is an error here.
fn check_guest_files(
    mut loaded: Loaded,
    path: &Path,
    options: Options,
) -> Result<Loaded, LoadFailure> {
    let mut d = Diagnostics::default();
    let (missing, warnings) = std::mem::take(&mut loaded.warnings)
        .into_iter()
        .partition(|p| p.code == MISSING_FILE);
    loaded.warnings = warnings;
    for mut problem in missing {
        problem.severity = crate::diagnostics::Severity::Error;
        d.push(problem);
    }
    let base = path.parent().unwrap_or(Path::new("."));
    guestfiles::check(&loaded.manifest, base, &mut d);
    if options.strict {
        d.escalate_warnings();
    }
    if d.has_errors() {
        let mut problems = loaded.warnings;
        problems.extend(d.into_sorted());
        return Err(LoadFailure {
            source: loaded.source,
            problems,
        });
    }
    loaded.warnings.extend(d.into_sorted());
    Ok(loaded)
}

/// Renders the plan file's template, for `plan render`: secrets the template writes are shown
/// as `(sensitive)`.
pub fn render(path: &Path, overrides: &Overrides) -> Result<String, LoadFailure> {
    let text = read_plan(path)?;
    let original = original_source(path, &text);
    let mut d = Diagnostics::default();
    let kcli = KcliConfig::load(overrides.no_kcli_config);
    let name = plan_name(path, overrides);
    let access = access::FileAccess::for_plan(path, &overrides.allow_read);
    let (params, _) = params::resolve(&text, path, &name, overrides, &access, &mut d);
    if d.has_errors() {
        return Err(fail(original, d));
    }
    template::render(&text, &context(&params, &kcli, &name))
        .map(|rendering| {
            let named = yaml::parse(&rendering.text)
                .map(|(root, _)| root.secret_spans())
                .unwrap_or_default();
            rendering.hiding(named).shown()
        })
        .map_err(|p| {
            d.push(p);
            fail(original, d)
        })
}

fn read_plan(path: &Path) -> Result<String, LoadFailure> {
    access::read_given(path).map_err(|refused| {
        let mut problem = Problem::error("plan::read", refused.message);
        // kcli's default plan file, read when no file is given.
        if refused.missing && path == Path::new(DEFAULT_PLAN_FILE) {
            problem = problem.help(format!(
                "name the plan file (as in `plan diff lab.yml`): with none, {DEFAULT_PLAN_FILE} \
                 in the current directory is read, as kcli does"
            ));
        }
        LoadFailure {
            source: original_source(path, ""),
            problems: vec![problem],
        }
    })
}

fn original_source(path: &Path, text: &str) -> SourceText {
    SourceText::new(path.display().to_string(), text.to_string())
}

fn values(params: &BTreeMap<String, params::Param>) -> BTreeMap<String, serde_json::Value> {
    params
        .iter()
        .map(|(k, p)| (k.clone(), p.value.clone()))
        .collect()
}

/// The plan's name as its templates see it (`{{ plan }}`, `NAME_default.yml`): `--name`, else
/// the one the file gives (`default_plan_name`).
fn plan_name(path: &Path, overrides: &Overrides) -> String {
    overrides
        .name
        .clone()
        .unwrap_or_else(|| default_plan_name(path))
}

/// kcli's name for the plan file every kcli plan directory holds: it tells no lab apart.
pub const KCLI_PLAN_FILE: &str = "kcli_plan";
/// The plan file read when a command is given none, as kcli reads it.
pub const DEFAULT_PLAN_FILE: &str = "kcli_plan.yml";

/// The name a plan file gives its plan when `--name` does not: the file's name without its
/// extension, except for kcli's `kcli_plan.yml`, which every kcli plan directory holds, so two
/// labs would be one plan: that one is named after its directory (`labs/ocp/kcli_plan.yml` is
/// plan `ocp`).
pub fn default_plan_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map_or_else(|| "plan".into(), |s| s.to_string_lossy().into_owned());
    if stem != KCLI_PLAN_FILE {
        return stem;
    }
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let directory = std::fs::canonicalize(&absolute)
        .ok()
        .and_then(|real| real.parent().map(Path::to_path_buf))
        .or_else(|| absolute.parent().map(Path::to_path_buf));
    directory
        .as_deref()
        .and_then(Path::file_name)
        .map_or(stem, |d| d.to_string_lossy().into_owned())
}

/// What the plan's template sees, as in kcli: the kcli configuration's `config_*` values and
/// the plan's name, under the parameters.
fn context(
    params: &BTreeMap<String, params::Param>,
    kcli: &KcliConfig,
    name: &str,
) -> BTreeMap<String, serde_json::Value> {
    let mut context = kcli.template_variables();
    context.insert("plan".into(), name.into());
    context.extend(values(params));
    context
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

    let kcli = KcliConfig::load(overrides.no_kcli_config);
    for broken in &kcli.broken {
        d.push(
            Problem::error(
                "plan::kcli-config",
                format!("cannot read the kcli configuration: {broken}"),
            )
            .help(format!(
                "fix the file, or leave the kcli configuration out with --no-kcli-config \
                     or {}=1",
                kcli::OFF_VARIABLE
            )),
        );
    }
    let access = access::FileAccess::for_plan(path, &overrides.allow_read);
    let reading = Reading {
        kcli: &kcli,
        access: &access,
        included: std::cell::Cell::new(0),
        fetch_deadline: std::cell::OnceCell::new(),
    };
    let Some(document) = document(text, path, overrides, &BTreeMap::new(), &reading, 0, &mut d)
    else {
        return Err(fail(original, d));
    };
    let Document {
        source,
        parameters,
        context,
        entries,
        unreadable,
        mut read,
        included,
    } = document;
    read.extend(kcli.read.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    read.retain(|file| seen.insert(file.clone()));

    let manifest = Manifest {
        parameters,
        context,
        entries,
        access,
    };
    // Each document was checked against its own text. Across included plans, the one graph
    // can still hold a cycle no single file shows: said without places, since its steps lie in
    // several files (the message names them all).
    let graph = if included {
        let mut across = Diagnostics::default();
        let graph = graph::build_skipping(&manifest, &unreadable, &mut across);
        for problem in across.into_sorted() {
            if problem.code == "plan::cycle" {
                d.push(Problem {
                    message: format!("{} (across included plans)", problem.message),
                    labels: Vec::new(),
                    ..problem
                });
            }
        }
        graph
    } else {
        validate::validate(&manifest, &mut d);
        graph::build_skipping(&manifest, &unreadable, &mut d)
    };

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
        read,
    })
}

/// One plan file read: its own entries and those of the plans it includes.
struct Document {
    source: SourceText,
    parameters: BTreeMap<String, serde_json::Value>,
    context: BTreeMap<String, serde_json::Value>,
    entries: Vec<model::Entry>,
    unreadable: Vec<String>,
    read: Vec<PathBuf>,
    /// It includes other plans.
    included: bool,
}

/// What reading a plan and the plans it includes shares: the kcli configuration, where files
/// may be read, and how many plans were included so far (bounded: plans that include the same
/// plans several times would otherwise multiply at each level).
struct Reading<'a> {
    kcli: &'a KcliConfig,
    access: &'a access::FileAccess,
    included: std::cell::Cell<usize>,
    /// Set at the first fetch of a plan included by URL.
    fetch_deadline: std::cell::OnceCell<std::time::Instant>,
}

impl Reading<'_> {
    /// When all the fetching of this load must be done by (`remote::FETCH_BUDGET` from the
    /// first fetch).
    fn deadline(&self) -> std::time::Instant {
        *self
            .fetch_deadline
            .get_or_init(|| std::time::Instant::now() + remote::FETCH_BUDGET)
    }
}

/// The scripts and `origin` files the VMs of `entries` name by relative paths, once each.
fn relative_files(entries: &[model::Entry]) -> Vec<String> {
    let mut named = Vec::new();
    for entry in entries {
        let model::EntryKind::Vm(vm) = &entry.kind else {
            continue;
        };
        let origins = vm.files.iter().filter_map(|f| match &f.source {
            model::FileSource::Origin(origin) => Some(origin),
            _ => None,
        });
        for name in vm.scripts.iter().chain(origins) {
            let relative =
                !name.starts_with('/') && !name.starts_with('~') && !name.contains("://");
            if relative && !named.contains(name) {
                named.push(name.clone());
            }
        }
    }
    named
}

/// At most this many included plans in one plan, all levels together.
const MAX_INCLUDED: usize = 64;

/// Reads one plan file's `text`: parameters (with `inherited` ones over its own, as an
/// including plan's are), template, YAML, entries, and the plans it includes. Problems go to
/// `d`; `None` when nothing more can be read.
fn document(
    text: &str,
    path: &Path,
    overrides: &Overrides,
    inherited: &BTreeMap<String, serde_json::Value>,
    reading: &Reading,
    depth: usize,
    d: &mut Diagnostics,
) -> Option<Document> {
    let (kcli, access) = (reading.kcli, reading.access);
    let name = plan_name(path, overrides);
    let (mut params, read) = params::resolve(text, path, &name, overrides, access, d);
    for (name, value) in inherited {
        params.insert(
            name.clone(),
            params::Param {
                value: value.clone(),
                origin: params::Origin::CommandLine,
            },
        );
    }
    if d.has_errors() {
        return None;
    }
    let context = context(&params, kcli, &name);
    let rendered = match template::render(text, &context) {
        Ok(rendered) => rendered,
        Err(problem) => {
            d.push(problem);
            return None;
        }
    };
    // Problems from here on point into the rendered text; say so when it differs from the file.
    let mut source = if rendered.text == text {
        original_source(path, text)
    } else {
        SourceText {
            name: format!("{} (after templating; see `plan render`)", path.display()),
            text: Arc::new(rendered.text.clone()),
            secrets: Arc::new(rendered.secrets.clone()),
        }
    };
    let mut root = match yaml::parse(&source.text) {
        Ok((root, problems)) => {
            for p in problems {
                params::report_yaml(p, 0, d);
            }
            root
        }
        Err(problem) => {
            params::report_yaml(problem, 0, d);
            return None;
        }
    };
    // The values of keys named like secrets are hidden too, as the plan wrote them.
    let mut hidden = source.secrets.as_ref().clone();
    hidden.extend(root.secret_spans());
    source.secrets = Arc::new(crate::secrets::merged(hidden));
    let includes = include::split(&mut root, d);
    named::refuse_unreadable(&root, path, access, d);
    let mut read_entries = read::read_entries(&root, kcli, d);
    if !rendered.secrets.is_empty() {
        show_secrets_where_they_are(&mut read_entries.entries, &rendered, kcli);
    }
    let mut document = Document {
        source,
        parameters: values(&params),
        context,
        entries: read_entries.entries,
        unreadable: read_entries.unreadable,
        read,
        included: !includes.is_empty(),
    };
    if !document.included {
        return Some(document);
    }
    let own = Manifest {
        parameters: document.parameters.clone(),
        context: document.context.clone(),
        entries: document.entries.clone(),
        access: access.clone(),
    };
    for inc in includes {
        include_plan(&mut document, &inc, path, reading, depth, d);
    }
    // This document's own checks, against its own text: what the included plans declare is
    // known here (and checked in their own texts), so references to it are not reported.
    let mut known = document.unreadable.clone();
    known.extend(
        document
            .entries
            .iter()
            .skip(own.entries.len())
            .map(|e| e.name.clone()),
    );
    validate::validate(&own, d);
    graph::build_skipping(&own, &known, d);
    Some(document)
}

/// Gives each VM of `entries` its free text as a reviewer may see it (`ShownText`), read from
/// the plan rendered with each secret its template wrote shown as `(sensitive)`.
fn show_secrets_where_they_are(
    entries: &mut [model::Entry],
    rendered: &template::Rendering,
    kcli: &KcliConfig,
) {
    // Its problems are the real text's, reported already.
    let mut ignored = Diagnostics::default();
    let shown = match yaml::parse(&rendered.shown()) {
        Ok((mut root, _)) => {
            include::split(&mut root, &mut ignored);
            read::read_entries(&root, kcli, &mut ignored).entries
        }
        Err(_) => Vec::new(),
    };
    for entry in entries {
        let model::EntryKind::Vm(vm) = &mut entry.kind else {
            continue;
        };
        let twin = shown.iter().find_map(|e| match &e.kind {
            model::EntryKind::Vm(twin) if e.name == entry.name => Some(&**twin),
            _ => None,
        });
        vm.shown = Some(model::ShownText::of(vm, twin));
    }
}

/// Reads the plan `inc` names into `document`, its problems pointing into its own text.
fn include_plan(
    including: &mut Document,
    inc: &include::Include,
    path: &Path,
    reading: &Reading,
    depth: usize,
    d: &mut Diagnostics,
) {
    let access = reading.access;
    let refuse_with = |d: &mut Diagnostics, message: String, help: Option<String>| {
        d.push(
            Problem::error("plan::included-plan", message)
                .label(inc.span, "included here")
                .help(help.unwrap_or_else(|| {
                    "`file` is a plan file (or a directory with a kcli_plan.yml), relative to \
                     this plan"
                        .into()
                })),
        )
    };
    let refuse = |d: &mut Diagnostics, message: String| refuse_with(d, message, None);
    if depth + 1 >= include::MAX_DEPTH {
        return refuse(
            d,
            format!(
                "plan `{}` includes plans more than {} deep: do the plans include each other?",
                inc.name,
                include::MAX_DEPTH
            ),
        );
    }
    reading.included.set(reading.included.get() + 1);
    if reading.included.get() > MAX_INCLUDED {
        return refuse(
            d,
            format!(
                "plan `{}` is one plan included too many: a plan may include at most \
                 {MAX_INCLUDED} plans, all levels together (do plans include the same plans \
                 several times?)",
                inc.name
            ),
        );
    }
    let plan_name = including
        .context
        .get("plan")
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_string();
    let (child_path, fetched) = match &inc.source {
        include::Source::File(file) => (path.parent().unwrap_or(Path::new(".")).join(file), None),
        include::Source::Url { url, pin } => {
            match remote::fetch_plan(url, pin.as_deref(), &plan_name, reading.deadline()) {
                Ok(fetched) => {
                    if pin.is_none() {
                        d.push(
                            Problem::warning(
                                "plan::unpinned-url",
                                format!(
                                    "plan `{}` is fetched from {} without a `sha256` pin: \
                                     what it declares can change with no change to this file",
                                    inc.name,
                                    remote::shown(url)
                                ),
                            )
                            .label(inc.span, "fetched, not pinned")
                            .help(format!(
                                "pin what was fetched now: `sha256: {}`",
                                fetched.digest
                            )),
                        );
                    }
                    (fetched.path.clone(), Some(fetched))
                }
                Err(why) => {
                    return refuse_with(
                        d,
                        format!("plan `{}`: {why}", inc.name),
                        Some(
                            "check the URL and the pin; to read the plan from a file instead, \
                             download it beside this plan and name it with `file:`"
                                .into(),
                        ),
                    )
                }
            }
        }
    };
    let read = |path: &Path| match &fetched {
        // siteplan wrote it into its own cache: not a file the plan names.
        Some(_) => access::read_given(path),
        None => access.read_text(path),
    };
    let text = match read(&child_path) {
        Ok(text) => text,
        Err(refused) => {
            return refuse_with(
                d,
                format!("plan `{}`: {}", inc.name, refused.message),
                refused.help,
            )
        }
    };
    let overrides = Overrides {
        name: Some(plan_name),
        no_kcli_config: reading.kcli.off,
        ..Overrides::default()
    };
    let inherited = including.parameters.clone();
    let load = |child_d: &mut Diagnostics| {
        document(
            &text,
            &child_path,
            &overrides,
            &inherited,
            reading,
            depth + 1,
            child_d,
        )
    };
    let mut child_d = Diagnostics::default();
    let mut child = load(&mut child_d);
    // A fetched plan's scripts and files are fetched from beside it, as kcli does; then it is
    // read again, finding them.
    if let (Some(fetched), Some(first)) = (&fetched, &child) {
        let named = relative_files(&first.entries);
        let mut problems = Vec::new();
        for name in named.iter().take(remote::MAX_FILES_BESIDE) {
            if let Err(why) = remote::fetch_beside(fetched, name, reading.deadline()) {
                problems.push(why);
            }
        }
        if named.len() > remote::MAX_FILES_BESIDE {
            problems.push(format!(
                "it names {} files; at most {} are fetched",
                named.len(),
                remote::MAX_FILES_BESIDE
            ));
        }
        for why in problems {
            refuse_with(
                d,
                format!("plan `{}`: {why}", inc.name),
                Some(
                    "a plan included by URL has the scripts and files it names by relative \
                     paths fetched from beside it"
                        .into(),
                ),
            );
        }
        if !named.is_empty() {
            child_d = Diagnostics::default();
            child = load(&mut child_d);
        }
    }
    let child_source = child
        .as_ref()
        .map_or_else(|| original_source(&child_path, &text), |c| c.source.clone());
    for p in child_d.into_sorted() {
        let mut p = match p.source {
            Some(_) => p,
            None => p.in_source(child_source.clone()),
        };
        // Its problems name the URL, not the cache.
        if let (Some(fetched), Some(source)) = (&fetched, p.source.as_mut()) {
            let cached = child_path.display().to_string();
            if let Some(rest) = source.name.strip_prefix(&cached) {
                source.name = format!("{}{rest}", remote::shown(&fetched.url));
            }
        }
        d.push(p);
    }
    let Some(child) = child else { return };
    including.read.push(child_path.clone());
    including.read.extend(child.read);
    let (dir, shown) = match &inc.source {
        include::Source::File(file) => (
            file.parent().unwrap_or(Path::new("")),
            file.display().to_string(),
        ),
        include::Source::Url { url, .. } => (
            child_path.parent().unwrap_or(Path::new("")),
            remote::shown(url),
        ),
    };
    for mut entry in child.entries {
        if including.entries.iter().any(|e| e.name == entry.name) {
            refuse(
                d,
                format!(
                    "`{}` is declared both here and in {}, which plan `{}` includes",
                    entry.name, shown, inc.name
                ),
            );
            continue;
        }
        include::rebase(&mut entry.kind, dir);
        if let model::EntryKind::Vm(vm) = &mut entry.kind {
            // Its scripts see its own plan's parameters (which took the including plan's).
            let mut variables = child.context.clone();
            variables.append(&mut vm.variables);
            vm.variables = variables;
        }
        including.entries.push(entry);
    }
    including.unreadable.extend(child.unreadable);
}
