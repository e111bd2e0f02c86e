//! The plan lock: a run that changes a plan holds it on every provider of the plan, from
//! before it observes until it ends, so that a second run of the same plan is refused at once,
//! naming the holder. It lives on the providers themselves (see `provider::lock`), where every
//! operator of a provider sees it; the run renews it while it lasts. A lock whose holder is
//! gone (its process on this host ended, or from another host it was not renewed in time) is
//! taken over, with a message; `plan unlock` removes one by hand.

use crate::provider::capability::{self, Capability, PlanLocks};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use super::outcome::Refusal;
use super::session::Session;
use super::view::{Event, View};
use crate::provider::lock::{FoundLock, LockAttempt, LockHolder, LOCK_TTL};
use crate::provider::{Provider, ProviderError, ResourceId, Scope};

/// The plan's locks, held by this run until `release`.
pub struct PlanLock {
    held: Vec<Held>,
    /// Per site: what a dead run whose lock this run took over left without a mark.
    inherited: Vec<Vec<String>>,
    /// Stops the renewing task.
    stop: CancellationToken,
    renewing: Option<tokio::task::JoinHandle<()>>,
    /// What renewing could not do, said at release.
    lost: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Held {
    provider: Arc<dyn Provider>,
    /// The provider, as messages name it.
    shown: String,
    holder: LockHolder,
    token: String,
}

/// Why a plan is locked: the holder, and on which provider.
#[derive(Debug)]
pub struct Locked {
    pub plan: String,
    pub provider: String,
    pub holder: LockHolder,
    /// The run's request, which the view makes the `plan unlock` command of.
    pub request: super::Request,
}

impl Session {
    /// Takes the plan's lock on every provider of the plan, for `command` (`plan apply
    /// site.yml`). Refused, holding nothing, when another run holds it on any of them.
    pub async fn lock(
        &self,
        command: &str,
        request: &super::Request,
        view: &dyn View,
    ) -> Result<PlanLock, Refusal> {
        let holder = LockHolder::this_process(&self.name, command);
        let mut held = Vec::new();
        let mut inherited = Vec::new();
        for site in &self.sites {
            let provider = site.opened.provider.clone();
            let shown = site.shown();
            let mut holder = holder.clone();
            match take(provider.as_ref(), &mut holder, &shown, request, view).await {
                Ok(Some(token)) => {
                    inherited.push(holder.unmarked.clone());
                    held.push(Held {
                        provider,
                        shown,
                        holder,
                        token,
                    });
                }
                Ok(None) => inherited.push(Vec::new()),
                Err(refusal) => {
                    release_all(&held, view).await;
                    return Err(refusal);
                }
            }
        }
        let stop = CancellationToken::new();
        let lost = Arc::new(Mutex::new(Vec::new()));
        let renewing = (!held.is_empty())
            .then(|| tokio::spawn(renew_until(held.clone(), stop.clone(), lost.clone())));
        Ok(PlanLock {
            held,
            inherited,
            stop,
            renewing,
            lost,
        })
    }

    /// Says when a run holds the plan (for `diff` and `status`, which take no lock): what they
    /// show may change under it. A stale lock is named as such, and what its dead run was
    /// left without a mark is returned per site (what the next run would take over).
    pub async fn tell_holders(&self, view: &dyn View) -> Vec<Vec<String>> {
        let mut unmarked = Vec::new();
        for site in &self.sites {
            let Ok(Some(found)) = read_lock(site.opened.provider.as_ref(), &self.name).await else {
                unmarked.push(Vec::new());
                continue;
            };
            let shown = site.shown();
            let stale = found.holder.stale(SystemTime::now());
            view.event(Event::Warning(match &stale {
                None => format!(
                    "plan `{}` is being changed on {shown} by {}: what this shows may change \
                     as that run goes on",
                    self.name,
                    found.holder.describe()
                ),
                Some(why) => format!(
                    "plan `{}` has a stale lock on {shown}, left by {} ({why}); the next run \
                     that changes the plan takes it over",
                    self.name,
                    found.holder.describe()
                ),
            }));
            unmarked.push(match stale {
                Some(_) => found.holder.unmarked,
                None => Vec::new(),
            });
        }
        unmarked
    }

    /// `plan unlock`: the plan's lock on each of its providers, as found.
    pub async fn locks(&self) -> Result<Vec<(usize, String, Option<FoundLock>)>, Refusal> {
        let mut found = Vec::new();
        for (i, site) in self.sites.iter().enumerate() {
            let shown = site.shown();
            match read_lock(site.opened.provider.as_ref(), &self.name).await {
                Ok(lock) => found.push((i, shown, lock)),
                Err(ProviderError::Unsupported(_)) => found.push((i, shown, None)),
                Err(e) => {
                    return Err(Refusal::Invalid(format!(
                        "cannot read plan `{}`'s lock on {shown}: {e}",
                        self.name
                    )))
                }
            }
        }
        Ok(found)
    }

