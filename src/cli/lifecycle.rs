//! `plan diff`, `plan apply` and `plan destroy`: observe, plan, show, confirm, apply, report.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::progress::{self, Verbosity};
use crate::apply::{self, Progress};
use crate::manifest::model::EntryKind;
use crate::manifest::Loaded;
use crate::manifest::Overrides;
use crate::plan::desired::{self, Desired};
use crate::plan::saved::{self, SavedPlan};
use crate::plan::{self, render, Action, Plan};
use crate::provider::spec::{ResourceId, ResourceKind, Spec};
use crate::provider::{backends, default_disruption, Provider, Scope};
use crate::registry;
use crate::secrets;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Diff,
    Apply,
    Destroy,
}

pub struct Options {
    pub mode: Mode,
    pub provider: Option<String>,
    pub name: Option<String>,
    pub yes: bool,
    pub parallelism: usize,
    pub verbosity: Verbosity,
    /// Wait this long for every running VM to have an address (`--wait`).
    pub wait: Option<Duration>,
    /// How `diff` prints the plan.
    pub format: DiffFormat,
    /// `diff` exits 2 when there are changes.
    pub detailed_exitcode: bool,
    /// `--target`: entry names or addresses.
    pub targets: Vec<String>,
    /// `--replace`: entry names or resource addresses.
    pub replace: Vec<String>,
    /// `diff --out`: where to save the plan.
    pub out: Option<PathBuf>,
    /// The parameter files and `-P` values, for a saved plan to record.
    pub overrides: Overrides,
    /// `apply PLANFILE`: what was reviewed, and the fingerprints to check.
    pub saved: Option<SavedPlan>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffFormat {
    Human,
    Markdown,
    Json,
}

/// `diff --detailed-exitcode` when there is something to change.
const EXIT_CHANGES: u8 = 2;

const EXIT_ERROR: u8 = 1;

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {}", secrets::scrub(&message.to_string()));
    ExitCode::from(EXIT_ERROR)
}

/// A provider to use, and its own limit on parallel changes from the providers file.
struct Chosen {
    provider: Arc<dyn Provider>,
    parallelism: Option<usize>,
    /// Its name in the providers file, if it is there.
    name: Option<String>,
}

