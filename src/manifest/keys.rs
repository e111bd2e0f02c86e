//! What kcli's plan format has that siteplan does not implement (yet).
//!
//! Keys siteplan implements are the ones the reader asks for; these lists are the rest of kcli's
//! vocabulary, so that a kcli plan using them gets a warning naming the key, not a "did you mean".

/// Entry types this version of siteplan reads.
pub const SUPPORTED_TYPES: &[&str] = &[
    "vm", "network", "pool", "image", "template", "disk", "profile",
];

/// kcli entry types siteplan refuses, with what to do instead.
pub const UNSUPPORTED_TYPES: &[(&str, &str)] = &[
    (
        "container",
        "containers are not virtual machines: run them with kcli or a container tool",
    ),
    (
        "dns",
        "DNS records are not managed yet; use `reservedns: true` on a VM",
    ),
    (
        "bucket",
        "object storage buckets have no libvirt equivalent",
    ),
    (
        "plan",
        "nested plans are not supported: apply each plan file on its own",
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
        "securitygroup",
        "security groups exist only on cloud providers",
    ),
    (
        "kubevirt",
        "KubeVirt is a provider, not an entry type: set the VM's `client`",
    ),
];

pub const VM_UNIMPLEMENTED: &[&str] = &[
    "alias",
    "boot_order",
    "cpuflags",
    "cpupinning",
    "cpus",
    "enableroot",
    "flavor",
    "hostdevs",
    "ignition",
    "iso",
    "kubetype",
    "machine",
    "nested",
    "networkwait",
    "notify",
    "notifycmd",
    "notifymethods",
    "numa",
    "numamode",
    "pcidevices",
    "placement",
    "privatekey",
    "pushbullettoken",
    "reservehost",
    "rhnak",
    "rhnorg",
    "rhnpassword",
    "rhnpool",
    "rhnregister",
    "rhnserver",
    "rhnuser",
    "rng",
    "securitygroups",
    "sharedfolders",
    "sharedkey",
    "slacktoken",
    "storemetadata",
    "tags",
    "tpm",
    "tunnel",
    "vmuser",
    "vnc",
    "wait",
    "waitcommand",
    "waittimeout",
    "yamlinventory",
];

pub const NIC_UNIMPLEMENTED: &[&str] = &[
    "alias",
    "filter",
    "ipv6",
    "macvtap",
    "multiqueue",
    "numa",
    "ovs",
    "reserveip",
    "vfio",
    "vlan",
];

pub const VM_DISK_UNIMPLEMENTED: &[&str] = &["existing", "shareable", "wwn", "serial", "type"];

pub const NETWORK_UNIMPLEMENTED: &[&str] = &[
    "allowed_leases",
    "dhcp_options",
    "dual_cidr",
    "dual_name",
    "isolated",
    "macvtap",
    "ovs",
    "plan",
    "vlan",
];

pub const POOL_UNIMPLEMENTED: &[&str] = &["thinpool", "user"];

pub const IMAGE_UNIMPLEMENTED: &[&str] = &["cmds", "convert", "name"];

pub const DISK_UNIMPLEMENTED: &[&str] = &["interface", "shareable"];

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
    }
}
