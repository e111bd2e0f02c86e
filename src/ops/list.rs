//! `plan list`: the plans present on the providers, found from ownership marks: siteplan's,
//! and kcli's (its `plan` metadata), as `kcli list plan` shows them. No plan file is read.

use crate::provider::capability::{self, Capability};
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::provider::{backends, MadeBy};
use crate::registry::{self, config};

/// How long one provider may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct Listing {
    /// How many providers were asked.
    pub asked: usize,
    pub plans: Vec<ListedPlan>,
    /// Providers that could not be asked, and why.
    pub unreachable: Vec<Unreachable>,
}

#[derive(Debug, Serialize)]
pub struct ListedPlan {
    pub plan: String,
    pub provider: String,
    pub made_by: MadeBy,
    pub vms: Vec<ListedVm>,
}

#[derive(Debug, Serialize)]
pub struct ListedVm {
    pub name: String,
    pub state: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Unreachable {
    pub provider: String,
    pub reason: String,
}

/// Asks every enabled provider of the providers file (or `provider` alone), all at once.
pub async fn list(provider: Option<&str>) -> Result<Listing, super::Refusal> {
    // Each with the name it is shown by: its own, or (a URI given) where it connects.
    let configs: Vec<(String, config::ProviderConfig)> = match provider {
        // `plan list` takes no --no-kcli-config: the environment variable still turns it off.
        Some(choice) => registry::choose(Some(choice), false)?
            .into_iter()
            .take(1)
            .map(|c| {
                let shown = if c.named {
                    c.config.name.clone()
                } else {
                    c.config.endpoint()
                };
                (shown, c.config)
            })
            .collect(),
        None => {
            let (file, _) = config::load()?;
            file.providers
                .into_iter()
                .filter(|p| p.enabled)
                .map(|p| (p.name.clone(), p))
                .collect()
        }
    };
    let asking = configs.iter().map(|(shown, config)| async move {
        let found = tokio::time::timeout(TIMEOUT, async {
            let opened = backends::open(&config.backend)
                .await
                .map_err(|e| e.to_string())?;
            let provider = opened.as_ref();
            capability::require(provider.inventory(), provider, Capability::Inventory)
                .map_err(|e| e.to_string())?
                .plans()
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", TIMEOUT.as_secs())));
        (shown.clone(), found)
    });
    let mut plans: BTreeMap<(String, String, MadeBy), Vec<ListedVm>> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (provider, found) in futures::future::join_all(asking).await {
        match found {
            Ok(members) => {
                for member in members {
                    plans
                        .entry((member.plan, provider.clone(), member.made_by))
                        .or_default()
                        .push(ListedVm {
                            name: member.vm,
                            state: if member.running { "running" } else { "stopped" },
                        });
                }
            }
            Err(reason) => unreachable.push(Unreachable { provider, reason }),
        }
    }
    Ok(Listing {
        asked: configs.len(),
        plans: plans
            .into_iter()
            .map(|((plan, provider, made_by), mut vms)| {
                vms.sort_by(|a, b| a.name.cmp(&b.name));
                ListedPlan {
                    plan,
                    provider,
                    made_by,
                    vms,
                }
            })
            .collect(),
        unreachable,
    })
}
