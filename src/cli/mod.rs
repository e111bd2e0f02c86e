//! The command line: flags, dispatch, and how results and problems are printed.
//! No plan logic lives here: flags become one resolved request per command, the library
//! (`manifest`, `graph`, `ops`) does the work, and `view` renders what it reports.

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
use out::say;
use progress::Verbosity;
use view::{DiffFormat, Terminal};

/// Exit status for any error: bad input, or a failure to do what was asked.
const EXIT_ERROR: u8 = 1;

#[derive(Parser, Debug)]
#[command(
    name = "plan",
    version,
    about = "Declarative plan/apply for virtual labs, in kcli's plan format"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options every command that reads a plan takes.
#[derive(clap::Args, Debug)]
struct PlanArgs {
    /// The plan file (YAML, rendered as a Jinja template first); as kcli, `kcli_plan.yml`
    /// when none is given
    #[arg(default_value = manifest::DEFAULT_PLAN_FILE)]
    file: PathBuf,
    /// Set a parameter, overriding the plan and parameter files (repeatable): -P memory=4096
    #[arg(short = 'P', long = "param", value_name = "KEY=VALUE")]
    params: Vec<String>,
    /// Read parameters from a YAML file (repeatable; later files win).
    /// Default: kcli_parameters.yml in the current directory, if it exists
    #[arg(long = "paramfile", value_name = "FILE")]
    paramfiles: Vec<PathBuf>,
    /// Read no kcli configuration (~/.kcli/config.yml, ~/.kcli/profiles.yml), for a run that
    /// means the same on every machine. Also: SITEPLAN_NO_KCLI_CONFIG=1
    #[arg(long)]
    no_kcli_config: bool,
    /// Let the plan read this directory (and what is under it) or file besides its own
    /// directory's tree: scripts, origin files, included and base plans, local images
    /// (repeatable). Also: SITEPLAN_ALLOW_READ=DIR:DIR
    #[arg(long = "allow-read", value_name = "PATH")]
    allow_read: Vec<PathBuf>,
    /// The plan's name when the command is given one (`--name`): kcli's `NAME_default.yml` and
    /// `{{ plan }}` follow it. Set from the command's other arguments after parsing.
    #[arg(skip)]
    name: Option<String>,
}

impl PlanArgs {
    /// The parameter overrides. Every command that reads a plan asks for them first, so this is
    /// also where `--no-kcli-config` takes effect, for the whole process.
    fn overrides(&self) -> Overrides {
        if self.no_kcli_config {
            manifest::kcli::turn_off();
        }
        Overrides {
            paramfiles: self.paramfiles.clone(),
            sets: self.params.clone(),
            name: self.name.clone(),
            allow_read: self.allow_read.clone(),
        }
    }
}

/// Where a plan goes.
#[derive(clap::Args, Debug)]
struct TargetArgs {
    /// A provider's name from the providers file, `sandbox`, or a libvirt URI
    /// (qemu:///system, qemu+ssh://host/system). Default: the file's default; without a file,
    /// the local libvirt (SITEPLAN_LOCAL_URI, qemu:///system by default), never another in its
    /// place when it does not answer. A VM's `client:` overrides it
    #[arg(long)]
    provider: Option<String>,
    /// The plan's name, which marks what it creates. Default: the file's name without extension
    #[arg(long)]
    name: Option<String>,
    /// Consider only this entry (name or address, repeatable) and what it needs; for destroy,
    /// this entry and what needs it
    #[arg(long = "target", value_name = "NAME")]
    targets: Vec<String>,
}

/// Whose resources a plan may take as its own.
#[derive(clap::Args, Debug)]
struct MovedArgs {
    /// This plan file was moved or renamed: resources its plan's name marks that were applied
    /// from another file are its own (their marks then record this file). Without it a plan is
    /// refused where its name marks what another file applied, which is another lab's
    #[arg(long)]
    plan_moved: bool,
}

/// How changes are made.
#[derive(clap::Args, Debug)]
struct RunArgs {
    /// Go ahead without asking (required when stdin is not a terminal)
    #[arg(long, visible_alias = "auto-approve")]
    yes: bool,
    /// How many changes may run at once
    #[arg(long, default_value_t = 10)]
    parallelism: usize,
}

