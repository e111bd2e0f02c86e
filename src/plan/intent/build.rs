//! Building the intents from a loaded plan: references resolved, addresses and MACs worked out,
//! the files the plan names read, cloud-init documents rendered.

use super::*;

/// A MAC address derived from the plan, the VM and the NIC's position: stable across runs.
pub fn derived_mac(plan: &str, vm: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{plan}/{vm}/{index}"));
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        digest[0], digest[1], digest[2]
    )
}

pub use crate::manifest::model::disk_volume;

/// Reads a file the plan names (`scripts`, `files` with `origin`), given its full path.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// The plan's intents. `base` is the plan file's directory, for relative file paths, which are
/// read as the plan's access allows.
pub fn intents(manifest: &Manifest, plan: &str, base: &Path) -> Result<Intents, String> {
    intents_reading(manifest, plan, base, &|path| {
        manifest
            .access
            .read_text(path)
            .map_err(|refused| std::io::Error::other(refused.to_string()))
    })
}

/// As `intents`, reading the files the plan names with `read_file` (from a git revision, for
/// `plan diff --against`). Paths under `~/` are always read from this machine.
pub fn intents_reading(
    manifest: &Manifest,
    plan: &str,
    base: &Path,
    read_file: ReadFile,
) -> Result<Intents, String> {
    let refer = |r: &m::Ref, kind: m::Kind| refer(manifest, r, kind);

    // Static addresses with `reserveip`, by network: reserved in the network's DHCP.
    let mut reservations: BTreeMap<&str, Vec<Reservation>> = BTreeMap::new();
    for entry in &manifest.entries {
        let EntryKind::Vm(vm) = &entry.kind else {
            continue;
        };
        for (i, nic) in vm.nets.iter().enumerate() {
            if let (true, Some(ip)) = (vm.reserveip, &nic.ip) {
                reservations
                    .entry(nic.network.name.as_str())
                    .or_default()
                    .push(Reservation {
                        mac: nic
                            .mac
                            .clone()
                            .unwrap_or_else(|| derived_mac(plan, &entry.name, i)),
                        ip: ip.value,
                        host: entry.name.clone(),
                    });
            }
        }
    }
    // DNS records, by network: the entry's name, its name in the domain, then its aliases, as
    // kcli writes them.
    let mut records: BTreeMap<&str, Vec<DnsRecord>> = BTreeMap::new();
    for entry in &manifest.entries {
        if let EntryKind::Dns(record) = &entry.kind {
            if !declares_network(manifest, &record.net.name) {
                continue; // a record of its own (`What::Dns`)
            }
            let names = dns_names(&entry.name, record);
            records
                .entry(record.net.name.as_str())
                .or_default()
                .push(DnsRecord {
                    ip: record.ip.value,
                    names,
                });
        }
    }
    // kcli's `reservedns`: a VM's static address on a network of the plan gets a record for
    // its name (a DHCP guest's name is answered by dnsmasq from its lease).
    for entry in &manifest.entries {
        let EntryKind::Vm(vm) = &entry.kind else {
            continue;
        };
        if !vm.reservedns {
            continue;
        }
        let on_a_plan_network = vm.nets.iter().find_map(|nic| {
            let ip = nic.ip.as_ref()?;
            declares_network(manifest, &nic.network.name).then_some((nic, ip))
        });
        if let Some((nic, ip)) = on_a_plan_network {
            let mut names = vec![entry.name.clone()];
            names.extend(vm.domain.iter().map(|d| format!("{}.{d}", entry.name)));
            records
                .entry(nic.network.name.as_str())
                .or_default()
                .push(DnsRecord {
                    ip: ip.value,
                    names,
                });
        }
    }
    // Shared disks, by the VM they attach to.
    let mut shared: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for entry in &manifest.entries {
        if let EntryKind::Disk(disk) = &entry.kind {
            for vm in &disk.vms {
                shared
                    .entry(vm.name.as_str())
                    .or_default()
                    .push(entry.name.clone());
            }
        }
    }

    let mut items = Vec::new();
    // VMs with kcli's `wait`, so far.
    let mut waited_for: Vec<String> = Vec::new();
    for entry in &manifest.entries {
        let what = match &entry.kind {
            EntryKind::Profile => continue,
            // A DNS record is part of its network, when the plan makes it.
            EntryKind::Dns(record) if declares_network(manifest, &record.net.name) => continue,
            EntryKind::Dns(record) => What::Dns(DnsIntent {
                network: refer(&record.net, m::Kind::Network),
                record: DnsRecord {
                    ip: record.ip.value,
                    names: dns_names(&entry.name, record),
                },
            }),
            EntryKind::Network(net) => {
                let mut reserved = reservations.remove(entry.name.as_str()).unwrap_or_default();
                reserved.sort_by(|a, b| a.mac.cmp(&b.mac));
                let dns_records = merged(records.remove(entry.name.as_str()).unwrap_or_default());
                What::Network(network(net, reserved, dns_records))
            }
            EntryKind::Pool(pool) => What::Storage(StorageIntent {
                path: pool.path.clone(),
            }),
            EntryKind::Image(image) => What::Image(ImageIntent {
                storage: refer(&image.pool, m::Kind::Pool),
                url: match &image.url {
                    Some(url) => Some(readable_url(&absolute_url(url, base), manifest)?),
                    None => None,
                },
                sha256: image.sha256.clone(),
                size_bytes: image.size_bytes,
            }),
            EntryKind::Disk(disk) => What::Disk(DiskIntent {
                storage: refer(&disk.pool, m::Kind::Pool),
                size_bytes: disk.size_bytes,
                thin: disk.thin,
                image: disk.image.as_ref().map(|i| refer(i, m::Kind::Image)),
                vms: disk.vms.iter().map(|v| v.name.clone()).collect(),
            }),
            EntryKind::SecurityGroup(group) => {
                let mut ports: Vec<m::PortRange> = group.ports.iter().map(|p| p.value).collect();
                ports.sort();
                ports.dedup();
                What::SecurityGroup(SecurityGroupIntent {
                    network: refer(&group.network, m::Kind::Network),
                    ports,
                    source: group.source,
                })
            }
            EntryKind::Vm(vm) => {
                let mut vm = vm_intent(manifest, plan, &entry.name, vm, base, read_file)?;
                vm.shared_disks = shared.remove(entry.name.as_str()).unwrap_or_default();
                What::Vm(Box::new(vm))
            }
        };
        items.push(Intent {
            name: entry.name.clone(),
            entry: format!("{}/{}", entry.kind.kind(), entry.name),
            guards: Guards {
                prevent_destroy: entry.guards.prevent_destroy,
                create_before_destroy: entry.guards.create_before_destroy,
                ignore_changes: entry
                    .guards
                    .ignore_changes
                    .iter()
                    .map(|k| k.name.clone())
                    .collect(),
            },
            after: entry
                .depends_on
                .iter()
                .map(|d| d.name.clone())
                .chain(
                    matches!(entry.kind, EntryKind::Vm(_))
                        .then(|| waited_for.clone())
                        .into_iter()
                        .flatten(),
                )
                .collect(),
            what,
        });
        // kcli's `wait`: the VMs after this one (in the plan's order) wait for it.
        if let EntryKind::Vm(vm) = &entry.kind {
            if vm.wait {
                waited_for.push(entry.name.clone());
            }
        }
    }
    Ok(Intents { items })
}

