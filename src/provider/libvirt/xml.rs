//! libvirt XML: built with an XML writer from specs, and parsed back into specs.
//!
//! Parsing reads only what a spec holds, so what libvirt adds (UUIDs, bridge MACs, NAT port
//! ranges, PCI addresses) never shows up as a difference.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::{Reader, Writer};

use crate::plan::model::spec::*;
use crate::provider::OwnerMark;

/// The namespace of siteplan's ownership mark in `<metadata>`.
pub const OWNER_NS: &str = "urn:siteplan:owner:1";
/// kcli's namespace, written too so that `kcli list plan` shows siteplan's VMs.
pub const KCLI_NS: &str = "kvirt";
/// libvirt keeps user aliases that start with `ua-`: this one marks the cloud-init seed disk.
pub const SEED_ALIAS: &str = "ua-siteplan-seed";
/// The seed's device index on the virtio bus: `vdz`.
const SEED_INDEX: usize = 25;

type W = Writer<Vec<u8>>;

fn writer() -> W {
    Writer::new_with_indent(Vec::new(), b' ', 2)
}

fn finish(w: W) -> String {
    String::from_utf8(w.into_inner()).unwrap_or_default()
}

fn text(w: &mut W, name: &str, value: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))?;
    Ok(())
}

fn metadata(w: &mut W, mark: Option<&OwnerMark>) -> io::Result<()> {
    let Some(mark) = mark else {
        return Ok(());
    };
    let spec = serde_json::to_string(&mark.spec).map_err(io::Error::other)?;
    w.create_element("metadata").write_inner_content(|w| {
        let owner = w
            .create_element("siteplan:owner")
            .with_attribute(("xmlns:siteplan", OWNER_NS))
            .with_attribute(("plan", mark.plan.as_str()));
        let owner = if mark.prevent_destroy {
            owner.with_attribute(("prevent_destroy", "true"))
        } else {
            owner
        };
        let owner = match &mark.created {
            Some(created) => owner.with_attribute(("created", created.as_str())),
            None => owner,
        };
        let owner = match &mark.applied_from {
            Some(file) => owner.with_attribute(("applied_from", file.as_str())),
            None => owner,
        };
        owner.write_text_content(BytesText::new(&spec))?;
        w.create_element("kvirt:info")
            .with_attribute(("xmlns:kvirt", KCLI_NS))
            .write_inner_content(|w| text(w, "kvirt:plan", &mark.plan))?;
        Ok(())
    })?;
    Ok(())
}

pub fn network_xml(spec: &NetworkSpec, mark: Option<&OwnerMark>) -> io::Result<String> {
    let mut w = writer();
    w.create_element("network").write_inner_content(|w| {
        text(w, "name", &spec.name)?;
        metadata(w, mark)?;
        let mode = match spec.mode {
            ForwardMode::Nat => Some("nat"),
            ForwardMode::Route => Some("route"),
            ForwardMode::Open => Some("open"),
            ForwardMode::Bridge => Some("bridge"),
            ForwardMode::Isolated => None,
        };
        if let Some(mode) = mode {
            w.create_element("forward")
                .with_attribute(("mode", mode))
                .write_empty()?;
        }
        w.create_element("bridge")
            .with_attribute(("name", spec.bridge.as_str()))
            .write_empty()?;
        if let Some(mtu) = spec.mtu {
            w.create_element("mtu")
                .with_attribute(("size", mtu.to_string().as_str()))
                .write_empty()?;
        }
        if spec.mode == ForwardMode::Bridge {
            return Ok(());
        }
        if let Some(domain) = &spec.domain {
            w.create_element("domain")
                .with_attribute(("name", domain.as_str()))
                .write_empty()?;
        }
        if !spec.dns {
            w.create_element("dns")
                .with_attribute(("enable", "no"))
                .write_empty()?;
        } else if !spec.dns_hosts.is_empty() {
            w.create_element("dns").write_inner_content(|w| {
                for host in &spec.dns_hosts {
                    dns_host(w, host)?;
                }
                Ok(())
            })?;
        }
        if let Some(cidr) = &spec.cidr {
            let host = cidr.hosts().next().unwrap_or(cidr.network());
            let prefix = cidr.prefix_len().to_string();
            let mut ip = w
                .create_element("ip")
                .with_attribute(("address", host.to_string().as_str()))
                .with_attribute(("prefix", prefix.as_str()));
            if cidr.addr().is_ipv6() {
                ip = ip.with_attribute(("family", "ipv6"));
            }
            ip.write_inner_content(|w| {
                if spec.dhcp.is_none() && spec.hosts.is_empty() {
                    return Ok(());
                }
                w.create_element("dhcp").write_inner_content(|w| {
                    if let Some((start, end)) = spec.dhcp {
                        w.create_element("range")
                            .with_attribute(("start", start.to_string().as_str()))
                            .with_attribute(("end", end.to_string().as_str()))
                            .write_empty()?;
                    }
                    for host in &spec.hosts {
                        dhcp_host(w, host)?;
                    }
                    Ok(())
                })?;
                Ok(())
            })?;
        }
        Ok(())
    })?;
    Ok(finish(w))
}

