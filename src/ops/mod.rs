//! Operations: what `plan diff`, `apply` and `destroy` do, from a loaded plan to a typed
//! `Outcome`.
//!
//! Each operation is a short function over the same steps (`Session`): open the providers the
//! plan uses, observe them all at once, plan each part, merge the parts, and apply each part
//! within its provider's limit. Everything a person sees is reported through a `View`, which
//! the command line implements; this layer has no clap or terminal code and prints nothing.

mod console;
mod drain;
pub mod generate;
mod info;
mod interrupt;
mod inventory;
mod list;
mod lock;
mod outcome;
mod picture;
mod power;
mod request;
mod session;
pub mod snapshot;
mod status;
mod view;

use crate::provider::capability::{self, Capability};
use std::collections::BTreeMap;
use std::path::Path;

pub use crate::provider::Power;
pub use console::console;
pub use drain::drain;
pub use info::{info, DiskInfo, NicInfo, VmInfo};
pub use interrupt::{Again, Interruption, Signal};
pub use inventory::{
    inventory, Inventory, InventoryAddress, InventoryNic, InventoryVm, INVENTORY_FORMAT_VERSION,
};
pub use list::{list, ListedPlan, ListedVm, Listing, Unreachable};
pub use lock::{unlock, Locked, PlanLock, Unlocked};
pub use outcome::{Asked, Hint, Outcome, Refusal, Review, VmRow, VmState, Vms};
pub use power::power;
pub use request::{Request, RunOptions};
pub use session::{open_provider, Goal, Opened, Session, Unreadable};
pub use session::{Move, Span};
pub use status::{status, LabStatus, ResourceStatus, ShownAttribute};
pub use view::{Answer, Event, MovedHow, View};

use crate::manifest::{self, Loaded};
use crate::plan::intent::{self, Intents};
use crate::plan::model::desired::Desired;
use crate::plan::render;
use crate::plan::saved::{self, SavedPlan};
use crate::plan::{self as planner, Action, Plan};
use crate::provider::backends;
use crate::provider::settings::Planning;
use crate::registry;

/// `plan diff`: what apply would change. With `out`, the plan is saved for `apply PLANFILE`.
pub async fn diff(
    request: &Request,
    loaded: &Loaded,
    out: Option<&Path>,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    let result = async {
        let session = Session::open(loaded, Goal::Converge, request, view).await?;
        let unmarked = session.tell_holders(view).await;
        let mut observed = session.observe(view).await?;
        Session::note_killed_runs(&mut observed, &unmarked);
        session.held_elsewhere(&observed).await?;
        let mut parts = session.plan(&observed)?;
        session.keep_networks_in_use(&mut parts, view).await;
        let picture = picture::of_session(&session, &observed, &parts, &[]);
        let plan = merged(request, parts);
        view.event(Event::Plan {
            plan: &plan,
            picture: &picture,
        });
        if let Some(out) = out {
            save(request, loaded, &plan, &session.fingerprint(&observed), out)?;
            let mut apply = vec![format!(
                "plan apply {}",
                shlex::try_quote(&out.to_string_lossy())
                    .map_or_else(|_| out.display().to_string(), |q| q.into_owned())
            )];
            let (_, secret) = saved::split_params(&request.overrides.sets);
            apply.extend(secret.iter().map(|name| format!("-P {name}=…")));
            view.event(Event::Saved {
                file: out,
                apply: apply.join(" "),
            });
        }
        Ok::<_, Refusal>(plan)
    };
    let plan = result.await?;
    Ok(match plan.is_empty() {
        true => Outcome::UpToDate { vms: None },
        false => Outcome::Planned(plan),
    })
}

