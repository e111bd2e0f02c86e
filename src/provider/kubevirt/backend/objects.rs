//! A plan's intents as KubeVirt, CDI, Multus and core objects, and those objects as the
//! manifests sent to the API server (`manifest`). Pure.
//!
//! The mapping follows kcli's where kcli is right: a VM is a `VirtualMachine` whose disks are
//! `dataVolumeTemplates` (the first cloned from the VM's image), its networks the pod network
//! (`default`, masquerade) or Multus attachments (bridge binding), and its cloud-init a Secret
//! referenced by `cloudInitNoCloud`; an image is a CDI `DataVolume` importing its URL; a network
//! a `NetworkAttachmentDefinition` (a bridge with host-local IPAM over the plan's CIDR); a pool
//! the name of a storage class, which must exist.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::plan::intent::{Intents, VmIntent, What};
use crate::plan::model::desired::{Desired, DesiredResource, ResourceGuards};
use crate::plan::model::spec::{ObjectSpec, ResourceId, ResourceKind, Spec};
use crate::provider::kubevirt::kinds;
use crate::provider::Owner;

/// Labels and annotations that mark what a plan made.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const PLAN_LABEL: &str = "siteplan.io/plan";
/// kcli's own mark, so `kcli list plan` on the cluster shows siteplan's plans.
pub const KCLI_PLAN: &str = "kcli/plan";
pub const CREATED_FROM: &str = "siteplan.io/created-from";
pub const PREVENT_DESTROY: &str = "siteplan.io/prevent-destroy";
pub const APPLIED_FROM: &str = "siteplan.io/applied-from";

/// A Secret's fields: the digest of its data (which a live Secret's data gives again) and the
/// data as text for review, secrets replaced (which only the mark holds).
pub const SECRET_DIGEST: &str = "content.sha256";
pub const SECRET_REVIEW: &str = "content.review";

/// A DataVolume needs a size to import into; kcli's default disk size.
const DEFAULT_IMAGE_SIZE: &str = "10Gi";

