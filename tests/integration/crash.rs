//! Crash consistency: `plan apply` and `plan destroy` killed at every point between two backend
//! writes (`SITEPLAN_CRASH_AT=N` aborts the process there, as `kill -9` would), then run again:
//! the second run must finish the job, leaving exactly what an uninterrupted run leaves, with
//! no duplicate and no orphan. On the sandbox always; on a real libvirtd when
//! SITEPLAN_TEST_LIBVIRT_URI names one, where `plan apply` is also killed with SIGKILL on a timer.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output
#![cfg(feature = "libvirt")]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::harness::{Plan, Ran};
use siteplan::provider::libvirt::LibvirtProvider;
use siteplan::provider::Provider;

/// The states a run goes through: created, changed (a replace, a delete, new disks), destroyed.
const STEPS: [(&str, &[&str]); 3] = [
    ("apply", &[]),
    (
        "apply",
        &["vms=1", "disks=2", "nics=2", "cidr=192.168.243.0/24"],
    ),
    (
        "destroy",
        &["vms=1", "disks=2", "nics=2", "cidr=192.168.243.0/24"],
    ),
];

struct Backend {
    provider: String,
    sandbox: PathBuf,
}

impl Backend {
    fn plan(&self, command: &str, params: &[&str], crash_at: Option<usize>) -> Ran {
        Plan::new(&[command, "-q"])
            .args(if command == "diff" {
                &[][..]
            } else {
                &["--yes", "--parallelism", "1"][..]
            })
            .args(&["tests/fixtures/crash/site.yml"])
            .args(&["--provider", &self.provider, "--name", "crash"])
            .params(params)
            .sandbox(&self.sandbox)
            // Unset is "never": an empty value parses as no number.
            .env(
                "SITEPLAN_CRASH_AT",
                crash_at.map(|n| n.to_string()).unwrap_or_default(),
            )
            .run()
    }

    fn uri(&self) -> String {
        if self.provider == "sandbox" {
            let sandbox = crate::harness::reopen_sandbox(&self.sandbox);
            let node = sandbox.write_node_file().expect("node file");
            format!("test://{}", node.display())
        } else {
            self.provider.clone()
        }
    }

    /// Every object of the crash plan's names, with its kind: what a duplicate or an orphan
    /// would show up in.
    fn inventory(&self) -> BTreeSet<String> {
        let conn = virt::connect::Connect::open(Some(&self.uri())).expect("connect");
        let mut found = BTreeSet::new();
        for d in conn.list_all_domains(0).unwrap_or_default() {
            found.insert(format!("vm {}", d.name().unwrap_or_default()));
        }
        for n in conn.list_all_networks(0).unwrap_or_default() {
            found.insert(format!("network {}", n.name().unwrap_or_default()));
        }
        for p in conn.list_all_storage_pools(0).unwrap_or_default() {
            let name = p.name().unwrap_or_default();
            found.insert(format!("pool {name}"));
            for v in p.list_volumes().unwrap_or_default() {
                found.insert(format!("volume {name}/{v}"));
            }
        }
        found.retain(|o| o.contains("crash"));
        found
    }

    /// The seeds hold a cloud-init filesystem, not the nothing a killed upload leaves.
    fn assert_seeds_filled(&self, inventory: &BTreeSet<String>) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let provider: Box<dyn Provider> = if self.provider == "sandbox" {
                Box::new(crate::harness::reopen_sandbox(&self.sandbox).into_provider())
            } else {
                Box::new(LibvirtProvider::connect(&self.provider).expect("libvirt"))
            };
            for seed in inventory.iter().filter(|o| o.ends_with("-cidata.img")) {
                let (pool, name) = seed["volume ".len()..].split_once('/').expect("pool/name");
                let bytes = provider
                    .volume_content()
                    .expect("reads volumes")
                    .read_volume(pool, name)
                    .await
                    .expect("read seed");
                assert_eq!(
                    siteplan::cloudinit::seed_label(&bytes).ok().as_deref(),
                    Some("cidata"),
                    "{seed} is not a filled seed"
                );
            }
        });
    }
}

fn text(out: &Ran) -> String {
    out.text()
}

/// Runs `step` killed at crash point 1, 2, … until a run gets through without reaching its
/// crash point; after each kill, the same command again must finish and leave `expected`.
/// `prepare` brings the backend to the state before the step. Returns how many points it found.
fn kill_at_every_point(
    backend: &Backend,
    step: usize,
    prepare: &dyn Fn(),
    expected: &BTreeSet<String>,
) -> usize {
    let (command, params) = STEPS[step];
    for n in 1.. {
        prepare();
        let killed = backend.plan(command, params, Some(n));
        if killed.status.success() {
            assert!(!text(&killed).contains("crash point"), "{}", text(&killed));
            return n - 1;
        }
        assert!(
            text(&killed).contains(&format!("crash point {n} ")),
            "{command} {params:?} at {n} failed without crashing:\n{}",
            text(&killed)
        );
        let again = backend.plan(command, params, None);
        assert!(
            again.status.success(),
            "after a kill at point {n} of {command} {params:?}, the next run failed:\n{}\nkilled run:\n{}",
            text(&again),
            text(&killed)
        );
        let diff = backend.plan("diff", params, None);
        let settled = if command == "destroy" {
            // After a destroy, a diff plans everything anew and deletes nothing.
            text(&diff).contains("0 to change, 0 to replace, 0 to destroy.")
        } else {
            // Apply restarts nothing without --restart: what waits for a restart may wait.
            text(&diff).contains("No changes")
                || text(&diff).contains("Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy.")
        };
        assert!(
            settled,
            "after a kill at point {n} of {command} {params:?} and a second run, not settled:\n{}",
            text(&diff)
        );
        let found = backend.inventory();
        assert_eq!(
            &found, expected,
            "after a kill at point {n} of {command} {params:?} and a second run"
        );
        backend.assert_seeds_filled(&found);
    }
    unreachable!()
}

