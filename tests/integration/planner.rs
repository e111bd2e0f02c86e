//! The planner, data-driven: each directory of `tests/plans/` is a case. `before.yml` (if any)
//! is the version of the plan that was applied, `state.yml` (if any) says how the live state
//! differs from that, `plan.yml` is the plan now; the plan's rendered diff (or its refusal) is
//! checked against a snapshot beside them, one per backend family: `diff.snap` as the libvirt
//! family lowers and plans it (libvirt's rules), `kubevirt.snap` as KubeVirt does (its objects
//! and its rules). A new case is a new directory, named in `cases!` (a test fails until it
//! is); `cargo insta review` accepts its first snapshots. Each case on each backend is a test of
//! its own (`planner::CASE::libvirt`, `planner::CASE::kubevirt`).
//!
//! `state.yml` keys, each a list of addresses (`vm/web1`, `volume/default/web1_0.img`):
//! `stopped` (not running), `guarded` (the mark recorded `prevent_destroy`), `unmarked` (exists
//! with no plan's mark, empty), `holding` (unmarked and not empty), `foreign` (marked by plan
//! `other`); `unmarked_by_killed_run` (what a killed run of the plan left without a mark, as its lock
//! noted); and
//! `host`, addresses that exist outside the plan, made by no one's plan (the host's `default`
//! pool and network, which a real host has); and
//! `drift`, a map from address to attributes whose live values differ from the mark's. An
//! address is one backend's (`vm/web1` is libvirt's, `virtualmachine/web1` KubeVirt's): it
//! changes the state of that backend's run only.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::json;

use siteplan::manifest::{self, Options, Overrides};
use siteplan::plan::intent;
use siteplan::plan::model::desired::Desired;
use siteplan::plan::{self, render};
use siteplan::provider::kubevirt::settings::KubevirtSettings;
use siteplan::provider::libvirt::rules::LibvirtRules;
use siteplan::provider::settings::{Planning, Settings};
use siteplan::provider::{LiveResource, Observed, OwnerMark, Spec};

/// A backend family's planning, as `plan diff --against` takes it from the backend's settings,
/// and the snapshot its diffs are checked against.
struct Backend {
    planning: Planning,
    snapshot: &'static str,
}

fn libvirt() -> Backend {
    Backend {
        planning: Planning::libvirt(LibvirtRules),
        snapshot: "diff",
    }
}

