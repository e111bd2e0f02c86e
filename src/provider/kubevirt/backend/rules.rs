//! What changing KubeVirt's objects costs, for the planner.
//!
//! A VirtualMachine's `runStrategy` changes live (KubeVirt starts or stops the VM); any other
//! change to its template takes effect when it restarts (KubeVirt's `RestartRequired`), and a
//! change to its `dataVolumeTemplates` reaches no existing disk, so the VM is made again.
//! DataVolumes and network attachments are made again when they change. A cloud-init Secret is
//! made again, and its VM, which reads it only when it boots, restarts to see it.

use std::collections::BTreeSet;
use std::sync::Mutex;

use serde_json::Value;

use super::objects::SECRET_DIGEST;
use crate::plan::model::desired::Desired;
use crate::plan::model::rules::{Capabilities, RestartFor, Rules};
use crate::plan::model::spec::{ObjectSpec, ResourceId, ResourceKind, Spec};
use crate::plan::{AttributeChange, Change};
use crate::provider::kubevirt::kinds;
use crate::provider::Disruption;

#[derive(Default)]
pub struct KubevirtRules {
    /// The storage classes that allow volume expansion, by the names plans give them
    /// (`default` too), as the provider last listed them.
    pub expandable: Mutex<BTreeSet<String>>,
    /// The storage classes the cluster has, by their own names, as the provider last listed
    /// them.
    pub classes: Mutex<Vec<String>>,
}

/// A network attachment's CNI configuration.
const NETWORK_CONFIG: &str = "spec.config";
/// The list of a VM's disk templates.
const TEMPLATES: &str = "spec.dataVolumeTemplates";
const SOCKETS: &str = "spec.template.spec.domain.cpu.sockets";
const MAX_SOCKETS: &str = "spec.template.spec.domain.cpu.maxSockets";
const GUEST: &str = "spec.template.spec.domain.memory.guest";
const MAX_GUEST: &str = "spec.template.spec.domain.memory.maxGuest";

/// Whether `field` grows within a headroom (`most`) that is there and stays the same.
fn within(live: &Spec, want: &Spec, field: &str, most: &str) -> bool {
    let value = |spec: &Spec, path: &str| match spec {
        Spec::Object(o) => o.fields.get(path).and_then(|v| match v {
            Value::Number(n) => n.as_u64(),
            Value::String(q) => bytes(q),
            _ => None,
        }),
        _ => None,
    };
    match (
        value(live, most),
        value(want, most),
        value(live, field),
        value(want, field),
    ) {
        (Some(had_most), Some(most), Some(had), Some(wanted)) => {
            had_most == most && wanted >= had && wanted <= most
        }
        _ => false,
    }
}

impl Rules for KubevirtRules {
    fn instead_of(&self, id: &ResourceId) -> Option<String> {
        if id.kind != ResourceKind::POOL {
            return None;
        }
        let classes = self.classes.lock().unwrap_or_else(|p| p.into_inner());
        Some(if classes.is_empty() {
            "on KubeVirt a pool is a storage class, and the cluster has none".into()
        } else {
            format!(
                "on KubeVirt a pool is a storage class; the cluster's are: {}, or `default`",
                classes.join(", ")
            )
        })
    }

    fn disruption(&self, attribute: &str, live: &Spec, want: &Spec) -> Disruption {
        match (want.id().kind, attribute) {
            (kinds::VIRTUAL_MACHINE, "spec.runStrategy") => Disruption::Live,
            // Within the headroom the VM declares (and keeps), KubeVirt adds CPUs and memory
            // to the running VM.
            (kinds::VIRTUAL_MACHINE, SOCKETS) if within(live, want, SOCKETS, MAX_SOCKETS) => {
                Disruption::Live
            }
            (kinds::VIRTUAL_MACHINE, GUEST) if within(live, want, GUEST, MAX_GUEST) => {
                Disruption::Live
            }
            (kinds::VIRTUAL_MACHINE, path) if path.starts_with("spec.template.") => {
                Disruption::Reboot
            }
            (kinds::VIRTUAL_MACHINE, TEMPLATES) => match disks(live, want) {
                // KubeVirt makes the DataVolumes of new templates, and the VM sees them when
                // it restarts.
                Disks { added: true, .. } => Disruption::Reboot,
                // A disk grows in place (its claim is expanded).
                Disks { other: false, .. } => Disruption::Live,
                // A template that changes otherwise reaches no existing disk.
                _ => Disruption::Replace,
            },
            _ => Disruption::Replace,
        }
    }

