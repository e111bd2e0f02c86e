//! The AWS provider: EC2 through the AWS SDK for Rust. Resources are known by their `Name`
//! tag, marked with tags (`tags`), read back as the specs `lower` builds (`found`), and changed
//! one API call at a time, each bounded (`change`); the plan lock is a key pair (`lock`);
//! instances start and stop (`power`).

mod change;
mod details;
mod found;
mod instances;
mod lock;
pub mod lower;
mod power;
pub mod rules;
mod snapshots;
mod tags;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::Client;

use self::found::{Found, Which};
use super::kinds;
use super::settings::AwsSettings;
use crate::plan::model::spec::ResourceKind;
use crate::provider::{
    capability, Address, AddressQuery, AddressSource, Addresses, Done, Health, HealthStatus,
    LiveResource, Observed, Owner, Pending, Provider, ProviderError, ResourceId, Scope, Spec,
};

/// Every kind the backend makes, in the order they are looked for.
const KINDS: [ResourceKind; 6] = [
    kinds::VPC,
    kinds::SUBNET,
    kinds::SECURITY_GROUP,
    kinds::INTERNET_GATEWAY,
    kinds::KEY_PAIR,
    kinds::INSTANCE,
];

/// How long one call may take before the provider is taken as gone.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AwsProvider {
    ec2: Client,
    endpoint: String,
    /// Where subnets are made.
    zone: String,
}

/// An SDK error as the provider's: a call that reached no one is the connection's.
pub fn failed<E, R>(error: SdkError<E, R>) -> ProviderError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(why) = no_credentials(&error) {
        return ProviderError::Connection(why);
    }
    match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            ProviderError::Connection(format!("EC2 did not answer: {}", cause(&error)))
        }
        _ => ProviderError::Connection(match (error.code(), error.message()) {
            (Some(code), Some(message)) => format!("EC2 refused: {code}: {message}"),
            _ => format!("EC2 refused: {}", DisplayErrorContext(&error)),
        }),
    }
}

/// Why no request could be signed, when that is what failed: the SDK found no credentials
/// (its last resort, the instance metadata service, says so), rather than EC2 not answering.
fn no_credentials(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        let words = e.to_string();
        if words.contains("IMDS") || words.to_lowercase().contains("credential") {
            return Some(format!(
                "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, name a \
                 profile of ~/.aws/config in the provider's `profile`, or give a kcli client \
                 its `access_key_id` and `access_key_secret` ({})",
                cause(error)
            ));
        }
        next = e.source();
    }
    None
}

/// What went wrong at the bottom of an error's chain (`Connection refused (os error 111)`),
/// rather than every layer's words for it.
fn cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error;
    while let Some(next) = last.source() {
        last = next;
    }
    match last.to_string() {
        words if words.is_empty() => DisplayErrorContext(error).to_string(),
        words => words,
    }
}

/// The error code EC2 answered with, if it answered.
pub fn code<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> Option<String> {
    error.code().map(str::to_string)
}

