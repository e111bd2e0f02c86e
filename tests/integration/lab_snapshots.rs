//! Lab snapshots through the binary on the sandbox: `plan snapshot create|list|revert|delete`
//! as one for every VM, all or nothing, known to `status`, truthful in `diff` after a revert,
//! and gone with `destroy`.

use serde_json::Value;

use crate::harness::{Ran, SandboxLab};

const LAB: &str = "\
parameters:
  memory: 256
snapnet:
  type: network
  cidr: 10.96.7.0/24
snappool:
  type: pool
  path: /var/lib/libvirt/siteplan-snapshots
snap0:
  pool: snappool
  memory: {{ memory }}
  nets: [snapnet]
  disks: [1]
snap1:
  pool: snappool
  memory: 256
  nets: [snapnet]
  disks: [1]
snap2:
  pool: snappool
  memory: 256
  nets: [snapnet]
  disks: [1]
quorum:
  type: disk
  pool: snappool
  size: 1
  vms: [snap1, snap2]
";

/// The lab, applied, on a sandbox of its own.
struct Lab(SandboxLab);

impl Lab {
    fn new() -> Lab {
        let lab = Lab(SandboxLab::new("snaplab.yml", LAB));
        let applied = lab.plan(&["apply", "--yes"], &[]);
        assert!(applied.ok(), "{}", applied.text());
        lab
    }

    fn plan(&self, args: &[&str], extra: &[&str]) -> Ran {
        self.0.plan(args, extra)
    }

    fn snapshots(&self) -> Value {
        let listed = self.plan(&["snapshot", "list", "-o", "json"], &[]);
        assert!(listed.ok(), "{}", listed.text());
        serde_json::from_str(&listed.stdout)
            .unwrap_or_else(|e| panic!("snapshot list -o json: {e}\n{}", listed.text()))
    }

