//! A backend kept in memory, for the test suite: it proves that a backend is a folder and a line
//! in the registration table (`backends!`), and that it needs only the core of `Provider`. It
//! is built for tests alone; its test drives the operations (`ops`) through a providers file
//! that names it, as a user's would.
//!
//! It holds the libvirt family's resources (it lowers a plan as libvirt does) in a process-wide
//! store per `store` name, so that every opening of one provider sees the same resources.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::settings::{Planning, Settings};
use super::{
    AddressQuery, Addresses, Done, Health, HealthStatus, LiveResource, Observed, Owner, OwnerMark,
    Provider, ProviderError, ResourceId, Scope, Spec,
};

/// The providers file's section for it: which store it holds its resources in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemorySettings {
    pub store: String,
}

type Store = BTreeMap<ResourceId, LiveResource>;

fn stores() -> &'static Mutex<BTreeMap<String, Store>> {
    static STORES: OnceLock<Mutex<BTreeMap<String, Store>>> = OnceLock::new();
    STORES.get_or_init(Mutex::default)
}

#[async_trait]
impl Settings for MemorySettings {
    fn endpoint(&self) -> String {
        format!("memory:{}", self.store)
    }

    fn planning(&self) -> Result<Planning, ProviderError> {
        Ok(Planning::libvirt(super::libvirt::rules::LibvirtRules))
    }

    async fn open(&self) -> Result<Arc<dyn Provider>, ProviderError> {
        Ok(Arc::new(Memory {
            store: self.store.clone(),
        }))
    }
}

pub struct Memory {
    store: String,
}

impl Memory {
    fn with<T>(&self, f: impl FnOnce(&mut Store) -> T) -> T {
        let mut stores = stores().lock().unwrap_or_else(|p| p.into_inner());
        f(stores.entry(self.store.clone()).or_default())
    }

    /// Everything the store `name` holds.
    pub fn held(name: &str) -> Store {
        let stores = stores().lock().unwrap_or_else(|p| p.into_inner());
        stores.get(name).cloned().unwrap_or_default()
    }

    fn owned(store: &Store, id: &ResourceId, owner: &Owner) -> Result<(), ProviderError> {
        match store.get(id) {
            None => Err(ProviderError::NotFound(id.clone())),
            Some(live) if live.owner.as_ref().is_some_and(|m| m.plan == owner.plan) => Ok(()),
            Some(_) => Err(ProviderError::NotOwned {
                id: id.clone(),
                plan: owner.plan.clone(),
            }),
        }
    }
}

fn live(spec: &Spec, owner: &Owner) -> LiveResource {
    LiveResource {
        spec: spec.clone(),
        owner: Some(OwnerMark {
            plan: owner.plan.clone(),
            spec: spec.clone(),
            prevent_destroy: owner.prevent_destroy,
            created: None,
            applied_from: owner.applied_from.clone(),
            group: owner.group.clone(),
        }),
        active: !matches!(spec, Spec::Vm(vm) if !vm.running),
        empty: None,
        pending_restart: Vec::new(),
        paused: false,
    }
}

fn done(id: ResourceId, what: &str) -> Done {
    Done {
        summary: format!("{id} {what}"),
        id,
        needs_reboot: false,
    }
}

#[async_trait]
impl Provider for Memory {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn endpoint(&self) -> String {
        format!("memory:{}", self.store)
    }

    async fn health(&self) -> Health {
        Health {
            status: HealthStatus::Ready,
            reason: None,
        }
    }

    async fn observe(&self, scope: &Scope) -> Result<Observed, ProviderError> {
        let resources = self.with(|store| {
            store
                .iter()
                .filter(|(id, live)| {
                    scope.ids.contains(id)
                        || live.owner.as_ref().is_some_and(|m| m.plan == scope.plan)
                })
                .map(|(id, live)| (id.clone(), live.clone()))
                .collect()
        });
        Ok(Observed {
            resources,
            ..Observed::default()
        })
    }

    fn lower(
        &self,
        intents: &crate::plan::intent::Intents,
    ) -> Result<crate::plan::model::desired::Desired, String> {
        super::libvirt::lower::libvirt(intents)
    }

    fn rules(&self) -> &dyn crate::plan::model::rules::Rules {
        &super::libvirt::rules::LibvirtRules
    }

    async fn create(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        self.with(|store| {
            if store.contains_key(&id) {
                return Err(ProviderError::backend(&id, "exists already"));
            }
            store.insert(id.clone(), live(spec, owner));
            Ok(done(id, "made"))
        })
    }

