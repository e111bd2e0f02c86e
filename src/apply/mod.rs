//! Applying a plan: each change starts as soon as everything it depends on is done, at most
//! `parallelism` at a time. A failed change skips what depends on it (one error, not a cascade)
//! while independent changes go on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::plan::desired::Desired;
use crate::plan::{Action, Change, Plan};
use crate::provider::spec::{ResourceId, Spec};
use crate::provider::{Owner, Provider};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Done(String),
    Failed(String),
    /// Not attempted because a change it depends on failed.
    Skipped(ResourceId),
    /// Not started because the run was interrupted (Ctrl-C).
    Interrupted,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: ResourceId,
    /// `vm/web1`, or `vm/web1 on lab2` when the plan spans providers.
    pub address: String,
    pub action: Action,
    pub status: Status,
    pub seconds: f64,
}

#[derive(Debug, Default)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn failed(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Failed(_)))
            .count()
    }

    pub fn skipped(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Skipped(_)))
            .count()
    }

    pub fn interrupted(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| o.status == Status::Interrupted)
            .count()
    }

    pub fn succeeded(&self) -> usize {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Done(_)))
            .count()
    }
}

/// Hears about each change as it starts and ends.
pub trait Progress: Send + Sync {
    fn started(&self, change: &Change);
    fn finished(&self, outcome: &Outcome);
}

/// What a live resource needs to exist, for ordering deletes (the reverse of creates).
pub fn spec_dependencies(spec: &Spec) -> Vec<ResourceId> {
    match spec {
        Spec::Network(_) | Spec::Pool(_) => Vec::new(),
        Spec::Volume(v) => {
            let mut deps = vec![ResourceId::pool(&v.pool)];
            if let Some((pool, name)) = &v.backing {
                deps.push(ResourceId::volume(pool, name));
            }
            deps
        }
        Spec::Vm(vm) => {
            let mut deps: Vec<ResourceId> = vm
                .disks
                .iter()
                .map(|d| ResourceId::volume(&d.pool, &d.volume))
                .collect();
            deps.extend(vm.seed.iter().map(|(p, n)| ResourceId::volume(p, n)));
            deps.extend(vm.nics.iter().map(|n| ResourceId::network(&n.network)));
            deps
        }
    }
}

/// For each change, the changes that must finish first.
fn ordering(plan: &Plan, desired: &Desired) -> Vec<Vec<usize>> {
    let index: HashMap<&ResourceId, usize> = plan
        .changes
        .iter()
        .enumerate()
        .map(|(i, c)| (&c.id, i))
        .collect();
    let mut deps = vec![Vec::new(); plan.changes.len()];
    for (i, change) in plan.changes.iter().enumerate() {
        match change.action {
            Action::Create | Action::Update | Action::Replace => {
                let needs = desired
                    .get(&change.id)
                    .map(|r| r.depends_on.clone())
                    .unwrap_or_default();
                for need in needs {
                    if let Some(&j) = index.get(&need) {
                        if plan.changes[j].action != Action::Delete {
                            deps[i].push(j);
                        }
                    }
                }
            }
            Action::Delete => {
                // A resource goes after everything being deleted that needs it.
                for (j, other) in plan.changes.iter().enumerate() {
                    if other.action == Action::Delete
                        && other
                            .live
                            .as_ref()
                            .is_some_and(|s| spec_dependencies(s).contains(&change.id))
                    {
                        deps[i].push(j);
                    }
                }
            }
        }
    }
    deps
}

