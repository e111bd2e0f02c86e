//! What EC2 holds, read back as the specs the planner builds (`lower`): one DescribeX call per
//! kind and filter, each resource known by its `Name` tag.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{Filter, Instance, InstanceStateName, SecurityGroup};
use serde_json::{json, Value};

use super::lower::{field, DEFAULT_NETWORK};
use super::tags::{self, Tags};
use super::{failed, AwsProvider};
use crate::plan::model::spec::{ObjectSpec, ResourceKind};
use crate::provider::aws::kinds;
use crate::provider::ProviderError;

/// One EC2 resource: its id, its tags, the spec it reads back as, and whether it runs.
#[derive(Debug, Clone)]
pub struct Found {
    pub kind: ResourceKind,
    pub name: String,
    /// EC2's id for it (`vpc-…`, `i-…`).
    pub id: String,
    pub tags: Tags,
    pub fields: BTreeMap<String, Value>,
    pub active: bool,
    /// An instance's: the attributes saved for it that it takes when it restarts.
    pub pending_type: Option<String>,
    /// An instance's live type, when a pending one is reported as its spec's.
    pub running_type: Option<String>,
    /// An instance's addresses: private, public.
    pub addresses: (Option<String>, Option<String>),
}

impl Found {
    /// A resource that is not an instance: always active, with no address or pending type.
    fn plain(
        kind: ResourceKind,
        name: String,
        id: String,
        tags: Tags,
        fields: BTreeMap<String, Value>,
    ) -> Found {
        Found {
            kind,
            name,
            id,
            tags,
            fields,
            active: true,
            pending_type: None,
            running_type: None,
            addresses: (None, None),
        }
    }

    pub fn spec(&self) -> ObjectSpec {
        ObjectSpec {
            object: self.kind,
            name: self.name.clone(),
            fields: self.fields.clone(),
            secret_data: BTreeMap::new(),
        }
    }
}

/// Which resources to find: those a plan marked, or those of some names.
#[derive(Debug, Clone)]
pub enum Which<'a> {
    Plan(&'a str),
    Named(&'a [String]),
    /// Every resource of a kind that carries kcli's or siteplan's plan tag (`plan list`).
    AnyPlan,
}

impl Which<'_> {
    fn filter(&self) -> Option<Filter> {
        let filter = |name: &str, values: Vec<String>| {
            Filter::builder()
                .name(name)
                .set_values(Some(values))
                .build()
        };
        match self {
            Which::Plan(plan) => Some(filter(
                &format!("tag:{}", tags::PLAN),
                vec![plan.to_string()],
            )),
            Which::Named([]) => None,
            Which::Named(names) => Some(filter(&format!("tag:{}", tags::NAME), names.to_vec())),
            Which::AnyPlan => Some(filter(
                "tag-key",
                vec![tags::PLAN.into(), tags::KCLI_PLAN.into()],
            )),
        }
    }
}

fn name_of(tags: &Tags) -> Option<String> {
    tags.get(tags::NAME).filter(|n| !n.is_empty()).cloned()
}

impl AwsProvider {
    /// The resources of `kind` that `which` names. Nothing when it names none.
    pub async fn find(
        &self,
        kind: ResourceKind,
        which: &Which<'_>,
    ) -> Result<Vec<Found>, ProviderError> {
        let Some(filter) = which.filter() else {
            return Ok(Vec::new());
        };
        match kind {
            kinds::VPC => self.vpcs(filter).await,
            kinds::SUBNET => self.subnets(vec![filter]).await,
            kinds::SECURITY_GROUP => {
                let mut found = self.security_groups(filter).await?;
                // A group another tool made may have no `Name` tag: then its group name.
                if let Which::Named(names) = which {
                    let by_group_name = Filter::builder()
                        .name("group-name")
                        .set_values(Some(names.to_vec()))
                        .build();
                    for group in self.security_groups(by_group_name).await? {
                        if !found.iter().any(|f| f.id == group.id) && names.contains(&group.name) {
                            found.push(group);
                        }
                    }
                }
                Ok(found)
            }
            kinds::INTERNET_GATEWAY => self.internet_gateways(filter).await,
            kinds::KEY_PAIR => self.key_pairs(filter).await,
            kinds::INSTANCE => self.instances(vec![filter]).await,
            _ => Ok(Vec::new()),
        }
    }

