//! `plan apply` of generated plans, timed end to end through the real binary (observe, plan,
//! apply, the VM table), reported as ratios against a baseline from the same run:
//!
//! - sandbox, 10 networks and 200 VMs with one disk each: `--parallelism 32` against
//!   `--parallelism 1`, and the second (no-change) apply against the first;
//! - a real libvirtd (when `SITEPLAN_BENCH_LIBVIRT_URI` is set), 30 VMs on 3 networks, each
//!   with a disk and a cloud-init seed: the same ratios, and `plan apply` against the same
//!   objects made straight through libvirt's API with 5 threads (their XML and seed bytes taken
//!   from what `plan apply` made), the floor any tool on that host stands on.
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

fn report(label: &str, target: &Target, serial: usize, parallel: usize) -> Duration {
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
    many
}

/// A volume's XML, and its bytes if it has content (a seed).
type VolumeToMake = (String, Option<Vec<u8>>);

/// What `plan apply` made on a libvirt host, as libvirt describes it: made again by `direct`.
struct Objects {
    networks: Vec<String>,
    pool: String,
    volumes: Vec<VolumeToMake>,
    domains: Vec<String>,
}

mod direct {
    //! The baseline: the objects made straight through libvirt's API, no planning, no checks.
    use super::Objects;
    use std::time::{Duration, Instant};
    use virt::connect::Connect;
    use virt::storage_vol::StorageVol;
    use virt::stream::Stream;

    const THREADS: usize = 5;

    /// Reads what the plan `prefix` made on `uri`.
    pub fn read(uri: &str, prefix: &str) -> Objects {
        let conn = Connect::open(Some(uri)).expect("connect");
        let ours = |name: &str| name.starts_with(prefix);
        let networks = conn
            .list_all_networks(0)
            .expect("networks")
            .into_iter()
            .filter(|n| ours(&n.name().unwrap_or_default()))
            .map(|n| n.xml_desc(0).expect("network xml"))
            .collect();
        let pool = conn
            .lookup_storage_pool_by_name(&format!("{prefix}pool"))
            .expect("the plan's pool");
        let volumes = pool
            .list_all_volumes(0)
            .expect("volumes")
            .into_iter()
            .filter(|v| v.name().is_ok_and(|n| n.starts_with(prefix)))
            .map(|v| {
                let xml = v.xml_desc(0).expect("volume xml");
                let bytes = v
                    .name()
                    .is_ok_and(|n| n.ends_with("-cidata.img"))
                    .then(|| download(&conn, &v));
                (xml, bytes)
            })
            .collect();
        let domains = conn
            .list_all_domains(0)
            .expect("domains")
            .into_iter()
            .filter(|d| ours(&d.name().unwrap_or_default()))
            .map(|d| {
                d.xml_desc(virt::sys::VIR_DOMAIN_XML_INACTIVE)
                    .expect("domain xml")
            })
            .collect();
        Objects {
            networks,
            pool: pool.xml_desc(0).expect("pool xml"),
            volumes,
            domains,
        }
    }

