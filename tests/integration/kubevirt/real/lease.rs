//! The plan lock on a real server: a `coordination.k8s.io/v1` Lease, taken over only when
//! stale; what siteplan wrote while locked is read from the server's audit log.

use super::*;

/// A Lease holding plan `kvlab`, as a run on another host left it, renewed at `renewed`.
fn lease_from_elsewhere(renewed: &str) -> serde_json::Value {
    let holder = serde_json::json!({
        "plan": "kvlab", "host": "elsewhere.invalid", "pid": 4242,
        "command": "plan apply kvlab.yml", "since": renewed, "renewed": renewed,
        "ttl_seconds": 120, "run": "their-run",
    });
    serde_json::json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "siteplan-lock-kvlab",
            "annotations": {"siteplan.io/lock-holder": holder.to_string()}},
        "spec": {"holderIdentity": "elsewhere.invalid/4242", "leaseDurationSeconds": 120}})
}

#[test]
fn the_plan_lock_on_a_real_server_is_a_lease() {
    let Some(cluster) = RealCluster::start("real-lease") else {
        return;
    };
    let ns = cluster.ns().to_string();
    let (tmp, file, plan_file) = lab(&cluster);
    let run = |args: &[&str]| {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "kv"])
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases");
    let lease = format!("{leases}/siteplan-lock-kvlab");

    // Held by a run on another host that renewed it just now: refused, nothing written.
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    cluster.seed(&leases, lease_from_elsewhere(&now));
    let mark = cluster.audit_mark();
    let refused = run(&["apply", "--yes"]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(
        refused.stderr.contains(
            "plan `kvlab` is locked on kv by `plan apply kvlab.yml` (pid 4242 on elsewhere.invalid"
        ),
        "{}",
        refused.text()
    );
    let writes = cluster.writes_since(mark);
    assert!(writes.is_empty(), "written while locked: {writes:?}");
    let diff = run(&["diff"]);
    assert!(
        diff.stderr
            .contains("plan `kvlab` is being changed on kv by `plan apply kvlab.yml`"),
        "{}",
        diff.text()
    );

    // Not renewed for longer than it lasts: taken over, and the run's own lease is gone after.
    let stale = lease_from_elsewhere("2026-01-01T00:00:00Z");
    cluster
        .send(
            http::Method::PATCH,
            &lease,
            "application/merge-patch+json",
            serde_json::json!({"metadata": {"annotations": stale["metadata"]["annotations"]}}),
        )
        .expect("the lease goes stale");
    let mark = cluster.audit_mark();
    let applied = run(&["apply", "--yes"]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(
        applied.stderr.contains(
            "taking over plan `kvlab`'s lock on kv from `plan apply kvlab.yml` (pid 4242 on \
             elsewhere.invalid"
        ) && applied
            .stderr
            .contains("last renewed at 2026-01-01T00:00:00Z"),
        "{}",
        applied.text()
    );
    let writes = cluster.writes_since(mark);
    // The stale lease deleted, this run's made (and given back at its end).
    assert!(
        writes
            .iter()
            .any(|w| w.starts_with("delete ") && w.ends_with("/siteplan-lock-kvlab"))
            && writes.contains(&format!("create {leases}")),
        "{writes:?}"
    );
    assert!(cluster.object(&lease).is_none(), "the run's lease is left");
    let destroyed = run(&["destroy", "--yes"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
}