/// The objects a plan's intents become in `namespace`, or every reason they cannot.
pub fn lower(intents: &Intents, namespace: &str) -> Result<Desired, String> {
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
                for record in &net.dns_records {
                    refused.push(format!(
                        "dns {}: a KubeVirt network has no DNS server of its own to hold records \
                         (network {}); use the cluster's DNS",
                        record.names.first().map_or("", String::as_str),
                        item.name
                    ));
                }
                if item.name == "default" {
                    continue; // the pod network
                }
                let Some(cidr) = net.cidr else {
                    refused.push(format!(
                        "network {}: a KubeVirt network needs a `cidr` for its addresses",
                        item.name
                    ));
                    continue;
                };
                let mut range = Map::new();
                range.insert("subnet".into(), cidr.to_string().into());
                if let Some((start, end)) = net.dhcp {
                    range.insert("rangeStart".into(), start.to_string().into());
                    range.insert("rangeEnd".into(), end.to_string().into());
                }
                if net.forwarding != crate::manifest::model::NetworkMode::Isolated {
                    if let Some(gateway) = cidr.hosts().next() {
                        range.insert("gateway".into(), gateway.to_string().into());
                    }
                }
                let config = json!({
                    "cniVersion": "0.3.1",
                    "name": item.name,
                    "type": "bridge",
                    "bridge": net.bridge,
                    "ipam": {"type": "host-local", "ranges": [[Value::Object(range)]]},
                });
                add(
                    object(
                        kinds::NETWORK_ATTACHMENT_DEFINITION,
                        &item.name,
                        json!({"spec": {"config": config.to_string()}}),
                    ),
                    &item.entry,
                    Vec::new(),
                );
            }
            // On a cluster, a pool is a storage class, which a plan names but does not make.
            What::Storage(storage) => refused.push(format!(
                "pool {}: on KubeVirt a pool is a storage class, which siteplan does not create \
                 (and `path: {}` has no meaning there); remove the entry and set the VMs' `pool` \
                 to an existing storage class, or `default`",
                item.name, storage.path
            )),
            What::Image(image) => {
                let Some(url) = &image.url else {
                    out.external.push(pvc(&item.name));
                    continue;
                };
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    refused.push(format!(
                        "image {}: a KubeVirt cluster imports images over http(s), and `{url}` \
                         is a file on this machine",
                        item.name
                    ));
                    continue;
                }
                let mut storage = json!({"resources": {"requests": {
                    "storage": image.size_bytes.map_or(DEFAULT_IMAGE_SIZE.to_string(), quantity)
                }}});
                if let Some(class) = storage_class(&image.storage.name) {
                    storage["storageClassName"] = class.into();
                }
                add(
                    object(
                        kinds::DATA_VOLUME,
                        &item.name,
                        json!({"spec": {"source": {"http": {"url": url}}, "storage": storage}}),
                    ),
                    &item.entry,
                    Vec::new(),
                );
            }
            // Refused by capability, before lowering.
            What::SecurityGroup(_) => {}
            What::Disk(_) => refused.push(format!(
                "disk {}: disks shared by several VMs are not supported on KubeVirt yet",
                item.name
            )),
            What::Dns(dns) => refused.push(format!(
                "dns {}: a KubeVirt network has no DNS server of its own to hold records \
                 (network {}); use the cluster's DNS",
                item.name, dns.network.name
            )),
            What::Vm(vm) => {
                if vm.boot.is_some() {
                    refused.push(format!(
                        "vm {}: direct kernel boot (`kernel`) is not supported on KubeVirt; \
                         boot from the image's own disk",
                        item.name
                    ));
                    continue;
                }
                if !vm.shared_disks.is_empty() {
                    continue; // refused with the disk
                }
                let mut needs = Vec::new();
                for disk in &vm.disks {
                    // A storage class, which must exist (checked when the plan is made).
                    let class = ResourceId::pool(&disk.storage.name);
                    if !out.external.contains(&class) {
                        out.external.push(class);
                    }
                    if let Some(image) = &disk.image {
                        needs.push(if image.declared {
                            ResourceId {
                                kind: kinds::DATA_VOLUME,
                                name: image.name.clone(),
                                pool: None,
                            }
                        } else {
                            pvc(&image.name)
                        });
                    }
                }
                for nic in &vm.nics {
                    if nic.network.name != "default" && nic.network.declared {
                        needs.push(ResourceId {
                            kind: kinds::NETWORK_ATTACHMENT_DEFINITION,
                            name: nic.network.name.clone(),
                            pool: None,
                        });
                    }
                }
                if let Some(cloud) = &vm.cloud_init {
                    let name = cloud_init_secret(&item.name);
                    let secret_data = BTreeMap::from([
                        ("userdata".to_string(), cloud.documents.user_data.clone()),
                        (
                            "networkdata".to_string(),
                            cloud.documents.network_config.clone(),
                        ),
                    ]);
                    let mut fields = BTreeMap::new();
                    fields.insert("type".into(), "Opaque".into());
                    fields.insert(SECRET_DIGEST.into(), secret_digest(&secret_data).into());
                    fields.insert(SECRET_REVIEW.into(), cloud.review.clone().into());
                    add(
                        ObjectSpec {
                            object: kinds::SECRET,
                            name: name.clone(),
                            fields,
                            secret_data,
                        },
                        &item.entry,
                        Vec::new(),
                    );
                    needs.push(ResourceId {
                        kind: kinds::SECRET,
                        name,
                        pool: None,
                    });
                }
                add(
                    object(
                        kinds::VIRTUAL_MACHINE,
                        &item.name,
                        virtual_machine(&item.name, vm, namespace),
                    ),
                    &item.entry,
                    needs,
                );
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

/// The field paths of an object of `kind` that an entry's `ignore_changes: [key]` leaves as
/// they are live.
fn ignored_fields(kind: ResourceKind, key: &str) -> &'static [&'static str] {
    match (kind, key) {
        (kinds::VIRTUAL_MACHINE, "memory") => &[
            "spec.template.spec.domain.memory.guest",
            "spec.template.spec.domain.resources.requests.memory",
        ],
        (kinds::VIRTUAL_MACHINE, "numcpus") => &[
            "spec.template.spec.domain.cpu.cores",
            "spec.template.spec.domain.cpu.sockets",
        ],
        (kinds::VIRTUAL_MACHINE, "start") => &["spec.runStrategy"],
        (kinds::VIRTUAL_MACHINE, "uefi") => &["spec.template.spec.domain.firmware.bootloader.efi"],
        (kinds::VIRTUAL_MACHINE, "nets") => &[
            "spec.template.spec.domain.devices.interfaces",
            "spec.template.spec.networks",
        ],
        (kinds::VIRTUAL_MACHINE, "disks" | "image") => &[
            "spec.dataVolumeTemplates",
            "spec.template.spec.domain.devices.disks",
            "spec.template.spec.volumes",
        ],
        // The cloud-init Secret holds the commands, files, keys, password and network config.
        (kinds::SECRET, "cmds" | "scripts" | "files" | "keys" | "rootpassword" | "nets") => {
            &[SECRET_DIGEST, SECRET_REVIEW]
        }
        (kinds::NETWORK_ATTACHMENT_DEFINITION, "cidr" | "dhcp" | "mtu" | "nat") => &["spec.config"],
        _ => &[],
    }
}

