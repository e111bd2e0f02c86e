//! Plans that go to a group of hosts (the providers file's `groups:`): each of the group's VMs
//! is given the host that holds it (`placement`), from what every host of the group says of
//! itself, asked at once: whether it answers and is healthy, its capacity, what is allocated
//! there, and which of the plan's VMs it holds. The placement becomes each VM's `client`, and
//! the plan is then split by provider as any other.

use super::*;
use crate::placement::{self, Host, Need, Placed};
use crate::registry::config::{GroupConfig, ProvidersFile};

/// The groups a plan's VMs were placed on.
#[derive(Default)]
pub(super) struct Groups {
    /// Each group host opened while placing, by name, with its own limit on parallel
    /// changes, for the session to use as it is.
    pub(super) opened: BTreeMap<String, (Arc<dyn Provider>, Option<usize>)>,
    /// Where the entries that no VM needs go when the plan goes to a group: its first host that
    /// answers.
    pub(super) first_host: BTreeMap<String, String>,
    /// Whether any VM was placed on a group (every part is then labelled with its host).
    pub(super) used: bool,
    /// The group each host that VMs were placed on belongs to, for the marks.
    pub(super) group_of: BTreeMap<String, String>,
    /// Why each VM placed anew goes to its host, by VM, for the plan's changes.
    pub(super) why: BTreeMap<String, String>,
    /// The group the plan goes to when nothing else is named (`--provider`, the file's
    /// `default`), if it is a group.
    default_group: Option<String>,
    /// Each group's hosts, in the group's order.
    order: BTreeMap<String, Vec<String>>,
    /// (host, network): the host has the plan's network as its home (with its DHCP), not as a
    /// bridge joined to another host's.
    homes: BTreeSet<(String, String)>,
    /// Each group host's address for tunnels, or why it has none.
    addresses: BTreeMap<String, Result<String, String>>,
    /// The VMs that leave a host being drained, and where they go.
    pub(super) moves: Vec<Move>,
}

/// A VM that moves off a host being drained (`plan drain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub vm: String,
    pub from: String,
    pub to: String,
}

impl Groups {
    /// The hosts of `group`, in its order.
    pub(super) fn order(&self, group: &str) -> &[String] {
        self.order.get(group).map_or(&[], Vec::as_slice)
    }

    /// Whether `host` has the plan's `network` as its home.
    pub(super) fn is_home(&self, host: &str, network: &str) -> bool {
        self.homes
            .contains(&(host.to_string(), network.to_string()))
    }

    /// The address a tunnel on `host` uses, or why it has none.
    pub(super) fn tunnel_address(&self, host: &str) -> Result<String, String> {
        self.addresses
            .get(host)
            .cloned()
            .unwrap_or_else(|| Err("it is not a host of the group".into()))
    }

    /// The provider a part whose VMs name `choice` (else `--provider`) goes to: a group's
    /// parts are its VMs' hosts, so what names a group (entries no VM needs) goes to its first
    /// host.
    pub(super) fn resolve(&self, choice: Option<String>) -> Option<String> {
        choice
            .or_else(|| self.default_group.clone())
            .map(|name| self.first_host.get(&name).cloned().unwrap_or(name))
    }
}

impl Groups {
    /// The sites of a plan that goes to groups, as a group's hosts make them: a host being
    /// drained makes room first (its moving VMs' new hosts get all they need but the VMs, which
    /// libvirt moves next, and nothing of the drained host goes yet); and a host of a group
    /// that gets nothing of the plan now is a part with nothing desired, as it may hold what
    /// the plan made there (a VM removed from the plan, or placed elsewhere), which the diff
    /// then deletes.
    pub(super) fn complete_sites(
        &self,
        sites: &mut Vec<Site>,
        request: &crate::ops::Request,
        view: &dyn View,
    ) {
        let making_room = request
            .drain
            .as_ref()
            .filter(|d| d.step == crate::ops::request::DrainStep::MakeRoom);
        if let Some(drain) = making_room {
            sites.retain(|s| s.opened.name.as_deref() != Some(drain.host.as_str()));
            for site in sites.iter_mut() {
                site.desired.resources.retain(|r| {
                    !self
                        .moves
                        .iter()
                        .any(|m| r.spec.id() == ResourceId::vm(&m.vm))
                });
            }
        }
        for (host, (provider, parallelism)) in &self.opened {
            if sites.iter().any(|s| s.opened.name.as_deref() == Some(host))
                || making_room.is_some_and(|d| d.host == *host)
            {
                continue;
            }
            view.event(Event::Provider {
                name: Some(host),
                kind: provider.kind(),
                endpoint: &provider.endpoint(),
            });
            sites.push(Site {
                label: Some(host.clone()),
                opened: Opened {
                    provider: provider.clone(),
                    parallelism: *parallelism,
                    name: Some(host.clone()),
                },
                desired: Desired {
                    group: self.group_of.get(host).cloned(),
                    ..Desired::default()
                },
                guests: Vec::new(),
            });
        }
    }
}

