//! The steps every operation on providers is made of: open the providers a plan uses, observe
//! them all at once, plan each part and merge the parts, apply each part within its provider's
//! limit, and read back the plan's VMs.

use crate::provider::capability::{self, Capability};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::interrupt::Interruption;
use super::outcome::{Hint, Refusal, ShownAddress, VmRow, VmState, Vms};
use super::view::{Event, View};
use crate::apply::{self, Report};
use crate::manifest::Loaded;
use crate::plan::intent::{self, Intent, Intents, What};
use crate::plan::model::desired::{Desired, DesiredResource};
use crate::plan::model::spec::{ResourceId, Spec};
use crate::plan::{self, saved, Action, Change, Plan};
use crate::provider::{
    backends, Address, AddressQuery, AddressSource, Observed, Provider, Readiness, ReadinessQuery,
    Scope,
};
use crate::registry;

mod groups;
mod left_behind;
mod spanning;
pub use groups::Move;
pub use spanning::Span;
mod vms;
use vms::Guest;

/// What an operation wants of the providers: the plan's resources, or none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Make the providers hold what the plan declares (diff, apply).
    Converge,
    /// Delete what the plan created (destroy).
    Destroy,
}

/// What opening a session makes of a plan that cannot be read in full (a script it names is
/// gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Refused: nothing is planned from half a plan.
    Refuse,
    /// `plan destroy`: what goes is what the providers' marks say the plan created, with the
    /// guards recorded on each; said as a warning.
    DestroyByMarks,
    /// `plan unlock`: only the providers matter.
    ProvidersOnly,
}

/// A provider, opened.
pub struct Opened {
    pub provider: Arc<dyn Provider>,
    /// Its own limit on parallel changes, from the providers file.
    pub parallelism: Option<usize>,
    /// Its name in the providers file, if it is there.
    pub name: Option<String>,
}

/// The plan's resources on one provider.
pub(super) struct Site {
    /// The provider's name in diffs, when the plan spans several.
    pub(super) label: Option<String>,
    pub(super) opened: Opened,
    pub(super) desired: Desired,
    /// The part's VMs as their guests are configured, for showing their addresses.
    pub(super) guests: Vec<Guest>,
}

impl Site {
    /// How the site's provider is named in tables: its label, its name, else its type.
    pub(super) fn shown(&self) -> String {
        self.label
            .clone()
            .or_else(|| self.opened.name.clone())
            .unwrap_or_else(|| self.opened.provider.kind().to_string())
    }
}

/// A plan, split over the providers it uses, each one opened.
pub struct Session {
    pub name: String,
    /// The plan's name and the file it is applied from, for the planner.
    identity: plan::Identity,
    goal: Goal,
    pub(super) sites: Vec<Site>,
    /// `--target`: the entries in focus (with what they need, or for destroy what needs them).
    focus: Option<BTreeSet<String>>,
    /// Resource → the entry it comes from, for deciding what `--target` keeps.
    entries: BTreeMap<ResourceId, String>,
    /// `depends_on` edges between entries on different providers (`Intents::across_providers`):
    /// (the entry that comes after, the one it comes after).
    across: Vec<(String, String)>,
    /// The user said where the plan goes (`--provider`): nothing is chosen for them.
    told_where: bool,
    /// The hosts of the groups the plan goes to.
    pub(super) group_hosts: BTreeSet<String>,
    /// Why each VM placed anew on a group's host goes there, by VM.
    placed_why: BTreeMap<String, String>,
    /// The networks joined over a group's hosts (`spanning`).
    spans: Vec<Span>,
    /// The VMs that move off a host being drained, and where to.
    pub moves: Vec<Move>,
    /// The plan's entries as intents (none when it could not be read), for what operations
    /// show of them.
    pub items: Vec<Intent>,
}

/// Opens the provider `choice` names (see `registry::choose`), or says why it cannot: a
/// provider that does not answer is never replaced by another. `kcli_off`: the kcli
/// configuration's clients are not providers (`--no-kcli-config`).
pub async fn open_provider(choice: Option<&str>, kcli_off: bool) -> Result<Opened, Refusal> {
    let mut last = Refusal::Invalid("no provider to try".into());
    let candidates = registry::choose(choice, kcli_off)?;
    let unnamed_default = choice.is_none() && candidates.iter().all(|c| !c.named);
    for candidate in candidates {
        match backends::open(&candidate.config.backend).await {
            Ok(provider) => {
                return Ok(Opened {
                    provider,
                    parallelism: candidate.config.parallelism,
                    name: candidate.named.then(|| candidate.config.name.clone()),
                })
            }
            Err(e) if unnamed_default => {
                last = Refusal::Invalid(format!(
                    "the default provider, the local libvirt ({}), does not answer: {e}. \
                     Nothing is planned elsewhere in its place",
                    candidate.config.endpoint()
                ))
                .hint(vec![Hint::StartLibvirt])
            }
            Err(e) => last = Refusal::Invalid(e.to_string()),
        }
    }
    Err(last)
}

