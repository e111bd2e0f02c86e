//! The command line: flags, dispatch, and how results and problems are printed.
//! No plan logic lives here: flags become one resolved request per command, the library
//! (`manifest`, `graph`, `ops`) does the work, and `view` renders what it reports.

mod args;
mod change;
mod console;
mod inventory;
mod lab;
pub(crate) mod out;
mod picture;
mod progress;
mod providers;
mod resolve;
mod snapshot;
mod table;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::diagnostics::{Problem, Rendered, Severity, SourceText};
use crate::manifest::model::Kind;
use crate::manifest::{self, format, LoadFailure, Loaded, Options, Overrides};
use crate::ops::{self, Request, RunOptions};
use crate::plan::saved::SavedPlan;
use args::*;
use lab::{
    console, generate_plan, lab_inventory, list_plans, power_vms, ssh, status, unlock, vm_info,
};
use out::say;
use progress::Verbosity;
use resolve::request;
use view::{DiffFormat, Terminal};

/// Exit status for any error: bad input, or a failure to do what was asked.
const EXIT_ERROR: u8 = 1;

/// Runs the command line and returns the process's exit status.
pub fn run() -> ExitCode {
    install_report_handler();
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_ERROR)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Validate {
            plan,
            strict,
            verbose,
        } => validate(&plan, strict, verbose),
        Command::Render { plan } => match render(&plan) {
            Ok(text) => print(&text),
            Err(failure) => report_failure(&failure),
        },
        Command::Export(args) => change::export(args),
        Command::Graph(args) => picture::graph(args),
        Command::Diff(args) => change::diff(args),
        Command::Apply(args) => change::apply(args),
        Command::Destroy(args) => change::destroy(args),
        Command::Drain(args) => change::drain(args),
        Command::Status {
            plan,
            target,
            moved,
            output,
        } => status(&plan, target, &moved, output),
        Command::Start {
            plan,
            vms,
            target,
            power,
            wait,
            wait_timeout,
        } => power_vms(
            &plan,
            target,
            &vms,
            &power,
            ops::Power::Start,
            resolve::wait(wait, wait_timeout),
        ),
        Command::Stop {
            plan,
            vms,
            target,
            power,
            timeout,
        } => power_vms(
            &plan,
            target,
            &vms,
            &power,
            ops::Power::Stop {
                grace: timeout.map(std::time::Duration::from_secs),
            },
            None,
        ),
        Command::Restart {
            plan,
            vms,
            target,
            power,
            timeout,
            wait,
            wait_timeout,
        } => power_vms(
            &plan,
            target,
            &vms,
            &power,
            ops::Power::Restart {
                grace: timeout.map(std::time::Duration::from_secs),
            },
            resolve::wait(wait, wait_timeout),
        ),
        Command::List { provider, output } => list_plans(provider.as_deref(), output),
        Command::Generate {
            vms,
            networks,
            plans,
            provider,
            output,
            no_kcli_config,
        } => generate_plan(
            &ops::generate::Chosen {
                vms,
                networks,
                plans,
            },
            provider.as_deref(),
            output.as_deref(),
            no_kcli_config,
        ),
        Command::Info {
            plan,
            vm,
            target,
            output,
        } => vm_info(&plan, target, &vm, output),
        Command::Output {
            plan,
            target,
            format,
            user,
        } => match lab_inventory(&plan, target, user.as_deref()) {
            Ok(found) => print(&match format {
                OutputFormat::Ansible => inventory::ansible(&found),
                OutputFormat::SshConfig => inventory::ssh_config(&found),
                OutputFormat::Hosts => inventory::hosts(&found),
                OutputFormat::Json => inventory::json(&found),
            }),
            Err(code) => code,
        },
        Command::Console { plan, vm, target } => console(&plan, target, &vm),
        Command::Unlock {
            plan,
            provider,
            name,
            yes,
        } => unlock(&plan, provider, name, yes),
        Command::Ssh {
            plan,
            vm,
            target,
            user,
            command,
        } => ssh(&plan, target, &vm, user.as_deref(), &command),
        Command::Snapshot { command } => snapshot::run(command),
        Command::Schema { of } => print(&match of {
            SchemaOf::Plan => format::schema_text(),
            SchemaOf::Diff => crate::plan::render::json::schema_text(),
            SchemaOf::Providers => crate::registry::config::schema_text(),
        }),
        Command::Provider { command } => match command {
            ProviderCommand::List {
                service_type,
                page_size,
                page_token,
                output,
            } => providers::list(
                service_type.as_deref(),
                usize::from(page_size),
                page_token.as_deref(),
                output,
            ),
            ProviderCommand::Get { id_or_name, output } => providers::get(&id_or_name, output),
        },
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut command(), "plan", &mut out::raw_stdout());
            ExitCode::SUCCESS
        }
    }
}

