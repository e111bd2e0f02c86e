//! The providers file: which backends a user has, by name.
//!
//! Found in this order, the first that exists winning whole: the file `$SITEPLAN_PROVIDERS`
//! names, `siteplan-providers.yml` in the current directory (a project's own), then
//! `$XDG_CONFIG_HOME/siteplan/providers.yml`. Without any, the defaults: the local libvirt
//! (`qemu:///system`) and the sandbox.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
}

/// One provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// How plans (`client:`) and commands (`--provider`) name it.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ProviderType,
    /// libvirt: the connection URI (`qemu:///system`, `qemu+ssh://root@lab1/system`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// sandbox: its directory; default `$XDG_STATE_HOME/siteplan/sandbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
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
    /// Over ssh, check the host's key against known_hosts. Default true; false adds
    /// `no_verify=1` to the URI.
    #[serde(default = "yes")]
    pub verify_host_key: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    Libvirt,
    Sandbox,
}

impl ProviderType {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Libvirt => "libvirt",
            ProviderType::Sandbox => "sandbox",
        }
    }
}

/// Where the sandbox lives by default: `$SITEPLAN_SANDBOX_DIR`, else the XDG state directory.
pub fn default_sandbox_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SITEPLAN_SANDBOX_DIR") {
        return PathBuf::from(dir);
    }
    crate::files::state_dir().join("sandbox")
}

fn default_pool() -> String {
    "default".into()
}

fn yes() -> bool {
    true
}

impl ProviderConfig {
    pub fn sandbox(name: &str) -> Self {
        ProviderConfig {
            name: name.into(),
            kind: ProviderType::Sandbox,
            uri: None,
            dir: None,
            pool: default_pool(),
            network: None,
            enabled: true,
            parallelism: None,
            verify_host_key: true,
        }
    }

    pub fn libvirt(name: &str, uri: &str) -> Self {
        ProviderConfig {
            kind: ProviderType::Libvirt,
            uri: Some(uri.into()),
            ..ProviderConfig::sandbox(name)
        }
    }

    /// The URI to connect to (libvirt), with host-key checking turned off only when asked.
    pub fn connect_uri(&self) -> Option<String> {
        let uri = self.uri.clone()?;
        if self.verify_host_key || !uri.contains("+ssh") || uri.contains("no_verify=") {
            return Some(uri);
        }
        let joiner = if uri.contains('?') { '&' } else { '?' };
        Some(format!("{uri}{joiner}no_verify=1"))
    }

    /// Where it is, for display.
    pub fn endpoint(&self) -> String {
        match self.kind {
            ProviderType::Libvirt => self.uri.clone().unwrap_or_default(),
            ProviderType::Sandbox => self
                .dir
                .clone()
                .unwrap_or_else(default_sandbox_dir)
                .display()
                .to_string(),
        }
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

/// Checks what serde cannot: unique names, a URI where one is needed, a known default.
pub fn parse(text: &str) -> Result<ProvidersFile, String> {
    let file: ProvidersFile = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut names = std::collections::BTreeSet::new();
    for p in &file.providers {
        if !names.insert(p.name.as_str()) {
            return Err(format!("provider `{}` is named twice", p.name));
        }
        if p.kind == ProviderType::Libvirt && p.uri.is_none() {
            return Err(format!("provider `{}` (libvirt) has no `uri`", p.name));
        }
    }
    if let Some(default) = &file.default {
        if !names.contains(default.as_str()) {
            return Err(format!(
                "`default: {default}` names no provider of the file"
            ));
        }
    }
    Ok(file)
}

/// No file: the local libvirt and the sandbox.
pub fn defaults() -> ProvidersFile {
    ProvidersFile {
        default: None,
        health_timeout: None,
        providers: vec![
            ProviderConfig::libvirt("local", "qemu:///system"),
            ProviderConfig::sandbox("sandbox"),
        ],
    }
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
        assert_eq!(
            file.providers[0].connect_uri().as_deref(),
            Some("qemu+ssh://root@lab1/system?no_verify=1")
        );
        assert_eq!(file.providers[1].parallelism, Some(4));
        assert!(file.providers[1].enabled);
        for (bad, says) in [
            (
                "providers:\n  - name: a\n    type: libvirt\n",
                "has no `uri`",
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
                "providers:\n  - {name: a, type: sandbox, colour: red}\n",
                "unknown field",
            ),
        ] {
            let e = parse(bad).expect_err(bad);
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn host_keys_are_checked_unless_told_not_to() {
        let p = ProviderConfig::libvirt("a", "qemu+ssh://h/system");
        assert_eq!(p.connect_uri().as_deref(), Some("qemu+ssh://h/system"));
    }
}