    /// The one resource of `kind` called `name`: a plan's own first, when names repeat.
    pub async fn find_one(
        &self,
        kind: ResourceKind,
        name: &str,
        plan: Option<&str>,
    ) -> Result<Option<Found>, ProviderError> {
        let names = [name.to_string()];
        let mut found = self.find(kind, &Which::Named(&names)).await?;
        if let Some(plan) = plan {
            if let Some(i) = found
                .iter()
                .position(|f| f.tags.get(tags::PLAN).map(String::as_str) == Some(plan))
            {
                return Ok(Some(found.swap_remove(i)));
            }
        }
        Ok(found.into_iter().next())
    }

    async fn vpcs(&self, filter: Filter) -> Result<Vec<Found>, ProviderError> {
        let pages: Vec<_> = self
            .ec2
            .describe_vpcs()
            .filters(filter)
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        let mut out = Vec::new();
        for vpc in pages {
            let vpc = vpc.map_err(failed)?;
            let tags = tags::of(Some(vpc.tags()));
            let Some(name) = name_of(&tags) else { continue };
            out.push(Found::plain(
                kinds::VPC,
                name,
                vpc.vpc_id().unwrap_or_default().to_string(),
                tags,
                object(json!({ field::CIDR: vpc.cidr_block() })),
            ));
        }
        Ok(out)
    }

    /// Subnets, each with its VPC's name (the VPC's `Name` tag).
    pub async fn subnets(&self, filters: Vec<Filter>) -> Result<Vec<Found>, ProviderError> {
        let pages: Vec<_> = self
            .ec2
            .describe_subnets()
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        let mut out = Vec::new();
        let mut vpc_names = BTreeMap::new();
        for subnet in pages {
            let subnet = subnet.map_err(failed)?;
            let tags = tags::of(Some(subnet.tags()));
            let name = match name_of(&tags) {
                Some(name) => name,
                None if subnet.default_for_az() == Some(true) => {
                    super::lower::DEFAULT_NETWORK.to_string()
                }
                None => continue,
            };
            let vpc_id = subnet.vpc_id().unwrap_or_default().to_string();
            if !vpc_names.contains_key(&vpc_id) {
                let filter = Filter::builder().name("vpc-id").values(&vpc_id).build();
                let vpc = self.vpcs_any(filter).await?;
                vpc_names.insert(vpc_id.clone(), vpc);
            }
            out.push(Found::plain(
                kinds::SUBNET,
                name,
                subnet.subnet_id().unwrap_or_default().to_string(),
                tags,
                object(json!({
                    field::VPC: vpc_names[&vpc_id],
                    field::CIDR: subnet.cidr_block(),
                    field::PUBLIC: subnet.map_public_ip_on_launch().unwrap_or(false),
                })),
            ));
        }
        Ok(out)
    }

    /// Whether the VPC's main route table sends everything else to `gateway`.
    async fn routes_to(&self, vpc: &str, gateway: &str) -> Result<bool, ProviderError> {
        let out = self
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
        Ok(out.route_tables().iter().flat_map(|t| t.routes()).any(|r| {
            r.destination_cidr_block() == Some("0.0.0.0/0") && r.gateway_id() == Some(gateway)
        }))
    }

    /// A VPC's name (its `Name` tag), or its id when it has none.
    async fn vpcs_any(&self, filter: Filter) -> Result<String, ProviderError> {
        let out = self
            .ec2
            .describe_vpcs()
            .filters(filter)
            .send()
            .await
            .map_err(failed)?;
        Ok(out
            .vpcs()
            .first()
            .map(|v| {
                name_of(&tags::of(Some(v.tags())))
                    .or_else(|| {
                        (v.is_default() == Some(true))
                            .then(|| super::lower::DEFAULT_NETWORK.to_string())
                    })
                    .unwrap_or_else(|| v.vpc_id().unwrap_or_default().to_string())
            })
            .unwrap_or_default())
    }

