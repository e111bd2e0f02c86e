//! Applying a plan: each change starts as soon as everything it depends on is done, at most
//! `parallelism` at a time. A failed change skips what depends on it (one error, not a cascade)
//! while independent changes go on.

pub mod across;

use crate::provider::capability::{self, Capability};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::plan::model::desired::Desired;
use crate::plan::model::rules::Rules;
use crate::plan::model::spec::{ResourceId, Spec};
use crate::plan::{Action, Change, Plan};
use crate::provider::{Done, Owner, Power, Provider, ProviderError, Readiness};

/// How one change went.
#[derive(Debug, Clone)]
pub enum Status {
    /// Made; what the provider says it did (and whether it waits for a restart).
    Done(Done),
    /// The backend's error.
    Failed(Arc<ProviderError>),
    /// Not attempted because a change it depends on failed, or because the provider was lost
    /// (a change on it failed with the connection itself): the change named.
    Skipped(ResourceId),
    /// Not started because the run was interrupted (Ctrl-C).
    Interrupted,
}

/// One change of a run, and how it went.
#[derive(Debug, Clone)]
pub struct Step {
    pub id: ResourceId,
    /// `vm/web1`, or `vm/web1 on lab2` when the plan spans providers.
    pub address: String,
    pub action: Action,
    pub status: Status,
    pub seconds: f64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.steps
            .iter()
            .filter(|o| matches!(o.status, Status::Failed(_)))
            .count()
    }

    pub fn skipped(&self) -> usize {
        self.steps
            .iter()
            .filter(|o| matches!(o.status, Status::Skipped(_)))
            .count()
    }

    pub fn interrupted(&self) -> usize {
        self.steps
            .iter()
            .filter(|o| matches!(o.status, Status::Interrupted))
            .count()
    }

    /// A change failed because its provider's connection was lost (the daemon restarted, the
    /// host went away): what the provider holds cannot be read back.
    pub fn lost_connection(&self) -> bool {
        self.steps.iter().any(|o| {
            matches!(&o.status, Status::Failed(e) if matches!(**e, ProviderError::Connection(_)))
        })
    }

    /// The changes that are made but take effect only when their VM restarts.
    pub fn waiting_for_restart(&self) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|o| matches!(&o.status, Status::Done(done) if done.needs_reboot))
            .collect()
    }

    pub fn succeeded(&self) -> usize {
        self.steps
            .iter()
            .filter(|o| matches!(o.status, Status::Done(_)))
            .count()
    }
}

/// Hears about each change as it starts and ends.
pub trait Progress: Send + Sync {
    fn started(&self, change: &Change);
    fn finished(&self, outcome: &Step);
}

/// A change that only stops a VM (`plan stop`).
fn stops(change: &Change) -> bool {
    change.action == Action::Restart && matches!(change.restart, Some(Power::Stop { .. }))
}

/// For each change, the changes that must finish first.
fn ordering(plan: &Plan, desired: &Desired, rules: &dyn Rules) -> Vec<Vec<usize>> {
    let index: HashMap<&ResourceId, usize> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (&c.id, i))
        .collect();
    let mut deps = vec![Vec::new(); plan.changes.len()];
    for (i, change) in plan.changes.iter().enumerate() {
        match change.action {
            Action::Create | Action::Update | Action::Replace | Action::Restart => {
                let needs = desired
                    .get(&change.id)
                    .map(|r| r.depends_on.clone())
                    .unwrap_or_default();
                for need in needs {
                    if let Some(&j) = index.get(&need) {
                        if plan.changes[j].action == Action::Delete {
                            continue;
                        }
                        // VMs stop in the reverse order: what needs another stops first.
                        if stops(change) && stops(&plan.changes[j]) {
                            deps[j].push(i);
                        } else {
                            deps[i].push(j);
                        }
                    }
                }
            }
            // A resource goes after everything being deleted that needs it: each deletion
            // waits for what it needs to go after it (one pass, not one per pair).
            Action::Delete => {
                let mut needs = change
                    .live
                    .as_ref()
                    .map(|s| rules.needs(s))
                    .unwrap_or_default();
                needs.sort();
                needs.dedup();
                for need in needs {
                    if let Some(&j) = index.get(&need) {
                        if plan.changes[j].action == Action::Delete {
                            deps[j].push(i);
                        }
                    }
                }
            }
        }
        // What an updated or replaced resource lets go of (an instance leaving a security
        // group) is deleted after it has let go.
        if matches!(change.action, Action::Update | Action::Replace) {
            let let_go = change.live.as_ref().map(|s| rules.needs(s));
            for need in let_go.unwrap_or_default() {
                if let Some(&j) = index.get(&need) {
                    if plan.changes[j].action == Action::Delete && !deps[j].contains(&i) {
                        deps[j].push(i);
                    }
                }
            }
        }
    }
    deps
}

