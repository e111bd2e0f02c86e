//! Lab snapshots on KubeVirt: each VM's snapshot is a `VirtualMachineSnapshot`
//! (snapshot.kubevirt.io), labelled with the plan and carrying the lab snapshot's mark; a
//! revert is a `VirtualMachineRestore`, which KubeVirt takes only of a stopped VM, so the VM is
//! stopped first and, when it ran, started again and paused for the lab to resume together.
//! Pausing is KubeVirt's `pause` subresource of the instance.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::*;
use crate::provider::snapshot::{FoundSnapshots, SnapshotMark, VmSnapshot};

/// The label naming the VM a snapshot is of, beside the plan's.
const VM_LABEL: &str = "siteplan.io/vm";
/// The annotation holding the lab snapshot's mark.
const MARK: &str = "siteplan.io/snapshot-mark";
/// How long a snapshot, a restore or a pause may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(300);

fn snapshot_api() -> ApiResource {
    ApiResource {
        group: "snapshot.kubevirt.io".into(),
        version: "v1beta1".into(),
        api_version: "snapshot.kubevirt.io/v1beta1".into(),
        kind: "VirtualMachineSnapshot".into(),
        plural: "virtualmachinesnapshots".into(),
    }
}

fn restore_api() -> ApiResource {
    ApiResource {
        kind: "VirtualMachineRestore".into(),
        plural: "virtualmachinerestores".into(),
        ..snapshot_api()
    }
}

/// The object name of `vm`'s snapshot `name`: a lab snapshot's name may hold what a Kubernetes
/// name may not (capitals, `_`), so a digest of it stands in.
fn object_name(vm: &str, name: &str) -> String {
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    format!("{vm}-snapshot-{}", &digest[..10])
}

