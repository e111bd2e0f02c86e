//! From a validated plan to the resources a provider should hold: the desired state.
//!
//! kcli's entries become provider specs: a VM becomes its disk volumes, its cloud-init seed and
//! its domain; an image becomes a volume fetched from its URL; a static IP with `reserveip`
//! becomes a DHCP reservation on its network. Names follow kcli (`web1_0.img`), and everything
//! a backend would otherwise generate (MAC addresses) is derived from the plan, so the same plan
//! always describes the same resources.
//!
//! This reads the local files a plan names (`scripts`, `files` with `origin`); the planner that
//! compares the result with live state does no I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::manifest::model::{self as m, EntryKind, Manifest};
use crate::provider::cloudinit::{self, SeedFile, SeedInput, SeedNic};
use crate::provider::spec::*;

/// One resource the plan wants, with what must exist before it.
#[derive(Debug, Clone)]
pub struct DesiredResource {
    pub spec: Spec,
    /// The plan entry it comes from (`vm/web1`), for messages.
    pub entry: String,
    pub depends_on: Vec<ResourceId>,
}

#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub resources: Vec<DesiredResource>,
    /// Things the plan uses without declaring them: they must already exist.
    pub external: Vec<ResourceId>,
    /// What the plan declares that a killed run can leave unmarked (pools), to recognise and
    /// take over. Kept for `destroy` too, whose `resources` are empty.
    pub claimable: Vec<Spec>,
    /// Each declared resource's guards, from its entry. Kept for `destroy` too. A resource
    /// absent here (the plan no longer declares it, or could not be read) is guarded by what
    /// its ownership mark recorded.
    pub guards: BTreeMap<ResourceId, ResourceGuards>,
    /// Resources to replace even when nothing about them changed (`--replace`).
    pub replace: Vec<ResourceId>,
    /// `plan destroy`: what goes, goes because the plan is destroyed.
    pub destroying: bool,
}

/// What may not happen to one resource (its entry's guards, in spec terms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceGuards {
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    /// Spec attributes whose changes are not applied to the existing resource.
    pub ignore: Vec<&'static str>,
}

impl Desired {
    /// What `destroy` wants: nothing, but leftovers of killed runs still recognised, and the
    /// guards still in force.
    pub fn nothing_but_leftovers(self) -> Desired {
        Desired {
            claimable: self.claimable,
            guards: self.guards,
            destroying: true,
            ..Desired::default()
        }
    }

    /// Leaves out the resources of `entries` (addresses like `vm/web1`): `destroy --target`
    /// wants everything else to stay as it is.
    pub fn without(mut self, entries: &std::collections::BTreeSet<String>) -> Desired {
        self.resources.retain(|r| !entries.contains(&r.entry));
        self.destroying = true;
        self
    }

    pub fn guards_of(&self, id: &ResourceId) -> ResourceGuards {
        self.guards.get(id).cloned().unwrap_or_default()
    }
}

impl Desired {
    pub fn get(&self, id: &ResourceId) -> Option<&DesiredResource> {
        self.resources.iter().find(|r| r.spec.id() == *id)
    }
}

/// The volume name of a VM's disk, as kcli names it.
pub fn disk_volume(vm: &str, index: usize) -> String {
    format!("{vm}_{index}.img")
}

pub fn seed_volume(vm: &str) -> String {
    format!("{vm}-cidata.img")
}

/// A MAC address derived from the plan, the VM and the NIC's position: stable across runs.
pub fn derived_mac(plan: &str, vm: &str, index: usize) -> String {
    let digest = Sha256::digest(format!("{plan}/{vm}/{index}"));
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        digest[0], digest[1], digest[2]
    )
}

/// Reads a file the plan names (`scripts`, `files` with `origin`), given its full path.
pub type ReadFile<'a> = &'a dyn Fn(&Path) -> std::io::Result<String>;

/// Builds the desired state. `base` is the plan file's directory, for relative file paths.
pub fn desired(manifest: &Manifest, plan: &str, base: &Path) -> Result<Desired, String> {
    desired_reading(manifest, plan, base, &|path| std::fs::read_to_string(path))
}

