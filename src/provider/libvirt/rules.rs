//! The libvirt family's planning rules (the libvirt provider, the sandbox, and plan-against-plan,
//! which has no provider).

use crate::plan::model::desired::Desired;
use crate::plan::model::rules::{merge_ignored, Capabilities, MoveWith, RestartFor, Rules};
use crate::plan::model::spec::{
    BootFile, ResourceId, ResourceKind, Spec, VmSpec, VolumeSource, VolumeSpec,
};
use crate::plan::{AttributeChange, Change};
use crate::provider::{Disruption, LiveResource};

pub struct LibvirtRules;

impl LibvirtRules {
    /// The VM whose cloud-init seed `replace` makes again.
    fn seed_read_at_boot(&self, replace: &Change, desired: &Desired) -> Option<RestartFor> {
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
}

impl Rules for LibvirtRules {
    fn disruption(&self, attribute: &str, live: &Spec, want: &Spec) -> Disruption {
        // A VM's mark that records no seed yet only learns it: nothing changes in the guest.
        if let (
            Spec::Vm(VmSpec {
                seed_sha256: None, ..
            }),
            "seed_sha256",
        ) = (live, attribute)
        {
            return Disruption::Live;
        }
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
        matches!(kind, ResourceKind::NETWORK | ResourceKind::POOL)
    }

    /// A VM reads its cloud-init seed when it boots.
    fn restart_to_see(&self, replace: &Change, desired: &Desired) -> Vec<RestartFor> {
        self.seed_read_at_boot(replace, desired)
            .into_iter()
            .collect()
    }

    /// A running VM's NICs on a network made again are moved onto it, live.
    fn moved_with(&self, replace: &Change, desired: &Desired) -> Vec<MoveWith> {
        if replace.id.kind != ResourceKind::NETWORK {
            return Vec::new();
        }
        let network = &replace.id.name;
        desired
            .resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::Vm(vm) if vm.nics.iter().any(|n| n.network == *network) => Some(MoveWith {
                    vm: r.spec.id(),
                    network: network.clone(),
                    reason: format!(
                        "its network {} is made again: its NICs on it are moved onto the new \
                         one, live",
                        replace.id
                    ),
                    attribute: AttributeChange {
                        name: "nics".into(),
                        before: Some(format!("on the old network/{network}").into()),
                        after: Some(format!("moved onto the new network/{network}").into()),
                        disruption: Disruption::Live,
                    },
                }),
                _ => None,
            })
            .collect()
    }

    fn keep_ignored(&self, want: &Spec, live: &Spec, ignore: &[&str]) -> Spec {
        let Some(mut kept) = merge_ignored(want, live, ignore) else {
            return want.clone();
        };
        // A generator is not serialised: carry it over when the source itself was kept.
        if let (Spec::Volume(kept), Spec::Volume(want)) = (&mut kept, want) {
            if let (
                VolumeSource::Generated { sha256: ours, .. },
                VolumeSource::Generated { sha256: wanted, .. },
            ) = (&kept.source, &want.source)
            {
                if ours == wanted {
                    kept.source = want.source.clone();
                }
            }
        }
        kept
    }

    /// Volumes hold data, except a seed siteplan generates; a domain holds its guest's memory
    /// and its definition's state; a pool (deleted only empty) held volumes.
    fn holds_data(&self, live: &Spec) -> bool {
        match live {
            Spec::Volume(VolumeSpec {
                source: VolumeSource::Generated { .. },
                ..
            }) => false,
            Spec::Volume(_) | Spec::Vm(_) | Spec::Pool(_) => true,
            _ => false,
        }
    }

    fn needs(&self, live: &Spec) -> Vec<ResourceId> {
        match live {
            Spec::Network(_) | Spec::Pool(_) | Spec::Object(_) => Vec::new(),
            Spec::Dns(record) => vec![ResourceId::network(&record.network)],
            Spec::Tunnel(tunnel) => vec![ResourceId::network(&tunnel.network)],
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
                for file in vm.kernel.iter().chain(&vm.initrd) {
                    if let BootFile::Volume { pool, volume } = file {
                        deps.push(ResourceId::volume(pool, volume));
                    }
                }
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
            security_groups: false,
        }
    }
}

/// The libvirt family's rules for libvirt's test driver (the sandbox), which cannot attach or
/// detach devices of a running domain: a disk or NIC change waits for a restart there, and the
/// diff must say so.
pub struct TestDriverRules;

impl Rules for TestDriverRules {
    fn disruption(&self, attribute: &str, live: &Spec, want: &Spec) -> Disruption {
        match (want.id().kind, attribute) {
            (ResourceKind::VM, "disks" | "nics") => Disruption::Reboot,
            _ => LibvirtRules.disruption(attribute, live, want),
        }
    }

    fn leftover(&self, live: &LiveResource, want: &Spec) -> bool {
        LibvirtRules.leftover(live, want)
    }

    fn starts_when_stopped(&self, kind: ResourceKind) -> bool {
        LibvirtRules.starts_when_stopped(kind)
    }

    fn restart_to_see(&self, replace: &Change, desired: &Desired) -> Vec<RestartFor> {
        LibvirtRules.restart_to_see(replace, desired)
    }

    fn moved_with(&self, replace: &Change, desired: &Desired) -> Vec<MoveWith> {
        LibvirtRules.moved_with(replace, desired)
    }

    fn keep_ignored(&self, want: &Spec, live: &Spec, ignore: &[&str]) -> Spec {
        LibvirtRules.keep_ignored(want, live, ignore)
    }

    fn needs(&self, live: &Spec) -> Vec<ResourceId> {
        LibvirtRules.needs(live)
    }

    fn holds_data(&self, live: &Spec) -> bool {
        LibvirtRules.holds_data(live)
    }

    fn capabilities(&self) -> Capabilities {
        LibvirtRules.capabilities()
    }
}

/// What changing an attribute costs in the libvirt family.
fn table(kind: ResourceKind, attribute: &str) -> Disruption {
    use Disruption::*;
    match (kind, attribute) {
        (ResourceKind::NETWORK, "hosts" | "dns_hosts" | "autostart") => Live,
        (ResourceKind::NETWORK, _) => Replace,
        (ResourceKind::POOL, "autostart") => Live,
        (ResourceKind::POOL, _) => Replace,
        // Growing is live; shrinking is a replace (above).
        (ResourceKind::VOLUME, "capacity_bytes") => Live,
        (ResourceKind::VOLUME, _) => Replace,
        (ResourceKind::VM, "running" | "autostart" | "disks" | "nics") => Live,
        (ResourceKind::VM, "name") => Replace,
        (ResourceKind::VM, _) => Reboot,
        // The host entry is removed and added again, on the running network.
        (ResourceKind::DNS_RECORD, _) => Live,
        // Ports and flooding entries change on the running bridge; the device itself, made
        // again, drops the segment for a moment.
        (ResourceKind::TUNNEL, "bridge" | "peers") => Live,
        // Not the libvirt family's: whatever it is, made again.
        _ => Replace,
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
