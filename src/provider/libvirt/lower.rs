//! The libvirt family's lowering: a plan's intents become the resources libvirt holds. A
//! network becomes a libvirt network (forward mode, bridge, DHCP hosts for reservations);
//! storage a dir pool; an image a volume fetched from its URL; a VM its disk volumes (overlays
//! on their image), its cloud-init seed (a FAT image labelled `cidata`) and its domain. Names
//! follow kcli (`web1_0.img`, `web1-cidata.img`). The libvirt provider and the sandbox lower
//! this way, and so does plan-against-plan, which has no provider. Pure: no I/O.

use std::collections::BTreeMap;

use crate::cloudinit;
use crate::manifest::model::{DiskBus, NetworkMode, VirtType as Accel};
use crate::plan::intent::{self, Intents, What};
use crate::plan::model::desired::{
    AddressElsewhere, Awaited, Desired, DesiredResource, ResourceGuards,
};
use crate::plan::model::spec::*;
use crate::provider::ReadinessQuery;

pub fn seed_volume(vm: &str) -> String {
    format!("{vm}-cidata.img")
}

/// The resources libvirt should hold for `intents`.
pub fn libvirt(intents: &Intents) -> Result<Desired, String> {
    let mut out = Desired::default();
    let external = |id: ResourceId, out: &mut Desired| {
        if !out.external.contains(&id) {
            out.external.push(id);
        }
    };
    // Where an image lives: in its declared storage, or (undeclared) in the disk's.
    let image_volume = |image: &intent::Ref, disk_storage: &str| -> (String, String) {
        match intents.get(&image.name).map(|i| &i.what) {
            Some(What::Image(img)) if image.declared => {
                (img.storage.name.clone(), image.name.clone())
            }
            _ => (disk_storage.to_string(), image.name.clone()),
        }
    };
    // The VMs each shared disk attaches to.
    let mut shared: BTreeMap<&str, Vec<DiskSpec>> = BTreeMap::new();

    for item in &intents.items {
        match &item.what {
            What::Network(net) => out.resources.push(DesiredResource {
                spec: Spec::Network(NetworkSpec {
                    name: item.name.clone(),
                    mode: match net.forwarding {
                        NetworkMode::Nat => ForwardMode::Nat,
                        NetworkMode::Route => ForwardMode::Route,
                        NetworkMode::Open => ForwardMode::Open,
                        NetworkMode::Bridge => ForwardMode::Bridge,
                        NetworkMode::Isolated => ForwardMode::Isolated,
                    },
                    bridge: net.bridge.clone(),
                    cidr: net.cidr,
                    dhcp: net.dhcp,
                    hosts: net
                        .reservations
                        .iter()
                        .map(|r| DhcpHost {
                            mac: r.mac.clone(),
                            ip: r.ip,
                            name: r.host.clone(),
                        })
                        .collect(),
                    dns_hosts: net
                        .dns_records
                        .iter()
                        .map(|r| DnsHost {
                            ip: r.ip,
                            names: r.names.clone(),
                        })
                        .collect(),
                    domain: net.domain.clone(),
                    mtu: net.mtu,
                    dns: net.dns,
                    autostart: true,
                }),
                entry: item.entry.clone(),
                depends_on: Vec::new(),
            }),
            // Refused by capability, before lowering.
            What::SecurityGroup(_) => {}
            What::Dns(dns) => {
                let network = &dns.network.name;
                if !dns.network.declared {
                    external(ResourceId::network(network), &mut out);
                }
                out.resources.push(DesiredResource {
                    spec: Spec::Dns(DnsRecordSpec {
                        network: network.clone(),
                        name: item.name.clone(),
                        ip: dns.record.ip,
                        names: dns.record.names.clone(),
                    }),
                    entry: item.entry.clone(),
                    depends_on: vec![ResourceId::network(network)],
                });
            }
            What::Storage(storage) => out.resources.push(DesiredResource {
                spec: Spec::Pool(PoolSpec {
                    name: item.name.clone(),
                    path: storage.path.clone(),
                    autostart: true,
                }),
                entry: item.entry.clone(),
                depends_on: Vec::new(),
            }),
            What::Image(image) => {
                let Some(url) = &image.url else {
                    // No URL: the image must already be in its pool.
                    external(
                        ResourceId::volume(&image.storage.name, &item.name),
                        &mut out,
                    );
                    continue;
                };
                out.resources.push(DesiredResource {
                    spec: Spec::Volume(VolumeSpec {
                        name: item.name.clone(),
                        pool: image.storage.name.clone(),
                        capacity_bytes: image.size_bytes,
                        format: VolumeFormat::Qcow2,
                        thin: true,
                        backing: None,
                        source: VolumeSource::Fetch {
                            url: url.clone(),
                            sha256: image.sha256.clone(),
                        },
                    }),
                    entry: item.entry.clone(),
                    depends_on: vec![ResourceId::pool(&image.storage.name)],
                });
            }
            What::Disk(disk) => {
                let name = format!("{}.img", item.name);
                let pool = &disk.storage.name;
                let backing = disk.image.as_ref().map(|i| image_volume(i, pool));
                let mut depends_on = vec![ResourceId::pool(pool)];
                depends_on.extend(backing.iter().map(|(p, n)| ResourceId::volume(p, n)));
                out.resources.push(DesiredResource {
                    spec: blank_disk(&name, pool, disk.size_bytes, disk.thin, backing),
                    entry: item.entry.clone(),
                    depends_on,
                });
                for vm in &disk.vms {
                    shared.entry(vm.as_str()).or_default().push(DiskSpec {
                        pool: pool.clone(),
                        volume: name.clone(),
                        bus: Bus::Virtio,
                    });
                }
            }
            What::Vm(_) => {}
        }
    }

    for item in &intents.items {
        let What::Vm(vm) = &item.what else {
            continue;
        };
        let mut vm_deps = Vec::new();
        let mut disks = Vec::new();
        for disk in &vm.disks {
            let pool = &disk.storage.name;
            let backing = disk.image.as_ref().map(|img| image_volume(img, pool));
            let mut depends_on = vec![ResourceId::pool(pool)];
            if let (Some((bpool, bname)), Some(image)) = (&backing, &disk.image) {
                depends_on.push(ResourceId::volume(bpool, bname));
                if !image.declared {
                    external(ResourceId::volume(bpool, bname), &mut out);
                }
            }
            if !disk.storage.declared {
                external(ResourceId::pool(pool), &mut out);
            }
            out.resources.push(DesiredResource {
                spec: blank_disk(&disk.name, pool, disk.size_bytes, disk.thin, backing),
                entry: item.entry.clone(),
                depends_on,
            });
            vm_deps.push(ResourceId::volume(pool, &disk.name));
            disks.push(DiskSpec {
                pool: pool.clone(),
                volume: disk.name.clone(),
                bus: match disk.bus {
                    DiskBus::Virtio => Bus::Virtio,
                    DiskBus::Scsi => Bus::Scsi,
                    DiskBus::Sata => Bus::Sata,
                    DiskBus::Ide => Bus::Ide,
                },
            });
        }
        if let Some(extra) = shared.get(item.name.as_str()) {
            vm_deps.extend(extra.iter().map(|d| ResourceId::volume(&d.pool, &d.volume)));
            disks.extend(extra.iter().cloned());
        }
        let mut nics = Vec::new();
        for nic in &vm.nics {
            if !nic.network.declared {
                external(ResourceId::network(&nic.network.name), &mut out);
                if let Some((ip, _)) = nic.address {
                    out.addresses_elsewhere.push(AddressElsewhere {
                        vm: item.name.clone(),
                        network: nic.network.name.clone(),
                        ip,
                    });
                }
            }
            vm_deps.push(ResourceId::network(&nic.network.name));
            nics.push(NicSpec {
                network: nic.network.name.clone(),
                mac: Some(nic.mac.clone()),
                model: nic.model.clone(),
            });
        }
        let seed = match &vm.cloud_init {
            Some(cloud) => {
                let pool = &cloud.storage.name;
                if !cloud.storage.declared {
                    external(ResourceId::pool(pool), &mut out);
                }
                let name = seed_volume(&item.name);
                out.resources.push(DesiredResource {
                    spec: Spec::Volume(VolumeSpec {
                        name: name.clone(),
                        pool: pool.clone(),
                        capacity_bytes: Some(cloudinit::SEED_BYTES as u64),
                        format: VolumeFormat::Raw,
                        thin: true,
                        backing: None,
                        // The digest covers the documents, not the image, whose bytes carry
                        // timestamps.
                        source: VolumeSource::Generated {
                            sha256: cloud.sha256.clone(),
                            review: cloud.review.clone(),
                            generator: {
                                let documents = cloud.documents.clone();
                                Generator::new(move || cloudinit::seed_image(&documents))
                            },
                        },
                    }),
                    entry: item.entry.clone(),
                    depends_on: vec![ResourceId::pool(pool)],
                });
                vm_deps.push(ResourceId::volume(pool, &name));
                Some((pool.clone(), name))
            }
            None => None,
        };
        let mut boot_file = |file: &intent::BootFile, out: &mut Desired| match file {
            intent::BootFile::Path(path) => BootFile::Path(path.clone()),
            intent::BootFile::Image { image, storage } => {
                let (pool, volume) = image_volume(image, &storage.name);
                if !image.declared {
                    external(ResourceId::volume(&pool, &volume), out);
                }
                vm_deps.push(ResourceId::volume(&pool, &volume));
                BootFile::Volume { pool, volume }
            }
        };
        let kernel = vm.boot.as_ref().map(|b| boot_file(&b.kernel, &mut out));
        let initrd = vm
            .boot
            .as_ref()
            .and_then(|b| b.initrd.as_ref())
            .map(|f| boot_file(f, &mut out));
        for after in &item.after {
            // A VM waits for the VMs it depends on to be ready, not only made, where that
            // can be known: cloud-init's result, read through the guest agent.
            if let Some(What::Vm(awaited)) = intents.get(after).map(|i| &i.what) {
                let ready = ReadinessQuery {
                    vm: after.clone(),
                    cloud_init: awaited.cloud_init.is_some(),
                    command: awaited.wait_command.clone(),
                };
                if awaited.guest_agent && (ready.cloud_init || ready.command.is_some()) {
                    out.awaited.entry(ResourceId::vm(after)).or_insert(Awaited {
                        ready,
                        timeout: awaited.wait_timeout,
                    });
                }
            }
            let entry = intents.get(after).map(|i| i.entry.clone());
            vm_deps.extend(
                out.resources
                    .iter()
                    .filter(|r| Some(&r.entry) == entry.as_ref())
                    .map(|r| r.spec.id()),
            );
        }
        vm_deps.dedup();
        out.resources.push(DesiredResource {
            spec: Spec::Vm(VmSpec {
                name: item.name.clone(),
                memory_mib: vm.memory_mib,
                vcpus: vm.cpus,
                cpu_model: vm.cpu_model.clone(),
                virt_type: match vm.virt_type {
                    Accel::Qemu => VirtType::Qemu,
                    Accel::Kvm => VirtType::Kvm,
                },
                uefi: vm.uefi,
                disks,
                nics,
                seed,
                running: vm.start,
                autostart: vm.autostart,
                kernel,
                initrd,
                cmdline: vm.boot.as_ref().and_then(|b| b.cmdline.clone()),
                guest_agent: vm.guest_agent,
                seed_sha256: vm.cloud_init.as_ref().map(|c| c.sha256.clone()),
            }),
            entry: item.entry.clone(),
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
        let Some(item) = intents.items.iter().find(|i| i.entry == r.entry) else {
            continue;
        };
        let g = &item.guards;
        // Recorded for every resource, guarded or not: the plan's word on a resource it
        // declares wins over the guard recorded in the resource's mark.
        out.guards.insert(
            r.spec.id(),
            ResourceGuards {
                prevent_destroy: g.prevent_destroy,
                create_before_destroy: g.create_before_destroy,
                ignore: g
                    .ignore_changes
                    .iter()
                    .flat_map(|key| ignored_attributes(&item.what, key, &r.spec))
                    .collect(),
            },
        );
    }
    Ok(out)
}

/// The spec attributes of `resource` that an entry's `ignore_changes: [key]` leaves alone.
fn ignored_attributes(entry: &What, key: &str, resource: &Spec) -> Vec<&'static str> {
    let seed = matches!(
        resource,
        Spec::Volume(VolumeSpec {
            source: VolumeSource::Generated { .. },
            ..
        })
    );
    let attrs: &[&'static str] = match (entry, resource, key) {
        (What::Vm(_), Spec::Vm(_), "memory") => &["memory_mib"],
        (What::Vm(_), Spec::Vm(_), "numcpus") => &["vcpus"],
        (What::Vm(_), Spec::Vm(_), "cpumodel") => &["cpu_model"],
        (What::Vm(_), Spec::Vm(_), "virttype") => &["virt_type"],
        (What::Vm(_), Spec::Vm(_), "uefi") => &["uefi"],
        (What::Vm(_), Spec::Vm(_), "start") => &["running"],
        (What::Vm(_), Spec::Vm(_), "autostart") => &["autostart"],
        (What::Vm(_), Spec::Vm(_), "nets") => &["nics"],
        (What::Vm(_), Spec::Vm(_), "disks") => &["disks"],
        (What::Vm(_), Spec::Vm(_), "kernel") => &["kernel"],
        (What::Vm(_), Spec::Vm(_), "initrd") => &["initrd"],
        (What::Vm(_), Spec::Vm(_), "cmdline") => &["cmdline"],
        (What::Vm(_), Spec::Vm(_), "guestagent") => &["guest_agent"],
        // The seed holds the commands, files, keys, password and network config.
        (
            What::Vm(_),
            Spec::Volume(_),
            "cmds" | "scripts" | "files" | "keys" | "rootpassword" | "nets",
        ) if seed => &["source"],
        (What::Vm(_), Spec::Volume(_), "disks") if !seed => &["capacity_bytes"],
        (What::Vm(_), Spec::Volume(_), "image") if !seed => &["backing"],
        (What::Network(_), _, "cidr") => &["cidr"],
        (What::Network(_), _, "dhcp") => &["dhcp"],
        (What::Network(_), _, "domain") => &["domain"],
        (What::Network(_), _, "mtu") => &["mtu"],
        (What::Network(_), _, "nat") => &["mode"],
        (What::Network(_), _, "reservations") => &["hosts"],
        (What::Network(_) | What::Storage(_), _, "autostart") => &["autostart"],
        (What::Storage(_), _, "path") => &["path"],
        (What::Image(_), _, "url" | "sha256") => &["source"],
        (What::Image(_) | What::Disk(_), _, "size") => &["capacity_bytes"],
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