/// `plan export`: the objects apply would send to a Kubernetes provider, as YAML documents.
/// Nothing is asked of the cluster.
pub async fn export(request: &Request, loaded: &Loaded) -> Result<String, Refusal> {
    let intents = intent::intents(&loaded.manifest, &request.name, &request.base)?;
    let opened = open_provider(
        request.provider.as_deref(),
        request.overrides.no_kcli_config,
    )
    .await?;
    let provider = opened.provider.as_ref();
    let manifests = capability::require(provider.exporter(), provider, Capability::Export)
        .map_err(|e| e.to_string())?
        .export(&intents, &crate::provider::Owner::plan(&request.name))?;
    let mut text = String::new();
    for manifest in manifests {
        text.push_str("---\n");
        text.push_str(&serde_norway::to_string(&manifest).map_err(|e| e.to_string())?);
    }
    Ok(text)
}

/// `plan apply`: makes the providers match the plan, after asking.
pub async fn apply(
    request: &Request,
    loaded: &Loaded,
    options: RunOptions,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    converge(request, loaded, Goal::Converge, None, options, view).await
}

/// `plan destroy`: deletes what the plan created, and nothing else, after asking. When the
/// plan cannot be read in full (a script it names is gone), what goes is what carries its mark,
/// and each resource's guard is the one its mark recorded.
pub async fn destroy(
    request: &Request,
    loaded: &Loaded,
    options: RunOptions,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    converge(request, loaded, Goal::Destroy, None, options, view).await
}

/// The plan `plan destroy` works on. A file that declares nothing still names a plan whose
/// marks say what goes; a plan whose file is gone can still be destroyed: what goes is what
/// carries its mark, guarded by what the marks recorded (said). But `kcli_plan.yml` that is not
/// here names no plan: it must not destroy the one the directory's name would give.
pub fn plan_to_destroy(request: &Request, view: &dyn View) -> Result<Loaded, Refusal> {
    let file = &request.file;
    if file == Path::new(manifest::DEFAULT_PLAN_FILE) && !file.exists() {
        return Err(
            Refusal::Invalid(format!("there is no {} here", manifest::DEFAULT_PLAN_FILE))
                .hint(vec![Hint::NameThePlanFile]),
        );
    }
    if file.exists() {
        let options = manifest::Options {
            strict: false,
            declaring_nothing: true,
        };
        return manifest::load(file, &request.overrides, options).map_err(Refusal::Load);
    }
    view.event(Event::Warning(format!(
        "{} does not exist; destroying what the provider's marks say its plan created, with the \
         guards recorded on each resource",
        file.display()
    )));
    let nothing = manifest::Overrides::default();
    manifest::load_text("", file, &nothing, manifest::Options::default()).map_err(Refusal::Load)
}

/// `plan apply PLANFILE`: the changes that were reviewed and saved, or a refusal saying what
/// changed since. `given` are the `-P` values of this command line (secrets are never saved).
pub async fn apply_saved(
    saved: SavedPlan,
    planfile: &Path,
    given: &[String],
    options: RunOptions,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    let review = Review {
        request: saved_request(&saved),
        planfile: planfile.to_path_buf(),
    };
    let stale_review = review.clone();
    let stale = move |what: String| {
        Err(Refusal::Stale {
            what,
            review: Box::new(stale_review.clone()),
        })
    };
    let text = match std::fs::read_to_string(&saved.file) {
        Ok(text) => text,
        Err(e) => return stale(format!("cannot read {}: {e}", saved.file.display())),
    };
    if saved::source_fingerprint(&text) != saved.fingerprints.source {
        return stale(format!(
            "{} has changed since the plan was saved",
            saved.file.display()
        ));
    }
    let overrides = match saved.overrides(given) {
        Ok(overrides) => overrides,
        Err(e) => return Err(Refusal::Invalid(e)),
    };
    let loaded = match manifest::load(&saved.file, &overrides, manifest::Options::default()) {
        Ok(loaded) => loaded,
        Err(failure) => return Err(Refusal::Load(failure)),
    };
    view.event(Event::Warnings {
        problems: &loaded.warnings,
        source: &loaded.source,
    });
    if saved::parameters_fingerprint(&loaded.manifest.parameters) != saved.fingerprints.parameters {
        return stale("the plan's parameters have changed since the plan was saved".into());
    }
    let request = Request {
        provider: saved.provider.clone(),
        targets: saved.targets.clone(),
        replace: saved.replace.clone(),
        overrides,
        plan_moved: saved.plan_moved,
        ..Request::new(&saved.file, Some(saved.name.clone()))
    };
    converge(
        &request,
        &loaded,
        Goal::Converge,
        Some(&Reviewed {
            saved: &saved,
            review,
        }),
        options,
        view,
    )
    .await
}

