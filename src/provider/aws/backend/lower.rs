//! A plan's intents as EC2 resources. Pure.
//!
//! The mapping follows kcli's AWS provider where it is right: a network is a VPC with one subnet
//! over the plan's CIDR, a security group its VMs share (all traffic between them, ssh from
//! anywhere when the network has a way out) and, with `nat: true`, an internet gateway with the
//! default route; a VM is an instance whose disks are EBS volumes, its first public key a key
//! pair, its cloud-init the instance's user data, and it is in its network's group and those
//! its `securitygroups` name. A `securitygroup` entry is a group in its network's VPC that lets
//! in ICMP (as kcli's do) and its ports. kcli's `default` network is the account's
//! default VPC. Pools have no meaning on EC2 (EBS is not a directory) and images are AMIs,
//! named by id or name.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::manifest::model::NetworkMode;
use crate::plan::intent::{Intents, SecurityGroupIntent, VmIntent, What};
use crate::plan::model::desired::{Desired, DesiredResource, ResourceGuards};
use crate::plan::model::spec::{ObjectSpec, ResourceId, ResourceKind, Spec};
use crate::provider::aws::kinds;

/// kcli's name for the account's default VPC, and its default subnet in the zone.
pub const DEFAULT_NETWORK: &str = "default";

/// Where an instance's user data is kept beside its spec: sent to EC2, never serialised.
pub const USER_DATA: &str = "user_data";

/// The field paths of an instance.
pub mod field {
    pub const INSTANCE_TYPE: &str = "instance_type";
    pub const IMAGE: &str = "image";
    pub const NETWORK: &str = "network";
    pub const PRIVATE_IP: &str = "private_ip";
    pub const KEY_NAME: &str = "key_name";
    pub const USER_DATA_SHA256: &str = "user_data.sha256";
    pub const DISKS: &str = "disks";
    pub const RUNNING: &str = "running";
    pub const CIDR: &str = "cidr";
    pub const VPC: &str = "vpc";
    pub const PUBLIC: &str = "public";
    pub const INGRESS: &str = "ingress";
    pub const PUBLIC_KEY: &str = "public_key";
    pub const DEFAULT_ROUTE: &str = "default_route";
    pub const SECURITY_GROUPS: &str = "security_groups";
}

