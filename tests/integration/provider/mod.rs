//! Every resource kind created, observed, changed and deleted through the `Provider` trait:
//! always on the sandbox, and on a real libvirtd when SITEPLAN_TEST_LIBVIRT_URI names one
//! (.ci/run starts libvirtd and sets it; elsewhere that test says it was skipped and why), and
//! on the same libvirtd over ssh when SITEPLAN_TEST_SSH_URI names a qemu+ssh:// URI (.ci/sshd).

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use siteplan::cloudinit::{self, SeedInput, SeedNic};
use siteplan::plan::model::spec::*;
use siteplan::provider::capability::VolumeContent;
use siteplan::provider::libvirt::LibvirtProvider;
use siteplan::provider::sandbox::Sandbox;
use siteplan::provider::{Owner, Provider, ProviderError, Scope};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A tiny qcow2 image made with qemu-img, as the issue asks (no image can be downloaded here).
fn make_image(dir: &Path) -> PathBuf {
    let path = dir.join("tiny.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(&path)
        .arg("64M")
        .status()
        .expect("qemu-img runs (package qemu-utils)");
    assert!(status.success());
    path
}

/// Serves one file over HTTP on 127.0.0.1 until the test ends; returns its URL.
fn serve(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("image readable");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(16) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                bytes.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&bytes);
        }
    });
    format!("http://127.0.0.1:{port}/tiny.qcow2")
}

fn sha256_of(path: &Path) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(std::fs::read(path).expect("readable")))
}

struct Lab {
    prefix: String,
    pool_path: String,
    image_url: String,
    image_sha: String,
    cidr: &'static str,
    base: &'static str,
}

impl Lab {
    fn network(&self) -> NetworkSpec {
        NetworkSpec {
            name: format!("{}net", self.prefix),
            mode: ForwardMode::Nat,
            bridge: format!("{}br0", self.prefix),
            cidr: Some(self.cidr.parse().expect("cidr")),
            dhcp: Some((
                format!("{}.100", self.base).parse().expect("ip"),
                format!("{}.200", self.base).parse().expect("ip"),
            )),
            hosts: vec![DhcpHost {
                mac: "52:54:00:5e:00:01".into(),
                ip: format!("{}.11", self.base).parse().expect("ip"),
                name: format!("{}vm1", self.prefix),
            }],
            dns_hosts: Vec::new(),
            domain: Some("lab.test".into()),
            mtu: None,
            dns: true,
            autostart: false,
        }
    }

    /// An isolated network with jumbo frames, and a routed one: the other forward modes.
    fn extra_networks(&self) -> Vec<NetworkSpec> {
        vec![
            NetworkSpec {
                name: format!("{}iso", self.prefix),
                mode: ForwardMode::Isolated,
                bridge: format!("{}br1", self.prefix),
                cidr: Some("192.168.215.0/24".parse().expect("cidr")),
                dhcp: None,
                hosts: Vec::new(),
                dns_hosts: Vec::new(),
                domain: None,
                mtu: Some(9000),
                dns: false,
                autostart: false,
            },
            NetworkSpec {
                name: format!("{}rt", self.prefix),
                mode: ForwardMode::Route,
                bridge: format!("{}br2", self.prefix),
                cidr: Some("192.168.216.0/24".parse().expect("cidr")),
                dhcp: Some((
                    "192.168.216.10".parse().expect("ip"),
                    "192.168.216.20".parse().expect("ip"),
                )),
                hosts: Vec::new(),
                dns_hosts: Vec::new(),
                domain: None,
                mtu: None,
                dns: true,
                autostart: true,
            },
        ]
    }

    fn pool(&self) -> PoolSpec {
        PoolSpec {
            name: format!("{}pool", self.prefix),
            path: self.pool_path.clone(),
            autostart: false,
        }
    }

    fn pool_name(&self) -> String {
        self.pool().name
    }

    fn image(&self) -> VolumeSpec {
        VolumeSpec {
            name: "tiny.qcow2".into(),
            pool: self.pool_name(),
            capacity_bytes: None,
            format: VolumeFormat::Qcow2,
            thin: true,
            backing: None,
            source: VolumeSource::Fetch {
                url: self.image_url.clone(),
                sha256: Some(self.image_sha.clone()),
            },
        }
    }

