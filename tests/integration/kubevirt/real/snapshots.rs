//! Lab snapshots on a real server: VirtualMachineSnapshots taken of every VM, reverted with
//! VirtualMachineRestores (KubeVirt's snapshot and restore controllers played), deleted, and
//! deleted with their VMs.

use super::*;

#[test]
fn a_lab_snapshot_on_kubevirt_is_taken_reverted_and_deleted() {
    let Some(cluster) = RealCluster::start("real-snapshots") else {
        return;
    };
    let ns = cluster.ns().to_string();
    let (tmp, file, plan_file) = lab(&cluster);
    let run = |args: &[&str], rest: &[&str], params: &[&str]| -> Ran {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy()])
            .args(rest)
            .args(&["--provider", "kv"])
            .params(params)
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let applied = run(
        &["apply", "--yes", "--wait", "--wait-timeout", "30"],
        &[],
        &[],
    );
    assert!(applied.ok(), "{}", applied.text());
    let snapshots =
        format!("/apis/snapshot.kubevirt.io/v1beta1/namespaces/{ns}/virtualmachinesnapshots");
    let count = || {
        cluster.object(&snapshots).expect("snapshots")["items"]
            .as_array()
            .map_or(0, Vec::len)
    };

    let created = run(&["snapshot", "create"], &["base"], &[]);
    assert!(created.ok(), "{}", created.text());
    assert_eq!(count(), 2, "one VirtualMachineSnapshot a VM");
    let listed = run(&["snapshot", "list"], &[], &[]);
    assert!(listed.ok(), "{}", listed.text());
    assert!(
        line_with(&listed.stdout, "base").contains("2"),
        "{}",
        listed.stdout
    );
    // kv1 ran, was paused for the snapshot and runs again.
    let vm = format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines/kv1");
    cluster.wait_for(Duration::from_secs(10), "kv1 running", |c| {
        c.object(&vm)
            .is_some_and(|v| v["status"]["printableStatus"] == "Running")
    });

    // The lab changes; the revert brings its definitions back, and kv1 runs again.
    let changed = run(&["apply", "--yes"], &[], &["memory=2048"]);
    assert!(changed.ok(), "{}", changed.text());
    let guest = |c: &RealCluster| {
        c.object(&vm).expect("kv1")["spec"]["template"]["spec"]["domain"]["memory"]["guest"].clone()
    };
    assert_eq!(guest(&cluster), "2048Mi");
    let reverted = run(&["snapshot", "revert", "--yes"], &["base"], &[]);
    assert!(reverted.ok(), "{}", reverted.text());
    assert_eq!(guest(&cluster), "1024Mi");
    assert_eq!(
        cluster.object(&vm).expect("kv1")["status"]["printableStatus"],
        "Running"
    );
    let diff = run(&["diff"], &[], &[]);
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);

    let deleted = run(&["snapshot", "delete"], &["base"], &[]);
    assert!(deleted.ok(), "{}", deleted.text());
    assert_eq!(count(), 0);

    // A VM's lab snapshots go with it.
    let again = run(&["snapshot", "create"], &["again"], &[]);
    assert!(again.ok(), "{}", again.text());
    assert_eq!(count(), 2);
    let destroyed = run(&["destroy", "--yes"], &[], &[]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    cluster.wait_for(Duration::from_secs(30), "the snapshots gone", |_| {
        count() == 0
    });
}

/// All or nothing: when one VM's snapshot fails (KubeVirt could not freeze its guest), the
/// snapshots already taken of the others are deleted, every VM runs as before, and the error
/// says which VM and why.
#[test]
fn a_lab_snapshot_that_fails_on_one_vm_leaves_nothing_on_kubevirt() {
    let Some(cluster) = RealCluster::start("real-snapshot-fails") else {
        return;
    };
    let ns = cluster.ns().to_string();
    let (tmp, file, plan_file) = lab(&cluster);
    let run = |args: &[&str], rest: &[&str]| -> Ran {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy()])
            .args(rest)
            .args(&["--provider", "kv"])
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let applied = run(&["apply", "--yes", "--wait", "--wait-timeout", "30"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    // kv2's guest cannot be frozen.
    let vms = format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines");
    cluster
        .send(
            http::Method::PATCH,
            &format!("{vms}/kv2"),
            "application/merge-patch+json",
            serde_json::json!({"metadata": {"annotations": {
                crate::kube_real::FAILS_SNAPSHOTS: "true"}}}),
        )
        .expect("the test marks kv2");
    let failed = run(&["snapshot", "create"], &["base"]);
    assert_eq!(failed.code(), Some(1), "{}", failed.text());
    assert!(
        failed
            .text()
            .contains("failed to freeze the guest's filesystems"),
        "{}",
        failed.text()
    );
    cluster.wait_for(Duration::from_secs(10), "no snapshot left", |c| {
        c.object(&format!(
            "/apis/snapshot.kubevirt.io/v1beta1/namespaces/{ns}/virtualmachinesnapshots"
        ))
        .is_some_and(|l| l["items"].as_array().is_some_and(Vec::is_empty))
    });
    assert_eq!(
        cluster.object(&format!("{vms}/kv1")).expect("kv1")["status"]["printableStatus"],
        "Running"
    );
    let listed = run(&["snapshot", "list"], &[]);
    assert!(!listed.stdout.contains("base"), "{}", listed.stdout);
}
