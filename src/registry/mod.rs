//! The providers a user has: configured in the providers file (`config`), remembered with a
//! stable id (`store`), and checked live, in parallel and with a timeout, for `plan provider
//! list|get`. The views use DCM's field names.

pub mod config;
pub mod store;

use std::time::Duration;

use serde::Serialize;

use crate::plan::model::spec::ResourceId;
use crate::provider::capability::{Allocation, Capacity};
use crate::provider::{backends, HealthStatus, Scope};
use config::ProviderConfig;

/// The schema version of the provider views (`schema_version`).
pub const SCHEMA_VERSION: &str = "v1alpha1";

/// How long one health check may take, unless the providers file says otherwise.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// A health check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub status: HealthStatus,
    pub reason: Option<String>,
    /// What a ready provider offers, where it says (DCM's capacity metadata).
    pub capacity: Option<Capacity>,
    /// What is allocated there already, where it says.
    pub allocation: Option<Allocation>,
    /// The status holds whatever earlier checks said: this build cannot drive the provider at
    /// all, which no later answer changes.
    pub settled: bool,
}

impl Checked {
    fn new(status: HealthStatus, reason: impl Into<String>) -> Self {
        Checked {
            status,
            reason: Some(reason.into()),
            capacity: None,
            allocation: None,
            settled: false,
        }
    }

    /// Whether the backend answered at all, or the status is settled without it.
    pub fn reached(&self) -> bool {
        self.settled || self.status != HealthStatus::Unavailable
    }
}

/// One provider as `plan provider list|get` shows it (DCM's fields).
#[derive(Debug, Clone, Serialize)]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    /// What it hosts: `vm` for every siteplan backend.
    pub service_type: String,
    /// `libvirt`, `sandbox`.
    pub provider_type: String,
    pub endpoint: String,
    pub schema_version: String,
    /// `registered` once reached, `configured` before.
    pub status: String,
    /// `ready`, `unhealthy` or `unavailable`.
    pub health_status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health_reason: Option<String>,
    /// What it offers to place VMs on, where it says: its hosts' or nodes' CPUs and memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// What the VMs defined there take of it (running or not), and its pools' free space.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocation: Option<Allocation>,
    /// The groups of the providers file it is a host of.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub enabled: bool,
    pub create_time: String,
    pub update_time: String,
}

/// Checks one provider: it must answer within `timeout`, and hold its pool (and network, if
/// the file names one), active.
pub async fn check(config: &ProviderConfig, timeout: Duration) -> Checked {
    if !config.enabled {
        return Checked::new(HealthStatus::Unavailable, "disabled in the providers file");
    }
    let provider = match tokio::time::timeout(timeout, backends::open(&config.backend)).await {
        Err(_) => {
            return Checked::new(
                HealthStatus::Unavailable,
                format!("no answer within {} s", timeout.as_secs()),
            )
        }
        // A backend this build leaves out: unavailable now, whatever it answered before.
        Ok(Err(e @ crate::provider::ProviderError::Unsupported(_))) => {
            return Checked {
                settled: true,
                ..Checked::new(HealthStatus::Unavailable, e.to_string())
            }
        }
        Ok(Err(e)) => return Checked::new(HealthStatus::Unavailable, e.to_string()),
        Ok(Ok(p)) => p,
    };
    let looking = check_opened(config, provider.as_ref());
    match tokio::time::timeout(timeout, looking).await {
        Ok(checked) => checked,
        Err(_) => Checked::new(
            HealthStatus::Unavailable,
            format!("no answer within {} s", timeout.as_secs()),
        ),
    }
}