    fn root_disk(&self, vm: usize) -> VolumeSpec {
        VolumeSpec {
            name: format!("{}vm{vm}_0.qcow2", self.prefix),
            pool: self.pool_name(),
            capacity_bytes: Some(GIB),
            format: VolumeFormat::Qcow2,
            thin: true,
            backing: Some((self.pool_name(), "tiny.qcow2".into())),
            source: VolumeSource::Blank,
        }
    }

    /// Fully allocated, so small: its bytes are really written, and CI machines share a disk.
    fn data_disk(&self, vm: usize) -> VolumeSpec {
        VolumeSpec {
            name: format!("{}vm{vm}_1.img", self.prefix),
            pool: self.pool_name(),
            capacity_bytes: Some(16 * MIB),
            format: VolumeFormat::Raw,
            thin: false,
            backing: None,
            source: VolumeSource::Blank,
        }
    }

    fn seed_input(&self, vm: usize) -> SeedInput {
        SeedInput {
            hostname: format!("{}vm{vm}", self.prefix),
            domain: Some("lab.test".into()),
            keys: vec!["ssh-ed25519 AAAAtestkey lab@test".into()],
            cmds: vec![format!("echo vm{vm} > /etc/role")],
            nics: vec![SeedNic {
                mac: format!("52:54:00:5e:00:0{vm}"),
                address: Some((format!("{}.1{vm}", self.base).parse().expect("ip"), 24)),
                gateway: Some(format!("{}.1", self.base).parse().expect("ip")),
                dns: None,
                unconfigured: false,
            }],
            ..SeedInput::default()
        }
    }

    fn seed(&self, vm: usize) -> VolumeSpec {
        let docs = cloudinit::documents(&self.seed_input(vm));
        let bytes = cloudinit::seed_image(&docs).expect("seed image");
        use sha2::Digest;
        VolumeSpec {
            name: format!("{}vm{vm}-cidata.img", self.prefix),
            pool: self.pool_name(),
            capacity_bytes: Some(bytes.len() as u64),
            format: VolumeFormat::Raw,
            thin: true,
            backing: None,
            source: VolumeSource::Generated {
                sha256: hex::encode(sha2::Sha256::digest(&bytes)),
                review: String::new(),
                generator: Generator::new(move || Ok(bytes.clone())),
            },
        }
    }

    fn vm(&self, vm: usize) -> VmSpec {
        VmSpec {
            name: format!("{}vm{vm}", self.prefix),
            memory_mib: 128,
            vcpus: 1,
            cpu_model: "qemu64".into(),
            virt_type: VirtType::Qemu,
            disks: vec![
                DiskSpec {
                    pool: self.pool_name(),
                    volume: self.root_disk(vm).name,
                    bus: Bus::Virtio,
                },
                DiskSpec {
                    pool: self.pool_name(),
                    volume: self.data_disk(vm).name,
                    bus: Bus::Virtio,
                },
            ],
            nics: {
                let mut nics = vec![NicSpec {
                    network: self.network().name,
                    mac: Some(format!("52:54:00:5e:00:0{vm}")),
                    model: "virtio".into(),
                }];
                if vm == 2 {
                    nics.push(NicSpec {
                        network: format!("{}iso", self.prefix),
                        mac: Some("52:54:00:5e:01:02".into()),
                        model: "e1000".into(),
                    });
                }
                nics
            },
            seed: Some((self.pool_name(), self.seed(vm).name)),
            running: true,
            // One VM boots with UEFI firmware.
            uefi: vm == 3,
            autostart: vm == 1,
            kernel: None,
            initrd: None,
            cmdline: None,
            // One VM has a channel for the guest agent.
            guest_agent: vm == 2,
            seed_sha256: None,
        }
    }

    /// Everything, in creation order.
    fn specs(&self) -> Vec<Spec> {
        let mut specs = vec![Spec::Network(self.network())];
        specs.extend(self.extra_networks().into_iter().map(Spec::Network));
        specs.extend([Spec::Pool(self.pool()), Spec::Volume(self.image())]);
        for vm in 1..=3 {
            specs.push(Spec::Volume(self.root_disk(vm)));
            specs.push(Spec::Volume(self.data_disk(vm)));
            specs.push(Spec::Volume(self.seed(vm)));
        }
        for vm in 1..=3 {
            specs.push(Spec::Vm(self.vm(vm)));
        }
        specs
    }

