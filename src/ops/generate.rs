//! `plan generate`: chooses what a provider holds (VMs by name, everything on a network, a
//! plan by the name its marks give, kcli's or siteplan's), reads it, writes it as a plan
//! (`crate::generate`), and reads the plan back the way `plan diff` will, to say exactly what
//! it could not reproduce.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::cloudinit::{read_seed_file, SeedDocuments};
use crate::generate::{self, Found, Generated};
use crate::manifest;
use crate::plan::intent;
use crate::plan::model::spec::{ResourceId, Spec, VolumeSource};
use crate::plan::model::Disruption;
use crate::provider::capability::{self, Capability};
use crate::provider::{backends, Provider, Scope};
use crate::registry;

use super::Refusal;

/// What to write a plan of.
#[derive(Debug, Default)]
pub struct Chosen {
    pub vms: Vec<String>,
    /// Every VM on these networks, and the networks themselves.
    pub networks: Vec<String>,
    /// Every VM of these plans, as their marks say (siteplan's or kcli's).
    pub plans: Vec<String>,
}

/// The plan, and how it reads back.
#[derive(Debug)]
pub struct GeneratedPlan {
    pub generated: Generated,
    pub provider: String,
    pub vms: usize,
    pub networks: usize,
    pub pools: usize,
    pub images: usize,
    /// What the plan, read back, would still change of what was found: one line each. Empty
    /// when adopting it changes nothing but the marks.
    pub differences: Vec<String>,
}

