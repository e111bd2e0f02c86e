//! Showing an apply as it runs: bars and spinners on a terminal, timestamped lines elsewhere
//! (CI logs keep every line, and a line per change is what a log reader greps for).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::out::say;
use crate::apply::{Progress, Status, Step};
use crate::plan::{Action, Change};
use crate::provider::Power;
use crate::secrets;

/// How much `plan` says while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// Errors and the final summary only.
    Quiet,
    Normal,
    /// Also each change's attributes as it starts, and timings of observation.
    Verbose,
}

/// The progress display for a run of `total` changes.
pub fn for_run(total: usize, verbosity: Verbosity, terminal: bool) -> Box<dyn Progress> {
    match verbosity {
        Verbosity::Quiet => Box::new(Silent),
        _ if terminal => Box::new(Bars::new(total, verbosity)),
        _ => Box::new(Lines::new(total, verbosity)),
    }
}

fn verb(change: &Change) -> &'static str {
    match (change.action, change.restart) {
        (Action::Create, _) => "creating",
        (Action::Update, _) => "updating",
        (Action::Replace, _) => "replacing",
        (Action::Delete, _) => "deleting",
        (Action::Restart, Some(Power::Start)) => "starting",
        (Action::Restart, Some(Power::Stop { .. })) => "stopping",
        (Action::Restart, _) => "restarting",
    }
}

fn result(outcome: &Step) -> String {
    secrets::scrub(&match &outcome.status {
        Status::Done(done) => format!("ok: {} ({:.1}s)", done.summary, outcome.seconds),
        Status::Failed(message) => format!("FAILED: {message}"),
        Status::Skipped(cause) => format!("skipped, because {cause} failed"),
        Status::Interrupted => "not started (interrupted)".to_string(),
    })
}

/// What `-v` adds when a change starts: the attributes it sets.
fn details(change: &Change) -> Vec<String> {
    change
        .attributes
        .iter()
        .map(|a| {
            let show = |v: &Option<serde_json::Value>| {
                let s = crate::plan::render::shown_value(&a.name, v);
                // A seed's text belongs in `plan diff`, not in a progress line.
                if s.chars().count() > 120 {
                    format!("{}…", s.chars().take(117).collect::<String>())
                } else {
                    s
                }
            };
            let name = crate::plan::render::shown_name(&a.name);
            secrets::scrub(&match change.action {
                Action::Create => format!("{name}: {}", show(&a.after)),
                _ => format!("{name}: {} → {}", show(&a.before), show(&a.after)),
            })
        })
        .collect()
}

struct Silent;

/// Quiet: only failures.
impl Progress for Silent {
    fn started(&self, _: &Change) {}
    fn finished(&self, outcome: &Step) {
        if let Status::Failed(message) = &outcome.status {
            say!("{} FAILED: {message}", outcome.address);
        }
    }
}

/// Timestamped lines: one when a change starts, one when it ends, numbered.
struct Lines {
    total: usize,
    verbosity: Verbosity,
    done: Mutex<usize>,
}

impl Lines {
    fn new(total: usize, verbosity: Verbosity) -> Self {
        Lines {
            total,
            verbosity,
            done: Mutex::new(0),
        }
    }
}

/// The wall-clock time of day (UTC), for log lines.
fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}

impl Progress for Lines {
    fn started(&self, change: &Change) {
        say!(
            "[{}] {} {}",
            now(),
            verb(change),
            crate::plan::render::address(change)
        );
        if self.verbosity == Verbosity::Verbose {
            for line in details(change) {
                say!("[{}]     {line}", now());
            }
        }
    }

    fn finished(&self, outcome: &Step) {
        let n = {
            let mut done = self.done.lock().unwrap_or_else(|p| p.into_inner());
            *done += 1;
            *done
        };
        say!(
            "[{}] {}/{} {} {}",
            now(),
            n,
            self.total,
            outcome.address,
            result(outcome)
        );
    }
}

/// An overall bar, a spinner per change in flight, and a line above them per finished change.
struct Bars {
    multi: MultiProgress,
    overall: ProgressBar,
    verbosity: Verbosity,
    spinners: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new(total: usize, verbosity: Verbosity) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        if let Ok(style) =
            ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} changes {msg}")
        {
            overall.set_style(style.progress_chars("=> "));
        }
        overall.enable_steady_tick(Duration::from_millis(200));
        Bars {
            multi,
            overall,
            verbosity,
            spinners: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Bars {
    fn started(&self, change: &Change) {
        let spinner = self.multi.add(ProgressBar::new_spinner());
        if let Ok(style) = ProgressStyle::with_template("  {spinner} {msg} ({elapsed})") {
            spinner.set_style(style);
        }
        spinner.set_message(format!(
            "{} {}",
            verb(change),
            crate::plan::render::address(change)
        ));
        spinner.enable_steady_tick(Duration::from_millis(120));
        if self.verbosity == Verbosity::Verbose {
            for line in details(change) {
                let _ = self.multi.println(format!("    {} {line}", change.id));
            }
        }
        self.spinners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(crate::plan::render::address(change), spinner);
    }

    fn finished(&self, outcome: &Step) {
        let spinner = self
            .spinners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&outcome.address);
        if let Some(spinner) = spinner {
            spinner.finish_and_clear();
            self.multi.remove(&spinner);
        }
        let mark = match outcome.status {
            Status::Done(_) => "✓",
            Status::Failed(_) => "✗",
            Status::Skipped(_) | Status::Interrupted => "·",
        };
        let said = match &outcome.status {
            Status::Done(done) => {
                format!(
                    "{} ({:.1}s)",
                    secrets::scrub(&done.summary),
                    outcome.seconds
                )
            }
            _ => result(outcome),
        };
        let _ = self
            .multi
            .println(format!("{mark} {} {said}", outcome.address));
        self.overall.inc(1);
        if self.overall.position() >= self.overall.length().unwrap_or(0) {
            self.overall.finish_and_clear();
        }
    }
}

impl Drop for Bars {
    fn drop(&mut self) {
        self.overall.finish_and_clear();
    }
}
