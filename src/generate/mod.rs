//! `plan generate`: a plan in kcli's format written from live resources, such that the plan,
//! applied with adoption, changes nothing but the marks.
//!
//! Pure: what a provider holds goes in (`Found`), plan text comes out (`Generated`). Which
//! resources are chosen, and the check that the text reads back as what was found, are
//! `ops::generate`'s.
//!
//! What is written:
//! - each VM with what it is (memory, CPUs, disks by size and volume name, NICs with their
//!   MACs), leaving out what the plan reader gives anyway, so the plan reads as one a person
//!   would write;
//! - where two or more VMs share every setting but their disks' names and their NICs, those
//!   settings once, as a profile (`profiles`);
//! - a cloud-init seed siteplan wrote, read back exactly (`cloudinit::recover`): keys, commands,
//!   files, static addresses; a root password never: it becomes a `?required` parameter;
//! - the networks chosen, with the DHCP reservations and DNS records their VMs' keys make.

mod profiles;
mod text;

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use serde_norway::{Mapping, Value};

use crate::cloudinit::{SeedDocuments, SeedInput};
use crate::manifest::model::disk_volume;
use crate::plan::model::spec::{
    BootFile, Bus, ForwardMode, NetworkSpec, PoolSpec, VmSpec, VolumeFormat, VolumeSource,
    VolumeSpec,
};

/// What a provider holds, chosen for the plan.
#[derive(Debug, Default)]
pub struct Found {
    /// Where it was read, for the header.
    pub provider: String,
    pub vms: Vec<VmSpec>,
    /// The VMs' disk volumes, by pool and name.
    pub volumes: BTreeMap<(String, String), VolumeSpec>,
    /// The networks the plan declares (the others its VMs use are only named).
    pub networks: Vec<NetworkSpec>,
    /// The pools the plan declares (the others its disks are in are only named).
    pub pools: Vec<PoolSpec>,
    /// The images the plan declares, with the URL they were fetched from (the others its
    /// disks are made from are only named).
    pub images: Vec<VolumeSpec>,
    /// Each VM's seed, read from its seed volume, by VM.
    pub seeds: BTreeMap<String, SeedDocuments>,
}

/// The plan, and what it could not say.
#[derive(Debug, Default)]
pub struct Generated {
    pub text: String,
    /// The `?required` parameters and the values found for them: for checking the plan, never
    /// written anywhere.
    pub secrets: BTreeMap<String, String>,
    /// What the plan could not say as it was found, one line each.
    pub notes: Vec<String>,
}