/// As `desired`, reading the files the plan names with `read_file` (from a git revision, for
/// `plan diff --against`). Paths under `~/` are always read from this machine.
pub fn desired_reading(
    manifest: &Manifest,
    plan: &str,
    base: &Path,
    read_file: ReadFile,
) -> Result<Desired, String> {
    let mut out = Desired::default();
    let declared =
        |name: &str, kind: m::Kind| manifest.get(name).is_some_and(|e| e.kind.kind() == kind);
    let external = |id: ResourceId, out: &mut Desired| {
        if !out.external.contains(&id) {
            out.external.push(id);
        }
    };

    // Static addresses with `reserveip`, by network: reserved in the network's DHCP.
    let mut reservations: BTreeMap<&str, Vec<DhcpHost>> = BTreeMap::new();
    for entry in &manifest.entries {
        if let EntryKind::Vm(vm) = &entry.kind {
            for (i, nic) in vm.nets.iter().enumerate() {
                if let (true, Some(ip)) = (vm.reserveip, &nic.ip) {
                    reservations
                        .entry(nic.network.name.as_str())
                        .or_default()
                        .push(DhcpHost {
                            mac: nic
                                .mac
                                .clone()
                                .unwrap_or_else(|| derived_mac(plan, &entry.name, i)),
                            ip: ip.value,
                            name: entry.name.clone(),
                        });
                }
            }
        }
    }

    // Shared disks, by the VM they attach to.
    let mut shared: BTreeMap<&str, Vec<DiskSpec>> = BTreeMap::new();

    for entry in &manifest.entries {
        let address = format!("{}/{}", entry.kind.kind(), entry.name);
        match &entry.kind {
            EntryKind::Network(net) => {
                let mut hosts = reservations.remove(entry.name.as_str()).unwrap_or_default();
                hosts.sort_by(|a, b| a.mac.cmp(&b.mac));
                let cidr = net.cidr.as_ref().map(|c| c.value);
                let dhcp = match (net.dhcp, cidr, net.mode) {
                    (true, Some(cidr), mode) if mode != m::NetworkMode::Bridge => {
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
                out.resources.push(DesiredResource {
                    spec: Spec::Network(NetworkSpec {
                        name: entry.name.clone(),
                        mode: match net.mode {
                            m::NetworkMode::Nat => ForwardMode::Nat,
                            m::NetworkMode::Route => ForwardMode::Route,
                            m::NetworkMode::Open => ForwardMode::Open,
                            m::NetworkMode::Bridge => ForwardMode::Bridge,
                            m::NetworkMode::Isolated => ForwardMode::Isolated,
                        },
                        bridge: net.bridgename.clone(),
                        cidr,
                        dhcp,
                        hosts,
                        domain: (net.mode != m::NetworkMode::Bridge).then(|| net.domain.clone()),
                        mtu: net.mtu,
                        dns: net.dns,
                        autostart: true,
                    }),
                    entry: address,
                    depends_on: Vec::new(),
                });
            }
            EntryKind::Pool(pool) => out.resources.push(DesiredResource {
                spec: Spec::Pool(PoolSpec {
                    name: entry.name.clone(),
                    path: pool.path.clone(),
                    autostart: true,
                }),
                entry: address,
                depends_on: Vec::new(),
            }),
            EntryKind::Image(image) => {
                let Some(url) = &image.url else {
                    // No URL: the image must already be in its pool.
                    external(ResourceId::volume(&image.pool.name, &entry.name), &mut out);
                    continue;
                };
                let url = absolute_url(url, base);
                out.resources.push(DesiredResource {
                    spec: Spec::Volume(VolumeSpec {
                        name: entry.name.clone(),
                        pool: image.pool.name.clone(),
                        capacity_bytes: image.size_bytes,
                        format: VolumeFormat::Qcow2,
                        thin: true,
                        backing: None,
                        source: VolumeSource::Fetch {
                            url,
                            sha256: image.sha256.clone(),
                        },
                    }),
                    entry: address,
                    depends_on: vec![ResourceId::pool(&image.pool.name)],
                });
            }
            EntryKind::Disk(disk) => {
                let name = format!("{}.img", entry.name);
                let backing = disk
                    .image
                    .as_ref()
                    .map(|i| image_volume(manifest, &i.name, &disk.pool.name));
                let mut depends_on = vec![ResourceId::pool(&disk.pool.name)];
                depends_on.extend(backing.iter().map(|(p, n)| ResourceId::volume(p, n)));
                out.resources.push(DesiredResource {
                    spec: blank_disk(&name, &disk.pool.name, disk.size_bytes, disk.thin, backing),
                    entry: address,
                    depends_on,
                });
                for vm in &disk.vms {
                    shared.entry(vm.name.as_str()).or_default().push(DiskSpec {
                        pool: disk.pool.name.clone(),
                        volume: name.clone(),
                        bus: Bus::Virtio,
                    });
                }
            }
            EntryKind::Vm(_) | EntryKind::Profile => {}
        }
    }

    for entry in &manifest.entries {
        let EntryKind::Vm(vm) = &entry.kind else {
            continue;
        };
        let address = format!("vm/{}", entry.name);
        let mut vm_deps = Vec::new();
        let mut disks = Vec::new();
        for (i, disk) in vm.disks.iter().enumerate() {
            let name = disk
                .name
                .clone()
                .unwrap_or_else(|| disk_volume(&entry.name, i));
            // The first disk comes from the VM's image; others from their own, if any.
            let image = disk
                .image
                .as_ref()
                .or(if i == 0 { vm.image.as_ref() } else { None });
            let backing = image.map(|img| image_volume(manifest, &img.name, &disk.pool.name));
            let mut depends_on = vec![ResourceId::pool(&disk.pool.name)];
            if let Some((pool, name)) = &backing {
                depends_on.push(ResourceId::volume(pool, name));
                if !declared(name, m::Kind::Image) {
                    external(ResourceId::volume(pool, name), &mut out);
                }
            }
            if !declared(&disk.pool.name, m::Kind::Pool) {
                external(ResourceId::pool(&disk.pool.name), &mut out);
            }
            let id = ResourceId::volume(&disk.pool.name, &name);
            out.resources.push(DesiredResource {
                spec: blank_disk(&name, &disk.pool.name, disk.size_bytes, disk.thin, backing),
                entry: address.clone(),
                depends_on,
            });
            vm_deps.push(id);
            disks.push(DiskSpec {
                pool: disk.pool.name.clone(),
                volume: name,
                bus: bus(disk.interface),
            });
        }
        if let Some(extra) = shared.get(entry.name.as_str()) {
            for d in extra {
                vm_deps.push(ResourceId::volume(&d.pool, &d.volume));
            }
            disks.extend(extra.iter().cloned());
        }
        let mut nics = Vec::new();
        let mut seed_nics = Vec::new();
        for (i, nic) in vm.nets.iter().enumerate() {
            let mac = nic
                .mac
                .clone()
                .unwrap_or_else(|| derived_mac(plan, &entry.name, i));
            if !declared(&nic.network.name, m::Kind::Network) {
                external(ResourceId::network(&nic.network.name), &mut out);
            }
            vm_deps.push(ResourceId::network(&nic.network.name));
            let prefix = nic.prefix.or_else(|| {
                let net = manifest.get(&nic.network.name)?;
                match &net.kind {
                    EntryKind::Network(n) => n.cidr.as_ref().map(|c| c.value.prefix_len()),
                    _ => None,
                }
            });
            seed_nics.push(SeedNic {
                mac: mac.clone(),
                address: nic.ip.as_ref().map(|ip| {
                    (
                        ip.value,
                        prefix.unwrap_or(if ip.value.is_ipv4() { 24 } else { 64 }),
                    )
                }),
                gateway: nic.gateway.as_ref().map(|g| g.value),
                dns: nic.dns.or(vm.dns),
                unconfigured: nic.noconf,
            });
            nics.push(NicSpec {
                network: nic.network.name.clone(),
                mac: Some(mac),
                model: nic.model.clone(),
            });
        }
        let seed = if vm.cloudinit {
            let input = seed_input(&entry.name, vm, seed_nics, base, read_file)?;
            let docs = cloudinit::documents(&input);
            let bytes = cloudinit::seed_image(&docs)
                .map_err(|e| format!("vm {}: cannot build its cloud-init seed: {e}", entry.name))?;
            // The digest covers the documents, not the image, whose bytes carry timestamps.
            let digest = hex::encode(Sha256::digest(format!(
                "{}\n{}\n{}",
                docs.user_data, docs.meta_data, docs.network_config
            )));
            let pool = vm.pool.name.clone();
            if !declared(&pool, m::Kind::Pool) {
                external(ResourceId::pool(&pool), &mut out);
            }
            let name = seed_volume(&entry.name);
            out.resources.push(DesiredResource {
                spec: Spec::Volume(VolumeSpec {
                    name: name.clone(),
                    pool: pool.clone(),
                    capacity_bytes: Some(bytes.len() as u64),
                    format: VolumeFormat::Raw,
                    thin: true,
                    backing: None,
                    source: VolumeSource::Generated {
                        sha256: digest,
                        review: cloudinit::review_text(&input),
                        bytes,
                    },
                }),
                entry: address.clone(),
                depends_on: vec![ResourceId::pool(&pool)],
            });
            vm_deps.push(ResourceId::volume(&pool, &name));
            Some((pool, name))
        } else {
            None
        };
        for dep in &entry.depends_on {
            if let Some(target) = manifest.get(&dep.name) {
                vm_deps.extend(ids_of_entry(&out, target));
            }
        }
        vm_deps.dedup();
        out.resources.push(DesiredResource {
            spec: Spec::Vm(VmSpec {
                name: entry.name.clone(),
                memory_mib: vm.memory_mib,
                vcpus: vm.numcpus,
                cpu_model: vm.cpumodel.clone(),
                virt_type: match vm.virttype {
                    Some(m::VirtType::Qemu) => VirtType::Qemu,
                    // kcli's default.
                    Some(m::VirtType::Kvm) | None => VirtType::Kvm,
                },
                uefi: vm.uefi,
                disks,
                nics,
                seed,
                running: vm.start,
                autostart: vm.autostart,
            }),
            entry: address,
            depends_on: vm_deps,
        });
    }
    out.claimable = out
        .resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::Pool(_)))
        .map(|r| r.spec.clone())
        .collect();
    for r in &out.resources {
        let name = r.entry.split_once('/').map_or(r.entry.as_str(), |(_, n)| n);
        let Some(entry) = manifest.get(name) else {
            continue;
        };
        let g = &entry.guards;
        let guards = ResourceGuards {
            prevent_destroy: g.prevent_destroy,
            create_before_destroy: g.create_before_destroy,
            ignore: g
                .ignore_changes
                .iter()
                .flat_map(|key| ignored_attributes(entry.kind.kind(), &key.name, &r.spec))
                .collect(),
        };
        // Recorded for every resource, guarded or not: the plan's word on a resource it
        // declares wins over the guard recorded in the resource's mark.
        out.guards.insert(r.spec.id(), guards);
    }
    Ok(out)
}

