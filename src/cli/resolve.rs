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
        adopt: moved.adopted(),
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
        holder: String::new(),
    }
}

/// `--wait` for `--wait-timeout` seconds, when asked.
pub(super) fn wait(wait: bool, seconds: u64) -> Option<Duration> {
    wait.then(|| Duration::from_secs(seconds))
}

/// The command line that runs `verb` (`apply --restart`, `diff`, `unlock`) on `request`'s plan
/// as this run read it: the file, and every flag that shaped the plan (its name when not the
/// default, the provider, targets, parameter files, `-P` values, `--allow-read`, and
/// `--no-kcli-config` when the kcli configuration was left out). What a hint offers to
/// copy is made here and nowhere else. A secret `-P` value is written `-P NAME=…`: it is
/// never shown, so it must be typed again.
pub fn command_line(request: &Request, verb: &str) -> String {
    let quote =
        |word: &str| shlex::try_quote(word).map_or_else(|_| word.to_string(), |q| q.into_owned());
    let mut words = vec![
        format!("plan {verb}"),
        quote(&request.file.to_string_lossy()),
    ];
    let flag = |words: &mut Vec<String>, name: &str, value: &str| {
        words.push(format!("{name} {}", quote(value)));
    };
    if request.name != crate::manifest::default_plan_name(&request.file) {
        flag(&mut words, "--name", &request.name);
    }
    if let Some(provider) = &request.provider {
        flag(&mut words, "--provider", provider);
    }
    for target in &request.targets {
        flag(&mut words, "--target", target);
    }
    for file in &request.overrides.paramfiles {
        flag(&mut words, "--paramfile", &file.to_string_lossy());
    }
    for set in &request.overrides.sets {
        let name = set.split_once('=').map_or(set.as_str(), |(k, _)| k).trim();
        if crate::secrets::is_sensitive_name(name) {
            // For the person to type the value in place of `…`.
            words.push(format!("-P {}=…", quote(name)));
        } else {
            flag(&mut words, "-P", set);
        }
    }
    for path in &request.overrides.allow_read {
        flag(&mut words, "--allow-read", &path.to_string_lossy());
    }
    if request.overrides.no_kcli_config {
        words.push("--no-kcli-config".into());
    }
    words.join(" ")
}
