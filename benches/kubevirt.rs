//! `plan apply` of 100 VMs to a KubeVirt provider, through the real binary and a real
//! `kube::Client`, against the tests' stand-in API server answering each request after a fixed
//! latency (20 ms, a cluster's round trip). Reported as ratios, never as timed assertions:
//!
//! - wall time of the apply against the critical-path bound for the parallelism used: the
//!   longest chain of dependent changes, or all the changes' requests spread over the
//!   parallel slots, whichever is longer, each change costing its requests' latency;
//! - the number of requests a no-change `plan diff` makes (one LIST per kind, whatever the
//!   number of VMs), against the objects it covers.
//!
//! When `SITEPLAN_TEST_APISERVER` names a real kube-apiserver's kubeconfig (`make test-kube`
//! starts one), the same apply runs against it too, in a namespace of its own, with the bound
//! computed from a round trip measured there; and its destroy is reported against the apply
//! (no KubeVirt controller runs there, so the VMs own nothing: the destroy measures siteplan's
//! requests and the garbage collector's turn for a foreground delete).
//!
//! Run: `make bench` (or `cargo bench --bench kubevirt`).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a benchmark's own report
#![allow(dead_code)] // the stand-in serves the tests too

#[path = "../tests/integration/kube_api/mod.rs"]
mod kube_api;

use std::fmt::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use kube_api::{Cluster, StandIn};

const VMS: usize = 100;
const LATENCY: Duration = Duration::from_millis(20);
const PARALLELISM: usize = 10;
/// A create is a GET (is the name free?) and an apply.
const REQUESTS_PER_CREATE: u32 = 2;

fn main() {
    stand_in();
    if let Some(kubeconfig) = std::env::var_os("SITEPLAN_TEST_APISERVER") {
        real(std::path::Path::new(&kubeconfig));
    } else {
        println!("kubevirt on a real server: SKIPPED (SITEPLAN_TEST_APISERVER is not set)");
    }
}

/// The lab's plan: a network, an image, and `VMS` VMs on both networks with cloud-init.
fn lab() -> String {
    let mut plan = String::from(
        "benchnet:\n  type: network\n  cidr: 10.123.0.0/16\n\
         bookworm:\n  type: image\n  url: https://example.org/debian-12.qcow2\n",
    );
    for v in 0..VMS {
        let _ = writeln!(
            plan,
            "bench{v}:\n  image: bookworm\n  memory: 1024\n  nets: [default, benchnet]\n  cmds: [echo {v}]"
        );
    }
    plan
}

/// Runs `plan ARGS PLAN --provider kv -q` with `providers`; how long it took.
fn run(providers: &std::path::Path, plan_file: &std::path::Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_plan"))
        .env("SITEPLAN_PROVIDERS", providers)
        .args(args)
        .arg(plan_file)
        .args(["--provider", "kv", "-q"])
        .output()
        .expect("plan runs");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "plan {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// The critical-path bound of the apply, each request taking `round_trip`: the chain of two
/// (a VM needs its Secret), or all the changes' requests spread over the parallel slots.
fn bound(round_trip: Duration) -> (u32, Duration) {
    // Changes: the network, the image, and per VM its Secret and its VirtualMachine.
    let changes = 2 + 2 * VMS as u32;
    let per_change = round_trip * REQUESTS_PER_CREATE;
    let chain = per_change * 2;
    let spread = per_change * changes / PARALLELISM as u32;
    (changes, chain.max(spread))
}

/// Against a real kube-apiserver: apply and destroy, in a namespace made for the run.
fn real(kubeconfig: &std::path::Path) {
    use kube::api::{Api, PostParams};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let (client, round_trip) = runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": namespace}}))
                    .expect("namespace"),
            )
            .await
            .expect("the bench's namespace");
        // A round trip there: the median of 21 GETs (what a create asks before its apply).
        let mut times = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            namespaces.get(&namespace).await.expect("a GET");
            times.push(started.elapsed());
        }
        times.sort();
        (client, times[10])
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let providers = tmp.path().join("providers.yml");
    std::fs::write(
        &providers,
        format!(
            "providers:\n  - {{name: kv, type: kubevirt, kubeconfig: {}, namespace: {namespace}}}\n",
            kubeconfig.display()
        ),
    )
    .expect("providers file");
    let plan_file = tmp.path().join("bench.yml");
    std::fs::write(&plan_file, lab()).expect("plan");
    let parallelism = PARALLELISM.to_string();
    let apply = run(
        &providers,
        &plan_file,
        &["apply", "--yes", "--parallelism", &parallelism],
    );
    let diff = run(&providers, &plan_file, &["diff"]);
    println!(
        "kubevirt no-change diff on a real server: {:.2} s",
        diff.as_secs_f64()
    );
    // The bound from what the server took: each create is a GET (the round trip measured) and
    // its write, as the server's audit log times it; a VM's chain is its Secret, then it.
    let writes = writes(kubeconfig, &namespace);
    let create = |name: &str| round_trip + writes.get(name).copied().unwrap_or_default();
    let chain = (0..VMS)
        .map(|v| create(&format!("bench{v}-cloudinit")) + create(&format!("bench{v}")))
        .max()
        .unwrap_or_default();
    let all: Duration = writes.values().map(|w| round_trip + *w).sum();
    let bound = chain.max(all / PARALLELISM as u32);
    // The diff is what an apply does before its first change (start, read, observe, plan).
    let changing = apply.saturating_sub(diff);
    println!(
        "kubevirt apply on a real server, {VMS} VMs ({} writes timed by the server, a round trip \
         {:.2} ms), --parallelism {PARALLELISM}: {:.2} s, of which {:.2} s after planning, \
         {:.2}x the critical-path bound of {:.2} s",
        writes.len(),
        round_trip.as_secs_f64() * 1000.0,
        apply.as_secs_f64(),
        changing.as_secs_f64(),
        changing.as_secs_f64() / bound.as_secs_f64(),
        bound.as_secs_f64()
    );
    let destroy = run(
        &providers,
        &plan_file,
        &["destroy", "--yes", "--parallelism", &parallelism],
    );
    println!(
        "kubevirt destroy on a real server: {:.2} s, {:.1}x the apply",
        destroy.as_secs_f64(),
        destroy.as_secs_f64() / apply.as_secs_f64()
    );
    runtime.block_on(async {
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
            .delete(&namespace, &Default::default())
            .await;
    });
}

