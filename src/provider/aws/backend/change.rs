//! Making, changing and deleting EC2 resources. Each is tagged as EC2 makes it, so that a run
//! killed right after leaves it marked; what EC2 finishes later (an instance running, a volume
//! available, an instance gone) is waited for, bounded.

use std::time::Duration;

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    AttributeBooleanValue, AttributeValue, BlockDeviceMapping, EbsBlockDevice,
    EbsInstanceBlockDeviceSpecification, Filter, InstanceBlockDeviceMappingSpecification,
    InstanceStateName, InstanceType, IpPermission, IpRange, ResourceType, VolumeType,
};
use base64::Engine;
use serde_json::Value;

use super::found::Found;
use super::lower::{field, DEFAULT_NETWORK, USER_DATA};
use super::rules::{disk_changes, disks};
use super::tags::{self, Tags};
use super::{code, done, failed, poll, AwsProvider};
use crate::plan::model::spec::{ObjectSpec, ResourceId, Spec};
use crate::provider::aws::kinds;
use crate::provider::{Done, Owner, ProviderError};

/// How long an instance may take to run, stop or go.
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long what was just made may take to be listed.
const LISTED_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a network's parts may stay in use after their last instance went (its network
/// interfaces are released after it is terminated).
const IN_USE_TIMEOUT: Duration = Duration::from_secs(300);
/// The devices extra disks attach at, in order.
const DEVICES: &str = "fghijklmnop";

fn object(spec: &Spec) -> Result<&ObjectSpec, ProviderError> {
    match spec {
        Spec::Object(object) => Ok(object),
        other => Err(ProviderError::Invalid(format!(
            "{} is not an AWS resource",
            other.id()
        ))),
    }
}

fn text<'a>(object: &'a ObjectSpec, path: &str) -> Option<&'a str> {
    object.fields.get(path).and_then(Value::as_str)
}

fn marked(spec: &Spec, owner: &Owner, created: Option<String>) -> Result<Tags, ProviderError> {
    let id = spec.id();
    tags::mark(spec, owner, &id.name, created).map_err(|e| ProviderError::backend(&id, e))
}