fn dhcp_host(w: &mut W, host: &DhcpHost) -> io::Result<()> {
    w.create_element("host")
        .with_attribute(("mac", host.mac.as_str()))
        .with_attribute(("name", host.name.as_str()))
        .with_attribute(("ip", host.ip.to_string().as_str()))
        .write_empty()?;
    Ok(())
}

fn dns_host(w: &mut W, host: &DnsHost) -> io::Result<()> {
    w.create_element("host")
        .with_attribute(("ip", host.ip.to_string().as_str()))
        .write_inner_content(|w| {
            for name in &host.names {
                text(w, "hostname", name)?;
            }
            Ok(())
        })?;
    Ok(())
}

/// One DNS `<host>` element, for live updates of a network's DNS records.
pub fn dns_host_xml(host: &DnsHost) -> io::Result<String> {
    let mut w = Writer::new(Vec::new());
    dns_host(&mut w, host)?;
    Ok(finish(w))
}

/// One `<host>` element, for live updates of a network's DHCP reservations.
pub fn dhcp_host_xml(host: &DhcpHost) -> io::Result<String> {
    let mut w = Writer::new(Vec::new());
    dhcp_host(&mut w, host)?;
    Ok(finish(w))
}

pub fn pool_xml(spec: &PoolSpec) -> io::Result<String> {
    let mut w = writer();
    w.create_element("pool")
        .with_attribute(("type", "dir"))
        .write_inner_content(|w| {
            text(w, "name", &spec.name)?;
            w.create_element("target")
                .write_inner_content(|w| text(w, "path", &spec.path))?;
            Ok(())
        })?;
    Ok(finish(w))
}

/// A volume; `backing` is the backing volume's path and format, already looked up.
/// A thin volume has no allocation up front.
pub fn volume_xml(
    name: &str,
    capacity: u64,
    format: VolumeFormat,
    thin: bool,
    backing: Option<(&str, VolumeFormat)>,
) -> io::Result<String> {
    let mut w = writer();
    w.create_element("volume")
        .with_attribute(("type", "file"))
        .write_inner_content(|w| {
            text(w, "name", name)?;
            w.create_element("capacity")
                .with_attribute(("unit", "bytes"))
                .write_text_content(BytesText::new(&capacity.to_string()))?;
            let allocation = if thin { 0 } else { capacity };
            w.create_element("allocation")
                .with_attribute(("unit", "bytes"))
                .write_text_content(BytesText::new(&allocation.to_string()))?;
            w.create_element("target").write_inner_content(|w| {
                w.create_element("format")
                    .with_attribute(("type", format.as_str()))
                    .write_empty()?;
                Ok(())
            })?;
            if let Some((path, backing_format)) = backing {
                w.create_element("backingStore").write_inner_content(|w| {
                    text(w, "path", path)?;
                    w.create_element("format")
                        .with_attribute(("type", backing_format.as_str()))
                        .write_empty()?;
                    Ok(())
                })?;
            }
            Ok(())
        })?;
    Ok(finish(w))
}