fn kubevirt() -> Backend {
    let settings = KubevirtSettings {
        kubeconfig: None,
        context: None,
        namespace: Some("lab".into()),
        delete_timeout: None,
    };
    Backend {
        planning: settings
            .planning()
            .expect("built with the kubevirt feature"),
        snapshot: "kubevirt",
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct State {
    #[serde(default)]
    stopped: Vec<String>,
    #[serde(default)]
    guarded: Vec<String>,
    #[serde(default)]
    unmarked: Vec<String>,
    #[serde(default)]
    holding: Vec<String>,
    #[serde(default)]
    foreign: Vec<String>,
    #[serde(default)]
    unmarked_by_killed_run: Vec<String>,
    #[serde(default)]
    host: Vec<String>,
    #[serde(default)]
    drift: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

/// What exists at `address` outside any plan: a pool or network as a fresh host has them.
fn on_the_host(address: &str) -> LiveResource {
    let (kind, name) = address.split_once('/').expect("kind/name");
    let spec = match kind {
        "pool" => json!({"kind": "pool", "name": name, "path": "/var/lib/libvirt/images",
            "autostart": true}),
        "network" => json!({"kind": "network", "name": name, "mode": "nat", "bridge": "virbr0",
            "cidr": "192.168.122.0/24", "dhcp": ["192.168.122.2", "192.168.122.254"],
            "hosts": [], "domain": null, "mtu": null, "dns": true, "autostart": true}),
        other => panic!("host: {other} is not a kind a host has"),
    };
    LiveResource {
        spec: serde_json::from_value(spec).expect("a host's spec"),
        owner: None,
        active: true,
        empty: None,
        pending_restart: Vec::new(),
        paused: false,
    }
}

const PLAN: &str = "lab";

/// The plan in `file` as `backend` lowers it, or why it cannot (its capabilities' refusals
/// and its lowering's).
fn desired(file: &Path, backend: &Backend) -> Result<Desired, Vec<String>> {
    let loaded = manifest::load(file, &Overrides::default(), Options::default())
        .unwrap_or_else(|f| panic!("{} does not load: {:?}", file.display(), f.problems));
    let base = file.parent().unwrap_or(Path::new("."));
    let intents = intent::intents(&loaded.manifest, PLAN, base).expect("intents");
    let refused = backend
        .planning
        .rules
        .capabilities()
        .refusals(&intents, "the backend");
    if !refused.is_empty() {
        return Err(refused);
    }
    (backend.planning.lower)(&intents).map_err(|e| vec![e])
}

/// The old version applied, then changed as `state` says.
fn observed(before: Option<&Path>, state: &State, backend: &Backend) -> Observed {
    let mut observed = Observed::default();
    observed
        .unmarked_by_killed_run
        .extend(state.unmarked_by_killed_run.iter().cloned());
    for address in &state.host {
        let live = on_the_host(address);
        observed.resources.insert(live.spec.id(), live);
    }
    let Some(before) = before else {
        return observed;
    };
    let has = |list: &[String], address: &str| list.iter().any(|a| a == address);
    // A version that this backend refuses was never applied to it.
    let applied = desired(before, backend).map_or_else(|_| Vec::new(), |d| d.resources);
    for r in applied {
        let id = r.spec.id();
        let address = id.to_string();
        let mut live = r.spec.clone();
        if let Some(changed) = state.drift.get(&address) {
            let mut fields = serde_json::to_value(&live).expect("spec");
            for (k, v) in changed {
                fields[k] = v.clone();
            }
            live = serde_json::from_value::<Spec>(fields).expect("drifted spec");
        }
        let unmarked = has(&state.unmarked, &address) || has(&state.holding, &address);
        let owner = (!unmarked).then(|| OwnerMark {
            plan: if has(&state.foreign, &address) {
                "other".into()
            } else {
                PLAN.into()
            },
            spec: r.spec.clone(),
            prevent_destroy: has(&state.guarded, &address),
            created: None,
            applied_from: None,
            group: None,
        });
        observed.resources.insert(
            id,
            LiveResource {
                spec: live,
                owner,
                active: !has(&state.stopped, &address),
                empty: unmarked.then(|| !has(&state.holding, &address)),
                pending_restart: Vec::new(),
                paused: false,
            },
        );
    }
    observed
}

/// Plans the case in `tests/plans/NAME` on `backend` and checks its diff against the
/// snapshot beside it.
fn case(name: &str, backend: Backend) {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plans")
        .join(name);
    let before = case.join("before.yml");
    let state: State = match std::fs::read_to_string(case.join("state.yml")) {
        Ok(text) => serde_norway::from_str(&text).expect("state.yml"),
        Err(_) => State::default(),
    };
    let observed = observed(
        before.is_file().then_some(before.as_path()),
        &state,
        &backend,
    );
    let planned = desired(&case.join("plan.yml"), &backend).and_then(|wanted| {
        plan::plan(
            &plan::Identity::named(PLAN),
            &wanted,
            &observed,
            backend.planning.rules.as_ref(),
        )
    });
    let shown = match planned {
        Ok(p) => render::human(&p),
        Err(problems) => format!("refused:\n{}\n", problems.join("\n")),
    };
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(&case);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(backend.snapshot, shown));
}

/// One test per case and backend, named after the case's directory.
macro_rules! cases {
    ($($test:ident => $dir:literal,)*) => {
        $(
            mod $test {
                #[test]
                fn libvirt() {
                    super::case($dir, super::libvirt());
                }

                #[test]
                fn kubevirt() {
                    super::case($dir, super::kubevirt());
                }
            }
        )*
        const CASES: &[&str] = &[$($dir),*];
    };
}

cases! {
    a_disk_grows => "a-disk-grows",
    a_network_the_vm_uses_changes_its_cidr => "a-network-the-vm-uses-changes-its-cidr",
    create_a_lab => "create-a-lab",
    drift_is_shown_and_restored => "drift-is-shown-and-restored",
    empty_unmarked_pool_is_taken_over => "empty-unmarked-pool-is-taken-over",
    empty_unmarked_pool_made_by_a_person_is_refused => "empty-unmarked-pool-made-by-a-person-is-refused",
    entry_no_longer_declared => "entry-no-longer-declared",
    guard_added_updates_the_mark => "guard-added-updates-the-mark",
    guard_recorded_on_an_undeclared_vm => "guard-recorded-on-an-undeclared-vm",
    ignore_changes_keeps_live_memory => "ignore-changes-keeps-live-memory",
    kernel_command_line_of_a_running_vm => "kernel-command-line-of-a-running-vm",
    memory_and_cpus_of_a_running_vm => "memory-and-cpus-of-a-running-vm",
    memory_of_a_running_vm => "memory-of-a-running-vm",
    memory_of_a_stopped_vm => "memory-of-a-stopped-vm",
    memory_within_the_hotplug_headroom => "memory-within-the-hotplug-headroom",
    name_held_by_another_plan => "name-held-by-another-plan",
    network_cidr_forces_replacement => "network-cidr-forces-replacement",
    network_made_again_moves_its_running_vms => "network-made-again-moves-its-running-vms",
    nothing_to_change => "nothing-to-change",
    seed_made_again_restarts_its_vm => "seed-made-again-restarts-its-vm",
    shrinking_a_disk_replaces_it => "shrinking-a-disk-replaces-it",
    unmarked_pool_holding_volumes_is_refused => "unmarked-pool-holding-volumes-is-refused",
    vm_no_longer_declared_loses_its_disks => "vm-no-longer-declared-loses-its-disks",
    vm_on_the_hosts_defaults => "vm-on-the-hosts-defaults",
}

#[test]
fn every_directory_of_tests_plans_is_a_case() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/plans");
    let mut found: Vec<String> = std::fs::read_dir(&root)
        .expect("tests/plans")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("plan.yml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    assert_eq!(
        found, CASES,
        "a directory of tests/plans is a case: name it in `cases!` in tests/integration/planner.rs"
    );
}
