//! Deleting an object: asking once, with what holds its data (a VM's disks and their claims),
//! waiting (watching) until all of it is gone, and saying what holds it when it is not gone in
//! time: its finalizers, and for a foreground delete, the garbage collector.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{WatchEvent, WatchParams};

use super::*;

/// A claim, as the API serves it (what CDI makes for a DataVolume).
fn claims() -> ApiResource {
    ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "PersistentVolumeClaim".into(),
        plural: "persistentvolumeclaims".into(),
    }
}

/// Whether `object` is owned by the object whose uid is `uid`.
fn owned_by(object: &DynamicObject, uid: &str) -> bool {
    object
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid)
}

impl KubevirtProvider {
    /// Deletes `id`, the plan's, and waits until it is gone: one a killed run deleted already
    /// is only waited for, and one gone already is done.
    pub(super) async fn delete_owned(
        &self,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<Done, ProviderError> {
        let gone = || Done {
            id: id.clone(),
            summary: format!("{id} was gone already"),
            needs_reboot: false,
        };
        let live = match self.owned(id, owner).await {
            Err(ProviderError::NotFound(_)) => return Ok(gone()),
            other => other?,
        };
        // A VM's lab snapshots go with it, as libvirt's do with a domain.
        if id.kind == kinds::VIRTUAL_MACHINE {
            self.delete_snapshots_of(&id.name, owner).await?;
        }
        // What holds its data (a VM's disks, an image's claim) is deleted with it, by siteplan
        // at once, rather than left to the garbage collector's turn (which a foreground delete
        // waits for: seconds an object on a busy cluster); all of it is waited for.
        let data = self.data_of(id.kind, &live).await?;
        // Deleted already (by a run that was killed): only waited for.
        if live["metadata"]["deletionTimestamp"].is_null() {
            match self
                .api(id.kind)
                .delete(&id.name, &DeleteParams::background())
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(gone()),
                other => other.map_err(|e| ProviderError::backend(id, Said(&e)))?,
            };
        }
        crate::provider::crashpoint::point("object deletion requested");
        for (api, name) in &data {
            match api.delete(name, &DeleteParams::background()).await {
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                other => {
                    other
                        .map_err(|e| ProviderError::backend(id, format!("{name}: {}", Said(&e))))?;
                }
            }
        }
        self.gone(id).await?;
        for (api, name) in &data {
            self.gone_in(api, name, id).await?;
        }
        Ok(Done {
            id: id.clone(),
            summary: format!("{id} deleted"),
            needs_reboot: false,
        })
    }

    /// What holds the data of `live` (of `kind`), each owned by the one before it: a VM's
    /// DataVolumes (its disk templates) and their claims; an image's claim.
    async fn data_of(
        &self,
        kind: ResourceKind,
        live: &Value,
    ) -> Result<Vec<(Api<DynamicObject>, String)>, ProviderError> {
        let uid = live["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let claims =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &self.namespace, &claims());
        let mut owners: Vec<(String, String)> = Vec::new(); // (name, uid) owning a claim
        let mut data = Vec::new();
        if kind == kinds::VIRTUAL_MACHINE {
            let volumes = self.api(kinds::DATA_VOLUME);
            for template in live["spec"]["dataVolumeTemplates"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(name) = template["metadata"]["name"].as_str() else {
                    continue;
                };
                let found = volumes
                    .get_opt(name)
                    .await
                    .map_err(|e| ProviderError::Connection(Said(&e).to_string()))?;
                if let Some(volume) = found.filter(|v| owned_by(v, &uid)) {
                    owners.push((name.to_string(), volume.metadata.uid.unwrap_or_default()));
                    data.push((volumes.clone(), name.to_string()));
                }
            }
        } else if kind == kinds::DATA_VOLUME {
            let name = live["metadata"]["name"].as_str().unwrap_or_default();
            owners.push((name.to_string(), uid));
        }
        // CDI names a DataVolume's claim after it.
        for (name, owner) in owners {
            let found = claims
                .get_opt(&name)
                .await
                .map_err(|e| ProviderError::Connection(Said(&e).to_string()))?;
            if found.is_some_and(|c| owned_by(&c, &owner)) {
                data.push((claims.clone(), name));
            }
        }
        Ok(data)
    }

    /// Waits until the object `id` names is gone, up to the provider's delete timeout.
    pub(super) async fn gone(&self, id: &ResourceId) -> Result<(), ProviderError> {
        self.gone_in(&self.api(id.kind), &id.name, id).await
    }

    /// Waits until the object `name` of `api` (what `id` is deleted with) is gone, up to the
    /// provider's delete timeout.
    async fn gone_in(
        &self,
        api: &Api<DynamicObject>,
        name: &str,
        id: &ResourceId,
    ) -> Result<(), ProviderError> {
        let deadline = tokio::time::Instant::now() + self.delete_timeout;
        loop {
            let live = api
                .get_opt(name)
                .await
                .map_err(|e| ProviderError::backend(id, e))?;
            let Some(live) = live else {
                return Ok(());
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                let what = if name == id.name {
                    String::new()
                } else {
                    format!("{name}: ")
                };
                return Err(ProviderError::backend(
                    id,
                    format!("{what}{}", self.held(&live)),
                ));
            }
            // The server ends a watch after its timeout; a new one starts from the object as
            // it is then.
            let params = WatchParams::default()
                .fields(&format!("metadata.name={name}"))
                .timeout(left.as_secs().clamp(1, 290) as u32);
            let since = live.metadata.resource_version.clone().unwrap_or_default();
            let Ok(events) = api.watch(&params, &since).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let mut events = events.boxed();
            let deleted = tokio::time::timeout(left, async {
                while let Some(event) = events.next().await {
                    match event {
                        Ok(WatchEvent::Deleted(_)) => return true,
                        Ok(WatchEvent::Error(_)) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
                false
            })
            .await;
            if deleted == Ok(true) {
                return Ok(());
            }
        }
    }

    /// Why `live`, deleted, is still there.
    fn held(&self, live: &DynamicObject) -> String {
        let waited = format!(
            "still there {} s after it was deleted",
            self.delete_timeout.as_secs()
        );
        let finalizers = live.metadata.finalizers.clone().unwrap_or_default();
        let mut why = Vec::new();
        let others: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != "foregroundDeletion")
            .collect();
        // The garbage collector's part is said only when nothing else holds the object.
        if others.is_empty() && finalizers.iter().any(|f| f == "foregroundDeletion") {
            why.push(
                "it waits for the cluster's garbage collector to delete what it owns first \
                 (finalizer foregroundDeletion); a cluster where no garbage collector runs \
                 (kube-controller-manager) never ends this delete"
                    .to_string(),
            );
        }
        if !others.is_empty() {
            why.push(format!(
                "it waits for finalizer{} {}, which the controller that set {} must remove",
                if others.len() == 1 { "" } else { "s" },
                others
                    .iter()
                    .map(|f| f.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if others.len() == 1 { "it" } else { "them" }
            ));
        }
        if why.is_empty() {
            why.push("it has no finalizer left: the cluster has not removed it yet".into());
        }
        format!(
            "{waited}: {}. The providers file's `delete_timeout` (seconds) says how long a delete \
             waits",
            why.join("; ")
        )
    }
}
