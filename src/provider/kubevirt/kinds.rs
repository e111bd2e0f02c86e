//! The kinds of Kubernetes object the KubeVirt backend makes, named as kubectl names them.
//! Declared here, not in the planner's model, and registered so that a mark naming one reads
//! back.

use crate::plan::model::kind::{Registered, ResourceKind, Role};

pub const VIRTUAL_MACHINE: ResourceKind = ResourceKind::new("virtualmachine", Role::Vm);
pub const DATA_VOLUME: ResourceKind = ResourceKind::new("datavolume", Role::Volume);
pub const NETWORK_ATTACHMENT_DEFINITION: ResourceKind =
    ResourceKind::new("networkattachmentdefinition", Role::Attachment);
pub const SECRET: ResourceKind = ResourceKind::new("secret", Role::Other);

inventory::submit!(Registered(VIRTUAL_MACHINE));
inventory::submit!(Registered(DATA_VOLUME));
inventory::submit!(Registered(NETWORK_ATTACHMENT_DEFINITION));
inventory::submit!(Registered(SECRET));
