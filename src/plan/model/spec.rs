//! Desired state of one resource, in the terms a provider works in.
//!
//! A spec is both what the planner asks for and what a provider reports it observed, normalised
//! the same way, so that "no change" is plain equality. Specs are also what an ownership mark
//! records ("created from this spec"), so they serialise, and never hold a secret in clear.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use super::kind::{ResourceKind, Role};

/// Names one resource on one provider. Volumes are named within their pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceId {
    pub kind: ResourceKind,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

impl Spec {
    /// Whether this is a VM that is declared (or found) running: a domain's `running`, a
    /// KubeVirt VirtualMachine's `runStrategy` other than `Halted`, another backend's VM
    /// object's `running` other than false (an EC2 instance's).
    pub fn runs(&self) -> bool {
        match self {
            Spec::Vm(vm) => vm.running,
            Spec::Object(object) => {
                object.object.is_vm()
                    && object.fields.get("spec.runStrategy")
                        != Some(&serde_json::Value::from("Halted"))
                    && object.fields.get("running") != Some(&serde_json::Value::from(false))
            }
            _ => false,
        }
    }
}

impl ResourceId {
    pub fn network(name: &str) -> Self {
        ResourceId {
            kind: ResourceKind::NETWORK,
            name: name.into(),
            pool: None,
        }
    }
    pub fn pool(name: &str) -> Self {
        ResourceId {
            kind: ResourceKind::POOL,
            name: name.into(),
            pool: None,
        }
    }
    pub fn volume(pool: &str, name: &str) -> Self {
        ResourceId {
            kind: ResourceKind::VOLUME,
            name: name.into(),
            pool: Some(pool.into()),
        }
    }
    /// A DNS record, named within its network as a volume is within its pool.
    pub fn dns_record(network: &str, name: &str) -> Self {
        ResourceId {
            kind: ResourceKind::DNS_RECORD,
            name: name.into(),
            pool: Some(network.into()),
        }
    }
    pub fn vm(name: &str) -> Self {
        ResourceId::object(ResourceKind::VM, name)
    }
    /// The tunnel of a network that spans hosts, on one of them.
    pub fn tunnel(network: &str) -> Self {
        ResourceId::object(ResourceKind::TUNNEL, network)
    }
    /// A resource of `kind` that lives in no pool.
    pub fn object(kind: ResourceKind, name: &str) -> Self {
        ResourceId {
            kind,
            name: name.into(),
            pool: None,
        }
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.pool {
            Some(pool) => write!(f, "{}/{pool}/{}", self.kind, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Spec {
    Network(NetworkSpec),
    Pool(PoolSpec),
    Volume(VolumeSpec),
    Vm(VmSpec),
    Object(ObjectSpec),
    Dns(DnsRecordSpec),
    Tunnel(TunnelSpec),
}

impl Spec {
    pub fn id(&self) -> ResourceId {
        match self {
            Spec::Network(n) => ResourceId::network(&n.name),
            Spec::Pool(p) => ResourceId::pool(&p.name),
            Spec::Volume(v) => ResourceId::volume(&v.pool, &v.name),
            Spec::Vm(v) => ResourceId::vm(&v.name),
            Spec::Object(o) => ResourceId {
                kind: o.object,
                name: o.name.clone(),
                pool: None,
            },
            Spec::Dns(r) => ResourceId::dns_record(&r.network, &r.name),
            Spec::Tunnel(t) => ResourceId::tunnel(&t.network),
        }
    }
}

/// A Kubernetes object as siteplan sets it: its kind and name, and each field it sets by its
/// path (`spec.runStrategy`), so that a diff names the fields that change. Lists are one value
/// each. A Secret's data is held by digest (with its text for review, secrets replaced); its
/// clear bytes travel beside, never serialised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObjectSpec {
    /// Which kind of object (the Spec's own tag is `kind: object`).
    pub object: ResourceKind,
    pub name: String,
    #[serde(flatten)]
    pub fields: std::collections::BTreeMap<String, serde_json::Value>,
    #[serde(skip)]
    pub secret_data: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardMode {
    Nat,
    Route,
    Open,
    Bridge,
    Isolated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpHost {
    pub mac: String,
    pub ip: IpAddr,
    pub name: String,
}

/// A DNS record of the plan's in a network it does not make: the names (the first is the
/// record's own) for an address. Which records are whose is kept in the network's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRecordSpec {
    pub network: String,
    pub name: String,
    pub ip: IpAddr,
    pub names: Vec<String>,
}

/// One host's end of a network that spans hosts: a VXLAN device in the network's bridge on
/// this host, which sends what the bridge floods to every other host of the network. One
/// host (the network's home) runs its DHCP and DNS; on the others the network is the bridge
/// alone, which the tunnel makes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSpec {
    /// The plan's network it joins.
    pub network: String,
    /// The bridge it is a port of (empty when observed outside any).
    pub bridge: String,
    /// The VXLAN device's name on the host.
    pub device: String,
    /// The VXLAN network identifier, the same on every host of the network.
    pub vni: u32,
    /// This host's address, the tunnel's source.
    pub local: String,
    /// The other hosts' addresses, sorted.
    pub peers: Vec<String>,
    /// Whether the tunnel makes the bridge too (on every host but the network's home, whose
    /// bridge libvirt makes with the network).
    pub makes_bridge: bool,
}

/// A DNS record the network's DNS server answers (libvirt's `<dns><host>`): names for an
/// address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsHost {
    pub ip: IpAddr,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    pub mode: ForwardMode,
    /// The Linux bridge: created by libvirt, or (mode bridge) an existing one.
    pub bridge: String,
    /// The network's range; the host side takes its first address.
    pub cidr: Option<IpNet>,
    /// The DHCP range, when DHCP is on.
    pub dhcp: Option<(IpAddr, IpAddr)>,
    /// Reserved addresses for VMs with static IPs, sorted by MAC.
    pub hosts: Vec<DhcpHost>,
    /// DNS records (kcli's `dns` entries), sorted by address. Absent from marks made before
    /// networks had them, and so from those of networks without any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_hosts: Vec<DnsHost>,
    pub domain: Option<String>,
    pub mtu: Option<u32>,
    pub dns: bool,
    pub autostart: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSpec {
    pub name: String,
    pub path: String,
    pub autostart: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeFormat {
    Qcow2,
    Raw,
}

impl VolumeFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeFormat::Qcow2 => "qcow2",
            VolumeFormat::Raw => "raw",
        }
    }
}

/// Where a volume's initial content comes from. Two are equal when they say the same: the
/// bytes of generated content are compared by their digest (a live volume's are not read back).
#[derive(Debug, Clone, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeSource {
    /// Empty (or backed by another volume).
    Blank,
    /// Downloaded from http(s) or read from a local file, checked against a digest if given.
    /// A password in the URL (`https://user:PASSWORD@host/`) is the user's to keep: the spec
    /// holds it to fetch with, and serialises (for a diff, a mark, a saved plan) and compares
    /// the URL without it.
    Fetch {
        #[serde(serialize_with = "url_without_password")]
        url: String,
        sha256: Option<String>,
    },
    /// Bytes generated by siteplan (a cloud-init seed). Only their digest is recorded: the bytes
    /// may hold a password.
    Generated {
        sha256: String,
        /// The bytes as text for review, secrets replaced by `(sensitive)`; a change to a
        /// secret alone still changes `sha256`.
        #[serde(default)]
        review: String,
        /// Makes the bytes, when the volume is created: a plan must not hold a seed's megabyte
        /// per VM just to be diffed.
        #[serde(skip)]
        generator: Generator,
    },
}

