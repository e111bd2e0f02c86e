//! Lab snapshots on EC2: each instance's volumes snapshotted together by one `CreateSnapshots`
//! call, which EC2 makes crash-consistent across them, tagged with the lab snapshot's mark.
//! EC2 cannot pause an instance, so the lab's instances are snapshotted one after another while
//! they run (each crash-consistent in itself, the lab not to the instant: the outcome says no VM
//! was paused) and a snapshot holds disks, never memory. A revert stops the instance, puts a
//! volume made from each snapshot where the snapshot's volume was, deletes the volumes it
//! replaces, and leaves the instance stopped; the lab's resume starts the ones that ran.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, InstanceSpecification, ResourceType, Snapshot, Tag};

use super::found::Found;
use super::instances::volumes_by_device;
use super::lower::field;
use super::tags::{self, Tags};
use super::{failed, poll, AwsProvider};
use crate::provider::aws::kinds;
use crate::provider::capability::LabSnapshots;
use crate::provider::snapshot::{FoundSnapshots, SnapshotMark, VmSnapshot};
use crate::provider::{Owner, ProviderError, ResourceId};

pub(super) const SNAPSHOT: &str = "siteplan:snapshot";
const VM: &str = "siteplan:vm";
const DEVICE: &str = "siteplan:device";
/// The instance type it ran with, which a revert gives it again.
const INSTANCE_TYPE: &str = "siteplan:instance-type";
const MARK_PREFIX: &str = "siteplan:snapmark-";
/// How long EC2 may take to complete a snapshot, or make a volume of one.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(3600);

fn mark_tags(mark: &SnapshotMark, vm: &str) -> Tags {
    let json = serde_json::to_string(mark).unwrap_or_default();
    let mut tags = tags::pieces(MARK_PREFIX, &json);
    tags.insert(tags::NAME.into(), format!("{vm} {}", mark.name));
    tags.insert(tags::PLAN.into(), mark.plan.clone());
    tags.insert(SNAPSHOT.into(), mark.name.clone());
    tags.insert(VM.into(), vm.into());
    tags
}

fn mark_of(tags: &Tags) -> Option<SnapshotMark> {
    serde_json::from_str(&tags::joined(tags, MARK_PREFIX)).ok()
}

impl AwsProvider {
    /// Deletes the lab snapshots of a VM that goes: they are of no use without it.
    pub(super) async fn delete_vm_snapshots(
        &self,
        plan: &str,
        vm: &str,
    ) -> Result<(), ProviderError> {
        let snapshots = self.lab_snapshots(plan, Some(vm), None).await?;
        self.delete_snapshots(&snapshots).await
    }

    /// The snapshots of `plan`'s lab snapshots, of one VM and name when given.
    pub(super) async fn lab_snapshots(
        &self,
        plan: &str,
        vm: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<Snapshot>, ProviderError> {
        let tag = |key: &str, value: &str| {
            Filter::builder()
                .name(format!("tag:{key}"))
                .values(value)
                .build()
        };
        let mut call = self
            .ec2
            .describe_snapshots()
            .owner_ids("self")
            .filters(tag(tags::PLAN, plan));
        if let Some(vm) = vm {
            call = call.filters(tag(VM, vm));
        }
        if let Some(name) = name {
            call = call.filters(tag(SNAPSHOT, name));
        }
        let pages: Vec<_> = call.into_paginator().items().send().collect().await;
        pages
            .into_iter()
            .map(|s| s.map_err(failed))
            .filter(|s| {
                s.as_ref()
                    .map_or(true, |s| tags::of(Some(s.tags())).contains_key(SNAPSHOT))
            })
            .collect()
    }

    /// The instance `vm`, owned by `owner`: what was found of it, its zone, and its volumes
    /// by device.
    async fn instance_volumes(
        &self,
        vm: &str,
        owner: &Owner,
    ) -> Result<(Found, String, Vec<(String, String)>), ProviderError> {
        let id = ResourceId::object(kinds::INSTANCE, vm);
        let found = self.owned(&id, owner).await?;
        let instance = self
            .describe_instance(&found.id)
            .await?
            .ok_or(ProviderError::NotFound(id))?;
        let zone = instance
            .placement()
            .and_then(|p| p.availability_zone())
            .unwrap_or(&self.zone)
            .to_string();
        Ok((found, zone, volumes_by_device(&instance)))
    }

    async fn delete_snapshots(&self, snapshots: &[Snapshot]) -> Result<(), ProviderError> {
        for snapshot in snapshots {
            self.ec2
                .delete_snapshot()
                .snapshot_id(snapshot.snapshot_id().unwrap_or_default())
                .send()
                .await
                .map_err(failed)?;
        }
        Ok(())
    }

    async fn wait_volume(&self, volume: &str, state: &str) -> Result<(), ProviderError> {
        poll(
            &format!("volume {volume} to be {state}"),
            SNAPSHOT_TIMEOUT,
            || async {
                let out = self
                    .ec2
                    .describe_volumes()
                    .volume_ids(volume)
                    .send()
                    .await
                    .map_err(failed)?;
                Ok(out
                    .volumes()
                    .first()
                    .filter(|v| v.state().map(|s| s.as_str()) == Some(state))
                    .map(|_| ()))
            },
        )
        .await
    }
}

#[async_trait]
impl LabSnapshots for AwsProvider {
    async fn snapshot_refusals(
        &self,
        vms: &[String],
        owner: &Owner,
    ) -> Result<Vec<String>, ProviderError> {
        let mut refused = Vec::new();
        for vm in vms {
            let (_, _, volumes) = self.instance_volumes(vm, owner).await?;
            if volumes.is_empty() {
                refused.push(format!("vm {vm}: it has no EBS volume to snapshot"));
            }
        }
        Ok(refused)
    }

