//! Networks, kcli's DNS records, and the security groups that guard a network's VMs.

use super::*;

pub(super) fn read_network(r: &mut MapReader, name: &str, d: &mut Diagnostics) -> Network {
    let cidr = r
        .string("cidr", d)
        .and_then(|c| match c.value.parse::<IpNet>() {
            Ok(net) => Some(Located {
                value: net.trunc(),
                span: c.span,
            }),
            Err(_) => {
                d.push(
                    Problem::error("plan::bad-cidr", format!("`{}` is not a CIDR", c.value))
                        .label(c.span, "expected an address and a prefix length")
                        .help("write it as 192.168.100.0/24"),
                );
                None
            }
        });
    let nat = r.bool("nat", true, d);
    let dhcp = r.bool("dhcp", true, d);
    let domain = r
        .string("domain", d)
        .map_or_else(|| name.to_string(), |s| s.value);
    let dhcp_start = r.ip("dhcp_start", d);
    let dhcp_end = r.ip("dhcp_end", d);
    let forward_mode = r.choice("forward_mode", &["nat", "route", "open", "bridge"], d);
    let bridge = r.bool("bridge", false, d);
    let bridgename = r
        .string("bridgename", d)
        .map_or_else(|| name.to_string(), |s| s.value);
    let mtu = r.int("mtu", d).and_then(|(m, span)| {
        if (68..=65535).contains(&m) {
            Some(m as u32)
        } else {
            d.push(
                Problem::error("plan::bad-mtu", format!("MTU {m} is out of range"))
                    .label(span, "must be 68 to 65535"),
            );
            None
        }
    });
    let dns = r.bool("dns", true, d);
    let pxe = r.string("pxe", d).map(|s| s.value);
    let mode = match forward_mode.as_deref() {
        Some("nat") => NetworkMode::Nat,
        Some("route") => NetworkMode::Route,
        Some("open") => NetworkMode::Open,
        Some("bridge") => NetworkMode::Bridge,
        _ if bridge => NetworkMode::Bridge,
        _ if !nat => NetworkMode::Isolated,
        _ => NetworkMode::Nat,
    };
    if cidr.is_none() && mode != NetworkMode::Bridge && r.peek("cidr").is_none() {
        d.push(
            Problem::error(
                "plan::missing-cidr",
                format!("network `{name}` has no `cidr`"),
            )
            .label(
                r.span,
                "every network but a bridged one needs an address range",
            )
            .help("add `cidr: 192.168.100.0/24`"),
        );
    }
    Network {
        cidr,
        mode,
        dhcp,
        domain,
        dhcp_start,
        dhcp_end,
        bridgename,
        mtu,
        dns,
        pxe,
    }
}

/// kcli's `dns` entry; `None` (reported) without an address.
pub(super) fn read_dns(r: &mut MapReader, d: &mut Diagnostics) -> Option<DnsRecord> {
    let net = r
        .reference("net", d)
        .unwrap_or_else(|| r.default_ref("default"));
    let ip = r.ip("ip", d);
    let domain = r.string("domain", d).map(|s| s.value);
    let aliases = r.strings("alias", d);
    if ip.is_none() && r.peek("ip").is_none() {
        d.push(
            Problem::error("plan::dns-without-ip", format!("{} has no `ip`", r.what))
                .label(r.span, "which address does this name resolve to?")
                .help("add `ip: 192.168.122.10`"),
        );
    }
    Some(DnsRecord {
        net,
        ip: ip?,
        domain,
        aliases,
    })
}

/// kcli's `securitygroup` entry: the `ports` it opens (a port, or a map of `from`, `to` and
/// `protocol`) in the VPC of its `network`, and siteplan's `cidr`, where traffic may come from.
pub(super) fn read_security_group(r: &mut MapReader, d: &mut Diagnostics) -> SecurityGroup {
    let network = r
        .reference("network", d)
        .unwrap_or_else(|| r.default_ref("default"));
    let ports = match r.take("ports") {
        Some(node) => list(node, "ports", d)
            .unwrap_or_default()
            .iter()
            .filter_map(|item| read_port(item, d))
            .collect(),
        None => Vec::new(),
    };
    let source = r
        .string("cidr", d)
        .and_then(|c| match c.value.parse::<IpNet>() {
            Ok(net) if net.addr().is_ipv4() => Some(net.trunc()),
            _ => {
                d.push(
                    Problem::error(
                        "plan::bad-cidr",
                        format!("`{}` is not an IPv4 CIDR", c.value),
                    )
                    .label(c.span, "where the traffic may come from")
                    .help("write it as 203.0.113.0/24, or leave it out for anywhere"),
                );
                None
            }
        })
        .unwrap_or_else(|| IpNet::from(ipnet::Ipv4Net::default()));
    SecurityGroup {
        network,
        ports,
        source,
    }
}

/// One of a security group's `ports`: `22`, `"22"`, or `{from: 1000, to: 2000, protocol: udp}`.
fn read_port(item: &Node, d: &mut Diagnostics) -> Option<Located<PortRange>> {
    let port = |n: i64, span: Span, d: &mut Diagnostics| match u16::try_from(n) {
        Ok(p) if p > 0 => Some(p),
        _ => {
            d.push(
                Problem::error("plan::bad-port", format!("{n} is not a port"))
                    .label(span, "must be 1 to 65535"),
            );
            None
        }
    };
    let range = match &item.value {
        Value::Int(n) => {
            let p = port(*n, item.span, d)?;
            PortRange {
                protocol: Protocol::Tcp,
                from: p,
                to: p,
            }
        }
        Value::Str(s) if s.trim().parse::<i64>().is_ok() => {
            let p = port(s.trim().parse().ok()?, item.span, d)?;
            PortRange {
                protocol: Protocol::Tcp,
                from: p,
                to: p,
            }
        }
        Value::Map(_) => {
            let mut r = MapReader::new(item, "a port".into(), item.span);
            let from = r.int("from", d);
            let to = r.int("to", d);
            let protocol = match r.choice("protocol", &["tcp", "udp"], d).as_deref() {
                Some("udp") => Protocol::Udp,
                _ => Protocol::Tcp,
            };
            r.finish(&[], d);
            let Some((from, from_span)) = from else {
                d.push(
                    Problem::error("plan::port-without-from", "a port range has no `from`")
                        .label(item.span, "which port does it start at?")
                        .help("write `{from: 1000, to: 2000}`, or the port alone"),
                );
                return None;
            };
            let from = port(from, from_span, d)?;
            let to = match to {
                Some((to, span)) => port(to, span, d)?,
                None => from,
            };
            if to < from {
                d.push(
                    Problem::error(
                        "plan::bad-port-range",
                        format!("the range {from} to {to} ends before it starts"),
                    )
                    .label(item.span, "`to` is below `from`"),
                );
                return None;
            }
            PortRange { protocol, from, to }
        }
        _ => {
            d.push(
                Problem::error(
                    "plan::bad-port",
                    format!("a port is a number or a map, not {}", item.kind_name()),
                )
                .label(item.span, "not a port")
                .help("write `22`, or `{from: 1000, to: 2000, protocol: udp}`"),
            );
            return None;
        }
    };
    Some(Located {
        value: range,
        span: item.span,
    })
}