/// How `plan start|stop|restart` run.
#[derive(clap::Args, Debug)]
struct PowerArgs {
    /// How many VMs at once
    #[arg(long, default_value_t = 10)]
    parallelism: usize,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum ListOutput {
    Table,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum OutputFormat {
    Ansible,
    SshConfig,
    Hosts,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum StatusOutput {
    Table,
    Json,
    Yaml,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum SchemaOf {
    Plan,
    Diff,
    Providers,
}

#[derive(Subcommand, Debug)]
enum ProviderCommand {
    /// List providers, checking each one's health (in parallel; 5 s at most each)
    List {
        /// Only providers of this service type (siteplan's are all `vm`)
        #[arg(long = "type", value_name = "TYPE")]
        service_type: Option<String>,
        /// At most this many (1 to 100)
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=100))]
        page_size: u16,
        /// The token a previous page ended with
        #[arg(long)]
        page_token: Option<String>,
        #[arg(short, long = "output", value_enum, default_value = "table")]
        output: providers::Output,
    },
    /// One provider, by id or name
    Get {
        id_or_name: String,
        #[arg(short, long = "output", value_enum, default_value = "json")]
        output: providers::Output,
    },
}

/// How much is said.
#[derive(clap::Args, Debug)]
struct OutputArgs {
    /// Say only the counts, errors and the final summary
    #[arg(short, long, conflicts_with = "verbose")]
    quiet: bool,
    /// Also say what each change sets as it starts, and how long observing took
    #[arg(short, long)]
    verbose: bool,
}

impl OutputArgs {
    fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a plan and report every problem in it at once
    Validate {
        #[command(flatten)]
        plan: PlanArgs,
        /// Treat warnings (kcli keys siteplan ignores) as errors
        #[arg(long)]
        strict: bool,
        /// Also say which files were read besides the plan (parameter files, base plans, the
        /// kcli configuration)
        #[arg(short, long)]
        verbose: bool,
    },
    /// Print the plan after templating, as siteplan reads it
    Render {
        #[command(flatten)]
        plan: PlanArgs,
    },
    /// Print, as YAML, the Kubernetes objects `apply` would send to a KubeVirt provider (for
    /// committing manifests instead of applying them). Secret values are shown as (sensitive)
    Export {
        #[command(flatten)]
        plan: PlanArgs,
        /// The KubeVirt provider, by its name in the providers file
        #[arg(long)]
        provider: Option<String>,
        /// The plan's name, which marks what it creates. Default: the file's name without extension
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the plan's dependency graph
    Graph {
        #[command(flatten)]
        plan: PlanArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: GraphFormat,
    },
    /// Show what apply would change on the provider
    Diff {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        moved: MovedArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// human (a terminal), markdown (a pull-request comment) or json (versioned; see
        /// `plan schema diff`)
        #[arg(long, value_enum, default_value = "human")]
        format: DiffFormat,
        /// Exit 0 when there is nothing to change, 2 when there is, 1 on error
        #[arg(long)]
        detailed_exitcode: bool,
        /// Replace this resource (entry name or address, repeatable) even if unchanged
        #[arg(long = "replace", value_name = "NAME")]
        replace: Vec<String>,
        /// Save the plan to PLANFILE, for `plan apply PLANFILE` to apply exactly these changes
        #[arg(long, value_name = "PLANFILE")]
        out: Option<PathBuf>,
        /// Compare FILE with another version of the plan instead of with a provider: a file, or
        /// a git revision and path (`origin/main:site.yml`; `HEAD~1:./site.yml` from here)
        #[arg(long, value_name = "OLD", conflicts_with_all = ["provider", "replace", "targets"])]
        against: Option<String>,
    },
    /// Make the provider match the plan (FILE may be a plan saved by `plan diff --out`)
    Apply {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        moved: MovedArgs,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        output: OutputArgs,
        /// Wait until every running VM has an IP address; fail if one has none in time
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait")]
        wait_timeout: u64,
        /// Replace this resource (entry name or address, repeatable) even if unchanged
        #[arg(long = "replace", value_name = "NAME")]
        replace: Vec<String>,
        /// Restart the running VMs whose changes take effect only at a restart (this run's,
        /// and those saved earlier), after the changes, in dependency order. Without it,
        /// nothing running is restarted, and apply says which VMs wait
        #[arg(long)]
        restart: bool,
        /// How long a VM restarted by --restart may take to shut down before it is forced
        /// off, in seconds (default: the provider's, 60 for libvirt)
        #[arg(long, value_name = "SECONDS", requires = "restart")]
        shutdown_timeout: Option<u64>,
    },
    /// Delete everything the plan created, and nothing else
    Destroy {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        moved: MovedArgs,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Every resource of the plan as it is live: state, addresses, what waits for a restart,
    /// what changed outside siteplan, and what apply would do. Exit 0 when the lab matches
    /// the plan, 2 when it does not, 1 on error
    Status {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        moved: MovedArgs,
        #[arg(short, long = "output", value_enum, default_value = "table")]
        output: StatusOutput,
    },
    /// Start the plan's VMs (those it declares running), or the ones named, in dependency
    /// order
    Start {
        #[command(flatten)]
        plan: PlanArgs,
        /// VMs of the plan, by name (default: all of them)
        #[arg(value_name = "VM")]
        vms: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        power: PowerArgs,
        /// Wait until every running VM has an IP address; fail if one has none in time
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait")]
        wait_timeout: u64,
    },
    /// Stop the plan's VMs, or the ones named, in reverse dependency order: each is asked to
    /// shut down, and forced off when it has not within --timeout
    Stop {
        #[command(flatten)]
        plan: PlanArgs,
        /// VMs of the plan, by name (default: all of them)
        #[arg(value_name = "VM")]
        vms: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        power: PowerArgs,
        /// Seconds a VM may take to shut down before it is forced off (default: the
        /// provider's, 60 for libvirt)
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
    },
    /// Restart the plan's VMs (those it declares running), or the ones named: stopped as
    /// `plan stop` does, then started, so that they run what they are defined with
    Restart {
        #[command(flatten)]
        plan: PlanArgs,
        /// VMs of the plan, by name (default: all of them)
        #[arg(value_name = "VM")]
        vms: Vec<String>,
        #[command(flatten)]
        target: TargetArgs,
        #[command(flatten)]
        power: PowerArgs,
        /// Seconds a VM may take to shut down before it is forced off (default: the
        /// provider's, 60 for libvirt)
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<u64>,
        /// Wait until every running VM has an IP address; fail if one has none in time
        #[arg(long)]
        wait: bool,
        /// How long --wait waits, in seconds
        #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait")]
        wait_timeout: u64,
    },
    /// The plans present on the providers (every enabled one of the providers file, or
    /// --provider), found from ownership marks: siteplan's and kcli's, as `kcli list plan`
    /// shows them, with their VMs and states. Needs no plan file
    List {
        /// One provider only: a name from the providers file, `sandbox`, or a libvirt URI
        #[arg(long)]
        provider: Option<String>,
        #[arg(short, long = "output", value_enum, default_value = "table")]
        output: ListOutput,
    },
    /// One VM of the plan as it is live: state, autostart, plan, profile, image, addresses,
    /// memory, cpus, creation time, NICs (MAC, network), disks (size, format, path), snapshots
    Info {
        #[command(flatten)]
        plan: PlanArgs,
        /// The VM, by name
        vm: String,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(short, long = "output", value_enum, default_value = "table")]
        output: StatusOutput,
    },
    /// The lab's VMs for other tools, from live state: an Ansible inventory (a group for the
    /// plan and one per profile), ssh config entries, /etc/hosts lines, or JSON with every
    /// VM's addresses and MACs
    Output {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value = "json")]
        format: OutputFormat,
        /// The user to log in as (default: the image's usual user, as kcli guesses it: debian,
        /// ubuntu, fedora, cloud-user, core..., else root)
        #[arg(long)]
        user: Option<String>,
    },
    /// Attach to a running VM's serial console through the provider (libvirt's console
    /// stream, as `virsh console`); Ctrl-] detaches
    Console {
        #[command(flatten)]
        plan: PlanArgs,
        /// The VM, by name
        vm: String,
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Log in to a VM of the plan with the system's ssh: the plan's user, key and address
    /// (through the libvirt host when the provider is qemu+ssh://); anything after `--` is run
    /// instead of a shell. The exit status is ssh's
    Ssh {
        #[command(flatten)]
        plan: PlanArgs,
        /// The VM, by name
        vm: String,
        #[command(flatten)]
        target: TargetArgs,
        /// The user to log in as (default: the image's usual user)
        #[arg(long)]
        user: Option<String>,
        /// The command to run, after `--`
        #[arg(last = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Remove the plan's lock, which a run holds on the providers while it changes the plan,
    /// whoever holds it (as `terraform force-unlock`): for a run that ended without releasing
    /// it where it would not be taken over yet (a run on another host, killed, whose lock has
    /// not expired). Asks first, unless --yes
    Unlock {
        #[command(flatten)]
        plan: PlanArgs,
        /// A provider's name from the providers file, `sandbox`, or a libvirt URI (as for apply)
        #[arg(long)]
        provider: Option<String>,
        /// The plan's name. Default: the file's name without extension
        #[arg(long)]
        name: Option<String>,
        /// Remove it without asking (required when stdin is not a terminal)
        #[arg(long)]
        yes: bool,
    },
    /// Lab snapshots: every VM of the plan at one point in time (paused together, memory
    /// included), taken, listed, reverted and deleted as one
    Snapshot {
        #[command(subcommand)]
        command: snapshot::SnapshotCommand,
    },
    /// The providers you have (see the providers file), with their health
    Provider {
        #[command(subcommand)]
        command: ProviderCommand,
    },
    /// Print a JSON Schema: of plan files (the default), of `plan diff --format json`, or of the
    /// providers file
    Schema {
        #[arg(value_enum, default_value = "plan")]
        of: SchemaOf,
    },
    /// Print a shell completion script: plan completions bash > /etc/bash_completion.d/plan
    Completions { shell: clap_complete::Shell },
}

/// Runs the command line and returns the process's exit status.
/// Gives a command's plan arguments the plan's name its `--name` sets, so that loading the plan
/// reads the parameter files and sees the `{{ plan }}` the name means.
fn name_the_plan(command: &mut Command) {
    let (plan, name) = match command {
        Command::Diff { plan, target, .. }
        | Command::Apply { plan, target, .. }
        | Command::Destroy { plan, target, .. }
        | Command::Status { plan, target, .. }
        | Command::Start { plan, target, .. }
        | Command::Stop { plan, target, .. }
        | Command::Restart { plan, target, .. }
        | Command::Info { plan, target, .. }
        | Command::Output { plan, target, .. }
        | Command::Console { plan, target, .. }
        | Command::Ssh { plan, target, .. } => (plan, target.name.clone()),
        Command::Export { plan, name, .. } | Command::Unlock { plan, name, .. } => {
            (plan, name.clone())
        }
        Command::Snapshot { command } => command.plan_and_name(),
        _ => return,
    };
    plan.name = name;
}

/// The command line: as derived, except that a command with something to name after the plan
/// file (`plan info FILE VM`) needs the file named, where the others read kcli_plan.yml without
/// one.
fn command() -> clap::Command {
    file_named_before_more(Cli::command())
}

fn file_named_before_more(mut command: clap::Command) -> clap::Command {
    let positionals: Vec<(String, bool)> = command
        .get_positionals()
        .map(|a| (a.get_id().to_string(), a.is_required_set()))
        .collect();
    let has_file = positionals.iter().any(|(id, _)| id == "file");
    let more_required = positionals
        .iter()
        .any(|(id, required)| id != "file" && *required);
    if has_file && more_required {
        command = command.mut_arg("file", |file| file.required(true).default_value(None));
        // Changing an argument moves it last: give each its place again.
        for (index, (id, _)) in positionals.iter().enumerate() {
            command = command.mut_arg(id, |arg| arg.index(index + 1));
        }
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, file_named_before_more);
    }
    command
}

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
        let kcli = if !manifest::kcli::enabled() {
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
