//! The plan's VMs as a table: their state, and the addresses their guests were given or report,
//! waited for when asked (a lease, the guest agent, cloud-init's end).

use super::*;

/// What the plan configures in a VM's guest that tells where it can be reached.
pub(in crate::ops) struct Guest {
    pub(in crate::ops) name: String,
    /// Each NIC's MAC, and its static address if the guest is given one.
    nics: Vec<(String, Option<IpAddr>)>,
    /// Each NIC's MAC and the network it is on.
    on: Vec<(String, String)>,
    agent: bool,
    /// It has a cloud-init seed: it is ready once cloud-init has run it.
    seeded: bool,
    /// kcli's `waitcommand`: it is ready once this succeeds in the guest.
    wait_command: Option<String>,
}

/// What a site's guests report, asked together (`Session::guests_seen`).
struct GuestsSeen {
    addresses: crate::provider::Addresses,
    readiness: BTreeMap<String, Readiness>,
    hears_agents: bool,
}

impl Guest {
    pub(super) fn of(part: &Intents) -> Vec<Guest> {
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
                    on: vm
                        .nics
                        .iter()
                        .map(|n| (n.mac.to_ascii_lowercase(), n.network.name.clone()))
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

impl Session {
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

    /// The site's VMs as they are now: the VMs, and what their guests report, asked at once.
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
        let (observed, guests) = tokio::join!(provider.observe(&scope), self.guests_seen(site));
        Self::rows(site, &observed.unwrap_or_default(), guests)
    }

    /// The plan's VMs, from what the providers were seen holding (`observe`): only their
    /// addresses are asked for.
    pub async fn vms_seen(&self, observed: &[Observed]) -> Vec<VmRow> {
        let mut rows = Vec::new();
        for (site, observed) in self.sites.iter().zip(observed) {
            rows.extend(Self::rows(site, observed, self.guests_seen(site).await));
        }
        rows
    }

    /// What the site's guests report: their addresses and, where the backend can tell, whether
    /// they are ready.
    async fn guests_seen(&self, site: &Site) -> GuestsSeen {
        let provider = site.opened.provider.as_ref();
        let queries: Vec<AddressQuery> = site.guests.iter().map(Guest::query).collect();
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
        // A backend that cannot tell whether a guest is ready, or hear its agent, says nothing.
        let guests = provider.guest_readiness();
        let readiness = async {
            match guests {
                Some(guests) => guests.readiness(&ready_when).await.unwrap_or_default(),
                None => Default::default(),
            }
        };
        let (addresses, readiness, elsewhere) = tokio::join!(
            provider.addresses(&queries),
            readiness,
            self.leased_elsewhere(site)
        );
        let mut addresses = addresses.unwrap_or_default();
        for (vm, leased) in elsewhere {
            addresses.entry(vm).or_default().extend(leased);
        }
        GuestsSeen {
            addresses,
            readiness,
            hears_agents: guests.is_some_and(|g| g.hears_guest_agents()),
        }
    }

    /// The leases the site's guests hold from the home of a network that spans hosts (another
    /// host, whose DHCP serves them), by VM.
    async fn leased_elsewhere(&self, site: &Site) -> BTreeMap<String, Vec<Address>> {
        let mut found: BTreeMap<String, Vec<Address>> = BTreeMap::new();
        let Some(here) = site.opened.name.as_deref() else {
            return found;
        };
        for span in self
            .spans
            .iter()
            .filter(|s| s.others.iter().any(|o| o == here))
        {
            let Some(home) = self
                .sites
                .iter()
                .find(|s| s.opened.name.as_deref() == Some(span.home.as_str()))
            else {
                continue;
            };
            let Some(placement) = home.opened.provider.placement() else {
                continue;
            };
            let Ok(leases) = placement.leases(&span.network).await else {
                continue;
            };
            for guest in &site.guests {
                for (mac, network) in &guest.on {
                    if *network != span.network {
                        continue;
                    }
                    found.entry(guest.name.clone()).or_default().extend(
                        leases
                            .iter()
                            .filter(|l| l.mac.as_deref() == Some(mac.as_str()))
                            .cloned(),
                    );
                }
            }
        }
        found
    }

    fn rows(site: &Site, observed: &Observed, guests: GuestsSeen) -> Vec<VmRow> {
        let shown = site.shown();
        let GuestsSeen {
            addresses: mut reported,
            mut readiness,
            hears_agents,
        } = guests;
        site.guests
            .iter()
            .map(|guest| {
                // A domain, or (KubeVirt) a VirtualMachine object.
                let live = observed.vm(&guest.name);
                let state = match live {
                    Some(r) if r.paused => VmState::Paused,
                    Some(r) if r.active => VmState::Running,
                    // Only a backend that tells declared from running (KubeVirt) says so.
                    Some(r) if r.spec.runs() => VmState::Starting,
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
                    waiting: state == VmState::Starting
                        || state == VmState::Running
                            && (guest.waiting(&addresses, hears_agents)
                                || matches!(ready, Some(Readiness::Pending(_)))),
                    addresses,
                    ready,
                }
            })
            .collect()
    }
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
            on: Vec::new(),
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