/// An image the plan does not declare: a PVC of that name must exist in the namespace.
fn pvc(name: &str) -> ResourceId {
    ResourceId {
        kind: kinds::DATA_VOLUME,
        name: name.to_string(),
        pool: None,
    }
}

pub fn cloud_init_secret(vm: &str) -> String {
    format!("{vm}-cloudinit")
}

/// A plan's `pool` as a storage class: `default` is the cluster's default (named by no one).
fn storage_class(pool: &str) -> Option<&str> {
    (pool != "default").then_some(pool)
}

/// Bytes as a Kubernetes quantity, in the largest binary unit that divides them.
fn quantity(bytes: u64) -> String {
    for (unit, size) in [
        ("Ti", 1u64 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

fn virtual_machine(name: &str, vm: &VmIntent, namespace: &str) -> Value {
    let mut disks = Vec::new();
    let mut volumes = Vec::new();
    let mut templates = Vec::new();
    for (i, disk) in vm.disks.iter().enumerate() {
        let volume = format!("disk{i}");
        let dv = format!("{name}-disk{i}");
        let mut entry = json!({"name": volume, "disk": {"bus": "virtio"}});
        if i == 0 {
            entry["bootOrder"] = 1.into();
        }
        disks.push(entry);
        volumes.push(json!({"name": volume, "dataVolume": {"name": dv}}));
        let source = match &disk.image {
            Some(image) => json!({"pvc": {"namespace": namespace, "name": image.name}}),
            None => json!({"blank": {}}),
        };
        let mut storage =
            json!({"resources": {"requests": {"storage": quantity(disk.size_bytes)}}});
        if let Some(class) = storage_class(&disk.storage.name) {
            storage["storageClassName"] = class.into();
        }
        templates.push(
            json!({"metadata": {"name": dv}, "spec": {"source": source, "storage": storage}}),
        );
    }
    if vm.cloud_init.is_some() {
        let secret = cloud_init_secret(name);
        disks.push(json!({"name": "cloudinit", "disk": {"bus": "virtio"}}));
        volumes.push(json!({"name": "cloudinit", "cloudInitNoCloud": {
            "secretRef": {"name": secret}, "networkDataSecretRef": {"name": secret}}}));
    }
    let mut interfaces = Vec::new();
    let mut networks = Vec::new();
    for nic in &vm.nics {
        let net = &nic.network.name;
        let mut interface = json!({"name": net, "macAddress": nic.mac, "model": nic.model});
        if net == "default" {
            interface["masquerade"] = json!({});
            networks.push(json!({"name": net, "pod": {}}));
        } else {
            interface["bridge"] = json!({});
            networks.push(json!({"name": net, "multus": {"networkName": net}}));
        }
        interfaces.push(interface);
    }
    let memory = format!("{}Mi", vm.memory_mib);
    let mut domain = json!({
        "cpu": {"cores": vm.cpus},
        "memory": {"guest": memory},
        "devices": {"disks": disks, "interfaces": interfaces},
    });
    // Headroom: CPUs as sockets (one core each) up to `maxSockets`, memory up to `maxGuest`,
    // both changed live by KubeVirt. Without it, memory is also the pod's request.
    if let Some(most) = vm.max_cpus {
        domain["cpu"] = json!({"sockets": vm.cpus, "cores": 1, "threads": 1, "maxSockets": most});
    }
    match vm.max_memory_mib {
        Some(most) => domain["memory"]["maxGuest"] = format!("{most}Mi").into(),
        None => domain["resources"] = json!({"requests": {"memory": memory}}),
    }
    if vm.uefi {
        domain["firmware"] = json!({"bootloader": {"efi": {}}});
    }
    json!({"spec": {
        "runStrategy": if vm.start { "Always" } else { "Halted" },
        "dataVolumeTemplates": templates,
        "template": {
            "metadata": {"labels": {"kubevirt.io/domain": name}},
            "spec": {"domain": domain, "networks": networks, "volumes": volumes},
        },
    }})
}

/// An object from its fields as a tree.
/// The Kubernetes object kind (`VirtualMachine`) and API version of one of the kinds this
/// backend holds: what the planner calls `virtualmachine`, the cluster calls by its type.
pub fn kube_type(kind: ResourceKind) -> Option<(&'static str, &'static str)> {
    match kind {
        kinds::VIRTUAL_MACHINE => Some(("VirtualMachine", "kubevirt.io/v1")),
        kinds::DATA_VOLUME => Some(("DataVolume", "cdi.kubevirt.io/v1beta1")),
        kinds::NETWORK_ATTACHMENT_DEFINITION => {
            Some(("NetworkAttachmentDefinition", "k8s.cni.cncf.io/v1"))
        }
        kinds::SECRET => Some(("Secret", "v1")),
        _ => None,
    }
}

fn object(kind: ResourceKind, name: &str, tree: Value) -> ObjectSpec {
    let mut fields = BTreeMap::new();
    flatten("", &tree, &mut fields);
    ObjectSpec {
        object: kind,
        name: name.to_string(),
        fields,
        secret_data: BTreeMap::new(),
    }
}

/// Maps become dotted paths down to their leaves; a list is one value.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&path, v, out);
            }
        }
        leaf => {
            out.insert(prefix.to_string(), leaf.clone());
        }
    }
}

