//! Checks that need more than one key: addresses against their network, names that backends would
//! refuse, and values that must be unique across the plan. References between entries are checked
//! where the graph is built (`crate::graph`).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::model::*;
use crate::diagnostics::{Diagnostics, Problem, Span};

/// Linux refuses interface names of 16 bytes or more (IFNAMSIZ), and a libvirt network's bridge is
/// an interface.
const MAX_BRIDGE_NAME: usize = 15;

pub fn validate(manifest: &Manifest, d: &mut Diagnostics) {
    let networks: HashMap<&str, &Network> = manifest
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Network(n) => Some((e.name.as_str(), n)),
            _ => None,
        })
        .collect();

    let mut macs: HashMap<&str, Span> = HashMap::new();
    let mut ips: HashMap<(&str, IpAddr), Span> = HashMap::new();
    let mut addresses: HashMap<IpAddr, (&str, Span)> = HashMap::new();
    check_networks_apart(manifest, d);
    check_host_names(manifest, d);
    check_volume_names(manifest, d);

    for entry in &manifest.entries {
        check_name(entry, d);
        match &entry.kind {
            EntryKind::Network(net) => check_network(entry, net, d),
            EntryKind::Vm(vm) => {
                check_reservedns(entry, vm, &networks, d);
                check_security_groups(manifest, entry, vm, d);
                for nic in &vm.nets {
                    check_nic(nic, networks.get(nic.network.name.as_str()).copied(), d);
                    if let Some(mac) = &nic.mac {
                        if let Some(first) = macs.insert(mac, nic.span) {
                            d.push(
                                Problem::error("plan::duplicate-mac", format!("MAC address {mac} is used twice"))
                                    .label(first, "first here")
                                    .label(nic.span, "again here")
                                    .help("every NIC needs its own MAC; leave `mac` out to get a generated one"),
                            );
                        }
                    }
                    if let Some(ip) = &nic.ip {
                        let network = nic.network.name.as_str();
                        match addresses.insert(ip.value, (network, ip.span)) {
                            Some((other, first)) if other != network => d.push(
                                Problem::warning(
                                    "plan::ip-on-two-networks",
                                    format!(
                                        "{} is given on network `{other}` and on network `{network}`",
                                        ip.value
                                    ),
                                )
                                .label(first, "first here")
                                .label(ip.span, "again here")
                                .help("a host reached at one address on two networks is ambiguous; give each NIC its own address"),
                            ),
                            _ => {}
                        }
                        let key = (nic.network.name.as_str(), ip.value);
                        if let Some(first) = ips.insert(key, ip.span) {
                            d.push(
                                Problem::error(
                                    "plan::duplicate-ip",
                                    format!(
                                        "{} is given to two NICs on network `{}`",
                                        ip.value, nic.network.name
                                    ),
                                )
                                .label(first, "first here")
                                .label(ip.span, "again here"),
                            );
                        }
                    }
                }
            }
            EntryKind::Dns(record) => check_dns(
                entry,
                record,
                networks.get(record.net.name.as_str()).copied(),
                d,
            ),
            _ => {}
        }
    }
}

/// A security group belongs to a network (a cloud's VPC): a VM can be in those of its first
/// network only.
fn check_security_groups(manifest: &Manifest, entry: &Entry, vm: &Vm, d: &mut Diagnostics) {
    let network = vm
        .nets
        .first()
        .map_or("default", |n| n.network.name.as_str());
    for group in &vm.security_groups {
        let Some(EntryKind::SecurityGroup(declared)) = manifest.get(&group.name).map(|e| &e.kind)
        else {
            continue;
        };
        if declared.network.name != network {
            d.push(
                Problem::error(
                    "plan::security-group-elsewhere",
                    format!(
                        "vm `{}` is on network `{network}`, but security group `{}` belongs to \
                         network `{}`",
                        entry.name, group.name, declared.network.name
                    ),
                )
                .label(group.span, "a group of another network")
                .label(declared.network.span, "its network")
                .help(format!(
                    "a VM is only in groups of its first network: set the group's `network: \
                     {network}`, or make another group for it"
                )),
            );
        }
    }
}

/// No two networks share a bridge or overlap: libvirt refuses the second, after the first
/// is made.
fn check_networks_apart(manifest: &Manifest, d: &mut Diagnostics) {
    let networks: Vec<(&Entry, &Network)> = manifest
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Network(n) => Some((e, n)),
            _ => None,
        })
        .collect();
    for (i, (first, a)) in networks.iter().enumerate() {
        for (second, b) in &networks[i + 1..] {
            if !a.bridgename.is_empty() && a.bridgename == b.bridgename {
                d.push(
                    Problem::error(
                        "plan::same-bridge",
                        format!(
                            "networks `{}` and `{}` have the same bridge `{}`",
                            first.name, second.name, a.bridgename
                        ),
                    )
                    .label(first.span, "first here")
                    .label(second.span, "again here")
                    .help("a bridge belongs to one network: give one a `bridgename` of its own"),
                );
            }
            if let (Some(x), Some(y)) = (&a.cidr, &b.cidr) {
                if x.value.contains(&y.value.network()) || y.value.contains(&x.value.network()) {
                    d.push(
                        Problem::error(
                            "plan::overlapping-networks",
                            format!(
                                "networks `{}` ({}) and `{}` ({}) overlap",
                                first.name, x.value, second.name, y.value
                            ),
                        )
                        .label(x.span, "first here")
                        .label(y.span, "overlaps this")
                        .help("give each network a range of its own"),
                    );
                }
            }
        }
    }
}