/// What a command that only looks at the lab needs: a quiet view (no provider line, no
/// progress), its request, and the plan, loaded (problems said already).
fn looking(plan: &PlanArgs, target: TargetArgs) -> Result<(Terminal, Request, Loaded), ExitCode> {
    let view = Terminal::quiet();
    let request = request(plan, target);
    let loaded = load_for(&request)?;
    Ok((view, request, loaded))
}

/// What an operation found, or the exit status of its refusal (said already).
fn found<T>(
    ran: Result<Result<T, ops::Refusal>, ExitCode>,
    view: &Terminal,
) -> Result<T, ExitCode> {
    match ran? {
        Ok(found) => Ok(found),
        Err(refusal) => Err(view::finish(Err(refusal), view, false)),
    }
}

/// A document as `-o json` (pretty, with a final newline) or `-o yaml` prints it.
fn document(value: &impl serde::Serialize, yaml: bool) -> String {
    if yaml {
        return serde_norway::to_string(value).unwrap_or_default();
    }
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// The plan after templating. Reading the plan first registers its secrets (root passwords,
/// keys), which the rendered text must not show; its problems are `validate`'s to report.
fn render(plan: &PlanArgs) -> Result<String, LoadFailure> {
    let _ = manifest::load(&plan.file, &plan.overrides(), Options::default());
    manifest::render(&plan.file, &plan.overrides())
}

/// `Some` when `file` is a plan saved by `plan diff --out`.
fn saved_plan(file: &Path) -> Option<Result<SavedPlan, String>> {
    let text = std::fs::read_to_string(file).ok()?;
    SavedPlan::parse(&text)
}

/// Runs an operation on a runtime of its own, then waits (briefly) for the runtime's threads
/// to end: a thread that made libvirt calls must not still be freeing its thread-local state
/// while the process exits and OpenSSL's exit handler frees the same (a heap corruption
/// otherwise, seen under load). A thread still blocked after the wait (a connection attempt to
/// a host that never answers) is left behind: it frees nothing while it is blocked.
pub(crate) fn block_on<F: std::future::Future>(operation: F) -> Result<F::Output, ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            say!("error: cannot start the runtime: {e}");
            ExitCode::from(EXIT_ERROR)
        })?;
    let output = runtime.block_on(operation);
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(output)
}

fn install_report_handler() {
    let _ = miette::set_hook(Box::new(|_| {
        let terminal = out::stderr_is_terminal();
        let color = terminal && std::env::var_os("NO_COLOR").is_none();
        let mut opts = miette::MietteHandlerOpts::new()
            .terminal_links(false)
            .unicode(true)
            .color(color)
            .context_lines(1);
        if !terminal {
            // Same output whatever runs it: CI logs and tests see one layout.
            opts = opts.width(100);
        }
        Box::new(opts.build())
    }));
}

