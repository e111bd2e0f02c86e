//! The typed plan: every entry with kcli's defaults applied and sizes in one unit.
//!
//! Names that refer to other entries are kept as `Ref`s with their position, so that later stages
//! (the graph, the planner) can still point at the line that made the reference.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::diagnostics::Span;

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Final parameter values after every override, in name order.
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// What the plan's template saw: the parameters over the kcli configuration's `config_*`
    /// values and `plan`. Scripts and files see this too, under their VM's own keys.
    pub context: BTreeMap<String, serde_json::Value>,
    /// Entries in the order they appear in the rendered plan. Profiles are already merged into
    /// the VMs that use them, and kept here too so that the graph can show them.
    pub entries: Vec<Entry>,
    /// Where the files it names (scripts, `origin` files, local images) may be read.
    pub access: super::access::FileAccess,
}

impl Manifest {
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    /// Where the entry's name is written.
    pub span: Span,
    pub kind: EntryKind,
    /// siteplan's extension: explicit ordering edges to other entries of the plan.
    pub depends_on: Vec<Ref>,
    /// siteplan's extension: what may not happen to the entry's resources.
    pub guards: Guards,
}

/// Guards on an entry (siteplan's extension; see the schema).
#[derive(Debug, Clone, Default)]
pub struct Guards {
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    /// Plan keys whose changes to existing resources are ignored.
    pub ignore_changes: Vec<Ref>,
}

#[derive(Debug, Clone)]
pub enum EntryKind {
    Vm(Box<Vm>),
    Network(Network),
    Pool(Pool),
    Image(Image),
    Disk(SharedDisk),
    Profile,
    Dns(DnsRecord),
    SecurityGroup(SecurityGroup),
}

/// The kinds of entries a plan can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Network,
    Pool,
    Image,
    Profile,
    Vm,
    Disk,
    Dns,
    SecurityGroup,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Network,
        Kind::Pool,
        Kind::Image,
        Kind::Profile,
        Kind::Vm,
        Kind::Disk,
        Kind::Dns,
        Kind::SecurityGroup,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Network => "network",
            Kind::Pool => "pool",
            Kind::Image => "image",
            Kind::Profile => "profile",
            Kind::Vm => "vm",
            Kind::Disk => "disk",
            Kind::Dns => "dns",
            Kind::SecurityGroup => "securitygroup",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EntryKind {
    pub fn kind(&self) -> Kind {
        match self {
            EntryKind::Vm(_) => Kind::Vm,
            EntryKind::Network(_) => Kind::Network,
            EntryKind::Pool(_) => Kind::Pool,
            EntryKind::Image(_) => Kind::Image,
            EntryKind::Disk(_) => Kind::Disk,
            EntryKind::Profile => Kind::Profile,
            EntryKind::Dns(_) => Kind::Dns,
            EntryKind::SecurityGroup(_) => Kind::SecurityGroup,
        }
    }
}

/// A name that refers to another entry, or to something that may already exist on a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    pub name: String,
    pub span: Span,
}

/// A value that must never be shown: it prints as `(sensitive)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The clear value, for the one place that must send it to a backend.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtType {
    Qemu,
    Kvm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    Virtio,
    Scsi,
    Sata,
    Ide,
}