/// The tree of maps the dotted paths describe (the inverse of `flatten`).
fn unflatten(fields: &BTreeMap<String, Value>) -> Value {
    let mut tree = Map::new();
    for (path, value) in fields {
        let parts = split_path(path);
        let Some((last, parents)) = parts.split_last() else {
            continue;
        };
        let mut node = &mut tree;
        for part in parents {
            let child = node
                .entry(part.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            let Value::Object(map) = child else {
                unreachable!("made a map just above")
            };
            node = map;
        }
        node.insert(last.clone(), value.clone());
    }
    Value::Object(tree)
}

/// `spec.template.metadata.labels.kubevirt.io/domain` → […, `labels`, `kubevirt.io/domain`]:
/// after `labels` or `annotations`, the rest is one key.
fn split_path(path: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut rest = path;
    while let Some((head, tail)) = rest.split_once('.') {
        parts.push(head.to_string());
        rest = tail;
        if head == "labels" || head == "annotations" {
            break;
        }
    }
    parts.push(rest.to_string());
    parts
}

/// The manifest sent to the API server (and printed by `plan export`): the object with its
/// namespace and the plan's marks: labels to find it by, kcli's annotation, and the fields it
/// was made from (a Secret's by digest).
pub fn manifest(spec: &ObjectSpec, namespace: &str, owner: &Owner) -> Value {
    let (kind, api_version) = kube_type(spec.object).unwrap_or(("Unknown", "v1"));
    let mut body = match spec.object {
        kinds::SECRET => {
            let mut body =
                json!({"type": spec.fields.get("type").cloned().unwrap_or("Opaque".into())});
            body["stringData"] = serde_json::to_value(&spec.secret_data).unwrap_or_default();
            body
        }
        _ => unflatten(&spec.fields),
    };
    let created_from = serde_json::to_string(&spec.fields).unwrap_or_default();
    let mut annotations = json!({KCLI_PLAN: owner.plan, CREATED_FROM: created_from});
    if owner.prevent_destroy {
        annotations[PREVENT_DESTROY] = "true".into();
    }
    if let Some(file) = &owner.applied_from {
        annotations[APPLIED_FROM] = file.as_str().into();
    }
    let mut manifest = json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": spec.name,
            "namespace": namespace,
            "labels": {MANAGED_BY: "siteplan", PLAN_LABEL: owner.plan},
            "annotations": annotations,
        },
    });
    if let (Some(target), Value::Object(fields)) = (manifest.as_object_mut(), body.take()) {
        target.extend(fields);
    }
    manifest
}

/// A digest of a Secret's clear data.
pub fn secret_digest(data: &BTreeMap<String, String>) -> String {
    let mut hasher = Sha256::new();
    for (key, value) in data {
        hasher.update(key.as_bytes());
        hasher.update([0]);
        hasher.update(value.as_bytes());
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())
}

/// The value at a dotted path of a live object, if any.
fn at_path<'v>(object: &'v Value, path: &str) -> Option<&'v Value> {
    split_path(path)
        .iter()
        .try_fold(object, |node, part| node.get(part.as_str()))
}