/// Checks a provider that answered: healthy as its backend says, holding its pool (and
/// network, if the file names one), active; what it offers and what is taken of it.
pub async fn check_opened(
    config: &ProviderConfig,
    provider: &dyn crate::provider::Provider,
) -> Checked {
    let mut ids = vec![ResourceId::pool(&config.pool)];
    if let Some(net) = &config.network {
        ids.push(ResourceId::network(net));
    }
    async {
        let health = provider.health().await;
        if health.status != HealthStatus::Ready {
            return Checked {
                status: health.status,
                reason: health.reason,
                capacity: None,
                allocation: None,
                settled: false,
            };
        }
        let seen = match provider
            .observe(&Scope {
                plan: String::new(),
                ids: ids.clone(),
            })
            .await
        {
            Ok(seen) => seen,
            Err(e) => return Checked::new(HealthStatus::Unhealthy, e.to_string()),
        };
        for id in &ids {
            match seen.get(id) {
                None => {
                    return Checked::new(HealthStatus::Unhealthy, format!("{id} does not exist"))
                }
                Some(r) if !r.active => {
                    return Checked::new(HealthStatus::Unhealthy, format!("{id} is not active"))
                }
                Some(_) => {}
            }
        }
        let (capacity, allocation) = match provider.placement() {
            Some(placement) => {
                let (capacity, allocation) =
                    tokio::join!(placement.capacity(), placement.allocation());
                (capacity.ok().flatten(), allocation.ok().flatten())
            }
            None => (None, None),
        };
        Checked {
            status: HealthStatus::Ready,
            reason: None,
            capacity,
            allocation,
            settled: false,
        }
    }
    .await
}

/// DCM's model: a provider that stops answering keeps what its last answer said until this
/// many checks in a row went unanswered; one answer recovers it.
const UNAVAILABLE_AFTER: u32 = 3;

/// The health shown for `record` after the check `now`.
fn remembered(now: &Checked, record: &store::Record) -> &'static str {
    if now.reached() {
        return health_name(&now.status);
    }
    match record.last_answer.as_deref() {
        Some("ready") if record.failed_checks < UNAVAILABLE_AFTER => "ready",
        Some("unhealthy") if record.failed_checks < UNAVAILABLE_AFTER => "unhealthy",
        _ => "unavailable",
    }
}

fn health_name(status: &HealthStatus) -> &'static str {
    match status {
        HealthStatus::Ready => "ready",
        HealthStatus::Unhealthy => "unhealthy",
        HealthStatus::Unavailable => "unavailable",
    }
}

/// Every configured provider, checked in parallel, registered, in a stable order (creation
/// time, then id).
pub async fn views(
    configs: &[ProviderConfig],
    timeout: Duration,
) -> Result<Vec<ProviderView>, String> {
    let mut checks = tokio::task::JoinSet::new();
    for (i, config) in configs.iter().enumerate() {
        let config = config.clone();
        checks.spawn(async move { (i, check(&config, timeout).await) });
    }
    let mut checked = vec![None; configs.len()];
    while let Some(done) = checks.join_next().await {
        if let Ok((i, c)) = done {
            checked[i] = Some(c);
        }
    }
    let checked: Vec<Checked> = checked
        .into_iter()
        .map(|c| c.unwrap_or_else(|| Checked::new(HealthStatus::Unavailable, "the check failed")))
        .collect();
    let seen: Vec<store::Seen> = configs
        .iter()
        .zip(&checked)
        .map(|(c, h)| store::Seen {
            name: &c.name,
            provider_type: c.backend.as_str(),
            endpoint: c.endpoint(),
            answer: h.reached().then(|| health_name(&h.status)),
            checked: c.enabled,
        })
        .collect();
    let records = store::sync(&seen)?;
    let mut views: Vec<ProviderView> = configs
        .iter()
        .zip(checked)
        .zip(records)
        .map(|((config, health), record)| {
            let shown = remembered(&health, &record);
            let reason = match (&health.reason, record.failed_checks) {
                (Some(why), n)
                    if n > 0 && n < UNAVAILABLE_AFTER && record.last_answer.is_some() =>
                {
                    Some(format!(
                        "{why} ({n} of {UNAVAILABLE_AFTER} checks in a row unanswered)"
                    ))
                }
                (reason, _) => reason.clone(),
            };
            ProviderView {
                id: record.id,
                name: config.name.clone(),
                service_type: "vm".into(),
                provider_type: record.provider_type,
                endpoint: record.endpoint,
                schema_version: SCHEMA_VERSION.into(),
                status: record.status,
                health_status: shown.into(),
                health_reason: reason,
                capacity: health.capacity,
                allocation: health.allocation,
                groups: Vec::new(),
                enabled: config.enabled,
                create_time: record.create_time,
                update_time: record.update_time,
            }
        })
        .collect();
    views.sort_by(|a, b| (&a.create_time, &a.id).cmp(&(&b.create_time, &b.id)));
    Ok(views)
}