/// The spec attributes of `resource` that an entry's `ignore_changes: [key]` leaves alone.
fn ignored_attributes(entry: m::Kind, key: &str, resource: &Spec) -> Vec<&'static str> {
    use m::Kind as K;
    let seed = matches!(
        resource,
        Spec::Volume(VolumeSpec {
            source: VolumeSource::Generated { .. },
            ..
        })
    );
    let attrs: &[&'static str] = match (entry, resource, key) {
        (K::Vm, Spec::Vm(_), "memory") => &["memory_mib"],
        (K::Vm, Spec::Vm(_), "numcpus") => &["vcpus"],
        (K::Vm, Spec::Vm(_), "cpumodel") => &["cpu_model"],
        (K::Vm, Spec::Vm(_), "virttype") => &["virt_type"],
        (K::Vm, Spec::Vm(_), "uefi") => &["uefi"],
        (K::Vm, Spec::Vm(_), "start") => &["running"],
        (K::Vm, Spec::Vm(_), "autostart") => &["autostart"],
        (K::Vm, Spec::Vm(_), "nets") => &["nics"],
        (K::Vm, Spec::Vm(_), "disks") => &["disks"],
        // The seed holds the commands, files, keys, password and network config.
        (
            K::Vm,
            Spec::Volume(_),
            "cmds" | "scripts" | "files" | "keys" | "rootpassword" | "nets",
        ) if seed => &["source"],
        (K::Vm, Spec::Volume(_), "disks") if !seed => &["capacity_bytes"],
        (K::Vm, Spec::Volume(_), "image") if !seed => &["backing"],
        (K::Network, _, "cidr") => &["cidr"],
        (K::Network, _, "dhcp") => &["dhcp"],
        (K::Network, _, "domain") => &["domain"],
        (K::Network, _, "mtu") => &["mtu"],
        (K::Network, _, "nat") => &["mode"],
        (K::Network, _, "reservations") => &["hosts"],
        (K::Network | K::Pool, _, "autostart") => &["autostart"],
        (K::Pool, _, "path") => &["path"],
        (K::Image, _, "url" | "sha256") => &["source"],
        (K::Image | K::Disk, _, "size") => &["capacity_bytes"],
        _ => &[],
    };
    attrs.to_vec()
}