    /// A disk cannot shrink, nor grow where its storage class does not allow expansion.
    fn refusal(&self, live: &Spec, want: &Spec) -> Option<String> {
        if want.id().kind != kinds::VIRTUAL_MACHINE {
            return None;
        }
        let changes = disks(live, want);
        if let Some((name, had, wanted)) = changes.shrunk.first() {
            return Some(format!(
                "disk {name} would shrink from {had} to {wanted}, and a volume cannot shrink; \
                 keep its size, or make a new VM"
            ));
        }
        let expandable = self.expandable.lock().unwrap_or_else(|p| p.into_inner());
        changes
            .grown
            .iter()
            .find(|(_, class, _, _)| !expandable.contains(class))
            .map(|(name, class, had, wanted)| {
                format!(
                    "disk {name} would grow from {had} to {wanted}, but storage class {class} \
                     does not allow volume expansion"
                )
            })
    }

    /// A VM reads its cloud-init Secret when it boots, and its instance's pod is attached to
    /// its networks when it starts: a network attachment made again reaches a running VM only
    /// when it restarts.
    fn restart_to_see(&self, replace: &Change, desired: &Desired) -> Vec<RestartFor> {
        let (field, name, what) = match replace.id.kind {
            kinds::SECRET => (SECRET_DIGEST, "cloud-init", "cloud-init"),
            kinds::NETWORK_ATTACHMENT_DEFINITION => (NETWORK_CONFIG, "network", "network"),
            _ => return Vec::new(),
        };
        let Some(changed) = replace.attributes.iter().find(|a| a.name == field) else {
            return Vec::new();
        };
        desired
            .resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Object(vm)
                    if vm.object == kinds::VIRTUAL_MACHINE
                        && references(vm).contains(&replace.id) =>
                {
                    Some(RestartFor {
                        vm: r.spec.id(),
                        reason: format!("its {what} {} is made again", replace.id),
                        attribute: AttributeChange {
                            name: name.into(),
                            before: changed.before.clone(),
                            after: changed.after.clone(),
                            disruption: Disruption::Reboot,
                        },
                    })
                }
                _ => None,
            })
            .collect()
    }

    /// A DataVolume holds a disk; a VirtualMachine its guest, and the DataVolumes its
    /// templates own go with it. A Secret (a seed) and a network attachment are made again as
    /// they were.
    fn holds_data(&self, live: &Spec) -> bool {
        matches!(live.id().kind, kinds::DATA_VOLUME | kinds::VIRTUAL_MACHINE)
    }

    fn needs(&self, live: &Spec) -> Vec<ResourceId> {
        match live {
            Spec::Object(object) if object.object == kinds::VIRTUAL_MACHINE => references(object),
            _ => Vec::new(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Names are unique in a namespace.
            replace_side_by_side: false,
            storage_paths: false,
            uefi: true,
            security_groups: false,
        }
    }
}

/// How a VM's disk templates change.
#[derive(Debug, Default)]
pub struct Disks {
    /// Templates added after the existing ones.
    pub added: bool,
    /// Existing disks whose size grows: (name, storage class, from, to).
    pub grown: Vec<(String, String, String, String)>,
    /// Existing disks whose size would shrink: (name, from, to).
    pub shrunk: Vec<(String, String, String)>,
    /// Anything else: a template removed, or changed in another way than its size.
    pub other: bool,
}

const SIZE: &str = "/spec/storage/resources/requests/storage";

