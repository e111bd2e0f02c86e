//! Flags resolved once into what the operations take: a `Request` (the plan, its parameters,
//! where it goes and what of it) and `RunOptions` (how changes are made). Every command that
//! reads a plan builds them here and nowhere else, so that two commands never read one flag
//! two ways.

use std::time::Duration;

use super::args::{MovedArgs, PlanArgs, TargetArgs};
use crate::manifest::Overrides;
use crate::ops::{Interruption, Request, RunOptions};

/// The request a plan command makes: the plan, its parameters, and where it goes.
pub(super) fn request(plan: &PlanArgs, target: TargetArgs) -> Request {
    Request {
        provider: target.provider,
        targets: target.targets,
        ..named(plan, None, target.name)
    }
}

/// The request of a command that names its provider and plan name but takes no targets
/// (`export`, `unlock`).
/// The plan's name (`--name`) is its parameters' too: kcli's `NAME_default.yml` and
/// `{{ plan }}` follow it.
pub(super) fn named(plan: &PlanArgs, provider: Option<String>, name: Option<String>) -> Request {
    Request {
        provider,
        overrides: Overrides {
            name: name.clone(),
            ..plan.overrides()
        },
        ..Request::new(&plan.file, name)
    }
}

/// The request of a command that changes things, or plans to: also whose resources the plan
/// may take as its own (`--plan-moved`) and what it replaces (`--replace`).
pub(super) fn changing(
    plan: &PlanArgs,
    target: TargetArgs,
    moved: &MovedArgs,
    replace: Vec<String>,
) -> Request {
    Request {
        replace,
        plan_moved: moved.plan_moved,
        ..request(plan, target)
    }
}

/// How a run makes its changes, `parallelism` at once; `interruption` is the view's, which
/// catches Ctrl-C.
pub(super) fn run_options(parallelism: usize, interruption: Interruption) -> RunOptions {
    RunOptions {
        parallelism,
        wait: None,
        restart: false,
        shutdown_timeout: None,
        interruption,
    }
}

/// `--wait` for `--wait-timeout` seconds, when asked.
pub(super) fn wait(wait: bool, seconds: u64) -> Option<Duration> {
    wait.then(|| Duration::from_secs(seconds))
}
