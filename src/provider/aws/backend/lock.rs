//! The plan lock on EC2: a key pair named `siteplan-lock-PLAN`. EC2 refuses a second key pair of
//! one name (`InvalidKeyPair.Duplicate`), so of two runs that make it at once one wins; the
//! holder is kept in its tags (as JSON in pieces, like a mark), and its key pair id is the
//! token, so that deleting a stale lock by id never deletes a newer one of the same name. Its
//! private key is thrown away: the key pair opens nothing.

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, KeyType, ResourceType, Tag};

use super::tags::{self, Tags};
use super::{code, failed, AwsProvider};
use crate::provider::capability::PlanLocks;
use crate::provider::lock::{FoundLock, LockAttempt, LockHolder};
use crate::provider::ProviderError;

const HOLDER_PREFIX: &str = "siteplan:holder-";

fn name(plan: &str) -> String {
    format!("siteplan-lock-{plan}")
}

fn holder_tags(holder: &LockHolder) -> Result<Tags, ProviderError> {
    let json = serde_json::to_string(holder).map_err(|e| ProviderError::Invalid(e.to_string()))?;
    let mut tags = tags::pieces(HOLDER_PREFIX, &json);
    tags.insert("siteplan:lock".into(), holder.plan.clone());
    Ok(tags)
}

fn holder_of(tags: &Tags) -> Option<LockHolder> {
    serde_json::from_str(&tags::joined(tags, HOLDER_PREFIX)).ok()
}

impl AwsProvider {
    /// The lock's key pair: its id and its tags.
    async fn lock_pair(&self, plan: &str) -> Result<Option<(String, Tags)>, ProviderError> {
        let out = self
            .ec2
            .describe_key_pairs()
            .filters(
                Filter::builder()
                    .name("key-name")
                    .values(name(plan))
                    .build(),
            )
            .send()
            .await;
        let out = match out {
            Ok(out) => out,
            Err(e) if code(&e).as_deref() == Some("InvalidKeyPair.NotFound") => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        Ok(out.key_pairs().first().map(|k| {
            (
                k.key_pair_id().unwrap_or_default().to_string(),
                tags::of(Some(k.tags())),
            )
        }))
    }
}

#[async_trait]
impl PlanLocks for AwsProvider {
    async fn create_lock(&self, holder: &LockHolder) -> Result<LockAttempt, ProviderError> {
        let tags = holder_tags(holder)?;
        let made = self
            .ec2
            .create_key_pair()
            .key_name(name(&holder.plan))
            .key_type(KeyType::Ed25519)
            .tag_specifications(tags::on_create(ResourceType::KeyPair, &tags))
            .send()
            .await;
        match made {
            Ok(out) => Ok(LockAttempt::Taken(
                out.key_pair_id().unwrap_or_default().to_string(),
            )),
            Err(e) if code(&e).as_deref() == Some("InvalidKeyPair.Duplicate") => {
                match self.read_lock(&holder.plan).await? {
                    Some(found) => Ok(LockAttempt::Held(found)),
                    // Released between the two calls: the caller tries again.
                    None => Err(ProviderError::Connection(format!(
                        "the lock of plan {} was released while it was being taken; try again",
                        holder.plan
                    ))),
                }
            }
            Err(e) => Err(failed(e)),
        }
    }

    async fn read_lock(&self, plan: &str) -> Result<Option<FoundLock>, ProviderError> {
        let Some((token, tags)) = self.lock_pair(plan).await? else {
            return Ok(None);
        };
        // A lock whose holder does not read is still a lock: it shows as held by an unknown
        // run until it goes stale.
        let holder = holder_of(&tags).unwrap_or_else(|| {
            let mut unknown = LockHolder::this_process(plan, "(unreadable lock)");
            unknown.pid = 0;
            unknown.host = "(unknown)".into();
            unknown.since = "1970-01-01T00:00:00Z".into();
            unknown.renewed = unknown.since.clone();
            unknown
        });
        Ok(Some(FoundLock { holder, token }))
    }

    async fn renew_lock(&self, holder: &LockHolder, token: &str) -> Result<(), ProviderError> {
        match self.lock_pair(&holder.plan).await? {
            Some((id, _)) if id == token => {}
            _ => {
                return Err(ProviderError::Connection(format!(
                    "the lock of plan {} is gone or another run's",
                    holder.plan
                )))
            }
        }
        let tags: Vec<Tag> = tags::list(&holder_tags(holder)?);
        self.ec2
            .create_tags()
            .resources(token)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn delete_lock(&self, plan: &str, token: &str) -> Result<bool, ProviderError> {
        match self.lock_pair(plan).await? {
            Some((id, _)) if id == token => {}
            _ => return Ok(false),
        }
        self.ec2
            .delete_key_pair()
            .key_pair_id(token)
            .send()
            .await
            .map_err(failed)?;
        // An emulator that deletes key pairs by name alone (moto) leaves it: then by name, the
        // one just read being this one.
        if matches!(self.lock_pair(plan).await?, Some((id, _)) if id == token) {
            self.ec2
                .delete_key_pair()
                .key_name(name(plan))
                .send()
                .await
                .map_err(failed)?;
        }
        Ok(true)
    }
}