    fn scope(&self) -> Scope {
        Scope {
            plan: "lab".into(),
            ids: self.specs().iter().map(Spec::id).collect(),
        }
    }
}

fn owner() -> Owner {
    Owner::plan("lab")
}

/// Resources that exist before the plan, made by someone else: they must survive everything.
struct Foreign {
    vm: String,
    network: String,
    pool: String,
    volume: (String, String),
}

/// Deletes whatever an earlier, failed run of plan `lab` left behind: found by its marks alone.
async fn clear_leftovers(provider: &dyn Provider) {
    let observed = provider
        .observe(&Scope {
            plan: "lab".into(),
            ids: Vec::new(),
        })
        .await
        .expect("observe leftovers");
    for kind in [
        ResourceKind::VM,
        ResourceKind::VOLUME,
        ResourceKind::POOL,
        ResourceKind::NETWORK,
    ] {
        for (id, _) in observed.owned_by("lab").filter(|(id, _)| id.kind == kind) {
            provider
                .delete(id, &owner())
                .await
                .unwrap_or_else(|e| panic!("clearing {id}: {e}"));
        }
    }
}

/// `real`: a real libvirtd, whose networks have bridges on this host.
async fn exercise(provider: &dyn Provider, lab: &Lab, foreign: &Foreign, real: bool) {
    clear_leftovers(provider).await;
    let owner = owner();
    for spec in lab.specs() {
        let outcome = provider
            .create(&spec, &owner)
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", spec.id()));
        assert_eq!(outcome.id, spec.id());
    }

    // Observe: everything is there, owned, and as asked.
    let observed = provider.observe(&lab.scope()).await.expect("observe");
    let net = observed
        .get(&ResourceId::network(&lab.network().name))
        .expect("network observed");
    assert!(net.active, "network is active");
    assert_eq!(net.spec, Spec::Network(lab.network()));
    assert_eq!(net.owner.as_ref().map(|o| o.plan.as_str()), Some("lab"));
    for extra in lab.extra_networks() {
        let live = observed
            .get(&ResourceId::network(&extra.name))
            .expect("extra network");
        assert!(live.active);
        assert_eq!(live.spec, Spec::Network(extra.clone()));
    }
    if real {
        for bridge in ["br0", "br1", "br2"] {
            let dev = format!("/sys/class/net/{}{bridge}", lab.prefix);
            assert!(
                Path::new(&dev).exists(),
                "the network's bridge {dev} exists on the host"
            );
        }
    }
    let pool = observed
        .get(&ResourceId::pool(&lab.pool_name()))
        .expect("pool observed");
    assert!(pool.active);
    assert_eq!(pool.spec, Spec::Pool(lab.pool()));
    assert!(
        pool.owner.is_some(),
        "pool ownership is recorded in its ledger"
    );
    for vm in 1..=3 {
        let root = observed
            .get(&ResourceId::volume(
                &lab.pool_name(),
                &lab.root_disk(vm).name,
            ))
            .expect("root disk");
        assert_eq!(
            root.spec,
            Spec::Volume(lab.root_disk(vm)),
            "qcow2, 1 GiB, backed by the image"
        );
        assert!(root.owner.is_some());
        let data = observed
            .get(&ResourceId::volume(
                &lab.pool_name(),
                &lab.data_disk(vm).name,
            ))
            .expect("data disk");
        assert_eq!(data.spec, Spec::Volume(lab.data_disk(vm)));
        let live = observed
            .get(&ResourceId::vm(&lab.vm(vm).name))
            .expect("vm observed");
        assert_eq!(
            live.spec,
            Spec::Vm(lab.vm(vm)),
            "memory, vcpus, disks, NICs and running state"
        );
        assert!(live.active, "vm is running");
        // The seed holds what cloud-init will read.
        let seed = provider
            .volume_content()
            .expect("reads volumes")
            .read_volume(&lab.pool_name(), &lab.seed(vm).name)
            .await
            .expect("seed readable");
        let docs = cloudinit::documents(&lab.seed_input(vm));
        assert_eq!(cloudinit::seed_label(&seed).expect("FAT"), "cidata");
        assert_eq!(
            cloudinit::read_seed_file(&seed, "user-data").expect("user-data"),
            docs.user_data
        );
        assert_eq!(
            cloudinit::read_seed_file(&seed, "network-config").expect("network-config"),
            docs.network_config
        );
        assert!(docs
            .network_config
            .contains(&format!("{}.1{vm}/24", lab.base)));
    }
    let image = observed
        .get(&ResourceId::volume(&lab.pool_name(), "tiny.qcow2"))
        .expect("image");
    assert_eq!(image.spec, Spec::Volume(lab.image()));

    // A second observation is the same: nothing drifts by itself.
    let again = provider.observe(&lab.scope()).await.expect("observe again");
    assert_eq!(again.resources, observed.resources);

    // Change: memory and cpus (saved, effective after a restart), a disk grown, a reservation added.
    let mut bigger = lab.vm(1);
    bigger.memory_mib = 192;
    bigger.vcpus = 2;
    let outcome = provider
        .update(&Spec::Vm(bigger.clone()), &owner)
        .await
        .expect("update vm");
    assert!(
        outcome.needs_reboot,
        "memory and cpus of a running VM need a restart"
    );
    let mut grown = lab.data_disk(1);
    grown.capacity_bytes = Some(32 * MIB);
    provider
        .update(&Spec::Volume(grown.clone()), &owner)
        .await
        .expect("grow volume");
    let mut shrunk = lab.data_disk(2);
    shrunk.capacity_bytes = Some(8 * MIB);
    assert!(matches!(
        provider.update(&Spec::Volume(shrunk), &owner).await,
        Err(ProviderError::Unsupported(_))
    ));
    let mut net = lab.network();
    net.hosts.push(DhcpHost {
        mac: "52:54:00:5e:00:02".into(),
        ip: format!("{}.12", lab.base).parse().expect("ip"),
        name: format!("{}vm2", lab.prefix),
    });
    provider
        .update(&Spec::Network(net.clone()), &owner)
        .await
        .expect("add a reservation");
    let mut moved = lab.network();
    moved.cidr = Some("10.99.0.0/24".parse().expect("cidr"));
    assert!(matches!(
        provider.update(&Spec::Network(moved), &owner).await,
        Err(ProviderError::Unsupported(_))
    ));
    // Stop one VM.
    let mut stopped = lab.vm(3);
    stopped.running = false;
    provider
        .update(&Spec::Vm(stopped.clone()), &owner)
        .await
        .expect("stop vm");

    let observed = provider
        .observe(&lab.scope())
        .await
        .expect("observe after update");
    assert_eq!(
        observed
            .get(&ResourceId::vm(&bigger.name))
            .expect("vm")
            .spec,
        Spec::Vm(bigger)
    );
    assert_eq!(
        observed
            .get(&ResourceId::volume(&lab.pool_name(), &grown.name))
            .expect("volume")
            .spec,
        Spec::Volume(grown)
    );
    assert_eq!(
        observed
            .get(&ResourceId::network(&net.name))
            .expect("network")
            .spec,
        Spec::Network(net)
    );
    let vm3 = observed.get(&ResourceId::vm(&stopped.name)).expect("vm3");
    assert!(!vm3.active);
    assert_eq!(vm3.spec, Spec::Vm(stopped));

    // What the plan does not own is refused, and not touched.
    for id in [
        ResourceId::vm(&foreign.vm),
        ResourceId::network(&foreign.network),
        ResourceId::pool(&foreign.pool),
        ResourceId::volume(&foreign.volume.0, &foreign.volume.1),
    ] {
        assert!(
            matches!(
                provider.delete(&id, &owner).await,
                Err(ProviderError::NotOwned { .. })
            ),
            "deleting foreign {id} must be refused"
        );
    }

    // Delete everything, in reverse order.
    for spec in lab.specs().iter().rev() {
        provider
            .delete(&spec.id(), &owner)
            .await
            .unwrap_or_else(|e| panic!("delete {}: {e}", spec.id()));
    }
    let observed = provider
        .observe(&lab.scope())
        .await
        .expect("observe after delete");
    assert!(
        observed.resources.is_empty(),
        "left behind: {:?}",
        observed.resources.keys().collect::<Vec<_>>()
    );

    // The foreign resources are all still there.
    let foreign_scope = Scope {
        plan: "nobody".into(),
        ids: vec![
            ResourceId::vm(&foreign.vm),
            ResourceId::network(&foreign.network),
            ResourceId::pool(&foreign.pool),
            ResourceId::volume(&foreign.volume.0, &foreign.volume.1),
        ],
    };
    let still = provider
        .observe(&foreign_scope)
        .await
        .expect("observe foreign");
    assert_eq!(
        still.resources.len(),
        4,
        "foreign resources untouched: {:?}",
        still.resources.keys().collect::<Vec<_>>()
    );
}