    async fn update(&self, spec: &Spec, owner: &Owner) -> Result<Done, ProviderError> {
        let id = spec.id();
        self.with(|store| {
            Memory::owned(store, &id, owner)?;
            store.insert(id.clone(), live(spec, owner));
            Ok(done(id, "changed"))
        })
    }

    async fn delete(&self, id: &ResourceId, owner: &Owner) -> Result<Done, ProviderError> {
        self.with(|store| {
            Memory::owned(store, id, owner)?;
            store.remove(id);
            Ok(done(id.clone(), "deleted"))
        })
    }

    async fn addresses(&self, _: &[AddressQuery]) -> Result<Addresses, ProviderError> {
        Ok(Addresses::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{Progress, Step};
    use crate::manifest::{self, Options};
    use crate::ops::{self, Answer, Event, Outcome, Refusal, Request, RunOptions, View};
    use crate::plan::{Change, Plan};

    /// Says yes, and keeps the warnings.
    #[derive(Default)]
    struct Yes {
        warnings: Mutex<Vec<String>>,
    }

    struct Quiet;

    impl Progress for Quiet {
        fn started(&self, _: &Change) {}
        fn finished(&self, _: &Step) {}
    }

    impl View for Yes {
        fn event(&self, event: Event<'_>) {
            if let Event::Warning(warning) = event {
                self.warnings.lock().unwrap().push(warning);
            }
        }
        fn confirm(&self, _: &Plan, _: bool) -> Answer {
            Answer::Yes
        }
        fn ask(&self, _: &str) -> Answer {
            Answer::Yes
        }
        fn progress(&self, _: usize) -> Arc<dyn Progress> {
            Arc::new(Quiet)
        }
    }

    const PLAN: &str = "\
memnet:
  type: network
  cidr: 192.168.150.0/24
mempool:
  type: pool
  path: /srv/memory/pool
memvm:
  pool: mempool
  memory: 512
  disks: [2]
  nets: [memnet]
";

    fn options() -> RunOptions {
        RunOptions {
            parallelism: 4,
            wait: None,
            restart: false,
            shutdown_timeout: None,
            interruption: ops::Interruption::default(),
            holder: "plan apply site.yml".into(),
        }
    }

    /// A backend added through the registration table alone takes a plan through apply, diff,
    /// the one refusal of a capability it lacks, and destroy.
    #[tokio::test]
    async fn a_backend_added_through_the_table_alone_runs_a_plan() {
        let tmp = tempfile::tempdir().expect("tmp");
        let providers = tmp.path().join("providers.yml");
        std::fs::write(
            &providers,
            "providers:\n  - name: mem\n    type: memory\n    store: table-test\n",
        )
        .expect("providers file");
        // No other unit test reads the providers file.
        std::env::set_var("SITEPLAN_PROVIDERS", &providers);
        let file = tmp.path().join("lab.yml");
        std::fs::write(&file, PLAN).expect("plan");
        let mut request = Request::new(&file, None);
        request.provider = Some("mem".into());
        request.overrides.no_kcli_config = true;
        let loaded = manifest::load(&file, &request.overrides, Options::default()).expect("loads");
        let view = Yes::default();

        let Ok(Outcome::Applied { report, .. }) =
            ops::apply(&request, &loaded, options(), &view).await
        else {
            panic!("applied");
        };
        assert_eq!(report.failed(), 0, "{report:?}");
        let held = Memory::held("table-test");
        for id in ["network/memnet", "pool/mempool", "vm/memvm"] {
            assert!(
                held.keys().any(|k| k.to_string() == id),
                "{id} in {:?}",
                held.keys().collect::<Vec<_>>()
            );
        }
        // It keeps no plan lock: said once, in the capability's words.
        assert!(
            view.warnings
                .lock()
                .unwrap()
                .iter()
                .any(|w| w.contains("the memory provider keeps no plan lock")),
            "{:?}",
            view.warnings
        );

        assert!(matches!(
            ops::diff(&request, &loaded, None, &view).await,
            Ok(Outcome::UpToDate { .. })
        ));

        let Err(refused) =
            ops::snapshot::create(&request, &loaded, "before", &[], &options(), &view).await
        else {
            panic!("a lab snapshot is refused");
        };
        let Refusal::Invalid(why) = refused else {
            panic!("refused as invalid: {refused:?}");
        };
        assert!(
            why.contains("the memory provider cannot take lab snapshots"),
            "{why}"
        );

        let Ok(Outcome::Applied { report, .. }) =
            ops::destroy(&request, &loaded, options(), &view).await
        else {
            panic!("destroyed");
        };
        assert_eq!(report.failed(), 0, "{report:?}");
        assert!(Memory::held("table-test").is_empty());
    }
}
