//! The libvirt family's planning rules (the libvirt provider, the sandbox, and plan-against-plan,
//! which has no provider).

use crate::plan::desired::Desired;
use crate::plan::rules::{Capabilities, RestartFor, Rules};
use crate::plan::{AttributeChange, Change};
use crate::provider::spec::{ResourceId, ResourceKind, Spec, VolumeSource, VolumeSpec};
use crate::provider::{Disruption, LiveResource};

pub struct LibvirtRules;

impl Rules for LibvirtRules {
    fn disruption(&self, attribute: &str, live: &Spec, want: &Spec) -> Disruption {
        if let (
            Spec::Volume(VolumeSpec {
                capacity_bytes: Some(have),
                ..
            }),
            Spec::Volume(VolumeSpec {
                capacity_bytes: Some(wanted),
                ..
            }),
        ) = (live, want)
        {
            if attribute == "capacity_bytes" && wanted < have {
                return Disruption::Replace; // shrinking loses data
            }
        }
        table(want.id().kind, attribute)
    }

    /// An unmarked pool at the plan's path that holds nothing (or is stopped, so the provider
    /// checks that when it takes it over): a pool is defined before its ledger can mark it.
    fn leftover(&self, live: &LiveResource, want: &Spec) -> bool {
        match (&live.spec, want) {
            (Spec::Pool(have), Spec::Pool(want)) => {
                have.path == want.path && live.empty != Some(false)
            }
            _ => false,
        }
    }

    fn starts_when_stopped(&self, kind: ResourceKind) -> bool {
        matches!(kind, ResourceKind::Network | ResourceKind::Pool)
    }

    /// A VM reads its cloud-init seed when it boots.
    fn restart_to_see(&self, replace: &Change, desired: &Desired) -> Option<RestartFor> {
        let Some(Spec::Volume(VolumeSpec {
            source: VolumeSource::Generated { .. },
            ..
        })) = &replace.desired
        else {
            return None;
        };
        let source = replace.attributes.iter().find(|a| a.name == "source")?;
        let seed = &replace.id;
        desired.resources.iter().find_map(|r| match &r.spec {
            Spec::Vm(vm)
                if vm
                    .seed
                    .as_ref()
                    .is_some_and(|(p, n)| ResourceId::volume(p, n) == *seed) =>
            {
                Some(RestartFor {
                    vm: r.spec.id(),
                    reason: format!("its cloud-init seed {seed} is made again"),
                    attribute: AttributeChange {
                        name: "seed".into(),
                        before: digest(&source.before),
                        after: digest(&source.after),
                        disruption: Disruption::Reboot,
                    },
                })
            }
            _ => None,
        })
    }

    fn needs(&self, live: &Spec) -> Vec<ResourceId> {
        match live {
            Spec::Network(_) | Spec::Pool(_) => Vec::new(),
            Spec::Volume(v) => {
                let mut deps = vec![ResourceId::pool(&v.pool)];
                if let Some((pool, name)) = &v.backing {
                    deps.push(ResourceId::volume(pool, name));
                }
                deps
            }
            Spec::Vm(vm) => {
                let mut deps: Vec<ResourceId> = vm
                    .disks
                    .iter()
                    .map(|d| ResourceId::volume(&d.pool, &d.volume))
                    .collect();
                deps.extend(vm.seed.iter().map(|(p, n)| ResourceId::volume(p, n)));
                deps.extend(vm.nics.iter().map(|n| ResourceId::network(&n.network)));
                deps
            }
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            // Names are unique on a libvirt host.
            replace_side_by_side: false,
            storage_paths: true,
            uefi: true,
        }
    }
}

/// What changing an attribute costs in the libvirt family.
fn table(kind: ResourceKind, attribute: &str) -> Disruption {
    use Disruption::*;
    match (kind, attribute) {
        (ResourceKind::Network, "hosts" | "autostart") => Live,
        (ResourceKind::Network, _) => Replace,
        (ResourceKind::Pool, "autostart") => Live,
        (ResourceKind::Pool, _) => Replace,
        // Growing is live; shrinking is a replace (above).
        (ResourceKind::Volume, "capacity_bytes") => Live,
        (ResourceKind::Volume, _) => Replace,
        (ResourceKind::Vm, "running" | "autostart" | "disks" | "nics") => Live,
        (ResourceKind::Vm, "name") => Replace,
        (ResourceKind::Vm, _) => Reboot,
    }
}

/// A generated source's digest, which says the seed changed without repeating its text.
fn digest(source: &Option<serde_json::Value>) -> Option<serde_json::Value> {
    source
        .as_ref()
        .and_then(|s| s.get("generated"))
        .and_then(|g| g.get("sha256"))
        .cloned()
}