/// Opens the provider named on the command line (a name from the providers file, `sandbox`, or
/// a libvirt URI), or the default: the providers file's `default` (or its first enabled one);
/// without a file, the local libvirt when it answers, else the sandbox.
fn open_provider(choice: Option<&str>) -> Result<Chosen, String> {
    let (file, found) = registry::config::load()?;
    let open = |config: &registry::config::ProviderConfig| -> Result<Chosen, String> {
        if !config.enabled {
            return Err(format!(
                "provider `{}` is disabled in the providers file",
                config.name
            ));
        }
        Ok(Chosen {
            provider: backends::open(config).map_err(|e| e.to_string())?,
            parallelism: config.parallelism,
            name: Some(config.name.clone()),
        })
    };
    let unnamed = |config: registry::config::ProviderConfig| -> Result<Chosen, String> {
        Ok(Chosen {
            name: None,
            ..open(&config)?
        })
    };
    // Without a file, the defaults are named too: `local` (kcli's name for the local host) and
    // `sandbox`.
    let configured = |name: &str| file.providers.iter().find(|p| p.name == name);
    if let Some(config) = choice.and_then(configured) {
        return open(config);
    }
    match choice {
        Some("sandbox") => unnamed(registry::config::ProviderConfig::sandbox("sandbox")),
        Some(uri) if uri.contains(':') => {
            unnamed(registry::config::ProviderConfig::libvirt("uri", uri))
        }
        Some(other) => Err(format!(
            "no provider is named `{other}` (the providers file has: {}); give a name from it, \
             `sandbox`, or a libvirt URI",
            file.providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        None if found == registry::config::Found::Defaults => unnamed(
            registry::config::ProviderConfig::libvirt("local", "qemu:///system"),
        )
        .or_else(|_| unnamed(registry::config::ProviderConfig::sandbox("sandbox"))),
        None => {
            let default = match &file.default {
                Some(name) => file.providers.iter().find(|p| &p.name == name),
                None => file.providers.iter().find(|p| p.enabled),
            };
            match default {
                Some(config) => open(config),
                None => Err("the providers file has no enabled provider".into()),
            }
        }
    }
}

pub fn run(loaded: &Loaded, file: &Path, options: &Options) -> ExitCode {
    let name = options.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map_or_else(|| "plan".into(), |s| s.to_string_lossy().into_owned())
    });
    let base = file.parent().unwrap_or(Path::new("."));
    let desired = match (
        options.mode,
        desired::desired(&loaded.manifest, &name, base),
    ) {
        (_, Ok(d)) => d,
        // Destroy needs nothing from the plan but its name.
        (Mode::Destroy, Err(_)) => Desired::default(),
        (_, Err(e)) => return fail(e),
    };
    // --target: the entries named and what they need (for destroy: what needs them).
    let targeted = if options.targets.is_empty() {
        None
    } else {
        let towards = if options.mode == Mode::Destroy {
            petgraph::Direction::Incoming
        } else {
            petgraph::Direction::Outgoing
        };
        match loaded.graph.closure(&options.targets, towards) {
            Ok(entries) => Some(entries),
            Err(unknown) => {
                return fail(format!(
                    "--target names `{unknown}`, which is no entry of the plan"
                ))
            }
        }
    };
    let mut desired = desired;
    match replacements(&desired, &options.replace) {
        Ok(ids) => desired.replace = ids,
        Err(e) => return fail(e),
    }
    // Resource → entry, for deciding what --target keeps after planning.
    let entries: BTreeMap<ResourceId, String> = desired
        .resources
        .iter()
        .map(|r| (r.spec.id(), r.entry.clone()))
        .collect();
    // One part per provider the plan uses (`client:`); most plans have one.
    let parts = desired.by_provider(&loaded.manifest);
    let spans = parts.len() > 1;
    let mut sites = Vec::new();
    for (client, part) in parts {
        let part = match (options.mode, &targeted) {
            // Everything outside the targets stays as it is.
            (Mode::Destroy, Some(targeted)) => part.without(targeted),
            (Mode::Destroy, None) => part.nothing_but_leftovers(),
            _ => part,
        };
        // A VM's `client:` names a provider of the providers file; the rest go to --provider.
        let choice = client.clone().or_else(|| options.provider.clone());
        let chosen = match open_provider(choice.as_deref()) {
            Ok(p) => p,
            Err(e) => return fail(e),
        };
        let label = spans.then(|| {
            chosen
                .name
                .clone()
                .or(client)
                .unwrap_or_else(|| chosen.provider.kind().to_string())
        });
        if options.verbosity > Verbosity::Quiet {
            let p = &chosen.provider;
            match &chosen.name {
                Some(name) if name != p.kind() => {
                    eprintln!("Provider: {name}, {} ({})", p.kind(), p.endpoint())
                }
                _ => eprintln!("Provider: {} ({})", p.kind(), p.endpoint()),
            }
        }
        sites.push(Site {
            label,
            chosen,
            desired: part,
        });
    }
    if let (Some(targeted), true) = (&targeted, options.verbosity > Verbosity::Quiet) {
        eprintln!(
            "Targeting {}: other changes are left out.",
            targeted.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let code = runtime.block_on(run_sites(
        loaded, file, options, &name, &sites, &targeted, &entries,
    ));
    runtime.shutdown_background();
    code
}

/// The plan's resources on one provider.
struct Site {
    /// The provider's name in diffs, when the plan spans several.
    label: Option<String>,
    chosen: Chosen,
    desired: Desired,
}

#[allow(clippy::too_many_arguments)]
async fn run_sites(
    loaded: &Loaded,
    file: &Path,
    options: &Options,
    name: &str,
    sites: &[Site],
    targeted: &Option<std::collections::BTreeSet<String>>,
    entries: &BTreeMap<ResourceId, String>,
) -> ExitCode {
    // Observe every provider at once.
    let started = Instant::now();
    let observing = sites.iter().map(|site| {
        let mut ids: Vec<_> = site.desired.resources.iter().map(|r| r.spec.id()).collect();
        ids.extend(site.desired.external.iter().cloned());
        ids.extend(site.desired.claimable.iter().map(Spec::id));
        let scope = Scope {
            plan: name.to_string(),
            ids,
        };
        let provider = site.chosen.provider.clone();
        async move { provider.observe(&scope).await }
    });
    let mut observed = Vec::new();
    for result in futures_join(observing).await {
        match result {
            Ok(o) => observed.push(o),
            Err(e) => return fail(e),
        }
    }
    let live = if sites.len() == 1 {
        saved::live_fingerprint(&observed[0])
    } else {
        let each: Vec<String> = sites
            .iter()
            .zip(&observed)
            .map(|(s, o)| format!("{:?}={}", s.label, saved::live_fingerprint(o)))
            .collect();
        saved::source_fingerprint(&each.join("\n"))
    };
    if let Some(saved) = &options.saved {
        if saved.fingerprints.live != live {
            eprintln!(
                "error: the provider's resources have changed since the plan was saved; \
                 nothing was changed. Review the plan again: `plan diff {} --out PLANFILE`",
                file.display()
            );
            return ExitCode::from(EXIT_ERROR);
        }
    }
    if options.verbosity == Verbosity::Verbose {
        let count: usize = observed.iter().map(|o| o.resources.len()).sum();
        eprintln!(
            "Observed {count} resources in {} ms.",
            started.elapsed().as_millis()
        );
    }

    // Plan each part; show them as one.
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    for (site, observed) in sites.iter().zip(&observed) {
        let provider = &site.chosen.provider;
        let table = |kind: ResourceKind, attr: &str| provider.disruption(kind, attr);
        match plan::plan(name, &site.desired, observed, &table) {
            Ok(p) => {
                let mut p = match targeted {
                    Some(targeted) => only_targeted(p, targeted, entries, options.mode),
                    None => p,
                };
                for c in &mut p.changes {
                    c.provider = site.label.clone();
                }
                plans.push(p);
            }
            Err(found) => problems.extend(found.into_iter().map(|p| match &site.label {
                Some(label) => format!("{label}: {p}"),
                None => p,
            })),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("error: {}", secrets::scrub(p));
        }
        eprintln!("Nothing was changed.");
        return ExitCode::from(EXIT_ERROR);
    }
    let plan = Plan {
        name: name.to_string(),
        changes: plans.iter().flat_map(|p| p.changes.clone()).collect(),
        unchanged: plans.iter().map(|p| p.unchanged).sum(),
    };
    // Quiet still shows the whole diff when it is about to ask about it.
    let asking = options.mode != Mode::Diff && !options.yes && !plan.is_empty();
    let shown = match options.format {
        DiffFormat::Markdown if options.mode == Mode::Diff => render::markdown(&plan),
        DiffFormat::Json if options.mode == Mode::Diff => render::json::json(&plan),
        _ if options.verbosity == Verbosity::Quiet && !asking => {
            format!("{}\n", render::summary(&plan))
        }
        _ => render::human(&plan),
    };
    let _ = std::io::stdout().write_all(secrets::scrub(&shown).as_bytes());
    if let Some(saved) = &options.saved {
        if !saved.same_changes(&plan) {
            eprintln!(
                "error: planning again gives other changes than the saved plan's; nothing \
                 was changed. Review the plan again: `plan diff {} --out PLANFILE`",
                file.display()
            );
            return ExitCode::from(EXIT_ERROR);
        }
    }
    if let Err(code) = save(loaded, file, options, name, &plan, &live) {
        return code;
    }
    if options.mode == Mode::Diff && options.detailed_exitcode && !plan.is_empty() {
        return ExitCode::from(EXIT_CHANGES);
    }
    if options.mode == Mode::Diff || plan.is_empty() {
        if plan.is_empty() && options.mode == Mode::Apply {
            if let Err(code) = finish_apply(sites, loaded, options).await {
                return code;
            }
        }
        return ExitCode::SUCCESS;
    }
    if !options.yes && !confirm(&plan, options.mode) {
        eprintln!("Nothing was changed.");
        return ExitCode::from(EXIT_ERROR);
    }
    let progress: Arc<dyn Progress> = Arc::from(progress::for_run(
        plan.changes.len(),
        options.verbosity,
        std::io::stderr().is_terminal(),
    ));
    // Ctrl-C: start nothing more, let what runs finish, report, exit 130.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\nInterrupted: starting nothing more; waiting for the changes in progress.");
            on_signal.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    // Each provider at once, each within its own limit; a failure on one stops nothing on
    // the others (no resource on one depends on another's).
    let applying = sites.iter().zip(&plans).map(|(site, part)| {
        let parallelism = options
            .parallelism
            .min(site.chosen.parallelism.unwrap_or(usize::MAX));
        apply::apply_until(
            part,
            &site.desired,
            site.chosen.provider.clone(),
            parallelism,
            progress.clone(),
            stop.clone(),
        )
    });
    let reports = futures_join(applying).await;
    let report = apply::Report {
        outcomes: reports.into_iter().flat_map(|r| r.outcomes).collect(),
    };
    drop(progress);
    eprintln!(
        "\n{}: {} done, {} failed, {} skipped.",
        if options.mode == Mode::Destroy {
            "Destroy"
        } else {
            "Apply"
        },
        report.succeeded(),
        report.failed(),
        report.skipped()
    );
    let finished = if options.mode == Mode::Apply && report.interrupted() == 0 {
        finish_apply(sites, loaded, options).await
    } else {
        Ok(())
    };
    if report.interrupted() > 0 {
        eprintln!(
            "{} change{} not started; run the same command again to finish.",
            report.interrupted(),
            if report.interrupted() == 1 { "" } else { "s" }
        );
        ExitCode::from(130)
    } else if report.failed() > 0 {
        ExitCode::from(EXIT_ERROR)
    } else {
        finished.err().unwrap_or(ExitCode::SUCCESS)
    }
}

/// Runs futures concurrently on this task and returns their outputs in order.
async fn futures_join<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, f) in pending.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(v) => done[i] = Some(v),
                std::task::Poll::Pending => all = false,
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().flatten().collect()
}