/// Device names in attachment order for each bus.
fn target_dev(bus: Bus, index: usize) -> String {
    let prefix = match bus {
        Bus::Virtio => "vd",
        Bus::Scsi | Bus::Sata => "sd",
        Bus::Ide => "hd",
    };
    let mut suffix = String::new();
    let mut n = index;
    loop {
        suffix.insert(0, (b'a' + (n % 26) as u8) as char);
        if n < 26 {
            break;
        }
        n = n / 26 - 1;
    }
    format!("{prefix}{suffix}")
}

/// How the domain is built on this connection.
#[derive(Debug, Clone, Copy)]
pub struct DomainFlavor {
    /// libvirt's test driver: domain type `test`, no firmware or CPU model choices.
    pub test_driver: bool,
}

/// What libvirt records of the volumes a domain uses, by (pool, volume).
#[derive(Debug, Default)]
pub struct VolumeFacts {
    /// A disk's driver must name its format, or QEMU opens a qcow2 volume as raw.
    pub formats: std::collections::HashMap<(String, String), VolumeFormat>,
    /// A kernel or initrd is given to the hypervisor by path.
    pub paths: std::collections::HashMap<(String, String), String>,
}

/// The name of the virtio port the QEMU guest agent listens on (its udev rule starts it).
pub const GUEST_AGENT_PORT: &str = "org.qemu.guest_agent.0";

