//! The plan lock on a cluster: a `coordination.k8s.io` Lease in the provider's namespace,
//! named after the plan, the way Kubernetes' own controllers elect a leader. Creating an
//! object is atomic (a second create is `409 AlreadyExists`); the holder is written in an
//! annotation (and, for `kubectl get lease`, in `holderIdentity`); the run renews
//! `renewTime`, and deletes it with its uid as a precondition, so that it never deletes a
//! newer lease another run made.

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use serde_json::json;

use super::objects::{MANAGED_BY, PLAN_LABEL};
use crate::provider::lock::{object_name, FoundLock, LockAttempt, LockHolder};
use crate::provider::ProviderError;

/// The annotation that holds the holder, as JSON.
const HOLDER: &str = "siteplan.io/lock-holder";

fn status_of(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

fn failed(e: kube::Error) -> ProviderError {
    ProviderError::Connection(format!("the plan's lease: {}", super::said::Said(&e)))
}

/// A Lease name: Kubernetes names are lower case, without `_`.
pub fn lease_name(plan: &str) -> String {
    let name = object_name(plan);
    let lower = name.to_lowercase().replace('_', "-");
    if lower == name {
        return name;
    }
    let digest = <sha2::Sha256 as sha2::Digest>::digest(plan.as_bytes());
    format!("{lower}-{}", hex::encode(&digest[..4]))
}

fn micro(rfc3339: &str) -> String {
    humantime::parse_rfc3339(rfc3339)
        .map(|t| humantime::format_rfc3339_micros(t).to_string())
        .unwrap_or_else(|_| rfc3339.to_string())
}

fn lease_of(holder: &LockHolder, namespace: &str) -> Result<Lease, ProviderError> {
    let record =
        serde_json::to_string(holder).map_err(|e| ProviderError::Invalid(e.to_string()))?;
    serde_json::from_value(json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": lease_name(&holder.plan),
            "namespace": namespace,
            "labels": {MANAGED_BY: "siteplan", PLAN_LABEL: holder.plan},
            "annotations": {HOLDER: record},
        },
        "spec": {
            "holderIdentity": format!("{}/{}", holder.host, holder.pid),
            "leaseDurationSeconds": holder.ttl_seconds,
            "acquireTime": micro(&holder.since),
            "renewTime": micro(&holder.renewed),
        },
    }))
    .map_err(|e| ProviderError::Invalid(format!("the plan's lease: {e}")))
}

fn found(lease: &Lease) -> Option<FoundLock> {
    let record = lease.metadata.annotations.as_ref()?.get(HOLDER)?;
    Some(FoundLock {
        holder: serde_json::from_str(record).ok()?,
        token: lease.metadata.uid.clone()?,
    })
}

pub async fn create(
    api: &Api<Lease>,
    holder: &LockHolder,
    namespace: &str,
) -> Result<LockAttempt, ProviderError> {
    let lease = lease_of(holder, namespace)?;
    // A lease deleted between a refused create and reading it: try again.
    for _ in 0..3 {
        match api.create(&PostParams::default(), &lease).await {
            Ok(made) => {
                return made.metadata.uid.map(LockAttempt::Taken).ok_or_else(|| {
                    ProviderError::Connection("the plan's lease came back without a uid".into())
                })
            }
            Err(e) if status_of(&e) == Some(409) => {}
            Err(e) => return Err(failed(e)),
        }
        if let Some(found) = read(api, &holder.plan).await? {
            return Ok(LockAttempt::Held(found));
        }
    }
    Err(ProviderError::Connection(
        "the plan's lease keeps appearing and disappearing".into(),
    ))
}

pub async fn read(api: &Api<Lease>, plan: &str) -> Result<Option<FoundLock>, ProviderError> {
    let name = lease_name(plan);
    let Some(lease) = api.get_opt(&name).await.map_err(failed)? else {
        return Ok(None);
    };
    found(&lease).map(Some).ok_or_else(|| {
        ProviderError::Invalid(format!(
            "lease {name} exists and is not siteplan's: siteplan keeps plan `{plan}`'s lock \
             under that name; remove that lease"
        ))
    })
}

pub async fn renew(
    api: &Api<Lease>,
    holder: &LockHolder,
    token: &str,
    namespace: &str,
) -> Result<(), ProviderError> {
    let name = lease_name(&holder.plan);
    let gone = || ProviderError::Connection(format!("the lock of plan `{}` is gone", holder.plan));
    let live = api.get_opt(&name).await.map_err(failed)?.ok_or_else(gone)?;
    if live.metadata.uid.as_deref() != Some(token) {
        return Err(gone());
    }
    let mut lease = lease_of(holder, namespace)?;
    // A replace names the version it read: if the lease changed since, it is a 409.
    lease.metadata.resource_version = live.metadata.resource_version;
    lease.metadata.uid = live.metadata.uid;
    api.replace(&name, &PostParams::default(), &lease)
        .await
        .map(|_| ())
        .map_err(failed)
}

pub async fn delete(api: &Api<Lease>, plan: &str, token: &str) -> Result<bool, ProviderError> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(token.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&lease_name(plan), &params).await {
        Ok(_) => Ok(true),
        // Gone, or another run's lease by now.
        Err(e) if matches!(status_of(&e), Some(404 | 409)) => Ok(false),
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_kubernetes_names() {
        assert_eq!(lease_name("lab"), "siteplan-lock-lab");
        let odd = lease_name("My_Lab");
        assert!(odd.starts_with("siteplan-lock-my-lab-"), "{odd}");
        assert_ne!(lease_name("My_Lab"), lease_name("my-lab"));
    }

    #[test]
    fn a_lease_carries_its_holder() {
        let holder = LockHolder::this_process("lab", "plan apply lab.yml");
        let mut lease = lease_of(&holder, "lab").unwrap();
        lease.metadata.uid = Some("uid-1".into());
        let spec = lease.spec.clone().unwrap();
        assert_eq!(spec.lease_duration_seconds, Some(120));
        assert!(spec
            .holder_identity
            .unwrap()
            .ends_with(&format!("/{}", holder.pid)));
        assert_eq!(
            found(&lease),
            Some(FoundLock {
                holder,
                token: "uid-1".into()
            })
        );
    }
}
