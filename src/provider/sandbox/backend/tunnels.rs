//! The sandbox's tunnels: no host runs commands for it, so a tunnel is its mark, kept in the
//! sandbox's directory, and is there whole as long as the mark is.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::plan::model::spec::{Spec, TunnelSpec};
use crate::provider::libvirt::tunnels::{Device, Found, HookRuns, HostLinks};
use crate::provider::OwnerMark;

/// Each tunnel's mark, by network.
pub(super) struct Tunnels {
    pub(super) file: PathBuf,
}

impl Tunnels {
    fn read(&self) -> Result<BTreeMap<String, OwnerMark>, String> {
        match std::fs::read(&self.file) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", self.file.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("{}: {e}", self.file.display())),
        }
    }

    fn write(&self, tunnels: &BTreeMap<String, OwnerMark>) -> Result<(), String> {
        let text = serde_json::to_vec_pretty(tunnels).map_err(|e| e.to_string())?;
        crate::files::write_atomic(&self.file, &text)
            .map_err(|e| format!("{}: {e}", self.file.display()))
    }
}

impl HostLinks for Tunnels {
    fn up(&self, spec: &TunnelSpec, mark: &OwnerMark) -> Result<HookRuns, String> {
        let mut tunnels = self.read()?;
        tunnels.insert(spec.network.clone(), mark.clone());
        self.write(&tunnels)?;
        Ok(HookRuns::Yes)
    }

    fn down(&self, spec: &TunnelSpec) -> Result<(), String> {
        let mut tunnels = self.read()?;
        tunnels.remove(&spec.network);
        self.write(&tunnels)
    }

    fn probe(&self) -> Result<Vec<Found>, String> {
        Ok(self
            .read()?
            .into_values()
            .filter_map(|mark| {
                let Spec::Tunnel(spec) = &mark.spec else {
                    return None;
                };
                let device = Device {
                    vni: spec.vni,
                    local: spec.local.clone(),
                    master: Some(spec.bridge.clone()),
                    peers: spec.peers.clone(),
                };
                Some(Found {
                    device: Some(device),
                    mark,
                })
            })
            .collect())
    }
}
