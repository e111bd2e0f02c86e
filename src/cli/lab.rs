//! The commands on a lab that exists: `status`, `list`, `info`, `output`, `console`, `ssh`,
//! `unlock`, and `start|stop|restart`. Each resolves its flags (`resolve`), runs its operation
//! and prints what it returns.

use super::*;

/// `plan status`: the lab as it is, as a table or a document; exit 2 when it does not match
/// the plan.
pub(super) fn status(
    plan: &PlanArgs,
    target: TargetArgs,
    moved: &MovedArgs,
    output: LabOutput,
) -> ExitCode {
    let looked = || -> Result<ExitCode, ExitCode> {
        let (view, request, loaded) = looking(plan, target)?;
        let request = Request {
            plan_moved: moved.plan_moved,
            adopt: moved.adopted(),
            ..request
        };
        let lab = found(block_on(ops::status(&request, &loaded, &view)), &view)?;
        let shown = match output {
            LabOutput::Table => view::status_table(&lab, &resolve::command_line(&request, "diff")),
            LabOutput::Json => document(&lab, false),
            LabOutput::Yaml => document(&lab, true),
            LabOutput::Svg => super::picture::drawing(&lab.picture, DrawFormat::Svg),
            LabOutput::Html => super::picture::drawing(&lab.picture, DrawFormat::Html),
            LabOutput::Mermaid => super::picture::drawing(&lab.picture, DrawFormat::Mermaid),
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
pub(super) fn list_plans(provider: Option<&str>, output: ListOutput) -> ExitCode {
    let view = Terminal::quiet();
    let listing = match found(block_on(ops::list(provider)), &view) {
        Ok(listing) => listing,
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

/// `plan generate`: the plan on standard output or in a new file; what it could not say, and
/// what it would still change, on standard error.
pub(super) fn generate_plan(
    chosen: &ops::generate::Chosen,
    provider: Option<&str>,
    output: Option<&Path>,
    no_kcli_config: bool,
) -> ExitCode {
    let view = Terminal::quiet();
    let file = output
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("generated.yml"));
    let file = std::path::absolute(&file).unwrap_or(file);
    if output.is_some() && file.exists() {
        say!(
            "error: {} exists: `plan generate` writes a new file only (remove it, or choose \
             another)",
            file.display()
        );
        return ExitCode::from(EXIT_ERROR);
    }
    let made = match found(
        block_on(ops::generate::generate(
            provider,
            chosen,
            &file,
            no_kcli_config,
        )),
        &view,
    ) {
        Ok(made) => made,
        Err(code) => return code,
    };
    let text = &made.generated.text;
    match output {
        Some(_) => {
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&file)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
            if let Err(e) = written {
                say!("error: cannot write {}: {e}", file.display());
                return ExitCode::from(EXIT_ERROR);
            }
        }
        None => {
            let printed = print(text);
            if printed != ExitCode::SUCCESS {
                return printed;
            }
        }
    }
    let written = match output {
        Some(_) => format!("Wrote {}", file.display()),
        None => "Wrote the plan".to_string(),
    };
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    say!(
        "{written}: {}, {}, {} and {} from {}.",
        count(made.vms, "VM"),
        count(made.networks, "network"),
        count(made.pools, "pool"),
        count(made.images, "image"),
        made.provider
    );
    for note in &made.generated.notes {
        say!("note: {note}");
    }
    if made.differences.is_empty() {
        say!(
            "Read back as `plan diff` will, it is what was found: it changes nothing but \
             siteplan's marks (adopt what has none with --adopt-all)."
        );
    } else {
        say!("Read back as `plan diff` will, adopting it would still change:");
        for difference in &made.differences {
            say!("  {difference}");
        }
    }
    // A plan is named by its file: kcli's VMs are adopted only by a plan of their plan's name.
    if let [only] = chosen.plans.as_slice() {
        let named = manifest::default_plan_name(&file);
        if &named != only {
            say!(
                "The plan is named by its file (`{named}`): write it as {only}.yml, or give \
                 --name {only} to diff and apply, so it stays plan `{only}`."
            );
        }
    }
    if !made.generated.secrets.is_empty() {
        let names: Vec<&str> = made.generated.secrets.keys().map(String::as_str).collect();
        say!(
            "Secrets were not written: give {} with -P NAME=VALUE.",
            names.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// `plan info`.
pub(super) fn vm_info(
    plan: &PlanArgs,
    target: TargetArgs,
    vm: &str,
    output: StatusOutput,
) -> ExitCode {
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
pub(super) fn lab_inventory(
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
pub(super) fn console(plan: &PlanArgs, target: TargetArgs, vm: &str) -> ExitCode {
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
pub(super) fn ssh(
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
pub(super) fn unlock(
    plan: &PlanArgs,
    provider: Option<String>,
    name: Option<String>,
    yes: bool,
) -> ExitCode {
    let view = Terminal::new(Verbosity::Normal, DiffFormat::Human, true, yes);
    let request = resolve::named(plan, provider, name);
    // A file that declares nothing still names a plan.
    let loaded = load_request(
        &request,
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
        Ok(Err(refusal)) => return view::finish(Err(refusal), &view, false),
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
pub(super) fn power_vms(
    plan: &PlanArgs,
    target: TargetArgs,
    vms: &[String],
    args: &PowerArgs,
    power: ops::Power,
    wait: Option<std::time::Duration>,
) -> ExitCode {
    let view = Terminal::new(args.output.verbosity(), DiffFormat::Human, true, true);
    let request = request(plan, target);
    let Ok(loaded) = load_for(&request) else {
        return ExitCode::from(EXIT_ERROR);
    };
    let verb = match power {
        ops::Power::Start => "start",
        ops::Power::Stop { .. } => "stop",
        ops::Power::Restart { .. } => "restart",
    };
    let options = RunOptions {
        wait,
        holder: resolve::command_line(&request, verb),
        ..resolve::run_options(args.parallelism, view.interruption.clone())
    };
    match block_on(ops::power(&request, &loaded, power, vms, options, &view)) {
        Ok(outcome) => view::finish(outcome, &view, false),
        Err(code) => code,
    }
}