/// A group host, asked.
struct Asked {
    name: String,
    provider: Arc<dyn Provider>,
    /// Its `parallelism` in the providers file.
    parallelism: Option<usize>,
    host: Host,
    /// The plan's VMs it holds.
    holds: BTreeSet<String>,
    /// The plan's networks it has as their home.
    homes: Vec<String>,
}

/// Places the VMs of `intents` that go to a group (their `client`, else `--provider`, else the
/// file's `default`, names one) and sets each one's `client` to its host. A host that does not
/// answer stops a converge (it may hold the plan's VMs); destroy goes on without it.
pub(super) async fn place(
    intents: &mut Intents,
    request: &crate::ops::Request,
    goal: Goal,
    view: &dyn View,
) -> Result<Groups, Refusal> {
    let Ok((file, _)) = registry::config::load() else {
        // The session's own choice of providers says what is wrong with the file.
        return Ok(Groups::default());
    };
    if file.groups.is_empty() {
        return Ok(Groups::default());
    }
    let default = request.provider.as_deref().or(file.default_name());
    if let Some(drain) = &request.drain {
        let pinned: Vec<&str> = intents
            .items
            .iter()
            .filter(|i| matches!(&i.what, What::Vm(vm) if vm.client.as_deref() == Some(drain.host.as_str())))
            .map(|i| i.name.as_str())
            .collect();
        if !pinned.is_empty() {
            return Err(Refusal::Invalid(format!(
                "{} pinned to `{}` (`client: {}`): a drain moves the VMs a group placed there; \
                 pin {} to another host first",
                pinned.join(", "),
                drain.host,
                drain.host,
                if pinned.len() == 1 { "it" } else { "them" }
            )));
        }
    }
    let group_of = |client: &Option<String>| -> Option<&GroupConfig> {
        file.group(client.as_deref().or(default)?)
    };
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, item) in intents.items.iter().enumerate() {
        if let What::Vm(vm) = &item.what {
            if let Some(group) = group_of(&vm.client) {
                groups.entry(group.name.clone()).or_default().push(i);
            }
        }
    }
    let mut placed_groups = Groups::default();
    if let Some(group) = default.and_then(|d| file.group(d)) {
        // Entries no VM needs: the first host, whichever answers; known once it is asked.
        groups.entry(group.name.clone()).or_default();
        placed_groups.default_group = Some(group.name.clone());
    }
    for (name, members) in groups {
        let Some(group) = file.group(&name) else {
            continue;
        };
        let vms: Vec<String> = members
            .iter()
            .map(|&i| intents.items[i].name.clone())
            .collect();
        let networks: Vec<String> = intents
            .items
            .iter()
            .filter(|i| matches!(i.what, What::Network(_)))
            .map(|i| i.name.clone())
            .collect();
        placed_groups
            .order
            .insert(name.clone(), group.hosts.clone());
        for host in &group.hosts {
            if let Some(config) = file.provider(host) {
                placed_groups
                    .addresses
                    .insert(host.clone(), config.backend.settings().tunnel_address());
            }
        }
        let asked = ask_hosts(&file, group, &request.name, &vms, &networks, goal, view).await?;
        for a in &asked {
            for network in &a.homes {
                placed_groups
                    .homes
                    .insert((a.name.clone(), network.clone()));
            }
        }
        let Some(first) = asked.first() else {
            return Err(Refusal::Invalid(format!(
                "group `{name}` has no enabled host that answers"
            )));
        };
        placed_groups
            .first_host
            .insert(name.clone(), first.name.clone());
        let mut needs: Vec<Need> = members
            .iter()
            .filter_map(|&i| need(intents, &intents.items[i], &asked))
            .collect();
        let mut hosts: Vec<Host> = asked.iter().map(|a| a.host.clone()).collect();
        // A host being drained keeps nothing and gets nothing: its VMs are placed anew.
        let draining = request.drain.as_ref().map(|d| d.host.as_str());
        let mut leaving = BTreeSet::new();
        if let Some(drained) = draining {
            for need in needs.iter_mut() {
                if need.on.as_deref() == Some(drained) {
                    need.on = None;
                    leaving.insert(need.vm.clone());
                }
            }
            for host in hosts.iter_mut().filter(|h| h.name == drained) {
                host.accepts = false;
                host.refuses_because = Some("it is being drained".into());
            }
        }
        let placed = match placement::place(&needs, &hosts) {
            Ok(mut placed) => {
                for p in placed.iter_mut().filter(|p| leaving.contains(&p.vm)) {
                    p.why = placement::Why::Moved;
                    placed_groups.moves.push(Move {
                        vm: p.vm.clone(),
                        from: draining.unwrap_or_default().to_string(),
                        to: p.host.clone(),
                    });
                }
                placed
            }
            Err(problems) if goal == Goal::Converge => {
                return Err(Refusal::problems(
                    problems
                        .into_iter()
                        .map(|p| format!("group `{name}`: {p}"))
                        .collect(),
                ))
            }
            // Destroy deletes what is where it is: a VM nowhere goes nowhere.
            Err(_) => needs
                .iter()
                .map(|n| Placed {
                    vm: n.vm.clone(),
                    host: n.on.clone().unwrap_or_else(|| first.name.clone()),
                    why: placement::Why::Holds,
                })
                .collect(),
        };
        if goal == Goal::Converge {
            view.event(Event::Placed {
                group: &name,
                placed: &placed,
            });
        }
        for p in &placed {
            placed_groups.group_of.insert(p.host.clone(), name.clone());
            match p.why {
                placement::Why::MostRoom => {
                    placed_groups.why.insert(
                        p.vm.clone(),
                        format!("placed by group `{name}`: the most memory left"),
                    );
                }
                placement::Why::Moved => {
                    placed_groups.why.insert(
                        p.vm.clone(),
                        format!(
                            "moved off {}, which is being drained: the most memory left",
                            draining.unwrap_or_default()
                        ),
                    );
                }
                placement::Why::Holds => {}
            }
            for item in intents.items.iter_mut().filter(|i| i.name == p.vm) {
                if let What::Vm(vm) = &mut item.what {
                    vm.client = Some(p.host.clone());
                }
            }
        }
        // A VM pinned to a host of the group is the group's too: its networks join the
        // others'.
        for host in &group.hosts {
            placed_groups
                .group_of
                .entry(host.clone())
                .or_insert_with(|| name.clone());
        }
        for a in asked {
            placed_groups
                .opened
                .insert(a.name, (a.provider, a.parallelism));
        }
        placed_groups.used = true;
    }
    Ok(placed_groups)
}

