//! Saved plans: `plan diff --out PLANFILE` writes what was reviewed, and `plan apply PLANFILE`
//! applies exactly that, or refuses when the plan file, its parameters or the live state have
//! changed since. Each is recorded as a fingerprint (SHA-256), and apply checks them before it
//! plans again, then checks that planning again gives the very changes that were saved.
//!
//! A saved plan holds no secret: the reviewed diff is scrubbed, sensitive parameters are left
//! out of the recorded `-P` values (give them again to `apply`), and the parameter fingerprint
//! covers only the others. A changed secret still changes the seeds the plan makes, so the
//! final comparison of changes catches it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::render::json;
use super::Plan;
use crate::plan::model::Observed;
use crate::secrets;

/// The value of `saved_plan_version` in files this siteplan writes.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
pub struct SavedPlan {
    /// Marks the file as a saved plan, and its format.
    pub saved_plan_version: u32,
    /// The plan file, absolute.
    pub file: PathBuf,
    /// The plan's name (what marks its resources).
    pub name: String,
    /// `--provider` as given, if it was.
    pub provider: Option<String>,
    /// `--paramfile`s as given.
    pub paramfiles: Vec<PathBuf>,
    /// `--allow-read` paths as given (absolute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_read: Vec<PathBuf>,
    /// `--no-kcli-config` was given: the plan is read again without the kcli configuration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_kcli_config: bool,
    /// `-P` values as given, except those of sensitive parameters.
    pub params: Vec<String>,
    /// Sensitive parameters that were given with `-P`: `apply` needs them again.
    pub sensitive_params: Vec<String>,
    pub targets: Vec<String>,
    pub replace: Vec<String>,
    /// `--plan-moved` was given: the reviewed changes rewrite marks made from another file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan_moved: bool,
    pub fingerprints: Fingerprints,
    /// What was reviewed: the document `plan diff --format json` prints (kept as a JSON value,
    /// so that comparing it is comparing what was written).
    pub changes: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// The plan file's text.
    pub source: String,
    /// The parameters' values after parameter files and `-P` (sensitive ones left out).
    pub parameters: String,
    /// What the provider held of the plan's resources.
    pub live: String,
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub fn source_fingerprint(text: &str) -> String {
    sha256(text)
}

pub fn parameters_fingerprint(parameters: &BTreeMap<String, serde_json::Value>) -> String {
    let shown: BTreeMap<&String, &serde_json::Value> = parameters
        .iter()
        .filter(|(name, _)| !secrets::is_sensitive_name(name))
        .collect();
    sha256(&serde_json::to_string(&shown).unwrap_or_default())
}

/// What the providers held, as one digest. Digests of generated content are left out of it:
/// everything else the fingerprint covers can be known from a reviewed diff, so a digest over
/// them and a seed's digest would let a weak password be guessed offline. A seed changed
/// since the plan was saved is still caught when planning again gives other changes.
pub fn live_fingerprint(observed: &Observed) -> String {
    let mut text = String::new();
    let shown = |value: serde_json::Result<serde_json::Value>| {
        let mut value = value.unwrap_or_default();
        super::digests::blank(&mut value);
        value.to_string()
    };
    for (id, live) in &observed.resources {
        text.push_str(&format!(
            "{id}\t{}\t{}\t{}\t{:?}\n",
            shown(serde_json::to_value(&live.spec)),
            shown(serde_json::to_value(&live.owner)),
            live.active,
            live.empty
        ));
    }
    sha256(&text)
}

/// The `-P` values a saved plan may record, and the names of those it may not.
pub fn split_params(sets: &[String]) -> (Vec<String>, Vec<String>) {
    let mut kept = Vec::new();
    let mut sensitive = Vec::new();
    for set in sets {
        let name = set.split_once('=').map_or(set.as_str(), |(k, _)| k).trim();
        if secrets::is_sensitive_name(name) {
            sensitive.push(name.to_string());
        } else {
            kept.push(set.clone());
        }
    }
    (kept, sensitive)
}

impl SavedPlan {
    /// The file's text: JSON, scrubbed of secrets.
    pub fn to_text(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        secrets::scrub(&text)
    }

    /// `Some` when `text` is a saved plan (rather than a plan file).
    pub fn parse(text: &str) -> Option<Result<SavedPlan, String>> {
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        let version = value.get("saved_plan_version")?.as_u64()?;
        if version != u64::from(VERSION) {
            return Some(Err(format!(
                "this saved plan has format version {version}; this siteplan reads version {VERSION}"
            )));
        }
        Some(serde_json::from_value(value).map_err(|e| format!("a damaged saved plan: {e}")))
    }

    /// The parameters to read the plan with again: the saved ones, and the secret ones given
    /// on this command line (`given`), which a saved plan does not keep; an error names those
    /// that are missing.
    pub fn overrides(&self, given: &[String]) -> Result<crate::manifest::Overrides, String> {
        let (_, given_sensitive) = split_params(given);
        let missing: Vec<String> = self
            .sensitive_params
            .iter()
            .filter(|p| !given_sensitive.contains(p))
            .map(|m| format!("`-P {m}=…`"))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the plan was saved with {}, which a saved plan does not keep: give {} again with -P",
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            ));
        }
        let secret = given
            .iter()
            .filter(|p| split_params(std::slice::from_ref(p)).0.is_empty());
        Ok(crate::manifest::Overrides {
            paramfiles: self.paramfiles.clone(),
            sets: self.params.iter().chain(secret).cloned().collect(),
            name: Some(self.name.clone()),
            allow_read: self.allow_read.clone(),
            no_kcli_config: self.no_kcli_config,
        })
    }

    /// Whether planning again gave the changes that were reviewed.
    pub fn same_changes(&self, plan: &Plan) -> bool {
        // Compared as the saved file holds them: scrubbed.
        let now = serde_json::to_value(json::document(plan))
            .map(|v| secrets::scrub(&v.to_string()))
            .ok();
        now == Some(secrets::scrub(&self.changes.to_string()))
    }
}
