//! What `plan info` shows of an instance beyond its spec: the size its instance type gives it
//! (EC2's `DescribeInstanceTypes`), its EBS volumes and network interfaces, and its lab
//! snapshots.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::InstanceType;

use super::found::Found;
use super::instances::volumes_by_device;
use super::lower::field;
use super::tags;
use super::{failed, AwsProvider};
use crate::provider::aws::kinds;
use crate::provider::{DiskDetails, NicDetails, ProviderError, VmDetails};

impl AwsProvider {
    pub(super) async fn instance_details(&self, vm: &str) -> Result<VmDetails, ProviderError> {
        let Some(found) = self.find_one(kinds::INSTANCE, vm, None).await? else {
            return Ok(VmDetails::default());
        };
        let Some(instance) = self.describe_instance(&found.id).await? else {
            return Ok(VmDetails::default());
        };
        let mut details = VmDetails::default();
        if let Some(kind) = instance.instance_type() {
            (details.cpus, details.memory_mib) = self.size_of(kind).await?;
        }
        details.disks = self.volume_details(&instance).await?;
        let network = found
            .fields
            .get(field::NETWORK)
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        details.nics = instance
            .network_interfaces()
            .iter()
            .map(|eni| NicDetails {
                network: network.to_string(),
                mac: eni.mac_address().map(str::to_string),
                model: "ena".into(),
            })
            .collect();
        details.lab_snapshots = self.lab_snapshot_names(&found).await?;
        details.snapshots = details.lab_snapshots.clone();
        Ok(details)
    }

    /// The vCPUs and memory (MiB) of an instance type, as EC2 describes it.
    async fn size_of(
        &self,
        kind: &InstanceType,
    ) -> Result<(Option<u64>, Option<u64>), ProviderError> {
        let out = self
            .ec2
            .describe_instance_types()
            .instance_types(kind.clone())
            .send()
            .await
            .map_err(failed)?;
        let Some(info) = out.instance_types().first() else {
            return Ok((None, None));
        };
        let cpus = info
            .v_cpu_info()
            .and_then(|c| c.default_v_cpus())
            .and_then(|n| u64::try_from(n).ok());
        let memory = info
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .and_then(|n| u64::try_from(n).ok());
        Ok((cpus, memory))
    }

    /// Its EBS volumes by device, the root first: name, device, size, type and id.
    async fn volume_details(
        &self,
        instance: &aws_sdk_ec2::types::Instance,
    ) -> Result<Vec<DiskDetails>, ProviderError> {
        let devices = volumes_by_device(instance);
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .ec2
            .describe_volumes()
            .set_volume_ids(Some(devices.iter().map(|(_, v)| v.clone()).collect()))
            .send()
            .await
            .map_err(failed)?;
        Ok(devices
            .into_iter()
            .map(|(device, id)| {
                let volume = out.volumes().iter().find(|v| v.volume_id() == Some(&id));
                let name = volume
                    .and_then(|v| tags::of(Some(v.tags())).get(tags::NAME).cloned())
                    .unwrap_or_else(|| device.clone());
                DiskDetails {
                    name,
                    attached: device,
                    size_bytes: volume
                        .and_then(|v| v.size())
                        .and_then(|gib| u64::try_from(gib).ok())
                        .map(|gib| gib << 30),
                    format: volume
                        .and_then(|v| v.volume_type())
                        .map(|t| t.as_str().to_string()),
                    path: Some(id),
                }
            })
            .collect())
    }

    /// The names of the lab snapshots that hold the instance, of its plan.
    async fn lab_snapshot_names(&self, found: &Found) -> Result<Vec<String>, ProviderError> {
        let Some(plan) = found.tags.get(tags::PLAN) else {
            return Ok(Vec::new());
        };
        let names: BTreeSet<String> = self
            .lab_snapshots(plan, Some(&found.name), None)
            .await?
            .iter()
            .filter_map(|s| {
                tags::of(Some(s.tags()))
                    .get(super::snapshots::SNAPSHOT)
                    .cloned()
            })
            .collect();
        Ok(names.into_iter().collect())
    }
}