/// A saved plan being applied, and how to review it again should it no longer hold.
struct Reviewed<'a> {
    saved: &'a SavedPlan,
    review: Review,
}

/// The request a saved plan was made with, for the commands a hint offers: its secret `-P`
/// values by name only (they are not saved).
pub fn saved_request(saved: &SavedPlan) -> Request {
    let mut sets = saved.params.clone();
    sets.extend(saved.sensitive_params.iter().map(|name| format!("{name}=")));
    Request {
        provider: saved.provider.clone(),
        targets: saved.targets.clone(),
        overrides: manifest::Overrides {
            paramfiles: saved.paramfiles.clone(),
            sets,
            name: Some(saved.name.clone()),
            allow_read: saved.allow_read.clone(),
            no_kcli_config: saved.no_kcli_config,
        },
        ..Request::new(&saved.file, Some(saved.name.clone()))
    }
}

/// Observe, plan, show, ask (unless the plan was reviewed and saved), apply, and read back the
/// VMs: the path `apply`, `destroy` and `apply PLANFILE` share.
async fn converge(
    request: &Request,
    loaded: &Loaded,
    goal: Goal,
    reviewed: Option<&Reviewed<'_>>,
    options: RunOptions,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    let destroying = goal == Goal::Destroy;
    let interruption = &options.interruption;
    interruption.listen();
    let result = async {
        let unreadable = match goal {
            Goal::Converge => Unreadable::Refuse,
            Goal::Destroy => Unreadable::DestroyByMarks,
        };
        let mut session = Session::open_unreadable(loaded, goal, request, view, unreadable).await?;
        if destroying && request.targets.is_empty() {
            session.add_providers_left_behind(view).await;
        }
        let lock = session.lock(&options.holder, request, view).await?;
        let ran = async {
            let mut observed = session.observe(view).await?;
            Session::note_killed_runs(&mut observed, lock.inherited());
            if !destroying {
                session.held_elsewhere(&observed).await?;
            }
            not_interrupted(interruption)?;
            if let Some(reviewed) = reviewed {
                if reviewed.saved.fingerprints.live != session.fingerprint(&observed) {
                    return Err(Refusal::Stale {
                        what: "the provider's resources have changed since the plan was saved"
                            .into(),
                        review: Box::new(reviewed.review.clone()),
                    });
                }
            }
            let mut parts = session.plan(&observed)?;
            session.keep_networks_in_use(&mut parts, view).await;
            // `--restart` is part of the plan: what is shown is what is applied.
            let restart = (options.restart && !destroying).then_some(Power::Restart {
                grace: options.shutdown_timeout,
            });
            restart_after(&mut parts, restart);
            let picture = picture::of_session(&session, &observed, &parts, &[]);
            let plan = merged(request, parts.clone());
            view.event(Event::Plan {
                plan: &plan,
                picture: &picture,
            });
            if let Some(reviewed) = reviewed.filter(|r| !r.saved.same_changes(&plan)) {
                return Err(Refusal::Stale {
                    what: "planning again gives other changes than the saved plan's".into(),
                    review: Box::new(reviewed.review.clone()),
                });
            }
            // What apply ends with: the plan's VMs (destroy has none left to show).
            let wants_vms = !destroying;
            let (parts, held_back) = without_waiting(parts);
            if parts.iter().all(|p| p.is_empty()) {
                let vms = match wants_vms {
                    true => Some(session.vms(options.wait, Some(interruption), view).await),
                    false => None,
                };
                waiting_for_restart(request, held_back, view);
                return Ok(Outcome::UpToDate { vms });
            }
            if reviewed.is_none() {
                match view.confirm(&plan, destroying) {
                    Answer::Yes => {}
                    Answer::No => return Err(Refusal::Declined),
                    Answer::CannotAsk => {
                        return Err(Refusal::CannotAsk(match destroying {
                            true => Asked::Destroy,
                            false => Asked::Apply,
                        }))
                    }
                }
            }
            not_interrupted(interruption)?;
            let report = session
                .apply(&parts, options.parallelism, interruption, view)
                .await;
            view.event(Event::Applied {
                report: &report,
                run: if destroying { "Destroy" } else { "Apply" },
            });
            let mut waiting = held_back;
            waiting.extend(
                report
                    .waiting_for_restart()
                    .iter()
                    .map(|step| step.address.clone()),
            );
            waiting_for_restart(request, waiting, view);
            // A provider that was lost cannot say where the VMs are.
            let vms = match wants_vms && report.interrupted() == 0 && !report.lost_connection() {
                true => Some(session.vms(options.wait, Some(interruption), view).await),
                false => None,
            };
            Ok(Outcome::Applied { report, vms })
        }
        .await;
        lock.release(view).await;
        ran
    };
    result.await
}

