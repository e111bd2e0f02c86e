//! Parsing libvirt's XML back into specs, reading only what a spec holds.

use super::*;

pub(super) fn child<'a, 'i>(
    node: roxmltree::Node<'a, 'i>,
    name: &str,
) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(name))
}

pub(super) fn child_text(node: roxmltree::Node, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

pub(super) fn attr(node: Option<roxmltree::Node>, name: &str) -> Option<String> {
    node.and_then(|n| n.attribute(name)).map(str::to_string)
}

pub(super) fn parse(xml: &str) -> Result<roxmltree::Document<'_>, String> {
    roxmltree::Document::parse(xml)
        .map_err(|e| format!("libvirt returned XML that does not parse: {e}"))
}

/// The siteplan mark in a `<metadata>` element, if any.
pub(super) fn owner_mark(root: roxmltree::Node) -> Option<OwnerMark> {
    let owner = child(root, "metadata")?
        .children()
        .find(|c| c.tag_name().namespace() == Some(OWNER_NS) && c.tag_name().name() == "owner")?;
    let plan = owner.attribute("plan")?.to_string();
    let spec = serde_json::from_str(owner.text()?).ok()?;
    Some(OwnerMark {
        plan,
        spec,
        prevent_destroy: owner.attribute("prevent_destroy") == Some("true"),
        created: owner.attribute("created").map(str::to_string),
        applied_from: owner.attribute("applied_from").map(str::to_string),
        group: owner.attribute("group").map(str::to_string),
    })
}