/// A live object as the spec of what siteplan set: the value now at each path siteplan set
/// when it made or last changed it (`made_from`, from its mark), so fields other controllers
/// set are not siteplan's business, and a change to one of its own is drift. A Secret's data is
/// digested as the spec digests it.
pub fn read_back(kind: ResourceKind, live: &Value, made_from: Option<&ObjectSpec>) -> ObjectSpec {
    let name = live["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut fields = BTreeMap::new();
    // Made by another tool: everything under `spec`, leaf by leaf (a list is one value), as
    // siteplan names its fields; what a plan that adopts it declares is compared with that.
    if made_from.is_none() && kind != kinds::SECRET {
        if let Some(spec) = live.get("spec") {
            leaves_into(&mut fields, "spec", spec);
        }
    }
    if let Some(made_from) = made_from {
        for path in made_from.fields.keys() {
            let value = match path.as_str() {
                SECRET_DIGEST => Some(Value::from(secret_digest(&secret_data(live)))),
                SECRET_REVIEW => made_from.fields.get(path).cloned(),
                _ => at_path(live, path).cloned(),
            };
            if let Some(value) = value {
                fields.insert(path.clone(), value);
            }
        }
    }
    ObjectSpec {
        object: kind,
        name,
        fields,
        secret_data: BTreeMap::new(),
    }
}

/// Each leaf under `value` (an object's fields, recursively; a list or a scalar is a leaf), by
/// its dotted path from `path`.
fn leaves_into(fields: &mut BTreeMap<String, Value>, path: &str, value: &Value) {
    match value.as_object() {
        Some(object) if !object.is_empty() => {
            for (key, child) in object {
                leaves_into(fields, &format!("{path}.{key}"), child);
            }
        }
        _ => {
            fields.insert(path.to_string(), value.clone());
        }
    }
}

/// A live Secret's data in clear: `data` is base64; `stringData` (which a real API server
/// folds into `data`) is taken as it is.
fn secret_data(live: &Value) -> BTreeMap<String, String> {
    use base64::Engine;
    let mut out = BTreeMap::new();
    if let Some(data) = live["data"].as_object() {
        for (key, value) in data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value.as_str().unwrap_or_default())
                .unwrap_or_default();
            out.insert(key.clone(), String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    if let Some(data) = live["stringData"].as_object() {
        for (key, value) in data {
            out.insert(key.clone(), value.as_str().unwrap_or_default().to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_with_label_keys_kept_whole() {
        let tree = json!({"spec": {"runStrategy": "Always", "template": {"metadata": {"labels":
            {"kubevirt.io/domain": "web1"}}, "spec": {"networks": [{"name": "default", "pod": {}}]}}}});
        let mut fields = BTreeMap::new();
        flatten("", &tree, &mut fields);
        assert!(fields.contains_key("spec.template.metadata.labels.kubevirt.io/domain"));
        assert_eq!(unflatten(&fields), tree);
    }

    /// Every field `ignore_changes` names is one the objects have: a path mistyped would be
    /// ignored without a word.
    #[test]
    fn ignore_changes_name_fields_the_objects_have() {
        let text = "kvnet:\n  type: network\n  cidr: 10.121.0.0/24\n\
                    kv1:\n  memory: 1024\n  numcpus: 2\n  uefi: true\n  cmds: [echo hi]\n  \
                    disks: [10]\n  nets: [default, kvnet]\n  \
                    ignore_changes: [memory, numcpus, start, uefi, nets, disks, cmds]\n\
                    kv2:\n  memory: 512\n  cpuhotplug: 4\n  nets: [default]\n  \
                    ignore_changes: [numcpus]\n";
        let intents = crate::plan::intent::of_text(text);
        let desired = lower(&intents, "ns").expect("lowered");
        let mut checked = 0;
        for resource in &desired.resources {
            let Spec::Object(object) = &resource.spec else {
                continue;
            };
            let guards = &desired.guards[&resource.spec.id()];
            for path in &guards.ignore {
                // A path ignored for one shape may be absent in another (cores or sockets).
                let has = object.fields.contains_key(*path);
                let alternative = ignored_fields(object.object, "numcpus").contains(path)
                    || ignored_fields(object.object, "memory").contains(path);
                assert!(has || alternative, "{} has no {path}", resource.spec.id());
                checked += usize::from(has);
            }
        }
        assert!(checked >= 9, "only {checked} ignored fields found");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity(10 << 30), "10Gi");
        assert_eq!(quantity(1536 << 20), "1536Mi");
        assert_eq!(quantity(1000), "1000");
    }
}
