//! A lab over a group of hosts, timed end to end through the real binary, as ratios against a
//! baseline from the same run:
//!
//! - bring-up (`plan apply`) of the same lab, 12 VMs on one network, each with a disk and a
//!   cloud-init seed, on one host against spread over three (`--provider lab`);
//! - observing (a no-change `plan diff`) the lab spread over the three hosts against the same
//!   lab on one: the hosts are asked at once, so the cost should stay near one host's; and
//!   the libvirt round trips each diff makes (from libvirt's client log), in all and per host.
//!   A spread lab's network spans the hosts, which adds one ssh command per host (its tunnel)
//!   to what is counted.
//!
//! Needs the libvirt hosts in namespaces that `.ci/hosts start 3` makes, reached over ssh as a
//! user reaches them (`SITEPLAN_BENCH_HOSTS` names the list it printed; skipped, saying so,
//! without it). The VMs start (TCG, 64 MiB, no bootable disk): what is timed is siteplan's and
//! libvirt's work, not a guest's boot.
//!
//! Run: `make bench` (or `SITEPLAN_BENCH_HOSTS=/tmp/siteplan-hosts/list cargo bench --bench
//! groups`).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a benchmark's own report

use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const VMS: usize = 12;
const RUNS: usize = 3;

fn lab() -> String {
    let mut plan = String::from(
        "spbenchpool:\n  type: pool\n  path: /var/lib/libvirt/images/spbench\n\
         spbenchnet:\n  type: network\n  cidr: 10.96.9.0/24\n  nat: false\n",
    );
    for v in 0..VMS {
        let _ = writeln!(
            plan,
            "spbench{v}:\n  virttype: qemu\n  cpumodel: qemu64\n  memory: 64\n  numcpus: 1\n  \
             pool: spbenchpool\n  disks: [1]\n  nets: [spbenchnet]\n  cmds: [echo {v}]"
        );
    }
    plan
}

/// `plan ARGS PLAN --provider PROVIDER -q` with `providers`; how long it took.
fn run(providers: &Path, plan: &Path, provider: &str, args: &[&str]) -> Duration {
    run_logged(providers, plan, provider, args, None)
}

/// `run`, with libvirt's client logging its RPC calls to `log`, when given.
fn run_logged(
    providers: &Path,
    plan: &Path,
    provider: &str,
    args: &[&str],
    log: Option<&Path>,
) -> Duration {
    let started = Instant::now();
    let mut command = Command::new(env!("CARGO_BIN_EXE_plan"));
    if let Some(log) = log {
        command
            .env("LIBVIRT_LOG_FILTERS", "1:rpc")
            .env("LIBVIRT_LOG_OUTPUTS", format!("1:file:{}", log.display()));
    }
    let out = command
        .env("SITEPLAN_PROVIDERS", providers)
        .env("XDG_STATE_HOME", providers.with_file_name("state"))
        .args(args)
        .arg(plan)
        .args(["--provider", provider, "-q"])
        .output()
        .expect("plan runs");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "plan {args:?} --provider {provider} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let Some(list) = std::env::var_os("SITEPLAN_BENCH_HOSTS") else {
        println!(
            "groups: SKIPPED (SITEPLAN_BENCH_HOSTS is not set; `.ci/hosts start 3` makes the hosts)"
        );
        return;
    };
    let list = std::fs::read_to_string(&list).expect("the hosts' list");
    let hosts: Vec<(&str, &str)> = list
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?))
        })
        .take(3)
        .collect();
    assert_eq!(hosts.len(), 3, "three hosts: {list}");
    let tmp = tempfile::tempdir().expect("tmp");
    let providers = tmp.path().join("providers.yml");
    let mut file = String::from("providers:\n");
    for (name, uri) in &hosts {
        let _ = writeln!(file, "  - {{name: {name}, type: libvirt, uri: '{uri}'}}");
    }
    let names: Vec<&str> = hosts.iter().map(|(n, _)| *n).collect();
    let _ = writeln!(
        file,
        "groups:\n  - {{name: lab, hosts: [{}]}}",
        names.join(", ")
    );
    std::fs::write(&providers, file).expect("providers file");
    let plan = tmp.path().join("spbench.yml");
    std::fs::write(&plan, lab()).expect("plan");

    // Bring-up: one host against three, each from nothing, alternating.
    let (mut one, mut three) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        for (target, times) in [(names[0], &mut one), ("lab", &mut three)] {
            let _ = run(&providers, &plan, target, &["destroy", "--yes"]);
            times.push(run(&providers, &plan, target, &["apply", "--yes"]));
            let _ = run(&providers, &plan, target, &["destroy", "--yes"]);
        }
    }
    let (one, three) = (median(one), median(three));
    println!(
        "groups: bring-up of {VMS} VMs over ssh, median of {RUNS}: one host {:.2} s, spread over \
         three {:.2} s: {:.2}x",
        one.as_secs_f64(),
        three.as_secs_f64(),
        three.as_secs_f64() / one.as_secs_f64()
    );

    // Observing: the same lab on one host, then spread over three, diffed with nothing to do.
    let mut observe = Vec::new();
    let mut round_trips = Vec::new();
    for target in [names[0], "lab"] {
        run(&providers, &plan, target, &["apply", "--yes"]);
        let times: Vec<Duration> = (0..RUNS)
            .map(|_| run(&providers, &plan, target, &["diff"]))
            .collect();
        observe.push(median(times));
        let log = tmp.path().join(format!("rpc-{target}.log"));
        run_logged(&providers, &plan, target, &["diff"], Some(&log));
        round_trips.push(
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("RPC_CLIENT_MSG_TX_QUEUE"))
                .count(),
        );
        run(&providers, &plan, target, &["destroy", "--yes"]);
    }
    println!(
        "groups: no-change diff over ssh, median of {RUNS}: one host {:.2} s, three hosts {:.2} \
         s: {:.2}x",
        observe[0].as_secs_f64(),
        observe[1].as_secs_f64(),
        observe[1].as_secs_f64() / observe[0].as_secs_f64()
    );
    println!(
        "groups: libvirt round trips of that diff: one host {}, three hosts {} ({:.0} per host; \
         placement asks each host too)",
        round_trips[0],
        round_trips[1],
        round_trips[1] as f64 / 3.0
    );
}
