//! The plan format as JSON Schema, for editors (completion and hover docs) and for reference.
//!
//! These types describe the file, not the model: they exist only to generate
//! `schemas/plan.schema.json`. A test checks that the keys here are the keys `read` asks for.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use super::keys;

/// A siteplan plan: kcli's plan format. A Jinja template that renders to a map of named entries.
#[derive(JsonSchema)]
#[schemars(title = "siteplan plan")]
#[allow(dead_code)]
pub struct PlanFile {
    /// Default values of the template's variables. Parameter files and `-P key=value` override
    /// them; a value of `?required` must be overridden.
    parameters: Option<BTreeMap<String, serde_json::Value>>,
    #[schemars(flatten)]
    entries: BTreeMap<String, EntryFormat>,
}

/// One named entry. `type` says which kind; without it the entry is a VM.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum EntryFormat {
    Network(NetworkFormat),
    Pool(PoolFormat),
    Image(ImageFormat),
    Disk(DiskFormat),
    Dns(DnsFormat),
    SecurityGroup(SecurityGroupFormat),
    Profile(Box<ProfileFormat>),
    Vm(Box<VmFormat>),
}

/// A size: a number in the key's default unit, or a number with a unit (K, M, G, T; `i` and `B`
/// are accepted and mean the same).
struct Size;

impl JsonSchema for Size {
    fn schema_name() -> Cow<'static, str> {
        "Size".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A number in the key's default unit, or with a unit such as 512M, 4G or 1T",
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*([kKmMgGtT]i?[bB]?)?$"}
            ]
        })
    }
}

/// kcli's hotplug keys: `true` for the default headroom, or the most the VM may grow to.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum HotplugFormat {
    On(bool),
    Most(Size),
}

/// Names of other entries.
type Names = Vec<String>;

