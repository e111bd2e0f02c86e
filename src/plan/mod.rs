//! Plans: what must change for the providers to match the plan file, and why.
//!
//! `plan()` is a pure function of the desired state and the observed state: no I/O, so the same
//! inputs give the same plan, and it can be tested without a backend. Apply does exactly what
//! the plan's changes say.

pub mod digests;
pub mod intent;
pub mod model;
pub mod render;
pub mod saved;

mod follows;
mod guards;

use std::collections::BTreeMap;

use serde::Serialize;

pub use model::change::{Action, AttributeChange, Change};
use model::desired::{Desired, DesiredResource};
use model::rules::Rules;
use model::spec::{ResourceId, Spec};
use model::{Disruption, LiveResource, Observed};

#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub name: String,
    /// The file the plan is applied from, which apply records in every mark it writes.
    #[serde(skip)]
    pub source: Option<String>,
    pub changes: Vec<Change>,
    /// Resources already as declared.
    pub unchanged: usize,
}

impl Plan {
    pub fn count(&self, action: Action) -> usize {
        self.changes.iter().filter(|c| c.action == action).count()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// Which plan is planned, and from which file. Its name marks what it makes; the file tells
/// apart two plans that share a name (two labs' `site.yml`, or a `--name` given by mistake).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    /// The plan file it is applied from (`ops::request::plan_source`); `None` when no
    /// provider is asked (plan against plan).
    pub source: Option<String>,
    /// `--plan-moved`: what carries the plan's name is the plan's, whichever file it was
    /// applied from (the file was moved or renamed); the marks then record this one.
    pub moved: bool,
    /// `--adopt`: entries (by name or address) and resources (by address) that exist without
    /// any plan's mark and that this plan takes over as they are, changing only what differs
    /// from what it declares; `ADOPT_ALL` for all of them (`--adopt-all`).
    pub adopt: Vec<String>,
}

/// In `Identity::adopt`: every resource the plan declares (no entry is named `*`).
pub const ADOPT_ALL: &str = "*";

impl Identity {
    /// A plan known by its name alone (plan against plan, and tests).
    pub fn named(name: &str) -> Identity {
        Identity {
            name: name.to_string(),
            ..Identity::default()
        }
    }

