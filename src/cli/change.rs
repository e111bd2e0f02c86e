//! The commands that plan and change a lab: `diff`, `apply` (a plan file or a saved plan),
//! `destroy` and `export`. Each resolves its flags (`resolve`), runs its operation, and hands
//! the outcome to the view.

use std::process::ExitCode;

use super::args::{ApplyArgs, DestroyArgs, DiffArgs, DrainArgs, ExportArgs, OutputArgs, RunArgs};
use super::out::say;
use super::view::{self, DiffFormat, Terminal};
use super::{block_on, found, load_for, print, resolve, saved_plan, EXIT_ERROR};
use crate::ops::{self, Outcome, Refusal, RunOptions};

pub(super) fn export(args: ExportArgs) -> ExitCode {
    let request = resolve::named(&args.plan, args.provider, args.name);
    let Ok(loaded) = load_for(&request) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let view = Terminal::quiet();
    match found(block_on(ops::export(&request, &loaded)), &view) {
        Ok(documents) => print(&documents),
        Err(code) => code,
    }
}

pub(super) fn diff(args: DiffArgs) -> ExitCode {
    let view = Terminal::new(args.output.verbosity(), args.format, false, false);
    let request = resolve::changing(&args.plan, args.target, &args.moved, args.replace);
    let Ok(loaded) = load_for(&request) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let outcome = match args.against {
        Some(old) => ops::diff_against(&request, &old, &loaded, &view),
        None => match block_on(ops::diff(&request, &loaded, args.out.as_deref(), &view)) {
            Ok(outcome) => outcome,
            Err(code) => return code,
        },
    };
    view::finish(outcome, &view, args.detailed_exitcode)
}

/// A plan file, or a plan saved by `plan diff --out` (exactly its changes, or nothing).
pub(super) fn apply(args: ApplyArgs) -> ExitCode {
    let view = changing_view(&args.output, &args.run);
    let mut options = RunOptions {
        wait: resolve::wait(args.wait, args.wait_timeout),
        restart: args.restart,
        shutdown_timeout: args.shutdown_timeout.map(std::time::Duration::from_secs),
        ..resolve::run_options(args.run.parallelism, view.interruption.clone())
    };
    let outcome = match saved_plan(&args.plan.file) {
        Some(Ok(saved)) => block_on(ops::apply_saved(
            {
                options.holder = resolve::command_line(&ops::saved_request(&saved), "apply");
                saved
            },
            &args.plan.file,
            &args.plan.params,
            options,
            &view,
        )),
        Some(Err(e)) => {
            say!("error: {}: {e}", args.plan.file.display());
            return ExitCode::from(EXIT_ERROR);
        }
        None => {
            let request = resolve::changing(&args.plan, args.target, &args.moved, args.replace);
            let Ok(loaded) = load_for(&request) else {
                return ExitCode::from(EXIT_ERROR);
            };
            options.holder = resolve::command_line(&request, "apply");
            block_on(ops::apply(&request, &loaded, options, &view))
        }
    };
    finish(outcome, &view)
}

pub(super) fn destroy(args: DestroyArgs) -> ExitCode {
    let view = changing_view(&args.output, &args.run);
    let request = resolve::changing(&args.plan, args.target, &args.moved, Vec::new());
    let options = RunOptions {
        holder: resolve::command_line(&request, "destroy"),
        ..resolve::run_options(args.run.parallelism, view.interruption.clone())
    };
    let loaded = match ops::plan_to_destroy(&request, &view) {
        Ok(loaded) => loaded,
        Err(refusal) => return view::finish(Err(refusal), &view, false),
    };
    finish(
        block_on(ops::destroy(&request, &loaded, options, &view)),
        &view,
    )
}

pub(super) fn drain(args: DrainArgs) -> ExitCode {
    let view = changing_view(&args.output, &args.run);
    let request = resolve::changing(&args.plan, args.target, &args.moved, Vec::new());
    let Ok(loaded) = load_for(&request) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let options = RunOptions {
        holder: resolve::command_line(&request, "drain"),
        ..resolve::run_options(args.run.parallelism, view.interruption.clone())
    };
    finish(
        block_on(ops::drain(&request, &args.host, &loaded, options, &view)),
        &view,
    )
}

/// The terminal of a command that changes things (`apply`, `destroy`, `drain`): it shows
/// progress and asks first, unless `--yes`.
fn changing_view(output: &OutputArgs, run: &RunArgs) -> Terminal {
    Terminal::new(output.verbosity(), DiffFormat::Human, true, run.yes)
}

fn finish(outcome: Result<Result<Outcome, Refusal>, ExitCode>, view: &Terminal) -> ExitCode {
    match outcome {
        Ok(outcome) => view::finish(outcome, view, false),
        Err(code) => code,
    }
}