/// What `item` (a VM) needs of a host, and the host that holds it now, if one does.
fn need(intents: &Intents, item: &Intent, asked: &[Asked]) -> Option<Need> {
    let What::Vm(vm) = &item.what else {
        return None;
    };
    let mut storage: BTreeMap<String, u64> = BTreeMap::new();
    let mut pools_used = BTreeSet::new();
    for disk in &vm.disks {
        if !disk.storage.declared {
            pools_used.insert(disk.storage.name.clone());
        }
        if !disk.thin {
            *storage.entry(disk.storage.name.clone()).or_default() += disk.size_bytes;
        }
    }
    // A pool the plan declares is made on every host that needs it: its room is the host's
    // filesystem's, which no pool reports yet.
    storage.retain(|pool, _| {
        intents
            .get(pool)
            .is_none_or(|i| !matches!(i.what, What::Storage(_)))
    });
    Some(Need {
        vm: item.name.clone(),
        cpus: u64::from(vm.cpus),
        memory_bytes: vm.memory_mib.saturating_mul(1024 * 1024),
        storage,
        pools_used,
        antiaffinity: vm.antiaffinity.clone(),
        on: asked
            .iter()
            .find(|a| a.holds.contains(&item.name))
            .map(|a| a.name.clone()),
    })
}