/// `diff --out`: what was reviewed, with the fingerprints `apply PLANFILE` checks.
fn save(
    loaded: &Loaded,
    file: &Path,
    options: &Options,
    name: &str,
    plan: &Plan,
    live: &str,
) -> Result<(), ExitCode> {
    let Some(out) = &options.out else {
        return Ok(());
    };
    let (params, sensitive_params) = saved::split_params(&options.overrides.sets);
    let record = SavedPlan {
        saved_plan_version: saved::VERSION,
        file: std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()),
        name: name.to_string(),
        provider: options.provider.clone(),
        paramfiles: options
            .overrides
            .paramfiles
            .iter()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            .collect(),
        params,
        sensitive_params,
        targets: options.targets.clone(),
        replace: options.replace.clone(),
        fingerprints: saved::Fingerprints {
            source: saved::source_fingerprint(&loaded.text),
            parameters: saved::parameters_fingerprint(&loaded.manifest.parameters),
            live: live.to_string(),
        },
        changes: serde_json::to_value(render::json::document(plan)).unwrap_or_default(),
    };
    if let Err(e) = std::fs::write(out, record.to_text()) {
        return Err(fail(format!(
            "cannot save the plan to {}: {e}",
            out.display()
        )));
    }
    eprintln!(
        "Saved the plan to {}: `plan apply {}` applies exactly these changes.",
        out.display(),
        out.display()
    );
    Ok(())
}

