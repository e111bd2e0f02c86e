//! The providers file: which backends a user has, by name.
//!
//! Found in this order, the first that exists winning whole: the file `$SITEPLAN_PROVIDERS`
//! names, `siteplan-providers.yml` in the current directory (a project's own), then
//! `$XDG_CONFIG_HOME/siteplan/providers.yml`. Without any, the defaults: the local libvirt
//! (`qemu:///system`) and the sandbox.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::provider::backends::Backend;
pub use crate::provider::kubevirt::settings::KubevirtSettings;
pub use crate::provider::libvirt::settings::LibvirtSettings;
pub use crate::provider::sandbox::settings::SandboxSettings;

/// The providers file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvidersFile {
    /// The provider for entries that name none (`client:`); default: the first enabled one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// How long a health check may take, in seconds. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout: Option<u64>,
    pub providers: Vec<ProviderConfig>,
    /// Groups of libvirt hosts a plan targets as one (`--provider`, `client:`, `default:`):
    /// its VMs are placed on the hosts by capacity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupConfig>,
}

/// A group of libvirt hosts, each a provider of the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// How plans and commands name the group, as they name a provider.
    pub name: String,
    /// Its hosts: libvirt (or sandbox) providers of the file, by name. Where the order matters
    /// (two hosts with as much room), the first wins.
    pub hosts: Vec<String>,
}

impl ProvidersFile {
    /// The group `name` names, if it names one.
    pub fn group(&self, name: &str) -> Option<&GroupConfig> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The provider `name` names, if it names one.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The name a plan goes to when it names none: the file's `default` (a provider or a
    /// group), else its first enabled provider.
    pub fn default_name(&self) -> Option<&str> {
        match &self.default {
            Some(name) => Some(name),
            None => self
                .providers
                .iter()
                .find(|p| p.enabled)
                .map(|p| p.name.as_str()),
        }
    }
}

/// One provider: what every backend has, and its backend's own settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProviderConfig {
    /// How plans (`client:`) and commands (`--provider`) name it.
    pub name: String,
    #[serde(flatten)]
    pub backend: Backend,
    /// The pool whose absence makes the provider unhealthy. Default `default`.
    #[serde(default = "default_pool")]
    pub pool: String,
    /// A network whose absence makes the provider unhealthy, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// A disabled provider is listed but never used. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// At most this many changes at once on this provider (besides `--parallelism`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<usize>,
}

/// Where the sandbox lives by default: `$SITEPLAN_SANDBOX_DIR`, else the XDG state directory.
pub fn default_sandbox_dir() -> PathBuf {
    crate::provider::sandbox::settings::default_dir()
}

fn default_pool() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

impl ProviderConfig {
    fn new(name: &str, backend: Backend) -> Self {
        ProviderConfig {
            name: name.into(),
            backend,
            pool: default_pool(),
            network: None,
            enabled: true,
            parallelism: None,
        }
    }

    pub fn sandbox(name: &str) -> Self {
        ProviderConfig::new(name, Backend::Sandbox(SandboxSettings { dir: None }))
    }

    pub fn libvirt(name: &str, uri: &str) -> Self {
        ProviderConfig::new(
            name,
            Backend::Libvirt(LibvirtSettings {
                uri: uri.into(),
                verify_host_key: true,
                address: None,
            }),
        )
    }

    /// Where it is, for display (before it is opened: a KubeVirt provider's cluster URL is in
    /// its kubeconfig).
    pub fn endpoint(&self) -> String {
        self.backend.settings().endpoint()
    }
}

/// Where the providers file was found, if anywhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    File(PathBuf),
    Defaults,
}

/// The providers in effect, and where they came from.
pub fn load() -> Result<(ProvidersFile, Found), String> {
    for path in candidates() {
        if path.is_file() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let file = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            return Ok((file, Found::File(path)));
        }
    }
    if let Some(named) = std::env::var_os("SITEPLAN_PROVIDERS") {
        return Err(format!(
            "SITEPLAN_PROVIDERS names {}, which does not exist",
            Path::new(&named).display()
        ));
    }
    Ok((defaults(), Found::Defaults))
}