impl AwsProvider {
    /// EC2's id of the resource of `kind` called `name`, the plan's own first; the error names
    /// what is missing.
    async fn id_of(
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
                    .id_of(
                        kinds::VPC,
                        text(object, field::VPC).unwrap_or_default(),
                        &owner.plan,
                    )
                    .await?;
                let made = self
                    .ec2
                    .create_security_group()
                    .group_name(format!("{}-{}", owner.plan, id.name))
                    .description(format!(
                        "siteplan: plan {}, network {}",
                        owner.plan, id.name
                    ))
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

    /// An instance, with its disks, tagged as it is launched; stopped after, when the plan
    /// says it does not run (EC2 launches only running instances).
    async fn launch(
        &self,
        spec: &Spec,
        object: &ObjectSpec,
        owner: &Owner,
        tags: Tags,
    ) -> Result<Done, ProviderError> {
        let id = spec.id();
        let image = text(object, field::IMAGE).unwrap_or_default();
        let ami = self
            .ami(image)
            .await
            .map_err(|e| ProviderError::backend(&id, e))?;
        let mut tags = tags;
        tags.insert(tags::IMAGE_ID.into(), ami.id.clone());
        let disks = disks(spec);
        let mut mappings = Vec::new();
        for (i, disk) in disks.iter().enumerate() {
            let device = match i {
                0 => ami.root_device.clone(),
                _ => device(i).ok_or_else(|| {
                    ProviderError::backend(&id, "more disks than EC2 devices here (12)")
                })?,
            };
            mappings.push(
                BlockDeviceMapping::builder()
                    .device_name(device)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(disk.size_gib as i32)
                            .volume_type(VolumeType::from(disk.kind.as_str()))
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            );
        }
        let volume_tags: Tags = [
            (tags::PLAN.to_string(), owner.plan.clone()),
            (tags::DISK_OF.to_string(), id.name.clone()),
        ]
        .into_iter()
        .collect();
        let mut run = self
            .ec2
            .run_instances()
            .image_id(&ami.id)
            .instance_type(InstanceType::from(
                text(object, field::INSTANCE_TYPE).unwrap_or("t3.micro"),
            ))
            .min_count(1)
            .max_count(1)
            .set_block_device_mappings(Some(mappings))
            .tag_specifications(tags::on_create(ResourceType::Instance, &tags))
            .tag_specifications(tags::on_create(ResourceType::Volume, &volume_tags));
        let network = text(object, field::NETWORK).unwrap_or(DEFAULT_NETWORK);
        if network != DEFAULT_NETWORK {
            run = run
                .subnet_id(self.id_of(kinds::SUBNET, network, &owner.plan).await?)
                .security_group_ids(
                    self.id_of(kinds::SECURITY_GROUP, network, &owner.plan)
                        .await?,
                );
        }
        if let Some(ip) = text(object, field::PRIVATE_IP) {
            run = run.private_ip_address(ip);
        }
        if let Some(key) = text(object, field::KEY_NAME) {
            run = run.key_name(key);
        }
        if let Some(data) = object.secret_data.get(USER_DATA) {
            run = run.user_data(base64::engine::general_purpose::STANDARD.encode(data));
        }
        let made = run
            .send()
            .await
            .map_err(|e| ProviderError::backend(&id, failed(e)))?;
        let instance = made
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .unwrap_or_default()
            .to_string();
        crate::provider::crashpoint::point("instance launched");
        let running = self
            .wait_state(&instance, InstanceStateName::Running)
            .await?;
        self.name_disks(
            &running,
            &disks.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
        )
        .await?;
        crate::provider::crashpoint::point("instance disks named");
        if !spec.runs() {
            self.stop(&instance, false).await?;
        }
        crate::provider::crashpoint::point("instance created");
        Ok(done(id, format!("created ({instance})")))
    }

    /// Names the volumes of an instance that have no name yet, after its disks in `spec`.
    async fn name_unnamed_disks(&self, instance: &str, spec: &Spec) -> Result<(), ProviderError> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .map_err(failed)?;
        let Some(found) = out.reservations().iter().flat_map(|r| r.instances()).next() else {
            return Ok(());
        };
        let names: Vec<String> = disks(spec).into_iter().map(|d| d.name).collect();
        let ids: Vec<String> = found
            .block_device_mappings()
            .iter()
            .filter_map(|m| m.ebs()?.volume_id().map(str::to_string))
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let volumes = self
            .ec2
            .describe_volumes()
            .set_volume_ids(Some(ids))
            .send()
            .await
            .map_err(failed)?;
        let unnamed = volumes
            .volumes()
            .iter()
            .any(|v| !tags::of(Some(v.tags())).contains_key(tags::NAME));
        if unnamed {
            self.name_disks(found, &names).await?;
        }
        Ok(())
    }

