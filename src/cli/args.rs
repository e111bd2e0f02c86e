//! The command line as clap reads it: every command, its arguments and their help.

use super::*;

#[derive(Parser, Debug)]
#[command(
    name = "plan",
    version,
    about = "Declarative plan/apply for virtual labs, in kcli's plan format"
)]
pub(super) struct Cli {
    #[command(subcommand)]
    pub(super) command: Command,
}

/// Options every command that reads a plan takes.
#[derive(clap::Args, Debug)]
pub(super) struct PlanArgs {
    /// The plan file (YAML, rendered as a Jinja template first); as kcli, `kcli_plan.yml`
    /// when none is given
    #[arg(default_value = manifest::DEFAULT_PLAN_FILE)]
    pub(super) file: PathBuf,
    /// Set a parameter, overriding the plan and parameter files (repeatable): -P memory=4096
    #[arg(short = 'P', long = "param", value_name = "KEY=VALUE")]
    pub(super) params: Vec<String>,
    /// Read parameters from a YAML file (repeatable; later files win).
    /// Default: kcli_parameters.yml in the current directory, if it exists
    #[arg(long = "paramfile", value_name = "FILE")]
    pub(super) paramfiles: Vec<PathBuf>,
    /// Read no kcli configuration (~/.kcli/config.yml, ~/.kcli/profiles.yml), for a run that
    /// means the same on every machine. Also: SITEPLAN_NO_KCLI_CONFIG=1
    #[arg(long)]
    pub(super) no_kcli_config: bool,
    /// Let the plan read this directory (and what is under it) or file besides its own
    /// directory's tree: scripts, origin files, included and base plans, local images
    /// (repeatable). Also: SITEPLAN_ALLOW_READ=DIR:DIR
    #[arg(long = "allow-read", value_name = "PATH")]
    pub(super) allow_read: Vec<PathBuf>,
}

impl PlanArgs {
    /// The parameter overrides, and whether the kcli configuration is read; the plan's name is
    /// the request's (`resolve`).
    pub(super) fn overrides(&self) -> Overrides {
        Overrides {
            paramfiles: self.paramfiles.clone(),
            sets: self.params.clone(),
            name: None,
            allow_read: self.allow_read.clone(),
            no_kcli_config: self.no_kcli_config,
        }
    }
}

/// Where a plan goes.
#[derive(clap::Args, Debug)]
pub(super) struct TargetArgs {
    /// A provider's name from the providers file, `sandbox`, or a libvirt URI
    /// (qemu:///system, qemu+ssh://host/system). Default: the file's default; without a file,
    /// the local libvirt (SITEPLAN_LOCAL_URI, qemu:///system by default), never another in its
    /// place when it does not answer. A VM's `client:` overrides it
    #[arg(long)]
    pub(super) provider: Option<String>,
    /// The plan's name, which marks what it creates. Default: the file's name without extension
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Consider only this entry (name or address, repeatable) and what it needs; for destroy,
    /// this entry and what needs it
    #[arg(long = "target", value_name = "NAME")]
    pub(super) targets: Vec<String>,
}

/// Whose resources a plan may take as its own.
#[derive(clap::Args, Debug)]
pub(super) struct MovedArgs {
    /// This plan file was moved or renamed: resources its plan's name marks that were applied
    /// from another file are its own (their marks then record this file). Without it a plan is
    /// refused where its name marks what another file applied, which is another lab's
    #[arg(long)]
    pub(super) plan_moved: bool,
    /// Take over this entry (name or address, repeatable) where it exists without any plan's
    /// mark (made by hand, by virt-install, by another tool): the plan adopts it as it is,
    /// changing only what differs from what it declares, and never what would make it again
    #[arg(long = "adopt", value_name = "NAME")]
    pub(super) adopt: Vec<String>,
    /// Adopt every resource the plan declares that exists without any plan's mark (a plan
    /// `kcli create plan` made, taken over as it is)
    #[arg(long)]
    pub(super) adopt_all: bool,
}

impl MovedArgs {
    /// What `--adopt` and `--adopt-all` ask to adopt.
    pub(super) fn adopted(&self) -> Vec<String> {
        let mut adopt = self.adopt.clone();
        if self.adopt_all {
            adopt.push(crate::plan::ADOPT_ALL.to_string());
        }
        adopt
    }
}

/// How changes are made.
#[derive(clap::Args, Debug)]
pub(super) struct RunArgs {
    /// Go ahead without asking (required when stdin is not a terminal)
    #[arg(long, visible_alias = "auto-approve")]
    pub(super) yes: bool,
    /// How many changes may run at once
    #[arg(long, default_value_t = 10)]
    pub(super) parallelism: usize,
}

