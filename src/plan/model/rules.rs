//! What only a backend knows about changing its resources, asked by the planner: what a change
//! costs, which unmarked resources are leftovers of a killed run, which stopped resources are
//! started, and which running VM must restart to see a resource that is made again. Each
//! provider answers for its own resources (`Provider::rules`); the planner stays pure.

use super::change::{AttributeChange, Change};
use super::desired::Desired;
use super::spec::{ResourceId, ResourceKind, Spec};
use super::{Disruption, LiveResource};
use crate::plan::intent::{Intents, What};

pub trait Rules: Send + Sync {
    /// What changing `attribute` of a resource from `live` to `want` costs (for a running VM;
    /// the planner makes a restart of a stopped one free).
    fn disruption(&self, attribute: &str, live: &Spec, want: &Spec) -> Disruption;

    /// Why changing `live` to `want` cannot be done at all, neither in place nor by making it
    /// again without losing what it holds (a disk shrunk, or grown where it cannot grow):
    /// the plan is refused, saying so. None by default.
    fn refusal(&self, live: &Spec, want: &Spec) -> Option<String> {
        let _ = (live, want);
        None
    }

    /// More to say of `id`, which the plan uses without declaring and the provider lacks: what
    /// it has instead (a cluster's storage classes), as the provider last listed them.
    fn instead_of(&self, id: &ResourceId) -> Option<String> {
        let _ = id;
        None
    }

    /// Whether `live`, which exists without any plan's mark, is what a killed run of this plan
    /// leaves of `want`, and so is taken over.
    fn leftover(&self, live: &LiveResource, want: &Spec) -> bool {
        let _ = (live, want);
        false
    }

    /// Whether an existing resource of `kind` that is stopped is started by apply.
    fn starts_when_stopped(&self, kind: ResourceKind) -> bool {
        let _ = kind;
        false
    }

    /// The VMs that read what `replace` makes again only when they boot, and so must restart
    /// to see it (a cloud-init seed, a network attachment), with the attribute that says what
    /// changed.
    fn restart_to_see(&self, replace: &Change, desired: &Desired) -> Vec<RestartFor> {
        let _ = (replace, desired);
        Vec::new()
    }

    /// The VMs with NICs on what `replace` makes again (a network): while they run, their
    /// NICs stay on the bridge that goes with the old one unless they are moved onto the new
    /// one, live.
    fn moved_with(&self, replace: &Change, desired: &Desired) -> Vec<MoveWith> {
        let _ = (replace, desired);
        Vec::new()
    }

    /// `want` with the `ignore`d attributes (`ignore_changes`) taken from `live`, as a merge of
    /// their serialised forms; a backend whose specs hold unserialised values puts them back.
    fn keep_ignored(&self, want: &Spec, live: &Spec, ignore: &[&str]) -> Spec {
        merge_ignored(want, live, ignore).unwrap_or_else(|| want.clone())
    }

    /// What an existing resource needs to exist (its pool, its backing image, a VM's disks and
    /// networks), read from its spec: deletes go in the reverse order.
    fn needs(&self, live: &Spec) -> Vec<ResourceId>;

    /// Whether deleting `live` loses what it holds (a disk's data, a running guest's state),
    /// rather than something siteplan makes again as it was (a network, a cloud-init seed):
    /// what the diff calls data loss.
    fn holds_data(&self, live: &Spec) -> bool;

    /// What the backend can do at all, checked before anything is planned.
    fn capabilities(&self) -> Capabilities;
}

/// A running VM that must restart to see a resource made again.
#[derive(Debug, Clone)]
pub struct RestartFor {
    pub vm: ResourceId,
    /// Why, for the plan (`its cloud-init seed … is made again`).
    pub reason: String,
    /// What changed, as the VM's own attribute (its seed's digest, never its content).
    pub attribute: AttributeChange,
}

/// A running VM whose NICs follow a network made again, moved onto it live.
#[derive(Debug, Clone)]
pub struct MoveWith {
    pub vm: ResourceId,
    /// The network made again.
    pub network: String,
    /// Why, for the plan (`its network network/lab is made again: …`).
    pub reason: String,
    /// What changes, as the VM's own attribute.
    pub attribute: AttributeChange,
}

/// What a backend can do, declared up front: a plan that needs more is refused before anything
/// changes, naming what the backend cannot do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// A replacement can exist beside what it replaces (`create_before_destroy`).
    pub replace_side_by_side: bool,
    /// Storage is a directory on the host (a `pool` entry's `path`).
    pub storage_paths: bool,
    /// VMs can boot with UEFI firmware.
    pub uefi: bool,
    /// It has a cloud's security groups (`type: securitygroup`, a VM's `securitygroups`).
    pub security_groups: bool,
}