#[derive(Debug, Clone)]
pub struct Vm {
    pub profile: Option<Ref>,
    pub numcpus: u32,
    pub memory_mib: u64,
    pub cpumodel: String,
    pub virttype: Option<VirtType>,
    pub uefi: bool,
    pub pool: Ref,
    pub image: Option<Ref>,
    pub disks: Vec<VmDisk>,
    pub diskinterface: DiskBus,
    pub diskthin: bool,
    pub nets: Vec<Nic>,
    pub start: bool,
    pub autostart: bool,
    pub cloudinit: bool,
    pub keys: Vec<String>,
    pub cmds: Vec<String>,
    pub scripts: Vec<String>,
    pub files: Vec<GuestFile>,
    pub domain: Option<String>,
    pub dns: Option<IpAddr>,
    /// Which provider the VM goes to (kcli's `client`); `None` means the default one.
    pub client: Option<String>,
    /// siteplan's own: VMs of one anti-affinity group never share a host of a group of hosts
    /// (a profile gives it to every VM made from it: the masters, the workers).
    pub antiaffinity: Option<String>,
    pub rootpassword: Option<Secret>,
    pub reservedns: bool,
    pub reserveip: bool,
    /// Direct kernel boot (kcli's `kernel`, `initrd`, `cmdline`), instead of the disk's loader.
    pub boot: Option<DirectBoot>,
    /// A channel for the QEMU guest agent (kcli's `guestagent`), through which the host asks
    /// the guest for its addresses.
    pub guestagent: bool,
    /// kcli's `wait`: the VMs after this one in the plan wait until its guest is ready.
    pub wait: bool,
    /// A command that succeeds in the guest once it is ready (kcli's `waitcommand`), run
    /// through the guest agent after cloud-init has finished.
    pub wait_command: Option<String>,
    /// A cloud's instance type (kcli's `flavor`): backends without them ignore it.
    pub flavor: Option<String>,
    /// A cloud's security groups it is in (kcli's `securitygroups`), besides its network's.
    pub security_groups: Vec<Ref>,
    /// How long a VM that waits for this one waits (kcli's `waittimeout`), in seconds.
    pub wait_timeout_s: u64,
    /// Headroom for CPUs added to a running VM (kcli's `cpuhotplug`): the most vCPUs it may
    /// have. `true` in the plan: four times `numcpus`.
    pub max_cpus: Option<u32>,
    /// Headroom for memory added to a running VM (kcli's `memoryhotplug`): the most it may
    /// have, in MiB. `true` in the plan: four times `memory`.
    pub max_memory_mib: Option<u64>,
    /// Every key the VM and its profile set, as kcli gives them to the VM's script and file
    /// templates (with the plan's parameters under them).
    pub variables: std::collections::BTreeMap<String, serde_json::Value>,
    /// Its free text as a reviewer may see it, when the plan's template wrote a secret into
    /// the plan: `None` when it wrote none.
    pub shown: Option<ShownText>,
}

/// A VM's free text (what reaches its seed's review) with each secret the template wrote into
/// it shown as `(sensitive)` where it is: read from the plan rendered that way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownText {
    pub keys: Vec<String>,
    pub cmds: Vec<String>,
    /// Each file's inline `content`, in the order of `files` (`None` for an `origin` file).
    pub contents: Vec<Option<String>>,
}

impl ShownText {
    /// What `vm` shows, read from `shown`, the same VM in the plan rendered with its secrets as
    /// `(sensitive)`; when there is no such VM there (a secret named it), all of it is hidden.
    pub fn of(vm: &Vm, shown: Option<&Vm>) -> ShownText {
        let hidden = || crate::secrets::SENSITIVE.to_string();
        let inline = |f: &GuestFile| match &f.source {
            FileSource::Content(c) => Some(c.clone()),
            FileSource::Origin(_) => None,
        };
        match shown {
            Some(shown) if shown.files.len() == vm.files.len() => ShownText {
                keys: shown.keys.clone(),
                cmds: shown.cmds.clone(),
                contents: shown.files.iter().map(inline).collect(),
            },
            _ => ShownText {
                keys: vm.keys.iter().map(|_| hidden()).collect(),
                cmds: vm.cmds.iter().map(|_| hidden()).collect(),
                contents: vm
                    .files
                    .iter()
                    .map(|f| inline(f).map(|_| hidden()))
                    .collect(),
            },
        }
    }
}

/// A kernel booted directly by the hypervisor, with its initrd and command line.
#[derive(Debug, Clone)]
pub struct DirectBoot {
    pub kernel: BootFile,
    pub initrd: Option<BootFile>,
    pub cmdline: Option<String>,
}