/// VM names are host names: valid as such, and not the same but for case (DNS ignores case).
fn check_host_names(manifest: &Manifest, d: &mut Diagnostics) {
    let mut seen: HashMap<String, &Entry> = HashMap::new();
    for entry in manifest
        .entries
        .iter()
        .filter(|e| e.kind.kind() == Kind::Vm)
    {
        let name = entry.name.as_str();
        if name.contains(['_', '.']) {
            d.push(
                Problem::warning(
                    "plan::not-a-host-name",
                    format!("`{name}` is not a valid host name"),
                )
                .label(entry.span, "the guest is given this name as its host name")
                .help("host names have letters, digits and `-` only; DNS and some guests refuse the rest"),
            );
        }
        if let Some(first) = seen.insert(name.to_ascii_lowercase(), entry) {
            d.push(
                Problem::error(
                    "plan::same-host-name",
                    format!("VMs `{}` and `{name}` differ only in case", first.name),
                )
                .label(first.span, "first here")
                .label(entry.span, "the same host name to DNS")
                .help("host names ignore case: rename one"),
            );
        }
    }
}

/// An image's volume is not also a VM's disk in the same pool.
fn check_volume_names(manifest: &Manifest, d: &mut Diagnostics) {
    let images: HashMap<(&str, &str), &Entry> = manifest
        .entries
        .iter()
        .filter_map(|e| match &e.kind {
            EntryKind::Image(image) => Some(((image.pool.name.as_str(), e.name.as_str()), e)),
            _ => None,
        })
        .collect();
    for entry in &manifest.entries {
        let EntryKind::Vm(vm) = &entry.kind else {
            continue;
        };
        for (i, disk) in vm.disks.iter().enumerate() {
            let volume = disk
                .name
                .clone()
                .unwrap_or_else(|| disk_volume(&entry.name, i));
            if let Some(image) = images.get(&(disk.pool.name.as_str(), volume.as_str())) {
                d.push(
                    Problem::error(
                        "plan::volume-twice",
                        format!(
                            "image `{}` and disk {i} of VM `{}` are both volume `{volume}` in pool `{}`",
                            image.name, entry.name, disk.pool.name
                        ),
                    )
                    .label(image.span, "the image's volume")
                    .label(disk.span, "this disk's volume")
                    .help("rename the image, or give the disk a `name`"),
                );
            }
        }
    }
}

/// A DNS record's address lies in its network, when the plan declares it.
fn check_dns(entry: &Entry, record: &DnsRecord, network: Option<&Network>, d: &mut Diagnostics) {
    let Some(network) = network else {
        return;
    };
    if let Some(cidr) = &network.cidr {
        if !cidr.value.contains(&record.ip.value) {
            d.push(
                Problem::error(
                    "plan::dns-address",
                    format!(
                        "dns `{}` resolves to {}, outside network `{}` ({})",
                        entry.name, record.ip.value, record.net.name, cidr.value
                    ),
                )
                .label(record.ip.span, "not in the network"),
            );
        }
    }
}

/// kcli's `reservedns` makes a record for a static address only in a network of the plan.
fn check_reservedns(
    entry: &Entry,
    vm: &Vm,
    networks: &HashMap<&str, &Network>,
    d: &mut Diagnostics,
) {
    if !vm.reservedns {
        return;
    }
    let outside = vm
        .nets
        .iter()
        .find(|n| n.ip.is_some() && !networks.contains_key(n.network.name.as_str()));
    let ours = vm
        .nets
        .iter()
        .any(|n| n.ip.is_some() && networks.contains_key(n.network.name.as_str()));
    if let (Some(nic), false) = (outside, ours) {
        d.push(
            Problem::warning(
                "plan::reservedns-outside",
                format!(
                    "vm `{}` asks for a DNS record (reservedns), but its static address is on network `{}`, which this plan does not declare: siteplan adds no record there",
                    entry.name, nic.network.name
                ),
            )
            .label(nic.network.span, "not a network of this plan")
            .help("declare the network in the plan; a DHCP guest's name is answered from its lease anyway"),
        );
    }
}

/// Whether `name` can name an entry: letters, digits, `-`, `_` and `.`, not first a `-` or
/// `.`, and not `parameters` (the plan's parameters block).
pub fn usable_name(name: &str) -> bool {
    let valid_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    !name.is_empty() && valid_chars && !name.starts_with(['-', '.']) && name != "parameters"
}

