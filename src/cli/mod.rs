//! The command line: flags, dispatch, and how results and problems are printed.
//! No plan logic lives here: flags become one resolved request per command, the library
//! (`manifest`, `graph`, `ops`) does the work, and `view` renders what it reports.

mod args;
mod console;
mod inventory;
pub(crate) mod out;
mod progress;
mod providers;
mod snapshot;
mod table;
mod view;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::diagnostics::{Problem, Rendered, Severity, SourceText};
use crate::graph::{self, GraphFormat};
use crate::manifest::model::Kind;
use crate::manifest::{self, format, LoadFailure, Loaded, Options, Overrides};
use crate::ops::{self, Request, RunOptions};
use crate::plan::saved::SavedPlan;
use args::*;
use out::say;
use progress::Verbosity;
use view::{DiffFormat, Terminal};

/// Exit status for any error: bad input, or a failure to do what was asked.
const EXIT_ERROR: u8 = 1;

/// Runs the command line and returns the process's exit status.
pub fn run() -> ExitCode {
    install_report_handler();
    let parsed = command()
        .try_get_matches()
        .and_then(|matches| Cli::from_arg_matches(&matches));
    let mut cli = match parsed {
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
    name_the_plan(&mut cli.command);
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
        Command::Export {
            plan,
            provider,
            name,
        } => {
            let Ok(loaded) = load(&plan, false) else {
                return ExitCode::from(EXIT_ERROR);
            };
            let request = Request {
                provider,
                overrides: plan.overrides(),
                ..Request::new(&plan.file, name)
            };
            match block_on(ops::export(&request, &loaded)) {
                Ok(Ok(documents)) => print(&documents),
                Ok(Err(message)) => {
                    say!("error: {message}");
                    ExitCode::from(EXIT_ERROR)
                }
                Err(code) => code,
            }
        }
        Command::Graph { plan, format } => match load(&plan, false) {
            Ok(loaded) => print(&graph::render(&loaded.graph, format)),
            Err(code) => code,
        },
        Command::Diff {
            plan,
            target,
            moved,
            output,
            format,
            detailed_exitcode,
            replace,
            against,
            out,
        } => {
            let view = Terminal::new(output.verbosity(), format, false, false);
            let request = Request {
                replace,
                plan_moved: moved.plan_moved,
                ..request(&plan, target)
            };
            let Ok(loaded) = load(&plan, false) else {
                return ExitCode::from(EXIT_ERROR);
            };
            let outcome = match against {
                Some(old) => ops::diff_against(&request, &old, &loaded, &view),
                None => match block_on(ops::diff(&request, &loaded, out.as_deref(), &view)) {
                    Ok(outcome) => outcome,
                    Err(code) => return code,
                },
            };
            view::finish(outcome, &view, detailed_exitcode)
        }
        Command::Apply {
            plan,
            target,
            moved,
            run,
            output,
            wait,
            wait_timeout,
            replace,
            restart,
            shutdown_timeout,
        } => {
            let options = RunOptions {
                parallelism: run.parallelism,
                wait: wait.then(|| std::time::Duration::from_secs(wait_timeout)),
                restart,
                shutdown_timeout: shutdown_timeout.map(std::time::Duration::from_secs),
                interruption: Default::default(),
            };
            let view = Terminal::new(output.verbosity(), DiffFormat::Human, true, run.yes);
            let options = RunOptions {
                interruption: view.interruption.clone(),
                ..options
            };
            match saved_plan(&plan.file) {
                Some(Ok(saved)) => {
                    let outcome = block_on(ops::apply_saved(
                        saved,
                        &plan.file,
                        &plan.params,
                        options,
                        &view,
                    ));
                    match outcome {
                        Ok(outcome) => view::finish(outcome, &view, false),
                        Err(code) => code,
                    }
                }
                Some(Err(e)) => {
                    say!("error: {}: {e}", plan.file.display());
                    ExitCode::from(EXIT_ERROR)
                }
                None => {
                    let request = Request {
                        replace,
                        plan_moved: moved.plan_moved,
                        ..request(&plan, target)
                    };
                    let Ok(loaded) = load(&plan, false) else {
                        return ExitCode::from(EXIT_ERROR);
                    };
                    match block_on(ops::apply(&request, &loaded, options, &view)) {
                        Ok(outcome) => view::finish(outcome, &view, false),
                        Err(code) => code,
                    }
                }
            }
        }
        Command::Destroy {
            plan,
            target,
            moved,
            run,
            output,
        } => {
            let options = RunOptions {
                parallelism: run.parallelism,
                wait: None,
                restart: false,
                shutdown_timeout: None,
                interruption: Default::default(),
            };
            // `plan destroy` alone, where there is no kcli_plan.yml, names no plan: it must not
            // destroy the one the directory's name would give.
            if plan.file == Path::new(manifest::DEFAULT_PLAN_FILE) && !plan.file.exists() {
                say!(
                    "error: there is no {} here: name the plan to destroy (`plan destroy FILE`; \
                     for a plan whose file is gone, its path, such as ./{})",
                    manifest::DEFAULT_PLAN_FILE,
                    manifest::DEFAULT_PLAN_FILE
                );
                return ExitCode::from(EXIT_ERROR);
            }
            let view = Terminal::new(output.verbosity(), DiffFormat::Human, true, run.yes);
            let options = RunOptions {
                interruption: view.interruption.clone(),
                ..options
            };
            let request = Request {
                plan_moved: moved.plan_moved,
                ..request(&plan, target)
            };
            let loaded = if plan.file.exists() {
                // A file that declares nothing still names a plan whose marks say what goes.
                load_with(
                    &plan,
                    Options {
                        strict: false,
                        declaring_nothing: true,
                    },
                )
            } else {
                // A plan whose file is gone can still be destroyed: what goes is what carries
                // its mark, guarded by what the marks recorded.
                say!(
                    "warning: {} does not exist; destroying what the provider's marks say its \
                     plan created, with the guards recorded on each resource",
                    plan.file.display()
                );
                manifest::load_text("", &plan.file, &Overrides::default(), Options::default())
                    .map_err(|failure| report_failure(&failure))
            };
            let Ok(loaded) = loaded else {
                return ExitCode::from(EXIT_ERROR);
            };
            match block_on(ops::destroy(&request, &loaded, options, &view)) {
                Ok(outcome) => view::finish(outcome, &view, false),
                Err(code) => code,
            }
        }
        Command::Status {
            plan,
            target,
            moved,
            output,
        } => status(&plan, target, moved.plan_moved, output),
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
            wait.then(|| std::time::Duration::from_secs(wait_timeout)),
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
            wait.then(|| std::time::Duration::from_secs(wait_timeout)),
        ),
        Command::List { provider, output } => list_plans(provider.as_deref(), output),
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
    let view = Terminal::new(Verbosity::Quiet, DiffFormat::Human, false, false);
    let request = request(plan, target);
    let loaded = load(plan, false)?;
    Ok((view, request, loaded))
}

