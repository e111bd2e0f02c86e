//! Ownership of pools and volumes, which have no `<metadata>` in libvirt.
//!
//! Each pool that siteplan touches holds one small raw volume, `siteplan-ledger.json`, listing
//! which plan created the pool itself and which of its volumes, each with the spec it was created
//! from. It lives on the backend, so it works for remote hosts and needs no local state file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::provider::OwnerMark;

pub const LEDGER_VOLUME: &str = "siteplan-ledger.json";
/// The ledger's volume size; content is JSON padded with zero bytes.
pub const LEDGER_CAPACITY: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    #[serde(default)]
    pub format: u32,
    /// The plan that created the pool, if siteplan did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<OwnerMark>,
    #[serde(default)]
    pub volumes: BTreeMap<String, OwnerMark>,
}

impl Ledger {
    pub fn from_bytes(bytes: &[u8]) -> Result<Ledger, String> {
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        if end == 0 {
            return Ok(Ledger::default());
        }
        serde_json::from_slice(&bytes[..end])
            .map_err(|e| format!("the pool's ownership ledger is unreadable: {e}"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut ledger = self.clone();
        ledger.format = 1;
        serde_json::to_vec_pretty(&ledger).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.pool.is_none() && self.volumes.is_empty()
    }
}
