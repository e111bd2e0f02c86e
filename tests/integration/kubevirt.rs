//! The KubeVirt backend against the stand-in API server (`kube_api.rs`), through the `plan`
//! binary: a real `kube::Client` over TCP on 127.0.0.1.

#![cfg(feature = "kubevirt")]
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Plan, Ran};
use crate::kube_api::{Cluster, StandIn};

/// A providers file with KubeVirt providers: the stand-in in namespace `lab`, the stand-in in
/// a namespace it lacks, a second stand-in without KubeVirt, and a port where nothing listens.
fn providers(dir: &Path, good: &StandIn, bare: &StandIn) -> PathBuf {
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let gone_addr = gone.local_addr().expect("addr");
    drop(gone);
    let nowhere = StandIn::kubeconfig_for(dir, "nowhere", &gone_addr.to_string(), "lab");
    let file = dir.join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "health_timeout: 3\nproviders:\n\
             \x20 - {{name: kv, type: kubevirt, kubeconfig: {good}}}\n\
             \x20 - {{name: kv-nons, type: kubevirt, kubeconfig: {good}, namespace: missing}}\n\
             \x20 - {{name: kv-bare, type: kubevirt, kubeconfig: {bare}}}\n\
             \x20 - {{name: kv-gone, type: kubevirt, kubeconfig: {nowhere}}}\n",
            good = good.kubeconfig(&dir.join("good"), "lab").display(),
            bare = bare.kubeconfig(&dir.join("bare"), "lab").display(),
            nowhere = nowhere.display(),
        ),
    )
    .expect("providers file");
    file
}

fn plan(file: &Path, state: &Path, args: &[&str]) -> Ran {
    Plan::new(args)
        .env("SITEPLAN_PROVIDERS", file)
        .env("XDG_STATE_HOME", state)
        .run()
}

#[test]
fn kubevirt_providers_show_their_health_and_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster {
        kubevirt: false,
        ..Cluster::default()
    });
    let file = providers(tmp.path(), &good, &bare);
    let state = tmp.path().join("state");

    let started = Instant::now();
    let out = plan(&file, &state, &["provider", "list", "-o", "json"]);
    assert!(started.elapsed() < Duration::from_secs(20), "list hung");
    assert!(out.ok(), "{}", out.text());
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let health = |name: &str| -> (String, String) {
        let p = list["results"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{}", out.stdout));
        assert_eq!(p["provider_type"], "kubevirt");
        (
            p["health_status"].as_str().unwrap_or_default().to_string(),
            p["health_reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(health("kv"), ("ready".into(), String::new()));
    let (status, reason) = health("kv-nons");
    assert_eq!(status, "unhealthy");
    assert!(
        reason.contains("namespace missing does not exist"),
        "{reason}"
    );
    let (status, reason) = health("kv-bare");
    assert_eq!(status, "unhealthy");
    assert!(reason.contains("does not serve kubevirt.io/v1"), "{reason}");
    let (status, _) = health("kv-gone");
    assert_eq!(status, "unavailable");
    // The health check looked the cluster up: discovery, the namespace, the default class.
    let asked = good.requests();
    assert!(asked.iter().any(|r| r == "GET /apis"), "{asked:?}");
    assert!(
        asked
            .iter()
            .any(|r| r == "GET /apis/storage.k8s.io/v1/storageclasses"),
        "{asked:?}"
    );
}

#[test]
fn a_plan_sent_to_kubevirt_is_refused_until_the_mapping_exists_and_nothing_is_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster::default());
    let file = providers(tmp.path(), &good, &bare);
    let out = Plan::new(&["apply", "--yes", "--provider", "kv", "examples/lab.yml"])
        .env("SITEPLAN_PROVIDERS", &file)
        .env("XDG_STATE_HOME", tmp.path().join("state"))
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr
            .contains("the KubeVirt backend does not apply plans yet"),
        "{}",
        out.stderr
    );
    assert!(
        good.requests().iter().all(|r| r.starts_with("GET ")),
        "{:?}",
        good.requests()
    );
}