/// The resources a plan's intents become on EC2, or every reason they cannot.
pub fn lower(intents: &Intents) -> Result<Desired, String> {
    let mut out = Desired::default();
    let mut refused = Vec::new();
    let mut add = |spec: ObjectSpec, entry: &str, depends_on: Vec<ResourceId>| {
        out.resources.push(DesiredResource {
            spec: Spec::Object(spec),
            entry: entry.to_string(),
            depends_on,
        });
    };
    for item in &intents.items {
        match &item.what {
            What::Network(net) => {
                if item.name == DEFAULT_NETWORK {
                    refused.push(
                        "network default: on AWS `default` is the account's default VPC, which \
                         a plan uses but does not make; remove the entry"
                            .to_string(),
                    );
                    continue;
                }
                for record in &net.dns_records {
                    refused.push(format!(
                        "network {}: a VPC has no DNS records of a plan's (`{}`); use Route 53",
                        item.name,
                        record.names.first().map_or("", String::as_str)
                    ));
                }
                if net.forwarding == NetworkMode::Bridge {
                    refused.push(format!(
                        "network {}: a host bridge (`bridge: true`) has no meaning on AWS",
                        item.name
                    ));
                    continue;
                }
                let Some(cidr) = net.cidr.filter(|c| c.addr().is_ipv4()) else {
                    refused.push(format!("network {}: a VPC needs an IPv4 `cidr`", item.name));
                    continue;
                };
                if !(16..=28).contains(&cidr.prefix_len()) {
                    refused.push(format!(
                        "network {}: a VPC's `cidr` is between /16 and /28, not /{}",
                        item.name,
                        cidr.prefix_len()
                    ));
                    continue;
                }
                // kcli's `nat: true` (its default): VMs reach out, and get public addresses.
                let public = matches!(
                    net.forwarding,
                    NetworkMode::Nat | NetworkMode::Route | NetworkMode::Open
                );
                let vpc = ResourceId::object(kinds::VPC, &item.name);
                add(
                    object(
                        kinds::VPC,
                        &item.name,
                        json!({ field::CIDR: cidr.to_string() }),
                    ),
                    &item.entry,
                    Vec::new(),
                );
                add(
                    object(
                        kinds::SUBNET,
                        &item.name,
                        json!({ field::VPC: item.name, field::CIDR: cidr.to_string(), field::PUBLIC: public }),
                    ),
                    &item.entry,
                    vec![vpc.clone()],
                );
                let mut ingress = vec![format!("all {cidr}")];
                if public {
                    ingress.push("tcp/22 0.0.0.0/0".to_string());
                }
                add(
                    object(
                        kinds::SECURITY_GROUP,
                        &item.name,
                        json!({ field::VPC: item.name, field::INGRESS: ingress }),
                    ),
                    &item.entry,
                    vec![vpc.clone()],
                );
                if public {
                    add(
                        object(
                            kinds::INTERNET_GATEWAY,
                            &item.name,
                            json!({ field::VPC: item.name, field::DEFAULT_ROUTE: true }),
                        ),
                        &item.entry,
                        vec![vpc],
                    );
                }
            }
            What::Storage(_) => {} // refused by capability: EBS is no directory
            // Without a URL, an AMI by name or id, resolved when an instance is made from it.
            What::Image(image) => {
                if let Some(url) = &image.url {
                    refused.push(format!(
                        "image {}: AWS boots AMIs, and does not import `{url}`; name an AMI by \
                         id or name as the VM's `image` instead",
                        item.name
                    ));
                }
            }
            What::Disk(_) => refused.push(format!(
                "disk {}: an EBS volume attaches to one instance; shared disks are not \
                 supported on AWS",
                item.name
            )),
            What::Dns(dns) => refused.push(format!(
                "dns {}: a VPC has no DNS records of a plan's (network {}); use Route 53",
                item.name, dns.network.name
            )),
            What::SecurityGroup(group) => {
                let mut needs = Vec::new();
                let network = &group.network;
                if network.declared {
                    needs.push(ResourceId::object(kinds::VPC, &network.name));
                } else if network.name != DEFAULT_NETWORK {
                    // A VPC of that name (its `Name` tag) must exist.
                    let vpc = ResourceId::object(kinds::VPC, &network.name);
                    if !out.external.contains(&vpc) {
                        out.external.push(vpc);
                    }
                }
                add(
                    object(
                        kinds::SECURITY_GROUP,
                        &item.name,
                        json!({ field::VPC: network.name, field::INGRESS: group_ingress(group) }),
                    ),
                    &item.entry,
                    needs,
                );
            }
            What::Vm(vm) => {
                let mut why = vm_refusals(&item.name, vm);
                if !why.is_empty() {
                    refused.append(&mut why);
                    continue;
                }
                let (spec, needs, key) = instance(&item.name, vm, &mut out.external);
                if let Some(key) = key {
                    add(key, &item.entry, Vec::new());
                }
                add(spec, &item.entry, needs);
            }
        }
    }
    if !refused.is_empty() {
        return Err(refused.join("\n"));
    }
    for r in &out.resources {
        if let Some(item) = intents.items.iter().find(|i| i.entry == r.entry) {
            out.guards.insert(
                r.spec.id(),
                ResourceGuards {
                    prevent_destroy: item.guards.prevent_destroy,
                    create_before_destroy: item.guards.create_before_destroy,
                    ignore: item
                        .guards
                        .ignore_changes
                        .iter()
                        .flat_map(|key| ignored_fields(r.spec.id().kind, key))
                        .copied()
                        .collect(),
                },
            );
        }
    }
    Ok(out)
}

/// The fields of a resource of `kind` that an entry's `ignore_changes: [key]` leaves as they
/// are live.
fn ignored_fields(kind: ResourceKind, key: &str) -> &'static [&'static str] {
    match (kind, key) {
        // The instance type is chosen from them.
        (kinds::INSTANCE, "memory" | "numcpus") => &[field::INSTANCE_TYPE],
        (kinds::INSTANCE, "start") => &[field::RUNNING],
        (kinds::INSTANCE, "nets") => &[field::NETWORK, field::PRIVATE_IP],
        (kinds::INSTANCE, "disks") => &[field::DISKS],
        (kinds::INSTANCE, "image") => &[field::IMAGE],
        // The user data holds the commands, files, keys and password; the key pair the first key.
        (kinds::INSTANCE, "cmds" | "scripts" | "files" | "rootpassword") => {
            &[field::USER_DATA_SHA256]
        }
        (kinds::INSTANCE, "keys") => &[field::USER_DATA_SHA256, field::KEY_NAME],
        (kinds::KEY_PAIR, "keys") => &[field::PUBLIC_KEY],
        (kinds::VPC | kinds::SUBNET, "cidr") => &[field::CIDR],
        (kinds::SUBNET, "nat") => &[field::PUBLIC],
        (kinds::SECURITY_GROUP, "nat") => &[field::INGRESS],
        _ => &[],
    }
}