/// A refusal when a signal has come: nothing more starts.
fn not_interrupted(interruption: &Interruption) -> Result<(), Refusal> {
    match interruption.signal() {
        Some(signal) => Err(Refusal::Interrupted(signal)),
        None => Ok(()),
    }
}

/// `plan diff --against OLD`: what applying `new` would change where the old version was
/// applied, without asking any provider. `old` is a file, or a git revision and path.
pub fn diff_against(
    request: &Request,
    old: &str,
    new: &Loaded,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    let result = (|| {
        let old_intents = old_version(request, old, new)?;
        let new_intents = intent::intents(&new.manifest, &request.name, &request.base)?;
        let parts = between_by_provider(request, old_intents, new_intents, view)?;
        let picture = picture_of_parts(request, crate::picture::DrawnFrom::Plans, &parts);
        let plan = joined(request, parts);
        view.event(Event::Plan {
            plan: &plan,
            picture: &picture,
        });
        Ok::<_, Refusal>(plan)
    })();
    let plan = result?;
    Ok(match plan.is_empty() {
        true => Outcome::UpToDate { vms: None },
        false => Outcome::Planned(plan),
    })
}

/// The picture of `new` without asking any provider: against the older version `old` (its
/// changes drawn), or alone.
pub fn picture_of_plans(
    request: &Request,
    old: Option<&str>,
    new: &Loaded,
    view: &dyn View,
) -> Result<crate::picture::Picture, Refusal> {
    use crate::picture::DrawnFrom;
    let new_intents = intent::intents(&new.manifest, &request.name, &request.base)?;
    let (old_intents, drawn_from) = match old {
        Some(old) => (old_version(request, old, new)?, DrawnFrom::Plans),
        None => (new_intents.clone(), DrawnFrom::Plan),
    };
    let parts = between_by_provider(request, old_intents, new_intents, view)?;
    Ok(picture_of_parts(request, drawn_from, &parts))
}

/// The picture of a plan against plan: each provider's part a place, with no live state.
fn picture_of_parts(
    request: &Request,
    drawn_from: crate::picture::DrawnFrom,
    parts: &[PlannedPart],
) -> crate::picture::Picture {
    use crate::picture::{Picture, PlaceInput};
    let places = parts
        .iter()
        .map(|part| PlaceInput {
            name: part.place.clone(),
            desired: part.desired.resources.iter().map(|r| &r.spec).collect(),
            observed: None,
            changes: &part.plan.changes,
            addresses: BTreeMap::new(),
            rules: part.rules.as_ref(),
        })
        .collect();
    Picture::build(&request.name, drawn_from, places)
}