pub fn domain_xml(
    spec: &VmSpec,
    mark: Option<&OwnerMark>,
    uuid: Option<&str>,
    flavor: DomainFlavor,
    volumes: &VolumeFacts,
) -> io::Result<String> {
    let format_of = |pool: &str, volume: &str| {
        volumes
            .formats
            .get(&(pool.to_string(), volume.to_string()))
            .copied()
    };
    let path_of = |file: &BootFile| match file {
        BootFile::Path(path) => Ok(path.clone()),
        BootFile::Volume { pool, volume } => volumes
            .paths
            .get(&(pool.clone(), volume.clone()))
            .cloned()
            .ok_or_else(|| {
                io::Error::other(format!(
                    "volume {volume} is not in pool {pool}, so it cannot be booted"
                ))
            }),
    };
    let mut w = writer();
    let kind = if flavor.test_driver {
        "test"
    } else {
        match spec.virt_type {
            VirtType::Qemu => "qemu",
            VirtType::Kvm => "kvm",
        }
    };
    w.create_element("domain")
        .with_attribute(("type", kind))
        .write_inner_content(|w| {
            text(w, "name", &spec.name)?;
            if let Some(uuid) = uuid {
                text(w, "uuid", uuid)?;
            }
            metadata(w, mark)?;
            w.create_element("memory")
                .with_attribute(("unit", "MiB"))
                .write_text_content(BytesText::new(&spec.memory_mib.to_string()))?;
            text(w, "vcpu", &spec.vcpus.to_string())?;
            let mut os = w.create_element("os");
            if spec.uefi && !flavor.test_driver {
                os = os.with_attribute(("firmware", "efi"));
            }
            os.write_inner_content(|w| {
                w.create_element("type")
                    .with_attribute(("arch", "x86_64"))
                    .write_text_content(BytesText::new("hvm"))?;
                if let Some(kernel) = &spec.kernel {
                    text(w, "kernel", &path_of(kernel)?)?;
                    if let Some(initrd) = &spec.initrd {
                        text(w, "initrd", &path_of(initrd)?)?;
                    }
                    if let Some(cmdline) = &spec.cmdline {
                        text(w, "cmdline", cmdline)?;
                    }
                }
                w.create_element("boot")
                    .with_attribute(("dev", "hd"))
                    .write_empty()?;
                Ok(())
            })?;
            // QEMU 10 with libvirt 9 refuses to start a domain without ACPI; guests want it anyway.
            w.create_element("features").write_inner_content(|w| {
                w.create_element("acpi").write_empty()?;
                w.create_element("apic").write_empty()?;
                Ok(())
            })?;
            if !flavor.test_driver {
                match spec.cpu_model.as_str() {
                    "host-model" | "host-passthrough" | "maximum" => {
                        w.create_element("cpu")
                            .with_attribute(("mode", spec.cpu_model.as_str()))
                            .write_empty()?;
                    }
                    model => {
                        w.create_element("cpu")
                            .with_attribute(("mode", "custom"))
                            .write_inner_content(|w| text(w, "model", model))?;
                    }
                }
            }
            w.create_element("devices").write_inner_content(|w| {
                let mut per_bus = std::collections::HashMap::new();
                let mut next_dev = |bus: Bus| {
                    let key = match bus {
                        Bus::Scsi | Bus::Sata => Bus::Scsi,
                        other => other,
                    };
                    let n = per_bus.entry(key).or_insert(0usize);
                    // The seed keeps `vdz` whatever disks come and go, so a disk added to a
                    // running VM never takes the name the running seed has.
                    if key == Bus::Virtio && *n == SEED_INDEX {
                        *n += 1;
                    }
                    *n += 1;
                    target_dev(bus, *n - 1)
                };
                for disk in &spec.disks {
                    let dev = next_dev(disk.bus);
                    volume_disk(
                        w,
                        &disk.pool,
                        &disk.volume,
                        disk.bus,
                        &dev,
                        None,
                        format_of(&disk.pool, &disk.volume),
                    )?;
                }
                if let Some((pool, volume)) = &spec.seed {
                    let dev = target_dev(Bus::Virtio, SEED_INDEX);
                    volume_disk(
                        w,
                        pool,
                        volume,
                        Bus::Virtio,
                        &dev,
                        Some(SEED_ALIAS),
                        Some(VolumeFormat::Raw),
                    )?;
                }
                for nic in &spec.nics {
                    w.create_element("interface")
                        .with_attribute(("type", "network"))
                        .write_inner_content(|w| {
                            if let Some(mac) = &nic.mac {
                                w.create_element("mac")
                                    .with_attribute(("address", mac.as_str()))
                                    .write_empty()?;
                            }
                            w.create_element("source")
                                .with_attribute(("network", nic.network.as_str()))
                                .write_empty()?;
                            w.create_element("model")
                                .with_attribute(("type", nic.model.as_str()))
                                .write_empty()?;
                            Ok(())
                        })?;
                }
                if spec.guest_agent {
                    w.create_element("channel")
                        .with_attribute(("type", "unix"))
                        .write_inner_content(|w| {
                            w.create_element("target")
                                .with_attribute(("type", "virtio"))
                                .with_attribute(("name", GUEST_AGENT_PORT))
                                .write_empty()?;
                            Ok(())
                        })?;
                }
                if !flavor.test_driver {
                    w.create_element("serial")
                        .with_attribute(("type", "pty"))
                        .write_empty()?;
                    w.create_element("console")
                        .with_attribute(("type", "pty"))
                        .write_empty()?;
                    w.create_element("graphics")
                        .with_attribute(("type", "vnc"))
                        .with_attribute(("autoport", "yes"))
                        .with_attribute(("listen", "127.0.0.1"))
                        .write_empty()?;
                }
                Ok(())
            })?;
            Ok(())
        })?;
    Ok(finish(w))
}