    /// Every security group `filter` matches, page by page.
    async fn describe_groups(&self, filter: Filter) -> Result<Vec<SecurityGroup>, ProviderError> {
        let pages: Vec<_> = self
            .ec2
            .describe_security_groups()
            .filters(filter)
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        pages.into_iter().map(|g| g.map_err(failed)).collect()
    }

    async fn security_groups(&self, filter: Filter) -> Result<Vec<Found>, ProviderError> {
        let mut out = Vec::new();
        for group in self.describe_groups(filter).await? {
            let tags = tags::of(Some(group.tags()));
            let Some(name) = name_of(&tags).or_else(|| group.group_name().map(str::to_string))
            else {
                continue;
            };
            let vpc = self
                .vpcs_any(
                    Filter::builder()
                        .name("vpc-id")
                        .values(group.vpc_id().unwrap_or_default())
                        .build(),
                )
                .await?;
            out.push(Found::plain(
                kinds::SECURITY_GROUP,
                name,
                group.group_id().unwrap_or_default().to_string(),
                tags,
                object(json!({ field::VPC: vpc, field::INGRESS: ingress(&group) })),
            ));
        }
        Ok(out)
    }

    async fn internet_gateways(&self, filter: Filter) -> Result<Vec<Found>, ProviderError> {
        let pages: Vec<_> = self
            .ec2
            .describe_internet_gateways()
            .filters(filter)
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        let mut out = Vec::new();
        for gateway in pages {
            let gateway = gateway.map_err(failed)?;
            let tags = tags::of(Some(gateway.tags()));
            let Some(name) = name_of(&tags) else { continue };
            let attached = gateway.attachments().first().and_then(|a| a.vpc_id());
            let vpc = match attached {
                Some(id) => Value::from(
                    self.vpcs_any(Filter::builder().name("vpc-id").values(id).build())
                        .await?,
                ),
                None => Value::Null,
            };
            let id = gateway.internet_gateway_id().unwrap_or_default();
            let route = match attached {
                Some(vpc) => self.routes_to(vpc, id).await?,
                None => false,
            };
            out.push(Found::plain(
                kinds::INTERNET_GATEWAY,
                name,
                gateway
                    .internet_gateway_id()
                    .unwrap_or_default()
                    .to_string(),
                tags,
                object(json!({ field::VPC: vpc, field::DEFAULT_ROUTE: route })),
            ));
        }
        Ok(out)
    }

    async fn key_pairs(&self, filter: Filter) -> Result<Vec<Found>, ProviderError> {
        let out = self
            .ec2
            .describe_key_pairs()
            .filters(filter)
            .include_public_key(true)
            .send()
            .await
            .map_err(failed)?;
        let mut found = Vec::new();
        for key in out.key_pairs() {
            let tags = tags::of(Some(key.tags()));
            let name = name_of(&tags)
                .or_else(|| key.key_name().map(str::to_string))
                .unwrap_or_default();
            // EC2 gives the key back with a newline, or (some emulators) not at all: then
            // what the mark says it was made from.
            let public_key = match key.public_key() {
                Some(k) => Value::from(k.trim()),
                None => tags::owner_mark(&tags)
                    .and_then(|m| match m.spec {
                        crate::plan::model::spec::Spec::Object(o) => {
                            o.fields.get(field::PUBLIC_KEY).cloned()
                        }
                        _ => None,
                    })
                    .unwrap_or(Value::Null),
            };
            found.push(Found::plain(
                kinds::KEY_PAIR,
                name,
                key.key_pair_id().unwrap_or_default().to_string(),
                tags,
                object(json!({ field::PUBLIC_KEY: public_key })),
            ));
        }
        Ok(found)
    }