/// What an operation found, or the exit status of its refusal (said already).
fn found<T>(
    ran: Result<Result<T, ops::Refusal>, ExitCode>,
    view: &Terminal,
) -> Result<T, ExitCode> {
    match ran? {
        Ok(found) => Ok(found),
        Err(refusal) => Err(view::finish(ops::Outcome::Refused(refusal), view, false)),
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

/// `plan status`: the lab as it is, as a table or a document; exit 2 when it does not match
/// the plan.
fn status(plan: &PlanArgs, target: TargetArgs, moved: bool, output: StatusOutput) -> ExitCode {
    let looked = || -> Result<ExitCode, ExitCode> {
        let (view, request, loaded) = looking(plan, target)?;
        let request = Request {
            plan_moved: moved,
            ..request
        };
        let lab = found(block_on(ops::status(&request, &loaded, &view)), &view)?;
        let shown = match output {
            StatusOutput::Table => view::status_table(&lab, &request.command("diff")),
            StatusOutput::Json => document(&lab, false),
            StatusOutput::Yaml => document(&lab, true),
        };
        let printed = print(&shown);
        Ok(if printed != ExitCode::SUCCESS || lab.matches {
            printed
        } else {
            ExitCode::from(view::EXIT_CHANGES)
        })
    };
    looked().unwrap_or_else(|code| code)
}

/// `plan list`: exit 1 only when no provider answered.
fn list_plans(provider: Option<&str>, output: ListOutput) -> ExitCode {
    let listing = match block_on(ops::list(provider)) {
        Ok(Ok(listing)) => listing,
        Ok(Err(message)) => {
            say!("error: {message}");
            return ExitCode::from(EXIT_ERROR);
        }
        Err(code) => return code,
    };
    for gone in &listing.unreachable {
        say!(
            "warning: provider `{}` could not be asked: {}",
            gone.provider,
            gone.reason
        );
    }
    let printed = print(&match output {
        ListOutput::Json => document(&listing, false),
        ListOutput::Table => view::plans_table(&listing),
    });
    let none_answered = listing.unreachable.len() == listing.asked;
    if printed == ExitCode::SUCCESS && none_answered {
        ExitCode::from(EXIT_ERROR)
    } else {
        printed
    }
}

/// `plan info`.
fn vm_info(plan: &PlanArgs, target: TargetArgs, vm: &str, output: StatusOutput) -> ExitCode {
    let looked = || -> Result<ExitCode, ExitCode> {
        let (view, request, loaded) = looking(plan, target)?;
        let info = found(block_on(ops::info(&request, &loaded, vm, &view)), &view)?;
        Ok(print(&match output {
            StatusOutput::Table => view::info_text(&info),
            StatusOutput::Json => document(&info, false),
            StatusOutput::Yaml => document(&info, true),
        }))
    };
    looked().unwrap_or_else(|code| code)
}

/// The plan's VMs as they are live, or the exit status of what went wrong (said already).
fn lab_inventory(
    plan: &PlanArgs,
    target: TargetArgs,
    user: Option<&str>,
) -> Result<ops::Inventory, ExitCode> {
    let (view, request, loaded) = looking(plan, target)?;
    found(
        block_on(ops::inventory(&request, &loaded, user, &view)),
        &view,
    )
}

/// `plan console`: attached until Ctrl-], the guest closes the console, or stdin ends.
fn console(plan: &PlanArgs, target: TargetArgs, vm: &str) -> ExitCode {
    let looked = || -> Result<ExitCode, ExitCode> {
        let (view, request, loaded) = looking(plan, target)?;
        let attached = found(block_on(ops::console(&request, &loaded, vm, &view)), &view)?;
        Ok(match console::attach(attached, &format!("vm/{vm}")) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                say!("error: {why}");
                ExitCode::from(EXIT_ERROR)
            }
        })
    };
    looked().unwrap_or_else(|code| code)
}

