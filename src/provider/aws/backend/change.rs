//! Making, changing and deleting EC2 resources. Each is tagged as EC2 makes it, so that a run
//! killed right after leaves it marked; what EC2 finishes later (an instance running, a volume
//! available, an instance gone) is waited for, bounded.

use std::time::Duration;

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, Filter, InstanceStateName, IpPermission, IpRange, ResourceType,
};
use serde_json::Value;

use super::found::Found;
use super::lower::{field, DEFAULT_NETWORK};
use super::rules::disk_changes;
use super::tags::{self, Tags};
use super::{code, done, failed, poll, AwsProvider};
use crate::plan::model::spec::{ObjectSpec, ResourceId, Spec};
use crate::provider::aws::kinds;
use crate::provider::{Done, Owner, ProviderError};

/// How long what was just made may take to be listed.
const LISTED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a network's parts may stay in use after their last instance went (its network
/// interfaces are released after it is terminated).
const IN_USE_TIMEOUT: Duration = Duration::from_secs(300);

fn object(spec: &Spec) -> Result<&ObjectSpec, ProviderError> {
    match spec {
        Spec::Object(object) => Ok(object),
        other => Err(ProviderError::Invalid(format!(
            "{} is not an AWS resource",
            other.id()
        ))),
    }
}

pub(super) fn text<'a>(object: &'a ObjectSpec, path: &str) -> Option<&'a str> {
    object.fields.get(path).and_then(Value::as_str)
}

fn marked(spec: &Spec, owner: &Owner, created: Option<String>) -> Result<Tags, ProviderError> {
    let id = spec.id();
    tags::mark(spec, owner, &id.name, created).map_err(|e| ProviderError::backend(&id, e))
}

impl AwsProvider {
    /// EC2's id of the resource of `kind` called `name`, the plan's own first; the error names
    /// what is missing.
    pub(super) async fn id_of(
        &self,
        kind: crate::plan::model::spec::ResourceKind,
        name: &str,
        plan: &str,
    ) -> Result<String, ProviderError> {
        // EC2 is eventually consistent: what was just made (the VPC of a subnet made next)
        // may not be listed yet.
        let found = poll(
            &format!("{kind}/{name} to be listed"),
            LISTED_TIMEOUT,
            || async { Ok(self.find_one(kind, name, Some(plan)).await?.map(|f| f.id)) },
        )
        .await;
        found.map_err(|_| ProviderError::NotFound(ResourceId::object(kind, name)))
    }