impl Session {
    /// Reads the plan's intents (the one place an operation does), splits them by provider (a
    /// VM's `client:`, else `request.provider`), opens each provider, has it lower its part
    /// into the resources it holds, and says where each part goes. A plan that cannot be read
    /// in full is refused.
    pub async fn open(
        loaded: &Loaded,
        goal: Goal,
        request: &super::Request,
        view: &dyn View,
    ) -> Result<Session, Refusal> {
        Session::open_unreadable(loaded, goal, request, view, Unreadable::Refuse).await
    }

    /// `open`, taking a plan that cannot be read in full as `unreadable` says.
    pub async fn open_unreadable(
        loaded: &Loaded,
        goal: Goal,
        request: &super::Request,
        view: &dyn View,
        unreadable: Unreadable,
    ) -> Result<Session, Refusal> {
        let intents = match intent::intents(&loaded.manifest, &request.name, &request.base) {
            Ok(intents) => Some(intents),
            Err(e) if unreadable == Unreadable::Refuse => return Err(Refusal::Invalid(e)),
            Err(e) => {
                if unreadable == Unreadable::DestroyByMarks {
                    view.event(Event::Warning(format!(
                        "{e}; destroying what the provider's marks say plan `{}` created, with \
                         the guards recorded on each resource",
                        request.name
                    )));
                }
                None
            }
        };
        let mut intents = intents;
        let groups = match intents.as_mut() {
            Some(intents) => groups::place(intents, request, goal, view).await?,
            None => groups::Groups::default(),
        };
        let intents = intents.as_ref();
        let focus = if request.targets.is_empty() {
            None
        } else {
            let towards = match goal {
                Goal::Converge => petgraph::Direction::Outgoing,
                Goal::Destroy => petgraph::Direction::Incoming,
            };
            let entries = loaded
                .graph
                .closure(&request.targets, towards)
                .map_err(|unknown| format!("the target `{unknown}` is no entry of the plan"))?;
            Some(entries)
        };
        let parts = match intents {
            Some(intents) => intents.by_provider(),
            None => vec![(None, Intents::default())],
        };
        let spans = parts.len() > 1 || groups.used;
        let mut sites = Vec::new();
        for (client, part) in parts {
            // A VM's `client:` names a provider of the providers file (its host, when it was
            // placed on a group); the rest go to --provider.
            let choice = groups.resolve(client.clone().or_else(|| request.provider.clone()));
            let opened = match choice.as_ref().and_then(|c| groups.opened.get(c)) {
                Some((provider, parallelism)) => Opened {
                    provider: provider.clone(),
                    parallelism: *parallelism,
                    name: choice.clone(),
                },
                None => open_provider(choice.as_deref(), request.overrides.no_kcli_config).await?,
            };
            let provider = &opened.provider;
            let refused = provider
                .rules()
                .capabilities()
                .refusals(&part, opened.name.as_deref().unwrap_or(provider.kind()));
            if !refused.is_empty() {
                return Err(Refusal::problems(refused));
            }
            // With no intents (the plan could not be read), the part is empty: nothing desired.
            let desired = provider.lower(&part)?;
            view.event(Event::Provider {
                name: opened.name.as_deref().filter(|n| *n != provider.kind()),
                kind: provider.kind(),
                endpoint: &provider.endpoint(),
            });
            let label = spans.then(|| {
                opened
                    .name
                    .clone()
                    .or(client)
                    .unwrap_or_else(|| provider.kind().to_string())
            });
            let desired = Desired {
                group: choice
                    .as_ref()
                    .and_then(|c| groups.group_of.get(c))
                    .cloned(),
                ..desired
            };
            sites.push(Site {
                label,
                opened,
                desired,
                guests: Guest::of(&part),
            });
        }
        groups.complete_sites(&mut sites, request, view);
        let spans = if goal == Goal::Converge && groups.used {
            spanning::join(&mut sites, &groups, &request.name)?
        } else {
            Vec::new()
        };
        for span in &spans {
            view.event(Event::Spanning(span));
        }
        // `--replace` names resources of any part.
        let all: Vec<&DesiredResource> = sites.iter().flat_map(|s| &s.desired.resources).collect();
        let replace = replacements(&all, &request.replace)?;
        let entries = all.iter().map(|r| (r.spec.id(), r.entry.clone())).collect();
        for site in &mut sites {
            let part = std::mem::take(&mut site.desired);
            site.desired = match (goal, &focus) {
                // Everything outside the targets stays as it is.
                (Goal::Destroy, Some(focus)) => part.without(focus),
                (Goal::Destroy, None) => part.nothing_but_leftovers(),
                (Goal::Converge, _) => part,
            };
            site.desired.replace = replace.clone();
        }
        if let Some(focus) = &focus {
            let entries: Vec<String> = focus.iter().cloned().collect();
            view.event(Event::Targeting(&entries));
        }
        Ok(Session {
            name: request.name.clone(),
            identity: plan::Identity {
                name: request.name.clone(),
                source: Some(request.source.clone()),
                moved: request.plan_moved,
                adopt: request.adopt.clone(),
            },
            goal,
            sites,
            focus,
            entries,
            across: intents.map(Intents::across_providers).unwrap_or_default(),
            told_where: request.provider.is_some(),
            group_hosts: groups.opened.keys().cloned().collect(),
            placed_why: groups.why.clone(),
            spans,
            moves: groups.moves.clone(),
            items: intents.map(|i| i.items.clone()).unwrap_or_default(),
        })
    }