impl Capabilities {
    /// What of `intents` a backend with these capabilities cannot do, one sentence each, for
    /// `provider` (its name or type).
    pub fn refusals(&self, intents: &Intents, provider: &str) -> Vec<String> {
        let mut refused = Vec::new();
        for item in &intents.items {
            match &item.what {
                What::Storage(storage) if !self.storage_paths => refused.push(format!(
                    "{}: provider `{provider}` has no storage in host directories (`path: {}`); \
                     name storage it has instead",
                    item.entry, storage.path
                )),
                What::SecurityGroup(_) if !self.security_groups => refused.push(format!(
                    "{}: provider `{provider}` has no security groups; they exist on cloud \
                     providers (aws): put the VMs that use it there (`client:`), or remove it",
                    item.entry
                )),
                What::Vm(vm) => {
                    if vm.uefi && !self.uefi {
                        refused.push(format!(
                            "{}: provider `{provider}` cannot boot VMs with UEFI firmware \
                             (`uefi: true`)",
                            item.entry
                        ));
                    }
                    if !vm.security_groups.is_empty() && !self.security_groups {
                        refused.push(format!(
                            "{}: provider `{provider}` has no security groups (`securitygroups: \
                             [{}]`); remove the key, or put the VM on a cloud provider",
                            item.entry,
                            vm.security_groups
                                .iter()
                                .map(|g| g.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                }
                _ => {}
            }
        }
        refused
    }
}

/// `want` with the `ignore`d attributes of `live`, through their serialised forms; `None`
/// when there is nothing to ignore or the forms do not merge.
pub fn merge_ignored(want: &Spec, live: &Spec, ignore: &[&str]) -> Option<Spec> {
    if ignore.is_empty() {
        return None;
    }
    let (Ok(serde_json::Value::Object(mut merged)), Ok(serde_json::Value::Object(have))) =
        (serde_json::to_value(want), serde_json::to_value(live))
    else {
        return None;
    };
    for attr in ignore {
        match have.get(*attr) {
            Some(value) => merged.insert((*attr).to_string(), value.clone()),
            None => merged.remove(*attr),
        };
    }
    let mut kept = serde_json::from_value::<Spec>(serde_json::Value::Object(merged)).ok()?;
    // What is never serialised (an object's secret bytes) stays the plan's.
    if let (Spec::Object(kept), Spec::Object(wanted)) = (&mut kept, want) {
        kept.secret_data = wanted.secret_data.clone();
    }
    Some(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::intent::{Intent, StorageIntent};

    #[test]
    fn a_backend_refuses_up_front_what_it_cannot_do() {
        let intents = Intents {
            items: vec![Intent {
                name: "lab".into(),
                entry: "pool/lab".into(),
                guards: Default::default(),
                after: Vec::new(),
                what: What::Storage(StorageIntent {
                    path: "/srv/lab".into(),
                }),
            }],
        };
        let all = Capabilities {
            replace_side_by_side: false,
            storage_paths: true,
            uefi: true,
            security_groups: true,
        };
        assert!(all.refusals(&intents, "local").is_empty());
        let no_dirs = Capabilities {
            storage_paths: false,
            ..all
        };
        assert_eq!(
            no_dirs.refusals(&intents, "cluster"),
            ["pool/lab: provider `cluster` has no storage in host directories (`path: /srv/lab`); \
              name storage it has instead"]
        );
    }

    #[test]
    fn an_ignored_field_is_kept_live_and_secret_bytes_stay_the_plans() {
        let object = |size: u64, secret: &str| {
            Spec::Object(crate::plan::model::spec::ObjectSpec {
                // A kind the model registers (an object's kind must read back).
                object: crate::plan::model::spec::ResourceKind::DNS_RECORD,
                name: "a".into(),
                fields: [
                    ("size".to_string(), serde_json::json!(size)),
                    ("type".to_string(), serde_json::json!("x")),
                ]
                .into_iter()
                .collect(),
                secret_data: [("data".to_string(), secret.to_string())]
                    .into_iter()
                    .collect(),
            })
        };
        let want = object(20, "new");
        let live = object(10, "");
        let Some(Spec::Object(kept)) = merge_ignored(&want, &live, &["size"]) else {
            panic!("not merged");
        };
        assert_eq!(kept.fields["size"], serde_json::json!(10));
        assert_eq!(kept.secret_data["data"], "new");
    }

    #[test]
    fn security_groups_are_refused_where_there_are_none() {
        let group = Intent {
            name: "web".into(),
            entry: "securitygroup/web".into(),
            guards: Default::default(),
            after: Vec::new(),
            what: What::SecurityGroup(crate::plan::intent::SecurityGroupIntent {
                network: crate::plan::intent::Ref {
                    name: "default".into(),
                    declared: false,
                },
                ports: Vec::new(),
                source: "0.0.0.0/0".parse().unwrap(),
            }),
        };
        let intents = Intents { items: vec![group] };
        let cloud = Capabilities {
            replace_side_by_side: false,
            storage_paths: false,
            uefi: false,
            security_groups: true,
        };
        assert!(cloud.refusals(&intents, "aws").is_empty());
        let host = Capabilities {
            security_groups: false,
            ..cloud
        };
        let refused = host.refusals(&intents, "local");
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].starts_with("securitygroup/web: provider `local` has no security groups")
        );
    }
}
