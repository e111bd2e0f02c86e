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
//! When `SITEPLAN_TEST_APISERVER` names a real kube-apiserver's kubeconfig (`.ci/kube start`
//! starts one; the benchmark installs KubeVirt's CRDs and storage classes there itself), the
//! same apply runs against it too, in a namespace of its own (`siteplan-bench`), with the bound
//! computed from what the server took for each of the apply's requests (its audit log times
//! them: `.ci/kube` logs reads in that namespace too), and with the CPU floor of the machine
//! it runs on (the server and the client share its CPUs: the apply cannot take less than the
//! CPU time they all used over the CPUs there are); and its destroy is reported against the
//! apply (no KubeVirt controller runs there, so the VMs own nothing: the destroy measures
//! siteplan's requests and the wait until each object is gone).
//!
//! Run: `make bench` (or `cargo bench --bench kubevirt`).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a benchmark's own report
#![allow(dead_code)] // the stand-in serves the tests too

#[path = "../tests/integration/kube_api/mod.rs"]
mod kube_api;
/// What a cluster with KubeVirt offers (CRDs, storage classes, a node), so a fresh server will do.
#[path = "../tests/integration/kube_real/setup.rs"]
mod setup;

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

/// The namespace the benchmark runs in on a real server, whose reads `.ci/kube`'s audit
/// policy logs too (the writes it logs everywhere).
const NAMESPACE: &str = "siteplan-bench";

/// Against a real kube-apiserver: apply and destroy, in a namespace made for the run.
fn real(kubeconfig: &std::path::Path) {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, PostParams};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("config");
        let client = kube::Client::try_from(config).expect("client");
        setup::kubevirt_installed(&client).await;
        let namespaces = Api::<Namespace>::all(client.clone());
        // What an earlier run left goes first.
        if namespaces
            .get_opt(NAMESPACE)
            .await
            .expect("a GET")
            .is_some()
        {
            let _ = namespaces.delete(NAMESPACE, &Default::default()).await;
            while namespaces
                .get_opt(NAMESPACE)
                .await
                .expect("a GET")
                .is_some()
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": NAMESPACE}}))
                    .expect("namespace"),
            )
            .await
            .expect("the bench's namespace");
        client
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let providers = tmp.path().join("providers.yml");
    std::fs::write(
        &providers,
        format!(
            "providers:\n  - {{name: kv, type: kubevirt, kubeconfig: {}, namespace: {NAMESPACE}}}\n",
            kubeconfig.display()
        ),
    )
    .expect("providers file");
    let plan_file = tmp.path().join("bench.yml");
    std::fs::write(&plan_file, lab()).expect("plan");
    let parallelism = PARALLELISM.to_string();
    let started = std::time::SystemTime::now();
    let (machine_before, server_before) = (machine_cpu(), server_cpu());
    let apply = run(
        &providers,
        &plan_file,
        &["apply", "--yes", "--parallelism", &parallelism],
    );
    let (machine_after, server_after) = (machine_cpu(), server_cpu());
    let diffed = std::time::SystemTime::now();
    let (diff_machine_before, diff_server_before) = (machine_cpu(), server_cpu());
    let diff = run(&providers, &plan_file, &["diff"]);
    let (diff_machine_after, diff_server_after) = (machine_cpu(), server_cpu());
    println!(
        "kubevirt no-change diff on a real server: {:.2} s",
        diff.as_secs_f64()
    );
    // The bound from what the server took, as its audit log times each of the apply's requests.
    let requests: Vec<Request> = server_times(kubeconfig)
        .into_iter()
        .filter(|r| r.received >= started && r.received < diffed)
        .collect();
    let bound = apply_bound(&requests);
    // The diff is what an apply does before its first change (start, read, observe, plan).
    let changing = apply.saturating_sub(diff);
    println!(
        "kubevirt apply on a real server, {VMS} VMs ({} requests timed by the server), \
         --parallelism {PARALLELISM}: {:.2} s, of which {:.2} s after planning, {:.2}x the \
         critical-path bound of {:.2} s",
        requests.len(),
        apply.as_secs_f64(),
        changing.as_secs_f64(),
        changing.as_secs_f64() / bound.as_secs_f64(),
        bound.as_secs_f64()
    );
    // What the machine could give: the server (kube-apiserver and etcd) and the client share
    // its CPUs, so the apply cannot take less than the CPU time they used over the CPUs there
    // are, whatever the round trips say.
    let busy = machine_after.busy.saturating_sub(machine_before.busy);
    let total = machine_after.total.saturating_sub(machine_before.total);
    let server = server_after.saturating_sub(server_before);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor = busy / cpus as u32;
    println!(
        "kubevirt apply on a real server, the machine: {cpus} CPUs {:.0}% busy during the apply \
         ({:.2} CPU-s, of which {:.2} s the server's); the CPU floor (busy time over the CPUs) \
         is {:.2} s, and the apply took {:.2}x it",
        100.0 * busy.as_secs_f64() / total.as_secs_f64().max(f64::EPSILON),
        busy.as_secs_f64(),
        server.as_secs_f64(),
        floor.as_secs_f64(),
        apply.as_secs_f64() / floor.as_secs_f64().max(f64::EPSILON),
    );
    // After planning: the apply's CPU less what a diff (everything an apply does before its
    // first change) used, against the critical-path bound.
    let diff_busy = diff_machine_after
        .busy
        .saturating_sub(diff_machine_before.busy);
    let diff_server = diff_server_after.saturating_sub(diff_server_before);
    let changing_busy = busy.saturating_sub(diff_busy);
    let changing_floor = changing_busy / cpus as u32;
    println!(
        "kubevirt apply on a real server after planning: {:.2} CPU-s busy (the server's {:.2}), \
         a CPU floor of {:.2} s, which is {:.2}x the critical-path bound; the apply after \
         planning took {:.2}x the floor",
        changing_busy.as_secs_f64(),
        server.saturating_sub(diff_server).as_secs_f64(),
        changing_floor.as_secs_f64(),
        changing_floor.as_secs_f64() / bound.as_secs_f64(),
        changing.as_secs_f64() / changing_floor.as_secs_f64().max(f64::EPSILON),
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
        let _ = Api::<Namespace>::all(client)
            .delete(NAMESPACE, &Default::default())
            .await;
    });
}

