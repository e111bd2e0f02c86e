//! Starting and stopping instances (`plan start|stop|restart`, `apply --restart`), and what
//! `plan list` and a network's deletion ask of the account (`Inventory`).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::types::{Filter, InstanceStateName};

use super::found::Which;
use super::lower::field;
use super::tags;
use super::{failed, AwsProvider};
use crate::plan::model::Power;
use crate::provider::aws::kinds;
use crate::provider::{
    capability, Done, MadeBy, NetworkUser, Owner, PlanMember, ProviderError, ResourceId,
};

impl AwsProvider {
    /// Starts an instance, with the instance type saved for its restart, and waits until it
    /// runs.
    pub(super) async fn start(&self, instance: &str) -> Result<(), ProviderError> {
        self.take_pending_type(instance).await?;
        self.ec2
            .start_instances()
            .instance_ids(instance)
            .send()
            .await
            .map_err(failed)?;
        self.wait_state(instance, InstanceStateName::Running)
            .await?;
        Ok(())
    }

    /// Stops an instance (forced: EC2's own stop after its grace) and waits until it has.
    pub(super) async fn stop(&self, instance: &str, force: bool) -> Result<(), ProviderError> {
        self.ec2
            .stop_instances()
            .instance_ids(instance)
            .force(force)
            .send()
            .await
            .map_err(failed)?;
        self.wait_state(instance, InstanceStateName::Stopped)
            .await?;
        Ok(())
    }

    /// A stopped instance takes the type saved for it.
    async fn take_pending_type(&self, instance: &str) -> Result<(), ProviderError> {
        let Some(found) = self.describe_instance(instance).await? else {
            return Ok(());
        };
        let tags = tags::of(Some(found.tags()));
        // Set even when it is the type already: that clears the saved one too.
        if let Some(pending) = tags.get(tags::PENDING_TYPE) {
            self.set_type(instance, pending).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl capability::PowerControl for AwsProvider {
    async fn power(&self, vm: &str, power: Power, owner: &Owner) -> Result<Done, ProviderError> {
        let id = ResourceId::object(kinds::INSTANCE, vm);
        let found = self.owned(&id, owner).await?;
        let summary = match power {
            Power::Start if found.active => format!("vm {vm} was running"),
            Power::Start => {
                self.start(&found.id).await?;
                format!("vm {vm} started")
            }
            Power::Stop { .. } if !found.active => format!("vm {vm} was not running"),
            Power::Stop { grace } => {
                self.stop_within(&found.id, grace).await?;
                format!("vm {vm} stopped")
            }
            Power::Restart { grace } => {
                if found.active {
                    self.stop_within(&found.id, grace).await?;
                }
                self.start(&found.id).await?;
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

impl AwsProvider {
    /// Asks the guest to stop; forced when it has not within `grace`.
    async fn stop_within(
        &self,
        instance: &str,
        grace: Option<Duration>,
    ) -> Result<(), ProviderError> {
        let Some(grace) = grace else {
            return self.stop(instance, false).await;
        };
        match tokio::time::timeout(grace, self.stop(instance, false)).await {
            Ok(result) => result,
            Err(_) => self.stop(instance, true).await,
        }
    }
}

#[async_trait]
impl capability::Inventory for AwsProvider {
    async fn network_users(&self, networks: &[String]) -> Result<Vec<NetworkUser>, ProviderError> {
        let subnets = self.find(kinds::SUBNET, &Which::Named(networks)).await?;
        if subnets.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = subnets.iter().map(|s| s.id.clone()).collect();
        let filter = Filter::builder()
            .name("subnet-id")
            .set_values(Some(ids))
            .build();
        let mut users = Vec::new();
        for found in self.instances(vec![filter]).await? {
            let network = found
                .fields
                .get(field::NETWORK)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            users.push(NetworkUser {
                network,
                plan: found
                    .tags
                    .get(tags::PLAN)
                    .or(found.tags.get(tags::KCLI_PLAN))
                    .cloned(),
                running: found.active,
                vm: found.name,
            });
        }
        Ok(users)
    }

    async fn details(&self, vm: &str) -> Result<crate::provider::VmDetails, ProviderError> {
        self.instance_details(vm).await
    }

    async fn plans(&self) -> Result<Vec<PlanMember>, ProviderError> {
        let mut members = Vec::new();
        for found in self.find(kinds::INSTANCE, &Which::AnyPlan).await? {
            let (plan, made_by) =
                match (found.tags.get(tags::PLAN), found.tags.get(tags::KCLI_PLAN)) {
                    (Some(plan), _) => (plan.clone(), MadeBy::Siteplan),
                    (None, Some(plan)) => (plan.clone(), MadeBy::Kcli),
                    (None, None) => continue,
                };
            members.push(PlanMember {
                plan,
                made_by,
                vm: found.name,
                running: found.active,
            });
        }
        Ok(members)
    }
}
