//! `plan snapshot create|list|revert|delete`: flags, and the words each outcome ends with.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;

use super::out::say;
use super::progress::Verbosity;
use super::view::{DiffFormat, Terminal};
use super::{
    document, found, load_for, print, request, ListOutput, PlanArgs, TargetArgs, EXIT_ERROR,
};
use crate::manifest::Loaded;
use crate::ops::snapshot::{self, Created, Deleted, Listed, Reverted};
use crate::ops::{Request, RunOptions};

#[derive(Subcommand, Debug)]
pub(super) enum SnapshotCommand {
    /// Take lab snapshot NAME of the plan's VMs (or of --target's): every running VM is
    /// paused, all are snapshotted with their memory, then all resume, so the lab is one
    /// point in time; says how long it was paused. If one VM's snapshot fails, none is kept
    Create {
        #[command(flatten)]
        plan: PlanArgs,
        /// The snapshot's name (letters, digits, `-`, `_`, `.`)
        #[arg(value_name = "NAME")]
        snapshot: String,
        #[command(flatten)]
        target: TargetArgs,
        /// How many VMs at once (each provider may take fewer)
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
    },
    /// The plan's lab snapshots: when each was taken, of which VMs, and whether it is whole
    List {
        #[command(flatten)]
        plan: PlanArgs,
        #[command(flatten)]
        target: TargetArgs,
        #[arg(short, long = "output", value_enum, default_value = "table")]
        output: ListOutput,
    },
    /// Bring the VMs of lab snapshot NAME (or --target's) back to it: disks, memory and
    /// definition; they resume together. Asks first, unless --yes
    Revert {
        #[command(flatten)]
        plan: PlanArgs,
        /// The snapshot's name
        #[arg(value_name = "NAME")]
        snapshot: String,
        #[command(flatten)]
        target: TargetArgs,
        /// Go ahead without asking (required when stdin is not a terminal)
        #[arg(long, visible_alias = "auto-approve")]
        yes: bool,
        /// How many VMs at once (each provider may take fewer)
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
    },
    /// Delete lab snapshot NAME from every VM that holds it (or from --target's)
    Delete {
        #[command(flatten)]
        plan: PlanArgs,
        /// The snapshot's name
        #[arg(value_name = "NAME")]
        snapshot: String,
        #[command(flatten)]
        target: TargetArgs,
        /// How many VMs at once (each provider may take fewer)
        #[arg(long, default_value_t = 10)]
        parallelism: usize,
    },
}