async fn run_change(
    provider: &dyn Provider,
    change: &Change,
    owner: &Owner,
) -> Result<String, String> {
    let spec = || {
        change
            .desired
            .clone()
            .ok_or_else(|| format!("{}: no desired spec", change.id))
    };
    if change.claim {
        // Take it over first; for an update that is the whole change.
        let claimed = change
            .desired
            .clone()
            .or_else(|| change.live.clone())
            .ok_or_else(|| format!("{}: nothing to take over", change.id))?;
        let taken = provider
            .claim(&claimed, owner)
            .await
            .map_err(|e| e.to_string())?;
        if change.action != Action::Delete {
            return Ok(taken.summary);
        }
    }
    match change.action {
        Action::Create => provider.create(&spec()?, owner).await.map(|o| o.summary),
        Action::Update => provider.update(&spec()?, owner).await.map(|o| o.summary),
        Action::Delete => provider.delete(&change.id, owner).await.map(|o| o.summary),
        Action::Replace => {
            provider
                .delete(&change.id, owner)
                .await
                .map_err(|e| e.to_string())?;
            provider
                .create(&spec()?, owner)
                .await
                .map(|o| format!("replaced: {}", o.summary))
        }
    }
    .map_err(|e| e.to_string())
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
        Arc::new(AtomicBool::new(false)),
    )
    .await
}

/// As `apply`, but once `stop` is set no further change starts: changes in flight finish, and
/// the rest are reported as interrupted. Nothing is left half done by siteplan itself.
pub async fn apply_until(
    plan: &Plan,
    desired: &Desired,
    provider: Arc<dyn Provider>,
    parallelism: usize,
    progress: Arc<dyn Progress>,
    stop: Arc<AtomicBool>,
) -> Report {
    let deps = ordering(plan, desired);
    let mut dependents = vec![Vec::new(); plan.changes.len()];
    for (i, ds) in deps.iter().enumerate() {
        for &d in ds {
            dependents[d].push(i);
        }
    }
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; plan.changes.len()];
    // One provider per run for now; with several, each gets its own semaphore.
    let per_provider = provider.parallelism().unwrap_or(usize::MAX);
    let limit = Arc::new(Semaphore::new(parallelism.min(per_provider).max(1)));
    let owner = Owner {
        plan: plan.name.clone(),
    };
    let changes: Arc<Vec<Change>> = Arc::new(plan.changes.clone());
    let mut running = JoinSet::new();

    let spawn = |i: usize, running: &mut JoinSet<(usize, Outcome)>| {
        let (provider, limit, owner, changes, progress) = (
            provider.clone(),
            limit.clone(),
            owner.clone(),
            changes.clone(),
            progress.clone(),
        );
        let stop = stop.clone();
        running.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let change = &changes[i];
            if stop.load(Ordering::SeqCst) {
                let outcome = Outcome {
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
            let status = match run_change(provider.as_ref(), change, &owner).await {
                Ok(summary) => Status::Done(summary),
                Err(message) => Status::Failed(message),
            };
            let outcome = Outcome {
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
        if stop.load(Ordering::SeqCst) {
            // Whatever has not started yet will not start.
            for (j, outcome) in outcomes.iter_mut().enumerate() {
                if outcome.is_none() && waiting[j] > 0 {
                    *outcome = Some(Outcome {
                        id: plan.changes[j].id.clone(),
                        address: crate::plan::render::address(&plan.changes[j]),
                        action: plan.changes[j].action,
                        status: Status::Interrupted,
                        seconds: 0.0,
                    });
                }
            }
        }
        let Ok((i, outcome)) = joined else { continue };
        let failed = !matches!(outcome.status, Status::Done(_));
        let interrupted = outcome.status == Status::Interrupted;
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
        outcomes: outcomes.into_iter().flatten().collect(),
    }
}

/// Marks everything downstream of a failed change as skipped, naming the failed change.
fn skip_dependents(
    failed: usize,
    dependents: &[Vec<usize>],
    changes: &[Change],
    outcomes: &mut [Option<Outcome>],
    progress: &dyn Progress,
) {
    let cause = changes[failed].id.clone();
    let mut stack = dependents[failed].clone();
    while let Some(d) = stack.pop() {
        if outcomes[d].is_some() {
            continue;
        }
        let outcome = Outcome {
            id: changes[d].id.clone(),
            address: crate::plan::render::address(&changes[d]),
            action: changes[d].action,
            status: Status::Skipped(cause.clone()),
            seconds: 0.0,
        };
        progress.finished(&outcome);
        outcomes[d] = Some(outcome);
        stack.extend(dependents[d].iter().copied());
    }
}

#[cfg(test)]
mod tests;
