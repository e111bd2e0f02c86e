//! Networks and kcli's DNS records.

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