impl AwsProvider {
    pub async fn connect(settings: &AwsSettings) -> Result<AwsProvider, ProviderError> {
        let https = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let mut loader =
            aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(https);
        if let Some(region) = &settings.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &settings.endpoint {
            loader = loader.endpoint_url(url);
        }
        if let Some(keys) = &settings.kcli_keys {
            loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(
                &keys.access_key_id,
                keys.secret.expose(),
                keys.session_token.as_ref().map(|t| t.expose().to_string()),
                None,
                "kcli",
            ));
        }
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .operation_timeout(CALL_TIMEOUT)
            .build();
        let config = loader.timeout_config(timeouts).load().await;
        let Some(region) = config.region().map(|r| r.to_string()) else {
            return Err(ProviderError::Connection(
                "no AWS region: set the provider's `region`, or AWS_REGION, or a profile's region"
                    .into(),
            ));
        };
        let endpoint = match &settings.endpoint {
            Some(url) => format!("ec2 {region} at {url}"),
            None => format!("ec2 {region}"),
        };
        let zone = settings
            .availability_zone
            .clone()
            .unwrap_or_else(|| format!("{region}a"));
        Ok(AwsProvider {
            ec2: Client::new(&config),
            endpoint,
            zone,
        })
    }

    fn live(&self, found: &Found) -> LiveResource {
        let spec = Spec::Object(found.spec());
        let pending_restart = match (&found.running_type, &found.pending_type) {
            (Some(running), Some(defined)) if found.active => vec![Pending {
                attribute: lower::field::INSTANCE_TYPE.into(),
                running: Some(running.clone().into()),
                defined: Some(defined.clone().into()),
            }],
            _ => Vec::new(),
        };
        LiveResource {
            spec,
            owner: tags::owner_mark(&found.tags),
            active: found.active,
            empty: None,
            pending_restart,
            paused: false,
        }
    }

    /// The resource `id` names, if `owner.plan` owns it (or, adopting, no plan does).
    async fn owned(&self, id: &ResourceId, owner: &Owner) -> Result<Found, ProviderError> {
        let found = self
            .find_one(id.kind, &id.name, Some(&owner.plan))
            .await?
            .ok_or_else(|| ProviderError::NotFound(id.clone()))?;
        match found.tags.get(tags::PLAN) {
            Some(plan) if *plan == owner.plan => Ok(found),
            None if owner.adopt => Ok(found),
            _ => Err(ProviderError::NotOwned {
                id: id.clone(),
                plan: owner.plan.clone(),
            }),
        }
    }
}