#[derive(JsonSchema)]
#[allow(dead_code)]
enum VmTag {
    #[schemars(rename = "vm")]
    Vm,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
enum ProfileTag {
    #[schemars(rename = "profile")]
    Profile,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
enum NetworkTag {
    #[schemars(rename = "network")]
    Network,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
enum PoolTag {
    #[schemars(rename = "pool")]
    Pool,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
enum ImageTag {
    #[schemars(rename = "image")]
    Image,
    /// kcli's older name for an image.
    #[schemars(rename = "template")]
    Template,
}
#[derive(JsonSchema)]
#[allow(dead_code)]
enum DiskTag {
    #[schemars(rename = "disk")]
    Disk,
}

/// A virtual machine (the default type).
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct VmFormat {
    #[schemars(rename = "type")]
    r#type: Option<VmTag>,
    #[schemars(flatten)]
    vm: VmKeys,
}

/// Keys shared by VMs and profiles, with kcli's defaults.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct VmKeys {
    /// Name of a `profile` entry whose keys this VM inherits; the VM's own keys win.
    profile: Option<String>,
    /// Virtual CPUs. Default 2.
    numcpus: Option<u32>,
    /// Memory: MiB as a number (`4096`) or with a unit (`4G`). Default 512.
    memory: Option<Size>,
    /// CPU model. Default host-model.
    cpumodel: Option<String>,
    /// Hypervisor type. Choose qemu (software emulation) where KVM does not work.
    virttype: Option<VirtType>,
    /// Boot with UEFI firmware. Default false.
    uefi: Option<bool>,
    /// Storage pool for the VM's disks. Default `default`.
    pool: Option<String>,
    /// Image the first disk is created from (an `image` entry, or an image already in the pool).
    image: Option<String>,
    /// Disks: a size in GB, or a map. Default one 10 GB disk.
    disks: Option<Vec<VmDiskFormat>>,
    /// Bus of disks that do not say. Default virtio.
    diskinterface: Option<DiskBus>,
    /// Thin-provisioned (qcow2) disks. Default true.
    diskthin: Option<bool>,
    /// Size of the one disk a VM has when it gives no `disks`, in GB or with a unit. Default 10.
    disksize: Option<Size>,
    /// NICs: a network name, or a map. Default one NIC on `default`.
    nets: Option<Vec<NicFormat>>,
    /// Start the VM after creating it. Default true.
    start: Option<bool>,
    /// Start the VM when the host boots. Default false.
    autostart: Option<bool>,
    /// Give the VM a cloud-init seed. Default true.
    cloudinit: Option<bool>,
    /// SSH public keys for the guest's default user.
    keys: Option<Vec<String>>,
    /// Commands run in the guest on first boot.
    cmds: Option<Vec<String>>,
    /// Local script files run in the guest on first boot.
    scripts: Option<Vec<String>>,
    /// Files written into the guest.
    files: Option<Vec<FileFormat>>,
    /// DNS domain of the guest.
    domain: Option<String>,
    /// DNS server the guest uses.
    dns: Option<String>,
    /// Which provider the VM goes to: a provider, or a group of hosts (the VM is then placed
    /// on one of them). Default: the providers file's default.
    client: Option<String>,
    /// siteplan's: an anti-affinity group. VMs of one group never share a host of a group of
    /// hosts (give it in a profile to spread all the VMs made from it).
    antiaffinity: Option<String>,
    /// Root password for the guest. Sensitive: never shown in output.
    rootpassword: Option<String>,
    /// Add a DNS record for the VM on its network. Default false.
    reservedns: Option<bool>,
    /// Reserve the VM's static IP in its network's DHCP. Default false.
    reserveip: Option<bool>,
    /// Boot this kernel directly instead of the first disk's boot loader: an absolute path on
    /// the provider's host, the name of an image (declared in the plan, or a volume already
    /// in the VM's pool), or an http(s) URL (fetched into the VM's pool as an image of its own).
    kernel: Option<String>,
    /// The initrd for `kernel`: an absolute path on the provider's host, an image's name, or
    /// an http(s) URL.
    initrd: Option<String>,
    /// The kernel command line for `kernel`, such as `root=/dev/vda console=ttyS0`.
    cmdline: Option<String>,
    /// Give the VM a channel for the QEMU guest agent, through which siteplan asks the guest
    /// for its addresses. Default true.
    guestagent: Option<bool>,
    /// kcli's: the VMs after this one in the plan start only once its guest is ready
    /// (cloud-init has run its commands and scripts). Default false.
    wait: Option<bool>,
    /// kcli's: a shell command that succeeds in the guest once it is ready, run through the
    /// guest agent (after cloud-init has finished) until it exits 0.
    waitcommand: Option<String>,
    /// kcli's: a cloud's instance type (AWS: `t3.large`), rather than the smallest that has
    /// `numcpus` and `memory`. Backends without instance types ignore it.
    flavor: Option<String>,
    /// kcli's: a cloud's security groups (`type: securitygroup` entries, or groups that exist
    /// on the VM's network) the VM is in, besides its network's own. Only cloud providers have
    /// them; the others refuse the key.
    securitygroups: Option<Names>,
    /// How long, in seconds, what waits for this VM waits for its guest to be ready. Default 900.
    waittimeout: Option<u32>,
    /// Room to add CPUs to the running VM (KubeVirt): `true` (four times `numcpus`) or the most
    /// vCPUs it may have. On libvirt, CPU changes still need a restart.
    cpuhotplug: Option<HotplugFormat>,
    /// Room to add memory to the running VM (KubeVirt): `true` (four times `memory`) or the most
    /// it may have (a size). On libvirt, memory changes still need a restart.
    memoryhotplug: Option<HotplugFormat>,
    /// siteplan's extension: names of entries to create before this one, beyond what its keys
    /// already refer to.
    depends_on: Option<Names>,
    #[schemars(flatten)]
    guards: GuardKeys,
}

/// siteplan's extensions that guard an entry's resources.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct GuardKeys {
    /// Refuse any plan that would delete or replace this entry's resources (including
    /// `plan destroy`). Default false.
    prevent_destroy: Option<bool>,
    /// Create the replacement before deleting the old resource. libvirt names are unique, so a
    /// replacement of the same name cannot exist beside the old one: a plan that would replace
    /// such a resource is refused with this set, rather than silently deleting first.
    create_before_destroy: Option<bool>,
    /// Plan keys whose changes are not applied to what already exists (they still apply when
    /// it is created): for a VM `memory`, `numcpus`, `cpumodel`, `start`, `autostart`, `nets`,
    /// `disks`, `cmds`, `files`, `scripts`, `keys`, `rootpassword`...; for a network `cidr`,
    /// `dhcp`, `domain`, `mtu`, `nat`; for a pool `path`; for an image `url`; for a disk `size`.
    ignore_changes: Option<Vec<String>>,
}

/// Named settings that VMs inherit with `profile: NAME`.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct ProfileFormat {
    #[schemars(rename = "type")]
    r#type: ProfileTag,
    #[schemars(flatten)]
    vm: VmKeys,
}

#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code)]
enum VirtType {
    Qemu,
    Kvm,
}

#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code)]
enum DiskBus {
    Virtio,
    Scsi,
    Sata,
    Ide,
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum VmDiskFormat {
    /// Size in GB, or with a unit.
    Size(Size),
    Disk(VmDiskMap),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct VmDiskMap {
    /// Size in GB, or with a unit. Default 10.
    size: Option<Size>,
    /// Pool of this disk. Default: the VM's pool.
    pool: Option<String>,
    /// Thin-provisioned. Default: the VM's diskthin.
    thin: Option<bool>,
    /// Bus. Default: the VM's diskinterface.
    interface: Option<DiskBus>,
    /// Volume name. Default: VM name and disk index.
    name: Option<String>,
    /// Image this disk is created from.
    image: Option<String>,
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum NicFormat {
    /// A network name.
    Network(String),
    Nic(NicMap),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct NicMap {
    /// The network this NIC is on.
    name: String,
    /// MAC address. Default: generated.
    mac: Option<String>,
    /// Static IP address, configured through cloud-init.
    ip: Option<String>,
    /// Netmask of the static IP (or use `prefix`).
    mask: Option<String>,
    /// Netmask of the static IP (or use `prefix`).
    netmask: Option<String>,
    /// Prefix length of the static IP.
    prefix: Option<u8>,
    gateway: Option<String>,
    dns: Option<String>,
    /// NIC model. Default virtio.
    #[schemars(rename = "type")]
    model: Option<String>,
    /// Leave this NIC unconfigured in the guest.
    noconf: Option<bool>,
}

#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum FileFormat {
    /// A local file copied to the same path in the guest.
    Path(String),
    File(FileMap),
}

#[derive(JsonSchema)]
#[allow(dead_code)]
struct FileMap {
    /// Absolute path in the guest.
    path: String,
    /// The file's content (or use `origin`).
    content: Option<String>,
    /// A local file whose content is used.
    origin: Option<String>,
    owner: Option<String>,
    /// Octal mode such as 0644.
    mode: Option<u32>,
    /// Render an `origin` file as a Jinja template (with its VM's keys and its own). Default true.
    render: Option<bool>,
}

/// A libvirt virtual network.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct NetworkFormat {
    #[schemars(rename = "type")]
    r#type: NetworkTag,
    /// Address range, such as 192.168.100.0/24. Required except for bridged networks.
    cidr: Option<String>,
    /// Forward with NAT. Default true; false makes an isolated network.
    nat: Option<bool>,
    /// Serve DHCP. Default true.
    dhcp: Option<bool>,
    /// DNS domain. Default: the network's name.
    domain: Option<String>,
    dhcp_start: Option<String>,
    dhcp_end: Option<String>,
    forward_mode: Option<ForwardMode>,
    /// Attach to an existing host bridge (named by `bridgename`).
    bridge: Option<bool>,
    /// Bridge interface name, at most 15 characters. Default: the network's name.
    bridgename: Option<String>,
    mtu: Option<u32>,
    /// Serve DNS. Default true.
    dns: Option<bool>,
    /// PXE boot server address.
    pxe: Option<String>,
    depends_on: Option<Names>,
    #[schemars(flatten)]
    guards: GuardKeys,
}

#[derive(JsonSchema)]
#[schemars(rename_all = "lowercase")]
#[allow(dead_code)]
enum ForwardMode {
    Nat,
    Route,
    Open,
    Bridge,
}

/// A storage pool: a directory on the host.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct PoolFormat {
    #[schemars(rename = "type")]
    r#type: PoolTag,
    /// Absolute directory path on the host.
    path: String,
    /// Only `dir` is supported.
    pooltype: Option<String>,
    depends_on: Option<Names>,
    #[schemars(flatten)]
    guards: GuardKeys,
}

/// A disk image, downloaded into a pool.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct ImageFormat {
    #[schemars(rename = "type")]
    r#type: ImageTag,
    /// http(s) URL, file:// URL or absolute path. Without it the image must already be in the pool.
    url: Option<String>,
    /// Pool the image goes to. Default `default`.
    pool: Option<String>,
    /// Resize the image to this size (GB, or with a unit).
    size: Option<Size>,
    /// siteplan's extension: expected SHA-256 of the download.
    sha256: Option<String>,
    depends_on: Option<Names>,
    #[schemars(flatten)]
    guards: GuardKeys,
}

/// A disk of its own, shared between VMs.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct DiskFormat {
    #[schemars(rename = "type")]
    r#type: DiskTag,
    /// Size in GB, or with a unit. Default 10.
    size: Option<Size>,
    /// Default `default`.
    pool: Option<String>,
    /// Default true.
    thin: Option<bool>,
    image: Option<String>,
    /// VMs the disk is attached to.
    vms: Option<Names>,
    depends_on: Option<Names>,
    #[schemars(flatten)]
    guards: GuardKeys,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
enum DnsTag {
    #[schemars(rename = "dns")]
    Dns,
}

/// A DNS record (the entry's name, and its aliases) in a network the plan declares.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct DnsFormat {
    #[schemars(rename = "type")]
    r#type: DnsTag,
    /// The network whose DNS answers it, declared in the plan. Default `default`.
    net: Option<String>,
    /// The address the names resolve to.
    ip: String,
    /// The record answers for NAME.DOMAIN too.
    domain: Option<String>,
    /// More names for the same address.
    alias: Option<Vec<String>>,
    depends_on: Option<Names>,
    #[schemars(flatten)]
    guards: GuardKeys,
}