/// A disk: qcow2, empty or an overlay on an image.
fn blank_disk(
    name: &str,
    pool: &str,
    size: u64,
    thin: bool,
    backing: Option<(String, String)>,
) -> Spec {
    Spec::Volume(VolumeSpec {
        name: name.to_string(),
        pool: pool.to_string(),
        capacity_bytes: Some(size),
        format: VolumeFormat::Qcow2,
        thin,
        backing,
        source: VolumeSource::Blank,
    })
}

/// The resources an entry became, for `depends_on` between entries.
fn ids_of_entry(out: &Desired, entry: &m::Entry) -> Vec<ResourceId> {
    let address = format!("{}/{}", entry.kind.kind(), entry.name);
    out.resources
        .iter()
        .filter(|r| r.entry == address)
        .map(|r| r.spec.id())
        .collect()
}

/// Where an image named by a VM or disk lives: its declared pool, or the disk's pool.
fn image_volume(manifest: &Manifest, image: &str, disk_pool: &str) -> (String, String) {
    match manifest.get(image).map(|e| &e.kind) {
        Some(EntryKind::Image(img)) => (img.pool.name.clone(), image.to_string()),
        _ => (disk_pool.to_string(), image.to_string()),
    }
}

fn bus(b: m::DiskBus) -> Bus {
    match b {
        m::DiskBus::Virtio => Bus::Virtio,
        m::DiskBus::Scsi => Bus::Scsi,
        m::DiskBus::Sata => Bus::Sata,
        m::DiskBus::Ide => Bus::Ide,
    }
}