    fn download(conn: &Connect, vol: &StorageVol) -> Vec<u8> {
        let stream = Stream::new(conn, 0).expect("stream");
        vol.download(&stream, 0, 0, 0).expect("download");
        let mut out = Vec::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = stream.recv(&mut buf).expect("recv");
            if n <= 0 {
                break;
            }
            out.extend_from_slice(&buf[..n as usize]);
        }
        stream.finish().expect("finish");
        out
    }

    /// Makes the objects as `plan apply` orders them (networks and the pool, then each VM's
    /// volumes and the VM, started), VMs on 5 threads; returns the time it took.
    pub fn make(uri: &str, objects: &Objects) -> Duration {
        let start = Instant::now();
        let conn = Connect::open(Some(uri)).expect("connect");
        for xml in &objects.networks {
            let net = conn.define_network_xml(xml).expect("define network");
            net.create().expect("start network");
        }
        let pool = conn
            .define_storage_pool_xml(&objects.pool, 0)
            .expect("define pool");
        pool.build(0).expect("build pool");
        pool.create(0).expect("start pool");
        let work: Vec<(&String, Vec<&super::VolumeToMake>)> = objects
            .domains
            .iter()
            .map(|domain| {
                let name = element(domain, "name");
                let volumes = objects
                    .volumes
                    .iter()
                    .filter(|(xml, _)| {
                        let volume = element(xml, "name");
                        volume.starts_with(&format!("{name}_"))
                            || volume == format!("{name}-cidata.img")
                    })
                    .collect();
                (domain, volumes)
            })
            .collect();
        std::thread::scope(|scope| {
            for chunk in work.chunks(work.len().div_ceil(THREADS)) {
                scope.spawn(move || {
                    let conn = Connect::open(Some(uri)).expect("connect");
                    let pool = conn
                        .lookup_storage_pool_by_name(&element(&objects.pool, "name"))
                        .expect("pool");
                    for (domain, volumes) in chunk {
                        for (xml, bytes) in volumes {
                            let vol = StorageVol::create_xml(&pool, xml, 0).expect("volume");
                            if let Some(bytes) = bytes {
                                upload(&conn, &vol, bytes);
                            }
                        }
                        let dom = conn.define_domain_xml(domain).expect("define domain");
                        dom.create().expect("start domain");
                    }
                });
            }
        });
        start.elapsed()
    }

    fn upload(conn: &Connect, vol: &StorageVol, bytes: &[u8]) {
        let stream = Stream::new(conn, 0).expect("stream");
        vol.upload(&stream, 0, bytes.len() as u64, 0)
            .expect("upload");
        for chunk in bytes.chunks(256 * 1024) {
            let mut sent = 0;
            while sent < chunk.len() {
                let n = stream.send(&chunk[sent..]).expect("send");
                assert!(n > 0, "upload stream closed");
                sent += n as usize;
            }
        }
        stream.finish().expect("finish");
    }

    /// Removes what `make` made.
    pub fn remove(uri: &str, objects: &Objects) {
        let conn = Connect::open(Some(uri)).expect("connect");
        for xml in &objects.domains {
            if let Ok(dom) = conn.lookup_domain_by_name(&element(xml, "name")) {
                let _ = dom.destroy();
                let _ = dom.undefine();
            }
        }
        if let Ok(pool) = conn.lookup_storage_pool_by_name(&element(&objects.pool, "name")) {
            for vol in pool.list_all_volumes(0).unwrap_or_default() {
                let _ = vol.delete(0);
            }
            let _ = pool.destroy();
            let _ = pool.delete(0);
            let _ = pool.undefine();
        }
        for xml in &objects.networks {
            if let Ok(net) = conn.lookup_network_by_name(&element(xml, "name")) {
                let _ = net.destroy();
                let _ = net.undefine();
            }
        }
    }

    /// The text of the first `<tag>` of `xml`: enough for the names libvirt writes.
    fn element(xml: &str, tag: &str) -> String {
        let open = format!("<{tag}>");
        xml.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&format!("</{tag}>")))
            .map(|(text, _)| text.to_string())
            .unwrap_or_default()
    }
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
            let target = Target {
                provider: &uri,
                sandbox: &sandbox,
                plan: &plan,
            };
            let planned = report(
                &format!("libvirt {uri}: 3 networks, 30 running VMs with one disk and a seed each"),
                &target,
                1,
                10,
            );
            target.run(&["apply", "--parallelism", "10"]);
            let objects = direct::read(&uri, "bal");
            target.run(&["destroy", "--parallelism", "32"]);
            let baseline = direct::make(&uri, &objects);
            direct::remove(&uri, &objects);
            println!(
                "  the same objects through libvirt's API, 5 threads: {:>6.2} s (baseline); \
                 apply --parallelism 10 takes {:.2}x (goal: at most 1.10x)",
                baseline.as_secs_f64(),
                planned.as_secs_f64() / baseline.as_secs_f64()
            );
        }
        None => println!(
            "libvirt: SKIPPED (set SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system to apply to libvirtd)"
        ),
    }
}