/// The intents of an older version of the plan (a file, or a git revision and path), read
/// with the new version's parameters and files.
fn old_version(request: &Request, old: &str, new: &Loaded) -> Result<Intents, Refusal> {
    let source = manifest::revision::Source::parse(old);
    let text = manifest::revision::read(&source, &request.file)?;
    // The old version takes the same parameters, including the default parameter file
    // beside the new one.
    let mut overrides = request.overrides.clone();
    let beside = request.base.join("kcli_parameters.yml");
    if overrides.paramfiles.is_empty() && beside.is_file() {
        overrides.paramfiles.push(beside);
    }
    let label = match &source {
        manifest::revision::Source::File(path) => path.clone(),
        manifest::revision::Source::Revision { .. } => old.into(),
    };
    let mut old = manifest::load_text(&text, &label, &overrides, manifest::Options::default())
        .map_err(Refusal::Load)?;
    // Its files are read where the new version's are, as the new version may read them.
    old.manifest.access = new.manifest.access.clone();
    let old_files = manifest::revision::file_reader(&source, &request.file)?;
    let old_intents = match old_files.as_deref() {
        Some(read) => intent::intents_reading(&old.manifest, &request.name, &request.base, read),
        None => intent::intents(&old.manifest, &request.name, &request.base),
    }
    .map_err(|e| format!("the old version: {e}"))?;
    Ok(old_intents)
}

/// One provider's part of a plan against plan: where it goes, what it wants there, and what
/// changes.
struct PlannedPart {
    place: String,
    desired: Desired,
    plan: Plan,
    rules: Box<dyn crate::plan::model::rules::Rules>,
}

/// The parts as one plan; each change names its provider when there are several.
fn joined(request: &Request, parts: Vec<PlannedPart>) -> Plan {
    let mut plan = Plan {
        name: request.name.clone(),
        source: None,
        changes: Vec::new(),
        unchanged: 0,
    };
    for part in parts {
        plan.unchanged += part.plan.unchanged;
        plan.changes.extend(part.plan.changes);
    }
    plan
}

/// What applying `new` changes where `old` was applied, each provider's part planned as its
/// backend plans (its lowering and rules), with no provider asked: the part a VM's `client:`
/// (else `--provider`, else the default provider) sends it to. A provider that cannot be told
/// (a `client:` this machine's providers file does not name) is planned as the libvirt family,
/// said as a warning.
fn between_by_provider(
    request: &Request,
    old: Intents,
    new: Intents,
    view: &dyn View,
) -> Result<Vec<PlannedPart>, Refusal> {
    let mut old_parts: BTreeMap<Option<String>, Intents> = old.by_provider().into_iter().collect();
    let mut parts: Vec<(Option<String>, Intents, Intents)> = new
        .by_provider()
        .into_iter()
        .map(|(client, part)| {
            let was = old_parts.remove(&client).unwrap_or_default();
            (client, was, part)
        })
        .collect();
    parts.extend(
        old_parts
            .into_iter()
            .map(|(client, was)| (client, was, Intents::default())),
    );
    let spans = parts.len() > 1;
    let mut planned_parts = Vec::new();
    for (client, was, part) in parts {
        let choice = client.clone().or_else(|| request.provider.clone());
        let planning = planning_of(choice.as_deref(), request, view);
        let refused = planning
            .rules
            .capabilities()
            .refusals(&part, choice.as_deref().unwrap_or("default"));
        if !refused.is_empty() {
            return Err(Refusal::problems(refused));
        }
        let old_desired = (planning.lower)(&was).map_err(|e| format!("the old version: {e}"))?;
        let new_desired = (planning.lower)(&part)?;
        let mut planned = planner::between(
            &request.name,
            &old_desired,
            &new_desired,
            planning.rules.as_ref(),
        )
        .map_err(Refusal::problems)?;
        if spans {
            for change in &mut planned.changes {
                change.provider = choice.clone();
            }
        }
        planned_parts.push(PlannedPart {
            place: choice.unwrap_or_else(|| "default provider".to_string()),
            desired: new_desired,
            plan: planned,
            rules: planning.rules,
        });
    }
    Ok(planned_parts)
}

