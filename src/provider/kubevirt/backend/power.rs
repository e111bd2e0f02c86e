//! Starting, stopping and restarting a VM through KubeVirt's subresources (what `virtctl`
//! does), and waiting until KubeVirt reports it done: a restart is done when a new instance
//! runs, not when the old one's status still says Running.

use super::*;

/// An object's uid.
fn uid_of(object: &Value) -> String {
    object["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl KubevirtProvider {
    /// Waits until a VM restarted runs again: a new instance (not `before`) is up and KubeVirt
    /// says the VM runs. Right after the request the old instance and the VM's status still
    /// say Running.
    async fn restarted(
        &self,
        vm: &str,
        before: Option<String>,
        within: Duration,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let instance = self.instance(vm).await;
            let new = instance
                .as_ref()
                .is_some_and(|i| Some(uid_of(i)) != before && i["status"]["phase"] == "Running");
            if new {
                return self
                    .settle(
                        vm,
                        true,
                        deadline.saturating_duration_since(tokio::time::Instant::now()),
                    )
                    .await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::backend(
                    &id,
                    format!(
                        "no new instance runs {} s after the restart was asked for",
                        within.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Asks KubeVirt to start, stop or restart a VM, through its subresources (what
    /// `virtctl` does): `PUT …/subresources.kubevirt.io/v1/…/virtualmachines/NAME/ACTION`.
    pub(super) async fn subresource(
        &self,
        vm: &str,
        action: &str,
        body: Value,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let path = format!(
            "/apis/subresources.kubevirt.io/v1/namespaces/{}/virtualmachines/{vm}/{action}",
            self.namespace
        );
        let request = http::Request::put(path)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string().into_bytes())
            .map_err(|e| ProviderError::backend(&id, e))?;
        tokio::time::timeout(REQUEST_TIMEOUT, self.client.request_text(request))
            .await
            .map_err(|_| ProviderError::backend(&id, format!("{action}: no answer in time")))?
            .map_err(|e| ProviderError::backend(&id, format!("{action}: {e}")))?;
        Ok(())
    }

    /// Waits until the VM is (not) running, as its status says.
    pub(super) async fn settle(
        &self,
        vm: &str,
        running: bool,
        within: Duration,
    ) -> Result<(), ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let live = self
                .get(&id)
                .await?
                .ok_or_else(|| ProviderError::NotFound(id.clone()))?;
            let done = runs(&live) == running
                && (!running || live["status"]["printableStatus"] == "Running");
            if done {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProviderError::backend(
                    &id,
                    format!(
                        "still {} after {} s",
                        live["status"]["printableStatus"]
                            .as_str()
                            .unwrap_or("unknown"),
                        within.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

#[async_trait]
impl capability::PowerControl for KubevirtProvider {
    /// Through KubeVirt's start, stop and restart subresources; stop and restart wait until
    /// the VM has stopped (a grace period is KubeVirt's to enforce) and started.
    async fn power(&self, vm: &str, power: Power, owner: &Owner) -> Result<Done, ProviderError> {
        let id = ResourceId::object(kinds::VIRTUAL_MACHINE, vm);
        let live = self.owned(&id, owner).await?;
        let running = runs(&live);
        let settle = DELETE_TIMEOUT;
        let summary = match power {
            Power::Start if running => format!("vm {vm} was running"),
            Power::Start => {
                self.subresource(vm, "start", serde_json::json!({})).await?;
                self.settle(vm, true, settle).await?;
                format!("vm {vm} started")
            }
            Power::Stop { .. } if !running => format!("vm {vm} was not running"),
            Power::Stop { grace } => {
                let body = match grace {
                    Some(g) => serde_json::json!({"gracePeriod": g.as_secs()}),
                    None => serde_json::json!({}),
                };
                self.subresource(vm, "stop", body).await?;
                self.settle(vm, false, settle).await?;
                format!("vm {vm} stopped")
            }
            Power::Restart { grace } => {
                let body = match grace {
                    Some(g) => serde_json::json!({"gracePeriodSeconds": g.as_secs()}),
                    None => serde_json::json!({}),
                };
                let before = self.instance(vm).await.map(|i| uid_of(&i));
                self.subresource(vm, "restart", body).await?;
                self.restarted(vm, before, settle).await?;
                format!("vm {vm} restarted")
            }
        };
        Ok(Done {
            id,
            summary,
            needs_reboot: false,
        })
    }
}