impl KubevirtProvider {
    /// Deletes the lab snapshots of `vm` that `owner`'s plan took (a VM is deleted with them).
    pub(super) async fn delete_snapshots_of(
        &self,
        vm: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let selector = format!("{PLAN_LABEL}={},{VM_LABEL}={vm}", owner.plan);
        let api = self.snapshots_api();
        let found = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(found) => found,
            // A cluster without KubeVirt's snapshot API has none to delete.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(e) => return Err(ProviderError::backend(&id, Said(&e))),
        };
        for snapshot in found {
            let name = snapshot.metadata.name.unwrap_or_default();
            match api.delete(&name, &Default::default()).await {
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                other => {
                    other.map_err(|e| ProviderError::backend(&id, Said(&e)))?;
                }
            }
        }
        Ok(())
    }

    fn snapshots_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &snapshot_api())
    }

    fn restores_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), &self.namespace, &restore_api())
    }

    /// Waits until `check` holds of the object `name` in `api`, or says what it is waiting for.
    async fn until(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        id: &ResourceId,
        what: &str,
        check: impl Fn(&Value) -> Result<bool, String>,
    ) -> Result<(), ProviderError> {
        let deadline = tokio::time::Instant::now() + SNAPSHOT_TIMEOUT;
        loop {
            let object = api
                .get_opt(name)
                .await
                .map_err(|e| ProviderError::backend(id, Said(&e)))?
                .map(|o| serde_json::to_value(o).unwrap_or_default())
                .unwrap_or_default();
            if check(&object).map_err(|e| ProviderError::backend(id, e))? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::backend(
                    id,
                    format!("{what}: not done after {} s", SNAPSHOT_TIMEOUT.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Asks the instance's `pause` or `unpause` subresource, and waits until KubeVirt says the
    /// VM is (not) paused.
    async fn set_paused(&self, vm: &str, paused: bool) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let action = if paused { "pause" } else { "unpause" };
        let path = format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/{}/virtualmachineinstances/{vm}/{action}",
            self.namespace
        );
        let request = http::Request::put(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(b"{}".to_vec())
            .map_err(|e| ProviderError::backend(&id, e))?;
        self.client
            .request_text(request)
            .await
            .map_err(|e| ProviderError::backend(&id, format!("{action}: {}", Said(&e))))?;
        let want = if paused { "Paused" } else { "Running" };
        self.until(&self.api(kinds::VIRTUAL_MACHINE), vm, &id, action, |live| {
            Ok(live["status"]["printableStatus"] == want)
        })
        .await
    }
}

#[async_trait]
impl capability::LabSnapshots for KubevirtProvider {
    /// KubeVirt snapshots any VM (online when its guest agent can freeze it); nothing refused.
    async fn snapshot_refusals(
        &self,
        vms: &[String],
        owner: &Owner,
    ) -> Result<Vec<String>, ProviderError> {
        for vm in vms {
            self.owned(&ResourceId::object(kinds::VIRTUAL_MACHINE, vm), owner)
                .await?;
        }
        Ok(Vec::new())
    }

    async fn pause(&self, vm: &str, owner: &Owner) -> Result<bool, ProviderError> {
        let live = self
            .owned(&ResourceId::object(kinds::VIRTUAL_MACHINE, vm), owner)
            .await?;
        match live["status"]["printableStatus"].as_str() {
            Some("Running") => {
                self.set_paused(vm, true).await?;
                Ok(true)
            }
            Some("Paused") => Ok(true),
            _ => Ok(false),
        }
    }

    async fn resume(&self, vm: &str, owner: &Owner) -> Result<(), ProviderError> {
        let live = self
            .owned(&ResourceId::object(kinds::VIRTUAL_MACHINE, vm), owner)
            .await?;
        if live["status"]["printableStatus"] == "Paused" {
            self.set_paused(vm, false).await?;
        }
        Ok(())
    }

    async fn create_snapshot(
        &self,
        vm: &str,
        mark: &SnapshotMark,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        self.owned(&id, owner).await?;
        let name = object_name(vm, &mark.name);
        let snapshot: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineSnapshot",
            "metadata": {"name": name, "namespace": self.namespace,
                "labels": {PLAN_LABEL: owner.plan, VM_LABEL: vm},
                "annotations": {MARK: mark.description()}},
            "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm}},
        }))
        .map_err(|e| ProviderError::backend(&id, e))?;
        self.snapshots_api()
            .create(&Default::default(), &snapshot)
            .await
            .map_err(|e| ProviderError::backend(&id, format!("snapshot: {}", Said(&e))))?;
        self.until(&self.snapshots_api(), &name, &id, "the snapshot", |s| {
            if s["status"]["phase"] == "Failed" {
                return Err(format!(
                    "the snapshot failed: {}",
                    s["status"]["error"]["message"]
                        .as_str()
                        .unwrap_or("KubeVirt gave no reason")
                ));
            }
            Ok(s["status"]["readyToUse"] == true)
        })
        .await
    }

    async fn snapshots(&self, plan: &str) -> Result<FoundSnapshots, ProviderError> {
        let list = self
            .snapshots_api()
            .list(&ListParams::default())
            .await
            .map_err(|e| {
                ProviderError::Connection(format!("listing VirtualMachineSnapshots: {}", Said(&e)))
            })?;
        // The plan's VMs: a snapshot of one that a person took is shown as theirs.
        let ours: Vec<String> = self
            .list(kinds::VIRTUAL_MACHINE, plan, Vec::new())
            .await?
            .iter()
            .filter_map(|vm| vm["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        let mut found = FoundSnapshots::default();
        for snapshot in list {
            let snapshot = serde_json::to_value(snapshot).unwrap_or_default();
            let vm = snapshot["spec"]["source"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let mark = snapshot["metadata"]["annotations"][MARK]
                .as_str()
                .and_then(SnapshotMark::from_description);
            match mark {
                Some(mark) if mark.plan == plan => found.marked.push(VmSnapshot {
                    vm,
                    mark,
                    definition: None,
                }),
                Some(_) => {}
                None if ours.contains(&vm) => found.others.push((
                    vm,
                    snapshot["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )),
                None => {}
            }
        }
        Ok(found)
    }

    async fn revert_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let live = self.owned(&id, owner).await?;
        let snapshot_name = object_name(vm, name);
        let snapshot = self
            .snapshots_api()
            .get_opt(&snapshot_name)
            .await
            .map_err(|e| ProviderError::backend(&id, Said(&e)))?
            .ok_or_else(|| ProviderError::backend(&id, format!("has no snapshot `{name}`")))?;
        let was_running = serde_json::to_value(&snapshot).unwrap_or_default()["metadata"]
            ["annotations"][MARK]
            .as_str()
            .and_then(SnapshotMark::from_description)
            .is_some_and(|m| m.was_running);
        // KubeVirt restores a stopped VM only.
        if runs(&live) {
            self.subresource(vm, "stop", serde_json::json!({})).await?;
            self.settle(vm, false, SNAPSHOT_TIMEOUT).await?;
        }
        let restore_name = format!("{snapshot_name}-restore");
        let restore: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "snapshot.kubevirt.io/v1beta1", "kind": "VirtualMachineRestore",
            "metadata": {"name": restore_name, "namespace": self.namespace,
                "labels": {PLAN_LABEL: owner.plan, VM_LABEL: vm}},
            "spec": {"target": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": vm},
                "virtualMachineSnapshotName": snapshot_name},
        }))
        .map_err(|e| ProviderError::backend(&id, e))?;
        let restores = self.restores_api();
        // One a killed revert left is done again.
        let _ = restores.delete(&restore_name, &Default::default()).await;
        self.until(&restores, &restore_name, &id, "the old restore gone", |r| {
            Ok(r.is_null())
        })
        .await?;
        restores
            .create(&Default::default(), &restore)
            .await
            .map_err(|e| ProviderError::backend(&id, format!("restore: {}", Said(&e))))?;
        self.until(&restores, &restore_name, &id, "the restore", |r| {
            Ok(r["status"]["complete"] == true)
        })
        .await?;
        let _ = restores.delete(&restore_name, &Default::default()).await;
        // A VM that ran comes back paused, for the lab to resume together.
        if was_running {
            self.subresource(vm, "start", serde_json::json!({})).await?;
            self.settle(vm, true, SNAPSHOT_TIMEOUT).await?;
            self.set_paused(vm, true).await?;
        }
        Ok(())
    }

    async fn delete_snapshot(
        &self,
        vm: &str,
        name: &str,
        owner: &Owner,
    ) -> Result<bool, ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let snapshot_name = object_name(vm, name);
        let Some(snapshot) = self
            .snapshots_api()
            .get_opt(&snapshot_name)
            .await
            .map_err(|e| ProviderError::backend(&id, Said(&e)))?
        else {
            return Ok(false);
        };
        let mark = serde_json::to_value(&snapshot).unwrap_or_default()["metadata"]["annotations"]
            [MARK]
            .as_str()
            .and_then(SnapshotMark::from_description);
        if mark.is_none_or(|m| m.plan != owner.plan) {
            return Err(ProviderError::NotOwned {
                id,
                plan: owner.plan.clone(),
            });
        }
        self.snapshots_api()
            .delete(&snapshot_name, &Default::default())
            .await
            .map_err(|e| ProviderError::backend(&id, Said(&e)))?;
        Ok(true)
    }
}