fn lab(prefix: &str, pool_path: &Path, tmp: &Path) -> Lab {
    let image = make_image(tmp);
    Lab {
        prefix: prefix.into(),
        pool_path: pool_path.display().to_string(),
        image_url: serve(&image),
        image_sha: sha256_of(&image),
        cidr: "192.168.213.0/24",
        base: "192.168.213",
    }
}

/// A node file with foreign objects in it, for a sandbox that starts with someone else's things.
fn foreign_node(dir: &Path) {
    std::fs::create_dir_all(dir).expect("dir");
    let node = r#"<node>
  <network><name>theirs-net</name><bridge name="theirs0"/><ip address="10.77.0.1" prefix="24"/></network>
  <pool type="dir"><name>theirs-pool</name><target><path>/srv/theirs</path></target>
    <volume type="file"><name>theirs.img</name><capacity unit="M">10</capacity><target><format type="raw"/></target></volume>
  </pool>
  <domain type="test"><name>theirs-vm</name><memory unit="MiB">64</memory><os><type>hvm</type></os></domain>
</node>
"#;
    std::fs::write(dir.join("node.xml"), node).expect("node file");
}

fn foreign() -> Foreign {
    Foreign {
        vm: "theirs-vm".into(),
        network: "theirs-net".into(),
        pool: "theirs-pool".into(),
        volume: ("theirs-pool".into(), "theirs.img".into()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_manages_every_resource_kind() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("sandbox");
    foreign_node(&dir);
    let sandbox = Sandbox::open(&dir).expect("sandbox opens");
    let lab = lab("sp", Path::new("/srv/sandbox/lab"), tmp.path());
    exercise(&*sandbox, &lab, &foreign(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_state_survives_across_processes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("sandbox");
    {
        let sandbox = Sandbox::open(&dir).expect("sandbox opens");
        let lab = lab("sp", Path::new("/srv/sandbox/lab"), tmp.path());
        for spec in lab.specs() {
            sandbox
                .create(&spec, &owner())
                .await
                .unwrap_or_else(|e| panic!("create {}: {e}", spec.id()));
        }
        let mut stopped = lab.vm(2);
        stopped.running = false;
        sandbox
            .update(&Spec::Vm(stopped), &owner())
            .await
            .expect("stop");
    }
    // Another process opens the same sandbox and sees the same world.
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "provider::sandbox_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SITEPLAN_CHILD_SANDBOX", &dir)
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("child saw 3 vms (2 running), 3 networks, 10 volumes, seed ok"),
        "{stdout}"
    );
}

/// Runs only as the child of `sandbox_state_survives_across_processes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_child_process() {
    let Some(dir) = std::env::var_os("SITEPLAN_CHILD_SANDBOX") else {
        return;
    };
    let sandbox = crate::harness::reopen_sandbox(Path::new(&dir));
    let observed = sandbox
        .observe(&Scope {
            plan: "lab".into(),
            ids: Vec::new(),
        })
        .await
        .expect("observe");
    let count = |kind: ResourceKind| {
        observed
            .resources
            .keys()
            .filter(|id| id.kind == kind)
            .count()
    };
    let running = observed
        .resources
        .iter()
        .filter(|(id, r)| id.kind == ResourceKind::VM && r.active)
        .count();
    let seed = sandbox
        .read_volume("sppool", "spvm1-cidata.img")
        .await
        .expect("seed");
    let seed_ok = cloudinit::read_seed_file(&seed, "user-data").is_ok_and(|u| u.contains("spvm1"));
    println!(
        "child saw {} vms ({running} running), {} networks, {} volumes, seed {}",
        count(ResourceKind::VM),
        count(ResourceKind::NETWORK),
        count(ResourceKind::VOLUME),
        if seed_ok { "ok" } else { "missing" }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_a_sandbox_in_use() {
    let tmp = tempfile::tempdir().expect("tmp");
    let _first = Sandbox::open(tmp.path()).expect("first opens");
    match Sandbox::open(tmp.path()) {
        Err(ProviderError::Connection(message)) => assert!(message.contains("in use"), "{message}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("two openers of one sandbox"),
    }
}

mod real;
