//! What a VM does because of what happens beside it: it restarts to see what it reads only at
//! boot (a cloud-init seed made again), or moves with its networks when they are made again.

use super::*;

/// What a running VM reads only when it boots (its cloud-init seed) is made again: the VM
/// takes it at its next restart, and the plan says so (an update of the VM that needs a
/// reboot, unless the VM changes anyway).
pub(super) fn restarts_to_see(
    changes: &mut Vec<Change>,
    desired: &Desired,
    observed: &Observed,
    rules: &dyn Rules,
    unchanged: &mut usize,
) {
    let restarts: Vec<model::rules::RestartFor> = changes
        .iter()
        .filter(|c| c.action == Action::Replace)
        .flat_map(|c| rules.restart_to_see(c, desired))
        .collect();
    for restart in restarts {
        let id = restart.vm;
        let running = observed
            .get(&id)
            .is_some_and(|l| l.active && l.owner.is_some());
        let Some(vm) = desired.get(&id) else { continue };
        if !running {
            continue;
        }
        if let Some(waiting) = changes
            .iter_mut()
            .find(|c| c.id == id && c.action == Action::Restart)
        {
            waiting.action = Action::Update;
            waiting.attributes.push(restart.attribute);
            waiting.reason = Some(restart.reason);
            continue;
        }
        // A change of its own that is only the seed it records says why.
        if let Some(change) = changes.iter_mut().find(|c| c.id == id) {
            let only_the_seed = change.attributes.iter().all(|a| a.name == "seed_sha256");
            if change.action == Action::Update && change.reason.is_none() && only_the_seed {
                change.reason = Some(restart.reason);
            }
            continue;
        }
        *unchanged = unchanged.saturating_sub(1);
        changes.push(vm_follows(
            vm,
            observed,
            restart.attribute,
            restart.reason,
            Disruption::Reboot,
        ));
    }
}

/// An update of a resource (a running VM) that has no change of its own, made because a
/// resource it uses is made again (`restarts_to_see`, `moves_with_networks`), or because its
/// mark must record another file (`applied_elsewhere`).
pub(super) fn vm_follows(
    vm: &DesiredResource,
    observed: &Observed,
    attribute: AttributeChange,
    reason: String,
    disruption: Disruption,
) -> Change {
    let id = vm.spec.id();
    Change {
        provider: None,
        entry: Some(vm.entry.clone()),
        action: Action::Update,
        attributes: vec![attribute],
        reason: Some(reason),
        disruption: Some(disruption),
        drift: Vec::new(),
        claim: false,
        adopt: false,
        loses_data: false,
        pending_restart: Vec::new(),
        restart: None,
        reattach: Vec::new(),
        desired: Some(vm.spec.clone()),
        live: observed.get(&id).map(|l| l.spec.clone()),
        id,
    }
}

/// Running VMs with NICs on a network made again: each gets an update that moves them onto the
/// new one live (after it, as a VM comes after its networks). A VM replaced anyway, or off,
/// needs nothing: it joins the new network when it starts.
pub(super) fn moves_with_networks(
    changes: &mut Vec<Change>,
    desired: &Desired,
    observed: &Observed,
    rules: &dyn Rules,
    unchanged: &mut usize,
) {
    let moves: Vec<model::rules::MoveWith> = changes
        .iter()
        .filter(|c| c.action == Action::Replace)
        .flat_map(|c| rules.moved_with(c, desired))
        .collect();
    for mv in moves {
        let id = mv.vm.clone();
        let running = observed
            .get(&id)
            .is_some_and(|l| l.active && l.owner.is_some());
        let Some(vm) = desired.get(&id) else { continue };
        if !running {
            continue;
        }
        if let Some(change) = changes.iter_mut().find(|c| c.id == id) {
            match change.action {
                Action::Replace | Action::Delete | Action::Create => {}
                Action::Update | Action::Restart => {
                    // The move is said as an attribute beside the change's own; the reason
                    // is the move's only when the change has none of its own.
                    if change.attributes.is_empty() && change.reason.is_none() {
                        change.reason = Some(mv.reason);
                    }
                    change.action = Action::Update;
                    change.attributes.push(mv.attribute);
                    change.reattach.push(mv.network);
                }
            }
            continue;
        }
        *unchanged = unchanged.saturating_sub(1);
        let mut change = vm_follows(vm, observed, mv.attribute, mv.reason, Disruption::Live);
        change.reattach.push(mv.network);
        changes.push(change);
    }
}