    /// Each VM's state from `plan status -o json`.
    fn states(&self, extra: &[&str]) -> Vec<(String, String)> {
        let status = self.plan(&["status", "-o", "json"], extra);
        let doc: Value = serde_json::from_str(&status.stdout)
            .unwrap_or_else(|e| panic!("status -o json: {e}\n{}", status.text()));
        doc["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["address"].as_str().is_some_and(|a| a.starts_with("vm/")))
            .map(|r| {
                (
                    r["address"].as_str().unwrap_or_default().to_string(),
                    r["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

fn all_running(lab: &Lab) -> bool {
    lab.states(&[]).iter().all(|(_, state)| state == "running")
}

#[test]
fn a_lab_snapshot_is_taken_listed_reverted_and_deleted_as_one() {
    let lab = Lab::new();
    // A stopped VM's snapshot cannot be written into a disk a running VM holds: refused
    // before anything is paused.
    let stopped = lab.plan(&["stop"], &["snap2"]);
    assert!(stopped.ok(), "{}", stopped.text());
    let refused = lab.plan(&["snapshot", "create"], &["base"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(
        refused.stderr.contains(
            "error: disk snappool/quorum.img is shared by running vm/snap1 and stopped vm/snap2"
        ) && refused.stderr.contains("Nothing was changed."),
        "{}",
        refused.stderr
    );
    assert!(lab.plan(&["start"], &["snap2"]).ok());
    assert!(lab.plan(&["stop"], &["snap0"]).ok());

    let created = lab.plan(&["snapshot", "create"], &["base"]);
    assert!(created.ok(), "{}", created.text());
    assert!(
        created.stderr.contains(
            "Snapshot `base` of plan `snaplab` taken: vm/snap0, vm/snap1, vm/snap2 (3); the lab \
             was paused for "
        ) && created.stderr.contains("s (2 running VMs)"),
        "{}",
        created.stderr
    );
    // The disk two VMs share is in both snapshots, with the same content.
    assert!(
        created.stderr.contains(
            "Disk snappool/quorum.img, shared, is in the snapshots of vm/snap1, vm/snap2"
        ),
        "{}",
        created.stderr
    );

    let listed = lab.snapshots();
    assert_eq!(listed["version"], 1);
    let base = &listed["snapshots"][0];
    assert_eq!(base["name"], "base", "{listed}");
    let vms = base["vms"].as_array().expect("vms");
    let running: Vec<(&str, bool)> = vms
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or_default(),
                v["running"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        running,
        [("snap0", false), ("snap1", true), ("snap2", true)],
        "{listed}"
    );
    assert_eq!(vms[0]["definition"]["memory_mib"], 256, "{listed}");
    assert!(base.get("missing").is_none(), "{listed}");

    let status = lab.plan(&["status"], &[]);
    assert!(
        status.stdout.contains("Snapshot `base` (taken ")
            && status.stdout.contains("): 3 VMs, 2 running"),
        "{}",
        status.stdout
    );

    let info = lab.plan(&["info"], &["snap1"]);
    assert!(
        info.stdout
            .contains("snapshot: base (lab snapshot: `plan snapshot list`)\n"),
        "{}",
        info.text()
    );

    // A name is taken once: refused before anything is paused, and nothing changes.
    let again = lab.plan(&["snapshot", "create"], &["base"]);
    assert_eq!(again.code(), Some(1), "{}", again.text());
    assert!(
        again
            .stderr
            .contains("error: vm/snap0 already has a snapshot `base`")
            && again.stderr.contains("Nothing was changed."),
        "{}",
        again.stderr
    );

    // The lab moves on: more memory for snap0, which is started.
    let bigger = ["-P", "memory=512"];
    let moved = lab.plan(&["apply", "--yes"], &bigger);
    assert!(moved.ok(), "{}", moved.text());
    let same = lab.plan(&["diff", "--detailed-exitcode"], &bigger);
    assert_eq!(same.code(), Some(0), "{}", same.text());
    assert!(all_running(&lab));

    // Without a terminal a revert needs --yes.
    let asked = lab.plan(&["snapshot", "revert"], &["base"]);
    assert_eq!(asked.code(), Some(1), "{}", asked.text());
    assert!(
        asked.stderr.contains("pass --yes to revert"),
        "{}",
        asked.stderr
    );

    let reverted = lab.plan(&["snapshot", "revert", "--yes"], &["base"]);
    assert!(reverted.ok(), "{}", reverted.text());
    assert!(
        reverted.stderr.contains(
            "Reverted vm/snap0, vm/snap1, vm/snap2 of plan `snaplab` to snapshot `base` (taken "
        ) && reverted
            .stderr
            .contains("running again: vm/snap1, vm/snap2; the lab was paused for "),
        "{}",
        reverted.stderr
    );
    let states = lab.states(&bigger);
    assert_eq!(
        states,
        [
            ("vm/snap0".to_string(), "stopped".to_string()),
            ("vm/snap1".to_string(), "running".to_string()),
            ("vm/snap2".to_string(), "running".to_string()),
        ]
    );

    // The diff tells the truth: snap0 is back to 256 MiB and stopped, while the plan (with
    // memory=512) says otherwise. Its memory was siteplan's own then, so it is not called a
    // change made outside siteplan (its power, stopped by `plan stop`, is).
    let diff = lab.plan(&["diff", "--detailed-exitcode"], &bigger);
    assert_eq!(diff.code(), Some(2), "{}", diff.text());
    assert!(
        diff.stdout.contains("~ vm/snap0") && diff.stdout.contains("256 MiB → 512 MiB"),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .contains("! changed outside siteplan since it was applied: running;"),
        "{}",
        diff.stdout
    );
    assert!(!diff.stdout.contains("vm/snap1"), "{}", diff.stdout);
    // With the plan as it was, only snap0's power differs (it was stopped by hand then).
    let as_then = lab.plan(&["diff"], &[]);
    assert!(
        as_then.stdout.contains("vm/snap0") && !as_then.stdout.contains("memory"),
        "{}",
        as_then.stdout
    );

    let deleted = lab.plan(&["snapshot", "delete"], &["base"]);
    assert!(deleted.ok(), "{}", deleted.text());
    assert!(
        deleted.stderr.contains(
            "Deleted snapshot `base` of plan `snaplab` from vm/snap0, vm/snap1, vm/snap2."
        ),
        "{}",
        deleted.stderr
    );
    assert_eq!(lab.snapshots()["snapshots"], Value::Array(Vec::new()));
    let gone = lab.plan(&["snapshot", "revert", "--yes"], &["base"]);
    assert_eq!(gone.code(), Some(1), "{}", gone.text());
    assert!(
        gone.stderr
            .contains("plan `snaplab` has no snapshot `base`"),
        "{}",
        gone.stderr
    );
}

#[test]
fn a_failed_snapshot_keeps_nothing_and_every_vm_runs() {
    let lab = Lab::new();
    // snap1's snapshot is made, then reported failed: the most there is to undo.
    let failed = lab
        .0
        .command(&["snapshot", "create"], &["base"])
        .env("SITEPLAN_FAIL_ON", "snapshot/snap1")
        .run();
    assert_eq!(failed.code(), Some(1), "{}", failed.text());
    assert!(
        failed
            .stderr
            .contains("error: vm/snap1: snapshot failed: injected failure (SITEPLAN_FAIL_ON)")
            && failed.stderr.contains(
                "Nothing was kept: snapshot `base` was deleted again from every VM that had it, \
                 and every paused VM resumed"
            ),
        "{}",
        failed.stderr
    );
    assert_eq!(lab.snapshots()["snapshots"], Value::Array(Vec::new()));
    assert!(all_running(&lab), "{:?}", lab.states(&[]));
    // The name is free again.
    let created = lab.plan(&["snapshot", "create"], &["base"]);
    assert!(created.ok(), "{}", created.text());
}

#[test]
fn a_subset_is_snapshotted_and_reverted_with_target() {
    let lab = Lab::new();
    let created = lab.plan(&["snapshot", "create", "--target", "snap0"], &["one"]);
    assert!(created.ok(), "{}", created.text());
    assert!(
        created.stderr.contains("taken: vm/snap0 (1);"),
        "{}",
        created.stderr
    );
    let listed = lab.snapshots();
    assert_eq!(
        listed["snapshots"][0]["vms"].as_array().map(Vec::len),
        Some(1)
    );
    let outside = lab.plan(
        &["snapshot", "revert", "--yes", "--target", "snap1"],
        &["one"],
    );
    assert_eq!(outside.code(), Some(1), "{}", outside.text());
    assert!(
        outside
            .stderr
            .contains("snapshot `one` does not cover `snap1`; it covers: snap0"),
        "{}",
        outside.stderr
    );
    let bad = lab.plan(&["snapshot", "create"], &["../x"]);
    assert_eq!(bad.code(), Some(1), "{}", bad.text());
    assert!(
        bad.stderr.contains("cannot name a snapshot"),
        "{}",
        bad.stderr
    );
    let unknown = lab.plan(&["snapshot", "create", "--target", "nope"], &["two"]);
    assert_eq!(unknown.code(), Some(1), "{}", unknown.text());
}

#[test]
fn destroy_leaves_no_snapshot_behind() {
    let lab = Lab::new();
    for name in ["one", "two"] {
        let created = lab.plan(&["snapshot", "create"], &[name]);
        assert!(created.ok(), "{}", created.text());
    }
    let destroyed = lab.plan(&["destroy", "--yes"], &[]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert_eq!(lab.snapshots()["snapshots"], Value::Array(Vec::new()));
    let state = std::fs::read_to_string(lab.0.sandbox().join("state.json")).expect("state");
    let state: Value = serde_json::from_str(&state).expect("json");
    assert!(state.get("snapshots").is_none(), "{state}");
    // Made again, the lab starts without the old snapshots.
    let applied = lab.plan(&["apply", "--yes"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    assert_eq!(lab.snapshots()["snapshots"], Value::Array(Vec::new()));
}

#[test]
fn what_libvirt_cannot_snapshot_is_refused_before_anything_is_paused() {
    let lab = SandboxLab::new(
        "uefi.yml",
        "u1:\n  uefi: true\n  memory: 256\n  nets: [default]\nu2:\n  memory: 256\n  nets: [default]\n",
    );
    let plan = |args: &[&str], extra: &[&str]| lab.plan(args, extra);
    assert!(plan(&["apply", "--yes"], &[]).ok());
    let refused = plan(&["snapshot", "create"], &["base"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert_eq!(
        refused.stderr.lines().skip(1).collect::<Vec<_>>(),
        [
            "error: vm/u1 boots UEFI firmware, whose NVRAM libvirt cannot keep in an internal \
             snapshot: leave it out with --target",
            "Nothing was changed."
        ],
        "{}",
        refused.stderr
    );
    let listed = plan(&["snapshot", "list"], &[]);
    assert!(
        listed.stdout.contains("Plan `uefi` has no lab snapshots."),
        "{}",
        listed.text()
    );
    // Without it, the rest is snapshotted.
    let created = plan(&["snapshot", "create"], &["base", "--target", "u2"]);
    assert!(created.ok(), "{}", created.text());
}
