//! Lab snapshots of real guests: 3 and 10 VMs booted from the test image
//! (`tests/guest-image/build`) on a real libvirtd under TCG, on an isolated network. For each,
//! `plan snapshot create` and `plan snapshot revert` with every VM at once against one VM at a
//! time (`--parallelism 1`, the way kcli walks a plan), reported as ratios: how long the lab was
//! paused (as the command says) and the whole command.
//!
//! Needs `SITEPLAN_BENCH_LIBVIRT_URI` (qemu:///system) and the test image (target/guest-image,
//! or `SITEPLAN_TEST_GUEST_IMAGE`); skipped, saying so, without them.
//! Run: `make bench` (or `cargo bench --bench snapshot`).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a benchmark's own report

use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const POOL: &str = "/var/lib/libvirt/siteplan-bench-snapshot";

/// `vms` guests booting the test image on one isolated network.
fn plan(vms: usize, image: &Path) -> String {
    let image = image.display();
    let mut plan = format!(
        "bsnet:\n  type: network\n  cidr: 10.95.3.0/24\n  nat: false\n  dhcp_start: 10.95.3.100\n  \
         dhcp_end: 10.95.3.199\nbspool:\n  type: pool\n  path: {POOL}\n\
         bs-root:\n  type: image\n  url: {image}/root.qcow2\n  pool: bspool\n\
         bs-vmlinuz:\n  type: image\n  url: {image}/vmlinuz\n  pool: bspool\n\
         bs-initrd:\n  type: image\n  url: {image}/initrd.img\n  pool: bspool\n"
    );
    for v in 0..vms {
        let _ = writeln!(
            plan,
            "bs{v}:\n  image: bs-root\n  pool: bspool\n  kernel: bs-vmlinuz\n  initrd: bs-initrd\n  \
             cmdline: root=/dev/vda console=ttyS0\n  virttype: qemu\n  numcpus: 1\n  memory: 512\n  \
             nets: [bsnet]\n"
        );
    }
    plan
}

struct Lab<'a> {
    uri: &'a str,
    file: PathBuf,
}

impl Lab<'_> {
    /// Runs `plan ARGS FILE --provider URI MORE`; its stderr.
    fn run(&self, args: &[&str], more: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_plan"))
            .args(args)
            .arg(&self.file)
            .args(["--provider", self.uri])
            .args(more)
            .output()
            .expect("plan runs");
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "plan {args:?} failed:\n{}{said}",
            String::from_utf8_lossy(&out.stdout)
        );
        said
    }

    /// The pause and the whole time a snapshot command reports.
    fn timed(&self, args: &[&str], more: &[&str]) -> (Duration, Duration) {
        let said = self.run(args, more);
        let seconds = |after: &str| -> Duration {
            said.split(after)
                .nth(1)
                .and_then(|rest| rest.split('s').next())
                .and_then(|n| n.trim().parse::<f64>().ok())
                .map(Duration::from_secs_f64)
                .unwrap_or_else(|| panic!("no `{after}` in:\n{said}"))
        };
        let total = said
            .rsplit("; ")
            .next()
            .and_then(|t| t.split('s').next())
            .and_then(|n| n.trim().parse::<f64>().ok())
            .map(Duration::from_secs_f64)
            .unwrap_or_else(|| panic!("no total in:\n{said}"));
        (seconds("paused for "), total)
    }
}

fn line(what: &str, (pause, total): (Duration, Duration), base: Option<(Duration, Duration)>) {
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    match base {
        None => println!(
            "  {what:<34} paused {:>6.2} s, in all {:>6.2} s (baseline)",
            pause.as_secs_f64(),
            total.as_secs_f64()
        ),
        Some((bp, bt)) => println!(
            "  {what:<34} paused {:>6.2} s, in all {:>6.2} s ({:.2}x and {:.2}x the baseline's)",
            pause.as_secs_f64(),
            total.as_secs_f64(),
            ratio(pause, bp),
            ratio(total, bt)
        ),
    }
}

fn measure(uri: &str, image: &Path, vms: usize, dir: &Path) {
    let lab = Lab {
        uri,
        file: dir.join(format!("bench{vms}.yml")),
    };
    std::fs::write(&lab.file, plan(vms, image)).expect("plan");
    let _ = Command::new(env!("CARGO_BIN_EXE_plan"))
        .args(["destroy"])
        .arg(&lab.file)
        .args(["--provider", uri, "--yes", "-q"])
        .output();
    lab.run(
        &["apply"],
        &["--yes", "-q", "--wait", "--wait-timeout", "900"],
    );
    println!("libvirt {uri}: {vms} guests of the test image, 512 MiB each, under TCG");
    let one = lab.timed(&["snapshot", "create"], &["one", "--parallelism", "1"]);
    line("create, one VM at a time:", one, None);
    let all = lab.timed(&["snapshot", "create"], &["all"]);
    line("create, all at once:", all, Some(one));
    let back_one = lab.timed(
        &["snapshot", "revert"],
        &["one", "--yes", "--parallelism", "1"],
    );
    line("revert, one VM at a time:", back_one, None);
    let back_all = lab.timed(&["snapshot", "revert"], &["all", "--yes"]);
    line("revert, all at once:", back_all, Some(back_one));
    lab.run(&["destroy"], &["--yes", "-q"]);
}

fn main() {
    let Some(uri) = std::env::var("SITEPLAN_BENCH_LIBVIRT_URI")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("lab snapshots: SKIPPED (set SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system)");
        return;
    };
    let image = std::env::var_os("SITEPLAN_TEST_GUEST_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/guest-image"));
    if !image.join("SHA256SUMS").is_file() {
        println!(
            "lab snapshots: SKIPPED (no test image in {}; tests/guest-image/build makes it)",
            image.display()
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let sizes: Vec<usize> = std::env::var("SITEPLAN_BENCH_SNAPSHOT_VMS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![3, 10]);
    for vms in sizes {
        measure(&uri, &image, vms, tmp.path());
    }
}