/// The machine's CPU time since boot, from /proc/stat: busy (all but idle and iowait), and in
/// all, summed over its CPUs.
struct MachineCpu {
    busy: Duration,
    total: Duration,
}

fn machine_cpu() -> MachineCpu {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
    MachineCpu {
        busy: clock_ticks(total - idle),
        total: clock_ticks(total),
    }
}

/// The CPU time kube-apiserver and etcd have used, from /proc/PID/stat.
fn server_cpu() -> Duration {
    let mut used = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if !matches!(comm.trim(), "kube-apiserver" | "etcd") {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // After the command's name in parentheses: utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let field =
            |n: usize| -> u64 { fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0) };
        used += field(14) + field(15);
    }
    clock_ticks(used)
}

/// Clock ticks as time: Linux counts 100 a second for every program that reads /proc.
fn clock_ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}

/// One of siteplan's requests in the benchmark's namespace, as the server's audit log has it.
struct Request {
    verb: String,
    resource: String,
    name: String,
    received: std::time::SystemTime,
    took: Duration,
}

/// The critical-path bound of the apply after planning, from what the server took for each of
/// its requests: taking the lock (a Lease), then the creates (each a GET, is the name free?,
/// and its apply; a VM's chain is its Secret's create, then its own), all of them spread over
/// the parallel slots or the longest chain, whichever is longer; then the VM table's lists,
/// asked at once; then the lock's release.
fn apply_bound(requests: &[Request]) -> Duration {
    let lock: Duration = requests
        .iter()
        .filter(|r| r.resource == "leases" && r.verb != "get")
        .map(|r| r.took)
        .sum();
    let creating = |r: &&Request| r.verb == "get" || r.verb == "patch";
    let create = |name: &str| -> Duration {
        requests
            .iter()
            .filter(creating)
            .filter(|r| r.name == name)
            .map(|r| r.took)
            .sum()
    };
    let chain = (0..VMS)
        .map(|v| create(&format!("bench{v}-cloudinit")) + create(&format!("bench{v}")))
        .max()
        .unwrap_or_default();
    let all: Duration = requests
        .iter()
        .filter(creating)
        .filter(|r| r.resource != "leases")
        .map(|r| r.took)
        .sum();
    let last_change = requests
        .iter()
        .filter(|r| r.verb == "patch")
        .map(|r| r.received)
        .max();
    let table = requests
        .iter()
        .filter(|r| r.verb == "list" && last_change.is_some_and(|at| r.received > at))
        .map(|r| r.took)
        .max()
        .unwrap_or_default();
    lock + chain.max(all / PARALLELISM as u32) + table
}

/// Each of siteplan's requests in the benchmark's namespace, from the server's audit log
/// (`.ci/kube` keeps it beside the kubeconfig, and logs reads in that namespace); none without
/// one.
fn server_times(kubeconfig: &std::path::Path) -> Vec<Request> {
    let log = std::fs::read_to_string(kubeconfig.with_file_name("audit.log")).unwrap_or_default();
    let mut requests = Vec::new();
    for line in log.lines() {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let ours = event["userAgent"]
            .as_str()
            .is_some_and(|a| a.starts_with("siteplan/"))
            && event["objectRef"]["namespace"] == NAMESPACE;
        let time = |key: &str| {
            event[key]
                .as_str()
                .and_then(|t| humantime::parse_rfc3339(t).ok())
        };
        let (Some(verb), Some(resource), Some(received), Some(done)) = (
            event["verb"].as_str(),
            event["objectRef"]["resource"].as_str(),
            time("requestReceivedTimestamp"),
            time("stageTimestamp"),
        ) else {
            continue;
        };
        if ours {
            requests.push(Request {
                verb: verb.into(),
                resource: resource.into(),
                name: event["objectRef"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .into(),
                received,
                took: done.duration_since(received).unwrap_or_default(),
            });
        }
    }
    requests
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