/// Makes a generated volume's bytes on demand. Never serialised, never compared.
#[derive(Clone, Default)]
pub struct Generator(Option<Arc<GenerateFn>>);

type GenerateFn = dyn Fn() -> std::io::Result<Vec<u8>> + Send + Sync;

impl Generator {
    pub fn new(make: impl Fn() -> std::io::Result<Vec<u8>> + Send + Sync + 'static) -> Self {
        Generator(Some(Arc::new(make)))
    }

    /// The bytes; none when nothing makes them (a spec read back from a mark).
    pub fn bytes(&self) -> std::io::Result<Vec<u8>> {
        match &self.0 {
            Some(make) => make(),
            None => Ok(Vec::new()),
        }
    }
}

/// Sources compare by digest: two generators of the same digest make the same bytes.
impl PartialEq for Generator {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Generator {}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Generator"
        } else {
            "Generator(none)"
        })
    }
}

fn url_without_password<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::secrets::hide_url_passwords(url))
}

impl PartialEq for VolumeSource {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (VolumeSource::Blank, VolumeSource::Blank) => true,
            (VolumeSource::Fetch { url, sha256 }, VolumeSource::Fetch { url: u, sha256: s }) => {
                // A mark records the URL without its password, and older marks with it.
                let shown = crate::secrets::hide_url_passwords;
                shown(url) == shown(u) && sha256 == s
            }
            (
                VolumeSource::Generated { sha256, review, .. },
                VolumeSource::Generated {
                    sha256: s,
                    review: r,
                    ..
                },
            ) => sha256 == s && review == r,
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    pub pool: String,
    /// Virtual size. For a fetched image, `None` keeps the image's own size.
    pub capacity_bytes: Option<u64>,
    pub format: VolumeFormat,
    /// Allocate space only as it is written (kcli's `thin`); otherwise all of it up front.
    pub thin: bool,
    /// A qcow2 overlay on another volume (an image), by pool and name.
    pub backing: Option<(String, String)>,
    pub source: VolumeSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtType {
    Qemu,
    Kvm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    Virtio,
    Scsi,
    Sata,
    Ide,
}

impl Bus {
    pub fn as_str(self) -> &'static str {
        match self {
            Bus::Virtio => "virtio",
            Bus::Scsi => "scsi",
            Bus::Sata => "sata",
            Bus::Ide => "ide",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub pool: String,
    pub volume: String,
    pub bus: Bus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicSpec {
    pub network: String,
    /// `None` lets the backend generate one; observed specs always have it.
    pub mac: Option<String>,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub cpu_model: String,
    pub virt_type: VirtType,
    pub uefi: bool,
    pub disks: Vec<DiskSpec>,
    pub nics: Vec<NicSpec>,
    /// The cloud-init seed volume, attached as a read-only disk.
    pub seed: Option<(String, String)>,
    pub running: bool,
    pub autostart: bool,
    /// Direct kernel boot: the kernel, initrd and command line the hypervisor boots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<BootFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<BootFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// A virtio channel for the QEMU guest agent.
    #[serde(default)]
    pub guest_agent: bool,
    /// The digest of the seed's content the VM was defined with (kept in its mark, compared,
    /// never shown). A seed made again while the VM runs is read only at its next boot: the
    /// running definition's mark still has the old digest, so the VM waits for a restart, and
    /// says so, until it restarts. `None` in a mark written before siteplan recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_sha256: Option<String>,
}

/// A file the hypervisor reads to boot a VM: a path on the host, or a volume in a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootFile {
    Path(String),
    Volume { pool: String, volume: String },
}
