//! How `plan` grows with the size of the lab, on the sandbox: generated plans of 100, 200, 400
//! and 1,000 VMs (each with a disk and a cloud-init seed, on 10 networks), each applied from
//! nothing, diffed with nothing to change, and destroyed, through the real binary. Time and peak
//! memory of each run are reported as ratios against the 100-VM lab of the same run: linear growth
//! is 10x at 1,000 VMs, and the goal is at most 12x; a diff of 1,000 VMs should stay under
//! 250 MiB.
//!
//! Run: `make bench` (or `cargo bench --bench scale`).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::fmt::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

const SIZES: [usize; 4] = [100, 200, 400, 1000];
const NETWORKS: usize = 10;
const COMMANDS: [&str; 3] = ["apply", "diff", "destroy"];

fn generated_plan(vms: usize) -> String {
    let mut plan = String::from("scpool:\n  type: pool\n  path: /srv/scale\n\n");
    for n in 0..NETWORKS {
        let _ = writeln!(
            plan,
            "scnet{n}:\n  type: network\n  cidr: 10.153.{n}.0/24\n  nat: false\n"
        );
    }
    for v in 0..vms {
        let _ = writeln!(
            plan,
            "scvm{v}:\n  memory: 64\n  numcpus: 1\n  pool: scpool\n  disks: [1]\n  \
             nets: [scnet{}]\n  cmds: [echo {v}]\n",
            v % NETWORKS
        );
    }
    plan
}

/// One run's wall time and peak resident memory.
#[derive(Clone, Copy)]
struct Cost {
    time: Duration,
    peak_kib: i64,
}

/// Runs `plan COMMAND PLAN` on the sandbox in `dir` and measures it: the peak memory is the
/// kernel's account of the child (`wait4`), not a sample.
fn run(command: &str, plan: &Path, sandbox: &Path) -> Cost {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plan"));
    cmd.env("SITEPLAN_SANDBOX_DIR", sandbox)
        .env("SITEPLAN_NO_KCLI_CONFIG", "1")
        .arg(command)
        .arg(plan)
        .args(["--provider", "sandbox", "-q"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(sandbox.with_extension("stderr")).expect("stderr file"));
    if command != "diff" {
        cmd.arg("--yes");
    }
    let start = Instant::now();
    #[allow(clippy::zombie_processes)] // waited for with wait4, which also gives its rusage
    let child = cmd.spawn().expect("plan starts");
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by the kernel.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, whose pid std gave us; std does not wait for it again.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let time = start.elapsed();
    assert!(
        pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "plan {command} on {} failed (status {status}):\n{}",
        plan.display(),
        std::fs::read_to_string(sandbox.with_extension("stderr")).unwrap_or_default()
    );
    Cost {
        time,
        peak_kib: usage.ru_maxrss,
    }
}

fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    let mut costs: Vec<(usize, [Cost; 3])> = Vec::new();
    for vms in SIZES {
        let plan = tmp.path().join(format!("scale{vms}.yml"));
        std::fs::write(&plan, generated_plan(vms)).expect("plan");
        let sandbox = tmp.path().join(format!("sandbox{vms}"));
        let measured = COMMANDS.map(|command| run(command, &plan, &sandbox));
        costs.push((vms, measured));
    }

    println!(
        "sandbox: VMs with a disk and a seed each, on {NETWORKS} networks; ratios against {} VMs",
        SIZES[0]
    );
    let base = costs[0].1;
    for (i, command) in COMMANDS.iter().enumerate() {
        println!("  plan {command}:");
        for (vms, measured) in &costs {
            let c = measured[i];
            println!(
                "    {vms:>5} VMs: {:>7.2} s ({:>5.2}x)  peak {:>6.1} MiB ({:>5.2}x)",
                c.time.as_secs_f64(),
                c.time.as_secs_f64() / base[i].time.as_secs_f64(),
                c.peak_kib as f64 / 1024.0,
                c.peak_kib as f64 / base[i].peak_kib as f64,
            );
        }
    }
    let (largest, last) = costs[costs.len() - 1];
    let growth = largest as f64 / SIZES[0] as f64;
    let worst_time = (0..COMMANDS.len())
        .map(|i| last[i].time.as_secs_f64() / base[i].time.as_secs_f64())
        .fold(0.0, f64::max);
    let worst_memory = (0..COMMANDS.len())
        .map(|i| last[i].peak_kib as f64 / base[i].peak_kib as f64)
        .fold(0.0, f64::max);
    println!(
        "  {largest} VMs against {}: time at most {worst_time:.2}x, memory at most \
         {worst_memory:.2}x ({growth:.0}x the VMs; goal: within {:.0}x)",
        SIZES[0],
        growth * 1.2
    );
    println!(
        "  diff of {largest} VMs: peak {:.1} MiB (goal: under 250 MiB)",
        last[1].peak_kib as f64 / 1024.0
    );
}