    /// Removes the lock `found` from site `site`: `false` when it had gone meanwhile.
    pub async fn remove_lock(&self, site: usize, found: &FoundLock) -> Result<bool, Refusal> {
        let site = &self.sites[site];
        delete_lock(site.opened.provider.as_ref(), &self.name, &found.token)
            .await
            .map_err(|e| {
                Refusal::Invalid(format!(
                    "cannot remove plan `{}`'s lock on {}: {e}",
                    self.name,
                    site.shown()
                ))
            })
    }
}

impl PlanLock {
    /// What a dead run whose lock was taken over left without a mark on each site, in site
    /// order.
    pub fn inherited(&self) -> &[Vec<String>] {
        &self.inherited
    }

    /// Gives the locks back: stops renewing, then deletes each (only if it is still this
    /// run's). What cannot be released is said: the next run takes it over once this
    /// process has ended.
    pub async fn release(mut self, view: &dyn View) {
        self.stop.cancel();
        if let Some(renewing) = self.renewing.take() {
            let _ = renewing.await;
        }
        for lost in self
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            view.event(Event::Warning(lost));
        }
        release_all(&self.held, view).await;
    }
}

// The provider's plan lock (`capability::PlanLocks`), or the one refusal of a backend without.

async fn create_lock(
    provider: &dyn Provider,
    holder: &LockHolder,
) -> Result<LockAttempt, ProviderError> {
    plan_locks(provider)?.create_lock(holder).await
}

async fn read_lock(
    provider: &dyn Provider,
    plan: &str,
) -> Result<Option<FoundLock>, ProviderError> {
    plan_locks(provider)?.read_lock(plan).await
}

async fn renew_lock(
    provider: &dyn Provider,
    holder: &LockHolder,
    token: &str,
) -> Result<(), ProviderError> {
    plan_locks(provider)?.renew_lock(holder, token).await
}

async fn delete_lock(
    provider: &dyn Provider,
    plan: &str,
    token: &str,
) -> Result<bool, ProviderError> {
    plan_locks(provider)?.delete_lock(plan, token).await
}

fn plan_locks(provider: &dyn Provider) -> Result<&dyn PlanLocks, ProviderError> {
    capability::require(provider.plan_locks(), provider, Capability::PlanLock)
}

/// Takes the lock on one provider: `None` when the provider keeps none (said).
async fn take(
    provider: &dyn Provider,
    holder: &mut LockHolder,
    shown: &str,
    request: &super::Request,
    view: &dyn View,
) -> Result<Option<String>, Refusal> {
    let plan = holder.plan.clone();
    let plan = &plan;
    let failed = |e: ProviderError| {
        Refusal::Invalid(format!(
            "cannot lock plan `{plan}` on {shown}: {e}; nothing was changed"
        ))
    };
    // A stale lock is deleted and the lock made again; if another run made it first, that
    // run holds it.
    for _ in 0..3 {
        let found = match create_lock(provider, holder).await {
            Ok(LockAttempt::Taken(token)) => return Ok(Some(token)),
            Ok(LockAttempt::Held(found)) => found,
            Err(ProviderError::Unsupported(why)) => {
                view.event(Event::Warning(format!(
                    "{why}: two runs of plan `{plan}` on {shown} are not kept apart"
                )));
                return Ok(None);
            }
            Err(e) => return Err(failed(e)),
        };
        let Some(why) = found.holder.stale(SystemTime::now()) else {
            return Err(Refusal::Locked(Box::new(Locked {
                plan: plan.clone(),
                provider: shown.to_string(),
                holder: found.holder,
                request: request.clone(),
            })));
        };
        view.event(Event::Warning(format!(
            "taking over plan `{plan}`'s lock on {shown} from {}: {why}",
            found.holder.describe()
        )));
        // What the dead run left without a mark stays noted until a run finishes the job.
        for address in &found.holder.unmarked {
            if !holder.unmarked.contains(address) {
                holder.unmarked.push(address.clone());
            }
        }
        delete_lock(provider, plan, &found.token)
            .await
            .map_err(failed)?;
    }
    Err(Refusal::Invalid(format!(
        "cannot lock plan `{plan}` on {shown}: its lock keeps changing hands; nothing was changed"
    )))
}

/// What of `noted` (addresses the run noted in its lock before leaving them without a mark) is
/// still there without a mark: a pool the run defined or began to delete and did not finish.
async fn left_unmarked(provider: &dyn Provider, plan: &str, noted: &[String]) -> Vec<String> {
    let ids: Vec<ResourceId> = noted
        .iter()
        .filter_map(|address| {
            let name = address.strip_prefix("pool/")?;
            Some(ResourceId::pool(name))
        })
        .collect();
    let scope = Scope {
        plan: plan.to_string(),
        ids: ids.clone(),
    };
    let Ok(observed) = provider.observe(&scope).await else {
        // Unknown: keep the record.
        return noted.to_vec();
    };
    ids.iter()
        .filter(|id| observed.get(id).is_some_and(|live| live.owner.is_none()))
        .map(ToString::to_string)
        .collect()
}