    /// Refuses a plan that goes, by default (no `--provider`, no `client:`), to a provider that
    /// holds nothing of it, while another provider the user has holds it: the run would make
    /// the lab again there, and leave the one that exists. Providers are searched only then,
    /// all at once (each for as long as its health check may take, 5 s by default), and a
    /// sandbox only if it was ever made.
    pub async fn held_elsewhere(&self, observed: &[Observed]) -> Result<(), Refusal> {
        let ([site], [seen]) = (self.sites.as_slice(), observed) else {
            return Ok(());
        };
        let source = self.identity.source.clone();
        let ours = move |o: &Observed, name: &str| {
            o.owned_by(name)
                .filter(|(_, l)| {
                    let from = l.owner.as_ref().and_then(|m| m.applied_from.as_ref());
                    from.is_none() || from == source.as_ref()
                })
                .count()
        };
        if self.told_where || site.label.is_some() || ours(seen, &self.name) > 0 {
            return Ok(());
        }
        let here = site.opened.provider.endpoint();
        let (file, found) = registry::config::load()?;
        // As long as a health check may take: a provider that does not answer holds nothing.
        let bound = Duration::from_secs(file.health_timeout.unwrap_or(5));
        let candidates: Vec<_> = file
            .providers
            .into_iter()
            .filter(|p| p.enabled && p.endpoint() != here)
            .filter(|p| {
                // The default sandbox, only where it was made once.
                found != registry::config::Found::Defaults
                    || !matches!(p.backend, registry::config::Backend::Sandbox(_))
                    || std::path::Path::new(&p.endpoint())
                        .join("state.json")
                        .is_file()
            })
            .collect();
        let name = self.name.clone();
        let asking = candidates.into_iter().map(|config| {
            let name = name.clone();
            let ours = ours.clone();
            async move {
                let held = tokio::time::timeout(bound, async {
                    let provider = backends::open(&config.backend).await.ok()?;
                    let scope = Scope {
                        plan: name.clone(),
                        ids: Vec::new(),
                    };
                    let seen = provider.observe(&scope).await.ok()?;
                    Some(ours(&seen, &name))
                })
                .await
                .ok()
                .flatten()
                .unwrap_or(0);
                (config, held)
            }
        });
        let holders: Vec<(String, String)> = futures::future::join_all(asking)
            .await
            .into_iter()
            .filter(|(_, held)| *held > 0)
            .map(|(config, held)| {
                (
                    format!(
                        "provider `{}` ({}) holds {held} resource{} of it",
                        config.name,
                        config.endpoint(),
                        if held == 1 { "" } else { "s" }
                    ),
                    config.name.clone(),
                )
            })
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        let (held, elsewhere): (Vec<String>, Vec<String>) = holders.into_iter().unzip();
        let this = match (&site.opened.name, site.opened.provider.kind()) {
            (Some(name), _) => name.clone(),
            (None, "sandbox") => "sandbox".into(),
            (None, _) => here.clone(),
        };
        Err(Refusal::Invalid(format!(
            "plan `{}` goes by default to {} ({here}), which holds nothing of it, while {}: this \
             run would make the lab again where it is not",
            self.name,
            site.shown(),
            held.join(", and "),
        ))
        .hint(vec![Hint::WhereItGoes {
            elsewhere,
            here: this,
        }]))
    }

