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
    let plan_file = tmp.path().join("bench.yml");
    std::fs::write(&plan_file, plan).expect("plan");
    let run = |args: &[&str]| -> Duration {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_plan"))
            .env("SITEPLAN_PROVIDERS", &providers)
            .args(args)
            .arg(&plan_file)
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
    };

    let parallelism = PARALLELISM.to_string();
    let wall = run(&["apply", "--yes", "--parallelism", &parallelism]);
    // Changes: the network, the image, and per VM its Secret and its VirtualMachine (which
    // needs the Secret, the network and the image): a chain of two.
    let changes = 2 + 2 * VMS as u32;
    let per_change = LATENCY * REQUESTS_PER_CREATE;
    let chain = per_change * 2;
    let spread = per_change * changes / PARALLELISM as u32;
    let bound = chain.max(spread);
    println!(
        "kubevirt apply, {VMS} VMs ({changes} objects) at {} ms a request, --parallelism {PARALLELISM}: \
         {:.2} s, {:.2}x the critical-path bound of {:.2} s",
        LATENCY.as_millis(),
        wall.as_secs_f64(),
        wall.as_secs_f64() / bound.as_secs_f64(),
        bound.as_secs_f64()
    );

    let before = cluster.requests().len();
    let diff = run(&["diff"]);
    let requests = cluster.requests().len() - before;
    println!(
        "kubevirt no-change diff of {changes} objects: {requests} requests ({:.2} s)",
        diff.as_secs_f64()
    );
}
