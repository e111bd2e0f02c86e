//! Networks that span hosts: a plan network that VMs of a group use on several of its hosts is
//! one segment. One host (the network's home) makes it as the plan says, with its DHCP and
//! DNS (and so every reservation and record of the plan, whichever host the VM is on); the
//! others make it as a bridge of the same name with no address, which the tunnel makes. Each
//! host has a tunnel (`TunnelSpec`): a VXLAN device in the bridge that floods to every other
//! host of the network.
//!
//! The home is the host that has the network as its home already, else the first of the
//! group's hosts (in the group's order) that uses it: a network stays where it is.

use super::groups::Groups;
use super::*;
use crate::plan::model::spec::{ForwardMode, NetworkSpec, TunnelSpec};
use sha2::{Digest, Sha256};

/// A network joined over hosts, for the terminal: its home and the hosts joined to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub network: String,
    pub home: String,
    pub others: Vec<String>,
    pub vni: u32,
}

/// Joins the group sites' networks that several of them hold (see the module).
pub(super) fn join(sites: &mut [Site], groups: &Groups, plan: &str) -> Result<Vec<Span>, Refusal> {
    // Where each of a group's networks is: (group, network) → site indexes.
    let mut held: BTreeMap<(String, String), Vec<usize>> = BTreeMap::new();
    for (i, site) in sites.iter().enumerate() {
        let Some(group) = &site.desired.group else {
            continue;
        };
        for r in &site.desired.resources {
            if let Spec::Network(net) = &r.spec {
                // A host bridge is each host's own.
                if net.mode != ForwardMode::Bridge {
                    held.entry((group.clone(), net.name.clone()))
                        .or_default()
                        .push(i);
                }
            }
        }
    }
    let mut spans = Vec::new();
    let mut problems = Vec::new();
    for ((group, network), mut at) in held {
        if at.len() < 2 {
            continue;
        }
        let names: Vec<String> = sites
            .iter()
            .map(|s| s.opened.name.clone().unwrap_or_default())
            .collect();
        let host = |i: usize| names[i].clone();
        let order = groups.order(&group);
        at.sort_by_key(|&i| order.iter().position(|h| *h == host(i)));
        let home = at
            .iter()
            .copied()
            .find(|&i| groups.is_home(&host(i), &network))
            .unwrap_or(at[0]);
        let mut addresses = BTreeMap::new();
        for &i in &at {
            match groups.tunnel_address(&host(i)) {
                Ok(address) => {
                    addresses.insert(i, address);
                }
                Err(why) => problems.push(format!(
                    "network `{network}` spans hosts {} of group `{group}`, and host `{}` cannot \
                     hold its tunnel: {why}",
                    at.iter().map(|&i| host(i)).collect::<Vec<_>>().join(", "),
                    host(i)
                )),
            }
        }
        if addresses.len() < at.len() {
            continue;
        }
        let digest = Sha256::digest(format!("{plan}/{network}").as_bytes());
        // 1 to 2^24 - 1: the VXLAN identifier, the same on every host.
        let vni = (u32::from_be_bytes([0, digest[0], digest[1], digest[2]])).max(1);
        let device = format!("spx{}", hex::encode(&digest[3..7]));
        let Some(home_net) = network_spec(&sites[home], &network) else {
            continue;
        };
        // Both reach commands on the hosts (and a file name): refused here, before any change.
        if let Some(name) = [&network, &home_net.bridge]
            .into_iter()
            .find(|n| !interface_name(n))
        {
            problems.push(format!(
                "network `{network}` spans hosts, and `{name}` cannot name its bridge and tunnel \
                 there: use at most 15 letters, digits, `-`, `_` or `.`"
            ));
            continue;
        }
        for &i in &at {
            let local = addresses[&i].clone();
            let mut peers: Vec<String> = at
                .iter()
                .filter(|&&j| j != i)
                .map(|j| addresses[j].clone())
                .collect();
            peers.sort();
            peers.dedup();
            let is_home = i == home;
            let tunnel = TunnelSpec {
                network: network.clone(),
                bridge: home_net.bridge.clone(),
                device: device.clone(),
                vni,
                local,
                peers,
                makes_bridge: !is_home,
            };
            let id = ResourceId::tunnel(&network);
            let site = &mut sites[i];
            let entry = site
                .desired
                .resources
                .iter()
                .find(|r| r.spec.id() == ResourceId::network(&network))
                .map_or_else(|| network.clone(), |r| r.entry.clone());
            for r in &mut site.desired.resources {
                match &mut r.spec {
                    Spec::Network(net) if net.name == network && !is_home => {
                        *net = member_network(&home_net);
                    }
                    // A VM needs its bridge there, which the tunnel makes on this host.
                    Spec::Vm(vm)
                        if !is_home
                            && vm.nics.iter().any(|n| n.network == network)
                            && !r.depends_on.contains(&id) =>
                    {
                        r.depends_on.push(id.clone());
                    }
                    _ => {}
                }
            }
            site.desired.resources.push(DesiredResource {
                spec: Spec::Tunnel(tunnel),
                entry,
                depends_on: vec![ResourceId::network(&network)],
            });
        }
        let mut others: Vec<String> = at
            .iter()
            .filter(|&&i| i != home)
            .map(|&i| host(i))
            .collect();
        others.sort();
        spans.push(Span {
            network,
            home: host(home),
            others,
            vni,
        });
    }
    if !problems.is_empty() {
        return Err(Refusal::problems(problems));
    }
    Ok(spans)
}

/// A Linux interface name: at most 15 bytes of letters, digits, `-`, `_` and `.`.
fn interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn network_spec(site: &Site, network: &str) -> Option<NetworkSpec> {
    site.desired.resources.iter().find_map(|r| match &r.spec {
        Spec::Network(net) if net.name == network => Some(net.clone()),
        _ => None,
    })
}

/// The network on a host other than its home: the bridge alone, as libvirt reads it back (a
/// bridged network has no address, DHCP, domain or DNS of its own).
fn member_network(home: &NetworkSpec) -> NetworkSpec {
    NetworkSpec {
        name: home.name.clone(),
        mode: ForwardMode::Bridge,
        bridge: home.bridge.clone(),
        cidr: None,
        dhcp: None,
        hosts: Vec::new(),
        dns_hosts: Vec::new(),
        domain: None,
        mtu: home.mtu,
        dns: true,
        autostart: home.autostart,
    }
}

/// Whether `observed` (a host's) has `network` as the plan's, and as its home (not a bridge
/// alone).
pub(super) fn holds_as_home(observed: &Observed, plan: &str, network: &str) -> bool {
    observed
        .get(&ResourceId::network(network))
        .is_some_and(|r| {
            r.owner.as_ref().is_some_and(|m| m.plan == plan)
                && matches!(&r.spec, Spec::Network(n) if n.mode != ForwardMode::Bridge)
        })
}
