//! The steps every operation on providers is made of: open the providers a plan uses, observe
//! them all at once, plan each part and merge the parts, apply each part within its provider's
//! limit, and read back the plan's VMs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::interrupt::Interruption;
use super::outcome::{Refusal, ShownAddress, VmRow, VmState, Vms};
use super::view::{Event, View};
use crate::apply::{self, Report};
use crate::manifest::Loaded;
use crate::plan::intent::{Intents, What};
use crate::plan::model::desired::{Desired, DesiredResource};
use crate::plan::model::spec::{ResourceId, ResourceKind, Spec};
use crate::plan::{self, saved, Action, Change, Plan};
use crate::provider::{
    backends, Address, AddressQuery, AddressSource, Observed, Provider, Readiness, ReadinessQuery,
    Scope,
};
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

/// What the plan configures in a VM's guest that tells where it can be reached.
pub(super) struct Guest {
    pub(super) name: String,
    /// Each NIC's MAC, and its static address if the guest is given one.
    nics: Vec<(String, Option<IpAddr>)>,
    agent: bool,
    /// It has a cloud-init seed: it is ready once cloud-init has run it.
    seeded: bool,
    /// kcli's `waitcommand`: it is ready once this succeeds in the guest.
    wait_command: Option<String>,
}

impl Guest {
    fn of(part: &Intents) -> Vec<Guest> {
        part.items
            .iter()
            .filter_map(|item| match &item.what {
                What::Vm(vm) => Some(Guest {
                    name: item.name.clone(),
                    nics: vm
                        .nics
                        .iter()
                        .map(|n| (n.mac.to_ascii_lowercase(), n.address.map(|(ip, _)| ip)))
                        .collect(),
                    agent: vm.guest_agent,
                    seeded: vm.cloud_init.is_some(),
                    wait_command: vm.wait_command.clone(),
                }),
                _ => None,
            })
            .collect()
    }

    fn query(&self) -> AddressQuery {
        AddressQuery {
            vm: self.name.clone(),
            static_macs: self
                .nics
                .iter()
                .filter(|(_, ip)| ip.is_some())
                .map(|(mac, _)| mac.clone())
                .collect(),
            agent: self.agent,
        }
    }

    /// The plan's static addresses and the reported ones, each address once with all its
    /// sources. A lease held by a NIC the guest configures statically is left out: it is an
    /// old one (the guest asks for none), and would say the VM is where it is not.
    fn addresses(&self, reported: Vec<Address>) -> Vec<ShownAddress> {
        let mut by_ip: BTreeMap<IpAddr, BTreeSet<AddressSource>> = BTreeMap::new();
        for (_, ip) in &self.nics {
            if let Some(ip) = ip {
                by_ip.entry(*ip).or_default().insert(AddressSource::Static);
            }
        }
        for address in reported {
            let stale_lease = address.source == AddressSource::Lease
                && address.mac.as_ref().is_some_and(|mac| {
                    self.nics
                        .iter()
                        .any(|(m, ip)| ip.is_some() && m.eq_ignore_ascii_case(mac))
                });
            if address.reachable() && !stale_lease {
                by_ip.entry(address.ip).or_default().insert(address.source);
            }
        }
        by_ip
            .into_iter()
            .map(|(ip, sources)| ShownAddress {
                ip,
                sources: sources.into_iter().collect(),
            })
            .collect()
    }