fn candidates() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(named) = std::env::var_os("SITEPLAN_PROVIDERS") {
        paths.push(PathBuf::from(named));
        return paths;
    }
    paths.push(PathBuf::from("siteplan-providers.yml"));
    if let Some(config) = crate::files::config_dir() {
        paths.push(config.join("providers.yml"));
    }
    paths
}

/// Checks what serde cannot: unknown keys (for the provider's own type), unique names, a
/// known default; and expands `~` and `$VARS` in paths. Every problem at once, one per line.
pub fn parse(text: &str) -> Result<ProvidersFile, String> {
    let mut file: ProvidersFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let raw: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    let entries = raw
        .get("providers")
        .and_then(|p| p.as_sequence())
        .cloned()
        .unwrap_or_default();
    for (entry, provider) in entries.iter().zip(&file.providers) {
        let known = keys_of(provider.backend.as_str());
        for key in entry.as_mapping().into_iter().flat_map(|m| m.keys()) {
            let key = key.as_str().unwrap_or_default();
            if !known.iter().any(|k| k == key) {
                problems.push(format!(
                    "provider `{}`: unknown field `{key}`; a {} provider takes: {}",
                    provider.name,
                    provider.backend.as_str(),
                    known.join(", ")
                ));
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    for p in &file.providers {
        if !names.insert(p.name.as_str()) {
            problems.push(format!("provider `{}` is named twice", p.name));
        }
    }
    let mut grouped = std::collections::BTreeSet::new();
    for group in &file.groups {
        if names.contains(group.name.as_str()) || !grouped.insert(group.name.as_str()) {
            problems.push(format!("group `{}` is named twice", group.name));
        }
        if group.hosts.is_empty() {
            problems.push(format!("group `{}` has no hosts", group.name));
        }
        let mut seen = std::collections::BTreeSet::new();
        for host in &group.hosts {
            if !seen.insert(host.as_str()) {
                problems.push(format!("group `{}` names `{host}` twice", group.name));
                continue;
            }
            match file.providers.iter().find(|p| &p.name == host) {
                None => problems.push(format!(
                    "group `{}`: `{host}` is no provider of the file",
                    group.name
                )),
                Some(p) if !matches!(p.backend, Backend::Libvirt(_) | Backend::Sandbox(_)) => {
                    problems.push(format!(
                        "group `{}`: `{host}` is a {} provider; a group is of libvirt hosts (a \
                         cluster places its VMs itself)",
                        group.name,
                        p.backend.as_str()
                    ))
                }
                Some(_) => {}
            }
        }
    }
    if let Some(default) = &file.default {
        if !names.contains(default.as_str()) && !grouped.contains(default.as_str()) {
            problems.push(format!(
                "`default: {default}` names no provider or group of the file"
            ));
        }
    }
    for provider in &mut file.providers {
        if let Err((key, e)) = provider.backend.settings_mut().expand_paths() {
            problems.push(format!("provider `{}`: `{key}`: {e}", provider.name));
        }
    }
    if problems.is_empty() {
        Ok(file)
    } else {
        Err(problems.join("\n"))
    }
}

/// The keys a provider of type `kind` may have, read from the schema so they cannot drift from
/// the types: the common ones and its backend's own.
fn keys_of(kind: &str) -> Vec<String> {
    let schema = serde_json::to_value(schemars::schema_for!(ProviderConfig)).unwrap_or_default();
    let names = |v: &serde_json::Value| -> Vec<String> {
        v.get("properties")
            .and_then(|p| p.as_object())
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut keys = names(&schema);
    for variant in schema
        .get("oneOf")
        .and_then(|o| o.as_array())
        .into_iter()
        .flatten()
    {
        let tag = variant
            .pointer("/properties/type/const")
            .and_then(|t| t.as_str());
        if tag == Some(kind) {
            keys.extend(names(variant));
            // The backend's own settings are a reference into the schema's definitions.
            if let Some(settings) = variant
                .get("$ref")
                .and_then(|r| r.as_str())
                .and_then(|r| schema.pointer(r.trim_start_matches('#')))
            {
                keys.extend(names(settings));
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// No file: the local libvirt and the sandbox.
pub fn defaults() -> ProvidersFile {
    ProvidersFile {
        default: None,
        health_timeout: None,
        providers: vec![
            ProviderConfig::libvirt("local", &local_uri()),
            ProviderConfig::sandbox("sandbox"),
        ],
        groups: Vec::new(),
    }
}

/// Where the local libvirt answers: `qemu:///system`, or `SITEPLAN_LOCAL_URI` (`qemu:///session`
/// for a user's own VMs).
pub fn local_uri() -> String {
    std::env::var("SITEPLAN_LOCAL_URI")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "qemu:///system".into())
}

/// `schemas/providers.schema.json`.
pub fn schema_text() -> String {
    let mut text =
        serde_json::to_string_pretty(&schemars::schema_for!(ProvidersFile)).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_and_its_mistakes() {
        let file = parse(
            "default: lab\nproviders:\n  - name: lab\n    type: libvirt\n    uri: qemu+ssh://root@lab1/system\n    verify_host_key: false\n  - name: play\n    type: sandbox\n    parallelism: 4\n",
        )
        .expect("parses");
        assert_eq!(file.providers.len(), 2);
        let Backend::Libvirt(lab) = &file.providers[0].backend else {
            panic!("lab is a libvirt provider: {:?}", file.providers[0]);
        };
        assert_eq!(lab.connect_uri(), "qemu+ssh://root@lab1/system?no_verify=1");
        assert_eq!(file.providers[1].parallelism, Some(4));
        assert!(file.providers[1].enabled);
        for (bad, says) in [
            (
                "providers:\n  - name: a\n    type: libvirt\n",
                "missing field `uri`",
            ),
            (
                "providers:\n  - {name: a, type: sandbox}\n  - {name: a, type: sandbox}\n",
                "named twice",
            ),
            (
                "default: b\nproviders:\n  - {name: a, type: sandbox}\n",
                "names no provider",
            ),
            (
                "providers:\n  - {name: a, type: vmware}\n",
                "unknown variant",
            ),
            (
                "providers:\n  - {name: a, type: sandbox}\ngroups:\n  - {name: a, hosts: [a]}\n",
                "group `a` is named twice",
            ),
            (
                "providers:\n  - {name: a, type: sandbox}\ngroups:\n  - {name: g, hosts: [a, b, a]}\n",
                "group `g`: `b` is no provider of the file",
            ),
            (
                "providers:\n  - {name: a, type: sandbox}\ngroups:\n  - {name: g, hosts: [a, a]}\n",
                "group `g` names `a` twice",
            ),
            (
                "providers:\n  - {name: k, type: kubevirt}\ngroups:\n  - {name: g, hosts: [k]}\n",
                "group `g`: `k` is a kubevirt provider; a group is of libvirt hosts",
            ),
            (
                "providers:\n  - {name: a, type: sandbox}\ngroups:\n  - {name: g, hosts: []}\n",
                "group `g` has no hosts",
            ),
            (
                "providers:\n  - {name: a, type: sandbox, colour: red}\n",
                "provider `a`: unknown field `colour`; a sandbox provider takes: dir, enabled, name, network, parallelism, pool, type",
            ),
            (
                "providers:\n  - {name: a, type: sandbox, uri: 'qemu:///system'}\n",
                "unknown field `uri`",
            ),
            (
                "providers:\n  - {name: k, type: kubevirt, uri: 'https://k8s:6443'}\n",
                "a kubevirt provider takes: context, delete_timeout, enabled, kubeconfig, name, namespace, network, parallelism, pool, type",
            ),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