/// The clients of the user's kcli configuration that siteplan can drive and that no provider
/// of `named` (the providers file, or the defaults) already names: VMs may name them, so
/// `plan provider list` shows them too.
pub fn kcli_providers(named: &[ProviderConfig], kcli_off: bool) -> Vec<ProviderConfig> {
    let kcli = crate::manifest::kcli::KcliConfig::load(kcli_off);
    kcli.clients
        .iter()
        .filter(|(name, _)| !named.iter().any(|p| &p.name == *name))
        .filter_map(|(name, client)| from_kcli_client(name, client).ok())
        .collect()
}

/// The provider a client of the kcli configuration describes: a `kvm` client is a libvirt
/// connection, a `kubevirt` one a cluster, an `aws` one an account's EC2 in its region (with
/// its keys, when it holds them); kcli's other types are refused by name.
fn from_kcli_client(
    name: &str,
    client: &crate::manifest::yaml::Node,
) -> Result<ProviderConfig, String> {
    let text = |key: &str| {
        client
            .get(key)
            .and_then(crate::manifest::yaml::Node::key_text)
    };
    let mut config = match text("type").as_deref() {
        Some("kubevirt") => ProviderConfig {
            name: name.to_string(),
            backend: config::Backend::Kubevirt(config::KubevirtSettings {
                kubeconfig: text("kubeconfig").map(std::path::PathBuf::from),
                context: text("context"),
                namespace: text("namespace"),
                delete_timeout: None,
            }),
            ..ProviderConfig::sandbox(name)
        },
        Some("aws") => {
            let secret = |key: &str| {
                text(key).filter(|v| !v.is_empty()).map(|v| {
                    crate::secrets::register(&v);
                    crate::manifest::model::Secret::new(v)
                })
            };
            let kcli_keys = match (text("access_key_id"), secret("access_key_secret")) {
                (Some(access_key_id), Some(secret_key)) => {
                    Some(crate::provider::aws::settings::KcliKeys {
                        access_key_id,
                        secret: secret_key,
                        session_token: secret("session_token"),
                    })
                }
                _ => None,
            };
            ProviderConfig {
                name: name.to_string(),
                backend: config::Backend::Aws(crate::provider::aws::settings::AwsSettings {
                    region: text("region"),
                    profile: None,
                    endpoint: None,
                    availability_zone: text("zone"),
                    kcli_keys,
                }),
                ..ProviderConfig::sandbox(name)
            }
        }
        _ => {
            let uri = crate::manifest::kcli::libvirt_uri(client).map_err(|what| {
                format!("`{name}` in ~/.kcli/config.yml is {what}, which siteplan cannot drive")
            })?;
            ProviderConfig::libvirt(name, &uri)
        }
    };
    if let Some(pool) = text("pool") {
        config.pool = pool;
    }
    Ok(config)
}

/// A provider picked for (part of) a plan.
#[derive(Debug, Clone)]
pub struct Choice {
    pub config: ProviderConfig,
    /// Named in the providers file (or by a default name), rather than given as a URI.
    pub named: bool,
}