/// How long the server took for each of siteplan's writes in `namespace`, by object name,
/// from its audit log (`.ci/kube` keeps it beside the kubeconfig); none without one.
fn writes(
    kubeconfig: &std::path::Path,
    namespace: &str,
) -> std::collections::BTreeMap<String, Duration> {
    let log = std::fs::read_to_string(kubeconfig.with_file_name("audit.log")).unwrap_or_default();
    let mut took = std::collections::BTreeMap::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = event["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with("siteplan/"))
            && event["objectRef"]["namespace"] == namespace
            && event["verb"] == "patch";
        let time = |key: &str| {
            event[key]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
        };
        let (Some(name), Some(received), Some(done)) = (
            event["objectRef"]["name"].as_str(),
            time("requestReceivedTimestamp"),
            time("stageTimestamp"),
        ) else {
            continue;
        };
        if ours {
            took.insert(
                name.to_string(),
                done.duration_since(received).unwrap_or_default(),
            );
        }
    }
    took
}

/// Against the stand-in, answering each request after `LATENCY`.
fn stand_in() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = StandIn::start(Cluster {
        latency: LATENCY,
        ..Cluster::default()
    });
    let kubeconfig = cluster.kubeconfig(tmp.path(), "lab");
    let providers = tmp.path().join("providers.yml");
    std::fs::write(
        &providers,
        format!(
            "providers:\n  - {{name: kv, type: kubevirt, kubeconfig: {}}}\n",
            kubeconfig.display()
        ),
    )
    .expect("providers file");
    let plan_file = tmp.path().join("bench.yml");
    std::fs::write(&plan_file, lab()).expect("plan");
    let parallelism = PARALLELISM.to_string();
    let wall = run(
        &providers,
        &plan_file,
        &["apply", "--yes", "--parallelism", &parallelism],
    );
    let (changes, bound) = bound(LATENCY);
    println!(
        "kubevirt apply, {VMS} VMs ({changes} objects) at {} ms a request, --parallelism {PARALLELISM}: \
         {:.2} s, {:.2}x the critical-path bound of {:.2} s",
        LATENCY.as_millis(),
        wall.as_secs_f64(),
        wall.as_secs_f64() / bound.as_secs_f64(),
        bound.as_secs_f64()
    );

    let before = cluster.requests().len();
    let diff = run(&providers, &plan_file, &["diff"]);
    let requests = cluster.requests().len() - before;
    println!(
        "kubevirt no-change diff of {changes} objects: {requests} requests ({:.2} s)",
        diff.as_secs_f64()
    );
}