/// What of a VM EC2 cannot do, one sentence each.
fn vm_refusals(name: &str, vm: &VmIntent) -> Vec<String> {
    let mut refused = Vec::new();
    if vm.boot.is_some() {
        refused.push(format!(
            "vm {name}: direct kernel boot (`kernel`) is not supported on AWS; boot the AMI"
        ));
    }
    if vm.nics.len() > 1 {
        refused.push(format!(
            "vm {name}: an AWS VM has one NIC here (it has {}): each network is a VPC of its \
             own, and EC2 puts an instance's interfaces in one VPC; put it on one network",
            vm.nics.len()
        ));
    }
    if vm.disks.first().and_then(|d| d.image.as_ref()).is_none() {
        refused.push(format!(
            "vm {name}: an AWS VM boots an AMI: set its `image` to an AMI id or name"
        ));
    }
    for disk in &vm.disks {
        if !VOLUME_TYPES.contains(&volume_type(&disk.storage.name)) {
            refused.push(format!(
                "vm {name}: on AWS a disk's `pool` is an EBS volume type ({}), or `default` \
                 (gp3), not `{}`",
                VOLUME_TYPES.join(", "),
                disk.storage.name
            ));
        }
    }
    if let Some(nic) = vm.nics.first() {
        if vm
            .security_groups
            .iter()
            .any(|g| g.name == nic.network.name)
        {
            refused.push(format!(
                "vm {name}: `securitygroups` names `{0}`, its network's own group, which it is \
                 in already; remove `{0}` from it",
                nic.network.name
            ));
        }
    }
    if vm.uefi {
        refused.push(format!(
            "vm {name}: `uefi` is the AMI's to say on AWS (its boot mode); remove it"
        ));
    }
    refused
}

/// The instance for a VM, what it needs first, and its key pair, if it has a key.
fn instance(
    name: &str,
    vm: &VmIntent,
    external: &mut Vec<ResourceId>,
) -> (ObjectSpec, Vec<ResourceId>, Option<ObjectSpec>) {
    let mut needs = Vec::new();
    let network = vm
        .nics
        .first()
        .map_or(DEFAULT_NETWORK.to_string(), |n| n.network.name.clone());
    if network != DEFAULT_NETWORK {
        let subnet = ResourceId::object(kinds::SUBNET, &network);
        if vm.nics.first().is_some_and(|n| n.network.declared) {
            needs.push(subnet);
            needs.push(ResourceId::object(kinds::SECURITY_GROUP, &network));
        } else if !external.contains(&subnet) {
            // A subnet of that name (its `Name` tag) must exist.
            external.push(subnet);
        }
    }
    let image = vm
        .disks
        .first()
        .and_then(|d| d.image.as_ref())
        .map_or(String::new(), |i| i.name.clone());
    let disks: Vec<Value> = vm
        .disks
        .iter()
        .map(|d| json!({"name": d.name, "size_gib": gib(d.size_bytes), "type": volume_type(&d.storage.name)}))
        .collect();
    let mut fields = BTreeMap::new();
    fields.insert(
        field::INSTANCE_TYPE.to_string(),
        Value::from(instance_type(vm)),
    );
    fields.insert(field::IMAGE.to_string(), Value::from(image));
    fields.insert(field::NETWORK.to_string(), Value::from(network));
    if let Some((ip, _)) = vm.nics.first().and_then(|n| n.address) {
        fields.insert(field::PRIVATE_IP.to_string(), Value::from(ip.to_string()));
    }
    if !vm.security_groups.is_empty() {
        let mut groups: Vec<&str> = vm.security_groups.iter().map(|g| g.name.as_str()).collect();
        groups.sort();
        groups.dedup();
        for group in &vm.security_groups {
            let id = ResourceId::object(kinds::SECURITY_GROUP, &group.name);
            if group.declared {
                needs.push(id);
            } else if !external.contains(&id) {
                // A security group of that name must exist.
                external.push(id);
            }
        }
        fields.insert(field::SECURITY_GROUPS.to_string(), Value::from(groups));
    }
    fields.insert(field::DISKS.to_string(), Value::from(disks));
    fields.insert(field::RUNNING.to_string(), Value::from(vm.start));
    let mut secret_data = BTreeMap::new();
    let mut key_pair = None;
    if let Some(cloud) = &vm.cloud_init {
        let digest = hex::encode(Sha256::digest(cloud.documents.user_data.as_bytes()));
        fields.insert(field::USER_DATA_SHA256.to_string(), Value::from(digest));
        secret_data.insert(USER_DATA.to_string(), cloud.documents.user_data.clone());
        if let Some(key) = first_key(&cloud.documents.user_data) {
            fields.insert(field::KEY_NAME.to_string(), Value::from(name));
            needs.push(ResourceId::object(kinds::KEY_PAIR, name));
            key_pair = Some(object(
                kinds::KEY_PAIR,
                name,
                json!({ field::PUBLIC_KEY: key }),
            ));
        }
    }
    let spec = ObjectSpec {
        object: kinds::INSTANCE,
        name: name.to_string(),
        fields,
        secret_data,
    };
    (spec, needs, key_pair)
}

