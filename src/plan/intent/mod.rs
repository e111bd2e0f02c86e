//! What the plan asks for, in no backend's terms: intents.
//!
//! A plan's entries become intents with everything resolved that does not depend on the
//! backend: profiles merged (by the reader), MAC addresses derived from the plan, DHCP ranges
//! and static addresses worked out, the files a plan names read, cloud-init documents rendered
//! as text, guards attached. Each backend then lowers intents into its own resources
//! (`Provider::lower`): libvirt makes networks, pools, volumes, seed images and domains of them;
//! another backend makes other things. This module reads the local files a plan names; lowering
//! and planning do no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::cloudinit::{self, SeedDocuments, SeedFile, SeedInput, SeedNic};
use crate::manifest::guestfiles;
use crate::manifest::model::{self as m, EntryKind, Manifest};

mod build;
pub use build::*;

/// Everything a plan asks for.
#[derive(Debug, Clone, Default)]
pub struct Intents {
    pub items: Vec<Intent>,
}

/// One entry of the plan, resolved.
#[derive(Debug, Clone)]
pub struct Intent {
    /// The entry's name.
    pub name: String,
    /// The entry's address (`vm/web1`), for messages and `--target`.
    pub entry: String,
    pub guards: Guards,
    /// Entries this one must come after (`depends_on`), beyond what its own keys imply.
    pub after: Vec<String>,
    pub what: What,
}

/// What may not happen to an entry's resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guards {
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    /// Plan keys (`memory`, `cmds`) whose changes are not applied to what exists.
    pub ignore_changes: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum What {
    Network(NetworkIntent),
    Storage(StorageIntent),
    Image(ImageIntent),
    /// A disk shared by VMs.
    Disk(DiskIntent),
    Vm(Box<VmIntent>),
    /// A DNS record in a network the plan does not make (in one it makes, the record is part
    /// of the network's intent).
    Dns(DnsIntent),
    /// A cloud's security group, for the VMs that name it.
    SecurityGroup(SecurityGroupIntent),
}

/// What a security group lets in: ICMP and each of `ports`, from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityGroupIntent {
    pub network: Ref,
    /// Sorted, each once.
    pub ports: Vec<m::PortRange>,
    pub source: IpNet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsIntent {
    pub network: Ref,
    pub record: DnsRecord,
}

/// A name the plan refers to: declared by it, or expected to exist already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub declared: bool,
}

#[derive(Debug, Clone)]
pub struct NetworkIntent {
    /// NAT, routed, open, a host bridge, or isolated.
    pub forwarding: m::NetworkMode,
    /// The bridge's name on the host (kcli's `bridgename`).
    pub bridge: String,
    pub cidr: Option<IpNet>,
    /// The DHCP range, when DHCP is on.
    pub dhcp: Option<(IpAddr, IpAddr)>,
    /// Fixed addresses handed out by DHCP (kcli's `reserveip`).
    pub reservations: Vec<Reservation>,
    /// DNS records its DNS server answers (kcli's `dns` entries), sorted by address.
    pub dns_records: Vec<DnsRecord>,
    /// The DNS domain; none on a bridge.
    pub domain: Option<String>,
    pub mtu: Option<u32>,
    pub dns: bool,
}

/// Names for an address in a network's DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    pub ip: IpAddr,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub mac: String,
    pub ip: IpAddr,
    pub host: String,
}

