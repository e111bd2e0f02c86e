//! How `plan diff`, `apply` and `destroy` look on a terminal or in a log: the `View` the
//! operations report through, and the words and exit status each `Outcome` ends with.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use super::out::{self, say};
use super::progress::{self, Verbosity};
use crate::apply::Progress;
use crate::ops::{self, Answer, Asked, Event, Hint, Outcome, Refusal, View, Vms};
use crate::plan::{render, Action, Plan};

/// `diff --detailed-exitcode` when there is something to change.
pub(super) const EXIT_CHANGES: u8 = 2;
const EXIT_ERROR: u8 = 1;
const EXIT_INTERRUPTED: u8 = 130;

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffFormat {
    Human,
    Markdown,
    Json,
}

/// What a command shows, decided once from its flags.
pub struct Terminal {
    pub verbosity: Verbosity,
    /// How the plan is printed (`diff --format`; apply and destroy print it for a person).
    pub format: DiffFormat,
    /// The command changes things, and asks first unless `yes`.
    pub asks: bool,
    pub yes: bool,
    /// `--wait`'s spinner, while it waits.
    spinner: Mutex<Option<indicatif::ProgressBar>>,
    /// The signals a command that changes things listens for: asking gives up on one, and
    /// the exit status says which came.
    pub interruption: ops::Interruption,
}

impl Terminal {
    /// A view for a command that only looks or prints a document: no provider line, no
    /// progress, never asks; refusals still say why.
    pub fn quiet() -> Terminal {
        Terminal::new(Verbosity::Quiet, DiffFormat::Human, false, false)
    }

    pub fn new(verbosity: Verbosity, format: DiffFormat, asks: bool, yes: bool) -> Terminal {
        Terminal {
            verbosity,
            format,
            asks,
            yes,
            spinner: Mutex::new(None),
            interruption: ops::Interruption::new(Arc::new(stop_now)),
        }
    }

    fn talks(&self) -> bool {
        self.verbosity > Verbosity::Quiet
    }

    fn show_plan(&self, plan: &Plan, picture: &crate::picture::Picture) {
        // Quiet still shows the whole diff when it is about to ask about it.
        let asking = self.asks && !self.yes && !plan.is_empty();
        let shown = match self.format {
            DiffFormat::Markdown => render::markdown::with_picture(plan, picture),
            DiffFormat::Json => render::json::with_picture(plan, picture),
            DiffFormat::Human if !self.talks() && !asking => {
                format!("{}\n", render::summary(plan))
            }
            DiffFormat::Human => render::human(plan),
        };
        let _ = out::stdout(&shown);
    }

    fn waiting(&self, pending: &[String]) {
        let message = format!("waiting for an address: {}", pending.join(", "));
        if self.talks() && out::stderr_is_terminal() {
            let mut spinner = self.spinner.lock().unwrap_or_else(|p| p.into_inner());
            let spinner = spinner.get_or_insert_with(indicatif::ProgressBar::new_spinner);
            spinner.set_message(crate::secrets::scrub(&message));
            spinner.tick();
        } else if self.verbosity == Verbosity::Verbose {
            say!("{message}");
        }
    }
}