fn seconds(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn vms(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("vm/{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn run(command: SnapshotCommand) -> ExitCode {
    let ran = || -> Result<ExitCode, ExitCode> {
        match command {
            SnapshotCommand::Create {
                plan,
                snapshot: name,
                target,
                parallelism,
            } => {
                let (view, request, loaded, names) = prepare(&plan, target, true)?;
                let options = options(&view, parallelism, &request, "create");
                let ran = super::block_on(snapshot::create(
                    &request, &loaded, &name, &names, &options, &view,
                ));
                let created = found(ran, &view)?;
                Ok(with_signal(&view, created_words(&request.name, &created)))
            }
            SnapshotCommand::List {
                plan,
                target,
                output,
            } => {
                let view = Terminal::quiet();
                let request = request(&plan, target);
                let loaded = load_for(&request)?;
                let ran = super::block_on(snapshot::list(&request, &loaded, &view));
                let listed = found(ran, &view)?;
                Ok(print(&match output {
                    ListOutput::Json => document(&listed, false),
                    ListOutput::Table => table(&listed),
                }))
            }
            SnapshotCommand::Revert {
                plan,
                snapshot: name,
                target,
                yes,
                parallelism,
            } => {
                let (view, request, loaded, names) = prepare(&plan, target, yes)?;
                let options = options(&view, parallelism, &request, "revert");
                let ran = super::block_on(snapshot::revert(
                    &request, &loaded, &name, &names, &options, &view,
                ));
                let reverted = found(ran, &view)?;
                Ok(with_signal(&view, reverted_words(&request.name, &reverted)))
            }
            SnapshotCommand::Delete {
                plan,
                snapshot: name,
                target,
                parallelism,
            } => {
                let (view, request, loaded, names) = prepare(&plan, target, true)?;
                let options = options(&view, parallelism, &request, "delete");
                let ran = super::block_on(snapshot::delete(
                    &request, &loaded, &name, &names, &options, &view,
                ));
                let deleted = found(ran, &view)?;
                Ok(deleted_words(&request.name, &deleted))
            }
        }
    };
    ran().unwrap_or_else(|code| code)
}

/// What a snapshot command that changes things starts from: its view (which asks unless
/// `yes`), its request, the plan, and the VMs `--target` names.
fn prepare(
    plan: &PlanArgs,
    target: TargetArgs,
    yes: bool,
) -> Result<(Terminal, Request, Loaded, Vec<String>), ExitCode> {
    let view = Terminal::new(Verbosity::Normal, DiffFormat::Human, true, yes);
    let names = target.targets.clone();
    let request = request(plan, target);
    let loaded = load_for(&request)?;
    Ok((view, request, loaded, names))
}

/// How a snapshot command `verb` on `request`'s plan makes its changes.
fn options(view: &Terminal, parallelism: usize, request: &Request, verb: &str) -> RunOptions {
    RunOptions {
        holder: super::resolve::command_line(request, &format!("snapshot {verb}")),
        ..super::resolve::run_options(parallelism, view.interruption.clone())
    }
}

/// A signal that came while a snapshot command finished its work: its exit status.
fn with_signal(view: &Terminal, status: ExitCode) -> ExitCode {
    match view.interruption.signal() {
        Some(signal) => {
            say!(
                "Interrupted ({}): the command finished what it had begun, so that no VM is left paused.",
                signal.name()
            );
            ExitCode::from(signal.exit_status())
        }
        None => status,
    }
}

fn failures(what: &str, failed: &[(String, String)]) {
    for (vm, why) in failed {
        // A provider's error names the VM already.
        let why = why.strip_prefix(&format!("vm/{vm}: ")).unwrap_or(why);
        say!("error: vm/{vm}: {what}: {why}");
    }
}

fn created_words(plan: &str, created: &Created) -> ExitCode {
    let paused = match created.pause {
        Some(pause) => format!(
            "the lab was paused for {} ({} running VM{})",
            seconds(pause),
            created.paused.len(),
            if created.paused.len() == 1 { "" } else { "s" }
        ),
        None if created.not_paused.is_empty() => {
            "no VM was running, so none was paused".to_string()
        }
        None => String::new(),
    };
    // A provider that cannot pause (EC2): said as what the snapshot is, not as a pause.
    let paused = match created.not_paused.len() {
        0 => paused,
        n => {
            let running = format!(
                "{} ran and {} snapshotted running, as {} provider cannot pause {}: each is \
                 consistent in itself, the lab not to the instant",
                vms(&created.not_paused),
                if n == 1 { "was" } else { "were" },
                if n == 1 { "its" } else { "their" },
                if n == 1 { "it" } else { "them" },
            );
            match paused.is_empty() {
                true => running,
                false => format!("{paused}; {running}"),
            }
        }
    };
    failures("snapshot failed", &created.failed);
    failures("could not delete its snapshot again", &created.not_removed);
    failures("could not be resumed; it is paused", &created.not_resumed);
    if created.failed.is_empty() {
        for (disk, holders) in &created.shared {
            say!(
                "Disk {disk}, shared, is in the snapshots of {}: each keeps all its VM's disks, \
                 and the lab was paused, so they hold the same content.",
                vms(holders)
            );
        }
        say!(
            "Snapshot `{}` of plan `{plan}` taken: {} ({}); {paused}; {} in all.",
            created.name,
            vms(&created.vms),
            created.vms.len(),
            seconds(created.took)
        );
    } else if created.not_removed.is_empty() {
        say!(
            "Nothing was kept: snapshot `{}` was deleted again from every VM that had it, and \
             every paused VM resumed ({paused}).",
            created.name
        );
    } else {
        say!(
            "Snapshot `{}` is left on the VMs named above: `plan snapshot delete` removes it.",
            created.name
        );
    }
    if created.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

fn reverted_words(plan: &str, reverted: &Reverted) -> ExitCode {
    let paused = match (reverted.pause, reverted.stopped_instead) {
        (Some(p), false) => format!("; the lab was paused for {}", seconds(p)),
        (Some(p), true) => format!(
            "; the lab was down for {} (stopped: its provider cannot pause)",
            seconds(p)
        ),
        (None, _) => String::new(),
    };
    failures("revert failed", &reverted.failed);
    failures("could not be resumed; it is paused", &reverted.not_resumed);
    if reverted.failed.is_empty() {
        say!(
            "Reverted {} of plan `{plan}` to snapshot `{}` (taken {}); running again: {}{paused}; {} in all.",
            vms(&reverted.reverted),
            reverted.name,
            reverted.created,
            if reverted.running.is_empty() {
                "none".to_string()
            } else {
                vms(&reverted.running)
            },
            seconds(reverted.took)
        );
    } else {
        // Never half reverted without saying which VM is where.
        let mut at = Vec::new();
        for vm in &reverted.reverted {
            at.push(format!("vm/{vm} is at `{}`", reverted.name));
        }
        for (vm, _) in &reverted.failed {
            at.push(format!("vm/{vm} is as it was before the revert"));
        }
        say!(
            "Snapshot `{}` was reverted in part: {}. Run the same command again, or revert \
             the others with --target.",
            reverted.name,
            at.join("; ")
        );
    }
    if reverted.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

fn deleted_words(plan: &str, deleted: &Deleted) -> ExitCode {
    failures("could not delete its snapshot", &deleted.failed);
    if !deleted.deleted.is_empty() {
        say!(
            "Deleted snapshot `{}` of plan `{plan}` from {}.",
            deleted.name,
            vms(&deleted.deleted)
        );
    }
    if deleted.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

/// `plan snapshot list` as a table.
fn table(listed: &Listed) -> String {
    if listed.snapshots.is_empty() {
        return format!("Plan `{}` has no lab snapshots.\n", listed.plan);
    }
    let mut table = super::table::new(&["SNAPSHOT", "TAKEN", "VMS", "RUNNING", "NOTES"]);
    for s in &listed.snapshots {
        let names: Vec<String> = s.vms.iter().map(|v| v.name.clone()).collect();
        let running = s.vms.iter().filter(|v| v.running).count();
        table.add_row(vec![
            s.name.clone(),
            s.created.clone(),
            names.join(", "),
            running.to_string(),
            if s.missing.is_empty() {
                String::new()
            } else {
                format!("not whole: none on {}", s.missing.join(", "))
            },
        ]);
    }
    let mut text = super::table::text(&mut table, 2);
    for other in &listed.others {
        text.push_str(&format!(
            "vm/{} also has snapshot `{}`, which no `plan snapshot create` took.\n",
            other.vm, other.name
        ));
    }
    text
}
