//! Observing a namespace: each kind by the plan's label, storage classes as pools, and what a
//! VM's marks, its instance and its `RestartRequired` condition say of it.

use super::*;

impl KubevirtProvider {
    pub(super) async fn observe_all(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let mut observed = Observed::default();
        let named = |kind: ResourceKind| -> Vec<String> {
            scope
                .ids
                .iter()
                .filter(|id| {
                    id.kind == kind
                        || (kind == kinds::VIRTUAL_MACHINE && id.kind == ResourceKind::VM)
                })
                .map(|id| id.name.clone())
                .collect()
        };
        let lists = futures::future::join_all(
            KINDS
                .iter()
                .map(|kind| self.list(*kind, &scope.plan, named(*kind))),
        )
        .await;
        for (kind, list) in KINDS.iter().zip(lists) {
            for live in list? {
                // Being deleted (a foreground delete waiting on what it owns, a finalizer): it
                // is going, and a plan that wants it makes it again once it is gone.
                if !live["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                let owner = mark_of(*kind, &live);
                let made_from = owner.as_ref().and_then(|m| match &m.spec {
                    Spec::Object(o) => Some(o),
                    _ => None,
                });
                let spec = objects::read_back(*kind, &live, made_from);
                let active = *kind != kinds::VIRTUAL_MACHINE || runs(&live);
                let pending_restart = match restart_required(&live).filter(|_| active) {
                    // Only then is the instance asked for (one GET), to say what waits.
                    Some(message) => {
                        let vmi = self.instance(&spec.name).await;
                        pending_of(&spec, vmi.as_ref(), &message)
                    }
                    None => Vec::new(),
                };
                let resource = LiveResource {
                    spec: Spec::Object(spec),
                    owner,
                    active,
                    empty: None,
                    pending_restart,
                    paused: live["status"]["printableStatus"] == "Paused",
                };
                let name = live["metadata"]["name"].as_str().unwrap_or_default();
                if *kind == kinds::VIRTUAL_MACHINE && scope.ids.contains(&ResourceId::vm(name)) {
                    observed
                        .resources
                        .insert(ResourceId::vm(name), resource.clone());
                }
                let id = resource.spec.id();
                observed.resources.insert(id, resource);
            }
        }
        // Images the plan does not declare are PVCs that must exist.
        let images: Vec<&ResourceId> = scope
            .ids
            .iter()
            .filter(|id| id.kind == kinds::DATA_VOLUME && !observed.resources.contains_key(id))
            .collect();
        if !images.is_empty() {
            let claims =
                Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &self.namespace)
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| {
                        ProviderError::Connection(format!("listing PVCs: {}", Said(&e)))
                    })?;
            for id in images {
                if claims
                    .iter()
                    .any(|c| c.metadata.name.as_deref() == Some(&id.name))
                {
                    observed.resources.insert(
                        id.clone(),
                        LiveResource {
                            spec: Spec::Object(ObjectSpec {
                                object: kinds::DATA_VOLUME,
                                name: id.name.clone(),
                                fields: Default::default(),
                                secret_data: Default::default(),
                            }),
                            owner: None,
                            active: true,
                            empty: None,
                            pending_restart: Vec::new(),
                            paused: false,
                        },
                    );
                }
            }
        }
        if scope.ids.iter().any(|id| id.kind == ResourceKind::POOL) {
            let classes = self.storage_classes().await?;
            for id in &scope.ids {
                if id.kind == ResourceKind::POOL && classes.contains(&id.name) {
                    observed.resources.insert(
                        id.clone(),
                        LiveResource {
                            spec: Spec::Pool(PoolSpec {
                                name: id.name.clone(),
                                path: String::new(),
                                autostart: true,
                            }),
                            owner: None,
                            active: true,
                            empty: None,
                            pending_restart: Vec::new(),
                            paused: false,
                        },
                    );
                }
            }
        }
        Ok(observed)
    }
}

/// What a live object's labels and annotations say: the plan that made it, from what.
pub(super) fn mark_of(kind: ResourceKind, live: &Value) -> Option<OwnerMark> {
    let plan = live["metadata"]["labels"][PLAN_LABEL].as_str()?;
    let annotations = &live["metadata"]["annotations"];
    let fields = annotations[CREATED_FROM]
        .as_str()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default();
    Some(OwnerMark {
        plan: plan.to_string(),
        spec: Spec::Object(ObjectSpec {
            object: kind,
            name: live["metadata"]["name"].as_str().unwrap_or_default().into(),
            fields,
            secret_data: Default::default(),
        }),
        prevent_destroy: annotations[PREVENT_DESTROY].as_str() == Some("true"),
        applied_from: annotations[objects::APPLIED_FROM]
            .as_str()
            .map(str::to_string),
        // A cluster places its VMs itself: no group of hosts does.
        group: None,
        created: live["metadata"]["creationTimestamp"]
            .as_str()
            .map(str::to_string),
    })
}

/// Whether a live VirtualMachine runs, or is on its way (what `start` asks for).
/// KubeVirt's `RestartRequired` condition: the VM's template changed in a way the running
/// instance cannot take. Its message, when it is set.
pub(super) fn restart_required(live: &Value) -> Option<String> {
    live["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "RestartRequired" && c["status"] == "True")
        .map(|c| {
            c["message"]
                .as_str()
                .unwrap_or("restart required")
                .to_string()
        })
}

/// What a VM that waits for a restart waits with: the fields siteplan set in its template
/// whose value the running instance does not have (scalars only: KubeVirt fills lists in an
/// instance with defaults), or the condition itself when no field tells.
pub(super) fn pending_of(spec: &ObjectSpec, vmi: Option<&Value>, message: &str) -> Vec<Pending> {
    const TEMPLATE: &str = "spec.template.spec.";
    let mut pending = Vec::new();
    if let Some(vmi) = vmi {
        for (path, defined) in &spec.fields {
            let Some(rest) = path.strip_prefix(TEMPLATE) else {
                continue;
            };
            if defined.is_array() || defined.is_object() {
                continue;
            }
            let running = rest.split('.').fold(&vmi["spec"], |node, part| &node[part]);
            if running != defined {
                pending.push(Pending {
                    attribute: path.clone(),
                    running: Some(running.clone()),
                    defined: Some(defined.clone()),
                });
            }
        }
    }
    if pending.is_empty() {
        pending.push(Pending {
            attribute: "RestartRequired".into(),
            running: None,
            defined: Some(message.into()),
        });
    }
    pending
}

pub(super) fn runs(live: &Value) -> bool {
    // What KubeVirt says of it: a VM it has not reported on (no status yet, or no KubeVirt
    // controller at work) does not run, whatever its `runStrategy` asks.
    matches!(
        live["status"]["printableStatus"].as_str(),
        Some("Running" | "Migrating" | "Paused")
    )
}