fn every_step_killed_everywhere(backend: &Backend) {
    let reset = || {
        let out = backend.plan("destroy", STEPS[1].1, None);
        assert!(out.status.success(), "{}", text(&out));
        let out = backend.plan("destroy", STEPS[0].1, None);
        assert!(out.status.success(), "{}", text(&out));
    };
    let run = |step: usize| {
        let (command, params) = STEPS[step];
        let out = backend.plan(command, params, None);
        assert!(out.status.success(), "{command} {params:?}: {}", text(&out));
    };
    // What uninterrupted runs leave after each step.
    reset();
    let mut expected = Vec::new();
    for step in 0..STEPS.len() {
        run(step);
        let found = backend.inventory();
        backend.assert_seeds_filled(&found);
        expected.push(found);
    }
    assert!(expected[2].is_empty(), "destroy left {:?}", expected[2]);

    let points = kill_at_every_point(backend, 0, &reset, &expected[0]);
    eprintln!("apply from nothing: killed at each of {points} crash points");
    assert!(points >= 20, "only {points} crash points were reached");
    let points = kill_at_every_point(
        backend,
        1,
        &|| {
            reset();
            run(0);
        },
        &expected[1],
    );
    eprintln!("apply with changes: killed at each of {points} crash points");
    let points = kill_at_every_point(
        backend,
        2,
        &|| {
            reset();
            run(0);
            run(1);
        },
        &expected[2],
    );
    eprintln!("destroy: killed at each of {points} crash points");
}

#[test]
fn sandbox_runs_killed_at_every_point_are_finished_by_the_next_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let backend = Backend {
        provider: "sandbox".into(),
        sandbox: tmp.path().join("sandbox"),
    };
    every_step_killed_everywhere(&backend);
}

/// The libvirtd tests use the same names: one at a time.
/// The real libvirtd, held by one test at a time; `None` (the test is skipped) without one.
fn libvirtd(test: &str) -> Option<(std::sync::MutexGuard<'static, ()>, Backend)> {
    let (held, uri) = crate::harness::libvirtd(test)?;
    let backend = Backend {
        provider: uri,
        // Never made: a libvirt provider has no sandbox.
        sandbox: std::env::temp_dir().join("siteplan-crash-unused"),
    };
    Some((held, backend))
}

#[test]
fn real_libvirtd_runs_killed_at_every_point_are_finished_by_the_next_run() {
    let Some((_one_at_a_time, backend)) =
        libvirtd("real_libvirtd_runs_killed_at_every_point_are_finished_by_the_next_run")
    else {
        return;
    };
    every_step_killed_everywhere(&backend);
}

/// SIGKILL from outside, at moments a crash point cannot choose (inside a libvirt call).
#[test]
fn real_libvirtd_apply_killed_on_a_timer_is_finished_by_the_next_run() {
    let Some((_one_at_a_time, backend)) =
        libvirtd("real_libvirtd_apply_killed_on_a_timer_is_finished_by_the_next_run")
    else {
        return;
    };
    let destroy = || {
        let out = backend.plan("destroy", STEPS[0].1, None);
        assert!(out.status.success(), "{}", text(&out));
    };
    destroy();
    let out = backend.plan("apply", STEPS[0].1, None);
    assert!(out.status.success(), "{}", text(&out));
    let expected = backend.inventory();
    for millis in [100, 250, 400, 600, 900, 1300] {
        destroy();
        let mut child = Plan::new(&["apply", "--yes", "-q", "tests/fixtures/crash/site.yml"])
            .args(&["--provider", &backend.provider, "--name", "crash"])
            .spawn();
        std::thread::sleep(Duration::from_millis(millis));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // libvirtd still carries out a call it had received from the killed client: let it
        // finish before the next run observes, as any later run would.
        std::thread::sleep(Duration::from_secs(1));
        let again = backend.plan("apply", STEPS[0].1, None);
        assert!(
            again.status.success(),
            "after SIGKILL at {millis} ms: {}",
            text(&again)
        );
        let diff = backend.plan("diff", STEPS[0].1, None);
        assert!(text(&diff).contains("No changes"), "{}", text(&diff));
        let found = backend.inventory();
        assert_eq!(found, expected, "after SIGKILL at {millis} ms");
        backend.assert_seeds_filled(&found);
    }
    destroy();
}
