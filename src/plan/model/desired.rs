//! The desired state on one provider: the backend resources (specs) a plan's intents were
//! lowered into, with what each needs first, the names they use without declaring them, and
//! their guards. The planner compares it with what the provider observed.

use std::collections::BTreeMap;

use super::spec::*;

/// One resource the plan wants, with what must exist before it.
#[derive(Debug, Clone)]
pub struct DesiredResource {
    pub spec: Spec,
    /// The plan entry it comes from (`vm/web1`), for messages.
    pub entry: String,
    pub depends_on: Vec<ResourceId>,
}

#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub resources: Vec<DesiredResource>,
    /// Things the plan uses without declaring them: they must already exist.
    pub external: Vec<ResourceId>,
    /// What the plan declares that a killed run can leave unmarked (pools), to recognise and
    /// take over. Kept for `destroy` too, whose `resources` are empty.
    pub claimable: Vec<Spec>,
    /// Each declared resource's guards, from its entry. Kept for `destroy` too. A resource
    /// absent here (the plan no longer declares it, or could not be read) is guarded by what
    /// its ownership mark recorded.
    pub guards: BTreeMap<ResourceId, ResourceGuards>,
    /// Resources to replace even when nothing about them changed (`--replace`).
    pub replace: Vec<ResourceId>,
    /// `plan destroy`: what goes, goes because the plan is destroyed.
    pub destroying: bool,
    /// The group of hosts whose placement brought this part to its host, recorded in the marks
    /// of what it makes.
    pub group: Option<String>,
    /// Static addresses on networks the plan does not declare, by VM: only the live network
    /// says whether they fit.
    pub addresses_elsewhere: Vec<AddressElsewhere>,
    /// VMs that others wait for (`depends_on`, kcli's `wait`), and for how long at most: what
    /// waits for one starts when its guest is ready.
    pub awaited: BTreeMap<ResourceId, Awaited>,
}

/// A VM others wait for: what makes it ready, and for how long they wait at most.
#[derive(Debug, Clone, PartialEq)]
pub struct Awaited {
    pub ready: super::ReadinessQuery,
    pub timeout: std::time::Duration,
}

/// A VM's static address on a network the plan does not declare.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressElsewhere {
    pub vm: String,
    pub network: String,
    pub ip: std::net::IpAddr,
}

/// What may not happen to one resource (its entry's guards, in spec terms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceGuards {
    pub prevent_destroy: bool,
    pub create_before_destroy: bool,
    /// Spec attributes whose changes are not applied to the existing resource.
    pub ignore: Vec<&'static str>,
}

impl Desired {
    /// What `destroy` wants: nothing, but leftovers of killed runs still recognised, and the
    /// guards still in force.
    pub fn nothing_but_leftovers(self) -> Desired {
        Desired {
            claimable: self.claimable,
            guards: self.guards,
            destroying: true,
            ..Desired::default()
        }
    }

    /// Leaves out the resources of `entries` (addresses like `vm/web1`): `destroy --target`
    /// wants everything else to stay as it is.
    pub fn without(mut self, entries: &std::collections::BTreeSet<String>) -> Desired {
        self.resources.retain(|r| !entries.contains(&r.entry));
        self.destroying = true;
        self
    }

    pub fn guards_of(&self, id: &ResourceId) -> ResourceGuards {
        self.guards.get(id).cloned().unwrap_or_default()
    }
}

impl Desired {
    pub fn get(&self, id: &ResourceId) -> Option<&DesiredResource> {
        self.resources.iter().find(|r| r.spec.id() == *id)
    }
}
