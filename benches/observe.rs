//! Observing a lab: 200 VMs on the sandbox, and 50 on a real libvirtd when
//! SITEPLAN_BENCH_LIBVIRT_URI names one (`make bench` sets it when libvirtd answers).
//!
//! Baseline, measured in the same run on a second connection: the bare libvirt calls any
//! observer needs (list all domains, networks and pools, and fetch each one's XML). The ratio is
//! what siteplan's observation costs on top: volumes, ledgers, parsing and ownership.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::time::{Duration, Instant};

use siteplan::plan::model::spec::*;
use siteplan::provider::libvirt::LibvirtProvider;
use siteplan::provider::sandbox::Sandbox;
use siteplan::provider::{Owner, Provider, Scope};
use virt::connect::Connect;

const RUNS: usize = 5;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn baseline(uri: &str) -> Duration {
    let conn = Connect::open(Some(uri)).expect("second connection");
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        for d in conn.list_all_domains(0).unwrap_or_default() {
            std::hint::black_box(d.xml_desc(0).ok());
        }
        for n in conn.list_all_networks(0).unwrap_or_default() {
            std::hint::black_box(n.xml_desc(0).ok());
        }
        for p in conn.list_all_storage_pools(0).unwrap_or_default() {
            std::hint::black_box(p.xml_desc(0).ok());
        }
        times.push(start.elapsed());
    }
    median(times)
}

fn lab(prefix: &str, vms: usize, pool_path: &str) -> Vec<Spec> {
    let mut specs = vec![
        Spec::Network(NetworkSpec {
            name: format!("{prefix}net"),
            mode: ForwardMode::Isolated,
            bridge: format!("{prefix}br0"),
            cidr: "10.213.0.0/16".parse().ok(),
            dhcp: None,
            hosts: Vec::new(),
            dns_hosts: Vec::new(),
            domain: None,
            mtu: None,
            dns: true,
            autostart: false,
        }),
        Spec::Pool(PoolSpec {
            name: format!("{prefix}pool"),
            path: pool_path.into(),
            autostart: false,
        }),
    ];
    for i in 0..vms {
        specs.push(Spec::Volume(VolumeSpec {
            name: format!("{prefix}vm{i}.qcow2"),
            pool: format!("{prefix}pool"),
            capacity_bytes: Some(1 << 30),
            format: VolumeFormat::Qcow2,
            thin: true,
            backing: None,
            source: VolumeSource::Blank,
        }));
        specs.push(Spec::Vm(VmSpec {
            name: format!("{prefix}vm{i}"),
            memory_mib: 128,
            vcpus: 1,
            cpu_model: "qemu64".into(),
            virt_type: VirtType::Qemu,
            uefi: false,
            disks: vec![DiskSpec {
                pool: format!("{prefix}pool"),
                volume: format!("{prefix}vm{i}.qcow2"),
                bus: Bus::Virtio,
            }],
            nics: vec![NicSpec {
                network: format!("{prefix}net"),
                mac: Some(format!("52:54:00:13:{:02x}:{:02x}", i / 256, i % 256)),
                model: "virtio".into(),
            }],
            seed: None,
            running: false,
            autostart: false,
            kernel: None,
            initrd: None,
            cmdline: None,
            guest_agent: false,
            seed_sha256: None,
        }));
    }
    specs
}

/// `node_file` is for the sandbox, whose baseline reads the test driver's node file.
async fn measure(
    provider: &dyn Provider,
    specs: &[Spec],
    uri: &str,
    label: &str,
    node_file: Option<&Sandbox>,
) {
    let owner = Owner::plan("bench");
    let created = Instant::now();
    for spec in specs {
        provider
            .create(spec, &owner)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", spec.id()));
    }
    let created = created.elapsed();
    let scope = Scope {
        plan: "bench".into(),
        ids: specs.iter().map(Spec::id).collect(),
    };
    let mut times = Vec::new();
    let mut seen = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let observed = provider.observe(&scope).await.expect("observe");
        times.push(start.elapsed());
        seen = observed.resources.len();
    }
    let ours = median(times);
    if let Some(sandbox) = node_file {
        sandbox.write_node_file().expect("node file");
    }
    let base = baseline(uri);
    let vms = specs.iter().filter(|s| matches!(s, Spec::Vm(_))).count();
    println!(
        "{label}: {vms} VMs ({seen} resources observed; created in {:.2} s)",
        created.as_secs_f64()
    );
    println!(
        "  baseline  list + XML of every object   {:>9.1} ms",
        base.as_secs_f64() * 1e3
    );
    println!(
        "  siteplan  observe                      {:>9.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "  ratio     siteplan / baseline          {:>9.2}x",
        ours.as_secs_f64() / base.as_secs_f64()
    );
    for spec in specs.iter().rev() {
        let _ = provider.delete(&spec.id(), &owner).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = Sandbox::open(&tmp.path().join("sandbox")).expect("sandbox");
    let uri = format!("test://{}", sandbox.dir().join("node.xml").display());
    let specs = lab("bn", 200, "/srv/bench");
    measure(&*sandbox, &specs, &uri, "sandbox", Some(&sandbox)).await;

    match std::env::var("SITEPLAN_BENCH_LIBVIRT_URI").ok().filter(|u| !u.is_empty()) {
        Some(uri) => {
            let provider = LibvirtProvider::connect(&uri).expect("connect");
            let dir = std::env::var("SITEPLAN_BENCH_POOL_DIR").unwrap_or_else(|_| "/var/lib/libvirt/siteplan-bench".into());
            let specs = lab("bnl", 50, &dir);
            measure(&provider, &specs, &uri, &format!("libvirt {uri}"), None).await;
        }
        None => println!("libvirt: skipped (set SITEPLAN_BENCH_LIBVIRT_URI=qemu:///system to measure a real libvirtd)"),
    }
}