fn volume_disk(
    w: &mut W,
    pool: &str,
    volume: &str,
    bus: Bus,
    dev: &str,
    alias: Option<&str>,
    format: Option<VolumeFormat>,
) -> io::Result<()> {
    w.create_element("disk")
        .with_attribute(("type", "volume"))
        .with_attribute(("device", "disk"))
        .write_inner_content(|w| {
            let mut driver = w.create_element("driver").with_attribute(("name", "qemu"));
            if let Some(format) = format {
                driver = driver.with_attribute(("type", format.as_str()));
            }
            driver.write_empty()?;
            w.create_element("source")
                .with_attribute(("pool", pool))
                .with_attribute(("volume", volume))
                .write_empty()?;
            w.create_element("target")
                .with_attribute(("dev", dev))
                .with_attribute(("bus", bus.as_str()))
                .write_empty()?;
            if let Some(alias) = alias {
                w.create_element("readonly").write_empty()?;
                w.create_element("alias")
                    .with_attribute(("name", alias))
                    .write_empty()?;
            }
            Ok(())
        })?;
    Ok(())
}

/// Wraps a domain's XML for a test-driver node file, recording whether it runs
/// (`<test:runstate>`: 1 running, 5 shut off). Copies the XML event by event.
/// A running domain's definition as its saved one would read: without the `id` attribute
/// libvirt writes into the root tag of a running domain (`<domain type='test' id='1'>`).
pub fn without_domain_id(xml: &str) -> String {
    let root_end = xml.find('>').unwrap_or(xml.len());
    let (root, rest) = xml.split_at(root_end);
    match root.find(" id='") {
        Some(start) => {
            let value = start + " id='".len();
            let end = root[value..]
                .find('\'')
                .map_or(root.len(), |e| value + e + 1);
            format!("{}{}{rest}", &root[..start], &root[end..])
        }
        None => xml.to_string(),
    }
}

/// How a domain is in the test driver's node file (`test:runstate`, libvirt's domain states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Running,
    Paused,
    Off,
}

pub fn test_driver_domain(xml: &str, state: RunState) -> io::Result<String> {
    let mut reader = Reader::from_str(xml);
    let mut w = Writer::new(Vec::new());
    let mut depth = 0usize;
    loop {
        let event = reader.read_event().map_err(io::Error::other)?;
        match event {
            Event::Start(start) if depth == 0 && start.name().as_ref() == "domain" => {
                depth += 1;
                let mut with_ns = BytesStart::new("domain");
                with_ns.extend_attributes(start.attributes().filter_map(Result::ok));
                with_ns
                    .push_attribute(("xmlns:test", "http://libvirt.org/schemas/domain/test/1.0"));
                w.write_event(Event::Start(with_ns))?;
            }
            Event::Start(start) => {
                depth += 1;
                w.write_event(Event::Start(start))?;
            }
            Event::End(end) => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    let number = match state {
                        RunState::Running => "1",
                        RunState::Paused => "3",
                        RunState::Off => "5",
                    };
                    w.create_element("test:runstate")
                        .write_text_content(BytesText::new(number))?;
                }
                w.write_event(Event::End(end))?;
            }
            Event::Eof => break,
            other => w.write_event(other)?,
        }
    }
    Ok(finish(w))
}

/// Copies one XML document's root element into `w` (for assembling a node file).
pub fn copy_element(w: &mut W, xml: &str) -> io::Result<()> {
    let mut reader = Reader::from_str(xml);
    loop {
        match reader.read_event().map_err(io::Error::other)? {
            Event::Eof => return Ok(()),
            Event::Decl(_) | Event::DocType(_) => {}
            other => w.write_event(other)?,
        }
    }
}

/// Builds a test-driver node file from object XMLs.
pub fn node_xml(
    networks: &[String],
    pools: &[(String, Vec<String>)],
    domains: &[String],
) -> io::Result<String> {
    let mut w = writer();
    w.create_element("node").write_inner_content(|w| {
        for n in networks {
            copy_element(w, n)?;
        }
        for (pool, volumes) in pools {
            // The pool's XML, with its volumes inside: the test driver reads them from there.
            let mut reader = Reader::from_str(pool);
            let mut depth = 0usize;
            loop {
                match reader.read_event().map_err(io::Error::other)? {
                    Event::Start(s) => {
                        depth += 1;
                        w.write_event(Event::Start(s))?;
                    }
                    Event::End(e) => {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            for v in volumes {
                                copy_element(w, v)?;
                            }
                        }
                        w.write_event(Event::End(e))?;
                    }
                    Event::Eof => break,
                    Event::Decl(_) => {}
                    other => w.write_event(other)?,
                }
            }
        }
        for d in domains {
            copy_element(w, d)?;
        }
        Ok(())
    })?;
    Ok(finish(w))
}

