//! `plan drain HOST`: the plan's VMs on a host of its group move to the group's other hosts,
//! placed as new VMs are (the most memory left), and the lab is left converged. Three steps,
//! each shown and asked for as `apply` asks:
//!
//! 1. what the moving VMs need on their new hosts is made there (their volumes, seeds,
//!    networks, tunnels), but not the VMs, and nothing goes from the drained host;
//! 2. libvirt moves each VM (`Placement::migrate`): live when it runs, its disks' content
//!    copied into the volumes of step 1; a stopped VM is started paused for the copy and is
//!    stopped again there. A running VM that cannot move live is stopped, moved stopped, and
//!    started on its new host. A VM that cannot move at all stays where it was;
//! 3. the plan is converged with the host still drained: what the plan has left there goes.
//!
//! The host is drained for this run only: a later `apply` may place new VMs on it again,
//! unless the providers file says `enabled: false` for it.

use std::sync::Arc;
use std::time::Instant;

use super::request::{Drain, DrainStep};
use super::session::{Goal, Session};
use super::*;

/// `plan drain HOST`, for the request's plan.
pub async fn drain(
    request: &Request,
    host: &str,
    loaded: &Loaded,
    options: RunOptions,
    view: &dyn View,
) -> Result<Outcome, Refusal> {
    let step = |step| Request {
        drain: Some(Drain {
            host: host.to_string(),
            step,
        }),
        ..request.clone()
    };
    let make_room = step(DrainStep::MakeRoom);
    let moves = {
        let session = Session::open(loaded, Goal::Converge, &make_room, view).await?;
        if !session.group_hosts.contains(host) {
            return Err(Refusal::Invalid(format!(
                "`{host}` is no host of a group plan `{}` goes to: a drain moves VMs between \
                 the hosts of a group",
                request.name
            )));
        }
        session.moves.clone()
    };
    if moves.is_empty() {
        view.event(Event::Warning(format!(
            "{host} holds no VM of plan `{}`: nothing moves",
            request.name
        )));
    } else {
        // Refused before anything is made where the host cannot move its VMs.
        let from = open(host).await.map_err(Refusal::Invalid)?;
        let movable = from.placement().map_or_else(
            || Err(format!("it ({}) has no hosts to move to", from.kind())),
            |p| p.migrates(),
        );
        if let Err(why) = movable {
            return Err(Refusal::Invalid(format!("{host} cannot be drained: {why}")));
        }
        match converge(
            &make_room,
            loaded,
            Goal::Converge,
            None,
            options.clone(),
            view,
        )
        .await?
        {
            Outcome::Applied { report, .. } if report.failed() + report.skipped() > 0 => {
                return Err(Refusal::Invalid(format!(
                    "the moving VMs' new hosts could not be made ready ({} failed): nothing \
                     moved, and {host} holds what it held",
                    report.failed() + report.skipped()
                )));
            }
            _ => {}
        }
        move_vms(&request.name, host, &moves, view).await?;
    }
    let finished = converge(
        &step(DrainStep::Finish),
        loaded,
        Goal::Converge,
        None,
        options,
        view,
    )
    .await;
    match finished {
        Err(Refusal::Declined) if !moves.is_empty() => Err(Refusal::Invalid(format!(
            "the VMs moved, and what plan `{}` has left on {host} stays: `plan apply` (or `plan \
             drain {host}` again) removes it",
            request.name
        ))),
        finished => finished,
    }
}

/// A running VM that could not move live (`live` says why): stopped where it is, moved
/// stopped, and started on its new host. A VM that was not running, or that cannot be
/// stopped, started or moved either way, is not moved (the error says why).
async fn stop_and_start(
    plan: &str,
    m: &Move,
    from: &dyn crate::provider::Provider,
    to: &dyn crate::provider::Provider,
    live: crate::provider::ProviderError,
    view: &dyn View,
) -> Result<MovedHow, String> {
    let owner = crate::provider::Owner::plan(plan);
    let scope = crate::provider::Scope {
        plan: plan.to_string(),
        ids: vec![crate::plan::model::spec::ResourceId::vm(&m.vm)],
    };
    let running = from
        .observe(&scope)
        .await
        .ok()
        .and_then(|o| {
            o.get(&crate::plan::model::spec::ResourceId::vm(&m.vm))
                .map(|r| r.active)
        })
        .unwrap_or(false);
    let (Some(here), Some(there), Some(placement), true) = (
        from.power_control(),
        to.power_control(),
        from.placement(),
        running,
    ) else {
        return Err(live.to_string());
    };
    view.event(Event::Warning(format!(
        "{} cannot move live ({live}): it is stopped on {}, moved stopped, and started on {}",
        m.vm, m.from, m.to
    )));
    here.power(&m.vm, Power::Stop { grace: None }, &owner)
        .await
        .map_err(|e| e.to_string())?;
    placement
        .migrate(&m.vm, &to.endpoint())
        .await
        .map_err(|e| format!("{e} (it is stopped there)"))?;
    there
        .power(&m.vm, Power::Start, &owner)
        .await
        .map_err(|e| format!("moved stopped, but not started on {}: {e}", m.to))?;
    Ok(MovedHow::Restarted)
}

/// Opens the provider `name` of the providers file.
async fn open(name: &str) -> Result<Arc<dyn crate::provider::Provider>, String> {
    let (file, _) = registry::config::load().map_err(|e| e.to_string())?;
    let config = file
        .provider(name)
        .cloned()
        .ok_or_else(|| format!("no provider `{name}`"))?;
    backends::open(&config.backend)
        .await
        .map_err(|e| e.to_string())
}

/// Moves each VM with libvirt's migration, one at a time (each copies its disks).
async fn move_vms(plan: &str, host: &str, moves: &[Move], view: &dyn View) -> Result<(), Refusal> {
    let from = open(host).await.map_err(Refusal::Invalid)?;
    let Some(placement) = from.placement() else {
        return Err(Refusal::Invalid(format!(
            "{host} ({}) moves no VM between hosts",
            from.kind()
        )));
    };
    let mut failed = Vec::new();
    for m in moves {
        let to = match open(&m.to).await {
            Ok(to) => to,
            Err(e) => {
                failed.push(format!("{}: {e}", m.vm));
                continue;
            }
        };
        let started = Instant::now();
        let how = match placement.migrate(&m.vm, &to.endpoint()).await {
            Ok(migrated) if migrated.live => Ok(MovedHow::Live),
            Ok(_) => Ok(MovedHow::Stopped),
            Err(live) => stop_and_start(plan, m, from.as_ref(), to.as_ref(), live, view).await,
        };
        match how {
            Ok(how) => view.event(Event::Moved {
                vm: &m.vm,
                from: &m.from,
                to: &m.to,
                how,
                took: started.elapsed(),
            }),
            Err(e) => failed.push(format!("{} stays on {host}: {e}", m.vm)),
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    // Room was made for them: not "nothing was changed".
    Err(Refusal::Invalid(format!(
        "{}. What was made for them on their new hosts stays until the next `plan apply` \
         (which removes it) or `plan drain {host}` again",
        failed.join("; ")
    )))
}
