//! What kcli's plan format has that siteplan does not implement (yet).
//!
//! Keys siteplan implements are the ones the reader asks for; these lists are the rest of kcli's
//! vocabulary, so that a kcli plan using them gets a warning naming the key, not a "did you mean".

/// Entry types this version of siteplan reads.
pub const SUPPORTED_TYPES: &[&str] = &[
    "vm",
    "network",
    "pool",
    "image",
    "template",
    "disk",
    "profile",
    "plan",
    "dns",
    "securitygroup",
];

/// kcli entry types siteplan refuses, with what to do instead.
pub const UNSUPPORTED_TYPES: &[(&str, &str)] = &[
    (
        "container",
        "containers are not virtual machines: run them with kcli or a container tool",
    ),
    (
        "bucket",
        "object storage buckets have no libvirt equivalent",
    ),
    (
        "kube",
        "Kubernetes clusters are not deployed by siteplan: use kcli for them",
    ),
    (
        "cluster",
        "Kubernetes clusters are not deployed by siteplan: use kcli for them",
    ),
    (
        "ansible",
        "run ansible after `plan apply`, for example against the VM addresses it prints",
    ),
    (
        "workflow",
        "workflows (scripts run on the host) are not supported",
    ),
    ("loadbalancer", "load balancers are not supported"),
    (
        "kubevirt",
        "KubeVirt is a provider, not an entry type: set the VM's `client`",
    ),
];

/// kcli's VM keywords (its keyword list and its kvm and kubevirt extras) that siteplan does
/// not implement. Together with what `read_vm` asks for, this is kcli's whole VM vocabulary.
pub const VM_UNIMPLEMENTED: &[&str] = &[
    "affinity",
    "alias",
    "annotations",
    "ansible",
    "arch",
    "bandwidth_inbound_average",
    "bandwidth_inbound_burst",
    "bandwidth_inbound_peak",
    "bandwidth_outbound_average",
    "bandwidth_outbound_burst",
    "bandwidth_outbound_peak",
    "base",
    "baseplan",
    "basevm",
    "boot_order",
    "checkpath",
    "checkport",
    "cloudinit_file",
    "confidential",
    "container_disk",
    "cores",
    "cpuflags",
    "cpupinning",
    "cpus",
    "dnsclient",
    "embed_userdata",
    "emulator",
    "enableroot",
    "extra_iso",
    "finishfiles",
    "floppy",
    "fwzone",
    "gateway",
    "gateway_index",
    "guestid",
    "hostdevs",
    "hugepages",
    "hugepages_1gb",
    "hugepages_2mb",
    "ignition",
    "ignition_file",
    "insecure",
    "install_cr",
    "iommu",
    "iso",
    "jenkinsmode",
    "keep_networks",
    "kubetype",
    "machine",
    "mailfrom",
    "mailserver",
    "mailto",
    "name",
    "namespace",
    "nested",
    "netmasks",
    "networkwait",
    "nodeSelector",
    "nodepool",
    "nokeys",
    "noname",
    "notify",
    "notifycmd",
    "notifymethods",
    "notifyscript",
    "numa",
    "numamode",
    "pcidevices",
    "placement",
    "plan",
    "playbook",
    "privatekey",
    "pushbullettoken",
    "qemuextra",
    "realtime",
    "reservehost",
    "rhnactivationkey",
    "rhnak",
    "rhnorg",
    "rhnpassword",
    "rhnpool",
    "rhnregister",
    "rhnserver",
    "rhnunregister",
    "rhnuser",
    "rng",
    "role",
    "secureboot",
    "sharedfolders",
    "sharedkey",
    "slackchannel",
    "slacktoken",
    "sockets",
    "storemetadata",
    "tags",
    "tempkey",
    "threads",
    "tpm",
    "tunnel",
    "tunneldir",
    "tunnelhost",
    "tunnelport",
    "tunneluser",
    "uefi_firmware",
    "uefi_legacy",
    "uefi_nvtemplate",
    "usermode",
    "uuid",
    "vmclient",
    "vmport",
    "vmrules",
    "vmrules_strict",
    "vmuser",
    "vnc",
    "vncpassword",
    "vsock",
    "windows",
    "yamlinventory",
];

pub const NIC_UNIMPLEMENTED: &[&str] = &[
    "alias",
    "filter",
    "ipv6",
    "macvtap",
    "mtu",
    "multiqueue",
    "multiqueues",
    "numa",
    "ovs",
    "reservedns",
    "reserveip",
    "sriov",
    "vfio",
    "vhost",
    "vips",
    "vlan",
];

pub const VM_DISK_UNIMPLEMENTED: &[&str] = &[
    "driver_extra",
    "existing",
    "macosx",
    "serial",
    "shareable",
    "type",
    "wwn",
];

pub const NETWORK_UNIMPLEMENTED: &[&str] = &[
    "allowed_leases",
    "dhcp_options",
    "dual_cidr",
    "dual_name",
    "fwzone",
    "gateway",
    "isolated",
    "macvtap",
    "netmask",
    "ovs",
    "plan",
    "prefix",
    "vlan",
    "vmclient",
];

/// kcli's `dns` keys siteplan does not implement: `client` puts the record on another
/// provider's DNS.
pub const DNS_UNIMPLEMENTED: &[&str] = &["client"];

/// kcli reads a security group's `ports` and `network` only.
pub const SECURITY_GROUP_UNIMPLEMENTED: &[&str] = &[];

pub const POOL_UNIMPLEMENTED: &[&str] = &["thinpool", "user"];

pub const IMAGE_UNIMPLEMENTED: &[&str] = &["cmd", "cmds", "convert", "name"];

pub const DISK_UNIMPLEMENTED: &[&str] = &["interface", "shareable", "template"];

/// Names older kcli plans use for keys that kcli (and siteplan) now spell otherwise: a VM with
/// `template:` has no image from it, in current kcli as in siteplan.
pub const OLDER_VM_KEYS: &[(&str, &str)] = &[
    ("template", "image"),
    ("script", "scripts"),
    ("networks", "nets"),
    ("net1", "nets"),
    ("net2", "nets"),
];

/// Plan keys an entry may list in `ignore_changes` (`plan::desired` maps them to attributes).
pub fn ignorable(kind: super::model::Kind) -> &'static [&'static str] {
    use super::model::Kind;
    match kind {
        Kind::Vm | Kind::Profile => &[
            "memory",
            "numcpus",
            "cpumodel",
            "virttype",
            "uefi",
            "start",
            "autostart",
            "nets",
            "disks",
            "image",
            "cmds",
            "scripts",
            "files",
            "keys",
            "rootpassword",
            "kernel",
            "initrd",
            "cmdline",
            "guestagent",
        ],
        Kind::Network => &[
            "cidr",
            "dhcp",
            "domain",
            "mtu",
            "nat",
            "autostart",
            "reservations",
        ],
        Kind::Pool => &["path", "autostart"],
        Kind::Image => &["url", "sha256", "size"],
        Kind::Disk => &["size"],
        Kind::Dns => &[],
        Kind::SecurityGroup => &[],
    }
}
