//! The KubeVirt backend through the `plan` binary: against a real kube-apiserver (`real/`, the
//! suite), a real cluster with KubeVirt when one is named (opt-in), and the stand-in
//! (`kube_api`) for a server that goes away and comes back.

#![cfg(feature = "kubevirt")]
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::path::PathBuf;

use crate::harness::Plan;
use crate::kube_api::{Cluster, StandIn};

/// The first line of `text` that holds `needle` (empty if none).
fn line_with<'t>(text: &'t str, needle: &str) -> &'t str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_default()
}

/// A small lab, with parameters to change it.
const LAB: &str = "parameters:\n  memory: 1024\n  cpus: 1\n  second: true\n  more: false\n  size: 10\n\
kvnet:\n  type: network\n  cidr: 10.121.0.0/24\n\
kvnet2:\n  type: network\n  cidr: 10.125.0.0/24\n\
bookworm:\n  type: image\n  url: https://example.org/debian-12.qcow2\n\
kv1:\n  image: bookworm\n  memory: {{ memory }}\n  numcpus: {{ cpus }}\n  cmds: [echo hello]\n  \
disks: [{{ size }}{% if more %}, 5{% endif %}]\n  nets: [default, kvnet{% if more %}, kvnet2{% endif %}]\n\
{% if second %}kv2:\n  image: bookworm\n  start: false\n  nets: [kvnet]\n{% endif %}";

/// The same plan's life on a real cluster with KubeVirt and CDI, when
/// `SITEPLAN_TEST_KUBECONFIG` names its kubeconfig (and `SITEPLAN_TEST_KUBE_NAMESPACE` a
/// namespace to use, default `default`): healthy, applied, diffs clean, changed, destroyed,
/// all through the binary. Skipped, saying so, without it: no KubeVirt can run here.
#[test]
fn a_plan_on_a_real_kubevirt_cluster() {
    let test = "a_plan_on_a_real_kubevirt_cluster";
    let Some(kubeconfig) = std::env::var_os("SITEPLAN_TEST_KUBECONFIG") else {
        crate::harness::report(&format!(
            "SKIPPED {test}: SITEPLAN_TEST_KUBECONFIG is not set (point it at a cluster that runs \
             KubeVirt and CDI; the suite's own API servers only play their controllers)"
        ));
        return;
    };
    let namespace =
        std::env::var("SITEPLAN_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "providers:\n  - {{name: real, type: kubevirt, kubeconfig: {}, namespace: {namespace}}}\n",
            PathBuf::from(kubeconfig).display()
        ),
    )
    .expect("providers file");
    let plan_file = tmp.path().join("kvlab.yml");
    std::fs::write(&plan_file, LAB).expect("plan");
    let run = |args: &[&str], params: &[&str]| {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "real"])
            .params(params)
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let listed = Plan::new(&["provider", "get", "real"])
        .providers(&file, &tmp.path().join("state"))
        .run();
    assert!(listed.stdout.contains("READY"), "{}", listed.text());
    let _ = run(&["destroy", "--yes"], &[]);
    for (args, params) in [
        (&["apply", "--yes"][..], &[][..]),
        (&["apply", "--yes"][..], &["memory=2048"][..]),
    ] {
        let applied = run(args, params);
        assert!(applied.ok(), "{}", applied.text());
        let diff = run(&["diff"], params);
        assert!(diff.stdout.starts_with("No changes"), "{}", diff.stdout);
    }
    let destroyed = run(&["destroy", "--yes"], &["memory=2048"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
}

mod real;

mod export;

/// DCM's health model: a cluster that stops answering keeps what its last answer said, saying
/// how many checks went unanswered, until three in a row did; one answer recovers it.
#[test]
fn a_cluster_that_stops_answering_is_unavailable_after_three_checks_in_a_row() {
    let tmp = tempfile::tempdir().expect("tmp");
    let state = tmp.path().join("state");
    let first = StandIn::start(Cluster::default());
    let kubeconfig = first.kubeconfig(&tmp.path().join("kc"), "lab");
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "health_timeout: 3\nproviders:\n  - {{name: kv, type: kubevirt, kubeconfig: {}}}\n",
            kubeconfig.display()
        ),
    )
    .expect("providers file");
    let health = || -> (String, String) {
        let out = Plan::new(&["provider", "list", "-o", "json"])
            .providers(&file, &state)
            .run();
        assert!(out.ok(), "{}", out.text());
        let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
        let p = &list["results"][0];
        (
            p["health_status"].as_str().unwrap_or_default().into(),
            p["health_reason"].as_str().unwrap_or_default().into(),
        )
    };
    assert_eq!(health(), ("ready".into(), String::new()));
    drop(first);
    for n in 1..=2 {
        let (status, reason) = health();
        assert_eq!(status, "ready", "{reason}");
        assert!(
            reason.contains("does not answer")
                && reason.contains(&format!("({n} of 3 checks in a row unanswered)")),
            "{reason}"
        );
    }
    let (status, reason) = health();
    assert_eq!(status, "unavailable", "{reason}");
    let again = StandIn::start(Cluster::default());
    again.kubeconfig(&tmp.path().join("kc"), "lab");
    assert_eq!(health(), ("ready".into(), String::new()));
}
