//! The planner, data-driven: each directory of `tests/plans/` is a case. `before.yml` (if any)
//! is the version of the plan that was applied, `state.yml` (if any) says how the live state
//! differs from that, `plan.yml` is the plan now; the plan's rendered diff (or its refusal) is
//! checked against `diff.snap` beside them. A new case is a new directory, named in `cases!`
//! (a test fails until it is); `cargo insta review` accepts its first snapshot. Each case is a
//! test of its own.
//!
//! `state.yml` keys, each a list of addresses (`vm/web1`, `volume/default/web1_0.img`):
//! `stopped` (not running), `guarded` (the mark recorded `prevent_destroy`), `unmarked` (exists
//! with no plan's mark, empty), `holding` (unmarked and not empty), `foreign` (marked by plan
//! `other`); `unmarked_by_killed_run` (what a killed run of the plan left without a mark, as its lock
//! noted); and
//! `drift`, a map from address to attributes whose live values differ from the mark's.

use std::collections::BTreeMap;
use std::path::Path;

use siteplan::manifest::{self, Options, Overrides};
use siteplan::plan::{self, intent, render};
use siteplan::provider::libvirt::lower;
use siteplan::provider::libvirt::rules::LibvirtRules;
use siteplan::provider::{LiveResource, Observed, OwnerMark, Spec};

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
    drift: BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
}

const PLAN: &str = "lab";

fn desired(file: &Path) -> siteplan::plan::model::desired::Desired {
    let loaded = manifest::load(file, &Overrides::default(), Options::default())
        .unwrap_or_else(|f| panic!("{} does not load: {:?}", file.display(), f.problems));
    let base = file.parent().unwrap_or(Path::new("."));
    let intents = intent::intents(&loaded.manifest, PLAN, base).expect("intents");
    lower::libvirt(&intents).expect("lowers")
}

/// The old version applied, then changed as `state` says.
fn observed(before: Option<&Path>, state: &State) -> Observed {
    let mut observed = Observed::default();
    observed
        .unmarked_by_killed_run
        .extend(state.unmarked_by_killed_run.iter().cloned());
    let Some(before) = before else {
        return observed;
    };
    let has = |list: &[String], address: &str| list.iter().any(|a| a == address);
    for r in desired(before).resources {
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

/// Plans the case in `tests/plans/NAME` and checks its diff against the snapshot beside it.
fn case(name: &str) {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/plans")
        .join(name);
    let before = case.join("before.yml");
    let state: State = match std::fs::read_to_string(case.join("state.yml")) {
        Ok(text) => serde_norway::from_str(&text).expect("state.yml"),
        Err(_) => State::default(),
    };
    let observed = observed(before.is_file().then_some(before.as_path()), &state);
    let wanted = desired(&case.join("plan.yml"));
    let shown = match plan::plan(
        &plan::Identity::named(PLAN),
        &wanted,
        &observed,
        &LibvirtRules,
    ) {
        Ok(p) => render::human(&p),
        Err(problems) => format!("refused:\n{}\n", problems.join("\n")),
    };
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(&case);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!("diff", shown));
}

/// One test per case, named after its directory.
macro_rules! cases {
    ($($test:ident => $dir:literal,)*) => {
        $(
            #[test]
            fn $test() {
                case($dir);
            }
        )*
        const CASES: &[&str] = &[$($dir),*];
    };
}

cases! {
    create_a_lab => "create-a-lab",
    drift_is_shown_and_restored => "drift-is-shown-and-restored",
    empty_unmarked_pool_is_taken_over => "empty-unmarked-pool-is-taken-over",
    empty_unmarked_pool_made_by_a_person_is_refused => "empty-unmarked-pool-made-by-a-person-is-refused",
    entry_no_longer_declared => "entry-no-longer-declared",
    guard_added_updates_the_mark => "guard-added-updates-the-mark",
    guard_recorded_on_an_undeclared_vm => "guard-recorded-on-an-undeclared-vm",
    ignore_changes_keeps_live_memory => "ignore-changes-keeps-live-memory",
    kernel_command_line_of_a_running_vm => "kernel-command-line-of-a-running-vm",
    memory_of_a_running_vm => "memory-of-a-running-vm",
    memory_of_a_stopped_vm => "memory-of-a-stopped-vm",
    name_held_by_another_plan => "name-held-by-another-plan",
    network_cidr_forces_replacement => "network-cidr-forces-replacement",
    network_made_again_moves_its_running_vms => "network-made-again-moves-its-running-vms",
    nothing_to_change => "nothing-to-change",
    seed_made_again_restarts_its_vm => "seed-made-again-restarts-its-vm",
    shrinking_a_disk_replaces_it => "shrinking-a-disk-replaces-it",
    unmarked_pool_holding_volumes_is_refused => "unmarked-pool-holding-volumes-is-refused",
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
