//! What changing EC2 resources costs, as the planner asks (`Rules`).
//!
//! An instance starts and stops in place, and its EBS volumes grow and are added while it runs.
//! Its instance type changes only while it is stopped: the change is saved beside it and made
//! when it restarts (`plan restart`, `apply --restart`), as a libvirt domain's saved definition
//! is. The groups it is in change in place. Anything else of an instance (its AMI, subnet, private address, key pair, user data,
//! a disk removed) makes it again, and so does any change to a network's parts.

use serde_json::Value;

use super::lower::field;
use crate::plan::model::rules::{Capabilities, Rules};
use crate::plan::model::spec::{ResourceId, Spec};
use crate::plan::model::Disruption;
use crate::provider::aws::kinds;

pub struct AwsRules;

/// A disk of an instance, as its spec lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub name: String,
    pub size_gib: u64,
    /// Its EBS volume type (`gp3`).
    pub kind: String,
}

/// An instance's disks, in order (the first is its root volume).
pub fn disks(spec: &Spec) -> Vec<Disk> {
    let Spec::Object(object) = spec else {
        return Vec::new();
    };
    object
        .fields
        .get(field::DISKS)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|d| Disk {
                    name: d["name"].as_str().unwrap_or_default().to_string(),
                    size_gib: d["size_gib"].as_u64().unwrap_or_default(),
                    kind: d["type"].as_str().unwrap_or("gp3").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How an instance's disks change: `None` when only a replace does it (a disk removed,
/// renamed or reordered), else the disks grown or given another type (by position) and those
/// added after.
pub fn disk_changes(live: &Spec, want: &Spec) -> Option<(Vec<usize>, Vec<Disk>)> {
    let (have, wanted) = (disks(live), disks(want));
    if wanted.len() < have.len() {
        return None;
    }
    let mut grown = Vec::new();
    for (i, (h, w)) in have.iter().zip(&wanted).enumerate() {
        if h.name != w.name {
            return None;
        }
        if w.size_gib > h.size_gib || w.kind != h.kind {
            grown.push(i);
        }
    }
    Some((grown, wanted[have.len()..].to_vec()))
}

impl Rules for AwsRules {
    fn disruption(&self, attribute: &str, live: &Spec, want: &Spec) -> Disruption {
        match (live.id().kind, attribute) {
            (kinds::INSTANCE, field::RUNNING) => Disruption::Live,
            (kinds::INSTANCE, field::INSTANCE_TYPE) => Disruption::Reboot,
            // An instance changes groups while it runs.
            (kinds::INSTANCE, field::SECURITY_GROUPS) => Disruption::Live,
            (kinds::INSTANCE, field::DISKS) => match disk_changes(live, want) {
                Some(_) => Disruption::Live,
                None => Disruption::Replace,
            },
            // A security group's rules change in place.
            (kinds::SECURITY_GROUP, field::INGRESS) => Disruption::Live,
            // The route to the gateway, made again in place.
            (kinds::INTERNET_GATEWAY, field::DEFAULT_ROUTE) => Disruption::Live,
            // Public addresses on launch: a subnet attribute, changed in place.
            (kinds::SUBNET, field::PUBLIC) => Disruption::Live,
            _ => Disruption::Replace,
        }
    }

    fn refusal(&self, live: &Spec, want: &Spec) -> Option<String> {
        let field_of = |spec: &Spec, path: &str| match spec {
            Spec::Object(o) => o.fields.get(path).cloned(),
            _ => None,
        };
        if matches!(live.id().kind, kinds::VPC | kinds::SUBNET)
            && field_of(live, field::CIDR) != field_of(want, field::CIDR)
        {
            // Its subnet would be made again, which EC2 refuses while instances are in it.
            return Some(
                "a network's `cidr` changes only by making its VPC and subnet again, which EC2 \
                 refuses while instances are in them: apply the plan without the network's \
                 VMs first, then change it"
                    .into(),
            );
        }
        if live.id().kind != kinds::INSTANCE {
            return None;
        }
        let shrunk: Vec<String> = disks(live)
            .iter()
            .zip(disks(want))
            .filter(|(h, w)| h.name == w.name && w.size_gib < h.size_gib)
            .map(|(h, w)| format!("{} from {} GiB to {} GiB", h.name, h.size_gib, w.size_gib))
            .collect();
        (!shrunk.is_empty()).then(|| {
            format!(
                "an EBS volume cannot shrink ({}); keep its size, or remove the disk",
                shrunk.join(", ")
            )
        })
    }

    fn needs(&self, live: &Spec) -> Vec<ResourceId> {
        let Spec::Object(object) = live else {
            return Vec::new();
        };
        let text = |path: &str| object.fields.get(path).and_then(Value::as_str);
        match object.object {
            kinds::SUBNET | kinds::SECURITY_GROUP | kinds::INTERNET_GATEWAY => text(field::VPC)
                .map(|vpc| vec![ResourceId::object(kinds::VPC, vpc)])
                .unwrap_or_default(),
            kinds::INSTANCE => {
                let mut needs = Vec::new();
                if let Some(net) =
                    text(field::NETWORK).filter(|n| *n != super::lower::DEFAULT_NETWORK)
                {
                    needs.push(ResourceId::object(kinds::SUBNET, net));
                    needs.push(ResourceId::object(kinds::SECURITY_GROUP, net));
                }
                if let Some(key) = text(field::KEY_NAME) {
                    needs.push(ResourceId::object(kinds::KEY_PAIR, key));
                }
                let groups = object.fields.get(field::SECURITY_GROUPS);
                for group in groups.and_then(Value::as_array).into_iter().flatten() {
                    if let Some(group) = group.as_str() {
                        needs.push(ResourceId::object(kinds::SECURITY_GROUP, group));
                    }
                }
                needs
            }
            _ => Vec::new(),
        }
    }

    /// An instance holds its disks' data; the network's parts and key pairs are made again as
    /// they were.
    fn holds_data(&self, live: &Spec) -> bool {
        live.id().kind == kinds::INSTANCE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Resources are found by their `Name` tag, which two would share.
            replace_side_by_side: false,
            storage_paths: false,
            uefi: false,
            security_groups: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::spec::ObjectSpec;
    use serde_json::json;

    fn instance(disks: Value) -> Spec {
        Spec::Object(ObjectSpec {
            object: kinds::INSTANCE,
            name: "web1".into(),
            fields: [(field::DISKS.to_string(), disks)].into_iter().collect(),
            secret_data: Default::default(),
        })
    }

    #[test]
    fn disks_grow_and_are_added_live_and_anything_else_replaces() {
        let rules = AwsRules;
        let live = instance(json!([{"name": "a", "size_gib": 10}]));
        let grown = instance(json!([{"name": "a", "size_gib": 20}, {"name": "b", "size_gib": 5}]));
        assert_eq!(
            rules.disruption(field::DISKS, &live, &grown),
            Disruption::Live
        );
        assert_eq!(
            disk_changes(&live, &grown),
            Some((
                vec![0],
                vec![Disk {
                    name: "b".into(),
                    size_gib: 5,
                    kind: "gp3".into()
                }]
            ))
        );
        let removed = instance(json!([]));
        assert_eq!(
            rules.disruption(field::DISKS, &live, &removed),
            Disruption::Replace
        );
        let shrunk = instance(json!([{"name": "a", "size_gib": 5}]));
        assert!(rules
            .refusal(&live, &shrunk)
            .unwrap()
            .contains("a from 10 GiB to 5 GiB"));
        assert_eq!(
            rules.disruption(field::INSTANCE_TYPE, &live, &grown),
            Disruption::Reboot
        );
        assert_eq!(
            rules.disruption(field::IMAGE, &live, &grown),
            Disruption::Replace
        );
    }
}
