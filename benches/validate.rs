//! Validate + graph a generated 10,000-entry plan, against a baseline measured in the same run:
//! parsing the same text into a plain YAML value with serde_norway (no spans, no checks).
//!
//! Reports wall time (median of several runs) and peak heap of each, and their ratios.
//! Target from issue 2: validate+graph under 1 s and under 200 MB.
//!
//! Run: `make bench` (or `cargo bench --bench validate`).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use siteplan::manifest::{self, Options, Overrides};

/// Counts live heap bytes and remembers the peak, so memory is measured per operation.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NETWORKS: usize = 100;
const POOLS: usize = 20;
const IMAGES: usize = 80;
const VMS: usize = 10_000 - NETWORKS - POOLS - IMAGES;

/// A plan in the style of a large lab: every VM has a static IP, two disks, a profile-free set of
/// keys, and one in ten depends on an earlier VM.
fn generate() -> String {
    let mut s = String::with_capacity(4 << 20);
    for n in 0..NETWORKS {
        let _ = writeln!(
            s,
            "net{n}:\n  type: network\n  cidr: 10.{}.{}.0/24\n",
            n / 250,
            n % 250
        );
    }
    for p in 0..POOLS {
        let _ = writeln!(s, "pool{p}:\n  type: pool\n  path: /srv/pools/pool{p}\n");
    }
    for i in 0..IMAGES {
        let _ = writeln!(
            s,
            "image{i}:\n  type: image\n  url: https://images.example/image{i}.qcow2\n  pool: pool{}\n",
            i % POOLS
        );
    }
    for v in 0..VMS {
        let net = v % NETWORKS;
        let host = 10 + v / NETWORKS;
        let _ = writeln!(
            s,
            "vm{v}:\n  image: image{}\n  pool: pool{}\n  numcpus: 2\n  memory: 2G\n  disks:\n    - 10\n    - size: 20\n      thin: false\n  nets:\n    - name: net{net}\n      ip: 10.{}.{}.{host}\n      prefix: 24\n  cmds:\n    - echo vm{v}",
            v % IMAGES,
            v % POOLS,
            net / 250,
            net % 250,
        );
        if v % 10 == 9 {
            let _ = writeln!(s, "  depends_on: [vm{}]", v - 1);
        }
        s.push('\n');
    }
    s
}

struct Measured {
    median: Duration,
    peak_bytes: usize,
}

fn measure(runs: usize, mut f: impl FnMut()) -> Measured {
    let mut times = Vec::with_capacity(runs);
    let mut peak_bytes = 0;
    for _ in 0..runs {
        let before = LIVE.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let start = Instant::now();
        f();
        times.push(start.elapsed());
        peak_bytes = peak_bytes.max(PEAK.load(Ordering::Relaxed) - before);
    }
    times.sort();
    Measured {
        median: times[times.len() / 2],
        peak_bytes,
    }
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let text = generate();
    let path = Path::new("bench-plan.yml");
    // Sanity: the generated plan is valid, so the measurement covers the whole pipeline.
    let loaded = match manifest::load_text(&text, path, &Overrides::default(), Options::default()) {
        Ok(loaded) => loaded,
        Err(failure) => {
            eprintln!("generated plan is invalid: {:?}", failure.problems.first());
            std::process::exit(1);
        }
    };
    println!(
        "plan: {} entries, {:.1} MB of YAML, {} graph nodes, {} edges",
        loaded.manifest.entries.len(),
        mb(text.len()),
        loaded.graph.node_count(),
        loaded.graph.edge_count()
    );
    drop(loaded);

    let runs = 7;
    let baseline = measure(runs, || {
        let value: serde_norway::Value =
            serde_norway::from_str(black_box(&text)).unwrap_or_default();
        black_box(value);
    });
    let ours = measure(runs, || {
        let loaded = manifest::load_text(
            black_box(&text),
            path,
            &Overrides::default(),
            Options::default(),
        );
        black_box(loaded.is_ok());
    });

    println!(
        "baseline  serde_norway::Value parse   {:>8.1} ms   peak heap {:>7.1} MB",
        baseline.median.as_secs_f64() * 1e3,
        mb(baseline.peak_bytes)
    );
    println!(
        "siteplan  validate + graph            {:>8.1} ms   peak heap {:>7.1} MB",
        ours.median.as_secs_f64() * 1e3,
        mb(ours.peak_bytes)
    );
    println!(
        "ratio     siteplan / baseline         {:>8.2}x time          {:>7.2}x memory",
        ours.median.as_secs_f64() / baseline.median.as_secs_f64(),
        ours.peak_bytes as f64 / baseline.peak_bytes.max(1) as f64
    );
    let verdict = if ours.median < Duration::from_secs(1) && ours.peak_bytes < 200 << 20 {
        "within"
    } else {
        "OUTSIDE"
    };
    println!("target    < 1000 ms and < 200 MB: {verdict}");
}