/// Writes to stdout; a closed pipe (`plan graph x | head`) is not an error.
fn print(text: &str) -> ExitCode {
    match out::stdout(text) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            say!("error: cannot write output: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn load(plan: &PlanArgs, strict: bool) -> Result<Loaded, ExitCode> {
    load_with(
        plan,
        Options {
            strict,
            declaring_nothing: false,
        },
    )
}

/// The plan a request names, read with its parameters and its name (`{{ plan }}`).
fn load_for(request: &Request) -> Result<Loaded, ExitCode> {
    load_request(request, Options::default())
}

fn load_request(request: &Request, options: Options) -> Result<Loaded, ExitCode> {
    match manifest::load(&request.file, &request.overrides, options) {
        Ok(loaded) => {
            report_problems(&loaded.warnings, &loaded.source);
            Ok(loaded)
        }
        Err(failure) => Err(report_failure(&failure)),
    }
}

fn load_with(plan: &PlanArgs, options: Options) -> Result<Loaded, ExitCode> {
    match manifest::load(&plan.file, &plan.overrides(), options) {
        Ok(loaded) => {
            report_problems(&loaded.warnings, &loaded.source);
            Ok(loaded)
        }
        Err(failure) => Err(report_failure(&failure)),
    }
}

fn validate(plan: &PlanArgs, strict: bool, verbose: bool) -> ExitCode {
    let loaded = match load(plan, strict) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    if verbose {
        let mut read = String::new();
        for file in &loaded.read {
            read.push_str(&format!("read {}\n", file.display()));
        }
        let kcli = if !manifest::kcli::enabled(plan.no_kcli_config) {
            "kcli configuration: off (--no-kcli-config or SITEPLAN_NO_KCLI_CONFIG)".to_string()
        } else if manifest::kcli::directory()
            .is_some_and(|dir| loaded.read.iter().any(|f| f.starts_with(&dir)))
        {
            "kcli configuration: read".to_string()
        } else {
            format!(
                "kcli configuration: none in {}",
                manifest::kcli::directory().unwrap_or_default().display()
            )
        };
        read.push_str(&kcli);
        read.push('\n');
        let _ = print(&read);
    }
    let mut counts = Vec::new();
    for kind in Kind::ALL {
        let n = loaded
            .manifest
            .entries
            .iter()
            .filter(|e| e.kind.kind() == kind)
            .count();
        if n > 0 {
            counts.push(format!("{n} {kind}{}", if n == 1 { "" } else { "s" }));
        }
    }
    let external = loaded
        .graph
        .graph
        .node_weights()
        .filter(|n| n.external)
        .count();
    let mut line = format!(
        "{} is valid: {}",
        display_name(&plan.file),
        if counts.is_empty() {
            "no entries".to_string()
        } else {
            counts.join(", ")
        }
    );
    line.push_str(&format!("; {} dependencies", loaded.graph.edge_count()));
    if external > 0 {
        line.push_str(&format!(
            "; {external} external reference{} to check against the provider",
            if external == 1 { "" } else { "s" }
        ));
    }
    if !loaded.warnings.is_empty() {
        line.push_str(&format!(
            " ({} warning{})",
            loaded.warnings.len(),
            if loaded.warnings.len() == 1 { "" } else { "s" }
        ));
    }
    line.push('\n');
    print(&line)
}

fn display_name(path: &Path) -> String {
    path.display().to_string()
}

fn report_problems(problems: &[Problem], source: &SourceText) {
    // Secrets are masked in the source (same length, so spans still hold: `Rendered`) and
    // scrubbed from the messages.
    for problem in problems {
        let report = miette::Report::new(Rendered::new(problem.clone(), source));
        say!("{report:?}");
    }
}

fn report_failure(failure: &LoadFailure) -> ExitCode {
    report_problems(&failure.problems, &failure.source);
    let errors = failure
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = failure.problems.len() - errors;
    let mut summary = format!(
        "error: {} has {errors} error{}",
        failure
            .source
            .name
            .split(" (")
            .next()
            .unwrap_or(&failure.source.name),
        if errors == 1 { "" } else { "s" }
    );
    if warnings > 0 {
        summary.push_str(&format!(
            " and {warnings} warning{}",
            if warnings == 1 { "" } else { "s" }
        ));
    }
    say!("{summary}");
    ExitCode::from(EXIT_ERROR)
}