async fn release_all(held: &[Held], view: &dyn View) {
    for lock in held {
        let plan = &lock.holder.plan;
        // A pool this run (or a dead one before it) left without a mark is known to be the
        // plan's only through the lock's note: the lock stays as that record, stale at once,
        // for the next run to take over and finish the job.
        if let Ok(Some(found)) = read_lock(lock.provider.as_ref(), plan).await {
            if found.token == lock.token && !found.holder.unmarked.is_empty() {
                let left =
                    left_unmarked(lock.provider.as_ref(), plan, &found.holder.unmarked).await;
                if !left.is_empty() {
                    let record = LockHolder {
                        renewed: crate::provider::lock::rfc3339(SystemTime::UNIX_EPOCH),
                        ..found.holder
                    };
                    if renew_lock(lock.provider.as_ref(), &record, &lock.token)
                        .await
                        .is_ok()
                    {
                        view.event(Event::Warning(format!(
                            "{} on {} {} left without the plan's mark: plan `{plan}`'s lock \
                             stays there as the record that they are the plan's, for the next \
                             run to take over and finish",
                            left.join(", "),
                            lock.shown,
                            if left.len() == 1 { "is" } else { "are" }
                        )));
                        continue;
                    }
                }
            }
        }
        match delete_lock(lock.provider.as_ref(), plan, &lock.token).await {
            Ok(true) => {}
            Ok(false) => view.event(Event::Warning(format!(
                "plan `{plan}`'s lock on {} was gone before this run ended (removed by an \
                 unlock?)",
                lock.shown
            ))),
            Err(e) => view.event(Event::Warning(format!(
                "cannot release plan `{plan}`'s lock on {}: {e}; the next run takes it over",
                lock.shown
            ))),
        }
    }
}

/// Renews every held lock each quarter of its lifetime until `stop`.
async fn renew_until(held: Vec<Held>, stop: CancellationToken, lost: Arc<Mutex<Vec<String>>>) {
    let mut ticks = tokio::time::interval(LOCK_TTL / 4);
    ticks.tick().await; // the first tick is now: the locks were just made
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        for lock in &held {
            let renewed = lock.holder.renewed_now();
            if let Err(e) = renew_lock(lock.provider.as_ref(), &renewed, &lock.token).await {
                lost.lock().unwrap_or_else(|p| p.into_inner()).push(format!(
                    "cannot renew plan `{}`'s lock on {}: {e}",
                    renewed.plan, lock.shown
                ));
            }
        }
    }
}

/// What `plan unlock` found on one provider, and whether it removed it.
#[derive(Debug)]
pub struct Unlocked {
    pub provider: String,
    /// The lock's holder; `None` when the plan held no lock there.
    pub holder: Option<LockHolder>,
    /// Removed by this command (`false`: it was gone by the time it was removed).
    pub removed: bool,
}

/// `plan unlock`: removes the plan's lock on each of its providers, after asking, whoever
/// holds it, as `terraform force-unlock` does: for a run that is gone and left its lock where
/// it would not be taken over yet (from another host, before it expires).
pub async fn unlock(
    request: &super::Request,
    loaded: &crate::manifest::Loaded,
    view: &dyn View,
) -> Result<Vec<Unlocked>, Refusal> {
    // A plan whose scripts are gone still names its providers.
    let session = Session::open_unreadable(
        loaded,
        super::Goal::Converge,
        request,
        view,
        super::session::Unreadable::ProvidersOnly,
    )
    .await?;
    let mut unlocked = Vec::new();
    for (site, provider, found) in session.locks().await? {
        let Some(found) = found else {
            unlocked.push(Unlocked {
                provider,
                holder: None,
                removed: false,
            });
            continue;
        };
        let state = match found.holder.stale(SystemTime::now()) {
            Some(why) => format!("a stale lock: {why}"),
            None => "its run may still be going on: removing the lock lets another run change \
                     the plan alongside it"
                .to_string(),
        };
        let question = format!(
            "Plan `{}` is locked on {provider} by {} ({state}). Remove the lock?",
            request.name,
            found.holder.describe()
        );
        match view.ask(&question) {
            super::Answer::Yes => {}
            super::Answer::No => return Err(Refusal::Declined),
            super::Answer::CannotAsk => return Err(Refusal::CannotAsk(super::Asked::RemoveLock)),
        }
        let removed = session.remove_lock(site, &found).await?;
        unlocked.push(Unlocked {
            provider,
            holder: Some(found.holder),
            removed,
        });
    }
    Ok(unlocked)
}