/// Waits until the guest of the VM `change` made is ready (its cloud-init has run), for a VM
/// that others wait for: a failed cloud-init, or none in `timeout`, fails the change, and
/// so skips what waits for it. A provider that cannot tell is not waited for.
async fn until_ready(
    provider: &dyn Provider,
    change: &Change,
    awaited: &crate::plan::model::desired::Awaited,
    stop: &CancellationToken,
) -> Result<(), ProviderError> {
    let vm = &awaited.ready.vm;
    let timeout = awaited.timeout;
    let deadline = Instant::now() + timeout;
    let Some(guests) = provider.guest_readiness() else {
        return Ok(());
    };
    loop {
        let found = guests
            .readiness(std::slice::from_ref(&awaited.ready))
            .await?;
        let why = match found.get(vm) {
            None | Some(Readiness::Ready) => return Ok(()),
            Some(Readiness::Failed { errors, log }) => {
                let mut said = format!("its guest's cloud-init failed: {}", errors.join("; "));
                if let Some(last) = log.last() {
                    said.push_str(&format!(" (its output ends: {last})"));
                }
                return Err(ProviderError::backend(
                    &change.id,
                    crate::secrets::scrub(&said),
                ));
            }
            Some(Readiness::Pending(why)) => why.clone(),
        };
        if Instant::now() >= deadline || stop.is_cancelled() {
            return Err(ProviderError::backend(
                &change.id,
                format!(
                    "made, but its guest is not ready after {}s ({why}); what waits for it \
                     was not started",
                    timeout.as_secs()
                ),
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = stop.cancelled() => {}
        }
    }
}

async fn run_change(
    provider: &dyn Provider,
    change: &Change,
    owner: &Owner,
) -> Result<Done, ProviderError> {
    let spec = || {
        change
            .desired
            .clone()
            .ok_or_else(|| ProviderError::Invalid(format!("{}: no desired spec", change.id)))
    };
    if change.claim {
        // Take it over first; for an update that is the whole change.
        let claimed = change
            .desired
            .clone()
            .or_else(|| change.live.clone())
            .ok_or_else(|| {
                ProviderError::Invalid(format!("{}: nothing to take over", change.id))
            })?;
        let taken = repair(provider)?.claim(&claimed, owner).await?;
        if change.action != Action::Delete {
            return Ok(taken);
        }
    }
    let done = match change.action {
        Action::Create => provider.create(&spec()?, owner).await?,
        // Only moved onto networks made again: the definition is as it was.
        Action::Update if !change.reattach.is_empty() && moves_only(change) => {
            repair(provider)?
                .reattach(&change.id.name, &change.reattach, owner)
                .await?
        }
        Action::Update => {
            let updated = provider.update(&spec()?, owner).await?;
            if change.reattach.is_empty() {
                updated
            } else {
                let moved = repair(provider)?
                    .reattach(&change.id.name, &change.reattach, owner)
                    .await?;
                Done {
                    summary: format!("{}; {}", updated.summary, moved.summary),
                    ..updated
                }
            }
        }
        Action::Delete => return provider.delete(&change.id, owner).await,
        Action::Replace => {
            provider.delete(&change.id, owner).await?;
            let made = provider.create(&spec()?, owner).await?;
            Done {
                summary: format!("replaced: {}", made.summary),
                ..made
            }
        }
        Action::Restart => {
            let restart = change.restart.unwrap_or(Power::Restart { grace: None });
            return power(provider)?
                .power(&change.id.name, restart, owner)
                .await;
        }
    };
    // A paused VM the plan says runs: resumed once its definition is as the plan says.
    let done = if change.action == Action::Update
        && change.attributes.iter().any(|a| a.name == "paused")
    {
        capability::require(provider.lab_snapshots(), provider, Capability::LabSnapshots)?
            .resume(&change.id.name, owner)
            .await?;
        Done {
            summary: format!("{}; resumed", done.summary),
            ..done
        }
    } else {
        done
    };
    // `--restart`: what the change saved (or what waited already) takes effect now.
    let waits = done.needs_reboot || !change.pending_restart.is_empty();
    let runs = change.desired.as_ref().is_some_and(Spec::runs);
    if let (Some(restart), true, true) = (change.restart, waits, runs) {
        let restarted = power(provider)?
            .power(&change.id.name, restart, owner)
            .await?;
        let made = done.summary.split(';').next().unwrap_or_default();
        return Ok(Done {
            summary: format!("{made}; then {}", restarted.summary),
            needs_reboot: false,
            ..done
        });
    }
    Ok(done)
}

fn repair(provider: &dyn Provider) -> Result<&dyn capability::Repair, ProviderError> {
    capability::require(provider.repair(), provider, Capability::Repair)
}

fn power(provider: &dyn Provider) -> Result<&dyn capability::PowerControl, ProviderError> {
    capability::require(provider.power_control(), provider, Capability::Power)
}

/// Whether a VM's update only moves its NICs onto networks made again: what it runs with and
/// is defined with is otherwise unchanged.
fn moves_only(change: &Change) -> bool {
    change.desired.is_some() && change.desired == change.live && change.pending_restart.is_empty()
}

/// Applies every change of `plan`, in dependency order, at most `parallelism` at once (and no
/// more than the provider takes).
pub async fn apply(
    plan: &Plan,
    desired: &Desired,
    provider: Arc<dyn Provider>,
    parallelism: usize,
    progress: Arc<dyn Progress>,
) -> Report {
    apply_until(
        plan,
        desired,
        provider,
        parallelism,
        progress,
        CancellationToken::new(),
        across::Links::default(),
    )
    .await
}

/// As `apply`, but once `stop` is cancelled no further change starts: changes in flight finish, and
/// the rest are reported as interrupted. Nothing is left half done by siteplan itself. For one
/// provider's part of a run that spans several, a change also waits for the entries `links`
/// names on other providers, and says when each of its own finishes.
pub async fn apply_until(
    plan: &Plan,
    desired: &Desired,
    provider: Arc<dyn Provider>,
    parallelism: usize,
    progress: Arc<dyn Progress>,
    stop: CancellationToken,
    links: across::Links,
) -> Report {
    let deps = ordering(plan, desired, provider.rules());
    let mut dependents = vec![Vec::new(); plan.changes.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut outcomes: Vec<Option<Step>> = vec![None; plan.changes.len()];
    // One provider per run for now; with several, each gets its own semaphore.
    let per_provider = provider.parallelism().unwrap_or(usize::MAX);
    let limit = Arc::new(Semaphore::new(parallelism.min(per_provider).max(1)));
    let owner = Owner {
        applied_from: plan.source.clone(),
        group: desired.group.clone(),
        ..Owner::plan(&plan.name)
    };
    let changes: Arc<Vec<Change>> = Arc::new(plan.changes.clone());
    let guarded: Arc<Vec<bool>> = Arc::new(
        plan.changes
            .iter()
            .map(|c| desired.guards_of(&c.id).prevent_destroy)
            .collect(),
    );
    // The VMs others wait for, for how long: such a VM's change ends when its guest is ready.
    let awaited: Arc<Vec<Option<crate::plan::model::desired::Awaited>>> = Arc::new(
        plan.changes
            .iter()
            .map(|c| {
                let starts = c.desired.as_ref().is_some_and(Spec::runs)
                    && matches!(
                        c.action,
                        Action::Create | Action::Replace | Action::Restart | Action::Update
                    );
                desired.awaited.get(&c.id).cloned().filter(|_| starts)
            })
            .collect(),
    );
    let mut running = JoinSet::new();
    // Set when a change fails with the connection itself: nothing more is started on a
    // provider that is gone (each would fail the same way); those are skipped, naming it.
    let lost: Arc<std::sync::OnceLock<ResourceId>> = Arc::new(std::sync::OnceLock::new());

    let spawn = |i: usize, running: &mut JoinSet<(usize, Step)>| {
        let (provider, limit, owner, changes, guarded, progress) = (
            provider.clone(),
            limit.clone(),
            owner.clone(),
            changes.clone(),
            guarded.clone(),
            progress.clone(),
        );
        let awaited = awaited.clone();
        let stop = stop.clone();
        let lost = lost.clone();
        let links = links.clone();
        running.spawn(async move {
            let change = &changes[i];
            // What it comes after on other providers, first; no permit is held meanwhile.
            for entry in links.waits.get(i).into_iter().flatten() {
                let status = match links.board.wait(entry, &stop).await {
                    Ok(()) => continue,
                    Err(across::NotReady::Failed(cause)) => Status::Skipped(cause),
                    Err(across::NotReady::Interrupted) => Status::Interrupted,
                };
                let outcome = Step {
                    id: change.id.clone(),
                    address: crate::plan::render::address(change),
                    action: change.action,
                    status,
                    seconds: 0.0,
                };
                if matches!(outcome.status, Status::Skipped(_)) {
                    progress.finished(&outcome);
                }
                return (i, outcome);
            }
            let _permit = limit.acquire_owned().await;
            if let Some(cause) = lost.get() {
                let outcome = Step {
                    id: change.id.clone(),
                    address: crate::plan::render::address(change),
                    action: change.action,
                    status: Status::Skipped(cause.clone()),
                    seconds: 0.0,
                };
                progress.finished(&outcome);
                return (i, outcome);
            }
            if stop.is_cancelled() {
                let outcome = Step {
                    id: change.id.clone(),
                    address: crate::plan::render::address(change),
                    action: change.action,
                    status: Status::Interrupted,
                    seconds: 0.0,
                };
                return (i, outcome);
            }
            progress.started(change);
            let start = Instant::now();
            if let Some(slow) = crate::provider::crashpoint::slowdown() {
                tokio::time::sleep(slow).await;
            }
            // The mark records the resource's guard as the plan declares it.
            let owner = Owner {
                prevent_destroy: guarded[i],
                adopt: change.adopt && change.action == Action::Update,
                ..owner
            };
            let mut result = run_change(provider.as_ref(), change, &owner).await;
            if let (Ok(_), Some(awaited)) = (&result, &awaited[i]) {
                if let Err(e) = until_ready(provider.as_ref(), change, awaited, &stop).await {
                    result = Err(e);
                }
            }
            let status = match result {
                Ok(done) => Status::Done(done),
                Err(error) => Status::Failed(Arc::new(error)),
            };
            let outcome = Step {
                id: change.id.clone(),
                address: crate::plan::render::address(change),
                action: change.action,
                status,
                seconds: start.elapsed().as_secs_f64(),
            };
            progress.finished(&outcome);
            (i, outcome)
        });
    };

    for (i, &n) in waiting.iter().enumerate() {
        if n == 0 {
            spawn(i, &mut running);
        }
    }
    while let Some(joined) = running.join_next().await {
        if stop.is_cancelled() {
            // Whatever has not started yet will not start.
            for (j, outcome) in outcomes.iter_mut().enumerate() {
                if outcome.is_none() && waiting[j] > 0 {
                    *outcome = Some(Step {
                        id: plan.changes[j].id.clone(),
                        address: crate::plan::render::address(&plan.changes[j]),
                        action: plan.changes[j].action,
                        status: Status::Interrupted,
                        seconds: 0.0,
                    });
                    links.finished(j, &plan.changes[j].id, false);
                }
            }
        }
        let Ok((i, outcome)) = joined else { continue };
        if let Status::Failed(e) = &outcome.status {
            if matches!(**e, ProviderError::Connection(_)) {
                let _ = lost.set(outcome.id.clone());
            }
        }
        let failed = !matches!(outcome.status, Status::Done(_));
        let interrupted = matches!(outcome.status, Status::Interrupted);
        links.finished(i, &outcome.id, !failed);
        outcomes[i] = Some(outcome);
        if interrupted {
            continue;
        }
        if failed {
            skip_dependents(
                i,
                &dependents,
                &plan.changes,
                &mut outcomes,
                progress.as_ref(),
                &links,
            );
            continue;
        }
        for &d in &dependents[i] {
            waiting[d] = waiting[d].saturating_sub(1);
            if waiting[d] == 0 && outcomes[d].is_none() {
                spawn(d, &mut running);
            }
        }
    }
    Report {
        steps: outcomes.into_iter().flatten().collect(),
    }
}

/// Marks everything downstream of a failed change as skipped, naming the failed change.
fn skip_dependents(
    failed: usize,
    dependents: &[Vec<usize>],
    changes: &[Change],
    outcomes: &mut [Option<Step>],
    progress: &dyn Progress,
    links: &across::Links,
) {
    let cause = changes[failed].id.clone();
    let mut stack = dependents[failed].clone();
    while let Some(d) = stack.pop() {
        if outcomes[d].is_some() {
            continue;
        }
        let outcome = Step {
            id: changes[d].id.clone(),
            address: crate::plan::render::address(&changes[d]),
            action: changes[d].action,
            status: Status::Skipped(cause.clone()),
            seconds: 0.0,
        };
        progress.finished(&outcome);
        links.finished(d, &outcome.id, false);
        outcomes[d] = Some(outcome);
        stack.extend(dependents[d].iter().copied());
    }
}

#[cfg(test)]
mod tests;