    /// Instances that are not gone or going, with their disks and their network's name.
    pub async fn instances(&self, mut filters: Vec<Filter>) -> Result<Vec<Found>, ProviderError> {
        filters.push(
            Filter::builder()
                .name("instance-state-name")
                .set_values(Some(
                    ["pending", "running", "stopping", "stopped"]
                        .map(String::from)
                        .to_vec(),
                ))
                .build(),
        );
        let pages: Vec<_> = self
            .ec2
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .items()
            .send()
            .collect()
            .await;
        let mut instances = Vec::new();
        for reservation in pages {
            instances.extend(reservation.map_err(failed)?.instances().iter().cloned());
        }
        let groups = self.group_names(&instances).await?;
        let mut out = Vec::new();
        for instance in instances {
            let tags = tags::of(Some(instance.tags()));
            let Some(name) = name_of(&tags) else { continue };
            out.push(self.read_instance(name, tags, &instance, &groups).await?);
        }
        Ok(out)
    }

    /// The names of the security groups `instances` are in, by id, in one call; `None` for a
    /// VPC's own default group.
    async fn group_names(
        &self,
        instances: &[Instance],
    ) -> Result<BTreeMap<String, Option<String>>, ProviderError> {
        let mut ids: Vec<String> = instances
            .iter()
            .flat_map(|i| i.security_groups())
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        ids.sort();
        ids.dedup();
        let mut names = BTreeMap::new();
        if ids.is_empty() {
            return Ok(names);
        }
        let filter = Filter::builder()
            .name("group-id")
            .set_values(Some(ids))
            .build();
        for group in self.describe_groups(filter).await? {
            let tagged = name_of(&tags::of(Some(group.tags())));
            let name = match (tagged, group.group_name()) {
                (Some(name), _) => Some(name),
                (None, Some("default")) => None,
                (None, other) => other.map(str::to_string),
            };
            names.insert(group.group_id().unwrap_or_default().to_string(), name);
        }
        Ok(names)
    }

    async fn read_instance(
        &self,
        name: String,
        tags: Tags,
        instance: &Instance,
        group_names: &BTreeMap<String, Option<String>>,
    ) -> Result<Found, ProviderError> {
        let mark = tags::owner_mark(&tags);
        let marked = |path: &str| -> Option<Value> {
            match &mark.as_ref()?.spec {
                crate::plan::model::spec::Spec::Object(o) => o.fields.get(path).cloned(),
                _ => None,
            }
        };
        let live_type = instance
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default();
        let pending_type = tags
            .get(tags::PENDING_TYPE)
            .filter(|t| **t != live_type)
            .cloned();
        let image_id = instance.image_id().unwrap_or_default().to_string();
        // The plan names an AMI by name or id: what it resolved to is kept beside it.
        let image = match (tags.get(tags::IMAGE_ID), marked(field::IMAGE)) {
            (Some(id), Some(named)) if *id == image_id => named,
            _ => Value::from(image_id),
        };
        let network = match instance.subnet_id() {
            Some(id) => {
                let subnet = self
                    .subnets(vec![Filter::builder().name("subnet-id").values(id).build()])
                    .await?;
                subnet
                    .first()
                    .map_or(Value::from(id), |s| Value::from(s.name.clone()))
            }
            None => Value::from(super::lower::DEFAULT_NETWORK),
        };
        let state = instance.state().and_then(|s| s.name()).cloned();
        let running = matches!(
            state,
            Some(InstanceStateName::Running | InstanceStateName::Pending)
        );
        let mut fields = BTreeMap::new();
        fields.insert(
            field::INSTANCE_TYPE.to_string(),
            Value::from(pending_type.clone().unwrap_or(live_type.clone())),
        );
        fields.insert(field::IMAGE.to_string(), image);
        // The groups it is in besides its network's own (and a VPC's default group).
        let mut groups: Vec<&str> = instance
            .security_groups()
            .iter()
            .filter_map(|g| group_names.get(g.group_id()?)?.as_deref())
            .filter(|g| Some(*g) != network.as_str().filter(|n| *n != DEFAULT_NETWORK))
            .collect();
        groups.sort();
        groups.dedup();
        if !groups.is_empty() {
            fields.insert(field::SECURITY_GROUPS.to_string(), Value::from(groups));
        }
        fields.insert(field::NETWORK.to_string(), network);
        // Every instance has a private address: it is the plan's only when the plan set it.
        if marked(field::PRIVATE_IP).is_some() {
            fields.insert(
                field::PRIVATE_IP.to_string(),
                Value::from(instance.private_ip_address()),
            );
        }
        if let Some(key) = instance.key_name() {
            fields.insert(field::KEY_NAME.to_string(), Value::from(key));
        }
        // User data is read back only at a cost (one call per instance, the secret with it):
        // its digest is the mark's.
        if let Some(digest) = marked(field::USER_DATA_SHA256) {
            fields.insert(field::USER_DATA_SHA256.to_string(), digest);
        }
        fields.insert(
            field::DISKS.to_string(),
            Value::from(self.disks_of(instance).await?),
        );
        fields.insert(field::RUNNING.to_string(), Value::from(running));
        Ok(Found {
            kind: kinds::INSTANCE,
            name,
            id: instance.instance_id().unwrap_or_default().to_string(),
            tags,
            fields,
            active: running,
            running_type: pending_type.as_ref().map(|_| live_type),
            pending_type,
            addresses: (
                instance.private_ip_address().map(str::to_string),
                instance.public_ip_address().map(str::to_string),
            ),
        })
    }