/// How the provider `choice` names plans, without opening it; the libvirt family's when it
/// cannot be told.
fn planning_of(choice: Option<&str>, request: &Request, view: &dyn View) -> Planning {
    let chosen = registry::choose(choice, request.overrides.no_kcli_config).and_then(|found| {
        let first = found.into_iter().next().ok_or("no provider to plan for")?;
        first
            .config
            .backend
            .settings()
            .planning()
            .map_err(|e| e.to_string())
    });
    chosen.unwrap_or_else(|why| {
        view.event(Event::Warning(format!(
            "{why}; planned as the libvirt family plans"
        )));
        backends::default_planning()
    })
}

/// With `restart` (`--restart`), VM changes that wait for a restart restart the VM after them.
fn restart_after(parts: &mut [Plan], restart: Option<Power>) {
    let Some(restart) = restart else {
        return;
    };
    for change in parts.iter_mut().flat_map(|p| &mut p.changes) {
        if matches!(change.action, Action::Update | Action::Restart) {
            change.restart = Some(restart);
        }
    }
}

/// The parts without the VMs that only wait for a restart no change of this run gives them
/// (shown as waiting), and those VMs, named.
fn without_waiting(mut parts: Vec<Plan>) -> (Vec<Plan>, Vec<String>) {
    let mut held_back = Vec::new();
    for part in &mut parts {
        part.changes.retain(|change| {
            let waits = change.action == Action::Restart && change.restart.is_none();
            if waits {
                held_back.push(match &change.provider {
                    Some(provider) => format!("{} on {provider}", change.id),
                    None => change.id.to_string(),
                });
            }
            !waits
        });
    }
    (parts, held_back)
}

/// Says which VMs wait for a restart, and the command that restarts them.
fn waiting_for_restart(request: &Request, mut vms: Vec<String>, view: &dyn View) {
    if vms.is_empty() {
        return;
    }
    vms.sort();
    vms.dedup();
    view.event(Event::WaitingForRestart { vms, request });
}

/// The parts' changes as one plan.
fn merged(request: &Request, parts: Vec<Plan>) -> Plan {
    Plan {
        name: request.name.clone(),
        source: Some(request.source.clone()),
        unchanged: parts.iter().map(|p| p.unchanged).sum(),
        changes: parts.into_iter().flat_map(|p| p.changes).collect(),
    }
}

/// `diff --out`: what was reviewed, with the fingerprints `apply PLANFILE` checks.
fn save(
    request: &Request,
    loaded: &Loaded,
    plan: &Plan,
    live: &str,
    out: &Path,
) -> Result<(), Refusal> {
    let (params, sensitive_params) = saved::split_params(&request.overrides.sets);
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let record = SavedPlan {
        saved_plan_version: saved::VERSION,
        file: absolute(&request.file),
        name: request.name.clone(),
        provider: request.provider.clone(),
        paramfiles: request
            .overrides
            .paramfiles
            .iter()
            .map(|p| absolute(p))
            .collect(),
        allow_read: request
            .overrides
            .allow_read
            .iter()
            .map(|p| absolute(p))
            .collect(),
        no_kcli_config: request.overrides.no_kcli_config,
        params,
        sensitive_params,
        targets: request.targets.clone(),
        replace: request.replace.clone(),
        plan_moved: request.plan_moved,
        fingerprints: saved::Fingerprints {
            source: saved::source_fingerprint(&loaded.text),
            parameters: saved::parameters_fingerprint(&loaded.manifest.parameters),
            live: live.to_string(),
        },
        changes: serde_json::to_value(render::json::document(plan)).unwrap_or_default(),
    };
    crate::files::write_atomic(out, record.to_text().as_bytes())
        .map_err(|e| Refusal::Invalid(format!("cannot save the plan to {}: {e}", out.display())))
}