/// `plan diff --against`: what applying `new` would change where `old` was applied, without
/// asking any provider.
/// `old_files` reads the files the old version names (from its git revision); without it,
/// they are read from disk.
pub fn run_against(
    old: &Loaded,
    new: &Loaded,
    file: &Path,
    options: &Options,
    old_files: Option<desired::ReadFile>,
) -> ExitCode {
    let name = options.name.clone().unwrap_or_else(|| {
        file.file_stem()
            .map_or_else(|| "plan".into(), |s| s.to_string_lossy().into_owned())
    });
    let base = file.parent().unwrap_or(Path::new("."));
    let (old_desired, new_desired) = match (
        match old_files {
            Some(read) => desired::desired_reading(&old.manifest, &name, base, read),
            None => desired::desired(&old.manifest, &name, base),
        },
        desired::desired(&new.manifest, &name, base),
    ) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) => return fail(format!("the old version: {e}")),
        (_, Err(e)) => return fail(e),
    };
    let plan = match plan::between(&name, &old_desired, &new_desired, &default_disruption) {
        Ok(p) => p,
        Err(problems) => {
            for p in &problems {
                eprintln!("error: {}", secrets::scrub(p));
            }
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let shown = match options.format {
        DiffFormat::Markdown => render::markdown(&plan),
        DiffFormat::Json => render::json::json(&plan),
        DiffFormat::Human if options.verbosity == Verbosity::Quiet => {
            format!("{}\n", render::summary(&plan))
        }
        DiffFormat::Human => render::human(&plan),
    };
    let _ = std::io::stdout().write_all(secrets::scrub(&shown).as_bytes());
    if options.detailed_exitcode && !plan.is_empty() {
        return ExitCode::from(EXIT_CHANGES);
    }
    ExitCode::SUCCESS
}

/// `--replace` names: an address (`vm/web1`, `volume/default/web1_0.img`) or an entry's name,
/// which means the resource named after it.
fn replacements(desired: &Desired, names: &[String]) -> Result<Vec<ResourceId>, String> {
    names
        .iter()
        .map(|name| {
            desired
                .resources
                .iter()
                .map(|r| r.spec.id())
                .find(|id| id.to_string() == *name)
                .or_else(|| {
                    desired
                        .resources
                        .iter()
                        .find(|r| {
                            r.spec.id().name == *name && r.entry.ends_with(&format!("/{name}"))
                        })
                        .map(|r| r.spec.id())
                })
                .ok_or_else(|| {
                    format!("--replace names `{name}`, which is no resource of the plan")
                })
        })
        .collect()
}

/// The changes `--target` keeps: those of the targeted entries (for destroy, only deletes).
fn only_targeted(
    mut plan: Plan,
    targeted: &std::collections::BTreeSet<String>,
    entries: &BTreeMap<ResourceId, String>,
    mode: Mode,
) -> Plan {
    plan.changes.retain(|c| {
        let entry = c.entry.as_ref().or_else(|| entries.get(&c.id));
        let ours = entry.is_some_and(|e| targeted.contains(e));
        ours && (mode != Mode::Destroy || c.action == Action::Delete)
    });
    plan
}

/// Asks on a terminal; refuses without one (use --yes).
fn confirm(plan: &Plan, mode: Mode) -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: not a terminal, so not asking: pass --yes to {}",
            if mode == Mode::Destroy {
                "destroy"
            } else {
                "apply"
            }
        );
        return false;
    }
    let destructive = plan.count(Action::Delete) + plan.count(Action::Replace);
    eprint!(
        "\nDo you want to {} these changes{}? Only 'yes' is accepted: ",
        if mode == Mode::Destroy {
            "destroy with"
        } else {
            "apply"
        },
        if destructive > 0 {
            format!(" ({destructive} delete or replace)")
        } else {
            String::new()
        }
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok() && answer.trim() == "yes"
}