#[async_trait]
impl Provider for AwsProvider {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// One cheap call: the region's zones.
    async fn health(&self) -> Health {
        let call = self.ec2.describe_availability_zones().send();
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Err(_) => Health {
                status: HealthStatus::Unavailable,
                reason: Some("EC2 did not answer within 5 s".into()),
            },
            Ok(Err(e)) if no_credentials(&e).is_some() => Health {
                status: HealthStatus::Unhealthy,
                reason: no_credentials(&e),
            },
            Ok(Err(e @ (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)))) => Health {
                status: HealthStatus::Unavailable,
                reason: Some(format!(
                    "EC2 did not answer at {}: {}",
                    self.endpoint,
                    cause(&e)
                )),
            },
            Ok(Err(e)) => Health {
                status: HealthStatus::Unhealthy,
                reason: Some(failed(e).to_string()),
            },
            Ok(Ok(zones)) => {
                let names: Vec<&str> = zones
                    .availability_zones()
                    .iter()
                    .filter_map(|z| z.zone_name())
                    .collect();
                if names.contains(&self.zone.as_str()) {
                    Health {
                        status: HealthStatus::Ready,
                        reason: None,
                    }
                } else {
                    Health {
                        status: HealthStatus::Unhealthy,
                        reason: Some(format!(
                            "the region has no zone {} (it has {}); set `availability_zone`",
                            self.zone,
                            names.join(", ")
                        )),
                    }
                }
            }
        }
    }

    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let mut named: BTreeMap<ResourceKind, Vec<String>> = BTreeMap::new();
        for id in &scope.ids {
            // The operations ask for a VM by the model's kind, whichever backend's it is.
            let kind = match id.kind {
                ResourceKind::VM => kinds::INSTANCE,
                kind => kind,
            };
            named.entry(kind).or_default().push(id.name.clone());
        }
        let empty = Vec::new();
        let lookups = KINDS.iter().flat_map(|kind| {
            let names = named.get(kind).unwrap_or(&empty);
            [
                (*kind, Which::Plan(scope.plan.as_str())),
                (*kind, Which::Named(names.as_slice())),
            ]
        });
        let found = futures::future::try_join_all(
            lookups.map(|(kind, which)| async move { self.find(kind, &which).await }),
        )
        .await?;
        let mut observed = Observed::default();
        // A pool is an EBS volume type on AWS: those there are exist wherever EC2 answers.
        for id in &scope.ids {
            if id.kind == ResourceKind::POOL
                && lower::VOLUME_TYPES.contains(&lower::volume_type(&id.name))
            {
                let spec = Spec::Pool(crate::plan::model::spec::PoolSpec {
                    name: id.name.clone(),
                    path: String::new(),
                    autostart: true,
                });
                observed.resources.insert(
                    id.clone(),
                    LiveResource {
                        spec,
                        owner: None,
                        active: true,
                        empty: None,
                        pending_restart: Vec::new(),
                        paused: false,
                    },
                );
            }
        }
        for found in found.into_iter().flatten() {
            let id = ResourceId::object(found.kind, &found.name);
            let live = self.live(&found);
            if live.owner.is_none() {
                if let Some(plan) = found.tags.get(tags::KCLI_PLAN) {
                    observed.kcli_plans.insert(id.clone(), plan.clone());
                }
            }
            // Two of one name: the plan's own is the one it means.
            let keep = observed.resources.get(&id).is_none_or(|have| {
                have.owner.as_ref().is_none_or(|m| m.plan != scope.plan)
                    && live.owner.as_ref().is_some_and(|m| m.plan == scope.plan)
            });
            if keep {
                observed.resources.insert(id, live);
            }
        }
        Ok(observed)
    }

    fn lower(
        &self,
        intents: &crate::plan::intent::Intents,
    ) -> Result<crate::plan::model::desired::Desired, String> {
        lower::lower(intents)
    }

    fn rules(&self) -> &dyn crate::plan::model::rules::Rules {
        &rules::AwsRules
    }

    async fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        self.make(spec, owner).await
    }

    async fn update(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let found = self.owned(&spec.id(), owner).await?;
        self.change(&found, spec, owner).await
    }

    async fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        let found = self
            .owned(
                id,
                &Owner {
                    adopt: false,
                    ..owner.clone()
                },
            )
            .await?;
        self.remove(&found).await
    }

    async fn addresses(&self, vms: &[AddressQuery]) -> Result<Addresses, ProviderError> {
        let names: Vec<String> = vms.iter().map(|q| q.vm.clone()).collect();
        let mut out = Addresses::new();
        for found in self.find(kinds::INSTANCE, &Which::Named(&names)).await? {
            if !found.active {
                continue;
            }
            let (private, public) = &found.addresses;
            let mut addresses = Vec::new();
            for (ip, source) in [
                (public, AddressSource::Public),
                (private, AddressSource::Private),
            ] {
                if let Some(ip) = ip.as_deref().and_then(|ip| ip.parse().ok()) {
                    addresses.push(Address {
                        ip,
                        mac: None,
                        source,
                    });
                }
            }
            out.insert(found.name.clone(), addresses);
        }
        Ok(out)
    }

    fn plan_locks(&self) -> Option<&dyn capability::PlanLocks> {
        Some(self)
    }

    fn lab_snapshots(&self) -> Option<&dyn capability::LabSnapshots> {
        Some(self)
    }

    fn power_control(&self) -> Option<&dyn capability::PowerControl> {
        Some(self)
    }

    fn inventory(&self) -> Option<&dyn capability::Inventory> {
        Some(self)
    }
}

/// What a change did, said as the others say it.
fn done(id: ResourceId, what: impl std::fmt::Display) -> Done {
    Done {
        summary: format!("{id} {what}"),
        id,
        needs_reboot: false,
    }
}

/// Shared by the modules that wait for EC2 to finish something.
pub(crate) async fn poll<T, F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> Result<T, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, ProviderError>>,
{
    let start = std::time::Instant::now();
    let mut wait = Duration::from_millis(200);
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if start.elapsed() > limit {
            return Err(ProviderError::Connection(format!(
                "{what}: not done after {} s",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(5));
    }
}
