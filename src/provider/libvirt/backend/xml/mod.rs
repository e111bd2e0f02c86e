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

pub mod kept;
mod parse;
pub use parse::*;

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
        let owner = match &mark.group {
            Some(group) => owner.with_attribute(("group", group.as_str())),
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

#[cfg(test)]
mod tests;