#[derive(Debug, Clone)]
pub struct StorageIntent {
    /// Where on the host, for backends whose storage is a directory.
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct ImageIntent {
    pub storage: Ref,
    /// Where to fetch it from (an absolute path or URL); `None`: it must exist already.
    pub url: Option<String>,
    pub sha256: Option<String>,
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct DiskIntent {
    pub storage: Ref,
    pub size_bytes: u64,
    pub thin: bool,
    pub image: Option<Ref>,
    /// The VMs it is attached to.
    pub vms: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct VmDisk {
    /// Its name, as kcli names it (`web1_0.img`) unless the plan names it.
    pub name: String,
    pub storage: Ref,
    pub size_bytes: u64,
    pub thin: bool,
    pub bus: m::DiskBus,
    /// The image it starts from (the VM's image, for its first disk).
    pub image: Option<Ref>,
}

#[derive(Debug, Clone)]
pub struct VmNic {
    pub network: Ref,
    /// The plan's MAC, or one derived from the plan, the VM and the NIC's position.
    pub mac: String,
    /// A static address and its prefix length; `None`: DHCP.
    pub address: Option<(IpAddr, u8)>,
    pub model: String,
}

/// cloud-init's NoCloud documents for a VM, and their text for review (secrets replaced).
#[derive(Debug, Clone)]
pub struct CloudInit {
    pub documents: SeedDocuments,
    pub review: String,
    /// A digest of the documents: a changed password changes it, and it says nothing more.
    pub sha256: String,
    /// Where the backend should keep it, if it keeps it in storage (the VM's `pool`).
    pub storage: Ref,
}

#[derive(Debug, Clone)]
pub struct VmIntent {
    /// kcli's `client:`: the provider it goes to (`None`: the default).
    pub client: Option<String>,
    /// VMs of one anti-affinity group never share a host of a group.
    pub antiaffinity: Option<String>,
    pub cpus: u32,
    pub memory_mib: u64,
    pub cpu_model: String,
    /// `qemu` (emulated) or `kvm` (kcli's default).
    pub virt_type: m::VirtType,
    pub uefi: bool,
    pub disks: Vec<VmDisk>,
    /// Shared disks (`type: disk` entries) attached to it, by entry name.
    pub shared_disks: Vec<String>,
    pub nics: Vec<VmNic>,
    pub cloud_init: Option<CloudInit>,
    pub start: bool,
    pub autostart: bool,
    /// A kernel the hypervisor boots directly, rather than the first disk's loader.
    pub boot: Option<DirectBoot>,
    /// Whether the VM has a channel for the QEMU guest agent.
    pub guest_agent: bool,
    /// How long what waits for this VM waits for its guest to be ready.
    pub wait_timeout: std::time::Duration,
    /// A command that succeeds in the guest once it is ready (kcli's `waitcommand`).
    pub wait_command: Option<String>,
    /// A cloud's instance type (kcli's `flavor`), for the backends that have them.
    pub flavor: Option<String>,
    /// A cloud's security groups it is in, besides its network's (kcli's `securitygroups`).
    pub security_groups: Vec<Ref>,
    /// The most vCPUs and memory (MiB) the running VM may grow to, where a backend can.
    pub max_cpus: Option<u32>,
    pub max_memory_mib: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct DirectBoot {
    pub kernel: BootFile,
    pub initrd: Option<BootFile>,
    pub cmdline: Option<String>,
}

/// A kernel or initrd: a file on the provider's host, or an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFile {
    Path(String),
    /// An image the plan declares, or (undeclared) a volume in `storage`, the VM's storage.
    Image {
        image: Ref,
        storage: Ref,
    },
}

impl DirectBoot {
    pub fn files(&self) -> impl Iterator<Item = &BootFile> {
        std::iter::once(&self.kernel).chain(&self.initrd)
    }
}

impl Intents {
    pub fn get(&self, name: &str) -> Option<&Intent> {
        self.items.iter().find(|i| i.name == name)
    }

    /// Splits the plan by provider: a VM goes where its `client` says (`None`: the default
    /// provider), with every entry its keys need; a network or storage that VMs on two
    /// providers use is asked of both; what no VM needs goes to the default. A `depends_on`
    /// orders, and copies nothing: what it names stays where it is, and when that is another
    /// part, `across_providers` says so, for the executor to wait for it.
    pub fn by_provider(&self) -> Vec<(Option<String>, Intents)> {
        let homes = self.homes();
        let home = |item: &Intent| -> BTreeSet<Option<String>> {
            homes
                .get(item.name.as_str())
                .cloned()
                .unwrap_or_else(|| BTreeSet::from([None]))
        };
        let providers: BTreeSet<Option<String>> = self.items.iter().flat_map(home).collect();
        if providers.len() <= 1 {
            let only = providers.into_iter().next().unwrap_or(None);
            return vec![(only, self.clone())];
        }
        providers
            .into_iter()
            .map(|provider| {
                let items = self
                    .items
                    .iter()
                    .filter(|i| home(i).contains(&provider))
                    .cloned()
                    .collect();
                (provider, Intents { items })
            })
            .collect()
    }

    /// Where each entry goes: the providers of the VMs that need it by their keys (a VM's own
    /// `client`, `None` for the default), following what each needs in turn.
    fn homes(&self) -> BTreeMap<&str, BTreeSet<Option<String>>> {
        let mut homes: BTreeMap<&str, BTreeSet<Option<String>>> = BTreeMap::new();
        for item in &self.items {
            let What::Vm(vm) = &item.what else { continue };
            let mut stack = vec![item.name.as_str()];
            while let Some(name) = stack.pop() {
                if !homes.entry(name).or_default().insert(vm.client.clone()) {
                    continue;
                }
                if let Some(needed) = self.get(name) {
                    stack.extend(
                        needed
                            .needs_by_keys()
                            .into_iter()
                            .filter_map(|n| self.get(n).map(|i| i.name.as_str())),
                    );
                }
            }
        }
        homes
    }

    /// The `depends_on` edges between entries that go to different providers, as (the entry
    /// that comes after, the one it comes after), by entry address (`vm/web1`): the executor
    /// makes the first wait for the second (and, deleting, the other way round).
    pub fn across_providers(&self) -> Vec<(String, String)> {
        let homes = self.homes();
        let home = |name: &str| {
            homes
                .get(name)
                .cloned()
                .unwrap_or_else(|| BTreeSet::from([None]))
        };
        let mut edges = Vec::new();
        for item in &self.items {
            for after in &item.after {
                let Some(dependency) = self.get(after) else {
                    continue;
                };
                if home(&item.name) != home(&dependency.name) {
                    edges.push((item.entry.clone(), dependency.entry.clone()));
                }
            }
        }
        edges
    }
}

impl Intent {
    /// The names of the entries (declared or not) this one refers to: its keys' and its
    /// `depends_on`.
    pub fn needs(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.after.iter().map(String::as_str).collect();
        names.extend(self.needs_by_keys());
        names
    }

    /// The names of the entries its keys refer to (what it is made of), without `depends_on`.
    pub fn needs_by_keys(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        match &self.what {
            What::Network(_) | What::Storage(_) => {}
            What::Dns(dns) => names.push(&dns.network.name),
            What::SecurityGroup(group) => names.push(&group.network.name),
            What::Image(image) => names.push(&image.storage.name),
            What::Disk(disk) => {
                names.push(&disk.storage.name);
                names.extend(disk.image.iter().map(|i| i.name.as_str()));
            }
            What::Vm(vm) => {
                for d in &vm.disks {
                    names.push(&d.storage.name);
                    names.extend(d.image.iter().map(|i| i.name.as_str()));
                }
                names.extend(vm.shared_disks.iter().map(String::as_str));
                names.extend(vm.nics.iter().map(|n| n.network.name.as_str()));
                names.extend(vm.security_groups.iter().map(|g| g.name.as_str()));
                names.extend(vm.cloud_init.iter().map(|c| c.storage.name.as_str()));
                for file in vm.boot.iter().flat_map(DirectBoot::files) {
                    if let BootFile::Image { image, storage } = file {
                        names.push(&image.name);
                        names.push(&storage.name);
                    }
                }
            }
        }
        names
    }
}

/// The intents of a plan given as text, read without any kcli configuration (tests).
#[cfg(test)]
pub fn of_text(text: &str) -> Intents {
    let overrides = crate::manifest::Overrides {
        no_kcli_config: true,
        ..crate::manifest::Overrides::default()
    };
    let path = Path::new("/nonexistent/lab.yml");
    let loaded = crate::manifest::load_text(text, path, &overrides, Default::default())
        .unwrap_or_else(|e| panic!("{:?}", e.problems));
    intents(&loaded.manifest, "lab", path).expect("intents")
}