    /// Whether a running guest's address is still to come: a static address that its agent
    /// (when the provider can hear it) has not reported yet, or no address at all.
    fn waiting(&self, shown: &[ShownAddress], hears_agents: bool) -> bool {
        let has = |ip: &IpAddr, source| {
            shown
                .iter()
                .any(|a| a.ip == *ip && a.sources.contains(&source))
        };
        let statics: Vec<IpAddr> = self.nics.iter().filter_map(|(_, ip)| *ip).collect();
        if statics.is_empty() {
            return !shown
                .iter()
                .any(|a| a.sources.iter().any(|s| *s != AddressSource::Static));
        }
        self.agent && hears_agents && !statics.iter().all(|ip| has(ip, AddressSource::Agent))
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
}

/// Opens the provider `choice` names (see `registry::choose`), or says why it cannot: a
/// provider that does not answer is never replaced by another.
pub async fn open_provider(choice: Option<&str>) -> Result<Opened, String> {
    let mut last = String::from("no provider to try");
    let candidates = registry::choose(choice)?;
    let unnamed_default = choice.is_none() && candidates.iter().all(|c| !c.named);
    for candidate in candidates {
        match backends::open(&candidate.config).await {
            Ok(provider) => {
                return Ok(Opened {
                    provider,
                    parallelism: candidate.config.parallelism,
                    name: candidate.named.then(|| candidate.config.name.clone()),
                })
            }
            Err(e) if unnamed_default => {
                last = format!(
                    "the default provider, the local libvirt ({}), does not answer: {e}. \
                     Nothing is planned elsewhere in its place: start libvirtd, or say where \
                     the plan goes with --provider (`sandbox` for the embedded sandbox, a \
                     libvirt URI, or a name from the providers file)",
                    candidate.config.endpoint()
                )
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

impl Session {
    /// Splits the plan's intents by provider (a VM's `client:`, else `request.provider`),
    /// opens each provider, has it lower its part into the resources it holds, and says where
    /// each part goes. `intents` is `None` when the plan cannot be read in full (destroy then
    /// works from the providers' marks alone).
    pub async fn open(
        loaded: &Loaded,
        intents: Option<&Intents>,
        goal: Goal,
        request: &super::Request,
        view: &dyn View,
    ) -> Result<Session, Refusal> {
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
                guests: Guest::of(&part),
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
            identity: plan::Identity {
                name: request.name.clone(),
                source: Some(request.source.clone()),
                moved: request.plan_moved,
            },
            goal,
            sites,
            focus,
            entries,
            across: intents.map(Intents::across_providers).unwrap_or_default(),
            told_where: request.provider.is_some(),
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
                    let provider = backends::open(&config).await.ok()?;
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
                    format!("`--provider {}`", config.name),
                )
            })
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        let (held, flags): (Vec<String>, Vec<String>) = holders.into_iter().unzip();
        let this = match (&site.opened.name, site.opened.provider.kind()) {
            (Some(name), _) => name.clone(),
            (None, "sandbox") => "sandbox".into(),
            (None, _) => here.clone(),
        };
        Err(Refusal::Invalid(format!(
            "plan `{}` goes by default to {} ({here}), which holds nothing of it, while {}: this \
             run would make the lab again where it is not. Say where it goes: {} to work on it \
             where it is, or `--provider {this}` to make it here too",
            self.name,
            site.shown(),
            held.join(", and "),
            flags.join(" or "),
        )))
    }

    /// For `destroy`: what the plan left on providers it no longer names (a VM's `client:`
    /// removed, another default provider). Every enabled provider of the providers file is
    /// searched for the plan's marks (at most 10 s each); each that holds any joins the run as
    /// a part of its own, said first, so that destroy lists and deletes what is there too. With
    /// no providers file there is nothing more to search.
    pub async fn add_providers_left_behind(&mut self, view: &dyn View) {
        let Ok((file, registry::config::Found::File(_))) = registry::config::load() else {
            return;
        };
        let searched: Vec<_> = file
            .providers
            .into_iter()
            .filter(|p| p.enabled)
            .filter(|p| {
                !self.sites.iter().any(|s| {
                    s.opened.name.as_deref() == Some(p.name.as_str())
                        || s.opened.provider.endpoint() == p.endpoint()
                })
            })
            .collect();
        let plan = self.name.clone();
        let asking = searched.into_iter().map(|config| {
            let plan = plan.clone();
            async move {
                let found = tokio::time::timeout(Duration::from_secs(10), async {
                    let provider = backends::open(&config).await?;
                    let scope = Scope {
                        plan: plan.clone(),
                        ids: Vec::new(),
                    };
                    let held = provider.observe(&scope).await?.owned_by(&plan).count();
                    Ok::<_, crate::provider::ProviderError>((provider, held))
                })
                .await;
                (config, found)
            }
        });
        let mut added = false;
        for (config, found) in futures::future::join_all(asking).await {
            match found {
                Ok(Ok((_, 0))) => {}
                Ok(Ok((provider, held))) => {
                    view.event(Event::Warning(format!(
                        "provider `{}` holds {held} resource{} of plan `{plan}`, though the \
                         plan no longer names it: destroyed with the rest",
                        config.name,
                        if held == 1 { "" } else { "s" }
                    )));
                    self.sites.push(Site {
                        label: Some(config.name.clone()),
                        opened: Opened {
                            provider,
                            parallelism: config.parallelism,
                            name: Some(config.name.clone()),
                        },
                        desired: Desired::default().nothing_but_leftovers(),
                        guests: Vec::new(),
                    });
                    added = true;
                }
                Ok(Err(e)) => view.event(Event::Warning(format!(
                    "provider `{}` could not be searched for what plan `{plan}` left there: {e}",
                    config.name
                ))),
                Err(_) => view.event(Event::Warning(format!(
                    "provider `{}` could not be searched for what plan `{plan}` left there: no \
                     answer within 10 s",
                    config.name
                ))),
            }
        }
        // Several parts: each change says on which provider it is.
        if added {
            for site in &mut self.sites {
                if site.label.is_none() {
                    site.label = Some(site.shown());
                }
            }
        }
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

    /// Keeps the networks this run would delete that VMs it does not delete are attached to
    /// (another plan's, or made by hand): each such delete is taken out of the plan and said
    /// as a warning naming those VMs. The network keeps the plan's mark, so a later destroy
    /// deletes it once nothing else uses it. `parts` are the sites' plans, in order.
    pub async fn keep_networks_in_use(&self, parts: &mut [Plan], view: &dyn View) {
        for (site, part) in self.sites.iter().zip(parts.iter_mut()) {
            let networks = |kind: ResourceKind| {
                matches!(
                    kind,
                    ResourceKind::Network | ResourceKind::NetworkAttachmentDefinition
                )
            };
            let going: Vec<ResourceId> = part
                .changes
                .iter()
                .filter(|c| c.action == Action::Delete && networks(c.id.kind))
                .map(|c| c.id.clone())
                .collect();
            if going.is_empty() {
                continue;
            }
            let names: Vec<String> = going.iter().map(|id| id.name.clone()).collect();
            let users = match site.opened.provider.network_users(&names).await {
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
                    let a_vm = matches!(c.id.kind, ResourceKind::Vm | ResourceKind::VirtualMachine);
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

    /// The plan's VMs; with `wait`, once every running VM has an address, the time is up,
    /// or `stop` is cancelled.
    pub async fn vms(
        &self,
        wait: Option<Duration>,
        stop: Option<&Interruption>,
        view: &dyn View,
    ) -> Vms {
        let deadline = wait.map(|w| tokio::time::Instant::now() + w);
        let mut ticks = tokio::time::interval(Duration::from_secs(2));
        let stopped = || stop.is_some_and(|s| s.signal().is_some());
        loop {
            match stop {
                Some(stop) => tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop.token().cancelled() => {}
                },
                None => {
                    ticks.tick().await;
                }
            }
            let mut rows = Vec::new();
            for site in &self.sites {
                rows.extend(self.vm_rows(site).await);
            }
            let pending: Vec<String> = rows
                .iter()
                .filter(|r| r.waiting)
                .map(|r| r.name.clone())
                .collect();
            let out_of_time =
                deadline.is_none_or(|d| tokio::time::Instant::now() >= d) || stopped();
            if pending.is_empty() || out_of_time {
                if wait.is_none() {
                    return Vms {
                        rows,
                        waited: wait,
                        ..Vms::default()
                    };
                }
                view.event(Event::Waited);
                let (mut unreachable, mut unready, mut failed) =
                    (Vec::new(), Vec::new(), Vec::new());
                for row in &rows {
                    match &row.ready {
                        Some(Readiness::Failed { errors, log }) => {
                            failed.push((row.name.clone(), errors.clone(), log.clone()));
                        }
                        _ if !row.waiting => {}
                        Some(Readiness::Pending(why)) if !row.addresses.is_empty() => {
                            unready.push((row.name.clone(), why.clone()));
                        }
                        _ => unreachable.push(row.name.clone()),
                    }
                }
                return Vms {
                    rows,
                    unreachable,
                    unready,
                    failed,
                    waited: wait,
                };
            }
            view.event(Event::Waiting(&pending));
        }
    }

    async fn vm_rows(&self, site: &Site) -> Vec<VmRow> {
        let provider = site.opened.provider.as_ref();
        let scope = Scope {
            plan: String::new(),
            ids: site
                .guests
                .iter()
                .map(|g| ResourceId::vm(&g.name))
                .collect(),
        };
        let observed = provider.observe(&scope).await.unwrap_or_default();
        self.rows_seen(site, &observed).await
    }

    /// The plan's VMs, from what the providers were seen holding (`observe`): only their
    /// addresses are asked for.
    pub async fn vms_seen(&self, observed: &[Observed]) -> Vec<VmRow> {
        let mut rows = Vec::new();
        for (site, observed) in self.sites.iter().zip(observed) {
            rows.extend(self.rows_seen(site, observed).await);
        }
        rows
    }

    async fn rows_seen(&self, site: &Site, observed: &Observed) -> Vec<VmRow> {
        let provider = site.opened.provider.as_ref();
        let shown = site.shown();
        let queries: Vec<AddressQuery> = site.guests.iter().map(Guest::query).collect();
        let mut reported = provider.addresses(&queries).await.unwrap_or_default();
        let ready_when: Vec<ReadinessQuery> = site
            .guests
            .iter()
            // Readiness is read through the guest agent: what cloud-init was given has run,
            // and the plan's `waitcommand` succeeds.
            .filter(|g| g.agent && (g.seeded || g.wait_command.is_some()))
            .map(|g| ReadinessQuery {
                vm: g.name.clone(),
                cloud_init: g.seeded,
                command: g.wait_command.clone(),
            })
            .collect();
        let mut readiness = provider.readiness(&ready_when).await.unwrap_or_default();
        site.guests
            .iter()
            .map(|guest| {
                // A domain, or (KubeVirt) a VirtualMachine object.
                let live = observed.get(&ResourceId::vm(&guest.name)).or_else(|| {
                    observed.get(&ResourceId::object(
                        ResourceKind::VirtualMachine,
                        &guest.name,
                    ))
                });
                let state = match live {
                    Some(r) if r.paused => VmState::Paused,
                    Some(r) if r.active => VmState::Running,
                    Some(_) => VmState::Stopped,
                    None => VmState::Missing,
                };
                // Only a running VM has an address: the plan's static one would name, for a
                // VM that is off or gone, an address that nobody in the lab holds now.
                let reported = reported.remove(&guest.name).unwrap_or_default();
                let addresses = if state == VmState::Running {
                    guest.addresses(reported)
                } else {
                    Vec::new()
                };
                let ready = if state == VmState::Running {
                    readiness.remove(&guest.name)
                } else {
                    None
                };
                VmRow {
                    name: guest.name.clone(),
                    provider: shown.clone(),
                    state,
                    waiting: state == VmState::Running
                        && (guest.waiting(&addresses, provider.hears_guest_agents())
                            || matches!(ready, Some(Readiness::Pending(_)))),
                    addresses,
                    ready,
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    const STATIC_MAC: &str = "52:54:00:00:00:01";
    const DHCP_MAC: &str = "52:54:00:00:00:02";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn reported(address: &str, mac: &str, source: AddressSource) -> Address {
        Address {
            ip: ip(address),
            mac: Some(mac.into()),
            source,
        }
    }

    fn guest(static_ip: Option<&str>, agent: bool) -> Guest {
        Guest {
            name: "web1".into(),
            nics: vec![(
                if static_ip.is_some() {
                    STATIC_MAC
                } else {
                    DHCP_MAC
                }
                .into(),
                static_ip.map(ip),
            )],
            agent,
            seeded: true,
            wait_command: None,
        }
    }

    fn shown(list: &[ShownAddress]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn a_static_address_is_shown_as_static_and_a_stale_lease_on_its_nic_is_not() {
        let g = guest(Some("10.0.0.10"), true);
        let list = g.addresses(vec![
            reported("10.0.0.57", STATIC_MAC, AddressSource::Lease),
            reported("10.0.0.10", STATIC_MAC, AddressSource::Agent),
            reported("fe80::1", STATIC_MAC, AddressSource::Agent),
        ]);
        assert_eq!(shown(&list), ["10.0.0.10 (static, agent)"]);
        assert!(!g.waiting(&list, true));
    }

    #[test]
    fn a_static_address_waits_for_the_agent_only_where_the_agent_can_answer() {
        let g = guest(Some("10.0.0.10"), true);
        let list = g.addresses(Vec::new());
        assert_eq!(shown(&list), ["10.0.0.10 (static)"]);
        assert!(
            g.waiting(&list, true),
            "the agent could confirm it, and has not"
        );
        assert!(!g.waiting(&list, false), "nothing could confirm it");
        let no_agent = guest(Some("10.0.0.10"), false);
        assert!(!no_agent.waiting(&list, true));
        // The agent reports another address: the seed's network config did not take.
        let wrong = g.addresses(vec![reported(
            "10.0.0.99",
            STATIC_MAC,
            AddressSource::Agent,
        )]);
        assert!(g.waiting(&wrong, true));
    }

    #[test]
    fn a_dhcp_guest_waits_for_a_lease_or_its_agent() {
        let g = guest(None, true);
        assert!(g.waiting(&g.addresses(Vec::new()), true));
        let leased = g.addresses(vec![reported("10.0.0.57", DHCP_MAC, AddressSource::Lease)]);
        assert_eq!(shown(&leased), ["10.0.0.57 (lease)"]);
        assert!(!g.waiting(&leased, true));
        let both = g.addresses(vec![
            reported("10.0.0.57", DHCP_MAC, AddressSource::Agent),
            reported("10.0.0.57", DHCP_MAC, AddressSource::Lease),
            reported("127.0.0.1", DHCP_MAC, AddressSource::Agent),
        ]);
        assert_eq!(shown(&both), ["10.0.0.57 (lease, agent)"]);
    }
}
