//! Simulated DHCP: the leases a running VM's NICs would get from dnsmasq on the sandbox's
//! networks, kept in `leases.json` from run to run.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Disk, LEASES_FILE};
use crate::plan::model::spec::*;
use crate::provider::{
    Address, AddressQuery, AddressSource, Addresses, LiveResource, Observed, ProviderError,
    ResourceId,
};

impl Disk {
    /// A running VM's addresses as dnsmasq would hand them out: the reservation for its MAC,
    /// else the lease that MAC already holds, else the first free address of the network's DHCP
    /// range. Leases are kept in `leases.json`, so they stay put from run to run; the leases of
    /// MACs no VM `seen` has any more are freed. A NIC its guest configures statically asks for
    /// no lease.
    pub(super) fn lease(
        &self,
        vms: &[AddressQuery],
        seen: &Observed,
    ) -> Result<Addresses, ProviderError> {
        let in_use: BTreeSet<String> = seen
            .resources
            .values()
            .filter_map(|r| match &r.spec {
                Spec::Vm(v) => Some(v.nics.iter().filter_map(|n| n.mac.clone())),
                _ => None,
            })
            .flatten()
            .map(|m| m.to_ascii_lowercase())
            .collect();
        let _one_at_a_time = self.lock_saving();
        let path = self.dir.join(LEASES_FILE);
        let mut leases: Leases = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        for held in leases.values_mut() {
            held.retain(|mac, _| in_use.contains(mac));
        }
        let mut all = Addresses::new();
        for query in vms {
            let running = match seen.get(&ResourceId::vm(&query.vm)) {
                Some(LiveResource {
                    spec: Spec::Vm(spec),
                    active: true,
                    ..
                }) => spec,
                _ => continue,
            };
            let found = all.entry(query.vm.clone()).or_default();
            lease(running, &query.static_macs, seen, &mut leases, found);
        }
        let text = serde_json::to_string_pretty(&leases).unwrap_or_default();
        crate::files::write_atomic(&path, text.as_bytes())
            .map_err(|e| ProviderError::Connection(format!("saving the sandbox's leases: {e}")))?;
        Ok(all)
    }
}

/// A VM's leases: reserved, already leased, or newly leased, for each NIC whose guest asks.
fn lease(
    spec: &VmSpec,
    static_macs: &[String],
    seen: &Observed,
    leases: &mut Leases,
    found: &mut Vec<Address>,
) {
    for nic in &spec.nics {
        let (Some(mac), Some(Spec::Network(net))) = (
            nic.mac.as_ref().map(|m| m.to_ascii_lowercase()),
            seen.get(&ResourceId::network(&nic.network))
                .map(|r| &r.spec),
        ) else {
            continue;
        };
        if static_macs.iter().any(|m| m.eq_ignore_ascii_case(&mac)) {
            continue;
        }
        let held = leases.entry(net.name.clone()).or_default();
        let ip = match net.hosts.iter().find(|h| h.mac.eq_ignore_ascii_case(&mac)) {
            Some(host) => Some(host.ip),
            None => match held.get(&mac) {
                Some(ip) => Some(*ip),
                None => first_free(net, held).inspect(|ip| {
                    held.insert(mac.clone(), *ip);
                }),
            },
        };
        found.extend(ip.map(|ip| Address {
            ip,
            mac: Some(mac),
            source: AddressSource::Lease,
        }));
    }
}

/// Simulated DHCP leases: network name → MAC → address.
type Leases = BTreeMap<String, BTreeMap<String, IpAddr>>;

/// The lowest address of the network's IPv4 DHCP range that is neither reserved nor leased.
fn first_free(net: &NetworkSpec, held: &BTreeMap<String, IpAddr>) -> Option<IpAddr> {
    let Some((IpAddr::V4(start), IpAddr::V4(end))) = net.dhcp else {
        return None;
    };
    let taken: BTreeSet<IpAddr> = held
        .values()
        .copied()
        .chain(net.hosts.iter().map(|h| h.ip))
        .collect();
    (u32::from(start)..=u32::from(end))
        .map(|n| IpAddr::V4(n.into()))
        .find(|ip| !taken.contains(ip))
}
