//! What changing KubeVirt's objects costs, for the planner.
//!
//! A VirtualMachine's `runStrategy` changes live (KubeVirt starts or stops the VM); any other
//! change to its template takes effect when it restarts (KubeVirt's `RestartRequired`), and a
//! change to its `dataVolumeTemplates` reaches no existing disk, so the VM is made again.
//! DataVolumes and network attachments are made again when they change. A cloud-init Secret is
//! made again, and its VM, which reads it only when it boots, restarts to see it.

use serde_json::Value;

use super::objects::SECRET_DIGEST;
use crate::plan::desired::Desired;
use crate::plan::rules::{Capabilities, RestartFor, Rules};
use crate::plan::{AttributeChange, Change};
use crate::provider::spec::{ObjectSpec, ResourceId, ResourceKind, Spec};
use crate::provider::Disruption;

pub struct KubevirtRules;

impl Rules for KubevirtRules {
    fn disruption(&self, attribute: &str, live: &Spec, want: &Spec) -> Disruption {
        match (want.id().kind, attribute) {
            (ResourceKind::VirtualMachine, "spec.runStrategy") => Disruption::Live,
            (ResourceKind::VirtualMachine, path) if path.starts_with("spec.template.") => {
                Disruption::Reboot
            }
            // KubeVirt makes the DataVolumes of new templates, and its VM sees them when it
            // restarts; a template that changes reaches no existing disk.
            (ResourceKind::VirtualMachine, "spec.dataVolumeTemplates")
                if only_added(live, want, attribute) =>
            {
                Disruption::Reboot
            }
            _ => Disruption::Replace,
        }
    }

    fn restart_to_see(&self, replace: &Change, desired: &Desired) -> Option<RestartFor> {
        if replace.id.kind != ResourceKind::Secret {
            return None;
        }
        let digest = replace
            .attributes
            .iter()
            .find(|a| a.name == SECRET_DIGEST)?;
        desired.resources.iter().find_map(|r| match &r.spec {
            Spec::Object(vm)
                if vm.object == ResourceKind::VirtualMachine
                    && references(vm).contains(&replace.id) =>
            {
                Some(RestartFor {
                    vm: r.spec.id(),
                    reason: format!("its cloud-init {} is made again", replace.id),
                    attribute: AttributeChange {
                        name: "cloud-init".into(),
                        before: digest.before.clone(),
                        after: digest.after.clone(),
                        disruption: Disruption::Reboot,
                    },
                })
            }
            _ => None,
        })
    }

    fn needs(&self, live: &Spec) -> Vec<ResourceId> {
        match live {
            Spec::Object(object) if object.object == ResourceKind::VirtualMachine => {
                references(object)
            }
            _ => Vec::new(),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Names are unique in a namespace.
            replace_side_by_side: false,
            storage_paths: false,
            uefi: true,
        }
    }
}

/// Whether the list at `path` only grew: every live item is still there, in its place.
fn only_added(live: &Spec, want: &Spec, path: &str) -> bool {
    let list = |spec: &Spec| match spec {
        Spec::Object(o) => o.fields.get(path).and_then(Value::as_array).cloned(),
        _ => None,
    };
    match (list(live), list(want)) {
        (Some(had), Some(wanted)) => wanted.len() >= had.len() && wanted.starts_with(&had),
        (None, Some(_)) => true,
        _ => false,
    }
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
                out.push(id(ResourceKind::Secret, name));
            }
        }
    }
    for network in list("spec.template.spec.networks") {
        if let Some(name) = network["multus"]["networkName"].as_str() {
            out.push(id(ResourceKind::NetworkAttachmentDefinition, name));
        }
    }
    for template in list("spec.dataVolumeTemplates") {
        if let Some(name) = template["spec"]["source"]["pvc"]["name"].as_str() {
            out.push(id(ResourceKind::DataVolume, name));
        }
    }
    out.sort();
    out.dedup();
    out
}
