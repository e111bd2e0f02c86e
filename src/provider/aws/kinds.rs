//! The kinds of EC2 resource the AWS backend makes, named as EC2 names them. Declared here, not
//! in the planner's model, and registered so that a mark naming one reads back.

use crate::plan::model::kind::{Registered, ResourceKind, Role};

/// A VM: an EC2 instance, with its EBS volumes (they come and go with it).
pub const INSTANCE: ResourceKind = ResourceKind::new("instance", Role::Vm);
/// A network: a VPC, the subnet VMs attach to (`SUBNET`), and the security group its VMs share.
pub const VPC: ResourceKind = ResourceKind::new("vpc", Role::Network);
pub const SUBNET: ResourceKind = ResourceKind::new("subnet", Role::Other);
pub const SECURITY_GROUP: ResourceKind = ResourceKind::new("security-group", Role::Other);
/// A network with `nat: true`: its way out (an internet gateway, and the default route to it).
pub const INTERNET_GATEWAY: ResourceKind = ResourceKind::new("internet-gateway", Role::Other);
/// A VM's first public key, imported for EC2 to install (kcli's `keypair`).
pub const KEY_PAIR: ResourceKind = ResourceKind::new("key-pair", Role::Other);

inventory::submit!(Registered(INSTANCE));
inventory::submit!(Registered(VPC));
inventory::submit!(Registered(SUBNET));
inventory::submit!(Registered(SECURITY_GROUP));
inventory::submit!(Registered(INTERNET_GATEWAY));
inventory::submit!(Registered(KEY_PAIR));