    pub(super) async fn make(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let object = object(spec)?;
        let id = spec.id();
        if self.find_one(id.kind, &id.name, None).await?.is_some() {
            return Err(ProviderError::backend(&id, "exists already"));
        }
        let tags = marked(spec, owner, None)?;
        match id.kind {
            kinds::VPC => {
                let cidr = text(object, field::CIDR).unwrap_or_default();
                self.ec2
                    .create_vpc()
                    .cidr_block(cidr)
                    .tag_specifications(tags::on_create(ResourceType::Vpc, &tags))
                    .send()
                    .await
                    .map_err(|e| ProviderError::backend(&id, failed(e)))?;
            }
            kinds::SUBNET => {
                let vpc = self
                    .id_of(
                        kinds::VPC,
                        text(object, field::VPC).unwrap_or_default(),
                        &owner.plan,
                    )
                    .await?;
                let made = self
                    .ec2
                    .create_subnet()
                    .vpc_id(vpc)
                    .cidr_block(text(object, field::CIDR).unwrap_or_default())
                    .availability_zone(&self.zone)
                    .tag_specifications(tags::on_create(ResourceType::Subnet, &tags))
                    .send()
                    .await
                    .map_err(|e| ProviderError::backend(&id, failed(e)))?;
                let subnet = made
                    .subnet()
                    .and_then(|s| s.subnet_id())
                    .unwrap_or_default()
                    .to_string();
                crate::provider::crashpoint::point("subnet made");
                self.public_addresses(&subnet, object).await?;
            }
            kinds::SECURITY_GROUP => {
                let vpc = self
                    .vpc_id(text(object, field::VPC).unwrap_or_default(), &owner.plan)
                    .await?;
                let made = self
                    .ec2
                    .create_security_group()
                    .group_name(format!("{}-{}", owner.plan, id.name))
                    .description(format!("siteplan: plan {}, {}", owner.plan, id.name))
                    .vpc_id(vpc)
                    .tag_specifications(tags::on_create(ResourceType::SecurityGroup, &tags))
                    .send()
                    .await
                    .map_err(|e| ProviderError::backend(&id, failed(e)))?;
                let group = made.group_id().unwrap_or_default().to_string();
                crate::provider::crashpoint::point("security group made");
                self.set_ingress(&group, &[], &ingress(object)).await?;
            }
            kinds::INTERNET_GATEWAY => {
                let vpc = self
                    .id_of(
                        kinds::VPC,
                        text(object, field::VPC).unwrap_or_default(),
                        &owner.plan,
                    )
                    .await?;
                let made = self
                    .ec2
                    .create_internet_gateway()
                    .tag_specifications(tags::on_create(ResourceType::InternetGateway, &tags))
                    .send()
                    .await
                    .map_err(|e| ProviderError::backend(&id, failed(e)))?;
                let gateway = made
                    .internet_gateway()
                    .and_then(|g| g.internet_gateway_id())
                    .unwrap_or_default()
                    .to_string();
                crate::provider::crashpoint::point("internet gateway made");
                self.ec2
                    .attach_internet_gateway()
                    .internet_gateway_id(&gateway)
                    .vpc_id(&vpc)
                    .send()
                    .await
                    .map_err(|e| ProviderError::backend(&id, failed(e)))?;
                crate::provider::crashpoint::point("internet gateway attached");
                self.default_route(&vpc, &gateway).await?;
            }
            kinds::KEY_PAIR => {
                let key = text(object, field::PUBLIC_KEY).unwrap_or_default();
                self.ec2
                    .import_key_pair()
                    .key_name(&id.name)
                    .public_key_material(Blob::new(key.as_bytes()))
                    .tag_specifications(tags::on_create(ResourceType::KeyPair, &tags))
                    .send()
                    .await
                    .map_err(|e| ProviderError::backend(&id, failed(e)))?;
            }
            kinds::INSTANCE => return self.launch(spec, object, owner, tags).await,
            other => return Err(ProviderError::Invalid(format!("AWS makes no {other}"))),
        }
        crate::provider::crashpoint::point("created");
        Ok(done(id, "created"))
    }

    /// EC2's id of the VPC a network is: the account's default VPC for `default`.
    pub(super) async fn vpc_id(&self, network: &str, plan: &str) -> Result<String, ProviderError> {
        if network != DEFAULT_NETWORK {
            return self.id_of(kinds::VPC, network, plan).await;
        }
        let out = self
            .ec2
            .describe_vpcs()
            .filters(Filter::builder().name("is-default").values("true").build())
            .send()
            .await
            .map_err(failed)?;
        out.vpcs()
            .first()
            .and_then(|v| v.vpc_id())
            .map(str::to_string)
            .ok_or_else(|| ProviderError::NotFound(ResourceId::object(kinds::VPC, network)))
    }

    /// The security groups an instance's spec puts it in: its network's own and those it
    /// names, in its network's VPC. None on the default network when it names none: EC2 then
    /// gives it the VPC's default group.
    pub(super) async fn group_ids(
        &self,
        object: &ObjectSpec,
        plan: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let network = text(object, field::NETWORK).unwrap_or(DEFAULT_NETWORK);
        let named: Vec<&str> = object
            .fields
            .get(field::SECURITY_GROUPS)
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut ids = Vec::new();
        if network != DEFAULT_NETWORK {
            ids.push(self.id_of(kinds::SECURITY_GROUP, network, plan).await?);
        }
        if named.is_empty() {
            return Ok(ids);
        }
        let vpc = match network {
            DEFAULT_NETWORK => self.vpc_id(network, plan).await?,
            _ => self.vpc_of_subnet(network, plan).await?,
        };
        for name in named {
            ids.push(self.group_in(&vpc, name, plan).await?);
        }
        Ok(ids)
    }

    /// The VPC of the subnet a network names.
    async fn vpc_of_subnet(&self, network: &str, plan: &str) -> Result<String, ProviderError> {
        let subnet = self.id_of(kinds::SUBNET, network, plan).await?;
        let out = self
            .ec2
            .describe_subnets()
            .subnet_ids(&subnet)
            .send()
            .await
            .map_err(failed)?;
        out.subnets()
            .first()
            .and_then(|s| s.vpc_id())
            .map(str::to_string)
            .ok_or_else(|| ProviderError::NotFound(ResourceId::object(kinds::SUBNET, network)))
    }