pub fn parse_network(
    xml: &str,
    autostart: bool,
) -> Result<(NetworkSpec, Option<OwnerMark>), String> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    let name = child_text(root, "name").unwrap_or_default();
    let mode = match attr(child(root, "forward"), "mode").as_deref() {
        None => ForwardMode::Isolated,
        Some("nat") => ForwardMode::Nat,
        Some("route") => ForwardMode::Route,
        Some("open") => ForwardMode::Open,
        Some(_) => ForwardMode::Bridge,
    };
    let bridge = attr(child(root, "bridge"), "name").unwrap_or_default();
    let mtu = attr(child(root, "mtu"), "size").and_then(|s| s.parse().ok());
    let domain = attr(child(root, "domain"), "name");
    let dns = attr(child(root, "dns"), "enable").as_deref() != Some("no");
    let ip = child(root, "ip");
    let cidr = ip.and_then(|ip| {
        let address: IpAddr = ip.attribute("address")?.parse().ok()?;
        let prefix = match ip.attribute("prefix") {
            Some(p) => p.parse().ok()?,
            None => match ip.attribute("netmask")?.parse::<IpAddr>().ok()? {
                IpAddr::V4(mask) => ipnet::ipv4_mask_to_prefix(mask).ok()?,
                IpAddr::V6(_) => return None,
            },
        };
        IpNet::new(address, prefix).ok().map(|n| n.trunc())
    });
    let dhcp_node = ip.and_then(|ip| child(ip, "dhcp"));
    let dhcp = dhcp_node.and_then(|d| child(d, "range")).and_then(|r| {
        Some((
            r.attribute("start")?.parse().ok()?,
            r.attribute("end")?.parse().ok()?,
        ))
    });
    let mut hosts: Vec<DhcpHost> = dhcp_node
        .map(|d| {
            d.children()
                .filter(|c| c.has_tag_name("host"))
                .filter_map(|h| {
                    Some(DhcpHost {
                        mac: h.attribute("mac")?.to_ascii_lowercase(),
                        ip: h.attribute("ip")?.parse().ok()?,
                        name: h.attribute("name").unwrap_or_default().to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    hosts.sort_by(|a, b| a.mac.cmp(&b.mac));
    let mut dns_hosts: Vec<DnsHost> = child(root, "dns")
        .map(|dns| {
            dns.children()
                .filter(|c| c.has_tag_name("host"))
                .filter_map(|h| {
                    Some(DnsHost {
                        ip: h.attribute("ip")?.parse().ok()?,
                        names: h
                            .children()
                            .filter(|c| c.has_tag_name("hostname"))
                            .filter_map(|c| c.text().map(str::to_string))
                            .collect(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    dns_hosts.sort_by_key(|h| h.ip);
    let spec = NetworkSpec {
        name,
        mode,
        bridge,
        cidr,
        dhcp,
        hosts,
        dns_hosts,
        domain,
        mtu,
        dns,
        autostart,
    };
    Ok((spec, owner_mark(root)))
}

pub fn parse_pool(xml: &str, autostart: bool) -> Result<PoolSpec, String> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    Ok(PoolSpec {
        name: child_text(root, "name").unwrap_or_default(),
        path: child(root, "target")
            .and_then(|t| child_text(t, "path"))
            .unwrap_or_default(),
        autostart,
    })
}

/// A volume as libvirt describes it: name, capacity, format, and its backing file's path.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    pub name: String,
    pub path: String,
    pub capacity: u64,
    pub format: VolumeFormat,
    /// Less allocated than its capacity.
    pub thin: bool,
    pub backing_path: Option<String>,
}

pub fn parse_volume(xml: &str) -> Result<VolumeInfo, String> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    let capacity_node = child(root, "capacity");
    let unit = capacity_node
        .and_then(|c| c.attribute("unit"))
        .unwrap_or("bytes");
    let amount: u64 = capacity_node
        .and_then(|c| c.text())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let factor = unit_factor(unit);
    let allocation: Option<u64> = child(root, "allocation").and_then(|a| {
        Some(
            a.text()?.trim().parse::<u64>().ok()?
                * unit_factor(a.attribute("unit").unwrap_or("bytes")),
        )
    });
    let target = child(root, "target");
    let format = match attr(target.and_then(|t| child(t, "format")), "type").as_deref() {
        Some("qcow2") => VolumeFormat::Qcow2,
        _ => VolumeFormat::Raw,
    };
    Ok(VolumeInfo {
        name: child_text(root, "name").unwrap_or_default(),
        path: target
            .and_then(|t| child_text(t, "path"))
            .unwrap_or_default(),
        capacity: amount.saturating_mul(factor),
        thin: allocation.is_none_or(|a| a < amount.saturating_mul(factor)),
        format,
        backing_path: child(root, "backingStore").and_then(|b| child_text(b, "path")),
    })
}

pub(super) fn unit_factor(unit: &str) -> u64 {
    match unit {
        "KiB" | "K" | "k" | "KB" => 1 << 10,
        "MiB" | "M" | "MB" => 1 << 20,
        "GiB" | "G" | "GB" => 1 << 30,
        "TiB" | "T" | "TB" => 1 << 40,
        _ => 1,
    }
}

/// A domain as parsed: its spec (with disks still by pool and volume) and its UUID.
pub struct DomainInfo {
    pub spec: VmSpec,
    pub mark: Option<OwnerMark>,
    /// The plan kcli's metadata names, if any (kcli's plans, and siteplan's own).
    pub kcli_plan: Option<String>,
    pub uuid: Option<String>,
    /// Disks given by file path rather than pool and volume, to resolve against observed volumes.
    pub file_disks: Vec<(usize, String)>,
}

impl DomainInfo {
    /// Disks and boot files given by path that are volumes of a pool, named as such.
    pub fn resolve_paths(&mut self, by_path: &std::collections::HashMap<String, (String, String)>) {
        for (index, path) in &self.file_disks {
            if let (Some(disk), Some((pool, volume))) =
                (self.spec.disks.get_mut(*index), by_path.get(path))
            {
                disk.pool = pool.clone();
                disk.volume = volume.clone();
            }
        }
        for file in self.spec.kernel.iter_mut().chain(&mut self.spec.initrd) {
            if let BootFile::Path(path) = file {
                if let Some((pool, volume)) = by_path.get(path.as_str()) {
                    *file = BootFile::Volume {
                        pool: pool.clone(),
                        volume: volume.clone(),
                    };
                }
            }
        }
    }
}

pub fn parse_domain(xml: &str, running: bool, autostart: bool) -> Result<DomainInfo, String> {
    let doc = parse(xml)?;
    let root = doc.root_element();
    let mark = owner_mark(root);
    let memory = child(root, "memory");
    let memory_kib: u64 = memory
        .and_then(|m| m.text())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    let memory_mib = match memory.and_then(|m| m.attribute("unit")).unwrap_or("KiB") {
        "MiB" | "M" => memory_kib,
        "GiB" | "G" => memory_kib * 1024,
        "bytes" | "b" => memory_kib / (1 << 20),
        _ => memory_kib / 1024,
    };
    let virt_type = match root.attribute("type") {
        Some("kvm") => VirtType::Kvm,
        Some("test") => mark
            .as_ref()
            .and_then(|m| match &m.spec {
                Spec::Vm(v) => Some(v.virt_type),
                _ => None,
            })
            .unwrap_or(VirtType::Qemu),
        _ => VirtType::Qemu,
    };
    let cpu = child(root, "cpu");
    let cpu_model = match attr(cpu, "mode").as_deref() {
        Some("custom") | None => cpu
            .and_then(|c| child_text(c, "model"))
            .or_else(|| {
                // The test driver keeps no CPU element: report what was asked for.
                mark.as_ref().and_then(|m| match &m.spec {
                    Spec::Vm(v) => Some(v.cpu_model.clone()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| "host-model".into()),
        Some(mode) => mode.to_string(),
    };
    let os = child(root, "os");
    let uefi = attr(os, "firmware").as_deref() == Some("efi")
        || os.and_then(|o| child(o, "loader")).is_some()
        || (root.attribute("type") == Some("test")
            && mark
                .as_ref()
                .is_some_and(|m| matches!(&m.spec, Spec::Vm(v) if v.uefi)));
    let boot_file = |name: &str| {
        os.and_then(|o| child_text(o, name))
            .map(|path| BootFile::Path(path.trim().to_string()))
            .filter(|f| *f != BootFile::Path(String::new()))
    };
    let kernel = boot_file("kernel");
    let initrd = kernel.as_ref().and_then(|_| boot_file("initrd"));
    let cmdline = kernel
        .as_ref()
        .and_then(|_| os.and_then(|o| child_text(o, "cmdline")));
    let mut guest_agent = false;
    let mut disks = Vec::new();
    let mut seed = None;
    let mut file_disks = Vec::new();
    let mut nics = Vec::new();
    if let Some(devices) = child(root, "devices") {
        guest_agent = devices.children().any(|c| {
            c.has_tag_name("channel")
                && attr(child(c, "target"), "name").as_deref() == Some(GUEST_AGENT_PORT)
        });
        for disk in devices.children().filter(|c| c.has_tag_name("disk")) {
            if disk.attribute("device").unwrap_or("disk") != "disk" {
                continue;
            }
            let source = child(disk, "source");
            let bus = match attr(child(disk, "target"), "bus").as_deref() {
                Some("scsi") => Bus::Scsi,
                Some("sata") => Bus::Sata,
                Some("ide") => Bus::Ide,
                _ => Bus::Virtio,
            };
            let is_seed = attr(child(disk, "alias"), "name").as_deref() == Some(SEED_ALIAS);
            match (
                attr(source, "pool"),
                attr(source, "volume"),
                attr(source, "file"),
            ) {
                (Some(pool), Some(volume), _) => {
                    if is_seed {
                        seed = Some((pool, volume));
                    } else {
                        disks.push(DiskSpec { pool, volume, bus });
                    }
                }
                (_, _, Some(file)) if !is_seed => {
                    file_disks.push((disks.len(), file.clone()));
                    disks.push(DiskSpec {
                        pool: String::new(),
                        volume: file,
                        bus,
                    });
                }
                _ => {}
            }
        }
        for iface in devices.children().filter(|c| c.has_tag_name("interface")) {
            nics.push(NicSpec {
                network: attr(child(iface, "source"), "network")
                    .or_else(|| attr(child(iface, "source"), "bridge"))
                    .unwrap_or_default(),
                mac: attr(child(iface, "mac"), "address").map(|m| m.to_ascii_lowercase()),
                model: attr(child(iface, "model"), "type").unwrap_or_else(|| "virtio".into()),
            });
        }
    }
    let spec = VmSpec {
        name: child_text(root, "name").unwrap_or_default(),
        memory_mib,
        vcpus: child_text(root, "vcpu")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1),
        cpu_model,
        virt_type,
        uefi,
        disks,
        nics,
        seed,
        running,
        autostart,
        kernel,
        initrd,
        cmdline,
        guest_agent,
        // Not in libvirt's definition: the mark records which seed the VM was defined with.
        seed_sha256: match &mark {
            Some(OwnerMark {
                spec: Spec::Vm(marked),
                ..
            }) => marked.seed_sha256.clone(),
            _ => None,
        },
    };
    Ok(DomainInfo {
        spec,
        mark,
        kcli_plan: kcli_plan(root),
        uuid: child_text(root, "uuid"),
        file_disks,
    })
}

/// The plan kcli recorded in a domain's metadata (`<kvirt:info><kvirt:plan>`), as kcli itself
/// writes it and siteplan writes it too.
pub(super) fn kcli_plan(root: roxmltree::Node) -> Option<String> {
    child(root, "metadata")?
        .children()
        .find(|c| c.tag_name().namespace() == Some(KCLI_NS) && c.tag_name().name() == "info")?
        .children()
        .find(|c| c.tag_name().namespace() == Some(KCLI_NS) && c.tag_name().name() == "plan")?
        .text()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// A running domain's NICs on `network` (from its live XML), as the two live updates that move
/// one onto the network made again: first to its bridge as a bridge interface, then back to
/// the network. libvirt moves a NIC only when its source changes; the same network name with
/// the same bridge is no change to it, though the bridge it was plugged into is gone.
pub fn replug_updates(live_xml: &str, network: &str, bridge: &str) -> Vec<(String, [String; 2])> {
    let Ok(doc) = roxmltree::Document::parse(live_xml) else {
        return Vec::new();
    };
    let mut updates = Vec::new();
    for nic in doc.descendants().filter(|n| {
        n.has_tag_name("interface")
            && n.attribute("type") == Some("network")
            && n.parent().is_some_and(|p| p.has_tag_name("devices"))
    }) {
        let child = |tag: &str, attr: &str| {
            nic.children()
                .find(|c| c.has_tag_name(tag))
                .and_then(|c| c.attribute(attr))
                .map(str::to_string)
        };
        if child("source", "network").as_deref() != Some(network) {
            continue;
        }
        let Some(mac) = child("mac", "address") else {
            continue;
        };
        let model = child("model", "type");
        let alias = child("alias", "name");
        let build = |kind: &str, source: (&str, &str)| -> io::Result<String> {
            let mut w = writer();
            w.create_element("interface")
                .with_attribute(("type", kind))
                .write_inner_content(|w| {
                    w.create_element("mac")
                        .with_attribute(("address", mac.as_str()))
                        .write_empty()?;
                    w.create_element("source")
                        .with_attribute(source)
                        .write_empty()?;
                    if let Some(model) = &model {
                        w.create_element("model")
                            .with_attribute(("type", model.as_str()))
                            .write_empty()?;
                    }
                    if let Some(alias) = &alias {
                        w.create_element("alias")
                            .with_attribute(("name", alias.as_str()))
                            .write_empty()?;
                    }
                    Ok(())
                })?;
            Ok(finish(w))
        };
        if let (Ok(to_bridge), Ok(to_network)) = (
            build("bridge", ("bridge", bridge)),
            build("network", ("network", network)),
        ) {
            updates.push((mac, [to_bridge, to_network]));
        }
    }
    updates
}