fn last_host(cidr: &ipnet::IpNet) -> Option<IpAddr> {
    match cidr {
        ipnet::IpNet::V4(net) if net.prefix_len() < 31 => {
            Some(IpAddr::V4((u32::from(net.broadcast()) - 1).into()))
        }
        _ => cidr.hosts().last(),
    }
}

/// A relative file path in an image URL is relative to the plan.
fn absolute_url(url: &str, base: &Path) -> String {
    if url.contains("://") || url.starts_with('/') {
        url.to_string()
    } else {
        base.join(url).display().to_string()
    }
}

fn seed_input(
    name: &str,
    vm: &m::Vm,
    nics: Vec<SeedNic>,
    base: &Path,
    read_file: ReadFile,
) -> Result<SeedInput, String> {
    let read = |path: &str| {
        let (expanded, here) = match path.strip_prefix("~/") {
            Some(rest) => match std::env::var_os("HOME") {
                Some(h) => (Path::new(&h).join(rest), true),
                None => (base.join(path), false),
            },
            None => (base.join(path), false),
        };
        let text = if here {
            std::fs::read_to_string(&expanded)
        } else {
            read_file(&expanded)
        };
        text.map_err(|e| format!("vm {name}: cannot read {}: {e}", expanded.display()))
    };
    let mut files = Vec::new();
    for f in &vm.files {
        let content = match &f.source {
            m::FileSource::Content(c) => c.clone(),
            m::FileSource::Origin(path) => read(path)?,
        };
        crate::secrets::register_private_keys(&content);
        files.push(SeedFile {
            path: f.path.clone(),
            content,
            owner: f.owner.clone(),
            mode: f.mode,
        });
    }
    let mut scripts = Vec::new();
    for script in &vm.scripts {
        let file = Path::new(script)
            .file_name()
            .map_or(script.clone(), |f| f.to_string_lossy().into_owned());
        let content = read(script)?;
        crate::secrets::register_private_keys(&content);
        scripts.push((file, content));
    }
    Ok(SeedInput {
        hostname: name.to_string(),
        domain: vm.domain.clone(),
        keys: vm.keys.clone(),
        cmds: vm.cmds.clone(),
        scripts,
        files,
        root_password: vm.rootpassword.as_ref().map(|s| s.expose().to_string()),
        nics,
    })
}