    /// Whether the resource `id` of the plan's entry `entry` (`vm/web1`) is adopted.
    pub fn adopts(&self, entry: &str, id: &ResourceId) -> bool {
        let entry_name = entry.split_once('/').map_or(entry, |(_, name)| name);
        let address = id.to_string();
        self.adopt
            .iter()
            .any(|a| a == ADOPT_ALL || a == entry || a == entry_name || *a == address)
    }
}

/// Computes the changes that bring `observed` to `desired` for the plan `identity` names.
/// `rules` are the provider's: what a change costs there, and what only it knows.
pub fn plan(
    identity: &Identity,
    desired: &Desired,
    observed: &Observed,
    rules: &dyn Rules,
) -> Result<Plan, Vec<String>> {
    let name = identity.name.as_str();
    let mut problems = Vec::new();
    for id in &desired.external {
        if observed.get(id).is_none() {
            let mut problem = format!(
                "the plan uses {id}, which it does not declare and which does not exist on the provider"
            );
            if let Some(instead) = rules.instead_of(id) {
                problem.push_str(&format!(" ({instead})"));
            }
            problems.push(problem);
        }
    }
    for given in &desired.addresses_elsewhere {
        let live = observed.get(&ResourceId::network(&given.network));
        if let Some(LiveResource {
            spec:
                Spec::Network(model::spec::NetworkSpec {
                    cidr: Some(cidr), ..
                }),
            ..
        }) = live
        {
            if !cidr.contains(&given.ip) {
                problems.push(format!(
                    "vm {}: the static address {} is outside network/{} ({cidr}, as it is on \
                     the provider): the guest would not be reached there",
                    given.vm, given.ip, given.network
                ));
            }
        }
    }

    let mut changes = Vec::new();
    let mut unchanged = 0;
    for want in &desired.resources {
        let id = want.spec.id();
        let Some(live) = observed.get(&id) else {
            changes.push(Change {
                provider: None,
                attributes: attributes(None, Some(&want.spec), |_| Disruption::Live),
                id,
                entry: Some(want.entry.clone()),
                action: Action::Create,
                reason: None,
                disruption: None,
                drift: Vec::new(),
                claim: false,
                adopt: false,
                loses_data: false,
                pending_restart: Vec::new(),
                restart: None,
                reattach: Vec::new(),
                desired: Some(want.spec.clone()),
                live: None,
            });
            continue;
        };
        match &live.owner {
            Some(mark) if mark.plan == name => {}
            None if rules.leftover(live, &want.spec)
                && observed.unmarked_by_killed_run.contains(&id.to_string()) =>
            {
                let mut attrs = vec![owner_change(name)];
                attrs.extend(attributes(Some(&live.spec), Some(&want.spec), |_| {
                    Disruption::Live
                }));
                changes.push(Change {
                    provider: None,
                    id,
                    entry: Some(want.entry.clone()),
                    action: Action::Update,
                    attributes: attrs,
                    reason: Some(LEFTOVER.into()),
                    disruption: Some(Disruption::Live),
                    drift: Vec::new(),
                    claim: true,
                    adopt: false,
                    loses_data: false,
                    pending_restart: Vec::new(),
                    restart: None,
                    reattach: Vec::new(),
                    desired: Some(want.spec.clone()),
                    live: Some(live.spec.clone()),
                });
                continue;
            }
            Some(mark) => {
                problems.push(format!(
                    "{id} already exists and belongs to plan `{}`",
                    mark.plan
                ));
                continue;
            }
            // kcli's plan marks it as another plan's: adopting it would take it from that plan.
            None if observed
                .kcli_plans
                .get(&id)
                .is_some_and(|theirs| theirs != name) =>
            {
                let theirs = &observed.kcli_plans[&id];
                problems.push(format!(
                    "{id} belongs to kcli's plan `{theirs}`, and adopting never takes from \
                     another plan: adopt it with a plan of that name (--name {theirs}), or \
                     delete it with kcli's plan"
                ));
                continue;
            }
            // Adopted: planned as the plan's own, its mark written by the update.
            None if identity.adopts(&want.entry, &id) => {}
            None => {
                problems.push(format!(
                    "{id} already exists and was not created by siteplan; rename it in the \
                     plan, remove it, or let the plan adopt it as it is"
                ));
                continue;
            }
        }
        let adopting = live.owner.is_none();
        // An object another tool made is read back whole: only what the plan sets of it is
        // the plan's business.
        let adopted_object;
        let live = match (&live.spec, &want.spec) {
            (Spec::Object(have), Spec::Object(wanted)) if adopting => {
                let mut have = have.clone();
                have.fields
                    .retain(|path, _| wanted.fields.contains_key(path));
                adopted_object = LiveResource {
                    spec: Spec::Object(have),
                    ..live.clone()
                };
                &adopted_object
            }
            _ => live,
        };
        let drift = live
            .owner
            .as_ref()
            .map(|mark| attributes(Some(&mark.spec), Some(&live.spec), |_| Disruption::Live))
            .unwrap_or_default();
        let guards = desired.guards_of(&id);
        // `ignore_changes`: those attributes keep their live values in what is applied.
        let kept = rules.keep_ignored(&want.spec, &live.spec, &guards.ignore);
        if let Some(why) = rules.refusal(&live.spec, &kept) {
            problems.push(format!("{id}: {why}"));
            continue;
        }
        let mut attrs = attributes(Some(&live.spec), Some(&kept), |attr| {
            match rules.disruption(attr, &live.spec, &kept) {
                // A stopped VM takes the change when it next starts: nothing to restart.
                Disruption::Reboot if !live.active => Disruption::Live,
                other => other,
            }
        });
        // A network or pool that exists but is stopped (an interrupted run, or by hand) is started.
        if !live.active && rules.starts_when_stopped(id.kind) {
            attrs.push(AttributeChange {
                name: "active".into(),
                before: Some(false.into()),
                after: Some(true.into()),
                disruption: Disruption::Live,
            });
        }
        // A paused VM the plan says runs is resumed (a lab snapshot stopped half-way leaves
        // it so).
        if live.paused && want.spec.runs() {
            attrs.push(AttributeChange {
                name: "paused".into(),
                before: Some(true.into()),
                after: Some(false.into()),
                disruption: Disruption::Live,
            });
        }
        // The guard is recorded in the mark: a change to it is an update of the mark alone.
        if let Some(mark) = &live.owner {
            if mark.prevent_destroy != guards.prevent_destroy {
                attrs.push(AttributeChange {
                    name: "prevent_destroy".into(),
                    before: Some(mark.prevent_destroy.into()),
                    after: Some(guards.prevent_destroy.into()),
                    disruption: Disruption::Live,
                });
            }
        }
        let forced = desired.replace.contains(&id);
        if adopting {
            let replacing: Vec<&str> = attrs
                .iter()
                .filter(|a| a.disruption == Disruption::Replace)
                .map(|a| a.name.as_str())
                .collect();
            if forced || !replacing.is_empty() {
                problems.push(format!(
                    "{id} cannot be adopted as the plan declares it: {} differ{}, which only \
                     making it again would change, and adopting never deletes; declare it as \
                     it is",
                    if forced {
                        "a replace was asked for".to_string()
                    } else {
                        replacing.join(", ")
                    },
                    if forced || replacing.len() > 1 {
                        ""
                    } else {
                        "s"
                    }
                ));
                continue;
            }
            attrs.insert(0, owner_change(name));
        }
        let pending: Vec<AttributeChange> = live
            .pending_restart
            .iter()
            .map(|p| AttributeChange {
                name: p.attribute.clone(),
                before: p.running.clone(),
                after: p.defined.clone(),
                disruption: Disruption::Reboot,
            })
            .collect();
        if attrs.is_empty() && !forced {
            if pending.is_empty() {
                unchanged += 1;
            } else {
                changes.push(Change {
                    provider: None,
                    id,
                    entry: Some(want.entry.clone()),
                    action: Action::Restart,
                    attributes: Vec::new(),
                    reason: Some(WAITS_FOR_RESTART.into()),
                    disruption: Some(Disruption::Reboot),
                    drift,
                    claim: false,
                    adopt: false,
                    loses_data: false,
                    pending_restart: pending,
                    restart: None,
                    reattach: Vec::new(),
                    desired: Some(kept),
                    live: Some(live.spec.clone()),
                });
            }
            continue;
        }
        let worst = attrs.iter().map(|a| a.disruption).max();
        let paused_only = attrs.iter().all(|a| a.name == "paused");
        let (action, reason) = if worst == Some(Disruption::Replace) {
            let forcing: Vec<&str> = attrs
                .iter()
                .filter(|a| a.disruption == Disruption::Replace)
                .map(|a| a.name.as_str())
                .collect();
            (Action::Replace, Some(forces_replacement(&forcing)))
        } else if forced {
            (Action::Replace, Some(REPLACE_REQUESTED.to_string()))
        } else if adopting {
            (Action::Update, Some(ADOPTED.to_string()))
        } else if paused_only {
            (Action::Update, Some(PAUSED.to_string()))
        } else {
            (Action::Update, None)
        };
        let worst = if forced {
            Some(Disruption::Replace)
        } else {
            worst
        };
        // What is made again is made as the plan says, ignored attributes included.
        let applied = if action == Action::Replace {
            want.spec.clone()
        } else {
            kept
        };
        changes.push(Change {
            provider: None,
            id,
            entry: Some(want.entry.clone()),
            action,
            attributes: attrs,
            reason,
            disruption: worst,
            drift,
            claim: false,
            adopt: adopting,
            loses_data: false,
            pending_restart: if action == Action::Update {
                pending
            } else {
                Vec::new()
            },
            restart: None,
            reattach: Vec::new(),
            desired: Some(applied),
            live: Some(live.spec.clone()),
        });
    }

    // What this plan created and no longer declares goes.
    for (id, live) in observed.owned_by(name) {
        if desired.get(id).is_some() {
            continue;
        }
        changes.push(Change {
            provider: None,
            id: id.clone(),
            entry: None,
            action: Action::Delete,
            attributes: attributes(Some(&live.spec), None, |_| Disruption::Replace),
            reason: Some(if desired.destroying {
                DESTROYED.into()
            } else {
                NO_LONGER_DECLARED.into()
            }),
            disruption: Some(Disruption::Replace),
            drift: Vec::new(),
            claim: false,
            adopt: false,
            loses_data: false,
            pending_restart: Vec::new(),
            restart: None,
            reattach: Vec::new(),
            desired: None,
            live: Some(live.spec.clone()),
        });
    }
    // Leftovers of a killed run of this plan that it no longer wants (destroy).
    for spec in &desired.claimable {
        let id = spec.id();
        let Some(live) = observed.get(&id) else {
            continue;
        };
        if desired.get(&id).is_some()
            || live.owner.is_some()
            || !rules.leftover(live, spec)
            || !observed.unmarked_by_killed_run.contains(&id.to_string())
        {
            continue;
        }
        changes.push(Change {
            provider: None,
            id,
            entry: None,
            action: Action::Delete,
            attributes: vec![owner_change(name)],
            reason: Some(format!("{LEFTOVER}, then deleted")),
            disruption: Some(Disruption::Replace),
            drift: Vec::new(),
            claim: true,
            adopt: false,
            loses_data: false,
            pending_restart: Vec::new(),
            restart: None,
            reattach: Vec::new(),
            desired: None,
            live: Some(live.spec.clone()),
        });
    }

    follows::restarts_to_see(&mut changes, desired, observed, rules, &mut unchanged);
    follows::moves_with_networks(&mut changes, desired, observed, rules, &mut unchanged);
    problems.extend(guards::guard_problems(&changes, desired, observed, rules));
    problems.extend(applied_elsewhere(
        identity,
        &mut changes,
        desired,
        observed,
        &mut unchanged,
    ));
    for change in &mut changes {
        change.loses_data = matches!(change.action, Action::Delete | Action::Replace)
            && change
                .live
                .as_ref()
                .is_some_and(|live| rules.holds_data(live));
    }
    if problems.is_empty() {
        let mut plan = Plan {
            name: name.to_string(),
            source: identity.source.clone(),
            changes,
            unchanged,
        };
        digests::hide(&mut plan);
        Ok(plan)
    } else {
        Err(problems)
    }
}

const WAITS_FOR_RESTART: &str =
    "changed by an earlier apply; it runs with the left side until it restarts";
const NO_LONGER_DECLARED: &str = "created by this plan, no longer declared in it";
const DESTROYED: &str = "destroyed with the plan";

const REPLACE_REQUESTED: &str = "replacement requested with --replace";
const PAUSED: &str =
    "paused (a lab snapshot stopped half-way leaves it so, or a person did): apply resumes it";

/// Resources that carry the plan's name but were applied from another file: another lab whose
/// plan has the same name, which this run must not change or prune, unless the user says the
/// file was moved (`--plan-moved`), and then each mark is rewritten to record this file (an
/// update of the mark alone where nothing else changes). Marks that record no file (written
/// before siteplan recorded one) are taken as this file's.
fn applied_elsewhere(
    identity: &Identity,
    changes: &mut Vec<Change>,
    desired: &Desired,
    observed: &Observed,
    unchanged: &mut usize,
) -> Vec<String> {
    let Some(here) = &identity.source else {
        return Vec::new();
    };
    let mut elsewhere: BTreeMap<&str, Vec<&ResourceId>> = BTreeMap::new();
    for (id, live) in observed.owned_by(&identity.name) {
        if let Some(there) = live.owner.as_ref().and_then(|m| m.applied_from.as_deref()) {
            if there != here {
                elsewhere.entry(there).or_default().push(id);
            }
        }
    }
    if elsewhere.is_empty() {
        return Vec::new();
    }
    if !identity.moved {
        return elsewhere
            .into_iter()
            .map(|(there, ids)| {
                let deleting = changes
                    .iter()
                    .filter(|c| {
                        ids.contains(&&c.id) && matches!(c.action, Action::Delete | Action::Replace)
                    })
                    .count();
                let doing = if deleting > 0 {
                    format!("; this run would delete {deleting} of them")
                } else {
                    String::new()
                };
                format!(
                    "{} of plan `{}` {} applied from {there}, not from this file ({here}){doing}. \
                     If this file is that plan, moved or renamed, run again with --plan-moved \
                     (its marks then record this file); if it is another lab, give it a name \
                     of its own with --name",
                    list_ids(&ids),
                    identity.name,
                    if ids.len() == 1 { "was" } else { "were" },
                )
            })
            .collect();
    }
    for (there, ids) in elsewhere {
        for id in ids {
            let moved = AttributeChange {
                name: "applied_from".into(),
                before: Some(there.into()),
                after: Some(here.as_str().into()),
                disruption: model::Disruption::Live,
            };
            match changes.iter_mut().find(|c| &c.id == id) {
                // Made again or deleted: the new mark records this file anyway.
                Some(c) if matches!(c.action, Action::Replace | Action::Delete) => {}
                Some(c) => {
                    c.action = Action::Update;
                    c.attributes.push(moved);
                }
                None => {
                    let Some(resource) = desired.get(id) else {
                        continue;
                    };
                    *unchanged = unchanged.saturating_sub(1);
                    changes.push(follows::vm_follows(
                        resource,
                        observed,
                        moved,
                        "the plan file was moved (--plan-moved): its mark records this one".into(),
                        model::Disruption::Live,
                    ));
                }
            }
        }
    }
    Vec::new()
}

/// `a`, `a and b`, `a, b and 3 more`: resources named in one sentence.
fn list_ids(ids: &[&ResourceId]) -> String {
    let shown: Vec<String> = ids.iter().take(3).map(ToString::to_string).collect();
    match ids.len() {
        0 => String::new(),
        1 => shown[0].clone(),
        2 | 3 => format!(
            "{} and {}",
            shown[..shown.len() - 1].join(", "),
            shown[shown.len() - 1]
        ),
        n => format!("{} and {} more", shown.join(", "), n - 3),
    }
}

const ADOPTED: &str = "made outside siteplan: adopted as it is, marked as this plan's";

const LEFTOVER: &str =
    "exists empty and without a mark where the plan puts it, as a killed run leaves it: taken over";

fn owner_change(plan: &str) -> AttributeChange {
    AttributeChange {
        name: "owner".into(),
        before: None,
        after: Some(format!("plan {plan}").into()),
        disruption: Disruption::Live,
    }
}

/// What changes between two versions of a plan, as if `old` had been applied: no provider is
/// asked. References to things neither version declares are taken to exist.
pub fn between(
    name: &str,
    old: &Desired,
    new: &Desired,
    rules: &dyn Rules,
) -> Result<Plan, Vec<String>> {
    let identity = Identity::named(name);
    let mut applied = Observed::default();
    for r in &old.resources {
        applied.resources.insert(
            r.spec.id(),
            LiveResource {
                spec: r.spec.clone(),
                owner: Some(model::OwnerMark {
                    plan: name.to_string(),
                    spec: r.spec.clone(),
                    prevent_destroy: old.guards_of(&r.spec.id()).prevent_destroy,
                    created: None,
                    applied_from: None,
                    group: None,
                }),
                active: true,
                empty: None,
                pending_restart: Vec::new(),
                paused: false,
            },
        );
    }
    let new = Desired {
        external: Vec::new(),
        ..new.clone()
    };
    plan(&identity, &new, &applied, rules)
}

/// "`cidr` forces replacement", "`cidr` and `dhcp` force replacement".
fn forces_replacement(attributes: &[&str]) -> String {
    let quoted: Vec<String> = attributes.iter().map(|a| format!("`{a}`")).collect();
    match quoted.as_slice() {
        [one] => format!("{one} forces replacement"),
        [rest @ .., last] => format!("{} and {last} force replacement", rest.join(", ")),
        [] => "forces replacement".into(),
    }
}

/// The attributes that differ between two specs (either may be absent: create or delete).
pub fn attributes(
    before: Option<&Spec>,
    after: Option<&Spec>,
    cost: impl Fn(&str) -> Disruption,
) -> Vec<AttributeChange> {
    let fields = |s: Option<&Spec>| -> BTreeMap<String, serde_json::Value> {
        match s.map(serde_json::to_value) {
            Some(Ok(serde_json::Value::Object(map))) => {
                map.into_iter().filter(|(k, _)| k != "kind").collect()
            }
            _ => BTreeMap::new(),
        }
    };
    let (b, a) = (fields(before), fields(after));
    let mut names: Vec<&String> = b.keys().chain(a.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|n| b.get(*n) != a.get(*n))
        .map(|n| AttributeChange {
            name: n.clone(),
            before: b.get(n).cloned(),
            after: a.get(n).cloned(),
            disruption: cost(n),
        })
        .collect()
}

#[cfg(test)]
mod tests;