/// `plan ssh`: runs the system's ssh, which takes over the terminal; its exit status is ours.
fn ssh(
    plan: &PlanArgs,
    target: TargetArgs,
    vm: &str,
    user: Option<&str>,
    command: &[String],
) -> ExitCode {
    let found = match lab_inventory(plan, target, user) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let Some(guest) = found.vms.iter().find(|v| v.name == vm) else {
        let names: Vec<&str> = found.vms.iter().map(|v| v.name.as_str()).collect();
        say!(
            "error: `{vm}` is no VM of plan `{}`; its VMs are: {}",
            found.plan,
            names.join(", ")
        );
        return ExitCode::from(EXIT_ERROR);
    };
    let args = match inventory::ssh_command(guest, command) {
        Ok(args) => args,
        Err(why) => {
            say!("error: {why}");
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match std::process::Command::new("ssh").args(&args).status() {
        Ok(status) => ExitCode::from(status.code().map_or(EXIT_ERROR, |c| c as u8)),
        Err(e) => {
            say!("error: cannot run ssh: {e} (is openssh-client installed?)");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `plan unlock`.
fn unlock(plan: &PlanArgs, provider: Option<String>, name: Option<String>, yes: bool) -> ExitCode {
    let view = Terminal::new(Verbosity::Normal, DiffFormat::Human, true, yes);
    let request = Request {
        provider,
        overrides: plan.overrides(),
        ..Request::new(&plan.file, name)
    };
    // A file that declares nothing still names a plan.
    let loaded = load_with(
        plan,
        Options {
            strict: false,
            declaring_nothing: true,
        },
    );
    let Ok(loaded) = loaded else {
        return ExitCode::from(EXIT_ERROR);
    };
    let unlocked = match block_on(ops::unlock(&request, &loaded, &view)) {
        Ok(Ok(unlocked)) => unlocked,
        Ok(Err(refusal)) => return view::finish(ops::Outcome::Refused(refusal), &view, false),
        Err(code) => return code,
    };
    for lock in unlocked {
        match (&lock.holder, lock.removed) {
            (None, _) => say!(
                "Plan `{}` holds no lock on {}.",
                request.name,
                lock.provider
            ),
            (Some(holder), true) => say!(
                "Removed plan `{}`'s lock on {}, held by {}.",
                request.name,
                lock.provider,
                holder.describe()
            ),
            (Some(_), false) => say!(
                "Plan `{}`'s lock on {} was gone already.",
                request.name,
                lock.provider
            ),
        }
    }
    ExitCode::SUCCESS
}

/// `plan start|stop|restart`.
fn power_vms(
    plan: &PlanArgs,
    target: TargetArgs,
    vms: &[String],
    args: &PowerArgs,
    power: ops::Power,
    wait: Option<std::time::Duration>,
) -> ExitCode {
    let view = Terminal::new(args.output.verbosity(), DiffFormat::Human, true, true);
    let request = request(plan, target);
    let Ok(loaded) = load(plan, false) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let options = RunOptions {
        parallelism: args.parallelism,
        wait,
        restart: false,
        shutdown_timeout: None,
        interruption: view.interruption.clone(),
    };
    match block_on(ops::power(&request, &loaded, power, vms, options, &view)) {
        Ok(outcome) => view::finish(outcome, &view, false),
        Err(code) => code,
    }
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

/// The request a plan command makes: the plan, its parameters, and where it goes.
fn request(plan: &PlanArgs, target: TargetArgs) -> Request {
    Request {
        provider: target.provider,
        targets: target.targets,
        overrides: plan.overrides(),
        ..Request::new(&plan.file, target.name)
    }
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