    /// Names each of an instance's volumes after its disk in the plan, in device order.
    async fn name_disks(
        &self,
        instance: &aws_sdk_ec2::types::Instance,
        names: &[String],
    ) -> Result<(), ProviderError> {
        let root = instance.root_device_name().unwrap_or_default();
        let mut devices: Vec<(bool, String, String)> = instance
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                Some((
                    m.device_name()? != root,
                    m.device_name()?.to_string(),
                    m.ebs()?.volume_id()?.to_string(),
                ))
            })
            .collect();
        devices.sort();
        for ((_, _, volume), name) in devices.iter().zip(names) {
            self.ec2
                .create_tags()
                .resources(volume)
                .tags(
                    aws_sdk_ec2::types::Tag::builder()
                        .key(tags::NAME)
                        .value(name)
                        .build(),
                )
                .send()
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// An AMI by id (`ami-…`) or by name (the newest of that name).
    async fn ami(&self, image: &str) -> Result<Ami, String> {
        let mut call = self.ec2.describe_images();
        call = if image.starts_with("ami-") {
            call.image_ids(image)
        } else {
            call.filters(Filter::builder().name("name").values(image).build())
        };
        let out = call.send().await.map_err(|e| failed(e).to_string())?;
        let newest = out
            .images()
            .iter()
            .max_by_key(|i| i.creation_date().unwrap_or_default().to_string())
            .ok_or_else(|| format!("no AMI `{image}` in the region (an AMI's id or name)"))?;
        Ok(Ami {
            id: newest.image_id().unwrap_or_default().to_string(),
            root_device: newest.root_device_name().unwrap_or("/dev/xvda").to_string(),
        })
    }

    /// Waits until the instance is in `state`, and returns it so.
    pub(super) async fn wait_state(
        &self,
        instance: &str,
        state: InstanceStateName,
    ) -> Result<aws_sdk_ec2::types::Instance, ProviderError> {
        poll(
            &format!("instance {instance} to be {}", state.as_str()),
            INSTANCE_TIMEOUT,
            || async {
                let out = self
                    .ec2
                    .describe_instances()
                    .instance_ids(instance)
                    .send()
                    .await;
                let out = match out {
                    Ok(out) => out,
                    // Eventual consistency: a new instance may not be listed yet.
                    Err(e) if code(&e).as_deref() == Some("InvalidInstanceID.NotFound") => {
                        return Ok(None)
                    }
                    Err(e) => return Err(failed(e)),
                };
                let found = out
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .find(|i| i.instance_id() == Some(instance))
                    .cloned();
                Ok(match found {
                    Some(i) if i.state().and_then(|s| s.name()) == Some(&state) => Some(i),
                    None if state == InstanceStateName::Terminated => {
                        Some(aws_sdk_ec2::types::Instance::builder().build())
                    }
                    _ => None,
                })
            },
        )
        .await
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
                // Disks a killed run left unnamed get their names (the mark has them).
                self.name_unnamed_disks(&found.id, spec).await?;
                if let Some((grown, added)) = disk_changes(&Spec::Object(have.clone()), spec) {
                    self.grow_and_add(found, &have, spec, &grown, &added)
                        .await?;
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

    /// Grows the disks at `grown` and attaches `added` ones, each a new volume in the
    /// instance's zone, deleted with it.
    async fn grow_and_add(
        &self,
        found: &Found,
        have: &ObjectSpec,
        want: &Spec,
        grown: &[usize],
        added: &[super::rules::Disk],
    ) -> Result<(), ProviderError> {
        let wanted = disks(want);
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(&found.id)
            .send()
            .await
            .map_err(failed)?;
        let Some(instance) = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned()
        else {
            return Err(ProviderError::NotFound(ResourceId::object(
                kinds::INSTANCE,
                &found.name,
            )));
        };
        let root = instance.root_device_name().unwrap_or_default().to_string();
        let mut devices: Vec<(bool, String, String)> = instance
            .block_device_mappings()
            .iter()
            .filter_map(|m| {
                Some((
                    m.device_name()? != root,
                    m.device_name()?.to_string(),
                    m.ebs()?.volume_id()?.to_string(),
                ))
            })
            .collect();
        devices.sort();
        for &i in grown {
            let (Some((_, _, volume)), Some(disk)) = (devices.get(i), wanted.get(i)) else {
                continue;
            };
            self.ec2
                .modify_volume()
                .volume_id(volume)
                .size(disk.size_gib as i32)
                .volume_type(VolumeType::from(disk.kind.as_str()))
                .send()
                .await
                .map_err(failed)?;
        }
        let zone = instance
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or(&self.zone)
            .to_string();
        let plan = tags::owner_mark(&found.tags)
            .map(|m| m.plan)
            .unwrap_or_default();
        let _ = have;
        for (n, disk) in added.iter().enumerate() {
            let index = devices.len() + n;
            let device = device(index).ok_or_else(|| {
                ProviderError::backend(
                    &ResourceId::object(kinds::INSTANCE, &found.name),
                    "more disks than EC2 devices here (12)",
                )
            })?;
            let volume_tags: Tags = [
                (tags::NAME.to_string(), disk.name.clone()),
                (tags::PLAN.to_string(), plan.clone()),
                (tags::DISK_OF.to_string(), found.name.clone()),
            ]
            .into_iter()
            .collect();
            // One a killed run made for this disk and did not attach is this disk's.
            let volume = match self.left_volume(&volume_tags).await? {
                Some(volume) => volume,
                None => {
                    let made = self
                        .ec2
                        .create_volume()
                        .availability_zone(&zone)
                        .size(disk.size_gib as i32)
                        .volume_type(VolumeType::from(disk.kind.as_str()))
                        .tag_specifications(tags::on_create(ResourceType::Volume, &volume_tags))
                        .send()
                        .await
                        .map_err(failed)?;
                    made.volume_id().unwrap_or_default().to_string()
                }
            };
            crate::provider::crashpoint::point("volume made");
            poll(
                &format!("volume {volume} to be available"),
                INSTANCE_TIMEOUT,
                || async {
                    let out = self
                        .ec2
                        .describe_volumes()
                        .volume_ids(&volume)
                        .send()
                        .await
                        .map_err(failed)?;
                    Ok(out
                        .volumes()
                        .first()
                        .filter(|v| v.state().map(|s| s.as_str()) == Some("available"))
                        .map(|_| ()))
                },
            )
            .await?;
            self.ec2
                .attach_volume()
                .instance_id(&found.id)
                .volume_id(&volume)
                .device(&device)
                .send()
                .await
                .map_err(failed)?;
            crate::provider::crashpoint::point("volume attached");
            self.ec2
                .modify_instance_attribute()
                .instance_id(&found.id)
                .block_device_mappings(
                    InstanceBlockDeviceMappingSpecification::builder()
                        .device_name(&device)
                        .ebs(
                            EbsInstanceBlockDeviceSpecification::builder()
                                .volume_id(&volume)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    /// An unattached volume with exactly these tags' values: a disk a killed run made.
    async fn left_volume(&self, wanted: &Tags) -> Result<Option<String>, ProviderError> {
        let mut call = self
            .ec2
            .describe_volumes()
            .filters(Filter::builder().name("status").values("available").build());
        for (key, value) in wanted {
            call = call.filters(
                Filter::builder()
                    .name(format!("tag:{key}"))
                    .values(value)
                    .build(),
            );
        }
        let out = call.send().await.map_err(failed)?;
        Ok(out
            .volumes()
            .first()
            .and_then(|v| v.volume_id())
            .map(str::to_string))
    }

    pub(super) async fn set_type(&self, instance: &str, kind: &str) -> Result<(), ProviderError> {
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance)
            .instance_type(AttributeValue::builder().value(kind).build())
            .send()
            .await
            .map_err(failed)?;
        self.ec2
            .delete_tags()
            .resources(instance)
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(tags::PENDING_TYPE)
                    .build(),
            )
            .send()
            .await
            .map_err(failed)?;
        Ok(())
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

struct Ami {
    id: String,
    root_device: String,
}

/// The device an instance's `index`th disk attaches at (the first is the AMI's root device).
fn device(index: usize) -> Option<String> {
    DEVICES
        .chars()
        .nth(index.checked_sub(1)?)
        .map(|c| format!("/dev/sd{c}"))
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
        None => builder.ip_protocol("-1").build(),
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
    fn devices_follow_the_root() {
        assert_eq!(device(0), None);
        assert_eq!(device(1).as_deref(), Some("/dev/sdf"));
        assert_eq!(device(11).as_deref(), Some("/dev/sdp"));
        assert_eq!(device(12), None);
    }

    #[test]
    fn rules_read_as_ec2_takes_them() {
        let all = permission("all 10.0.0.0/24").unwrap();
        assert_eq!(all.ip_protocol(), Some("-1"));
        let ssh = permission("tcp/22 0.0.0.0/0").unwrap();
        assert_eq!((ssh.from_port(), ssh.to_port()), (Some(22), Some(22)));
        assert!(permission("tcp/x 0.0.0.0/0").is_none());
    }
}
