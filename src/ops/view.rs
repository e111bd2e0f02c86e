//! The one path from an operation to a person: operations report through a `View`, which the
//! command line implements (and scrubs secrets in, in one place). An operation prints nothing
//! itself.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::apply::{Progress, Report};
use crate::diagnostics::{Problem, SourceText};
use crate::plan::Plan;

/// How a VM moved to another host (`plan drain`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MovedHow {
    /// It ran on while it moved.
    Live,
    /// It was stopped, and is stopped there.
    Stopped,
    /// It could not move live: it was stopped, moved, and started there.
    Restarted,
}

/// Something an operation tells as it goes. The view decides what of it to show, and how.
#[derive(Debug)]
pub enum Event<'a> {
    /// Where a part of the plan goes: the provider's name in the providers file (if it has
    /// one), its type and its endpoint.
    Provider {
        name: Option<&'a str>,
        kind: &'a str,
        endpoint: &'a str,
    },
    /// The VMs that go to a group of hosts, each with its host and why there.
    Placed {
        group: &'a str,
        placed: &'a [crate::placement::Placed],
    },
    /// A network that VMs use on several hosts of a group, joined into one segment.
    Spanning(&'a crate::ops::Span),
    /// `plan drain`: a VM moved to another host.
    Moved {
        vm: &'a str,
        from: &'a str,
        to: &'a str,
        how: MovedHow,
        took: Duration,
    },
    /// `--target` leaves every change outside these entries out.
    Targeting(&'a [String]),
    /// The providers were observed.
    Observed { resources: usize, took: Duration },
    /// What would change (diff), or is about to (apply, destroy), and the lab's picture
    /// with it drawn.
    Plan {
        plan: &'a Plan,
        picture: &'a crate::picture::Picture,
    },
    /// `diff --out`: the plan was saved to `file`; `apply` is the command that applies it (with the secret
    /// `-P` values it needs again, by name).
    Saved { file: &'a Path, apply: String },
    /// A plan read along the way (`apply PLANFILE`) has these warnings.
    Warnings {
        problems: &'a [Problem],
        source: &'a SourceText,
    },
    /// Something that does not stop the operation.
    Warning(String),
    /// Ctrl-C or SIGTERM: nothing more starts, and what runs finishes.
    Interrupted(super::Signal),
    /// The changes were made (or tried); `run` names the command (`Apply`, `Destroy`,
    /// `Stop`...).
    Applied {
        report: &'a Report,
        run: &'static str,
    },
    /// These running VMs run with an older definition than the one saved, and take it when
    /// they restart; `request` is the run's, which the view turns into the command that
    /// restarts them.
    WaitingForRestart {
        vms: Vec<String>,
        request: &'a super::Request,
    },
    /// `--wait`: these running VMs have no address yet.
    Waiting(&'a [String]),
    /// Waiting is over.
    Waited,
}

/// What the person said when asked to go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    No,
    /// Nobody can be asked (no terminal) and nothing said yes beforehand.
    CannotAsk,
}

pub trait View: Send + Sync {
    fn event(&self, event: Event<'_>);

    /// Asks before changing anything; `destroying` for `plan destroy`.
    fn confirm(&self, plan: &Plan, destroying: bool) -> Answer;

    /// Asks a yes-or-no question about something other than a plan (`plan unlock`).
    fn ask(&self, question: &str) -> Answer;

    /// Hears about each of `total` changes as it runs.
    fn progress(&self, total: usize) -> Arc<dyn Progress>;
}