    /// An instance's EBS volumes as its spec lists them: the root volume first, then the others
    /// by device, each with its name in the plan and its size.
    async fn disks_of(&self, instance: &Instance) -> Result<Vec<Value>, ProviderError> {
        let devices = super::instances::volumes_by_device(instance);
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        // A volume a killed run did not name yet is the disk its mark has at its place.
        let marked: Vec<String> = tags::owner_mark(&tags::of(Some(instance.tags())))
            .map(|m| {
                super::rules::disks(&m.spec)
                    .into_iter()
                    .map(|d| d.name)
                    .collect()
            })
            .unwrap_or_default();
        let ids: Vec<String> = devices.iter().map(|(_, volume)| volume.clone()).collect();
        let out = self
            .ec2
            .describe_volumes()
            .set_volume_ids(Some(ids))
            .send()
            .await
            .map_err(failed)?;
        let mut disks = Vec::new();
        for (index, (device, id)) in devices.into_iter().enumerate() {
            let Some(volume) = out
                .volumes()
                .iter()
                .find(|v| v.volume_id() == Some(id.as_str()))
            else {
                continue;
            };
            let tags = tags::of(Some(volume.tags()));
            let name = tags
                .get(tags::NAME)
                .cloned()
                .or_else(|| marked.get(index).cloned())
                .unwrap_or(device);
            disks.push(json!({
                "name": name,
                "size_gib": volume.size().unwrap_or_default(),
                "type": volume.volume_type().map_or("gp3", |t| t.as_str()),
            }));
        }
        Ok(disks)
    }
}

/// A security group's ingress rules as the plan writes them (`all 10.0.0.0/24`,
/// `tcp/22 0.0.0.0/0`), sorted.
pub fn ingress(group: &SecurityGroup) -> Vec<String> {
    let mut rules = Vec::new();
    for permission in group.ip_permissions() {
        let what = match (
            permission.ip_protocol(),
            permission.from_port(),
            permission.to_port(),
        ) {
            (Some("-1"), ..) | (None, ..) => "all".to_string(),
            // Every ICMP type and code.
            (Some("icmp"), None | Some(-1), None | Some(-1)) => "icmp".to_string(),
            (Some(proto), Some(from), Some(to)) if from == to => format!("{proto}/{from}"),
            (Some(proto), Some(from), Some(to)) => format!("{proto}/{from}-{to}"),
            (Some(proto), ..) => proto.to_string(),
        };
        for range in permission.ip_ranges() {
            if let Some(cidr) = range.cidr_ip() {
                rules.push(format!("{what} {cidr}"));
            }
        }
    }
    rules.sort();
    rules
}

fn object(value: Value) -> BTreeMap<String, Value> {
    match value {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}