    /// EC2 cannot pause an instance: nothing is paused, and each instance's volumes are
    /// snapshotted together, crash-consistent.
    async fn pause(&self, _vm: &str, _owner: &Owner) -> Result<bool, ProviderError> {
        Ok(false)
    }

    /// Starts an instance a revert left stopped.
    async fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError> {
        let found = self
            .owned(&ResourceId::object(kinds::INSTANCE, vm), owner)
            .await?;
        if !found.active {
            self.start(&found.id).await?;
        }
        Ok(())
    }

    async fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let (found, _, volumes) = self.instance_volumes(vm, owner).await?;
        let mut tags = mark_tags(mark, vm);
        let running_type = found.running_type.clone().or_else(|| {
            super::change::text(&found.spec(), field::INSTANCE_TYPE).map(str::to_string)
        });
        if let Some(kind) = running_type {
            tags.insert(INSTANCE_TYPE.into(), kind);
        }
        let instance = found.id;
        let made = self
            .ec2
            .create_snapshots()
            .instance_specification(
                InstanceSpecification::builder()
                    .instance_id(&instance)
                    .exclude_boot_volume(false)
                    .build(),
            )
            .description(format!("siteplan lab snapshot {} of {vm}", mark.name))
            .tag_specifications(tags::on_create(ResourceType::Snapshot, &tags))
            .send()
            .await
            .map_err(failed)?;
        let mut ids = Vec::new();
        for info in made.snapshots() {
            let (Some(snapshot), Some(volume)) = (info.snapshot_id(), info.volume_id()) else {
                continue;
            };
            // Which device it was: a revert puts the volume made of it back there.
            if let Some((device, _)) = volumes.iter().find(|(_, v)| v == volume) {
                self.ec2
                    .create_tags()
                    .resources(snapshot)
                    .tags(Tag::builder().key(DEVICE).value(device).build())
                    .send()
                    .await
                    .map_err(failed)?;
            }
            ids.push(snapshot.to_string());
        }
        // Complete, or it is no snapshot to revert to.
        for id in &ids {
            poll(
                &format!("snapshot {id} to complete"),
                SNAPSHOT_TIMEOUT,
                || async {
                    let out = self
                        .ec2
                        .describe_snapshots()
                        .snapshot_ids(id)
                        .send()
                        .await
                        .map_err(failed)?;
                    let state = out
                        .snapshots()
                        .first()
                        .and_then(|s| s.state())
                        .map(|s| s.as_str().to_string());
                    match state.as_deref() {
                        Some("completed") => Ok(Some(())),
                        Some("error") => {
                            Err(ProviderError::Connection(format!("snapshot {id} failed")))
                        }
                        _ => Ok(None),
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn snapshots(&self, plan: &str) -> Result<FoundSnapshots, ProviderError> {
        let mut found = FoundSnapshots::default();
        for snapshot in self.lab_snapshots(plan, None, None).await? {
            let tags = tags::of(Some(snapshot.tags()));
            let (Some(vm), Some(mark)) = (tags.get(VM), mark_of(&tags)) else {
                continue;
            };
            // One per VM, however many volumes it has.
            if found
                .marked
                .iter()
                .any(|s| s.vm == *vm && s.mark.name == mark.name)
            {
                continue;
            }
            found.marked.push(VmSnapshot {
                vm: vm.clone(),
                mark,
                definition: None,
            });
        }
        Ok(found)
    }

    async fn revert_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::INSTANCE, vm);
        let snapshots = self
            .lab_snapshots(&owner.plan, Some(vm), Some(name))
            .await?;
        if snapshots.is_empty() {
            return Err(ProviderError::backend(
                &id,
                format!("has no lab snapshot {name}"),
            ));
        }
        let mut by_device = Vec::new();
        for snapshot in &snapshots {
            let tags = tags::of(Some(snapshot.tags()));
            let device = tags.get(DEVICE).cloned().ok_or_else(|| {
                ProviderError::backend(
                    &id,
                    format!(
                        "snapshot {} does not say which device it was (a run died while \
                         taking it); delete the lab snapshot",
                        snapshot.snapshot_id().unwrap_or_default()
                    ),
                )
            })?;
            by_device.push((device, snapshot.clone()));
        }
        let (found, zone, volumes) = self.instance_volumes(vm, owner).await?;
        let instance = found.id.clone();
        if found.active {
            self.stop(&instance, false).await?;
        }
        // The type it had (a snapshot taken before that was kept does not say).
        let had = snapshots
            .iter()
            .find_map(|s| tags::of(Some(s.tags())).get(INSTANCE_TYPE).cloned());
        let has = found.running_type.clone().or_else(|| {
            super::change::text(&found.spec(), field::INSTANCE_TYPE).map(str::to_string)
        });
        if let Some(had) =
            had.filter(|had| Some(had) != has.as_ref() || found.pending_type.is_some())
        {
            self.set_type(&instance, &had).await?;
        }
        for (device, snapshot) in by_device {
            let old = volumes
                .iter()
                .find(|(d, _)| *d == device)
                .map(|(_, v)| v.clone());
            let mut volume_tags: Tags = [
                (tags::PLAN.to_string(), owner.plan.clone()),
                (tags::DISK_OF.to_string(), vm.to_string()),
            ]
            .into_iter()
            .collect();
            // The new volume is what the old one was: its name and its type.
            let mut kind = None;
            if let Some(old) = &old {
                let out = self
                    .ec2
                    .describe_volumes()
                    .volume_ids(old)
                    .send()
                    .await
                    .map_err(failed)?;
                if let Some(volume) = out.volumes().first() {
                    if let Some(name) = tags::of(Some(volume.tags())).get(tags::NAME) {
                        volume_tags.insert(tags::NAME.into(), name.clone());
                    }
                    kind = volume.volume_type().cloned();
                }
            }
            let made = self
                .ec2
                .create_volume()
                .availability_zone(&zone)
                .snapshot_id(snapshot.snapshot_id().unwrap_or_default())
                .set_volume_type(kind)
                .tag_specifications(tags::on_create(ResourceType::Volume, &volume_tags))
                .send()
                .await
                .map_err(failed)?;
            let new = made.volume_id().unwrap_or_default().to_string();
            self.wait_volume(&new, "available").await?;
            if let Some(old) = &old {
                self.ec2
                    .detach_volume()
                    .volume_id(old)
                    .instance_id(&instance)
                    .send()
                    .await
                    .map_err(failed)?;
                self.wait_volume(old, "available").await?;
            }
            self.attach_for_good(&instance, &new, &device).await?;
            if let Some(old) = &old {
                self.ec2
                    .delete_volume()
                    .volume_id(old)
                    .send()
                    .await
                    .map_err(failed)?;
            }
        }
        // Left stopped: the lab's resume starts it if it ran.
        Ok(())
    }

    async fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError> {
        let snapshots = self
            .lab_snapshots(&owner.plan, Some(vm), Some(name))
            .await?;
        self.delete_snapshots(&snapshots).await?;
        Ok(!snapshots.is_empty())
    }
}