impl View for Terminal {
    fn event(&self, event: Event<'_>) {
        match event {
            Event::Provider {
                name,
                kind,
                endpoint,
            } if self.talks() => match name {
                Some(name) => say!("Provider: {name}, {kind} ({endpoint})"),
                None => say!("Provider: {kind} ({endpoint})"),
            },
            Event::Placed { group, placed } if self.talks() => {
                let lines: Vec<String> = placed
                    .iter()
                    .map(|p| {
                        let why = match p.why {
                            crate::placement::Why::Holds => "holds it",
                            crate::placement::Why::MostRoom => "new: the most memory left",
                            crate::placement::Why::Moved => {
                                "moves: its host is drained; the most memory left"
                            }
                        };
                        format!("  {} on {} ({why})", p.vm, p.host)
                    })
                    .collect();
                say!("Placement on group {group}:\n{}", lines.join("\n"))
            }
            Event::Spanning(span) if self.talks() => say!(
                "Network {} spans hosts: DHCP and DNS on {}, joined by VXLAN {} to {}.",
                span.network,
                span.home,
                span.vni,
                span.others.join(", ")
            ),
            Event::Moved {
                vm,
                from,
                to,
                how,
                took,
            } => say!(
                "Moved {vm} from {from} to {to} ({}, {:.1}s).",
                match how {
                    crate::ops::MovedHow::Live => "live, while it ran",
                    crate::ops::MovedHow::Stopped => "stopped, and stopped there",
                    crate::ops::MovedHow::Restarted => "stopped, moved, and started there",
                },
                took.as_secs_f64()
            ),
            Event::Targeting(entries) if self.talks() => {
                say!(
                    "Targeting {}: other changes are left out.",
                    entries.join(", ")
                )
            }
            Event::Observed { resources, took } if self.verbosity == Verbosity::Verbose => {
                say!("Observed {resources} resources in {} ms.", took.as_millis())
            }
            Event::Plan { plan, picture } => self.show_plan(plan, picture),
            Event::Saved { file, apply } => say!(
                "Saved the plan to {}: `{apply}` applies exactly these changes.",
                file.display(),
            ),
            Event::Warnings { problems, source } => super::report_problems(problems, source),
            Event::Warning(text) => say!("warning: {text}"),
            Event::Interrupted(signal) => say!(
                "\nInterrupted ({}): starting nothing more; waiting for the changes in progress \
                 (again to stop at once).",
                signal.name()
            ),
            Event::Applied { report, run } => {
                say!(
                    "\n{run}: {} done, {} failed, {} skipped.",
                    report.succeeded(),
                    report.failed(),
                    report.skipped()
                );
            }
            Event::WaitingForRestart { vms, request } => {
                let command = super::resolve::command_line(request, "apply --restart");
                say!(
                    "Waiting for a restart (saved, not running yet): {}. `{command}` restarts {}.",
                    vms.join(", "),
                    if vms.len() == 1 { "it" } else { "them" }
                );
            }
            Event::Waiting(pending) => self.waiting(pending),
            Event::Waited => {
                if let Some(s) = self
                    .spinner
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                {
                    s.finish_and_clear();
                }
            }
            Event::Provider { .. }
            | Event::Placed { .. }
            | Event::Spanning(_)
            | Event::Targeting(_)
            | Event::Observed { .. } => {}
        }
    }

    fn confirm(&self, plan: &Plan, destroying: bool) -> Answer {
        let destructive = plan.count(Action::Delete) + plan.count(Action::Replace);
        self.ask(&format!(
            "\nDo you want to {} these changes{}?",
            if destroying { "destroy with" } else { "apply" },
            if destructive > 0 {
                format!(" ({destructive} delete or replace)")
            } else {
                String::new()
            }
        ))
    }

    fn ask(&self, question: &str) -> Answer {
        if self.yes {
            return Answer::Yes;
        }
        if !out::stdin_is_terminal() {
            return Answer::CannotAsk;
        }
        out::stderr(&format!("{question} Only 'yes' is accepted: "));
        let interrupted = || self.interruption.signal().is_some();
        match out::read_answer(interrupted) {
            Some(answer) if answer.trim() == "yes" && !interrupted() => Answer::Yes,
            _ => Answer::No,
        }
    }

    fn progress(&self, total: usize) -> Arc<dyn Progress> {
        Arc::from(progress::for_run(
            total,
            self.verbosity,
            out::stderr_is_terminal(),
        ))
    }
}

/// A second signal: stop now. What was in flight is converged by the next run, which takes
/// over this run's lock as stale.
fn stop_now(signal: ops::Signal) {
    say!(
        "\nInterrupted again ({}): stopping now. Changes in flight may be half made; the next \
         run finishes them. A VM left paused (by a lab snapshot) shows as paused in `plan \
         status`, and `plan apply` resumes it.",
        signal.name()
    );
    std::process::exit(i32::from(signal.exit_status()));
}

/// The words an outcome ends with, and the exit status: 0 done (or nothing to do), 1 any
/// error, 2 changes to make (`diff --detailed-exitcode`), 130 interrupted by Ctrl-C, 143 by
/// SIGTERM.
pub fn finish(
    outcome: Result<Outcome, Refusal>,
    view: &Terminal,
    detailed_exitcode: bool,
) -> ExitCode {
    let status = match outcome {
        Ok(outcome) => ended(outcome, view, detailed_exitcode),
        Err(refusal) => {
            refuse(refusal);
            ExitCode::from(EXIT_ERROR)
        }
    };
    match view.interruption.signal() {
        Some(signal) => ExitCode::from(signal.exit_status()),
        None => status,
    }
}