/// One row of the table `apply` ends with.
struct VmRow {
    name: String,
    /// The provider's name (or type).
    provider: String,
    state: &'static str,
    /// Reported by the provider.
    addresses: Vec<IpAddr>,
    /// Declared in the plan, for VMs the provider reports none for.
    fixed: Vec<String>,
}

impl VmRow {
    /// A running VM with nothing to reach it at yet (`--wait` waits for these).
    fn unreachable(&self) -> bool {
        self.state == "running" && self.addresses.is_empty() && self.fixed.is_empty()
    }
}

/// The plan's VMs: where they run, whether they run, and their addresses.
async fn vm_rows(site: &Site, loaded: &Loaded) -> Vec<VmRow> {
    let provider = site.chosen.provider.as_ref();
    let shown = site
        .label
        .clone()
        .or_else(|| site.chosen.name.clone())
        .unwrap_or_else(|| provider.kind().to_string());
    let vms: Vec<&str> = site
        .desired
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Vm(vm) => Some(vm.name.as_str()),
            _ => None,
        })
        .collect();
    let scope = Scope {
        plan: String::new(),
        ids: vms.iter().map(|v| ResourceId::vm(v)).collect(),
    };
    let observed = provider.observe(&scope).await.unwrap_or_default();
    let names: Vec<String> = vms.iter().map(|v| v.to_string()).collect();
    let mut addresses = provider.addresses(&names).await.unwrap_or_default();
    let mut rows = Vec::new();
    for vm in vms {
        let state = match observed.get(&ResourceId::vm(vm)) {
            Some(r) if r.active => "running",
            Some(_) => "stopped",
            None => "missing",
        };
        let addresses = addresses.remove(vm).unwrap_or_default();
        let fixed = match loaded.manifest.get(vm).map(|e| &e.kind) {
            Some(EntryKind::Vm(v)) => v
                .nets
                .iter()
                .filter_map(|n| n.ip.as_ref())
                .map(|ip| format!("{} (static)", ip.value))
                .collect(),
            _ => Vec::new(),
        };
        rows.push(VmRow {
            name: vm.to_string(),
            provider: shown.clone(),
            state,
            addresses,
            fixed,
        });
    }
    rows
}

