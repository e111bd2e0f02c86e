//! `plan graph --view topology` of a 200-VM lab (two networks, a pool, an image, and per VM two
//! disks and a cloud-init seed: 805 elements, all of them but the networks added), against a baseline measured in the same run:
//! `plan graph` of the same plan (its dependency graph as text), which reads, renders and
//! checks the plan as the picture does, but draws nothing. The goal (issue 28): the lab drawn
//! in under a second.
//!
//! Run: `cargo bench --bench picture`.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a benchmark's own report

use std::fmt::Write;
use std::process::Command;
use std::time::{Duration, Instant};

const VMS: usize = 200;
const RUNS: usize = 5;

fn lab() -> String {
    let mut plan = String::from(
        "front:\n  type: network\n  cidr: 10.40.0.0/16\n\
         back:\n  type: network\n  cidr: 10.41.0.0/16\n\
         labpool:\n  type: pool\n  path: /var/lib/siteplan/bench\n\
         debian12:\n  type: image\n  url: https://example.org/debian-12.qcow2\n  pool: labpool\n",
    );
    for v in 0..VMS {
        let _ = writeln!(
            plan,
            "vm{v}:\n  image: debian12\n  pool: labpool\n  memory: 1024\n  disks: [10, 20]\n  \
             nets: [front, back]\n  cmds: [echo {v}]"
        );
    }
    plan
}

/// The median wall time of `plan ARGS FILE`.
fn median(file: &std::path::Path, args: &[&str]) -> (Duration, usize) {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..RUNS {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_plan"))
            .args(args)
            .arg(file)
            .output()
            .expect("plan runs");
        times.push(started.elapsed());
        assert!(
            out.status.success(),
            "plan {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        size = out.stdout.len();
    }
    times.sort();
    (times[RUNS / 2], size)
}

fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("big.yml");
    std::fs::write(&file, lab()).expect("plan");
    // Against an older version that had the networks only: every VM is drawn, as added.
    let old = tmp.path().join("old.yml");
    std::fs::write(&old, lab().split("labpool:").next().unwrap_or_default()).expect("old");
    let against = old.to_string_lossy().into_owned();
    let (deps, _) = median(&file, &["graph"]);
    for format in ["svg", "html", "mermaid"] {
        let (picture, size) = median(
            &file,
            &[
                "graph",
                "--view",
                "topology",
                "--against",
                &against,
                "--format",
                format,
            ],
        );
        println!(
            "picture of {VMS} VMs, all added ({format}, {} KiB): {:.3} s, against {:.3} s for \
             its dependency graph ({:.2}x); drawing alone {:.3} s",
            size.div_ceil(1024),
            picture.as_secs_f64(),
            deps.as_secs_f64(),
            picture.as_secs_f64() / deps.as_secs_f64(),
            picture.saturating_sub(deps).as_secs_f64()
        );
    }
}