/// Writes the plan of `chosen` on `provider`; `file` is where it will be written (its
/// directory is where the plan would read files from).
pub async fn generate(
    provider: Option<&str>,
    chosen: &Chosen,
    file: &Path,
    no_kcli_config: bool,
) -> Result<GeneratedPlan, Refusal> {
    if chosen.vms.is_empty() && chosen.networks.is_empty() && chosen.plans.is_empty() {
        return Err(Refusal::Invalid(
            "nothing was chosen: name VMs, or give --network NET or --plan NAME".into(),
        ));
    }
    let choice = registry::choose(provider, no_kcli_config)?
        .into_iter()
        .next()
        .ok_or_else(|| Refusal::Invalid("no provider".into()))?;
    let opened = backends::open(&choice.config.backend)
        .await
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    let provider: &dyn Provider = opened.as_ref();
    let shown = if choice.named {
        choice.config.name.clone()
    } else {
        choice.config.endpoint()
    };

    let vm_names = chosen_vms(provider, chosen).await?;
    let unusable: Vec<&String> = vm_names
        .iter()
        .filter(|n| !manifest::validate::usable_name(n))
        .collect();
    if !unusable.is_empty() {
        return Err(Refusal::Invalid(format!(
            "{} cannot name an entry of a plan (letters, digits, `-`, `_` and `.`, and not \
             `parameters`): rename the VM, or leave it out",
            unusable
                .iter()
                .map(|n| format!("vm `{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut ids: Vec<ResourceId> = vm_names.iter().map(|n| ResourceId::vm(n)).collect();
    ids.extend(chosen.networks.iter().map(|n| ResourceId::network(n)));
    let first = observe(provider, ids).await?;

    let mut found = Found {
        provider: format!("{} ({})", shown, provider.kind()),
        ..Found::default()
    };
    let mut missing = Vec::new();
    for name in &vm_names {
        match first.resources.get(&ResourceId::vm(name)).map(|l| &l.spec) {
            Some(Spec::Vm(vm)) => found.vms.push(vm.clone()),
            Some(_) => {
                return Err(Refusal::Invalid(format!(
                    "vm/{name} is a {} VM: `plan generate` writes plans of libvirt's VMs \
                     (libvirt and sandbox providers) only",
                    provider.kind()
                )))
            }
            None => missing.push(name.clone()),
        }
    }
    for net in &chosen.networks {
        if !first.resources.contains_key(&ResourceId::network(net)) {
            missing.push(format!("network {net}"));
        }
    }
    if !missing.is_empty() {
        return Err(Refusal::Invalid(format!(
            "not found on {shown}: {}",
            missing.join(", ")
        )));
    }

    // What the VMs use: their volumes, seeds, pools and networks; then the images their
    // disks are made from.
    let mut ids: Vec<ResourceId> = vm_names.iter().map(|n| ResourceId::vm(n)).collect();
    let mut used_networks = BTreeSet::new();
    let mut used_pools = BTreeSet::new();
    for vm in &found.vms {
        for disk in vm.disks.iter().filter(|d| !d.pool.is_empty()) {
            ids.push(ResourceId::volume(&disk.pool, &disk.volume));
            used_pools.insert(disk.pool.clone());
        }
        ids.extend(vm.seed.iter().map(|(p, v)| ResourceId::volume(p, v)));
        used_networks.extend(vm.nics.iter().map(|n| n.network.clone()));
    }
    ids.extend(used_networks.iter().map(|n| ResourceId::network(n)));
    ids.extend(chosen.networks.iter().map(|n| ResourceId::network(n)));
    ids.extend(used_pools.iter().map(|p| ResourceId::pool(p)));
    let disks = observe(provider, ids.clone()).await?;
    let mut images = BTreeSet::new();
    for resource in disks.resources.values() {
        if let Spec::Volume(volume) = &resource.spec {
            if let Some((pool, image)) = &volume.backing {
                images.insert(ResourceId::volume(pool, image));
                used_pools.insert(pool.clone());
            }
        }
    }
    ids.extend(images.iter().cloned());
    ids.extend(used_pools.iter().map(|p| ResourceId::pool(p)));
    let live = observe(provider, ids).await?;

    // A chosen plan's own pools and images are declared (a plan file lost is written again);
    // the others are only named.
    let chosen_plans = |owner: Option<&crate::plan::model::observed::OwnerMark>| {
        owner.is_some_and(|o| chosen.plans.contains(&o.plan))
    };
    for (id, resource) in &live.resources {
        match &resource.spec {
            // An image is declared with the URL its mark records; one without is only named.
            Spec::Volume(volume) if images.contains(id) => {
                let fetched = matches!(volume.source, VolumeSource::Fetch { .. });
                if fetched && chosen_plans(resource.owner.as_ref()) {
                    found.images.push(volume.clone());
                }
            }
            Spec::Volume(volume) => {
                found
                    .volumes
                    .insert((volume.pool.clone(), volume.name.clone()), volume.clone());
            }
            Spec::Pool(pool) if chosen_plans(resource.owner.as_ref()) => {
                found.pools.push(pool.clone());
            }
            _ => {}
        }
    }
    let declared = declared_networks(provider, chosen, &used_networks, &vm_names, &live).await?;
    for name in &declared {
        if let Some(Spec::Network(net)) = live
            .resources
            .get(&ResourceId::network(name))
            .map(|l| &l.spec)
        {
            found.networks.push(net.clone());
        }
    }
    for vm in &found.vms {
        let Some((pool, volume)) = &vm.seed else {
            continue;
        };
        if let Some(docs) = read_seed(provider, pool, volume).await {
            found.seeds.insert(vm.name.clone(), docs);
        }
    }

    let generated = generate::generate(&found);
    let differences = read_back(provider, &generated, file, no_kcli_config, &live)?;
    Ok(GeneratedPlan {
        provider: shown,
        vms: found.vms.len(),
        networks: found.networks.len(),
        pools: found.pools.len(),
        images: found.images.len(),
        generated,
        differences,
    })
}

/// The VMs chosen by name, by network and by plan, sorted and once each.
async fn chosen_vms(provider: &dyn Provider, chosen: &Chosen) -> Result<Vec<String>, Refusal> {
    let mut vms: BTreeSet<String> = chosen.vms.iter().cloned().collect();
    if !chosen.networks.is_empty() || !chosen.plans.is_empty() {
        let inventory = capability::require(provider.inventory(), provider, Capability::Inventory)
            .map_err(|e| Refusal::Invalid(e.to_string()))?;
        if !chosen.networks.is_empty() {
            let users = inventory
                .network_users(&chosen.networks)
                .await
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            vms.extend(users.into_iter().map(|u| u.vm));
        }
        if !chosen.plans.is_empty() {
            let members = inventory
                .plans()
                .await
                .map_err(|e| Refusal::Invalid(e.to_string()))?;
            let mut seen = BTreeSet::new();
            for member in members {
                if chosen.plans.contains(&member.plan) {
                    seen.insert(member.plan.clone());
                    vms.insert(member.vm);
                }
            }
            let unknown: Vec<&String> =
                chosen.plans.iter().filter(|p| !seen.contains(*p)).collect();
            if !unknown.is_empty() {
                return Err(Refusal::Invalid(format!(
                    "no VM on the provider belongs to plan {}: `plan list` shows the plans there",
                    unknown
                        .iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
    }
    Ok(vms.into_iter().collect())
}

/// The networks the plan makes: those chosen, and those its VMs use that nothing else uses,
/// nobody's plan made, and that are not libvirt's `default`. A network something else uses
/// is only named: destroying the plan must not cut anything else off.
async fn declared_networks(
    provider: &dyn Provider,
    chosen: &Chosen,
    used: &BTreeSet<String>,
    vms: &[String],
    live: &crate::plan::model::observed::Observed,
) -> Result<BTreeSet<String>, Refusal> {
    let mut declared: BTreeSet<String> = chosen.networks.iter().cloned().collect();
    let candidates: Vec<String> = used
        .iter()
        .filter(|n| *n != "default" && !declared.contains(*n))
        .filter(|n| {
            live.resources
                .get(&ResourceId::network(n))
                .is_some_and(|l| {
                    l.owner
                        .as_ref()
                        .is_none_or(|o| chosen.plans.contains(&o.plan))
                })
        })
        .cloned()
        .collect();
    if candidates.is_empty() {
        return Ok(declared);
    }
    let Some(inventory) = provider.inventory() else {
        return Ok(declared);
    };
    let users = inventory
        .network_users(&candidates)
        .await
        .map_err(|e| Refusal::Invalid(e.to_string()))?;
    let mut by_network: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for user in &users {
        by_network.entry(&user.network).or_default().push(&user.vm);
    }
    for net in &candidates {
        let only_ours = by_network
            .get(net.as_str())
            .is_none_or(|users| users.iter().all(|u| vms.iter().any(|v| v == u)));
        if only_ours {
            declared.insert(net.clone());
        }
    }
    Ok(declared)
}

async fn observe(
    provider: &dyn Provider,
    ids: Vec<ResourceId>,
) -> Result<crate::plan::model::observed::Observed, Refusal> {
    // No plan's marks are asked for: only what was named.
    let scope = Scope {
        plan: String::new(),
        ids,
    };
    provider
        .observe(&scope)
        .await
        .map_err(|e| Refusal::Invalid(e.to_string()))
}

/// A VM's seed documents, where the backend can read volumes and the volume is a seed.
async fn read_seed(provider: &dyn Provider, pool: &str, volume: &str) -> Option<SeedDocuments> {
    let bytes = provider
        .volume_content()?
        .read_volume(pool, volume)
        .await
        .ok()?;
    Some(SeedDocuments {
        user_data: read_seed_file(&bytes, "user-data").ok()?,
        meta_data: read_seed_file(&bytes, "meta-data").ok()?,
        network_config: read_seed_file(&bytes, "network-config").ok()?,
    })
}

/// Reads the plan as `plan diff` will (templated with the secrets found, lowered by the same
/// backend) and says what of each resource it would still change.
fn read_back(
    provider: &dyn Provider,
    generated: &Generated,
    file: &Path,
    no_kcli_config: bool,
    live: &crate::plan::model::observed::Observed,
) -> Result<Vec<String>, Refusal> {
    let overrides = manifest::Overrides {
        sets: generated
            .secrets
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        no_kcli_config,
        ..manifest::Overrides::default()
    };
    let failed = |why: String| {
        Refusal::Invalid(format!(
            "the plan written does not read back ({why}): this is siteplan's fault, please \
             report it"
        ))
    };
    let loaded = manifest::load_text(
        &generated.text,
        file,
        &overrides,
        manifest::Options::default(),
    )
    .map_err(|e| {
        failed(
            e.problems
                .iter()
                .map(|p| p.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    let name = manifest::default_plan_name(file);
    let intents = intent::intents(&loaded.manifest, &name, base).map_err(failed)?;
    let desired = provider.lower(&intents).map_err(failed)?;
    let mut differences = Vec::new();
    // What it names without declaring must be there, as `plan diff` will ask.
    for id in &desired.external {
        if !live.resources.contains_key(id) {
            differences.push(format!(
                "{id} is used but is not on the provider as such (a NIC on a host bridge \
                 rather than a libvirt network, a disk outside any pool): `plan diff` refuses \
                 the plan until it is"
            ));
        }
    }
    for want in &desired.resources {
        let id = want.spec.id();
        match live.resources.get(&id) {
            None => differences.push(format!("{id} would be made: it was not found")),
            Some(have) => {
                let changed = changed_attributes(&have.spec, &want.spec);
                if !changed.is_empty() {
                    differences.push(format!("{id}: {} would change", changed.join(", ")));
                }
            }
        }
    }
    // And what was written is what was found: each VM is in the plan as read back.
    for vm in live.resources.keys().filter(|id| id.kind.is_vm()) {
        if !desired.resources.iter().any(|r| r.spec.id() == *vm) {
            differences.push(format!("{vm} is not in the plan as it reads back"));
        }
    }
    Ok(differences)
}

/// The attributes of two specs of one resource that differ, as the planner finds them: a
/// scalar with what it is and what it would be, a list or a map by name only.
fn changed_attributes(have: &Spec, want: &Spec) -> Vec<String> {
    let shown = |v: &Option<serde_json::Value>| match v {
        None => Some("(none)".to_string()),
        Some(v) if !v.is_array() && !v.is_object() => Some(v.to_string()),
        Some(_) => None,
    };
    crate::plan::attributes(Some(have), Some(want), |_| Disruption::Live)
        .into_iter()
        .map(|a| match (shown(&a.before), shown(&a.after)) {
            (Some(from), Some(to)) => format!("{} ({from} → {to})", a.name),
            _ => a.name,
        })
        .collect()
}