/// One entry of the plan as it will be written: its keys in order.
type Keys = Vec<(&'static str, Value)>;

pub fn generate(found: &Found) -> Generated {
    let mut out = Generated::default();
    let mut entries: Vec<(String, Keys)> = Vec::new();
    let passwords = password_parameters(found);

    // What the VMs' keys make in the declared networks, so the networks' entries leave it out.
    let mut made_hosts: BTreeSet<(String, String)> = BTreeSet::new();
    let mut made_records: BTreeSet<(String, String)> = BTreeSet::new();

    let mut vms = Vec::new();
    for vm in &found.vms {
        let seed = match found.seeds.get(&vm.name) {
            Some(docs) => match crate::cloudinit::recover(docs) {
                Some(input) if input.hostname == vm.name => Some(input),
                _ => {
                    out.notes.push(format!(
                        "vm/{}: its cloud-init seed was not written by siteplan, so the plan \
                         cannot make it again: written with `cloudinit: false`",
                        vm.name
                    ));
                    None
                }
            },
            None => None,
        };
        let keys = vm_keys(
            vm,
            seed.as_ref(),
            found,
            &passwords,
            &mut made_hosts,
            &mut made_records,
            &mut out,
        );
        vms.push((vm.name.clone(), keys));
    }

    for pool in &found.pools {
        entries.push((
            pool.name.clone(),
            vec![("type", "pool".into()), ("path", pool.path.clone().into())],
        ));
    }
    for image in &found.images {
        let VolumeSource::Fetch { url, sha256 } = &image.source else {
            continue;
        };
        // A password in the URL (which marks do not keep) becomes a `?required` parameter.
        let shown = crate::secrets::hide_url_passwords(url);
        let url = match shown.split_once(crate::secrets::SENSITIVE) {
            Some((before, after)) => {
                let parameter = format!("{}_password", text::parameter_name(&image.name));
                out.secrets
                    .insert(parameter.clone(), crate::secrets::SENSITIVE.to_string());
                let Value::String(used) = text::parameter_use(&parameter) else {
                    unreachable!("a parameter's use is a string")
                };
                Value::from(format!("{before}{used}{after}"))
            }
            None => Value::from(shown.clone()),
        };
        let mut keys: Keys = vec![("type", "image".into()), ("url", url)];
        if image.pool != "default" {
            keys.push(("pool", image.pool.clone().into()));
        }
        if let Some(sha256) = sha256 {
            keys.push(("sha256", sha256.clone().into()));
        }
        if let Some(bytes) = image.capacity_bytes {
            keys.push(("size", size_value(bytes)));
        }
        entries.push((image.name.clone(), keys));
    }
    for net in &found.networks {
        entries.push((net.name.clone(), network_keys(net, &mut out)));
        for host in &net.hosts {
            if !made_hosts.contains(&(net.name.clone(), host.mac.clone())) {
                out.notes.push(format!(
                    "network/{}: its DHCP reservation of {} for {} ({}) is no VM's of the plan, \
                     and a plan makes reservations only for its VMs (`reserveip`)",
                    net.name, host.ip, host.name, host.mac
                ));
            }
        }
        for record in &net.dns_hosts {
            let Some((name, aliases)) = record.names.split_first() else {
                continue;
            };
            if made_records.contains(&(net.name.clone(), name.clone())) {
                continue;
            }
            let mut keys: Keys = vec![
                ("type", "dns".into()),
                ("net", net.name.clone().into()),
                ("ip", record.ip.to_string().into()),
            ];
            if !aliases.is_empty() {
                keys.push(("alias", strings(aliases)));
            }
            entries.push((name.clone(), keys));
        }
    }

    // A plan names each entry once; libvirt lets a VM, a network and a pool share a name. The
    // VM keeps it; the other is used by name but not declared.
    let mut taken: BTreeSet<String> = vms.iter().map(|(n, _)| n.clone()).collect();
    entries.retain(|(name, keys)| {
        let usable = crate::manifest::validate::usable_name(name);
        if usable && taken.insert(name.clone()) {
            return true;
        }
        let kind = keys
            .first()
            .and_then(|(_, v)| v.as_str().map(str::to_string))
            .unwrap_or_default();
        out.notes.push(if usable {
            format!(
                "{kind} `{name}` has the name of another entry, and a plan names each entry \
                 once: it is used as it is, not declared"
            )
        } else {
            format!(
                "{kind} `{name}` cannot name an entry of a plan: it is used as it is, not declared"
            )
        });
        false
    });
    let names: BTreeSet<String> = entries
        .iter()
        .map(|(n, _)| n.clone())
        .chain(vms.iter().map(|(n, _)| n.clone()))
        .collect();
    let (profiles, vms) = profiles::factor(vms, &names);
    for (name, keys) in profiles {
        let mut with_type: Keys = vec![("type", "profile".into())];
        with_type.extend(keys);
        entries.push((name, with_type));
    }
    entries.extend(vms);

    for (vm, parameter) in &passwords {
        if let Some(value) = found
            .seeds
            .get(vm)
            .and_then(crate::cloudinit::recover)
            .and_then(|s| s.root_password)
        {
            out.secrets.insert(parameter.clone(), value);
        }
    }
    out.text = text::plan_text(found, &entries, &out.secrets, &out.notes);
    out
}

/// The parameter each VM's root password becomes: `rootpassword` when every VM has the same
/// one, else one per VM. The values are compared, never written.
fn password_parameters(found: &Found) -> BTreeMap<String, String> {
    let passwords: BTreeMap<&str, String> = found
        .seeds
        .iter()
        .filter_map(|(vm, docs)| {
            let password = crate::cloudinit::recover(docs)?.root_password?;
            Some((vm.as_str(), password))
        })
        .collect();
    let distinct: BTreeSet<&String> = passwords.values().collect();
    passwords
        .keys()
        .map(|vm| {
            let parameter = if distinct.len() == 1 {
                "rootpassword".to_string()
            } else {
                format!("{}_rootpassword", text::parameter_name(vm))
            };
            (vm.to_string(), parameter)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn vm_keys(
    vm: &VmSpec,
    seed: Option<&SeedInput>,
    found: &Found,
    passwords: &BTreeMap<String, String>,
    made_hosts: &mut BTreeSet<(String, String)>,
    made_records: &mut BTreeSet<(String, String)>,
    out: &mut Generated,
) -> Keys {
    let mut keys = Keys::new();
    let pool = vm
        .disks
        .first()
        .map(|d| d.pool.clone())
        .unwrap_or_else(|| "default".into());
    let volume = |pool: &str, name: &str| found.volumes.get(&(pool.to_string(), name.to_string()));
    let image = vm
        .disks
        .first()
        .and_then(|d| volume(&d.pool, &d.volume))
        .and_then(|v| v.backing.as_ref())
        .map(|(_, image)| image.clone());
    if let Some(image) = &image {
        keys.push(("image", image.clone().into()));
    }
    if pool != "default" {
        keys.push(("pool", pool.clone().into()));
    }
    keys.push(("numcpus", u64::from(vm.vcpus).into()));
    keys.push(("memory", vm.memory_mib.into()));
    if vm.cpu_model != "host-model" {
        keys.push(("cpumodel", vm.cpu_model.clone().into()));
    }
    if vm.virt_type == crate::plan::model::spec::VirtType::Qemu {
        keys.push(("virttype", "qemu".into()));
    }
    if vm.uefi {
        keys.push(("uefi", true.into()));
    }

    let mut disks = Vec::new();
    for (i, disk) in vm.disks.iter().enumerate() {
        let Some(spec) = volume(&disk.pool, &disk.volume) else {
            out.notes.push(format!(
                "vm/{}: its disk {} is no volume of a pool, and a plan's disks are volumes: \
                 left out",
                vm.name, disk.volume
            ));
            continue;
        };
        disks.push(disk_value(vm, i, spec, &pool, disk.bus, out));
    }
    // kcli gives a VM without `disks` one disk of 10 GiB.
    keys.push(("disks", Value::Sequence(disks)));

    let mut nets = Vec::new();
    let mut reserved = false;
    let mut recorded = false;
    for (i, nic) in vm.nics.iter().enumerate() {
        let mut map = Mapping::new();
        map.insert("name".into(), nic.network.clone().into());
        if let Some(mac) = &nic.mac {
            map.insert("mac".into(), mac.clone().into());
        }
        if nic.model != "virtio" {
            map.insert("type".into(), nic.model.clone().into());
        }
        let configured = seed.map(|s| s.nics.get(i));
        match configured {
            Some(Some(seed_nic)) if !seed_nic.unconfigured => {
                if let Some((ip, prefix)) = seed_nic.address {
                    map.insert("ip".into(), ip.to_string().into());
                    map.insert("prefix".into(), u64::from(prefix).into());
                    let net = found.networks.iter().find(|n| n.name == nic.network);
                    if let (Some(net), Some(mac)) = (net, &nic.mac) {
                        if net.hosts.iter().any(|h| &h.mac == mac && h.ip == ip) {
                            reserved = true;
                            made_hosts.insert((net.name.clone(), mac.clone()));
                        }
                        if !recorded
                            && net
                                .dns_hosts
                                .iter()
                                .any(|r| r.ip == ip && r.names.first() == Some(&vm.name))
                        {
                            recorded = true;
                            made_records.insert((net.name.clone(), vm.name.clone()));
                        }
                    }
                }
                if let Some(gateway) = seed_nic.gateway {
                    map.insert("gateway".into(), gateway.to_string().into());
                }
                if let Some(dns) = seed_nic.dns {
                    map.insert("dns".into(), dns.to_string().into());
                }
            }
            // A NIC the seed leaves alone (kcli's `noconf`); past the seed's last entry too.
            Some(_) => {
                map.insert("noconf".into(), true.into());
            }
            None => {}
        }
        nets.push(Value::Mapping(map));
    }
    keys.push(("nets", Value::Sequence(nets)));

    if !vm.running {
        keys.push(("start", false.into()));
    }
    if vm.autostart {
        keys.push(("autostart", true.into()));
    }
    if !vm.guest_agent {
        keys.push(("guestagent", false.into()));
    }
    match seed {
        None => keys.push(("cloudinit", false.into())),
        Some(seed) => {
            if let Some(domain) = &seed.domain {
                keys.push(("domain", domain.clone().into()));
            }
            if !seed.keys.is_empty() {
                keys.push(("keys", strings(&seed.keys)));
            }
            if seed.root_password.is_some() {
                if let Some(parameter) = passwords.get(&vm.name) {
                    keys.push(("rootpassword", text::parameter_use(parameter)));
                }
            }
            if !seed.cmds.is_empty() {
                keys.push(("cmds", strings(&seed.cmds)));
            }
            // A file that holds a secret (a private key, a file named like a token) is not
            // written: a plan goes into git.
            let (secret, files): (Vec<_>, Vec<_>) = seed.files.iter().partition(|f| {
                !crate::secrets::private_key_blocks(&f.content).is_empty()
                    || crate::secrets::is_sensitive_name(
                        f.path.rsplit('/').next().unwrap_or_default(),
                    )
            });
            for file in secret {
                out.notes.push(format!(
                    "vm/{}: its file {} holds a secret, which a plan must not: left out (give \
                     it back as `origin:`, a file the plan may read, or through a parameter)",
                    vm.name, file.path
                ));
            }
            if !files.is_empty() {
                let files = files
                    .into_iter()
                    .map(|f| {
                        let mut map = Mapping::new();
                        map.insert("path".into(), f.path.clone().into());
                        map.insert("content".into(), f.content.clone().into());
                        if let Some(owner) = &f.owner {
                            map.insert("owner".into(), owner.clone().into());
                        }
                        if let Some(mode) = f.mode {
                            map.insert("mode".into(), format!("{mode:04o}").into());
                        }
                        Value::Mapping(map)
                    })
                    .collect();
                keys.push(("files", Value::Sequence(files)));
            }
        }
    }
    if reserved {
        keys.push(("reserveip", true.into()));
    }
    if recorded {
        keys.push(("reservedns", true.into()));
    }
    let boot_file = |file: &BootFile| -> Value {
        match file {
            BootFile::Path(path) => path.clone().into(),
            BootFile::Volume { volume, .. } => volume.clone().into(),
        }
    };
    if let Some(kernel) = &vm.kernel {
        keys.push(("kernel", boot_file(kernel)));
    }
    if let Some(initrd) = &vm.initrd {
        keys.push(("initrd", boot_file(initrd)));
    }
    if let Some(cmdline) = &vm.cmdline {
        keys.push(("cmdline", cmdline.clone().into()));
    }
    keys
}

/// One disk as kcli writes it: its size alone where nothing else differs from the VM's.
fn disk_value(
    vm: &VmSpec,
    index: usize,
    spec: &VolumeSpec,
    vm_pool: &str,
    bus: Bus,
    out: &mut Generated,
) -> Value {
    if spec.format != VolumeFormat::Qcow2 {
        out.notes.push(format!(
            "vm/{}: its disk {} is {}, and a plan's disks are qcow2: adopting it would need \
             making it again, which adoption never does",
            vm.name,
            spec.name,
            spec.format.as_str()
        ));
    }
    let size = match spec.capacity_bytes {
        Some(bytes) => size_value(bytes),
        None => Value::from(10u64),
    };
    let mut map = Mapping::new();
    map.insert("size".into(), size.clone());
    if spec.name != disk_volume(&vm.name, index) {
        map.insert("name".into(), spec.name.clone().into());
    }
    if spec.pool != vm_pool {
        map.insert("pool".into(), spec.pool.clone().into());
    }
    if bus != Bus::Virtio {
        map.insert("interface".into(), bus.as_str().into());
    }
    if !spec.thin {
        map.insert("thin".into(), false.into());
    }
    if index > 0 {
        if let Some((_, image)) = &spec.backing {
            map.insert("image".into(), image.clone().into());
        }
    }
    if map.len() == 1 {
        size
    } else {
        Value::Mapping(map)
    }
}

/// A size in kcli's terms: whole GiB as a number, else with the largest unit that is exact.
fn size_value(bytes: u64) -> Value {
    const GIB: u64 = 1 << 30;
    if bytes.is_multiple_of(GIB) {
        return (bytes / GIB).into();
    }
    let (n, unit) = if bytes.is_multiple_of(1 << 20) {
        (bytes >> 20, "M")
    } else {
        (bytes.div_ceil(1 << 10), "K")
    };
    format!("{n}{unit}").into()
}

fn network_keys(net: &NetworkSpec, out: &mut Generated) -> Keys {
    let mut keys: Keys = vec![("type", "network".into())];
    if let Some(cidr) = net.cidr {
        keys.push(("cidr", cidr.to_string().into()));
    }
    match net.mode {
        ForwardMode::Nat => {}
        ForwardMode::Isolated => keys.push(("nat", false.into())),
        ForwardMode::Route => keys.push(("forward_mode", "route".into())),
        ForwardMode::Open => keys.push(("forward_mode", "open".into())),
        ForwardMode::Bridge => keys.push(("bridge", true.into())),
    }
    if net.mode != ForwardMode::Bridge {
        match (net.dhcp, net.cidr) {
            (None, Some(_)) => keys.push(("dhcp", false.into())),
            (Some((start, end)), Some(cidr)) => {
                if Some(start) != cidr.hosts().nth(1) {
                    keys.push(("dhcp_start", start.to_string().into()));
                }
                if Some(end) != last_host(&cidr) {
                    keys.push(("dhcp_end", end.to_string().into()));
                }
            }
            _ => {}
        }
        match &net.domain {
            Some(domain) if domain != &net.name => keys.push(("domain", domain.clone().into())),
            Some(_) => {}
            None => out.notes.push(format!(
                "network/{}: it has no DNS domain, and a plan's network always has one (its \
                 name by default)",
                net.name
            )),
        }
        if !net.dns {
            keys.push(("dns", false.into()));
        }
    }
    if net.bridge != net.name {
        keys.push(("bridgename", net.bridge.clone().into()));
    }
    if let Some(mtu) = net.mtu {
        keys.push(("mtu", u64::from(mtu).into()));
    }
    keys
}

/// The last address DHCP hands out by default, as the plan reader works it out.
fn last_host(cidr: &IpNet) -> Option<std::net::IpAddr> {
    match cidr {
        IpNet::V4(net) if net.prefix_len() < 31 => Some(std::net::IpAddr::V4(
            (u32::from(net.broadcast()) - 1).into(),
        )),
        _ => cidr.hosts().last(),
    }
}

fn strings(items: &[String]) -> Value {
    Value::Sequence(items.iter().map(|s| s.clone().into()).collect())
}

#[cfg(test)]
mod tests;