/// The providers to try, in order, for `choice`: a name from the providers file, `sandbox`, or
/// a libvirt URI; without one, the file's `default` (or its first enabled provider); without a
/// file, the local libvirt, then the sandbox when the local libvirt does not answer.
pub fn choose(choice: Option<&str>, kcli_off: bool) -> Result<Vec<Choice>, String> {
    let (file, found) = config::load()?;
    let named = |config: &ProviderConfig| -> Result<Vec<Choice>, String> {
        if !config.enabled {
            return Err(format!(
                "provider `{}` is disabled in the providers file",
                config.name
            ));
        }
        Ok(vec![Choice {
            config: config.clone(),
            named: true,
        }])
    };
    let unnamed = |config: ProviderConfig| Choice {
        config,
        named: false,
    };
    // Without a file, the defaults are named too: `local` (kcli's name for the local host) and
    // `sandbox`.
    if let Some(config) = choice.and_then(|c| file.providers.iter().find(|p| p.name == c)) {
        return named(config);
    }
    let kcli = crate::manifest::kcli::KcliConfig::load(kcli_off);
    match choice {
        Some("sandbox") => Ok(vec![unnamed(ProviderConfig::sandbox("sandbox"))]),
        Some(uri) if uri.contains(':') => Ok(vec![unnamed(ProviderConfig::libvirt("uri", uri))]),
        Some(name) if kcli.clients.contains_key(name) => {
            Ok(vec![unnamed(from_kcli_client(name, &kcli.clients[name])?)])
        }
        Some(other) => Err(format!(
            "no provider is named `{other}` (the providers file has: {}); give a name from it, \
             `sandbox`, or a libvirt URI",
            file.providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        // A kcli user's default client, when it is not the local libvirt siteplan tries anyway.
        None if found == config::Found::Defaults
            && kcli
                .default_client()
                .and_then(|c| Some(from_kcli_client(&c, kcli.clients.get(&c)?)))
                .is_some_and(|c| c.map_or(true, |c| c.endpoint() != config::local_uri())) =>
        {
            let name = kcli.default_client().unwrap_or_default();
            Ok(vec![unnamed(from_kcli_client(
                &name,
                &kcli.clients[&name],
            )?)])
        }
        // The local libvirt only: a plan never goes to the sandbox because libvirtd did not
        // answer (an apply would "succeed" there, and the lab would be nowhere).
        None if found == config::Found::Defaults => Ok(vec![unnamed(ProviderConfig::libvirt(
            "local",
            &config::local_uri(),
        ))]),
        None => {
            let default = match &file.default {
                Some(name) => file.providers.iter().find(|p| &p.name == name),
                None => file.providers.iter().find(|p| p.enabled),
            };
            match default {
                Some(config) => named(config),
                None => Err("the providers file has no enabled provider".into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_this_build_leaves_out_is_unavailable_whatever_it_said_before() {
        let record = store::Record {
            id: "p".into(),
            provider_type: "aws".into(),
            endpoint: "ec2".into(),
            status: "registered".into(),
            create_time: String::new(),
            update_time: String::new(),
            failed_checks: 0,
            last_answer: Some("ready".into()),
        };
        let silent = Checked::new(HealthStatus::Unavailable, "no answer within 5 s");
        assert_eq!(
            remembered(&silent, &record),
            "ready",
            "one silence is not enough"
        );
        let not_built = Checked {
            settled: true,
            ..Checked::new(HealthStatus::Unavailable, "this build has no aws backend")
        };
        assert_eq!(remembered(&not_built, &record), "unavailable");
    }

    fn client(text: &str) -> crate::manifest::yaml::Node {
        crate::manifest::yaml::parse(text).expect("yaml").0
    }

    #[test]
    fn a_kcli_aws_client_is_an_aws_provider_with_its_keys_never_shown() {
        let config = from_kcli_client(
            "cloud",
            &client(
                "type: aws\naccess_key_id: AKIDEXAMPLE\naccess_key_secret: s3cr3tv4lue\n\
                 region: eu-west-3\nzone: eu-west-3b\nkeypair: mine\n",
            ),
        )
        .expect("an aws provider");
        let config::Backend::Aws(aws) = &config.backend else {
            panic!("{config:?}");
        };
        assert_eq!(aws.region.as_deref(), Some("eu-west-3"));
        assert_eq!(aws.availability_zone.as_deref(), Some("eu-west-3b"));
        let keys = aws.kcli_keys.as_ref().expect("its keys");
        assert_eq!(keys.access_key_id, "AKIDEXAMPLE");
        assert_eq!(keys.secret.expose(), "s3cr3tv4lue");
        // Neither printed nor written.
        assert!(!format!("{config:?}").contains("s3cr3tv4lue"));
        let written = serde_json::to_string(&config).expect("json");
        assert!(!written.contains("s3cr3tv4lue") && !written.contains("AKIDEXAMPLE"));
        // Without keys: the SDK's chain.
        let config = from_kcli_client("cloud", &client("type: aws\nregion: us-east-1\n"))
            .expect("an aws provider");
        let config::Backend::Aws(aws) = &config.backend else {
            panic!("{config:?}");
        };
        assert!(aws.kcli_keys.is_none());
        // Types siteplan cannot drive are still refused by name.
        let refused = from_kcli_client("g", &client("type: gcp\n")).unwrap_err();
        assert!(refused.contains("type `gcp`"), "{refused}");
    }
}
