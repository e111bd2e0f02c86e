//! `plan snapshot create|list|revert|delete`: lab snapshots, one point in time for every VM of
//! the plan, taken, reverted and deleted as one.
//!
//! - Consistent: every running VM is paused, then all are snapshotted (in parallel, within
//!   each provider's limit), then all resume. The snapshots keep the VMs' memory, so the lab
//!   comes back exactly where it was; a revert leaves each VM paused and resumes them all at
//!   once. The outcome says how long the lab was paused.
//! - All or nothing: everything that can be refused is refused before any VM is paused (names
//!   taken, VMs missing, disks or firmware the backend cannot snapshot); if a VM's snapshot
//!   fails, the ones made are deleted again and every VM resumes. A failed revert says which
//!   VM is at which state.
//! - Known to the plan: each VM snapshot carries the lab snapshot's mark
//!   (`provider::snapshot`), which `list` and `status` read; deleting a VM deletes its
//!   snapshots, so `destroy` leaves none.

use crate::provider::capability::{self, Capability};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::outcome::{Hint, Problem, Refusal};
use super::request::{Request, RunOptions};
use super::session::{Goal, Session};
use super::view::{Answer, View};
use crate::manifest::Loaded;
use crate::plan::model::spec::{ResourceId, Spec};
use crate::provider::snapshot::{check_name, FoundSnapshots, SnapshotMark, VmSnapshot};
use crate::provider::{Owner, Provider, ProviderError};

mod outcome;
pub use outcome::*;

/// A VM a lab snapshot command works on.
#[derive(Debug, Clone)]
struct Member {
    /// Its site (provider) in the session.
    site: usize,
    vm: String,
    /// It runs now (before anything is paused).
    running: bool,
}