#[derive(JsonSchema)]
#[allow(dead_code)]
enum SecurityGroupTag {
    #[schemars(rename = "securitygroup")]
    SecurityGroup,
}

/// A port a security group opens: a port number (TCP), or a range of one protocol.
#[derive(JsonSchema)]
#[schemars(untagged)]
#[allow(dead_code)]
enum PortFormat {
    Port(u16),
    Text(String),
    Range(PortRangeFormat),
}

#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct PortRangeFormat {
    from: u16,
    /// Default: `from`.
    to: Option<u16>,
    /// `tcp` (the default) or `udp`.
    protocol: Option<String>,
}

/// A cloud's security group (kcli's): the ports it lets in, and ICMP, for the VMs that name it
/// in their `securitygroups`. Only cloud providers (AWS) have them; the others refuse it.
#[derive(JsonSchema)]
#[schemars(deny_unknown_fields)]
#[allow(dead_code)]
struct SecurityGroupFormat {
    #[schemars(rename = "type")]
    r#type: SecurityGroupTag,
    /// The network (on AWS, its VPC) the group belongs to. Default `default`.
    network: Option<String>,
    /// The ports it lets in.
    ports: Option<Vec<PortFormat>>,
    /// siteplan's extension: where the traffic may come from (an IPv4 CIDR). Default anywhere.
    cidr: Option<String>,
    depends_on: Option<Names>,
    #[schemars(flatten)]
    guards: GuardKeys,
}

