//! What siteplan remembers of the providers it has met: a stable id and when each was first
//! registered and last updated. A small JSON file under `$XDG_STATE_HOME/siteplan/`, rewritten
//! atomically (written aside, then renamed).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoreFile {
    /// By provider name.
    providers: BTreeMap<String, Record>,
}

/// One provider as remembered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// `libvirt`, `sandbox`.
    pub provider_type: String,
    pub endpoint: String,
    /// `registered` once siteplan has reached it; `configured` until then.
    pub status: String,
    pub create_time: String,
    pub update_time: String,
    /// Health checks in a row that got no answer (DCM's model: unavailable after three).
    #[serde(default)]
    pub failed_checks: u32,
    /// What the last check that got an answer said: `ready` or `unhealthy`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_answer: Option<String>,
}

/// The store's file.
pub fn path() -> PathBuf {
    crate::files::state_dir().join("providers.json")
}

pub fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// What is known of each provider: (name, type, endpoint, what its health check said now).
pub struct Seen<'a> {
    pub name: &'a str,
    pub provider_type: &'a str,
    pub endpoint: String,
    /// `ready` or `unhealthy` when it answered; `None` when it did not.
    pub answer: Option<&'static str>,
    /// Whether it was checked at all (a disabled provider is not).
    pub checked: bool,
}

/// Brings the store up to date with what was just seen, and returns each provider's record
/// (in the order given). A provider met for the first time gets its id now.
pub fn sync(seen: &[Seen]) -> Result<Vec<Record>, String> {
    let path = path();
    let mut store: StoreFile = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} is damaged ({e}); remove it to start over",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoreFile::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let mut changed = false;
    let mut records = Vec::new();
    for s in seen {
        let time = now();
        let record = store
            .providers
            .entry(s.name.to_string())
            .or_insert_with(|| {
                changed = true;
                Record {
                    id: uuid::Uuid::new_v4().to_string(),
                    provider_type: s.provider_type.to_string(),
                    endpoint: s.endpoint.clone(),
                    status: "configured".into(),
                    create_time: time.clone(),
                    update_time: time.clone(),
                    failed_checks: 0,
                    last_answer: None,
                }
            });
        if s.checked {
            match s.answer {
                Some(answer) => {
                    changed |=
                        record.failed_checks != 0 || record.last_answer.as_deref() != Some(answer);
                    record.failed_checks = 0;
                    record.last_answer = Some(answer.to_string());
                }
                None => {
                    record.failed_checks = record.failed_checks.saturating_add(1);
                    changed = true;
                }
            }
        }
        let status = if s.answer.is_some() || record.status == "registered" {
            "registered"
        } else {
            "configured"
        };
        if record.endpoint != s.endpoint
            || record.provider_type != s.provider_type
            || record.status != status
        {
            record.endpoint = s.endpoint.clone();
            record.provider_type = s.provider_type.to_string();
            record.status = status.to_string();
            record.update_time = time;
            changed = true;
        }
        records.push(record.clone());
    }
    if changed {
        write(&path, &store)?;
    }
    Ok(records)
}

fn write(path: &std::path::Path, store: &StoreFile) -> Result<(), String> {
    let text = serde_json::to_string_pretty(store).unwrap_or_default();
    crate::files::write_atomic(path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