impl Desired {
    /// Splits the desired state by provider: a VM goes where its `client` says (`None`: the
    /// default provider), with everything it needs; a network or pool that VMs on two providers
    /// use exists on both; what no VM needs goes to the default. Each part keeps the guards and
    /// the `--replace` list, and the external references its own resources make. Resources on
    /// different providers never depend on each other, so the parts can be planned and applied
    /// independently.
    pub fn by_provider(&self, manifest: &Manifest) -> Vec<(Option<String>, Desired)> {
        use std::collections::{BTreeSet, HashMap};
        let index: HashMap<ResourceId, usize> = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| (r.spec.id(), i))
            .collect();
        let mut homes: Vec<BTreeSet<Option<String>>> = vec![BTreeSet::new(); self.resources.len()];
        let mut externals: BTreeMap<Option<String>, Vec<ResourceId>> = BTreeMap::new();
        for (i, r) in self.resources.iter().enumerate() {
            let Spec::Vm(vm) = &r.spec else { continue };
            let client = match manifest.get(&vm.name).map(|e| &e.kind) {
                Some(EntryKind::Vm(v)) => v.client.clone(),
                _ => None,
            };
            // Everything this VM needs, transitively, goes where it goes.
            let mut stack = vec![i];
            while let Some(j) = stack.pop() {
                if !homes[j].insert(client.clone()) {
                    continue;
                }
                for need in &self.resources[j].depends_on {
                    match index.get(need) {
                        Some(&k) => stack.push(k),
                        None => externals
                            .entry(client.clone())
                            .or_default()
                            .push(need.clone()),
                    }
                }
            }
        }
        for home in homes.iter_mut().filter(|h| h.is_empty()) {
            home.insert(None);
        }
        let providers: BTreeSet<Option<String>> = homes.iter().flatten().cloned().collect();
        if providers.is_empty() {
            return vec![(None, self.clone())];
        }
        providers
            .into_iter()
            .map(|provider| {
                let resources: Vec<DesiredResource> = self
                    .resources
                    .iter()
                    .zip(&homes)
                    .filter(|(_, h)| h.contains(&provider))
                    .map(|(r, _)| r.clone())
                    .collect();
                let ids: BTreeSet<ResourceId> = resources.iter().map(|r| r.spec.id()).collect();
                let mut external: Vec<ResourceId> =
                    externals.get(&provider).cloned().unwrap_or_default();
                // Externals of resources no VM needs (an image's pool, say) stay with them.
                for r in &resources {
                    for need in &r.depends_on {
                        if !ids.contains(need) && self.external.contains(need) {
                            external.push(need.clone());
                        }
                    }
                }
                // Externals nothing refers to (there should be none) go with the default.
                if provider.is_none() {
                    let referred: BTreeSet<&ResourceId> = self
                        .resources
                        .iter()
                        .flat_map(|r| r.depends_on.iter())
                        .collect();
                    external.extend(
                        self.external
                            .iter()
                            .filter(|e| !referred.contains(e))
                            .cloned(),
                    );
                }
                external.sort();
                external.dedup();
                let part = Desired {
                    claimable: self
                        .claimable
                        .iter()
                        .filter(|s| ids.contains(&s.id()))
                        .cloned()
                        .collect(),
                    guards: self.guards.clone(),
                    replace: self.replace.clone(),
                    destroying: self.destroying,
                    resources,
                    external,
                };
                (provider, part)
            })
            .collect()
    }
}