/// How `plan start|stop|restart` run.
#[derive(clap::Args, Debug)]
pub(super) struct PowerArgs {
    /// How many VMs at once
    #[arg(long, default_value_t = 10)]
    pub(super) parallelism: usize,
    #[command(flatten)]
    pub(super) output: OutputArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListOutput {
    Table,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OutputFormat {
    Ansible,
    SshConfig,
    Hosts,
    Json,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StatusOutput {
    Table,
    Json,
    Yaml,
}

/// `plan status -o`: the outputs of `StatusOutput`, and the lab as a picture.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LabOutput {
    Table,
    Json,
    Yaml,
    /// The lab as a picture (also html, mermaid), as `plan graph --view topology` draws it
    Svg,
    Html,
    Mermaid,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(super) enum SchemaOf {
    Plan,
    Diff,
    Providers,
}

#[derive(Subcommand, Debug)]
pub(super) enum ProviderCommand {
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
pub(super) struct OutputArgs {
    /// Say only the counts, errors and the final summary
    #[arg(short, long, conflicts_with = "verbose")]
    pub(super) quiet: bool,
    /// Also say what each change sets as it starts, and how long observing took
    #[arg(short, long)]
    pub(super) verbose: bool,
}

impl OutputArgs {
    pub(super) fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
    Export(ExportArgs),
    /// Draw the plan: its dependency graph (text, dot, mermaid), or, with `--view topology`,
    /// a picture of the lab (svg, html, mermaid, json): its VMs, networks, disks and pools by
    /// provider and host, each marked by what apply would change and how it stands
    Graph(GraphArgs),
    /// Show what apply would change on the provider
    Diff(DiffArgs),
    /// Make the provider match the plan (FILE may be a plan saved by `plan diff --out`)
    Apply(ApplyArgs),
    /// Delete everything the plan created, and nothing else
    Destroy(DestroyArgs),
    /// Move the plan's VMs off a host of its group onto the group's other hosts (live where
    /// they run, their disks copied), then converge the plan: what it had on the host goes
    Drain(DrainArgs),
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
        output: LabOutput,
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
    /// Write a plan in kcli's format from what a provider holds: VMs by name, every VM on a
    /// network (--network), or a plan by the name its marks give, kcli's or siteplan's
    /// (--plan). VMs that share their settings share a profile; secrets become `?required`
    /// parameters. Applied with --adopt-all, the plan changes nothing but siteplan's marks, and
    /// generate says so, having read the plan back as `plan diff` will
    Generate {
        /// VMs, by name
        #[arg(value_name = "VM")]
        vms: Vec<String>,
        /// Every VM attached to this network, and the network (repeatable)
        #[arg(long = "network", value_name = "NET")]
        networks: Vec<String>,
        /// Every VM of this plan, as siteplan's or kcli's marks say (repeatable)
        #[arg(long = "plan", value_name = "NAME")]
        plans: Vec<String>,
        /// Where the VMs are: a name from the providers file, `sandbox`, or a libvirt URI
        #[arg(long)]
        provider: Option<String>,
        /// Write the plan to FILE (refused if it exists) instead of standard output
        #[arg(short, long = "output", value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// Do not read the kcli configuration (~/.kcli/config.yml) when reading the plan back
        #[arg(long)]
        no_kcli_config: bool,
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

/// The command line: as derived, except that a command with something to name after the plan
/// file (`plan info FILE VM`) needs the file named, where the others read kcli_plan.yml without
/// one.
pub(super) fn command() -> clap::Command {
    file_named_before_more(Cli::command())
}

pub(super) fn file_named_before_more(mut command: clap::Command) -> clap::Command {
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

// `plan export`'s arguments (its help is the variant's).
#[derive(clap::Args, Debug)]
pub(super) struct ExportArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    /// The KubeVirt provider, by its name in the providers file
    #[arg(long)]
    pub(super) provider: Option<String>,
    /// The plan's name, which marks what it creates. Default: the file's name without extension
    #[arg(long)]
    pub(super) name: Option<String>,
}

// `plan diff`'s arguments (its help is the variant's).
#[derive(clap::Args, Debug)]
pub(super) struct DiffArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    #[command(flatten)]
    pub(super) target: TargetArgs,
    #[command(flatten)]
    pub(super) moved: MovedArgs,
    #[command(flatten)]
    pub(super) output: OutputArgs,
    /// human (a terminal), markdown (a pull-request comment) or json (versioned; see
    /// `plan schema diff`)
    #[arg(long, value_enum, default_value = "human")]
    pub(super) format: DiffFormat,
    /// Exit 0 when there is nothing to change, 2 when there is, 1 on error
    #[arg(long)]
    pub(super) detailed_exitcode: bool,
    /// Replace this resource (entry name or address, repeatable) even if unchanged
    #[arg(long = "replace", value_name = "NAME")]
    pub(super) replace: Vec<String>,
    /// Save the plan to PLANFILE, for `plan apply PLANFILE` to apply exactly these changes
    #[arg(long, value_name = "PLANFILE")]
    pub(super) out: Option<PathBuf>,
    /// Compare FILE with another version of the plan instead of with a provider: a file, or
    /// a git revision and path (`origin/main:site.yml`; `HEAD~1:./site.yml` from here)
    #[arg(long, value_name = "OLD", conflicts_with_all = ["replace", "targets"])]
    pub(super) against: Option<String>,
}

/// What `plan graph` draws.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GraphView {
    /// Which entries need which
    Deps,
    /// The lab: where each thing is and what it sits on, with the change drawn on it
    Topology,
}

/// How `plan graph` draws: text, dot and mermaid for the dependency graph; svg, html,
/// mermaid and json for the topology.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum DrawFormat {
    Text,
    Dot,
    Mermaid,
    Svg,
    Html,
    Json,
}

// `plan graph`'s arguments (its help is the variant's).
#[derive(clap::Args, Debug)]
pub(super) struct GraphArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    #[command(flatten)]
    pub(super) target: TargetArgs,
    #[arg(long, value_enum, default_value = "deps")]
    pub(super) view: GraphView,
    /// text for the dependency graph, svg for the topology, when not given
    #[arg(long, value_enum)]
    pub(super) format: Option<DrawFormat>,
    /// The topology against another version of the plan instead of the providers: a file, or
    /// a git revision and path (`origin/main:site.yml`)
    #[arg(long, value_name = "OLD", conflicts_with = "plan_only")]
    pub(super) against: Option<String>,
    /// The topology of the plan alone, asking no provider
    #[arg(long)]
    pub(super) plan_only: bool,
    /// Write the drawing to FILE instead of standard output
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub(super) out: Option<PathBuf>,
}

// `plan apply`'s arguments (its help is the variant's).
#[derive(clap::Args, Debug)]
pub(super) struct ApplyArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    #[command(flatten)]
    pub(super) target: TargetArgs,
    #[command(flatten)]
    pub(super) moved: MovedArgs,
    #[command(flatten)]
    pub(super) run: RunArgs,
    #[command(flatten)]
    pub(super) output: OutputArgs,
    /// Wait until every running VM has an IP address; fail if one has none in time
    #[arg(long)]
    pub(super) wait: bool,
    /// How long --wait waits, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 300, requires = "wait")]
    pub(super) wait_timeout: u64,
    /// Replace this resource (entry name or address, repeatable) even if unchanged
    #[arg(long = "replace", value_name = "NAME")]
    pub(super) replace: Vec<String>,
    /// Restart the running VMs whose changes take effect only at a restart (this run's,
    /// and those saved earlier), after the changes, in dependency order. Without it,
    /// nothing running is restarted, and apply says which VMs wait
    #[arg(long)]
    pub(super) restart: bool,
    /// How long a VM restarted by --restart may take to shut down before it is forced
    /// off, in seconds (default: the provider's, 60 for libvirt)
    #[arg(long, value_name = "SECONDS", requires = "restart")]
    pub(super) shutdown_timeout: Option<u64>,
}

// `plan drain`'s arguments (its help is the variant's).
#[derive(clap::Args, Debug)]
pub(super) struct DrainArgs {
    /// The host to drain: a provider of the providers file, in a group the plan goes to
    #[arg(value_name = "HOST")]
    pub(super) host: String,
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    #[command(flatten)]
    pub(super) target: TargetArgs,
    #[command(flatten)]
    pub(super) moved: MovedArgs,
    #[command(flatten)]
    pub(super) run: RunArgs,
    #[command(flatten)]
    pub(super) output: OutputArgs,
}

// `plan destroy`'s arguments (its help is the variant's).
#[derive(clap::Args, Debug)]
pub(super) struct DestroyArgs {
    #[command(flatten)]
    pub(super) plan: PlanArgs,
    #[command(flatten)]
    pub(super) target: TargetArgs,
    #[command(flatten)]
    pub(super) moved: MovedArgs,
    #[command(flatten)]
    pub(super) run: RunArgs,
    #[command(flatten)]
    pub(super) output: OutputArgs,
}
