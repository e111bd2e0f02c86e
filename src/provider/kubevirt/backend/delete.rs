//! Deleting an object: asking once, waiting (watching) until it is gone, and saying what holds
//! it when it is not gone in time: its finalizers, and for a foreground delete, the garbage
//! collector.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{WatchEvent, WatchParams};

use super::*;

/// How a delete of `kind` goes: foreground for what owns things (a VM its instance and disks,
/// a DataVolume its claim), so that it is gone only once they are, and the data with them;
/// background for what owns nothing (a Secret, a network attachment), which is gone at once
/// rather than after the garbage collector's turn.
fn propagation(kind: ResourceKind) -> DeleteParams {
    if kind == kinds::VIRTUAL_MACHINE || kind == kinds::DATA_VOLUME {
        DeleteParams::foreground()
    } else {
        DeleteParams::background()
    }
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
        // Deleted already (by a run that was killed): only waited for.
        if live["metadata"]["deletionTimestamp"].is_null() {
            match self
                .api(id.kind)
                .delete(&id.name, &propagation(id.kind))
                .await
            {
                Err(kube::Error::Api(status)) if status.code == 404 => return Ok(gone()),
                other => other.map_err(|e| ProviderError::backend(id, Said(&e)))?,
            };
        }
        crate::provider::crashpoint::point("object deletion requested");
        self.gone(id).await?;
        Ok(Done {
            id: id.clone(),
            summary: format!("{id} deleted"),
            needs_reboot: false,
        })
    }

    /// Waits until the object `id` names is gone, up to the provider's delete timeout.
    pub(super) async fn gone(&self, id: &ResourceId) -> Result<(), ProviderError> {
        let api = self.api(id.kind);
        let deadline = tokio::time::Instant::now() + self.delete_timeout;
        loop {
            let live = api
                .get_opt(&id.name)
                .await
                .map_err(|e| ProviderError::backend(id, e))?;
            let Some(live) = live else {
                return Ok(());
            };
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ProviderError::backend(id, self.held(&live)));
            }
            // The server ends a watch after its timeout; a new one starts from the object as
            // it is then.
            let params = WatchParams::default()
                .fields(&format!("metadata.name={}", id.name))
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