/// With `--wait`, polls until every running VM has an address or the time is up.
/// Returns the rows and the VMs still without an address.
async fn wait_for_addresses(
    sites: &[Site],
    loaded: &Loaded,
    wait: Option<Duration>,
    verbosity: Verbosity,
) -> (Vec<VmRow>, Vec<String>) {
    let deadline = wait.map(|w| Instant::now() + w);
    let spinner =
        (wait.is_some() && verbosity > Verbosity::Quiet && std::io::stderr().is_terminal())
            .then(indicatif::ProgressBar::new_spinner);
    loop {
        let mut rows = Vec::new();
        for site in sites {
            rows.extend(vm_rows(site, loaded).await);
        }
        let pending: Vec<String> = rows
            .iter()
            .filter(|r| r.unreachable())
            .map(|r| r.name.clone())
            .collect();
        let out_of_time = deadline.is_none_or(|d| Instant::now() >= d);
        if pending.is_empty() || out_of_time {
            if let Some(s) = &spinner {
                s.finish_and_clear();
            }
            let pending = if wait.is_some() { pending } else { Vec::new() };
            return (rows, pending);
        }
        let message = format!("waiting for an address: {}", pending.join(", "));
        match &spinner {
            Some(s) => {
                s.set_message(message);
                s.tick();
            }
            None if verbosity == Verbosity::Verbose => eprintln!("{message}"),
            None => {}
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn print_vm_table(rows: &[VmRow]) {
    if rows.is_empty() {
        return;
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(2).max(2);
    let mut out = format!("\n{:width$}  {:10}  {:8}  IP\n", "VM", "PROVIDER", "STATE");
    for row in rows {
        let ips = if !row.addresses.is_empty() {
            row.addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        } else if !row.fixed.is_empty() {
            row.fixed.join(", ")
        } else {
            "-".to_string()
        };
        out.push_str(&format!(
            "{:width$}  {:10}  {:8}  {ips}\n",
            row.name, row.provider, row.state
        ));
    }
    let _ = std::io::stdout().write_all(out.as_bytes());
}

/// Ends an apply: the VM table, and with `--wait` an error for VMs that got no address in time.
async fn finish_apply(sites: &[Site], loaded: &Loaded, options: &Options) -> Result<(), ExitCode> {
    let (rows, pending) = wait_for_addresses(sites, loaded, options.wait, options.verbosity).await;
    if options.verbosity > Verbosity::Quiet {
        print_vm_table(&rows);
    }
    if pending.is_empty() {
        return Ok(());
    }
    eprintln!(
        "error: no address after {}s for: {} (is the guest booting? is DHCP on its network?)",
        options.wait.unwrap_or_default().as_secs(),
        pending.join(", ")
    );
    Err(ExitCode::from(EXIT_ERROR))
}