/// A reference, and whether the plan declares what it names (as an entry of `kind`).
fn refer(manifest: &Manifest, r: &m::Ref, kind: m::Kind) -> Ref {
    Ref {
        name: r.name.clone(),
        declared: manifest.get(&r.name).is_some_and(|e| e.kind.kind() == kind),
    }
}

/// Whether the plan makes the network `name`.
fn declares_network(manifest: &Manifest, name: &str) -> bool {
    matches!(
        manifest.get(name).map(|e| &e.kind),
        Some(EntryKind::Network(_))
    )
}

/// A dns entry's names as kcli writes them: its own, its name in the domain, its aliases.
fn dns_names(name: &str, record: &m::DnsRecord) -> Vec<String> {
    let mut names = vec![name.to_string()];
    names.extend(record.domain.iter().map(|d| format!("{name}.{d}")));
    names.extend(record.aliases.iter().cloned());
    names
}

/// One record per address, its names in the order given (libvirt takes one `<host>` per
/// address), sorted by address.
fn merged(records: Vec<DnsRecord>) -> Vec<DnsRecord> {
    let mut by_ip: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for record in records {
        let names = by_ip.entry(record.ip).or_default();
        for name in record.names {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    by_ip
        .into_iter()
        .map(|(ip, names)| DnsRecord { ip, names })
        .collect()
}

fn network(
    net: &m::Network,
    reservations: Vec<Reservation>,
    dns_records: Vec<DnsRecord>,
) -> NetworkIntent {
    let cidr = net.cidr.as_ref().map(|c| c.value);
    let bridged = net.mode == m::NetworkMode::Bridge;
    let dhcp = match cidr {
        Some(cidr) if net.dhcp && !bridged => {
            let start = net
                .dhcp_start
                .as_ref()
                .map(|l| l.value)
                .or_else(|| cidr.hosts().nth(1));
            let end = net
                .dhcp_end
                .as_ref()
                .map(|l| l.value)
                .or_else(|| last_host(&cidr));
            start.zip(end)
        }
        _ => None,
    };
    NetworkIntent {
        forwarding: net.mode,
        bridge: net.bridgename.clone(),
        cidr,
        dhcp,
        reservations,
        dns_records,
        domain: (!bridged).then(|| net.domain.clone()),
        mtu: net.mtu,
        dns: net.dns,
    }
}

fn vm_intent(
    manifest: &Manifest,
    plan: &str,
    name: &str,
    vm: &m::Vm,
    base: &Path,
    read_file: ReadFile,
) -> Result<VmIntent, String> {
    let refer = |r: &m::Ref, kind: m::Kind| refer(manifest, r, kind);
    let disks = vm
        .disks
        .iter()
        .enumerate()
        .map(|(i, disk)| VmDisk {
            name: disk.name.clone().unwrap_or_else(|| disk_volume(name, i)),
            storage: refer(&disk.pool, m::Kind::Pool),
            size_bytes: disk.size_bytes,
            thin: disk.thin,
            bus: disk.interface,
            // The first disk comes from the VM's image; others from their own, if any.
            image: disk
                .image
                .as_ref()
                .or(if i == 0 { vm.image.as_ref() } else { None })
                .map(|img| refer(img, m::Kind::Image)),
        })
        .collect();
    let mut nics = Vec::new();
    let mut seed_nics = Vec::new();
    for (i, nic) in vm.nets.iter().enumerate() {
        let mac = nic
            .mac
            .clone()
            .unwrap_or_else(|| derived_mac(plan, name, i));
        let prefix = nic
            .prefix
            .or_else(|| match manifest.get(&nic.network.name)?.kind {
                EntryKind::Network(ref n) => n.cidr.as_ref().map(|c| c.value.prefix_len()),
                _ => None,
            });
        let address = nic.ip.as_ref().map(|ip| {
            (
                ip.value,
                prefix.unwrap_or(if ip.value.is_ipv4() { 24 } else { 64 }),
            )
        });
        seed_nics.push(SeedNic {
            mac: mac.clone(),
            address,
            gateway: nic.gateway.as_ref().map(|g| g.value),
            dns: nic.dns.or(vm.dns),
            unconfigured: nic.noconf,
        });
        nics.push(VmNic {
            network: refer(&nic.network, m::Kind::Network),
            mac,
            address,
            model: nic.model.clone(),
        });
    }
    let cloud_init = if vm.cloudinit {
        let mut vars = guestfiles::vm_variables(manifest, name, vm);
        vars.insert("plan".into(), plan.into());
        let files = GuestFiles {
            base,
            access: &manifest.access,
            read_file,
        };
        let (input, shown) = seed_inputs(name, vm, &vars, seed_nics, &files)?;
        let documents = cloudinit::documents(&input);
        let sha256 = hex::encode(Sha256::digest(format!(
            "{}\n{}\n{}",
            documents.user_data, documents.meta_data, documents.network_config
        )));
        Some(CloudInit {
            review: cloudinit::review_text(&shown),
            documents,
            sha256,
            storage: refer(&vm.pool, m::Kind::Pool),
        })
    } else {
        None
    };
    Ok(VmIntent {
        client: vm.client.clone(),
        antiaffinity: vm.antiaffinity.clone(),
        cpus: vm.numcpus,
        memory_mib: vm.memory_mib,
        cpu_model: vm.cpumodel.clone(),
        // kcli's default is kvm.
        virt_type: vm.virttype.unwrap_or(m::VirtType::Kvm),
        uefi: vm.uefi,
        disks,
        shared_disks: Vec::new(),
        nics,
        cloud_init,
        start: vm.start,
        autostart: vm.autostart,
        boot: vm.boot.as_ref().map(|boot| {
            let file = |f: &m::BootFile| match f {
                m::BootFile::Path(path) => BootFile::Path(path.value.clone()),
                m::BootFile::Image(image) => BootFile::Image {
                    image: refer(image, m::Kind::Image),
                    storage: refer(&vm.pool, m::Kind::Pool),
                },
            };
            DirectBoot {
                kernel: file(&boot.kernel),
                initrd: boot.initrd.as_ref().map(file),
                cmdline: boot.cmdline.clone(),
            }
        }),
        guest_agent: vm.guestagent,
        wait_timeout: std::time::Duration::from_secs(vm.wait_timeout_s),
        wait_command: vm.wait_command.clone(),
        flavor: vm.flavor.clone(),
        security_groups: vm
            .security_groups
            .iter()
            .map(|g| refer(g, m::Kind::SecurityGroup))
            .collect(),
        max_cpus: vm.max_cpus,
        max_memory_mib: vm.max_memory_mib,
    })
}

fn last_host(cidr: &IpNet) -> Option<IpAddr> {
    match cidr {
        IpNet::V4(net) if net.prefix_len() < 31 => {
            Some(IpAddr::V4((u32::from(net.broadcast()) - 1).into()))
        }
        _ => cidr.hosts().last(),
    }
}

/// `url`, if it names a local file the plan may read (or a remote one). A local file that is
/// not there yet is left to the fetch, which says so.
fn readable_url(url: &str, manifest: &Manifest) -> Result<String, String> {
    let local = match url.strip_prefix("file://") {
        Some(path) => Some(path),
        None => (!url.contains("://")).then_some(url),
    };
    match local.map(|path| manifest.access.check(Path::new(path))) {
        Some(Err(refused)) if !refused.missing => Err(format!("image {url}: {refused}")),
        _ => Ok(url.to_string()),
    }
}

/// A relative file path in an image URL is relative to the plan.
fn absolute_url(url: &str, base: &Path) -> String {
    if url.contains("://") || url.starts_with('/') {
        return url.to_string();
    }
    // Absolute and without `.` or `..`, worked out from the text alone: the URL is recorded in
    // marks, so it must not depend on whether the file exists yet.
    let path = std::path::absolute(base.join(url)).unwrap_or_else(|_| base.join(url));
    let mut clean = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean.display().to_string()
}
/// What a VM's seed holds, and the same as a reviewer may see it: each secret that a template
/// wrote into its commands, files and scripts shown as `(sensitive)` where it is.
/// Where a VM's scripts and `origin` files are read: paths relative to `base`, with
/// `read_file`, except `~/` paths, which are this machine's, as `access` allows.
struct GuestFiles<'a> {
    base: &'a Path,
    access: &'a crate::manifest::access::FileAccess,
    read_file: ReadFile<'a>,
}

fn seed_inputs(
    name: &str,
    vm: &m::Vm,
    vars: &BTreeMap<String, serde_json::Value>,
    nics: Vec<SeedNic>,
    files_of: &GuestFiles,
) -> Result<(SeedInput, SeedInput), String> {
    let read = |path: &str| {
        let expanded = guestfiles::locate(path, files_of.base);
        if path.starts_with("~/") {
            return files_of
                .access
                .read_text(&expanded)
                .map_err(|refused| format!("vm {name}: {refused}"));
        }
        (files_of.read_file)(&expanded).map_err(|e| {
            let said = e.to_string();
            if said.contains(&expanded.display().to_string()) {
                format!("vm {name}: {said}")
            } else {
                format!("vm {name}: cannot read {}: {said}", expanded.display())
            }
        })
    };
    // Scripts and origin files are templates, as in kcli.
    let render = |text: String, path: &str, vars: &BTreeMap<String, serde_json::Value>| {
        guestfiles::render(&text, path, vars)
            .map_err(|p| format!("vm {name}: {}", guestfiles::one_line(&p)))
    };
    let shown_text = vm.shown.as_ref();
    let (mut files, mut shown_files) = (Vec::new(), Vec::new());
    for (i, f) in vm.files.iter().enumerate() {
        let (content, shown) = match &f.source {
            m::FileSource::Content(c) => {
                let shown = shown_text.and_then(|s| s.contents.get(i).cloned().flatten());
                (c.clone(), shown.unwrap_or_else(|| c.clone()))
            }
            m::FileSource::Origin(path) if f.render => {
                let rendered = render(read(path)?, path, &guestfiles::file_variables(vars, f))?;
                let shown = rendered.shown();
                (rendered.text, shown)
            }
            m::FileSource::Origin(path) => {
                let text = read(path)?;
                (text.clone(), text)
            }
        };
        crate::secrets::register_private_keys(&content);
        let file = |content| SeedFile {
            path: f.path.clone(),
            content,
            owner: f.owner.clone(),
            mode: f.mode,
        };
        files.push(file(content));
        shown_files.push(file(shown));
    }
    let (mut scripts, mut shown_scripts) = (Vec::new(), Vec::new());
    for script in &vm.scripts {
        let file = Path::new(script)
            .file_name()
            .map_or(script.clone(), |f| f.to_string_lossy().into_owned());
        let rendered = render(read(script)?, script, vars)?;
        crate::secrets::register_private_keys(&rendered.text);
        shown_scripts.push((file.clone(), rendered.shown()));
        scripts.push((file, rendered.text));
    }
    let input = SeedInput {
        hostname: name.to_string(),
        domain: vm.domain.clone(),
        keys: vm.keys.clone(),
        cmds: vm.cmds.clone(),
        scripts,
        files,
        root_password: vm.rootpassword.as_ref().map(|s| s.expose().to_string()),
        nics,
    };
    let shown = SeedInput {
        keys: shown_text.map_or_else(|| vm.keys.clone(), |s| s.keys.clone()),
        cmds: shown_text.map_or_else(|| vm.cmds.clone(), |s| s.cmds.clone()),
        scripts: shown_scripts,
        files: shown_files,
        ..input.clone()
    };
    Ok((input, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relative_image_path_becomes_one_absolute_spelling_whether_or_not_it_exists() {
        let base = Path::new("/srv/plans/lab");
        assert_eq!(
            absolute_url("../images/./root.qcow2", base),
            "/srv/plans/images/root.qcow2"
        );
        assert_eq!(absolute_url("./vmlinuz", base), "/srv/plans/lab/vmlinuz");
        assert_eq!(absolute_url("/boot/vmlinuz", base), "/boot/vmlinuz");
        assert_eq!(
            absolute_url("https://example.org/a/../b.img", base),
            "https://example.org/a/../b.img"
        );
    }
}
