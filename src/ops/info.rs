//! `plan info`: one VM of the plan as it is live, with kcli's info fields.

use serde::Serialize;

use super::outcome::{Hint, Refusal, VmState};
use super::request::Request;
use super::session::{Goal, Session};
use super::view::View;
use crate::manifest::model::EntryKind;
use crate::manifest::Loaded;
use crate::plan::model::spec::{ResourceId, Spec};

#[derive(Debug, Serialize)]
pub struct VmInfo {
    pub name: String,
    pub plan: String,
    pub provider: String,
    /// The group of hosts whose placement put it there, as its mark records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub state: String,
    pub autostart: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// A running VM's addresses, each with where it comes from.
    pub addresses: Vec<super::outcome::ShownAddress>,
    pub memory_mib: Option<u64>,
    pub cpus: Option<u64>,
    /// When siteplan created it (RFC 3339), when the provider says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub nics: Vec<NicInfo>,
    pub disks: Vec<DiskInfo>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<String>,
    /// Those of `snapshots` that are lab snapshots of the plan (`plan snapshot create`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lab_snapshots: Vec<String>,
    /// Attributes saved but not running yet, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_restart: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct NicInfo {
    pub mac: Option<String>,
    pub network: String,
    pub model: String,
}

#[derive(Debug, Serialize)]
pub struct DiskInfo {
    /// `pool/volume`.
    pub volume: String,
    pub bus: String,
    pub size_bytes: Option<u64>,
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

fn word(value: impl Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The VM `vm` of the plan, as its provider holds it. A name the plan does not have, a VM not
/// created yet, and a VM another plan created are refused, saying so.
pub async fn info(
    request: &Request,
    loaded: &Loaded,
    vm: &str,
    view: &dyn View,
) -> Result<VmInfo, Refusal> {
    let session = Session::open(loaded, Goal::Converge, request, view).await?;
    let (index, site) = session.site_of_vm(vm)?;
    let everywhere = session.observe(view).await?;
    let observed = &everywhere[index];
    let id = site
        .desired
        .resources
        .iter()
        .map(|r| r.spec.id())
        .find(|id| id.name == vm && id.kind.is_vm())
        .unwrap_or_else(|| ResourceId::vm(vm));
    let Some(live) = observed.get(&id) else {
        return Err(
            Refusal::Invalid(format!("{id} does not exist on {}", site.shown()))
                .hint(vec![Hint::Apply]),
        );
    };
    match &live.owner {
        Some(mark) if mark.plan == request.name => {}
        Some(mark) => {
            return Err(Refusal::Invalid(format!(
                "{id} on {} belongs to plan `{}`, not `{}`",
                site.shown(),
                mark.plan,
                request.name
            )))
        }
        None => {
            return Err(Refusal::Invalid(format!(
                "{id} on {} was not created by siteplan",
                site.shown()
            )))
        }
    }
    let provider = site.opened.provider.clone();
    // A backend that keeps no inventory has nothing to show beyond the spec.
    let details = match provider.inventory() {
        Some(inventory) => inventory
            .details(vm)
            .await
            .map_err(|e| Refusal::Invalid(e.to_string()))?,
        None => crate::provider::VmDetails::default(),
    };
    let row = session
        .vms_seen(&everywhere)
        .await
        .into_iter()
        .find(|r| r.name == vm);
    let model = loaded.manifest.get(vm).and_then(|e| match &e.kind {
        EntryKind::Vm(vm) => Some(vm),
        _ => None,
    });
    let mut info = VmInfo {
        name: vm.to_string(),
        plan: request.name.clone(),
        provider: site.shown(),
        group: live.owner.as_ref().and_then(|m| m.group.clone()),
        state: row
            .as_ref()
            .map_or(VmState::Missing, |r| r.state)
            .as_str()
            .to_string(),
        autostart: None,
        profile: model
            .and_then(|m| m.profile.as_ref())
            .map(|r| r.name.clone()),
        image: model.and_then(|m| m.image.as_ref()).map(|r| r.name.clone()),
        addresses: row.map(|r| r.addresses.clone()).unwrap_or_default(),
        memory_mib: None,
        cpus: None,
        created: live.owner.as_ref().and_then(|m| m.created.clone()),
        nics: Vec::new(),
        disks: Vec::new(),
        snapshots: details.snapshots.clone(),
        lab_snapshots: details.lab_snapshots.clone(),
        pending_restart: live
            .pending_restart
            .iter()
            .map(|p| p.attribute.clone())
            .collect(),
    };
    match &live.spec {
        Spec::Vm(spec) => {
            info.autostart = Some(spec.autostart);
            info.memory_mib = Some(spec.memory_mib);
            info.cpus = Some(u64::from(spec.vcpus));
            info.nics = spec
                .nics
                .iter()
                .map(|n| NicInfo {
                    mac: n.mac.clone(),
                    network: n.network.clone(),
                    model: n.model.clone(),
                })
                .collect();
            info.disks = spec
                .disks
                .iter()
                .map(|d| {
                    let volume = observed.get(&ResourceId::volume(&d.pool, &d.volume));
                    let (size_bytes, format) = match volume.map(|v| &v.spec) {
                        Some(Spec::Volume(v)) => (v.capacity_bytes, Some(word(v.format))),
                        _ => (None, None),
                    };
                    let key = format!("{}/{}", d.pool, d.volume);
                    DiskInfo {
                        path: details.disk_paths.get(&key).cloned(),
                        volume: key,
                        bus: word(d.bus),
                        size_bytes,
                        format,
                    }
                })
                .collect();
        }
        // KubeVirt: what its fields say.
        Spec::Object(object) => {
            let field = |path: &str| object.fields.get(path);
            info.cpus = field("spec.template.spec.domain.cpu.cores").and_then(|v| v.as_u64());
            info.memory_mib = field("spec.template.spec.domain.memory.guest")
                .and_then(|v| v.as_str())
                .and_then(|s| s.strip_suffix("Mi"))
                .and_then(|s| s.parse().ok());
        }
        _ => {}
    }
    // What the spec does not hold, the backend may say (a cloud's instance type).
    info.memory_mib = info.memory_mib.or(details.memory_mib);
    info.cpus = info.cpus.or(details.cpus);
    if info.disks.is_empty() {
        info.disks = details
            .disks
            .into_iter()
            .map(|d| DiskInfo {
                volume: d.name,
                bus: d.attached,
                size_bytes: d.size_bytes,
                format: d.format,
                path: d.path,
            })
            .collect();
    }
    if info.nics.is_empty() {
        info.nics = details
            .nics
            .into_iter()
            .map(|n| NicInfo {
                mac: n.mac,
                network: n.network,
                model: n.model,
            })
            .collect();
    }
    Ok(info)
}
