//! The steps every operation on providers is made of: open the providers a plan uses, observe
//! them all at once, plan each part and merge the parts, apply each part within its provider's
//! limit, and read back the plan's VMs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::outcome::{Refusal, VmRow, VmState, Vms};
use super::view::{Event, View};
use crate::apply::{self, Report};
use crate::manifest::model::EntryKind;
use crate::manifest::Loaded;
use crate::plan::desired::{Desired, DesiredResource};
use crate::plan::intent::Intents;
use crate::plan::{self, saved, Action, Change, Plan};
use crate::provider::spec::{ResourceId, Spec};
use crate::provider::{backends, Observed, Provider, Scope};
use crate::registry;

/// What an operation wants of the providers: the plan's resources, or none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Make the providers hold what the plan declares (diff, apply).
    Converge,
    /// Delete what the plan created (destroy).
    Destroy,
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
struct Site {
    /// The provider's name in diffs, when the plan spans several.
    label: Option<String>,
    opened: Opened,
    desired: Desired,
}

/// A plan, split over the providers it uses, each one opened.
pub struct Session<'a> {
    pub name: String,
    loaded: &'a Loaded,
    goal: Goal,
    sites: Vec<Site>,
    /// `--target`: the entries in focus (with what they need, or for destroy what needs them).
    focus: Option<BTreeSet<String>>,
    /// Resource → the entry it comes from, for deciding what `--target` keeps.
    entries: BTreeMap<ResourceId, String>,
}

/// Opens the provider `choice` names (see `registry::choose`): the first that answers.
pub async fn open_provider(choice: Option<&str>) -> Result<Opened, String> {
    let mut last = String::from("no provider to try");
    for candidate in registry::choose(choice)? {
        match backends::open(&candidate.config).await {
            Ok(provider) => {
                return Ok(Opened {
                    provider,
                    parallelism: candidate.config.parallelism,
                    name: candidate.named.then(|| candidate.config.name.clone()),
                })
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

impl<'a> Session<'a> {
    /// Splits the plan's intents by provider (a VM's `client:`, else `request.provider`),
    /// opens each provider, has it lower its part into the resources it holds, and says where
    /// each part goes. `intents` is `None` when the plan cannot be read in full (destroy then
    /// works from the providers' marks alone).
    pub async fn open(
        loaded: &'a Loaded,
        intents: Option<&Intents>,
        goal: Goal,
        request: &super::Request,
        view: &dyn View,
    ) -> Result<Session<'a>, Refusal> {
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
                .map_err(|unknown| {
                    format!("--target names `{unknown}`, which is no entry of the plan")
                })?;
            Some(entries)
        };
        let parts = match intents {
            Some(intents) => intents.by_provider(),
            None => vec![(None, Intents::default())],
        };
        let spans = parts.len() > 1;
        let mut sites = Vec::new();
        for (client, part) in parts {
            // A VM's `client:` names a provider of the providers file; the rest go to
            // --provider.
            let choice = client.clone().or_else(|| request.provider.clone());
            let opened = open_provider(choice.as_deref()).await?;
            let provider = &opened.provider;
            let refused = provider
                .rules()
                .capabilities()
                .refusals(&part, opened.name.as_deref().unwrap_or(provider.kind()));
            if !refused.is_empty() {
                return Err(Refusal::Problems(refused));
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
            sites.push(Site {
                label,
                opened,
                desired,
            });
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
            loaded,
            goal,
            sites,
            focus,
            entries,
        })
    }

    /// Every provider at once: what each holds of the plan (its marks, and what it names).
    pub async fn observe(&self, view: &dyn View) -> Result<Vec<Observed>, Refusal> {
        let started = Instant::now();
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
            match plan::plan(&self.name, &site.desired, observed, rules) {
                Ok(mut p) => {
                    p.changes.retain(|c| self.in_focus(c));
                    for c in &mut p.changes {
                        c.provider = site.label.clone();
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
            Err(Refusal::Problems(problems))
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
    /// Ctrl-C starts nothing more and lets what runs finish.
    pub async fn apply(&self, parts: &[Plan], parallelism: usize, view: &dyn View) -> Report {
        let total = parts.iter().map(|p| p.changes.len()).sum();
        let progress = view.progress(total);
        let cancel = CancellationToken::new();
        let applying = self.sites.iter().zip(parts).map(|(site, part)| {
            let parallelism = parallelism.min(site.opened.parallelism.unwrap_or(usize::MAX));
            apply::apply_until(
                part,
                &site.desired,
                site.opened.provider.clone(),
                parallelism,
                progress.clone(),
                cancel.clone(),
            )
        });
        let applying = futures::future::join_all(applying);
        tokio::pin!(applying);
        let reports = loop {
            tokio::select! {
                reports = &mut applying => break reports,
                Ok(()) = tokio::signal::ctrl_c(), if !cancel.is_cancelled() => {
                    view.event(Event::Interrupted);
                    cancel.cancel();
                }
            }
        };
        drop(progress);
        Report {
            steps: reports.into_iter().flat_map(|r| r.steps).collect(),
        }
    }

    /// The plan's VMs; with `wait`, once every running VM has an address or the time is up.
    pub async fn vms(&self, wait: Option<Duration>, view: &dyn View) -> Vms {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut ticks = tokio::time::interval(Duration::from_secs(2));
        loop {
            ticks.tick().await;
            let mut rows = Vec::new();
            for site in &self.sites {
                rows.extend(self.vm_rows(site).await);
            }
            let pending: Vec<String> = rows
                .iter()
                .filter(|r| r.unreachable())
                .map(|r| r.name.clone())
                .collect();
            let out_of_time = deadline.is_none_or(|d| tokio::time::Instant::now() >= d);
            if pending.is_empty() || out_of_time {
                if wait.is_some() {
                    view.event(Event::Waited);
                }
                return Vms {
                    rows,
                    unreachable: if wait.is_some() { pending } else { Vec::new() },
                    waited: wait,
                };
            }
            view.event(Event::Waiting(&pending));
        }
    }

    async fn vm_rows(&self, site: &Site) -> Vec<VmRow> {
        let provider = site.opened.provider.as_ref();
        let shown = site
            .label
            .clone()
            .or_else(|| site.opened.name.clone())
            .unwrap_or_else(|| provider.kind().to_string());
        let vms: Vec<&str> = site
            .desired
            .resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Vm(vm) => Some(vm.name.as_str()),
                _ => None,
            })
            .collect();
        let scope = Scope {
            plan: String::new(),
            ids: vms.iter().map(|v| ResourceId::vm(v)).collect(),
        };
        let observed = provider.observe(&scope).await.unwrap_or_default();
        let names: Vec<String> = vms.iter().map(|v| v.to_string()).collect();
        let mut addresses = provider.addresses(&names).await.unwrap_or_default();
        vms.into_iter()
            .map(|vm| VmRow {
                name: vm.to_string(),
                provider: shown.clone(),
                state: match observed.get(&ResourceId::vm(vm)) {
                    Some(r) if r.active => VmState::Running,
                    Some(_) => VmState::Stopped,
                    None => VmState::Missing,
                },
                addresses: addresses.remove(vm).unwrap_or_default(),
                fixed: match self.loaded.manifest.get(vm).map(|e| &e.kind) {
                    Some(EntryKind::Vm(v)) => v
                        .nets
                        .iter()
                        .filter_map(|n| n.ip.as_ref())
                        .map(|ip| format!("{} (static)", ip.value))
                        .collect(),
                    _ => Vec::new(),
                },
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
                .ok_or_else(|| {
                    format!("--replace names `{name}`, which is no resource of the plan")
                })
        })
        .collect()
}