    /// The security group called `name` (its `Name` tag, else its group name) in `vpc`, the
    /// plan's own first.
    async fn group_in(&self, vpc: &str, name: &str, plan: &str) -> Result<String, ProviderError> {
        let found = poll(
            &format!("security group {name} to be listed"),
            LISTED_TIMEOUT,
            || async {
                let mut best: Option<(bool, String)> = None;
                for by in [format!("tag:{}", tags::NAME), "group-name".to_string()] {
                    let out = self
                        .ec2
                        .describe_security_groups()
                        .filters(Filter::builder().name("vpc-id").values(vpc).build())
                        .filters(Filter::builder().name(&by).values(name).build())
                        .send()
                        .await
                        .map_err(failed)?;
                    for group in out.security_groups() {
                        let ours = tags::of(Some(group.tags()))
                            .get(tags::PLAN)
                            .map(String::as_str)
                            == Some(plan);
                        if best.as_ref().is_none_or(|(was_ours, _)| ours && !was_ours) {
                            best = Some((ours, group.group_id().unwrap_or_default().to_string()));
                        }
                    }
                }
                Ok(best.map(|(_, id)| id))
            },
        )
        .await;
        found.map_err(|_| ProviderError::NotFound(ResourceId::object(kinds::SECURITY_GROUP, name)))
    }

