//! `plan apply` of generated plans, timed end to end through the real binary (observe, plan,
//! apply, the VM table), reported as ratios against a baseline from the same run:
//!
//! - sandbox, 10 networks and 200 VMs with one disk each: `--parallelism 32` against
//!   `--parallelism 1`, and the second (no-change) apply against the first;
//! - a real libvirtd (when `SITEPLAN_BENCH_LIBVIRT_URI` is set), 30 VMs on 3 networks, each
//!   with a disk and a cloud-init seed: the same ratios.
//!
//! Run: `make bench` (or `cargo bench --bench apply`).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A plan of `networks` isolated networks and `vms` VMs, each VM with one disk of its own.
fn generated_plan(networks: usize, vms: usize, pool_path: &str, prefix: &str) -> String {
    let mut plan = String::new();
    let _ = writeln!(plan, "{prefix}pool:\n  type: pool\n  path: {pool_path}\n");
    for n in 0..networks {
        let _ = writeln!(
            plan,
            "{prefix}net{n}:\n  type: network\n  cidr: 10.{}.{n}.0/24\n  nat: false\n",
            150 + prefix.len()
        );
    }
    for v in 0..vms {
        let _ = writeln!(
            plan,
            "{prefix}vm{v}:\n  virttype: qemu\n  cpumodel: qemu64\n  memory: 64\n  numcpus: 1\n  \
             pool: {prefix}pool\n  disks: [1]\n  nets: [{prefix}net{}]\n  cmds: [echo {v}]\n",
            v % networks
        );
    }
    plan
}

struct Target<'a> {
    provider: &'a str,
    sandbox: &'a Path,
    plan: &'a Path,
}

impl Target<'_> {
    fn run(&self, args: &[&str]) -> Duration {
        let start = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_plan"))
            .env("SITEPLAN_SANDBOX_DIR", self.sandbox)
            .args(args)
            .arg(self.plan)
            .args(["--provider", self.provider, "--yes", "-q"])
            .output()
            .expect("plan runs");
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "plan {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }

    /// Apply from nothing with `parallelism`, then apply again (no changes), then destroy.
    fn cycle(&self, parallelism: usize) -> (Duration, Duration) {
        let p = parallelism.to_string();
        let first = self.run(&["apply", "--parallelism", &p]);
        let again = self.run(&["apply", "--parallelism", &p]);
        self.run(&["destroy", "--parallelism", "32"]);
        (first, again)
    }
}

fn report(label: &str, target: &Target, serial: usize, parallel: usize) {
    target.run(&["destroy", "--parallelism", "32"]);
    let (one, no_change) = target.cycle(serial);
    let (many, _) = target.cycle(parallel);
    println!("{label}");
    println!(
        "  apply, --parallelism {serial:>2}: {:>8.2} s (baseline)",
        one.as_secs_f64()
    );
    println!(
        "  apply, --parallelism {parallel:>2}: {:>8.2} s  ({:.2}x the baseline's time)",
        many.as_secs_f64(),
        many.as_secs_f64() / one.as_secs_f64()
    );
    println!(
        "  apply again, no changes: {:>8.2} s  ({:.3}x the baseline's time)",
        no_change.as_secs_f64(),
        no_change.as_secs_f64() / one.as_secs_f64()
    );
}

fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let plan = tmp.path().join("bench200.yml");
    std::fs::write(&plan, generated_plan(10, 200, "/srv/bench", "ba")).expect("plan");
    report(
        "sandbox: 10 networks, 200 VMs with one disk and a seed each (611 resources)",
        &Target {
            provider: "sandbox",
            sandbox: &sandbox,
            plan: &plan,
        },
        1,
        32,
    );

    match std::env::var("SITEPLAN_BENCH_LIBVIRT_URI")
        .ok()
        .filter(|u| !u.is_empty())
    {
        Some(uri) => {
            let dir = std::env::var("SITEPLAN_BENCH_POOL_DIR")
                .unwrap_or_else(|_| "/var/lib/libvirt/siteplan-bench-apply".into());
            let plan = tmp.path().join("bench30.yml");
            std::fs::write(&plan, generated_plan(3, 30, &dir, "bal")).expect("plan");
            report(
                &format!("libvirt {uri}: 3 networks, 30 running VMs with one disk and a seed each"),
                &Target {
                    provider: &uri,
                    sandbox: &sandbox,
                    plan: &plan,
                },
                1,
                10,
            );
        }
        None => println!(
            "libvirt: SKIPPED (set SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system to apply to libvirtd)"
        ),
    }
}