/// The schema, with kcli keys that siteplan ignores added so that editors accept them.
pub fn schema() -> serde_json::Value {
    let mut value = schemars::schema_for!(PlanFile).to_value();
    for (definition, ignored) in [
        ("VmFormat", keys::VM_UNIMPLEMENTED),
        ("ProfileFormat", keys::VM_UNIMPLEMENTED),
        ("NetworkFormat", keys::NETWORK_UNIMPLEMENTED),
        ("PoolFormat", keys::POOL_UNIMPLEMENTED),
        ("ImageFormat", keys::IMAGE_UNIMPLEMENTED),
        ("DiskFormat", keys::DISK_UNIMPLEMENTED),
        ("DnsFormat", keys::DNS_UNIMPLEMENTED),
        ("SecurityGroupFormat", keys::SECURITY_GROUP_UNIMPLEMENTED),
        ("NicMap", keys::NIC_UNIMPLEMENTED),
        ("VmDiskMap", keys::VM_DISK_UNIMPLEMENTED),
    ] {
        let Some(properties) = value["$defs"][definition]["properties"].as_object_mut() else {
            continue;
        };
        for key in ignored {
            properties.entry(key.to_string()).or_insert_with(|| {
                serde_json::json!({
                    "description": "A kcli key that siteplan does not implement yet: ignored, with a warning (an error with --strict)",
                    "deprecated": true
                })
            });
        }
    }
    value
}

/// The schema as it is checked in: pretty JSON with a final newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::model::Kind;
    use crate::manifest::read::keys_read_for;

    fn properties(definition: &str) -> Vec<String> {
        let schema = schemars::schema_for!(PlanFile).to_value();
        let mut keys: Vec<String> = schema["$defs"][definition]["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    /// The schema documents exactly the keys the reader understands, no more and no fewer.
    #[test]
    fn schema_keys_are_the_keys_the_reader_reads() {
        for (kind, definition) in [
            (Kind::Vm, "VmFormat"),
            (Kind::Profile, "ProfileFormat"),
            (Kind::Network, "NetworkFormat"),
            (Kind::Pool, "PoolFormat"),
            (Kind::Image, "ImageFormat"),
            (Kind::Disk, "DiskFormat"),
            (Kind::Dns, "DnsFormat"),
            (Kind::SecurityGroup, "SecurityGroupFormat"),
        ] {
            let mut read: Vec<String> = keys_read_for(kind).into_iter().map(String::from).collect();
            read.sort();
            read.dedup();
            assert_eq!(read, properties(definition), "{kind}");
        }
    }
}