/// Where a kernel or initrd is: a file on the provider's host, or an image (a volume in a pool).
#[derive(Debug, Clone)]
pub enum BootFile {
    Path(Located<String>),
    Image(Ref),
}

/// The volume name of a VM's disk without a `name`, as kcli names it.
pub fn disk_volume(vm: &str, index: usize) -> String {
    format!("{vm}_{index}.img")
}

#[derive(Debug, Clone)]
pub struct VmDisk {
    pub size_bytes: u64,
    pub pool: Ref,
    pub thin: bool,
    pub interface: DiskBus,
    pub name: Option<String>,
    pub image: Option<Ref>,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub struct Nic {
    pub network: Ref,
    pub mac: Option<String>,
    pub ip: Option<Located<IpAddr>>,
    pub prefix: Option<u8>,
    pub gateway: Option<Located<IpAddr>>,
    pub dns: Option<IpAddr>,
    /// The NIC model (kcli's `type`), such as virtio or e1000.
    pub model: String,
    pub noconf: bool,
    pub span: Span,
}

/// A value with the position it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub span: Span,
}

/// A DNS record in a network the plan declares (kcli's `dns` entry): the entry's name, with
/// the domain and aliases, for an address.
#[derive(Debug, Clone)]
pub struct DnsRecord {
    /// kcli's `net`; default `default`.
    pub net: Ref,
    pub ip: Located<IpAddr>,
    pub domain: Option<String>,
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct GuestFile {
    pub path: String,
    pub source: FileSource,
    pub owner: Option<String>,
    pub mode: Option<u32>,
    /// An `origin` file is a template unless `render: false`, as in kcli.
    pub render: bool,
    /// The file entry's own keys: variables for its template, over its VM's.
    pub variables: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone)]
pub enum FileSource {
    Content(String),
    /// A path on the machine running `plan`, read at apply time.
    Origin(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Nat,
    Route,
    Open,
    /// Attached to an existing host bridge.
    Bridge,
    /// No forwarding at all (kcli's `nat: false`).
    Isolated,
}

#[derive(Debug, Clone)]
pub struct Network {
    pub cidr: Option<Located<IpNet>>,
    pub mode: NetworkMode,
    pub dhcp: bool,
    pub domain: String,
    pub dhcp_start: Option<Located<IpAddr>>,
    pub dhcp_end: Option<Located<IpAddr>>,
    /// The Linux bridge name; libvirt refuses names over 15 characters.
    pub bridgename: String,
    pub mtu: Option<u32>,
    pub dns: bool,
    pub pxe: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub path: String,
}

#[derive(Debug, Clone)]
pub struct Image {
    /// Where to fetch it from; `None` means it must already be in the pool.
    pub url: Option<String>,
    pub pool: Ref,
    pub size_bytes: Option<u64>,
    pub sha256: Option<String>,
}

/// A disk of its own, attached to several VMs.
#[derive(Debug, Clone)]
pub struct SharedDisk {
    pub size_bytes: u64,
    pub pool: Ref,
    pub thin: bool,
    pub image: Option<Ref>,
    pub vms: Vec<Ref>,
}

/// A cloud's firewall for the VMs that name it (kcli's `type: securitygroup`): traffic it lets
/// in, from `source`, besides ICMP from anywhere, which kcli always allows.
#[derive(Debug, Clone)]
pub struct SecurityGroup {
    /// The network (a cloud's VPC) it belongs to; `default` by default.
    pub network: Ref,
    pub ports: Vec<Located<PortRange>>,
    /// Where the traffic may come from (siteplan's extension; kcli's is always anywhere).
    pub source: IpNet,
}

/// Ports of one protocol, `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRange {
    pub protocol: Protocol,
    pub from: u16,
    pub to: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

pub const GIB: u64 = 1024 * 1024 * 1024;