// ---- parsing ----

fn child<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    node.children().find(|c| c.has_tag_name(name))
}

fn child_text(node: roxmltree::Node, name: &str) -> Option<String> {
    child(node, name)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

fn attr(node: Option<roxmltree::Node>, name: &str) -> Option<String> {
    node.and_then(|n| n.attribute(name)).map(str::to_string)
}

fn parse(xml: &str) -> Result<roxmltree::Document<'_>, String> {
    roxmltree::Document::parse(xml)
        .map_err(|e| format!("libvirt returned XML that does not parse: {e}"))
}

/// The siteplan mark in a `<metadata>` element, if any.
fn owner_mark(root: roxmltree::Node) -> Option<OwnerMark> {
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

fn unit_factor(unit: &str) -> u64 {
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
fn kcli_plan(root: roxmltree::Node) -> Option<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Spec;

    fn vm() -> VmSpec {
        VmSpec {
            name: "web1".into(),
            memory_mib: 2048,
            vcpus: 2,
            cpu_model: "host-model".into(),
            virt_type: VirtType::Qemu,
            uefi: false,
            disks: vec![
                DiskSpec {
                    pool: "lab".into(),
                    volume: "web1_0.qcow2".into(),
                    bus: Bus::Virtio,
                },
                DiskSpec {
                    pool: "lab".into(),
                    volume: "web1_1.qcow2".into(),
                    bus: Bus::Virtio,
                },
            ],
            nics: vec![NicSpec {
                network: "labnet".into(),
                mac: Some("52:54:00:00:00:01".into()),
                model: "virtio".into(),
            }],
            seed: Some(("lab".into(), "web1-cidata.img".into())),
            running: true,
            autostart: false,
            kernel: None,
            initrd: None,
            cmdline: None,
            guest_agent: true,
            seed_sha256: None,
        }
    }

    /// A VM that boots a kernel from a volume and an initrd from a host path.
    fn booting_vm() -> VmSpec {
        VmSpec {
            kernel: Some(BootFile::Volume {
                pool: "lab".into(),
                volume: "vmlinuz".into(),
            }),
            initrd: Some(BootFile::Path("/srv/boot/initrd.img".into())),
            cmdline: Some("root=/dev/vda console=ttyS0".into()),
            ..vm()
        }
    }

    #[test]
    fn domain_xml_round_trips() {
        let spec = booting_vm();
        let mark = OwnerMark {
            plan: "lab".into(),
            spec: Spec::Vm(spec.clone()),
            prevent_destroy: true,
            created: None,
            applied_from: None,
        };
        let key = |volume: &str| ("lab".to_string(), volume.to_string());
        let facts = VolumeFacts {
            formats: [
                (key("web1_0.qcow2"), VolumeFormat::Qcow2),
                (key("web1_1.qcow2"), VolumeFormat::Qcow2),
            ]
            .into_iter()
            .collect(),
            paths: [(key("vmlinuz"), "/srv/lab/vmlinuz".to_string())]
                .into_iter()
                .collect(),
        };
        let xml = domain_xml(
            &spec,
            Some(&mark),
            None,
            DomainFlavor { test_driver: false },
            &facts,
        )
        .unwrap();
        insta::assert_snapshot!("domain_xml", xml);
        assert!(
            xml.contains(r#"<driver name="qemu" type="qcow2"/>"#),
            "{xml}"
        );
        let mut parsed = parse_domain(&xml, true, false).unwrap();
        // The kernel is given by path, which names the volume once the pools are known.
        assert_eq!(
            parsed.spec.kernel,
            Some(BootFile::Path("/srv/lab/vmlinuz".into()))
        );
        parsed.resolve_paths(&[("/srv/lab/vmlinuz".to_string(), key("vmlinuz"))].into());
        assert_eq!(parsed.spec, spec);
        assert_eq!(parsed.mark, Some(mark));
    }

    #[test]
    fn a_boot_volume_that_is_not_there_is_an_error_not_a_guess() {
        let err = domain_xml(
            &booting_vm(),
            None,
            None,
            DomainFlavor { test_driver: false },
            &VolumeFacts::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("volume vmlinuz is not in pool lab"),
            "{err}"
        );
    }

    #[test]
    fn network_xml_round_trips() {
        let spec = NetworkSpec {
            name: "labnet".into(),
            mode: ForwardMode::Nat,
            bridge: "labnet".into(),
            cidr: Some("192.168.150.0/24".parse().unwrap()),
            dhcp: Some((
                "192.168.150.100".parse().unwrap(),
                "192.168.150.200".parse().unwrap(),
            )),
            hosts: vec![DhcpHost {
                mac: "52:54:00:00:00:01".into(),
                ip: "192.168.150.11".parse().unwrap(),
                name: "web1".into(),
            }],
            dns_hosts: Vec::new(),
            domain: Some("lab.local".into()),
            mtu: Some(1500),
            dns: true,
            autostart: true,
        };
        let xml = network_xml(&spec, None).unwrap();
        insta::assert_snapshot!("network_xml", xml);
        let (parsed, mark) = parse_network(&xml, true).unwrap();
        assert_eq!(parsed, spec);
        assert_eq!(mark, None);
    }

    #[test]
    fn names_are_escaped_not_concatenated() {
        let mut spec = vm();
        spec.name = "a<b>&\"c".into();
        let xml = domain_xml(
            &spec,
            None,
            None,
            DomainFlavor { test_driver: true },
            &VolumeFacts::default(),
        )
        .unwrap();
        assert!(xml.contains("<name>a&lt;b&gt;&amp;&quot;c</name>"), "{xml}");
        assert_eq!(
            parse_domain(&xml, false, false).unwrap().spec.name,
            spec.name
        );
    }

    #[test]
    fn target_devices() {
        assert_eq!(target_dev(Bus::Virtio, 0), "vda");
        assert_eq!(target_dev(Bus::Virtio, 25), "vdz");
        assert_eq!(target_dev(Bus::Virtio, 26), "vdaa");
        assert_eq!(target_dev(Bus::Sata, 1), "sdb");
        let xml = domain_xml(
            &vm(),
            None,
            None,
            DomainFlavor { test_driver: false },
            &VolumeFacts::default(),
        )
        .unwrap();
        assert!(
            xml.contains(r#"<target dev="vdz" bus="virtio"/>"#),
            "the seed keeps vdz: {xml}"
        );
    }

    #[test]
    fn runstate_is_added_to_test_driver_domains() {
        let xml = domain_xml(
            &vm(),
            None,
            None,
            DomainFlavor { test_driver: true },
            &VolumeFacts::default(),
        )
        .unwrap();
        let wrapped = test_driver_domain(&xml, RunState::Off).unwrap();
        assert!(
            wrapped.contains("<test:runstate>5</test:runstate></domain>"),
            "{wrapped}"
        );
        assert!(roxmltree::Document::parse(&wrapped).is_ok());
    }

    #[test]
    fn a_running_domain_reads_as_its_saved_definition_without_its_id() {
        let running = "<domain type='test' id='4'>\n  <name>web1</name>\n</domain>";
        assert_eq!(
            without_domain_id(running),
            "<domain type='test'>\n  <name>web1</name>\n</domain>"
        );
        let saved = "<domain type='test'>\n  <name>id='7'</name>\n</domain>";
        assert_eq!(without_domain_id(saved), saved, "only the root tag's id");
    }
}