fn check_name(entry: &Entry, d: &mut Diagnostics) {
    let name = entry.name.as_str();
    if !usable_name(name) {
        d.push(
            Problem::error("plan::bad-name", format!("`{name}` is not a usable name"))
                .label(
                    entry.span,
                    "names become host names, file names and bridge names",
                )
                .help("use letters, digits, `-`, `_` and `.`, starting with a letter or digit"),
        );
        return;
    }
    if entry.kind.kind() == Kind::Vm && name.len() > 63 {
        d.push(
            Problem::error(
                "plan::name-too-long",
                format!("VM name `{name}` is longer than 63 characters"),
            )
            .label(entry.span, "a host name label has at most 63 characters"),
        );
    }
}

fn check_network(entry: &Entry, net: &Network, d: &mut Diagnostics) {
    if net.bridgename.len() > MAX_BRIDGE_NAME {
        let from_name = net.bridgename == entry.name;
        d.push(
            Problem::error(
                "plan::bridge-name-too-long",
                format!(
                    "bridge name `{}` has {} characters; Linux allows at most {MAX_BRIDGE_NAME}",
                    net.bridgename,
                    net.bridgename.len()
                ),
            )
            .label(
                entry.span,
                if from_name {
                    "the network's name is its bridge's name"
                } else {
                    "its `bridgename` is too long"
                },
            )
            .help(if from_name {
                "shorten the network's name, or set a short `bridgename`"
            } else {
                "shorten `bridgename`"
            }),
        );
    }
    let Some(cidr) = &net.cidr else {
        return;
    };
    if cidr.value.prefix_len() >= cidr.value.max_prefix_len() - 1 {
        d.push(
            Problem::error(
                "plan::cidr-too-small",
                format!("{} leaves no room for guests", cidr.value),
            )
            .label(
                cidr.span,
                "the host's bridge takes one address and guests need more",
            )
            .help("use a prefix of /30 or shorter"),
        );
    }
    for bound in [&net.dhcp_start, &net.dhcp_end].into_iter().flatten() {
        check_in_network(bound, &cidr.value, "DHCP range", d);
    }
    if let (Some(start), Some(end)) = (&net.dhcp_start, &net.dhcp_end) {
        if start.value > end.value {
            d.push(
                Problem::error(
                    "plan::bad-dhcp-range",
                    "the DHCP range ends before it starts",
                )
                .label(start.span, "start")
                .label(end.span, "end"),
            );
        }
    }
}

fn check_nic(nic: &Nic, network: Option<&Network>, d: &mut Diagnostics) {
    let cidr = network.and_then(|n| n.cidr.as_ref()).map(|c| c.value);
    if let Some(ip) = &nic.ip {
        match cidr {
            Some(cidr) => check_in_network(ip, &cidr, "address", d),
            None if nic.prefix.is_none() && network.is_none() => d.push(
                Problem::warning(
                    "plan::ip-without-prefix",
                    format!(
                        "{} is on network `{}`, which this plan does not declare, and has no prefix",
                        ip.value, nic.network.name
                    ),
                )
                .label(ip.span, "its prefix length cannot be known here")
                .help("add `prefix: 24` (or `netmask`) so the guest's network config is complete"),
            ),
            None => {}
        }
    }
    if let (Some(gateway), Some(cidr)) = (&nic.gateway, cidr) {
        check_in_network(gateway, &cidr, "gateway", d);
    }
}

fn check_in_network(ip: &Located<IpAddr>, cidr: &IpNet, what: &str, d: &mut Diagnostics) {
    if !cidr.contains(&ip.value) {
        d.push(
            Problem::error(
                "plan::ip-outside-network",
                format!("{what} {} is outside {cidr}", ip.value),
            )
            .label(ip.span, format!("not in {cidr}"))
            .help(format!(
                "use an address between {} and {}",
                first_host(cidr),
                last_host(cidr)
            )),
        );
    } else if is_reserved(cidr, ip.value) {
        d.push(
            Problem::error(
                "plan::reserved-ip",
                format!(
                    "{what} {} is the network or broadcast address of {cidr}",
                    ip.value
                ),
            )
            .label(ip.span, "not usable by a host"),
        );
    }
}

fn is_reserved(cidr: &IpNet, ip: IpAddr) -> bool {
    match cidr {
        IpNet::V4(net) if net.prefix_len() < 31 => ip == cidr.network() || ip == cidr.broadcast(),
        IpNet::V6(_) => ip == cidr.network(),
        _ => false,
    }
}

fn first_host(cidr: &IpNet) -> IpAddr {
    cidr.hosts().next().unwrap_or(cidr.network())
}

/// The last usable address: below the broadcast address in IPv4 networks that have one.
fn last_host(cidr: &IpNet) -> IpAddr {
    match cidr {
        IpNet::V4(net) if net.prefix_len() < 31 => {
            IpAddr::V4((u32::from(net.broadcast()) - 1).into())
        }
        _ => cidr.broadcast(),
    }
}
