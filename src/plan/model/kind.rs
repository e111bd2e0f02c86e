//! Kinds of resource: an open set. The model declares the kinds its own spec shapes make
//! (network, pool, volume, vm, DNS record); a backend declares the kinds of its own objects in
//! its folder (KubeVirt's `virtualmachine`, `datavolume`, …) and registers them, so that a
//! new backend adds kinds without touching the planner.
//!
//! A kind is named as its backend names it (how it shows in a diff and is written in a mark)
//! and has a [`Role`]: what the operations know it as, whichever backend's it is.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What the operations know a kind as, whichever backend's kind it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// A network VMs attach to that is started and stopped (a libvirt network).
    Network,
    /// A network VMs attach to that is only a definition, with no running state of its own (a
    /// KubeVirt network attachment).
    Attachment,
    /// Where volumes live, started and stopped (a libvirt storage pool).
    Pool,
    /// What holds a disk's data.
    Volume,
    /// A virtual machine: what the day-two commands act on.
    Vm,
    /// Anything else (a DNS record, a Secret).
    Other,
}

/// A kind of resource, as its backend names it. Kinds sort by role (networks before the
/// volumes and VMs that use them), then by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceKind {
    role: Role,
    name: &'static str,
}

/// Makes a kind known by name, to read it back from a mark or a saved state: each kind a
/// backend declares is submitted once, beside its declaration.
pub struct Registered(pub ResourceKind);

inventory::collect!(Registered);

impl ResourceKind {
    /// Declares a kind. `name` is lower case, as kubectl names kinds.
    pub const fn new(name: &'static str, role: Role) -> Self {
        ResourceKind { role, name }
    }

    // The kinds of the model's own spec shapes.
    pub const NETWORK: ResourceKind = ResourceKind::new("network", Role::Network);
    pub const POOL: ResourceKind = ResourceKind::new("pool", Role::Pool);
    /// A volume in a pool: a VM's disk, a shared disk, an image, or a cloud-init seed.
    pub const VOLUME: ResourceKind = ResourceKind::new("volume", Role::Volume);
    pub const VM: ResourceKind = ResourceKind::new("vm", Role::Vm);
    /// A DNS record in a network the plan does not make (the host's `default`), named within
    /// that network.
    pub const DNS_RECORD: ResourceKind = ResourceKind::new("dnsrecord", Role::Other);
    /// What joins the copies of one network on several hosts into one segment (a VXLAN device
    /// in each host's bridge), named after the network.
    pub const TUNNEL: ResourceKind = ResourceKind::new("tunnel", Role::Other);

    pub fn name(self) -> &'static str {
        self.name
    }

    pub fn role(self) -> Role {
        self.role
    }

    /// A virtual machine, whichever backend's kind it is (a libvirt domain, a KubeVirt
    /// VirtualMachine).
    pub fn is_vm(self) -> bool {
        self.role == Role::Vm
    }

    /// A network VMs attach to, whichever backend's kind it is.
    pub fn is_network(self) -> bool {
        matches!(self.role, Role::Network | Role::Attachment)
    }

    /// The registered kind called `name`.
    pub fn named(name: &str) -> Option<ResourceKind> {
        inventory::iter::<Registered>
            .into_iter()
            .map(|r| r.0)
            .find(|kind| kind.name == name)
    }
}

inventory::submit!(Registered(ResourceKind::NETWORK));
inventory::submit!(Registered(ResourceKind::POOL));
inventory::submit!(Registered(ResourceKind::VOLUME));
inventory::submit!(Registered(ResourceKind::VM));
inventory::submit!(Registered(ResourceKind::DNS_RECORD));
inventory::submit!(Registered(ResourceKind::TUNNEL));

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

impl Serialize for ResourceKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name)
    }
}

impl<'de> Deserialize<'de> for ResourceKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        ResourceKind::named(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown resource kind `{name}` (not one this build of siteplan knows)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_reads_back_as_the_kind_it_was_written_as() {
        for kind in inventory::iter::<Registered> {
            let text = serde_json::to_string(&kind.0).unwrap();
            let back: ResourceKind = serde_json::from_str(&text).unwrap();
            assert_eq!(back, kind.0);
            assert_eq!(back.role(), kind.0.role());
        }
        assert!(serde_json::from_str::<ResourceKind>("\"nosuchkind\"").is_err());
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = inventory::iter::<Registered>
            .into_iter()
            .map(|r| r.0.name())
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }
}