pub fn disks(live: &Spec, want: &Spec) -> Disks {
    let list = |spec: &Spec| match spec {
        Spec::Object(o) => o
            .fields
            .get(TEMPLATES)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let (had, wanted) = (list(live), list(want));
    let mut out = Disks {
        added: wanted.len() > had.len(),
        other: wanted.len() < had.len(),
        ..Disks::default()
    };
    for (old, new) in had.iter().zip(&wanted) {
        let without_size = |t: &Value| {
            let mut t = t.clone();
            if let Some(size) = t.pointer_mut(SIZE) {
                *size = Value::Null;
            }
            t
        };
        if without_size(old) != without_size(new) {
            out.other = true;
            continue;
        }
        let size = |t: &Value| {
            t.pointer(SIZE)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (from, to) = (size(old), size(new));
        let name = new["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match (bytes(&from), bytes(&to)) {
            (Some(a), Some(b)) if b > a => {
                let class = new
                    .pointer("/spec/storage/storageClassName")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_string();
                out.grown.push((name, class, from, to));
            }
            (Some(a), Some(b)) if b < a => out.shrunk.push((name, from, to)),
            (Some(_), Some(_)) => {}
            _ if from != to => out.other = true,
            _ => {}
        }
    }
    out
}

/// A Kubernetes quantity of bytes (`10Gi`, `1536Mi`, `5G`, `1000`).
pub fn bytes(quantity: &str) -> Option<u64> {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    for (suffix, factor) in units {
        if let Some(number) = quantity.strip_suffix(suffix) {
            return number.parse::<u64>().ok()?.checked_mul(factor);
        }
    }
    quantity.parse().ok()
}

/// What a VirtualMachine refers to: its cloud-init Secrets, its Multus networks, the images its
/// disks are cloned from.
fn references(vm: &ObjectSpec) -> Vec<ResourceId> {
    let id = |kind, name: &str| ResourceId {
        kind,
        name: name.to_string(),
        pool: None,
    };
    let list = |path: &str| -> Vec<Value> {
        vm.fields
            .get(path)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for volume in list("spec.template.spec.volumes") {
        for key in ["secretRef", "networkDataSecretRef"] {
            if let Some(name) = volume["cloudInitNoCloud"][key]["name"].as_str() {
                out.push(id(kinds::SECRET, name));
            }
        }
    }
    for network in list("spec.template.spec.networks") {
        if let Some(name) = network["multus"]["networkName"].as_str() {
            out.push(id(kinds::NETWORK_ATTACHMENT_DEFINITION, name));
        }
    }
    for template in list("spec.dataVolumeTemplates") {
        if let Some(name) = template["spec"]["source"]["pvc"]["name"].as_str() {
            out.push(id(kinds::DATA_VOLUME, name));
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::spec::ObjectSpec;

    #[test]
    fn what_holds_data_is_kubevirts_own_word() {
        let object = |kind| {
            Spec::Object(ObjectSpec {
                object: kind,
                name: "x".into(),
                fields: Default::default(),
                secret_data: Default::default(),
            })
        };
        let rules = KubevirtRules::default();
        assert!(rules.holds_data(&object(kinds::DATA_VOLUME)));
        assert!(rules.holds_data(&object(kinds::VIRTUAL_MACHINE)));
        assert!(!rules.holds_data(&object(kinds::SECRET)));
        assert!(!rules.holds_data(&object(kinds::NETWORK_ATTACHMENT_DEFINITION)));
    }

    fn vm(sizes: &[&str]) -> Spec {
        let templates: Vec<Value> = sizes
            .iter()
            .enumerate()
            .map(|(i, size)| {
                serde_json::json!({"metadata": {"name": format!("vm-disk{i}")},
                    "spec": {"source": {"blank": {}}, "storage": {"resources": {"requests": {"storage": size}}}}})
            })
            .collect();
        Spec::Object(ObjectSpec {
            object: kinds::VIRTUAL_MACHINE,
            name: "vm".into(),
            fields: [(TEMPLATES.to_string(), Value::Array(templates))].into(),
            secret_data: Default::default(),
        })
    }

    #[test]
    fn disks_grow_in_place_where_the_class_allows_and_never_shrink() {
        let rules = KubevirtRules::default();
        let (small, big) = (vm(&["10Gi"]), vm(&["20Gi"]));
        assert!(rules
            .refusal(&small, &big)
            .unwrap()
            .contains("does not allow volume expansion"));
        rules.expandable.lock().unwrap().insert("default".into());
        assert_eq!(rules.refusal(&small, &big), None);
        assert_eq!(rules.disruption(TEMPLATES, &small, &big), Disruption::Live);
        assert!(rules
            .refusal(&big, &small)
            .unwrap()
            .contains("would shrink from 20Gi to 10Gi"));
        assert_eq!(
            rules.disruption(TEMPLATES, &small, &vm(&["10Gi", "5Gi"])),
            Disruption::Reboot
        );
        assert_eq!(
            rules.disruption(TEMPLATES, &vm(&["10Gi", "5Gi"]), &small),
            Disruption::Replace
        );
        assert_eq!(bytes("1536Mi"), Some(1536 << 20));
    }

    fn cpus(sockets: u64, most: Option<u64>) -> Spec {
        let mut fields: std::collections::BTreeMap<String, Value> =
            [(SOCKETS.to_string(), sockets.into())].into();
        if let Some(most) = most {
            fields.insert(MAX_SOCKETS.into(), most.into());
        }
        Spec::Object(ObjectSpec {
            object: kinds::VIRTUAL_MACHINE,
            name: "vm".into(),
            fields,
            secret_data: Default::default(),
        })
    }

    #[test]
    fn cpus_change_live_only_within_a_headroom_that_stays() {
        let rules = KubevirtRules::default();
        let live = |s, m| rules.disruption(SOCKETS, &cpus(2, m), &cpus(s, m));
        assert_eq!(live(4, Some(8)), Disruption::Live);
        assert_eq!(live(9, Some(8)), Disruption::Reboot, "beyond the headroom");
        assert_eq!(
            live(1, Some(8)),
            Disruption::Reboot,
            "KubeVirt does not unplug"
        );
        assert_eq!(live(4, None), Disruption::Reboot, "no headroom");
        assert_eq!(
            rules.disruption(SOCKETS, &cpus(2, Some(8)), &cpus(4, Some(16))),
            Disruption::Reboot,
            "a new headroom is itself a restart"
        );
        assert_eq!(bytes("5G"), Some(5_000_000_000));
    }
}