    /// The VPC's main route table sends everything else to `gateway`.
    async fn default_route(&self, vpc: &str, gateway: &str) -> Result<(), ProviderError> {
        let table = self.main_route_table(vpc).await?;
        self.ec2
            .create_route()
            .route_table_id(table)
            .destination_cidr_block("0.0.0.0/0")
            .gateway_id(gateway)
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Public addresses on launch, as the subnet's network says.
    async fn public_addresses(
        &self,
        subnet: &str,
        object: &ObjectSpec,
    ) -> Result<(), ProviderError> {
        let public = object
            .fields
            .get(field::PUBLIC)
            .and_then(Value::as_bool)
            .unwrap_or(false);
        self.ec2
            .modify_subnet_attribute()
            .subnet_id(subnet)
            .map_public_ip_on_launch(AttributeBooleanValue::builder().value(public).build())
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn main_route_table(&self, vpc: &str) -> Result<String, ProviderError> {
        let tables = self
            .ec2
            .describe_route_tables()
            .filters(Filter::builder().name("vpc-id").values(vpc).build())
            .filters(
                Filter::builder()
                    .name("association.main")
                    .values("true")
                    .build(),
            )
            .send()
            .await
            .map_err(failed)?;
        tables
            .route_tables()
            .first()
            .and_then(|t| t.route_table_id())
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Connection(format!("VPC {vpc} has no main route table")))
    }

    /// Rules in, rules out: what `want` has that `have` has not is authorised, the rest revoked.
    async fn set_ingress(
        &self,
        group: &str,
        have: &[String],
        want: &[String],
    ) -> Result<(), ProviderError> {
        let add: Vec<IpPermission> = want
            .iter()
            .filter(|r| !have.contains(r))
            .filter_map(|r| permission(r))
            .collect();
        let remove: Vec<IpPermission> = have
            .iter()
            .filter(|r| !want.contains(r))
            .filter_map(|r| permission(r))
            .collect();
        if !add.is_empty() {
            self.ec2
                .authorize_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(Some(add))
                .send()
                .await
                .map_err(failed)?;
        }
        if !remove.is_empty() {
            self.ec2
                .revoke_security_group_ingress()
                .group_id(group)
                .set_ip_permissions(Some(remove))
                .send()
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    pub(super) async fn change(
        &self,
        found: &Found,
        spec: &Spec,
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let object = object(spec)?;
        let id = spec.id();
        let have = found.spec();
        let mut did = Vec::new();
        let mut needs_reboot = false;
        match id.kind {
            kinds::SECURITY_GROUP => {
                let list = |o: &ObjectSpec| ingress(o);
                self.set_ingress(&found.id, &list(&have), &list(object))
                    .await?;
                did.push("rules set");
            }
            kinds::INTERNET_GATEWAY => {
                let wanted = object.fields.get(field::DEFAULT_ROUTE) == Some(&Value::Bool(true));
                let there = have.fields.get(field::DEFAULT_ROUTE) == Some(&Value::Bool(true));
                if wanted && !there {
                    let vpc = self
                        .id_of(
                            kinds::VPC,
                            text(object, field::VPC).unwrap_or_default(),
                            &owner.plan,
                        )
                        .await?;
                    self.default_route(&vpc, &found.id).await?;
                    did.push("default route made");
                }
            }
            kinds::SUBNET => {
                self.public_addresses(&found.id, object).await?;
                did.push("public addresses set");
            }
            kinds::INSTANCE => {
                let want_type = text(object, field::INSTANCE_TYPE).unwrap_or_default();
                let have_type = text(&have, field::INSTANCE_TYPE).unwrap_or_default();
                if want_type != have_type || found.pending_type.is_some() {
                    if found.active {
                        // EC2 changes a type only while the instance is stopped: saved beside
                        // it, made when it restarts.
                        self.tag(&found.id, &[(tags::PENDING_TYPE, want_type)])
                            .await?;
                        needs_reboot = found.running_type.as_deref() != Some(want_type);
                        did.push("instance type saved for the next restart");
                    } else {
                        self.set_type(&found.id, want_type).await?;
                        did.push("instance type changed");
                    }
                }
                if object.fields.get(field::SECURITY_GROUPS)
                    != have.fields.get(field::SECURITY_GROUPS)
                {
                    let groups = self.group_ids(object, &owner.plan).await?;
                    self.set_groups(&found.id, groups).await?;
                    did.push("security groups set");
                }
                // Disks a killed run left unnamed get their names (the mark has them).
                self.name_unnamed_disks(&found.id, spec).await?;
                if let Some((grown, added)) = disk_changes(&Spec::Object(have.clone()), spec) {
                    self.grow_and_add(found, spec, &grown, &added).await?;
                    if !grown.is_empty() || !added.is_empty() {
                        did.push("disks changed");
                    }
                }
                let want_running = object
                    .fields
                    .get(field::RUNNING)
                    .and_then(Value::as_bool)
                    .unwrap_or(true);
                if want_running && !found.active {
                    self.start(&found.id).await?;
                    did.push("started");
                } else if !want_running && found.active {
                    self.stop(&found.id, false).await?;
                    did.push("stopped");
                }
            }
            _ => {}
        }
        crate::provider::crashpoint::point("changed, mark not written yet");
        // The mark: written again (an adopted resource gets its first).
        let created = tags::owner_mark(&found.tags).and_then(|m| m.created);
        let new = marked(spec, owner, created)?;
        self.tag_all(&found.id, &new).await?;
        let stale = tags::stale_pieces(&found.tags, &new);
        if !stale.is_empty() {
            let keys: Vec<aws_sdk_ec2::types::Tag> = stale
                .iter()
                .map(|k| aws_sdk_ec2::types::Tag::builder().key(k).build())
                .collect();
            self.ec2
                .delete_tags()
                .resources(&found.id)
                .set_tags(Some(keys))
                .send()
                .await
                .map_err(failed)?;
        }
        Ok(Done {
            summary: format!(
                "{id} {}",
                if did.is_empty() {
                    "marked".to_string()
                } else {
                    did.join(", ")
                }
            ),
            id,
            needs_reboot,
        })
    }

    async fn tag(&self, resource: &str, pairs: &[(&str, &str)]) -> Result<(), ProviderError> {
        let tags: Tags = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.tag_all(resource, &tags).await
    }

    async fn tag_all(&self, resource: &str, tags: &Tags) -> Result<(), ProviderError> {
        self.ec2
            .create_tags()
            .resources(resource)
            .set_tags(Some(tags::list(tags)))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    pub(super) async fn remove(&self, found: &Found) -> Result<Done, ProviderError> {
        let id = ResourceId::object(found.kind, &found.name);
        let gone = |e: &str| {
            matches!(
                e,
                "InvalidVpcID.NotFound"
                    | "InvalidSubnetID.NotFound"
                    | "InvalidGroup.NotFound"
                    | "InvalidInternetGatewayID.NotFound"
                    | "InvalidKeyPair.NotFound"
            )
        };
        // A network's part still in use right after its instances went (EC2 releases their
        // interfaces a little later) is asked again, for a while.
        macro_rules! call {
            ($call:expr) => {{
                let started = std::time::Instant::now();
                loop {
                    match $call.send().await {
                        Ok(_) => break,
                        Err(e) if code(&e).as_deref().is_some_and(gone) => break,
                        Err(e)
                            if code(&e).as_deref() == Some("DependencyViolation")
                                && started.elapsed() < IN_USE_TIMEOUT =>
                        {
                            tokio::time::sleep(Duration::from_secs(5)).await
                        }
                        Err(e) => return Err(ProviderError::backend(&id, failed(e))),
                    }
                }
            }};
        }
        match found.kind {
            kinds::INSTANCE => {
                call!(self.ec2.terminate_instances().instance_ids(&found.id));
                self.wait_state(&found.id, InstanceStateName::Terminated)
                    .await?;
                crate::provider::crashpoint::point("instance terminated");
                if let Some(plan) = found.tags.get(tags::PLAN) {
                    self.delete_vm_snapshots(plan, &found.name).await?;
                }
            }
            kinds::VPC => call!(self.ec2.delete_vpc().vpc_id(&found.id)),
            kinds::SUBNET => call!(self.ec2.delete_subnet().subnet_id(&found.id)),
            kinds::SECURITY_GROUP => call!(self.ec2.delete_security_group().group_id(&found.id)),
            kinds::KEY_PAIR => {
                call!(self.ec2.delete_key_pair().key_pair_id(&found.id));
                // An emulator that deletes key pairs by name alone (moto) leaves it: then by
                // name, which is the one just found.
                let names = [found.name.clone()];
                let left = self
                    .find(kinds::KEY_PAIR, &super::found::Which::Named(&names))
                    .await?;
                if left.iter().any(|k| k.id == found.id) {
                    call!(self.ec2.delete_key_pair().key_name(&found.name));
                }
            }
            kinds::INTERNET_GATEWAY => {
                let out = self
                    .ec2
                    .describe_internet_gateways()
                    .internet_gateway_ids(&found.id)
                    .send()
                    .await
                    .map_err(failed)?;
                let vpcs: Vec<String> = out
                    .internet_gateways()
                    .iter()
                    .flat_map(|g| g.attachments())
                    .filter_map(|a| a.vpc_id().map(str::to_string))
                    .collect();
                for vpc in vpcs {
                    if let Ok(table) = self.main_route_table(&vpc).await {
                        let _ = self
                            .ec2
                            .delete_route()
                            .route_table_id(table)
                            .destination_cidr_block("0.0.0.0/0")
                            .send()
                            .await;
                        crate::provider::crashpoint::point("default route deleted");
                    }
                    call!(self
                        .ec2
                        .detach_internet_gateway()
                        .internet_gateway_id(&found.id)
                        .vpc_id(&vpc));
                    crate::provider::crashpoint::point("internet gateway detached");
                }
                call!(self
                    .ec2
                    .delete_internet_gateway()
                    .internet_gateway_id(&found.id));
            }
            other => return Err(ProviderError::Invalid(format!("AWS deletes no {other}"))),
        }
        Ok(done(id, "deleted"))
    }
}

/// A security group's rules as the spec lists them.
fn ingress(object: &ObjectSpec) -> Vec<String> {
    object
        .fields
        .get(field::INGRESS)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A rule as EC2 takes it: `all CIDR`, `tcp/22 CIDR`, `udp/1000-2000 CIDR`.
fn permission(rule: &str) -> Option<IpPermission> {
    let (what, cidr) = rule.split_once(' ')?;
    let range = IpRange::builder().cidr_ip(cidr).build();
    let builder = IpPermission::builder().ip_ranges(range);
    Some(match what.split_once('/') {
        None if what == "all" => builder.ip_protocol("-1").build(),
        // A protocol without ports: all of it (ICMP's every type and code).
        None => builder.ip_protocol(what).from_port(-1).to_port(-1).build(),
        Some((proto, ports)) => {
            let (from, to) = ports.split_once('-').unwrap_or((ports, ports));
            builder
                .ip_protocol(proto)
                .from_port(from.parse().ok()?)
                .to_port(to.parse().ok()?)
                .build()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_ec2_takes_them() {
        let all = permission("all 10.0.0.0/24").unwrap();
        assert_eq!(all.ip_protocol(), Some("-1"));
        let ssh = permission("tcp/22 0.0.0.0/0").unwrap();
        assert_eq!((ssh.from_port(), ssh.to_port()), (Some(22), Some(22)));
        assert!(permission("tcp/x 0.0.0.0/0").is_none());
    }
}