/// Runs `f` for each member on its provider, each provider's members in parallel within its
/// limit, all providers at once. Results come in the members' order.
async fn on_each<'a, T, F, Fut>(
    session: &'a Session,
    members: &'a [Member],
    parallelism: usize,
    f: F,
) -> Vec<T>
where
    F: Fn(Arc<dyn Provider>, &'a Member) -> Fut,
    Fut: Future<Output = T> + 'a,
{
    let f = &f;
    let per_site = session.sites.iter().enumerate().map(|(i, site)| {
        let limit = parallelism
            .min(site.opened.parallelism.unwrap_or(usize::MAX))
            .min(site.opened.provider.parallelism().unwrap_or(usize::MAX))
            .max(1);
        let provider = site.opened.provider.clone();
        let mine: Vec<(usize, &'a Member)> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.site == i)
            .collect();
        futures::stream::iter(mine)
            .map(move |(k, m)| {
                let provider = provider.clone();
                async move { (k, f(provider, m).await) }
            })
            .buffer_unordered(limit)
            .collect::<Vec<_>>()
    });
    let mut all: Vec<(usize, T)> = futures::future::join_all(per_site)
        .await
        .into_iter()
        .flatten()
        .collect();
    all.sort_by_key(|(k, _)| *k);
    all.into_iter().map(|(_, t)| t).collect()
}

/// Each member whose result is an error, with the error.
fn failures<T>(
    members: &[Member],
    results: Vec<Result<T, ProviderError>>,
) -> Vec<(String, String)> {
    members
        .iter()
        .zip(results)
        .filter_map(|(member, result)| result.err().map(|e| (member.vm.clone(), e.to_string())))
        .collect()
}

/// A command that changes lab snapshots, ready: the name checked, the plan's providers open
/// and able to take snapshots, and the plan's lock held.
struct Ready {
    session: Session,
    owner: Owner,
    lock: super::PlanLock,
}

async fn ready(
    holder: &str,
    name: &str,
    request: &Request,
    loaded: &Loaded,
    view: &dyn View,
) -> Result<Ready, Refusal> {
    check_name(name)?;
    let session = open(request, loaded, view).await?;
    let owner = Owner::plan(&session.name);
    check_capability(&session)?;
    let lock = session.lock(holder, request, view).await?;
    Ok(Ready {
        session,
        owner,
        lock,
    })
}

/// Opens the plan's providers for a snapshot command. Its `--target` names VMs, which each
/// command takes as `names`: the session itself covers the whole plan.
async fn open(request: &Request, loaded: &Loaded, view: &dyn View) -> Result<Session, Refusal> {
    let whole = Request {
        targets: Vec::new(),
        ..request.clone()
    };
    Session::open(loaded, Goal::Converge, &whole, view).await
}

/// The provider's lab snapshots, or the one refusal of a backend without.
fn lab(provider: &dyn Provider) -> Result<&dyn capability::LabSnapshots, ProviderError> {
    capability::require(provider.lab_snapshots(), provider, Capability::LabSnapshots)
}

/// Refuses at once on a provider that cannot take lab snapshots.
fn check_capability(session: &Session) -> Result<(), Refusal> {
    for site in &session.sites {
        if site.guests.is_empty() {
            continue;
        }
        if let Err(e) = lab(site.opened.provider.as_ref()) {
            return Err(Refusal::Invalid(format!("{}: {e}", site.shown())));
        }
    }
    Ok(())
}

/// Every lab snapshot of the plan on every provider, and the others.
async fn found(
    session: &Session,
) -> Result<(Vec<(usize, VmSnapshot)>, Vec<OtherSnapshot>), Refusal> {
    let mut marked = Vec::new();
    let mut others = Vec::new();
    for (i, site) in session.sites.iter().enumerate() {
        if site.guests.is_empty() {
            continue;
        }
        let found = match lab(site.opened.provider.as_ref()) {
            Ok(lab) => lab.snapshots(&session.name).await,
            Err(e) => Err(e),
        };
        match found {
            Ok(FoundSnapshots {
                marked: mine,
                others: theirs,
            }) => {
                marked.extend(mine.into_iter().map(|s| (i, s)));
                others.extend(
                    theirs
                        .into_iter()
                        .map(|(vm, name)| OtherSnapshot { vm, name }),
                );
            }
            Err(ProviderError::Unsupported(_)) => {}
            Err(e) => return Err(Refusal::Invalid(format!("{}: {e}", site.shown()))),
        }
    }
    Ok((marked, others))
}

/// The plan's lab snapshots, grouped by name, oldest first.
fn grouped(session: &Session, marked: &[(usize, VmSnapshot)]) -> Vec<LabSnapshot> {
    let mut by_name: BTreeMap<&str, Vec<&(usize, VmSnapshot)>> = BTreeMap::new();
    for found in marked {
        by_name
            .entry(found.1.mark.name.as_str())
            .or_default()
            .push(found);
    }
    let mut snapshots: Vec<LabSnapshot> = by_name
        .into_iter()
        .map(|(name, held)| {
            let created = held
                .iter()
                .map(|(_, s)| s.mark.created.clone())
                .min()
                .unwrap_or_default();
            let holding: BTreeSet<&str> = held.iter().map(|(_, s)| s.vm.as_str()).collect();
            let covers: BTreeSet<&str> = held
                .iter()
                .flat_map(|(_, s)| s.mark.vms.iter().map(String::as_str))
                .collect();
            let mut vms: Vec<SnapshotVm> = held
                .iter()
                .map(|(site, s)| SnapshotVm {
                    name: s.vm.clone(),
                    provider: session.sites[*site].shown(),
                    running: s.mark.was_running,
                    definition: s.definition.as_ref().map(|d| Definition {
                        memory_mib: d.memory_mib,
                        vcpus: d.vcpus,
                        disks: d
                            .disks
                            .iter()
                            .map(|k| format!("{}/{}", k.pool, k.volume))
                            .collect(),
                        networks: d.nics.iter().map(|n| n.network.clone()).collect(),
                    }),
                })
                .collect();
            vms.sort_by(|a, b| a.name.cmp(&b.name));
            LabSnapshot {
                name: name.to_string(),
                created,
                vms,
                missing: covers.difference(&holding).map(|s| s.to_string()).collect(),
            }
        })
        .collect();
    snapshots.sort_by(|a, b| (&a.created, &a.name).cmp(&(&b.created, &b.name)));
    snapshots
}

/// `plan snapshot list` (and the lines `plan status` shows): nothing is locked or changed.
pub async fn list(request: &Request, loaded: &Loaded, view: &dyn View) -> Result<Listed, Refusal> {
    let session = open(request, loaded, view).await?;
    let (marked, others) = found(&session).await?;
    Ok(Listed {
        version: 1,
        plan: session.name.clone(),
        snapshots: grouped(&session, &marked),
        others,
    })
}

/// The plan's lab snapshots on an open session, for `plan status`.
pub(super) async fn of_session(session: &Session) -> Vec<LabSnapshot> {
    match found(session).await {
        Ok((marked, _)) => grouped(session, &marked),
        Err(_) => Vec::new(),
    }
}

/// `plan snapshot create`: every VM of the plan (or of `names`), at one point in time.
pub async fn create(
    request: &Request,
    loaded: &Loaded,
    name: &str,
    names: &[String],
    options: &RunOptions,
    view: &dyn View,
) -> Result<Created, Refusal> {
    let started = Instant::now();
    let interruption = &options.interruption;
    interruption.listen();
    let Ready {
        session,
        owner,
        lock,
    } = ready(&options.holder, name, request, loaded, view).await?;
    let result = async {
        let observed = session.observe(view).await?;
        session.known_vms(names)?;
        // The plan's VMs as they are, each on its provider.
        let mut members = Vec::new();
        let mut problems = Vec::new();
        let mut disks_of: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for (i, site) in session.sites.iter().enumerate() {
            for guest in &site.guests {
                if !names.is_empty() && !names.contains(&guest.name) {
                    continue;
                }
                let id = ResourceId::vm(&guest.name);
                // The VM, whichever backend's kind it is.
                match observed[i].vm(&guest.name) {
                    None => problems.push(Problem::hinted(
                        format!("{id} does not exist on {}", site.shown()),
                        vec![Hint::Apply, Hint::LeaveOut],
                    )),
                    Some(live) if live.owner.as_ref().is_none_or(|m| m.plan != session.name) => {
                        problems.push(
                            format!(
                                "{id} on {} was not created by plan `{}`",
                                site.shown(),
                                session.name
                            )
                            .into(),
                        )
                    }
                    Some(live) => {
                        if let Spec::Vm(vm) = &live.spec {
                            disks_of.insert(
                                guest.name.clone(),
                                vm.disks
                                    .iter()
                                    .map(|d| (d.pool.clone(), d.volume.clone()))
                                    .collect(),
                            );
                        }
                        members.push(Member {
                            site: i,
                            vm: guest.name.clone(),
                            running: live.active,
                        });
                    }
                }
            }
        }
        members.sort_by(|a, b| a.vm.cmp(&b.vm));
        let shared = shared_disks(&members, &disks_of);
        // A stopped VM's snapshot would write into a disk that a running VM holds open.
        for (disk, vms) in &shared {
            let runs = |vm: &String| members.iter().any(|m| &m.vm == vm && m.running);
            let (running, stopped): (Vec<&String>, Vec<&String>) =
                vms.iter().partition(|v| runs(v));
            if !running.is_empty() && !stopped.is_empty() {
                let fact = format!(
                    "disk {disk} is shared by running {} and stopped {}: the stopped VM's \
                     snapshot would be written into a disk the running one holds. Start or \
                     stop them alike",
                    running
                        .iter()
                        .map(|v| format!("vm/{v}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    stopped
                        .iter()
                        .map(|v| format!("vm/{v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                problems.push(Problem::hinted(fact, vec![Hint::LeaveOut]));
            }
        }
        if members.is_empty() && problems.is_empty() {
            problems.push(format!("plan `{}` has no VM to snapshot", session.name).into());
        }
        // The name is free on every VM, whoever took a snapshot of that name.
        let (marked, others) = found(&session).await?;
        for member in &members {
            let taken = marked
                .iter()
                .any(|(_, s)| s.vm == member.vm && s.mark.name == name)
                || others.iter().any(|o| o.vm == member.vm && o.name == name);
            if taken {
                problems.push(Problem::hinted(
                    format!("vm/{} already has a snapshot `{name}`", member.vm),
                    vec![Hint::DeleteSnapshot { name: name.into() }],
                ));
            }
        }
        // What the backends cannot snapshot, before anything is paused.
        for (i, site) in session.sites.iter().enumerate() {
            let targets: Vec<String> = members
                .iter()
                .filter(|m| m.site == i)
                .map(|m| m.vm.clone())
                .collect();
            if targets.is_empty() {
                continue;
            }
            let refused = match lab(site.opened.provider.as_ref()) {
                Ok(lab) => lab.snapshot_refusals(&targets, &owner).await,
                Err(e) => Err(e),
            };
            match refused {
                Ok(refusals) => problems.extend(
                    refusals
                        .into_iter()
                        .map(|fact| Problem::hinted(fact, vec![Hint::LeaveOut])),
                ),
                Err(e) => problems.push(format!("{}: {e}", site.shown()).into()),
            }
        }
        if !problems.is_empty() {
            return Err(Refusal::Problems(problems));
        }
        super::not_interrupted(interruption)?;
        Ok(take(&session, &members, name, shared, &owner, options, started).await)
    }
    .await;
    lock.release(view).await;
    result
}

/// The disks several members share (`pool/volume`), each with the VMs that have it. An
/// internal snapshot keeps every disk of its VM, so each of those VMs' snapshots holds the
/// disk; the lab is paused, so they hold the same content.
fn shared_disks(
    members: &[Member],
    disks_of: &BTreeMap<String, Vec<(String, String)>>,
) -> BTreeMap<String, Vec<String>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for member in members {
        for (pool, volume) in disks_of.get(&member.vm).into_iter().flatten() {
            users
                .entry(format!("{pool}/{volume}"))
                .or_default()
                .push(member.vm.clone());
        }
    }
    users.retain(|_, vms| vms.len() > 1);
    users
}

/// Pauses, snapshots and resumes `members`; removes what was made if any failed.
async fn take(
    session: &Session,
    members: &[Member],
    name: &str,
    shared: BTreeMap<String, Vec<String>>,
    owner: &Owner,
    options: &RunOptions,
    started: Instant,
) -> Created {
    let parallelism = options.parallelism;
    let mut created = Created {
        name: name.to_string(),
        vms: members.iter().map(|m| m.vm.clone()).collect(),
        shared,
        ..Created::default()
    };
    let run = uuid::Uuid::new_v4().to_string();
    let when = crate::provider::lock::rfc3339(std::time::SystemTime::now());

    // 1. Pause every running VM.
    let running: Vec<Member> = members.iter().filter(|m| m.running).cloned().collect();
    let pause_started = Instant::now();
    let paused = on_each(session, &running, parallelism, |p, m| async move {
        lab(&*p)?.pause(&m.vm, owner).await
    })
    .await;
    let mut paused_vms = Vec::new();
    for (member, result) in running.iter().zip(paused) {
        match result {
            Ok(true) => paused_vms.push(member.clone()),
            Ok(false) => created.not_paused.push(member.vm.clone()),
            Err(e) => created.failed.push((member.vm.clone(), e.to_string())),
        }
    }

    // 2. Snapshot them all, unless a pause failed.
    if created.failed.is_empty() {
        let results = on_each(session, members, parallelism, |p, m| {
            let mark = SnapshotMark {
                plan: session.name.clone(),
                name: name.to_string(),
                created: when.clone(),
                vms: created.vms.clone(),
                run: run.clone(),
                was_running: m.running,
            };
            async move { lab(&*p)?.create_snapshot(&m.vm, &mark, owner).await }
        })
        .await;
        created.failed = failures(members, results);
    }

    // 3. Resume what was paused: the lab runs again before anything is cleaned up.
    let resumed = on_each(session, &paused_vms, parallelism, |p, m| async move {
        lab(&*p)?.resume(&m.vm, owner).await
    })
    .await;
    created.not_resumed = failures(&paused_vms, resumed);
    if !paused_vms.is_empty() {
        created.pause = Some(pause_started.elapsed());
    }
    created.paused = paused_vms.into_iter().map(|m| m.vm).collect();

    // 4. All or nothing: a failure removes every snapshot of this run, also one a failing
    //    VM may have made before it failed.
    if !created.failed.is_empty() {
        let removed = on_each(session, members, parallelism, |p, m| async move {
            lab(&*p)?.delete_snapshot(&m.vm, name, owner).await
        })
        .await;
        created.not_removed = failures(members, removed);
    }
    created.interrupted = options.interruption.signal().is_some();
    created.took = started.elapsed();
    created
}

/// The VMs of lab snapshot `name` (those of `names` only, if given), each on its site.
/// Refuses a snapshot that is not there, or (`whole`) one that some VM it covers lacks.
fn members_of(
    session: &Session,
    marked: &[(usize, VmSnapshot)],
    name: &str,
    names: &[String],
    whole: bool,
) -> Result<(Vec<Member>, String), Refusal> {
    let of_name: Vec<&(usize, VmSnapshot)> =
        marked.iter().filter(|(_, s)| s.mark.name == name).collect();
    if of_name.is_empty() {
        let known: BTreeSet<&str> = marked.iter().map(|(_, s)| s.mark.name.as_str()).collect();
        return Err(Refusal::Invalid(format!(
            "plan `{}` has no snapshot `{name}`{}",
            session.name,
            if known.is_empty() {
                String::new()
            } else {
                format!(
                    "; its snapshots are: {}",
                    known.into_iter().collect::<Vec<_>>().join(", ")
                )
            }
        )));
    }
    let covers: BTreeSet<String> = of_name
        .iter()
        .flat_map(|(_, s)| s.mark.vms.iter().cloned())
        .collect();
    if let Some(stranger) = names.iter().find(|n| !covers.contains(*n)) {
        return Err(Refusal::Invalid(format!(
            "snapshot `{name}` does not cover `{stranger}`; it covers: {}",
            covers.iter().cloned().collect::<Vec<_>>().join(", ")
        )));
    }
    let wanted: Vec<&String> = covers
        .iter()
        .filter(|vm| names.is_empty() || names.contains(vm))
        .collect();
    let missing: Vec<String> = wanted
        .iter()
        .filter(|vm| !of_name.iter().any(|(_, s)| &s.vm == **vm))
        .map(|vm| format!("vm/{vm}"))
        .collect();
    if whole && !missing.is_empty() {
        return Err(Refusal::Invalid(format!(
            "snapshot `{name}` is not whole: {} {} no snapshot `{name}` (deleted since, or \
             destroyed): revert the others alone, or delete it",
            missing.join(", "),
            if missing.len() == 1 { "has" } else { "have" }
        ))
        .hint(vec![Hint::LeaveOut]));
    }
    let created = of_name
        .iter()
        .map(|(_, s)| s.mark.created.clone())
        .min()
        .unwrap_or_default();
    let mut members: Vec<Member> = of_name
        .iter()
        .filter(|(_, s)| names.is_empty() || names.contains(&s.vm))
        .map(|(site, s)| Member {
            site: *site,
            vm: s.vm.clone(),
            running: s.mark.was_running,
        })
        .collect();
    members.sort_by(|a, b| a.vm.cmp(&b.vm));
    Ok((members, created))
}

/// `plan snapshot revert`: every VM of lab snapshot `name` (or those of `names`) back to it.
pub async fn revert(
    request: &Request,
    loaded: &Loaded,
    name: &str,
    names: &[String],
    options: &RunOptions,
    view: &dyn View,
) -> Result<Reverted, Refusal> {
    let started = Instant::now();
    let interruption = &options.interruption;
    interruption.listen();
    let Ready {
        session,
        owner,
        lock,
    } = ready(&options.holder, name, request, loaded, view).await?;
    let result = async {
        let (marked, _) = found(&session).await?;
        let (members, created) = members_of(&session, &marked, name, names, true)?;
        let question = format!(
            "Revert {} of plan `{}` to snapshot `{name}` (taken {created})? What they hold \
             now, on disk and in memory, is lost.",
            members
                .iter()
                .map(|m| format!("vm/{}", m.vm))
                .collect::<Vec<_>>()
                .join(", "),
            session.name
        );
        match view.ask(&question) {
            Answer::Yes => {}
            Answer::No => return Err(Refusal::Declined),
            Answer::CannotAsk => return Err(Refusal::CannotAsk(super::Asked::Revert)),
        }
        super::not_interrupted(interruption)?;
        Ok(bring_back(
            &session,
            members,
            name,
            created,
            &owner,
            options.parallelism,
            started,
        )
        .await)
    }
    .await;
    lock.release(view).await;
    result
}

/// Pauses the VMs that run, reverts each (each comes back paused, or off), then resumes
/// those that ran when the snapshot was taken, and those whose revert failed and had run.
async fn bring_back(
    session: &Session,
    members: Vec<Member>,
    name: &str,
    created: String,
    owner: &Owner,
    parallelism: usize,
    started: Instant,
) -> Reverted {
    let mut reverted = Reverted {
        name: name.to_string(),
        created,
        ..Reverted::default()
    };
    let pause_started = Instant::now();
    let paused = on_each(session, &members, parallelism, |p, m| async move {
        match lab(&*p) {
            Ok(lab) => lab.pause(&m.vm, owner).await.unwrap_or(false),
            Err(_) => false,
        }
    })
    .await;
    let results = on_each(session, &members, parallelism, |p, m| async move {
        lab(&*p)?.revert_snapshot(&m.vm, name, owner).await
    })
    .await;
    let mut to_resume = Vec::new();
    for ((member, result), was_paused) in members.iter().zip(results).zip(&paused) {
        match result {
            Ok(()) => {
                reverted.reverted.push(member.vm.clone());
                if member.running {
                    to_resume.push(member.clone());
                }
            }
            Err(e) => {
                reverted.failed.push((member.vm.clone(), e.to_string()));
                if *was_paused {
                    to_resume.push(member.clone());
                }
            }
        }
    }
    let resumed = on_each(session, &to_resume, parallelism, |p, m| async move {
        lab(&*p)?.resume(&m.vm, owner).await
    })
    .await;
    reverted.not_resumed = failures(&to_resume, resumed);
    reverted.running = to_resume
        .iter()
        .map(|m| m.vm.clone())
        .filter(|vm| !reverted.not_resumed.iter().any(|(v, _)| v == vm))
        .collect();
    if paused.iter().any(|p| *p) || !to_resume.is_empty() {
        reverted.pause = Some(pause_started.elapsed());
        reverted.stopped_instead = !paused.iter().any(|p| *p);
    }
    reverted.took = started.elapsed();
    reverted
}

/// `plan snapshot delete`: lab snapshot `name` from every VM that holds it (or from those of
/// `names`). Snapshots a person took are not touched.
pub async fn delete(
    request: &Request,
    loaded: &Loaded,
    name: &str,
    names: &[String],
    options: &RunOptions,
    view: &dyn View,
) -> Result<Deleted, Refusal> {
    let Ready {
        session,
        owner,
        lock,
    } = ready(&options.holder, name, request, loaded, view).await?;
    let result = async {
        let (marked, _) = found(&session).await?;
        // A snapshot that is not whole is deleted from the VMs that hold it.
        let (members, _) = members_of(&session, &marked, name, names, false)?;
        let owner = &owner;
        let results = on_each(&session, &members, options.parallelism, |p, m| async move {
            lab(&*p)?.delete_snapshot(&m.vm, name, owner).await
        })
        .await;
        let failed = failures(&members, results);
        Ok(Deleted {
            name: name.to_string(),
            deleted: members
                .iter()
                .map(|m| m.vm.clone())
                .filter(|vm| !failed.iter().any(|(v, _)| v == vm))
                .collect(),
            failed,
        })
    }
    .await;
    lock.release(view).await;
    result
}