fn ended(outcome: Outcome, view: &Terminal, detailed_exitcode: bool) -> ExitCode {
    match outcome {
        Outcome::UpToDate { vms: None } => ExitCode::SUCCESS,
        Outcome::UpToDate { vms: Some(vms) } => show_vms(&vms, view),
        Outcome::Planned(_) if detailed_exitcode => ExitCode::from(EXIT_CHANGES),
        Outcome::Planned(_) => ExitCode::SUCCESS,
        Outcome::Applied { report, vms } => {
            let shown = vms.map_or(ExitCode::SUCCESS, |vms| show_vms(&vms, view));
            let interrupted = report.interrupted();
            if interrupted > 0 {
                say!(
                    "{interrupted} change{} not started; run the same command again to finish.",
                    if interrupted == 1 { "" } else { "s" }
                );
                ExitCode::from(EXIT_INTERRUPTED)
            } else if report.failed() > 0 {
                ExitCode::from(EXIT_ERROR)
            } else {
                shown
            }
        }
    }
}

/// What a hint tells the person, in this command line's words: how it is joined to what it
/// follows, and the words.
fn hint_words(hint: &Hint) -> (&'static str, String) {
    match hint {
        Hint::Apply => ("; ", "`plan apply` creates it".into()),
        Hint::LeaveOut => (": ", "leave it out with --target".into()),
        Hint::DeleteSnapshot { .. } => (
            ": ",
            "`plan snapshot delete` it first, or choose another name".into(),
        ),
        Hint::WhereItGoes { elsewhere, here } => (
            ". ",
            format!(
                "Say where it goes: {} to work on it where it is, or `--provider {here}` to \
                 make it here too",
                elsewhere
                    .iter()
                    .map(|name| format!("`--provider {name}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        ),
        Hint::StartLibvirt => (
            ": ",
            "start libvirtd, or say where the plan goes with --provider (`sandbox` for the \
             embedded sandbox, a libvirt URI, or a name from the providers file)"
                .into(),
        ),
        Hint::NameThePlanFile => (
            ": ",
            format!(
                "name the plan to destroy (`plan destroy FILE`; for a plan whose file is gone, \
                 its path, such as ./{})",
                crate::manifest::DEFAULT_PLAN_FILE
            ),
        ),
    }
}

/// `fact`, followed by what `hints` offer (the first joined as it asks, the rest by "or").
fn hinted(fact: &str, hints: &[Hint]) -> String {
    let mut text = fact.to_string();
    for (i, hint) in hints.iter().enumerate() {
        let (join, words) = hint_words(hint);
        text.push_str(if i == 0 { join } else { ", or " });
        text.push_str(&words);
    }
    text
}

fn refuse(refusal: Refusal) {
    match refusal {
        Refusal::Invalid(message) => say!("error: {message}"),
        Refusal::Hinted(inner, hints) => match *inner {
            Refusal::Invalid(message) => say!("error: {}", hinted(&message, &hints)),
            other => {
                refuse(other);
                for hint in &hints {
                    say!("hint: {}", hint_words(hint).1);
                }
            }
        },
        Refusal::Problems(problems) => {
            for p in &problems {
                say!("error: {}", hinted(&p.fact, &p.hints));
            }
            say!("Nothing was changed.");
        }
        Refusal::Declined => say!("Nothing was changed."),
        Refusal::CannotAsk(asked) => {
            say!(
                "error: not a terminal, so not asking: pass --yes to {}",
                match asked {
                    Asked::Apply => "apply",
                    Asked::Destroy => "destroy",
                    Asked::Revert => "revert",
                    Asked::RemoveLock => "remove the lock",
                }
            );
            say!("Nothing was changed.");
        }
        Refusal::Stale { what, review } => {
            let planfile = &review.planfile;
            let again = format!(
                "{} --out {}",
                super::resolve::command_line(&review.request, "diff"),
                shlex::try_quote(&planfile.to_string_lossy())
                    .map_or_else(|_| planfile.display().to_string(), |q| q.into_owned())
            );
            say!("error: {what}; nothing was changed. Review the plan again: `{again}`")
        }
        Refusal::Load(failure) => {
            super::report_failure(&failure);
        }
        Refusal::Locked(locked) => {
            say!(
                "error: plan `{}` is locked on {} by {}: another run is changing it. Nothing \
                 was changed.",
                locked.plan,
                locked.provider,
                locked.holder.describe()
            );
            say!(
                "Wait for that run to end. If it is gone without releasing the lock, the next \
                 run takes it over once its process has ended (on its own host) or after {} s \
                 without renewal; `{}` removes it now.",
                locked.holder.ttl_seconds,
                super::resolve::command_line(&locked.request, "unlock")
            );
        }
        Refusal::Interrupted(signal) => {
            say!(
                "Interrupted ({}) before any change; nothing was changed.",
                signal.name()
            )
        }
    }
}

/// The VM table, and with `--wait` an error for VMs that got no address in time.
fn show_vms(vms: &Vms, view: &Terminal) -> ExitCode {
    if view.talks() && !vms.rows.is_empty() {
        let mut table = super::table::new(&["VM", "PROVIDER", "STATE", "IP"]);
        for row in &vms.rows {
            let ips = if row.addresses.is_empty() {
                "-".to_string()
            } else {
                let shown: Vec<String> = row.addresses.iter().map(ToString::to_string).collect();
                shown.join(", ")
            };
            // Provider and state keep their width when short, so the table's columns stay
            // put from one run to the next.
            table.add_row(vec![
                row.name.clone(),
                format!("{:10}", row.provider),
                format!("{:8}", row.state.as_str()),
                ips,
            ]);
        }
        let _ = out::stdout(&format!("\n{}", super::table::text(&mut table, 2)));
    }
    let waited = vms.waited.unwrap_or_default().as_secs();
    for (vm, errors, log) in &vms.failed {
        let mut said = format!("error: vm {vm}: cloud-init failed: {}", errors.join("; "));
        if !log.is_empty() {
            said.push_str("\n  the end of its output (/var/log/cloud-init-output.log):");
            for line in log {
                said.push_str(&format!("\n    {line}"));
            }
        }
        say!("{}", crate::secrets::scrub(&said));
    }
    for (vm, why) in &vms.unready {
        say!("error: vm {vm} is not ready after {waited}s: {why}");
    }
    if !vms.unreachable.is_empty() {
        say!(
            "error: no address after {waited}s for: {} (is the guest booting? is DHCP on its \
             network? does its guest agent report its static address?)",
            vms.unreachable.join(", ")
        );
    }
    if vms.unreachable.is_empty() && vms.unready.is_empty() && vms.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR)
    }
}

/// `plan status` as a table: a row per resource, what stands out in its last column, and a
/// line that says whether the lab matches the plan (`diff` is the command that shows what apply
/// would do).
pub fn status_table(status: &ops::LabStatus, diff: &str) -> String {
    let mut table = super::table::new(&["RESOURCE", "PROVIDER", "STATE", "ADDRESSES", "NOTES"]);
    for r in &status.resources {
        let mut notes = Vec::new();
        if r.state == "paused" {
            notes.push("paused: `plan apply` (or `plan start`) resumes it".to_string());
        }
        if !r.pending_restart.is_empty() {
            let waiting: Vec<String> = r
                .pending_restart
                .iter()
                .map(|a| {
                    use crate::plan::render::{shown_name, shown_value};
                    format!(
                        "{} {} → {}",
                        shown_name(&a.name),
                        shown_value(&a.name, &a.before),
                        shown_value(&a.name, &a.after)
                    )
                })
                .collect();
            notes.push(format!("waits for a restart: {}", waiting.join(", ")));
        }
        for a in r.drift.iter().filter(|a| a.name == "running") {
            // Stopped or started since it was applied (`plan stop`, or by hand).
            notes.push(
                if a.after == Some(false.into()) {
                    "the plan says it runs: `plan start` or apply starts it"
                } else {
                    "the plan says it is stopped: apply stops it"
                }
                .to_string(),
            );
        }
        let drifted: Vec<&str> = r
            .drift
            .iter()
            .map(|a| a.name.as_str())
            .filter(|name| *name != "running")
            .collect();
        if !drifted.is_empty() {
            notes.push(format!("changed outside siteplan: {}", drifted.join(", ")));
        }
        let only_power = r.drift.len() == 1 && drifted.is_empty();
        match r.apply {
            None | Some(Action::Restart) => {}
            Some(Action::Update) if only_power => {}
            Some(action) => notes.push(format!(
                "apply would {}",
                serde_json::to_value(action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )),
        }
        table.add_row(vec![
            r.address.clone(),
            r.provider.clone(),
            r.state.clone(),
            if r.addresses.is_empty() {
                "-".to_string()
            } else {
                let shown: Vec<String> = r.addresses.iter().map(ToString::to_string).collect();
                shown.join(", ")
            },
            notes.join("; "),
        ]);
    }
    let verdict = if status.matches {
        format!("Plan `{}` matches the providers.", status.plan)
    } else {
        format!(
            "Plan `{}` does not match the providers: `{diff}` shows what apply would do.",
            status.plan,
        )
    };
    let mut snapshots = String::new();
    for snapshot in &status.snapshots {
        snapshots.push_str(&format!("{}\n", snapshot_line(snapshot)));
    }
    format!(
        "{}\n{snapshots}{verdict}\n",
        super::table::text(&mut table, 2)
    )
}

/// A lab snapshot in one line: `Snapshot `base` (taken …): 3 VMs, 2 running`.
pub fn snapshot_line(snapshot: &crate::ops::snapshot::LabSnapshot) -> String {
    let running = snapshot.vms.iter().filter(|v| v.running).count();
    let mut line = format!(
        "Snapshot `{}` (taken {}): {} VM{}, {running} running",
        snapshot.name,
        snapshot.created,
        snapshot.vms.len(),
        if snapshot.vms.len() == 1 { "" } else { "s" }
    );
    if !snapshot.missing.is_empty() {
        line.push_str(&format!(
            "; not whole: no snapshot on {}",
            snapshot.missing.join(", ")
        ));
    }
    line
}

/// `plan info` for a person: kcli's fields, a line each.
pub fn info_text(info: &ops::VmInfo) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "name: {}", info.name);
    let _ = writeln!(out, "state: {}", info.state);
    let _ = writeln!(
        out,
        "autostart: {}",
        or_dash(info.autostart.map(|a| a.to_string()))
    );
    let _ = writeln!(out, "plan: {}", info.plan);
    let _ = writeln!(out, "provider: {}", info.provider);
    if let Some(group) = &info.group {
        let _ = writeln!(out, "group: {group}");
    }
    let _ = writeln!(out, "profile: {}", or_dash(info.profile.clone()));
    let _ = writeln!(out, "image: {}", or_dash(info.image.clone()));
    let _ = writeln!(
        out,
        "ip: {}",
        if info.addresses.is_empty() {
            "-".to_string()
        } else {
            let shown: Vec<String> = info.addresses.iter().map(ToString::to_string).collect();
            shown.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "memory: {}",
        or_dash(info.memory_mib.map(|m| format!("{m}MiB")))
    );
    let _ = writeln!(out, "cpus: {}", or_dash(info.cpus.map(|c| c.to_string())));
    let _ = writeln!(out, "creationdate: {}", or_dash(info.created.clone()));
    for (n, nic) in info.nics.iter().enumerate() {
        let _ = writeln!(
            out,
            "net interface: eth{n} mac: {} net: {} type: {}",
            nic.mac.as_deref().unwrap_or("-"),
            nic.network,
            nic.model
        );
    }
    for disk in &info.disks {
        let _ = writeln!(
            out,
            "disk: {} size: {} format: {} bus: {} path: {}",
            disk.volume,
            disk.size_bytes.map_or("-".to_string(), |b| {
                let gib = b as f64 / f64::from(1u32 << 30);
                format!("{}GiB", (gib * 100.0).round() / 100.0)
            }),
            disk.format.as_deref().unwrap_or("-"),
            disk.bus,
            disk.path.as_deref().unwrap_or("-")
        );
    }
    for snapshot in &info.snapshots {
        let lab = if info.lab_snapshots.contains(snapshot) {
            " (lab snapshot: `plan snapshot list`)"
        } else {
            ""
        };
        let _ = writeln!(out, "snapshot: {snapshot}{lab}");
    }
    if !info.pending_restart.is_empty() {
        let _ = writeln!(
            out,
            "waiting for a restart: {}",
            info.pending_restart.join(", ")
        );
    }
    out
}

/// `plan list` as a table, as `kcli list plan` prints it (with who made each plan).
pub fn plans_table(listing: &ops::Listing) -> String {
    if listing.plans.is_empty() {
        return "No plans on the providers asked.\n".to_string();
    }
    let mut table = super::table::new(&["PLAN", "PROVIDER", "MADE BY", "VMS"]);
    for plan in &listing.plans {
        let vms: Vec<String> = plan
            .vms
            .iter()
            .map(|vm| format!("{} ({})", vm.name, vm.state))
            .collect();
        table.add_row(vec![
            plan.plan.clone(),
            plan.provider.clone(),
            serde_json::to_value(plan.made_by)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            vms.join(", "),
        ]);
    }
    super::table::text(&mut table, 2)
}