/// A security group entry's rules as found reads them back (sorted): ICMP, as kcli always
/// allows, and each of its ports, from its source.
fn group_ingress(group: &SecurityGroupIntent) -> Vec<String> {
    let source = group.source;
    let mut rules = vec![format!("icmp {source}")];
    for port in &group.ports {
        let protocol = port.protocol.as_str();
        rules.push(match port.from == port.to {
            true => format!("{protocol}/{} {source}", port.from),
            false => format!("{protocol}/{}-{} {source}", port.from, port.to),
        });
    }
    rules.sort();
    rules.dedup();
    rules
}

/// EBS volume types, which a disk's `pool` names on AWS (`default`: gp3).
pub const VOLUME_TYPES: &[&str] = &["gp3", "gp2", "io1", "io2", "st1", "sc1", "standard"];

/// The EBS volume type a `pool` names.
pub fn volume_type(pool: &str) -> &str {
    if pool == "default" {
        "gp3"
    } else {
        pool
    }
}

/// The first public key cloud-init installs: EC2 installs it too, as the instance's key pair.
fn first_key(user_data: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Keys {
        #[serde(default)]
        ssh_authorized_keys: Vec<String>,
    }
    let body = user_data.strip_prefix("#cloud-config\n")?;
    let keys: Keys = serde_norway::from_str(body).ok()?;
    keys.ssh_authorized_keys.into_iter().next()
}

/// Whole GiB, rounded up: EBS sizes volumes in GiB.
pub fn gib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 30).max(1)
}

/// General-purpose instance types, smallest first, with their vCPUs and memory (MiB): the VM's
/// `flavor` when it names one, else the first that has the VM's `numcpus` and `memory`, as kcli
/// chooses.
pub const INSTANCE_TYPES: &[(&str, u32, u64)] = &[
    ("t3.nano", 2, 512),
    ("t3.micro", 2, 1024),
    ("t3.small", 2, 2048),
    ("t3.medium", 2, 4096),
    ("t3.large", 2, 8192),
    ("t3.xlarge", 4, 16384),
    ("t3.2xlarge", 8, 32768),
    ("m5.4xlarge", 16, 65536),
    ("m5.8xlarge", 32, 131072),
    ("m5.12xlarge", 48, 196608),
    ("m5.16xlarge", 64, 262144),
    ("m5.24xlarge", 96, 393216),
];

/// The instance type for a VM: its `flavor`, else the smallest that fits.
pub fn instance_type(vm: &VmIntent) -> String {
    if let Some(flavor) = &vm.flavor {
        return flavor.clone();
    }
    INSTANCE_TYPES
        .iter()
        .find(|(_, cpus, memory)| *cpus >= vm.cpus && *memory >= vm.memory_mib)
        .or(INSTANCE_TYPES.last())
        .map_or("t3.micro".to_string(), |(name, ..)| name.to_string())
}

fn object(kind: ResourceKind, name: &str, fields: Value) -> ObjectSpec {
    let fields = match fields {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    ObjectSpec {
        object: kind,
        name: name.to_string(),
        fields,
        secret_data: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field `ignore_changes` names is one the resources have: a field mistyped would be
    /// ignored without a word.
    #[test]
    fn ignore_changes_name_fields_the_resources_have() {
        let text = "lab:\n  type: network\n  cidr: 10.20.0.0/24\n  \
                    ignore_changes: [cidr, nat]\n\
                    web1:\n  image: ami-0123456789abcdef0\n  nets: [{name: lab, ip: 10.20.0.5}]\n  \
                    keys: ['ssh-ed25519 AAAA one']\n  \
                    ignore_changes: [memory, start, nets, disks, image, cmds, keys]\n";
        let intents = crate::plan::intent::of_text(text);
        let desired = lower(&intents).expect("lowered");
        let mut checked = 0;
        for resource in &desired.resources {
            let Spec::Object(object) = &resource.spec else {
                continue;
            };
            for field in &desired.guards[&resource.spec.id()].ignore {
                assert!(
                    object.fields.contains_key(*field),
                    "{} has no {field}",
                    resource.spec.id()
                );
                checked += 1;
            }
        }
        assert!(checked >= 11, "only {checked} ignored fields found");
    }

    #[test]
    fn sizes_round_up_to_whole_gib() {
        assert_eq!(gib(1), 1);
        assert_eq!(gib(10 << 30), 10);
        assert_eq!(gib((10 << 30) + 1), 11);
    }

    #[test]
    fn the_first_key_is_read_from_the_user_data() {
        let data = "#cloud-config\nhostname: a\nssh_authorized_keys:\n- ssh-ed25519 AAAA one\n- ssh-rsa B two\n";
        assert_eq!(first_key(data).as_deref(), Some("ssh-ed25519 AAAA one"));
        assert_eq!(first_key("#cloud-config\nhostname: a\n"), None);
    }
}