    /// The names of the plan's VMs, in every part.
    pub(super) fn vm_names(&self) -> Vec<String> {
        self.sites
            .iter()
            .flat_map(|s| s.guests.iter().map(|g| g.name.clone()))
            .collect()
    }

    /// Refuses names that are no VM of the plan, listing the plan's VMs.
    pub(super) fn known_vms(&self, names: &[String]) -> Result<(), Refusal> {
        let vms = self.vm_names();
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| !vms.contains(n))
            .map(|n| format!("`{n}`"))
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(Refusal::Invalid(format!(
            "{} {} no VM of plan `{}`; its VMs are: {}",
            unknown.join(", "),
            if unknown.len() == 1 { "is" } else { "are" },
            self.name,
            if vms.is_empty() {
                "none".to_string()
            } else {
                vms.join(", ")
            }
        )))
    }

    /// The part of the plan that holds VM `vm`, and its position among the parts.
    pub(super) fn site_of_vm(&self, vm: &str) -> Result<(usize, &Site), Refusal> {
        self.known_vms(&[vm.to_string()])?;
        self.sites
            .iter()
            .enumerate()
            .find(|(_, s)| s.guests.iter().any(|g| g.name == vm))
            .ok_or_else(|| Refusal::Invalid(format!("`{vm}` is no VM of plan `{}`", self.name)))
    }

    /// Every provider at once: what each holds of the plan (its marks, and what it names).
    pub async fn observe(&self, view: &dyn View) -> Result<Vec<Observed>, Refusal> {
        let started = Instant::now();
        if let Some(slow) = crate::provider::crashpoint::observe_slowdown() {
            tokio::time::sleep(slow).await;
        }
        let observing = self.sites.iter().map(|site| {
            let mut ids: Vec<_> = site.desired.resources.iter().map(|r| r.spec.id()).collect();
            ids.extend(site.desired.external.iter().cloned());
            ids.extend(site.desired.claimable.iter().map(Spec::id));
            let scope = Scope {
                plan: self.name.clone(),
                ids,
            };
            let provider = site.opened.provider.clone();
            async move { provider.observe(&scope).await }
        });
        let observed = futures::future::join_all(observing)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        view.event(Event::Observed {
            resources: observed.iter().map(|o| o.resources.len()).sum(),
            took: started.elapsed(),
        });
        Ok(observed)
    }

    /// Tells each site's observation what a dead run of the plan left without a mark there
    /// (from its lock, `unmarked[i]` for site `i`): what may be taken over.
    pub fn note_killed_runs(observed: &mut [Observed], unmarked: &[Vec<String>]) {
        for (seen, unmarked) in observed.iter_mut().zip(unmarked) {
            seen.unmarked_by_killed_run.extend(unmarked.iter().cloned());
        }
    }

    /// What the providers held, as one fingerprint (for saved plans).
    pub fn fingerprint(&self, observed: &[Observed]) -> String {
        if let [only] = observed {
            return saved::live_fingerprint(only);
        }
        let each: Vec<String> = self
            .sites
            .iter()
            .zip(observed)
            .map(|(s, o)| format!("{:?}={}", s.label, saved::live_fingerprint(o)))
            .collect();
        saved::source_fingerprint(&each.join("\n"))
    }

    /// Plans each part against what its provider holds, and merges them into one plan.
    /// Parts are kept in the same order as the sites, for `apply`.
    pub fn plan(&self, observed: &[Observed]) -> Result<Vec<Plan>, Refusal> {
        let mut plans = Vec::new();
        let mut problems = Vec::new();
        for (site, observed) in self.sites.iter().zip(observed) {
            let rules = site.opened.provider.rules();
            match plan::plan(&self.identity, &site.desired, observed, rules) {
                Ok(mut p) => {
                    p.changes.retain(|c| self.in_focus(c));
                    for c in &mut p.changes {
                        c.provider = site.label.clone();
                        // A VM made on a group's host says why there, for the review.
                        if c.action == Action::Create && c.id.kind.is_vm() {
                            c.reason = c
                                .reason
                                .take()
                                .or_else(|| self.placed_why.get(&c.id.name).cloned());
                        }
                    }
                    plans.push(p);
                }
                Err(found) => problems.extend(found.into_iter().map(|p| match &site.label {
                    Some(label) => format!("{label}: {p}"),
                    None => p,
                })),
            }
        }
        if problems.is_empty() {
            Ok(plans)
        } else {
            Err(Refusal::problems(problems))
        }
    }

    /// Keeps the networks this run would delete that VMs it does not delete are attached to
    /// (another plan's, or made by hand): each such delete is taken out of the plan and said
    /// as a warning naming those VMs. The network keeps the plan's mark, so a later destroy
    /// deletes it once nothing else uses it. `parts` are the sites' plans, in order.
    pub async fn keep_networks_in_use(&self, parts: &mut [Plan], view: &dyn View) {
        for (site, part) in self.sites.iter().zip(parts.iter_mut()) {
            let going: Vec<ResourceId> = part
                .changes
                .iter()
                .filter(|c| c.action == Action::Delete && c.id.kind.is_network())
                .map(|c| c.id.clone())
                .collect();
            if going.is_empty() {
                continue;
            }
            let names: Vec<String> = going.iter().map(|id| id.name.clone()).collect();
            let provider = site.opened.provider.as_ref();
            let users =
                match capability::require(provider.inventory(), provider, Capability::Inventory) {
                    Ok(inventory) => inventory.network_users(&names).await,
                    Err(e) => Err(e),
                };
            let users = match users {
                Ok(users) => users,
                Err(e) => {
                    view.event(Event::Warning(format!(
                        "{}: {e}; the networks this run deletes were not checked for VMs of \
                         others",
                        site.shown()
                    )));
                    continue;
                }
            };
            // A VM leaves the network in this run when it is deleted, made again without it,
            // or moved off it live (a move that waits for a restart leaves it running there).
            let leaves = |vm: &str, network: &str| {
                part.changes.iter().any(|c| {
                    let a_vm = c.id.kind.is_vm();
                    if !a_vm || c.id.name != vm {
                        return false;
                    }
                    let off = match &c.desired {
                        Some(Spec::Vm(spec)) => !spec.nics.iter().any(|n| n.network == network),
                        _ => false,
                    };
                    let live = c.attributes.iter().any(|a| {
                        a.name == "nics" && a.disruption == crate::provider::Disruption::Live
                    });
                    match c.action {
                        Action::Delete => true,
                        Action::Replace => off,
                        Action::Update => off && live,
                        Action::Create | Action::Restart => false,
                    }
                })
            };
            let mut kept = Vec::new();
            for id in going {
                let network = id.name.as_str();
                let others: Vec<String> = users
                    .iter()
                    .filter(|u| u.network == network && !leaves(&u.vm, network))
                    .map(|u| {
                        let whose = match &u.plan {
                            Some(plan) => format!("plan `{plan}`"),
                            None => "made outside any plan".into(),
                        };
                        let state = if u.running { "running" } else { "stopped" };
                        format!("vm/{} ({whose}, {state})", u.vm)
                    })
                    .collect();
                if !others.is_empty() {
                    view.event(Event::Warning(format!(
                        "{id}{} is kept, not deleted: {} {} attached to it. It keeps plan `{}`'s \
                         mark, and is deleted with the plan once nothing else uses it",
                        site.label
                            .as_ref()
                            .map(|l| format!(" on {l}"))
                            .unwrap_or_default(),
                        others.join(", "),
                        if others.len() == 1 { "is" } else { "are" },
                        self.name
                    )));
                    kept.push(id);
                }
            }
            part.changes
                .retain(|c| !(c.action == Action::Delete && kept.contains(&c.id)));
        }
    }

    /// Whether `--target` keeps a change: one of the targeted entries' (for destroy, only
    /// their deletes).
    fn in_focus(&self, change: &Change) -> bool {
        let Some(focus) = &self.focus else {
            return true;
        };
        let entry = change
            .entry
            .as_ref()
            .or_else(|| self.entries.get(&change.id));
        entry.is_some_and(|e| focus.contains(e))
            && (self.goal == Goal::Converge || change.action == Action::Delete)
    }

    /// Applies each part on its provider, all providers at once, each within its own limit; a
    /// failure on one stops nothing on the others (no resource on one depends on another's).
    /// A signal (`interruption`) starts nothing more and lets what runs finish.
    pub async fn apply(
        &self,
        parts: &[Plan],
        parallelism: usize,
        interruption: &Interruption,
        view: &dyn View,
    ) -> Report {
        let total = parts.iter().map(|p| p.changes.len()).sum();
        let progress = view.progress(total);
        let cancel = interruption.token().clone();
        let links = self.links(parts);
        let applying = self
            .sites
            .iter()
            .zip(parts)
            .zip(links)
            .map(|((site, part), links)| {
                let parallelism = parallelism.min(site.opened.parallelism.unwrap_or(usize::MAX));
                apply::apply_until(
                    part,
                    &site.desired,
                    site.opened.provider.clone(),
                    parallelism,
                    progress.clone(),
                    cancel.clone(),
                    links,
                )
            });
        let applying = futures::future::join_all(applying);
        tokio::pin!(applying);
        let mut told = false;
        let reports = loop {
            tokio::select! {
                reports = &mut applying => break reports,
                () = cancel.cancelled(), if !told => {
                    told = true;
                    if let Some(signal) = interruption.signal() {
                        view.event(Event::Interrupted(signal));
                    }
                }
            }
        };
        drop(progress);
        Report {
            steps: reports.into_iter().flat_map(|r| r.steps).collect(),
        }
    }

    /// For each part, what its changes wait for on other providers and report to them
    /// (`apply::across`): a change of an entry that `depends_on` one elsewhere waits for that
    /// entry's changes; deleting, an entry waits for the deletes of those that depend on it.
    fn links(&self, parts: &[Plan]) -> Vec<apply::across::Links> {
        if self.across.is_empty() {
            return vec![apply::across::Links::default(); parts.len()];
        }
        let entry_of = |c: &Change| c.entry.clone().or_else(|| self.entries.get(&c.id).cloned());
        // Deletes and stops go in the reverse order; on the board, such a change is known by
        // its entry with a `-`.
        let reversed = |c: &Change| {
            c.action == Action::Delete
                || matches!(c.restart, Some(crate::provider::Power::Stop { .. }))
        };
        let key = |c: &Change| entry_of(c).map(|e| if reversed(c) { format!("-{e}") } else { e });
        let waits_of = |c: &Change| -> Vec<String> {
            let Some(entry) = entry_of(c) else {
                return Vec::new();
            };
            // As `depends_on` orders within a provider: the entry's own resource (the VM)
            // waits, not what it is made of (its disks).
            if entry.split_once('/').map(|(_, name)| name) != Some(c.id.name.as_str()) {
                return Vec::new();
            }
            self.across
                .iter()
                .filter_map(|(after, before)| {
                    if reversed(c) {
                        (*before == entry).then(|| format!("-{after}"))
                    } else {
                        (*after == entry).then(|| before.clone())
                    }
                })
                .collect()
        };
        let waited: BTreeSet<String> = parts
            .iter()
            .flat_map(|p| p.changes.iter().flat_map(waits_of))
            .collect();
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for c in parts.iter().flat_map(|p| &p.changes) {
            if let Some(k) = key(c).filter(|k| waited.contains(k)) {
                *counts.entry(k).or_default() += 1;
            }
        }
        let board = Arc::new(apply::across::Board::new(counts));
        parts
            .iter()
            .map(|part| apply::across::Links {
                board: board.clone(),
                entry_of: part.changes.iter().map(key).collect(),
                waits: part.changes.iter().map(waits_of).collect(),
            })
            .collect()
    }
}

/// `--replace` names: an address (`vm/web1`, `volume/default/web1_0.img`) or an entry's name,
/// which means the resource named after it.
fn replacements(
    resources: &[&DesiredResource],
    names: &[String],
) -> Result<Vec<ResourceId>, String> {
    names
        .iter()
        .map(|name| {
            resources
                .iter()
                .map(|r| r.spec.id())
                .find(|id| id.to_string() == *name)
                .or_else(|| {
                    resources
                        .iter()
                        .find(|r| {
                            r.spec.id().name == *name && r.entry.ends_with(&format!("/{name}"))
                        })
                        .map(|r| r.spec.id())
                })
                .ok_or_else(|| format!("`{name}`, to be replaced, is no resource of the plan"))
        })
        .collect()
}