/// Every enabled host of `group`, asked at once (each within the file's health timeout).
async fn ask_hosts(
    file: &ProvidersFile,
    group: &GroupConfig,
    plan: &str,
    vms: &[String],
    networks: &[String],
    goal: Goal,
    view: &dyn View,
) -> Result<Vec<Asked>, Refusal> {
    let timeout = file
        .health_timeout
        .map_or(registry::HEALTH_TIMEOUT, Duration::from_secs);
    let hosts: Vec<&registry::config::ProviderConfig> = group
        .hosts
        .iter()
        .filter_map(|h| file.provider(h))
        .filter(|p| p.enabled)
        .collect();
    let answers = futures::future::join_all(
        hosts
            .iter()
            .map(|config| ask_host(config, plan, vms, networks, timeout)),
    )
    .await;
    let mut asked = Vec::new();
    let mut silent = Vec::new();
    for (config, answer) in hosts.iter().zip(answers) {
        match answer {
            Ok(a) => asked.push(a),
            Err(e) => silent.push(format!("host `{}` does not answer: {e}", config.name)),
        }
    }
    if !silent.is_empty() {
        match goal {
            // It may hold VMs of the plan: placing them elsewhere would make them twice.
            Goal::Converge => {
                return Err(Refusal::problems(
                    silent
                        .into_iter()
                        .map(|s| {
                            format!(
                                "group `{}`: {s}; it may hold VMs of the plan (set `enabled: \
                                 false` on it in the providers file to place them without it)",
                                group.name
                            )
                        })
                        .collect(),
                ))
            }
            Goal::Destroy => {
                for s in silent {
                    view.event(Event::Warning(format!(
                        "group `{}`: {s}; what the plan has there stays",
                        group.name
                    )));
                }
            }
        }
    }
    Ok(asked)
}

async fn ask_host(
    config: &registry::config::ProviderConfig,
    plan: &str,
    vms: &[String],
    networks: &[String],
    timeout: Duration,
) -> Result<Asked, String> {
    let asking = async {
        let provider = backends::open(&config.backend)
            .await
            .map_err(|e| e.to_string())?;
        // The plan's VMs and networks by name, whoever's they are (their marks say whose): not
        // everything the plan has there, which would ask the host for its tunnels too.
        let scope = Scope {
            plan: String::new(),
            ids: vms
                .iter()
                .map(|v| ResourceId::vm(v))
                .chain(networks.iter().map(|n| ResourceId::network(n)))
                .collect(),
        };
        // As `plan provider list` checks it: a host it shows unhealthy gets nothing new.
        let (checked, observed) = tokio::join!(
            registry::check_opened(config, provider.as_ref()),
            provider.observe(&scope)
        );
        let observed = observed.map_err(|e| e.to_string())?;
        let holds = vms
            .iter()
            .filter(|v| {
                observed
                    .get(&ResourceId::vm(v))
                    .and_then(|r| r.owner.as_ref())
                    .is_some_and(|m| m.plan == plan)
            })
            .cloned()
            .collect();
        let homes = networks
            .iter()
            .filter(|n| super::spanning::holds_as_home(&observed, plan, n))
            .cloned()
            .collect();
        let refuses_because = match (&checked.status, checked.capacity, &checked.allocation) {
            (crate::provider::HealthStatus::Ready, Some(_), Some(_)) => None,
            (crate::provider::HealthStatus::Ready, _, _) => {
                Some("says nothing of its capacity".to_string())
            }
            (status, _, _) => Some(format!(
                "{}{}",
                match status {
                    crate::provider::HealthStatus::Unhealthy => "unhealthy",
                    _ => "unavailable",
                },
                checked
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )),
        };
        let allocation = checked.allocation.unwrap_or_default();
        let capacity = checked.capacity.unwrap_or(capability::Capacity {
            cpus: 0,
            memory_bytes: 0,
        });
        Ok(Asked {
            name: config.name.clone(),
            host: Host {
                name: config.name.clone(),
                cpus: capacity.cpus,
                memory_bytes: capacity.memory_bytes,
                allocated_cpus: allocation.cpus,
                allocated_memory_bytes: allocation.memory_bytes,
                pools: allocation.pools_free_bytes,
                accepts: refuses_because.is_none(),
                refuses_because,
            },
            provider,
            parallelism: config.parallelism,
            holds,
            homes,
        })
    };
    match tokio::time::timeout(timeout, asking).await {
        Ok(answer) => answer,
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}
