//! Instances: launched with their disks and named, their disks grown and added, their type
//! changed while stopped, and waited for while EC2 finishes what it was asked.

use std::time::Duration;

use aws_sdk_ec2::types::{
    AttributeValue, BlockDeviceMapping, EbsBlockDevice, EbsInstanceBlockDeviceSpecification,
    Filter, Instance, InstanceBlockDeviceMappingSpecification, InstanceStateName, InstanceType,
    ResourceType, VolumeType,
};
use base64::Engine;

use super::change::text;
use super::found::Found;
use super::lower::{field, DEFAULT_NETWORK, USER_DATA};
use super::rules::disks;
use super::tags::{self, Tags};
use super::{code, done, failed, poll, AwsProvider};
use crate::plan::model::spec::{ObjectSpec, ResourceId, Spec};
use crate::provider::aws::kinds;
use crate::provider::{Done, Owner, ProviderError};

/// How long an instance may take to run, stop or go, or a volume to be made.
const INSTANCE_TIMEOUT: Duration = Duration::from_secs(600);
/// The devices extra disks attach at, in order.
const DEVICES: &str = "fghijklmnop";

/// An instance's volumes by device: the root device first, then the others by name, the order
/// its spec lists its disks in.
pub fn volumes_by_device(instance: &Instance) -> Vec<(String, String)> {
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
    devices
        .into_iter()
        .map(|(_, device, volume)| (device, volume))
        .collect()
}

impl AwsProvider {
    /// The instance of that id, if EC2 lists it.
    pub(super) async fn describe_instance(
        &self,
        id: &str,
    ) -> Result<Option<Instance>, ProviderError> {
        let out = self
            .ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(failed)?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .next()
            .cloned())
    }

    /// An instance, with its disks, tagged as it is launched; stopped after, when the plan
    /// says it does not run (EC2 launches only running instances).
    pub(super) async fn launch(
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
            run = run.subnet_id(self.id_of(kinds::SUBNET, network, &owner.plan).await?);
        }
        let groups = self.group_ids(object, &owner.plan).await?;
        if !groups.is_empty() {
            run = run.set_security_group_ids(Some(groups));
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
    pub(super) async fn name_unnamed_disks(
        &self,
        instance: &str,
        spec: &Spec,
    ) -> Result<(), ProviderError> {
        let Some(found) = self.describe_instance(instance).await? else {
            return Ok(());
        };
        let names: Vec<String> = disks(spec).into_iter().map(|d| d.name).collect();
        let ids: Vec<String> = volumes_by_device(&found)
            .into_iter()
            .map(|(_, v)| v)
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
            self.name_disks(&found, &names).await?;
        }
        Ok(())
    }

    /// Names each of an instance's volumes after its disk in the plan, in device order.
    async fn name_disks(
        &self,
        instance: &aws_sdk_ec2::types::Instance,
        names: &[String],
    ) -> Result<(), ProviderError> {
        for ((_, volume), name) in volumes_by_device(instance).iter().zip(names) {
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

    /// Grows the disks at `grown` and attaches `added` ones, each a new volume in the
    /// instance's zone, deleted with it.
    pub(super) async fn grow_and_add(
        &self,
        found: &Found,
        want: &Spec,
        grown: &[usize],
        added: &[super::rules::Disk],
    ) -> Result<(), ProviderError> {
        let wanted = disks(want);
        let Some(instance) = self.describe_instance(&found.id).await? else {
            return Err(ProviderError::NotFound(ResourceId::object(
                kinds::INSTANCE,
                &found.name,
            )));
        };
        let devices = volumes_by_device(&instance);
        for &i in grown {
            let (Some((_, volume)), Some(disk)) = (devices.get(i), wanted.get(i)) else {
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
            self.attach_for_good(&found.id, &volume, &device).await?;
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
}

impl AwsProvider {
    /// Attaches a volume at `device`, to be deleted with the instance, as a launch attaches
    /// its disks.
    pub(super) async fn attach_for_good(
        &self,
        instance: &str,
        volume: &str,
        device: &str,
    ) -> Result<(), ProviderError> {
        self.ec2
            .attach_volume()
            .instance_id(instance)
            .volume_id(volume)
            .device(device)
            .send()
            .await
            .map_err(failed)?;
        crate::provider::crashpoint::point("volume attached");
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance)
            .block_device_mappings(
                InstanceBlockDeviceMappingSpecification::builder()
                    .device_name(device)
                    .ebs(
                        EbsInstanceBlockDeviceSpecification::builder()
                            .volume_id(volume)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    /// Puts a running or stopped instance in these groups, in place; with none, in its VPC's
    /// default group, as EC2 launches it.
    pub(super) async fn set_groups(
        &self,
        instance: &str,
        mut groups: Vec<String>,
    ) -> Result<(), ProviderError> {
        if groups.is_empty() {
            let vpc = self
                .describe_instance(instance)
                .await?
                .and_then(|i| i.vpc_id().map(str::to_string))
                .unwrap_or_default();
            let out = self
                .ec2
                .describe_security_groups()
                .filters(Filter::builder().name("vpc-id").values(vpc).build())
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values("default")
                        .build(),
                )
                .send()
                .await
                .map_err(failed)?;
            groups.extend(
                out.security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(str::to_string)),
            );
        }
        self.ec2
            .modify_instance_attribute()
            .instance_id(instance)
            .set_groups(Some(groups))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
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
}
