//! Waiting for a deleted object to be gone, watching it, and saying what holds it when it is
//! not gone in time: its finalizers, and for a foreground delete, the garbage collector.

use std::time::Duration;

use futures::StreamExt;
use kube::api::{WatchEvent, WatchParams};

use super::*;

impl KubevirtProvider {
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
        if finalizers.iter().any(|f| f == "foregroundDeletion") {
            why.push(
                "it waits for the cluster's garbage collector to delete what it owns first \
                 (finalizer foregroundDeletion); a cluster where no garbage collector runs \
                 (kube-controller-manager) never ends this delete"
                    .to_string(),
            );
        }
        let others: Vec<&String> = finalizers
            .iter()
            .filter(|f| *f != "foregroundDeletion")
            .collect();
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
