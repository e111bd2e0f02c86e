#![cfg(feature = "aws")]

//! The AWS backend against moto's EC2 emulator (`.ci/moto` starts it on 127.0.0.1 and
//! `SITEPLAN_TEST_EC2` names it; without it these tests say SKIPPED and pass). Each test has a
//! region of its own, which moto keeps apart. The tests look at EC2 through the SDK, as another
//! tool would, and change it behind siteplan's back the same way.

use std::path::{Path, PathBuf};

use aws_sdk_ec2::types::{Filter, InstanceType};
use aws_sdk_ec2::Client;

mod crash;
mod groups;
mod kcli;
mod real;

use crate::harness::{report, Plan, Ran};

/// An AMI moto serves in every region, by name (the backend resolves names).
const AMI_NAME: &str = "ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-20170727";

/// A runtime for the test's own client.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// An instance as the test sees it: its id, type, state and tags.
type Seen = (String, String, String, Vec<(String, String)>);

/// A test's own region of the emulator, its directory and providers file.
struct Ec2 {
    endpoint: String,
    region: String,
    dir: tempfile::TempDir,
    providers: PathBuf,
    state: PathBuf,
}

impl Ec2 {
    fn start(test: &str, region: &str) -> Option<Ec2> {
        let Ok(endpoint) = std::env::var("SITEPLAN_TEST_EC2") else {
            report(&format!(
                "SKIPPED {test}: no EC2 emulator (SITEPLAN_TEST_EC2 is not set; .ci/run starts \
                 moto with .ci/moto)"
            ));
            return None;
        };
        let dir = tempfile::tempdir().expect("tmp");
        let providers = dir.path().join("providers.yml");
        std::fs::write(
            &providers,
            format!(
                "providers:\n  - {{name: ec2, type: aws, region: {region}, endpoint: \"{endpoint}\"}}\n\
                 \x20 - {{name: ec2-gone, type: aws, region: {region}, endpoint: \"http://127.0.0.1:9\"}}\n\
                 \x20 - {{name: play, type: sandbox, dir: {}}}\n",
                dir.path().join("play").display()
            ),
        )
        .expect("providers file");
        let state = dir.path().join("state");
        Some(Ec2 {
            endpoint,
            region: region.into(),
            dir,
            providers,
            state,
        })
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("plan");
        path
    }

    /// `plan ARGS` with the emulator's credentials.
    fn plan(&self, args: &[&str], file: Option<&Path>) -> Ran {
        let mut plan = Plan::new(args)
            .providers(&self.providers, &self.state)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true");
        if let Some(file) = file {
            plan = plan.arg_path(file);
        }
        plan.run()
    }

    /// `plan apply --yes` of `file` on the emulator.
    fn apply(&self, file: &Path) -> Ran {
        self.plan(&["apply", "--yes", "--provider", "ec2"], Some(file))
    }

    /// `plan diff --detailed-exitcode` of `file` on the emulator.
    fn diff(&self, file: &Path) -> Ran {
        self.plan(
            &["diff", "--provider", "ec2", "--detailed-exitcode"],
            Some(file),
        )
    }

    fn client(&self) -> Client {
        let credentials =
            aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test");
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(self.region.clone()))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            // The emulator speaks plain HTTP on loopback.
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        Client::from_conf(config)
    }

    /// The instances not terminated, by `Name` tag: (id, type, state, tags).
    fn instances(&self) -> Vec<Seen> {
        block_on(async {
            let out = self
                .client()
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("running")
                        .values("stopped")
                        .values("pending")
                        .build(),
                )
                .send()
                .await
                .expect("describe instances");
            out.reservations()
                .iter()
                .flat_map(|r| r.instances())
                .map(|i| {
                    (
                        i.instance_id().unwrap_or_default().to_string(),
                        i.instance_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        i.state()
                            .and_then(|s| s.name())
                            .map(|n| n.as_str().to_string())
                            .unwrap_or_default(),
                        i.tags()
                            .iter()
                            .map(|t| {
                                (
                                    t.key().unwrap_or_default().to_string(),
                                    t.value().unwrap_or_default().to_string(),
                                )
                            })
                            .collect(),
                    )
                })
                .collect()
        })
    }

    fn instance(&self, name: &str) -> Option<Seen> {
        self.instances()
            .into_iter()
            .find(|i| i.3.iter().any(|(k, v)| k == "Name" && v == name))
    }

    fn vpcs_named(&self, name: &str) -> usize {
        block_on(async {
            self.client()
                .describe_vpcs()
                .filters(Filter::builder().name("tag:Name").values(name).build())
                .send()
                .await
                .expect("describe vpcs")
                .vpcs()
                .len()
        })
    }
}

fn lab(network_extra: &str, web1_memory: u32, web1_disks: &str) -> String {
    format!(
        "labnet:\n  type: network\n  cidr: 10.20.0.0/24\n{network_extra}\
         web1:\n  image: {AMI_NAME}\n  numcpus: 2\n  memory: {web1_memory}\n  nets: [labnet]\n  \
         disks: {web1_disks}\n  keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINA7qSOsDI+8fwAf40fW2nlM7Rj2XirW8aj3FMP8ffXp lab@test']\n  \
         cmds: ['echo hello > /tmp/hello']\n\
         web2:\n  image: {AMI_NAME}\n  flavor: t3.large\n  nets:\n  - name: labnet\n    ip: 10.20.0.20\n    netmask: 255.255.255.0\n"
    )
}

#[test]
fn a_lab_lives_its_whole_life_on_ec2() {
    let Some(ec2) = Ec2::start("a_lab_lives_its_whole_life_on_ec2", "eu-west-1") else {
        return;
    };
    // The provider answers, and one where nothing listens says so.
    let out = ec2.plan(&["provider", "list", "-o", "json"], None);
    assert!(out.ok(), "{}", out.text());
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let health = |name: &str| {
        list["results"]
            .as_array()
            .and_then(|l| l.iter().find(|p| p["name"] == name))
            .map(|p| p["health_status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(health("ec2").as_deref(), Some("ready"), "{}", out.stdout);
    assert_eq!(
        health("ec2-gone").as_deref(),
        Some("unavailable"),
        "{}",
        out.stdout
    );

    // Another tool's instance, in the account's default VPC, which siteplan must leave alone.
    let other = block_on(async {
        let client = ec2.client();
        let image = client
            .describe_images()
            .filters(Filter::builder().name("name").values(AMI_NAME).build())
            .send()
            .await
            .expect("images")
            .images()[0]
            .image_id()
            .unwrap_or_default()
            .to_string();
        let out = client
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .tag_specifications(
                aws_sdk_ec2::types::TagSpecification::builder()
                    .resource_type(aws_sdk_ec2::types::ResourceType::Instance)
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("Name")
                            .value("kclivm")
                            .build(),
                    )
                    .tags(
                        aws_sdk_ec2::types::Tag::builder()
                            .key("plan")
                            .value("kclilab")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("another tool's instance");
        out.instances()[0]
            .instance_id()
            .unwrap_or_default()
            .to_string()
    });

    let file = ec2.write("lab.yml", &lab("", 2048, "[10]"));
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    // The user data's digest is a secret's too: never shown.
    assert!(
        out.text().contains("user_data.sha256: \"(sensitive)\""),
        "{}",
        out.text()
    );
    let (_, kind, state, tags) = ec2.instance("web1").expect("web1 made");
    assert_eq!(
        (kind.as_str(), state.as_str()),
        ("t3.small", "running"),
        "2 CPUs, 2 GiB"
    );
    assert!(
        tags.contains(&("plan".into(), "lab".into())),
        "kcli's tag: {tags:?}"
    );
    assert!(
        tags.contains(&("siteplan:plan".into(), "lab".into())),
        "{tags:?}"
    );
    let (_, kind, ..) = ec2.instance("web2").expect("web2 made");
    assert_eq!(kind, "t3.large", "its flavor");
    assert_eq!(ec2.vpcs_named("labnet"), 1);
    // No secret in any tag: the user data is there by digest only.
    for (_, _, _, tags) in ec2.instances() {
        assert!(
            tags.iter().all(|(_, v)| !v.contains("echo hello")),
            "{tags:?}"
        );
    }
    // Nothing more to do, and the addresses are shown.
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(0), "{}", out.text());
    let out = ec2.plan(&["status", "--provider", "ec2"], Some(&file));
    assert!(
        out.ok() && out.stdout.contains("10.20.0.20"),
        "{}",
        out.text()
    );
    // kcli's plan shows beside siteplan's.
    let out = ec2.plan(&["list", "--provider", "ec2"], None);
    assert!(
        out.ok() && out.stdout.contains("kclilab") && out.stdout.contains("lab"),
        "{}",
        out.text()
    );

    // Day two: the addresses for other tools, a VM stopped and started, one VM's details.
    let out = ec2.plan(
        &["output", "--provider", "ec2", "--format", "json"],
        Some(&file),
    );
    assert!(
        out.ok() && out.stdout.contains("10.20.0.20"),
        "{}",
        out.text()
    );
    assert!(out.stdout.contains("private"), "{}", out.stdout);
    let path = file.to_string_lossy().to_string();
    let out = ec2.plan(&["stop", "--provider", "ec2", &path, "web1"], None);
    assert!(out.ok(), "{}", out.text());
    assert_eq!(ec2.instance("web1").expect("web1").2, "stopped");
    let out = ec2.plan(&["start", "--provider", "ec2", &path, "web1"], None);
    assert!(out.ok(), "{}", out.text());
    assert_eq!(ec2.instance("web1").expect("web1").2, "running");
    let out = ec2.plan(&["info", "--provider", "ec2", &path, "web1"], None);
    assert!(
        out.ok()
            && out.stdout.contains("state: running")
            && out.stdout.contains("(private)")
            && out.stdout.contains("memory: 2048MiB")
            && out.stdout.contains("cpus: 2"),
        "{}",
        out.text()
    );
    // `plan ssh` runs the system's ssh to the public address, as the AMI's usual user: a
    // stand-in on PATH records how it was called (nothing connects to the instance).
    let bin = ec2.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let called = ec2.dir.path().join("ssh-args");
    std::fs::write(
        bin.join("ssh"),
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexit 7\n",
            called.display()
        ),
    )
    .expect("fake ssh");
    std::fs::set_permissions(
        bin.join("ssh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let public = block_on(async {
        let out = ec2
            .client()
            .describe_instances()
            .filters(Filter::builder().name("tag:Name").values("web1").build())
            .send()
            .await
            .expect("describe");
        out.reservations()[0].instances()[0]
            .public_ip_address()
            .unwrap_or_default()
            .to_string()
    });
    let out = Plan::new(&["ssh", "--provider", "ec2", &path, "web1", "--", "uptime"])
        .providers(&ec2.providers, &ec2.state)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .run();
    assert_eq!(out.code(), Some(7), "ssh's exit status: {}", out.text());
    let args = std::fs::read_to_string(&called).expect("ssh ran");
    assert!(
        !public.is_empty() && args.lines().any(|a| a == format!("ubuntu@{public}")),
        "{public}: {args}"
    );
    assert_eq!(args.lines().last(), Some("uptime"), "{args}");

    // A change: more memory needs another instance type (saved, made at the restart), and a
    // disk more is attached live.
    let file = ec2.write("lab.yml", &lab("", 4096, "[10, 5]"));
    let out = ec2.plan(&["diff", "--provider", "ec2"], Some(&file));
    assert!(
        out.stdout.contains("t3.medium") && out.stdout.contains("needs a reboot"),
        "{}",
        out.text()
    );
    let out = ec2.plan(
        &["apply", "--yes", "--provider", "ec2", "--restart"],
        Some(&file),
    );
    assert!(out.ok(), "{}", out.text());
    let (_, kind, state, _) = ec2.instance("web1").expect("web1");
    assert_eq!((kind.as_str(), state.as_str()), ("t3.medium", "running"));
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(0), "{}", out.text());

    // Drift made with the API: web2 stopped, the network's ssh rule revoked.
    let (web2, ..) = ec2.instance("web2").expect("web2");
    block_on(async {
        let client = ec2.client();
        client
            .stop_instances()
            .instance_ids(&web2)
            .send()
            .await
            .expect("stop");
        let groups = client
            .describe_security_groups()
            .filters(Filter::builder().name("tag:Name").values("labnet").build())
            .send()
            .await
            .expect("groups");
        let group = groups.security_groups()[0]
            .group_id()
            .unwrap_or_default()
            .to_string();
        client
            .revoke_security_group_ingress()
            .group_id(group)
            .ip_permissions(
                aws_sdk_ec2::types::IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(22)
                    .to_port(22)
                    .ip_ranges(
                        aws_sdk_ec2::types::IpRange::builder()
                            .cidr_ip("0.0.0.0/0")
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("revoke");
    });
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(2), "{}", out.text());
    assert!(
        out.stdout.contains("tcp/22 0.0.0.0/0") && out.stdout.contains("running"),
        "{}",
        out.text()
    );
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(0), "{}", out.text());

    // Destroyed: everything the plan made goes, the other tool's instance stays.
    let out = ec2.plan(&["destroy", "--yes", "--provider", "ec2"], Some(&file));
    assert!(out.ok(), "{}", out.text());
    assert!(ec2.instance("web1").is_none() && ec2.instance("web2").is_none());
    assert_eq!(ec2.vpcs_named("labnet"), 0);
    let left = ec2
        .instance("kclivm")
        .expect("the other tool's instance stays");
    assert_eq!(left.0, other);
    // The plan lock was given back.
    let locks = block_on(async {
        ec2.client()
            .describe_key_pairs()
            .send()
            .await
            .expect("key pairs")
            .key_pairs()
            .iter()
            .filter(|k| {
                k.key_name()
                    .is_some_and(|n| n.starts_with("siteplan-lock-"))
            })
            .count()
    });
    assert_eq!(locks, 0);
}

#[test]
fn what_ec2_cannot_hold_is_refused_before_anything_changes() {
    let Some(ec2) = Ec2::start(
        "what_ec2_cannot_hold_is_refused_before_anything_changes",
        "eu-west-2",
    ) else {
        return;
    };
    // A pool entry is a host directory, which EC2 has not.
    let file = ec2.write("pool.yml", "store:\n  type: pool\n  path: /srv/vms\n");
    let out = ec2.apply(&file);
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr
            .contains("pool/store: provider `ec2` has no storage in host directories"),
        "{}",
        out.stderr
    );
    let file = ec2.write(
        "bad.yml",
        &format!(
            "img:\n  type: image\n  url: https://example.org/disk.qcow2\n\
             vm1:\n  image: img\n  pool: fast\n\
             vm2:\n  nets: [a, b]\n  image: {AMI_NAME}\n\
             a:\n  type: network\n  cidr: 10.1.0.0/24\n\
             b:\n  type: network\n  cidr: 11.0.0.0/8\n"
        ),
    );
    let out = ec2.apply(&file);
    assert_eq!(out.code(), Some(1), "{}", out.text());
    for says in [
        "AWS boots AMIs",
        "one NIC",
        "between /16 and /28",
        "not `fast`",
    ] {
        assert!(out.stderr.contains(says), "{says}:\n{}", out.stderr);
    }
    assert!(ec2.instances().is_empty());
    assert_eq!(ec2.vpcs_named("a"), 0);
    // Where EC2 does not answer, `plan output` says so, rather than that the VMs are missing.
    let file = ec2.write("quiet.yml", &format!("vm1:\n  image: {AMI_NAME}\n"));
    let out = ec2.plan(&["output", "--provider", "ec2-gone"], Some(&file));
    assert!(
        out.code() == Some(1) && out.stderr.contains("EC2 did not answer"),
        "{}",
        out.text()
    );
}

/// The volume ids of an instance, by device.
fn volumes_of(ec2: &Ec2, instance: &str) -> Vec<(String, String)> {
    block_on(async {
        let out = ec2
            .client()
            .describe_instances()
            .instance_ids(instance)
            .send()
            .await
            .expect("describe");
        let mut volumes: Vec<(String, String)> = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .flat_map(|i| i.block_device_mappings())
            .filter_map(|m| {
                Some((
                    m.device_name()?.to_string(),
                    m.ebs()?.volume_id()?.to_string(),
                ))
            })
            .collect();
        volumes.sort();
        volumes
    })
}

#[test]
fn a_lab_snapshot_on_ec2_is_every_volume_of_every_instance() {
    let Some(ec2) = Ec2::start(
        "a_lab_snapshot_on_ec2_is_every_volume_of_every_instance",
        "us-west-2",
    ) else {
        return;
    };
    let file = ec2.write(
        "snap.yml",
        &format!(
            "db:\n  image: {AMI_NAME}\n  disks: [10, 20]\n\
             app:\n  image: {AMI_NAME}\n"
        ),
    );
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    let (db, ..) = ec2.instance("db").expect("db");
    let before = volumes_of(&ec2, &db);
    assert_eq!(before.len(), 2, "{before:?}");

    let snapshot = |args: &[&str], name: Option<&str>| {
        let mut plan = Plan::new(&[&["snapshot"][..], args].concat())
            .providers(&ec2.providers, &ec2.state)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .arg_path(&file)
            .args(&["--provider", "ec2"]);
        if let Some(name) = name {
            plan = plan.args(&[name]);
        }
        plan.run()
    };
    let out = snapshot(&["create"], Some("base"));
    assert!(out.ok(), "{}", out.text());
    // EC2 cannot pause: the words say what the snapshot is instead.
    assert!(
        out.text().contains(
            "vm/app, vm/db ran and were snapshotted running, as their provider cannot pause them"
        ),
        "{}",
        out.text()
    );
    // One EC2 snapshot per volume: db's two and app's one, each tagged with the lab's name.
    let snapshots = block_on(async {
        ec2.client()
            .describe_snapshots()
            .owner_ids("self")
            .filters(
                Filter::builder()
                    .name("tag:siteplan:snapshot")
                    .values("base")
                    .build(),
            )
            .send()
            .await
            .expect("snapshots")
            .snapshots()
            .len()
    });
    assert_eq!(snapshots, 3);
    let out = snapshot(&["list", "-o", "json"], None);
    assert!(out.ok() && out.stdout.contains("base"), "{}", out.text());
    // `plan info` lists it, with the instance's size and volumes.
    let path = file.to_string_lossy().to_string();
    let out = ec2.plan(&["info", "--provider", "ec2", &path, "db"], None);
    assert!(
        out.ok()
            && out.stdout.contains("memory: 512MiB")
            && out.stdout.contains("cpus: 2")
            && out
                .stdout
                .contains("disk: db_1.img size: 20GiB format: gp3 bus: /dev/sdf")
            && out.stdout.contains("snapshot: base"),
        "{}",
        out.text()
    );

    // db grows (another instance type, made at the restart) after the snapshot.
    let grown = format!(
        "db:\n  image: {AMI_NAME}\n  memory: 4096\n  disks: [10, 20]\n\
         app:\n  image: {AMI_NAME}\n"
    );
    std::fs::write(&file, &grown).expect("plan");
    let out = ec2.plan(
        &["apply", "--yes", "--restart", "--provider", "ec2"],
        Some(&file),
    );
    assert!(out.ok(), "{}", out.text());
    assert_eq!(ec2.instance("db").expect("db").1, "t3.medium");

    // Reverted: db gets volumes made from its snapshots, where the old ones were, its type
    // again, and runs; stopped rather than paused, as said.
    let out = snapshot(&["revert", "--yes"], Some("base"));
    assert!(out.ok(), "{}", out.text());
    assert!(
        out.text().contains("(stopped: its provider cannot pause)"),
        "{}",
        out.text()
    );
    assert_eq!(ec2.instance("db").expect("db").1, "t3.nano");
    // The plan's larger type is a change again, made at the next restart.
    let out = ec2.diff(&file);
    assert!(
        out.code() == Some(2)
            && out
                .stdout
                .contains("instance_type: \"t3.nano\" → \"t3.medium\""),
        "{}",
        out.text()
    );
    std::fs::write(
        &file,
        format!("db:\n  image: {AMI_NAME}\n  disks: [10, 20]\napp:\n  image: {AMI_NAME}\n"),
    )
    .expect("plan");
    let after = volumes_of(&ec2, &db);
    assert_eq!(after.len(), 2, "{after:?}");
    for ((device, old), (again, new)) in before.iter().zip(&after) {
        assert_eq!(device, again);
        assert_ne!(old, new, "{device} is a volume made from the snapshot");
    }
    let (_, _, state, _) = ec2.instance("db").expect("db");
    assert_eq!(state, "running");
    // The disks are as the plan says: nothing to change.
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(0), "{}", out.text());

    let out = snapshot(&["delete"], Some("base"));
    assert!(out.ok(), "{}", out.text());
    let out = ec2.plan(&["destroy", "--yes", "--provider", "ec2"], Some(&file));
    assert!(out.ok(), "{}", out.text());
    let left = block_on(async {
        ec2.client()
            .describe_snapshots()
            .owner_ids("self")
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values("siteplan:plan")
                    .build(),
            )
            .send()
            .await
            .expect("snapshots")
            .snapshots()
            .len()
    });
    assert_eq!(left, 0);
}

#[test]
fn a_plan_spread_over_a_sandbox_and_ec2() {
    let Some(ec2) = Ec2::start("a_plan_spread_over_a_sandbox_and_ec2", "ap-northeast-1") else {
        return;
    };
    let file = ec2.write(
        "mixed.yml",
        &format!(
            "local:\n  client: play\n  memory: 512\n  nets: [default]\n\
             cloud:\n  client: ec2\n  image: {AMI_NAME}\n  memory: 512\n  depends_on: [local]\n"
        ),
    );
    let out = ec2.plan(&["apply", "--yes", "--provider", "play"], Some(&file));
    assert!(out.ok(), "{}", out.text());
    assert!(ec2.instance("cloud").is_some(), "{}", out.text());
    let (_, kind, ..) = ec2.instance("cloud").expect("cloud");
    assert_eq!(kind, "t3.nano", "1 CPU, 512 MiB");
    let out = ec2.plan(&["status", "--provider", "play"], Some(&file));
    assert!(
        out.ok() && out.stdout.contains("local") && out.stdout.contains("cloud"),
        "{}",
        out.text()
    );
    let out = ec2.plan(
        &["diff", "--provider", "play", "--detailed-exitcode"],
        Some(&file),
    );
    assert_eq!(out.code(), Some(0), "{}", out.text());
    let out = ec2.plan(&["destroy", "--yes", "--provider", "play"], Some(&file));
    assert!(out.ok(), "{}", out.text());
    assert!(ec2.instance("cloud").is_none());
}

/// A plan spread over a real libvirtd and EC2: a VM on each, the cloud one after the local one
/// (`depends_on`), made in that order, shown together, and destroyed the other way round.
#[test]
#[cfg(feature = "libvirt")]
fn a_plan_spread_over_a_real_libvirtd_and_ec2() {
    let test = "a_plan_spread_over_a_real_libvirtd_and_ec2";
    let Some(ec2) = Ec2::start(test, "sa-east-1") else {
        return;
    };
    let Some((_held, uri)) = crate::harness::libvirtd(test) else {
        return;
    };
    let mut providers = std::fs::read_to_string(&ec2.providers).expect("providers");
    providers.push_str(&format!(
        "  - {{name: host, type: libvirt, uri: \"{uri}\"}}\n"
    ));
    std::fs::write(&ec2.providers, providers).expect("providers");
    let file = ec2.write(
        "spread.yml",
        &format!(
            "mixnet:\n  type: network\n  cidr: 10.96.12.0/24\n  nat: false\n\
             mixpool:\n  type: pool\n  path: /var/lib/libvirt/siteplan-mix-test\n\
             mixlocal:\n  client: host\n  pool: mixpool\n  nets: [mixnet]\n  disks: [1]\n  \
             memory: 256\n  virttype: qemu\n  cloudinit: false\n  start: false\n\
             mixcloud:\n  client: ec2\n  image: {AMI_NAME}\n  memory: 512\n  depends_on: [mixlocal]\n"
        ),
    );
    let run = |args: &[&str]| ec2.plan(&[args, &["--provider", "host"]].concat(), Some(&file));
    // What an earlier run left on the libvirtd is this plan's.
    let _ = run(&["destroy", "--yes", "--plan-moved"]);
    let out = run(&["apply", "--yes"]);
    assert!(out.ok(), "{}", out.text());
    let text = out.text();
    let local = text
        .find("vm/mixlocal on host ok")
        .unwrap_or_else(|| panic!("the local VM made:\n{text}"));
    let cloud = text
        .find("instance/mixcloud on ec2 ok")
        .expect("the cloud VM made");
    assert!(
        local < cloud,
        "the cloud VM comes after the local one:\n{text}"
    );
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some(&uri)).expect("connect");
    assert!(conn.lookup_domain_by_name("mixlocal").is_ok());
    assert!(ec2.instance("mixcloud").is_some());
    let out = run(&["status"]);
    assert!(
        out.ok() && out.stdout.contains("mixlocal") && out.stdout.contains("mixcloud"),
        "{}",
        out.text()
    );
    let out = run(&["diff", "--detailed-exitcode"]);
    assert_eq!(out.code(), Some(0), "{}", out.text());
    let out = run(&["destroy", "--yes"]);
    assert!(out.ok(), "{}", out.text());
    let text = out.text();
    let cloud = text
        .find("instance/mixcloud on ec2 ok")
        .expect("the cloud VM deleted");
    let local = text
        .find("vm/mixlocal on host ok")
        .expect("the local VM deleted");
    assert!(cloud < local, "the cloud VM goes first:\n{text}");
    assert!(conn.lookup_domain_by_name("mixlocal").is_err());
    assert!(ec2.instance("mixcloud").is_none());
}

/// `ignore_changes` on EC2: the plan's keys it names leave the instance as it is, until they
/// are taken out of it.
#[test]
fn ignore_changes_leave_an_instance_as_it_is() {
    let Some(ec2) = Ec2::start("ignore_changes_leave_an_instance_as_it_is", "eu-west-3") else {
        return;
    };
    let vm = |memory: u32, cmd: &str, ignore: &str| {
        format!("ig:\n  image: {AMI_NAME}\n  memory: {memory}\n  cmds: ['{cmd}']\n{ignore}")
    };
    let ignoring = "  ignore_changes: [memory, cmds]\n";
    let file = ec2.write("ignore.yml", &vm(512, "echo one", ignoring));
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    std::fs::write(&file, vm(4096, "echo two", ignoring)).expect("plan");
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(0), "{}", out.text());
    // Taken out: both are changes again (the user data is read at first boot: a replace).
    std::fs::write(&file, vm(4096, "echo two", "")).expect("plan");
    let out = ec2.diff(&file);
    assert!(
        out.code() == Some(2)
            && out
                .stdout
                .contains("-/+ instance/ig: `user_data.sha256` forces replacement"),
        "{}",
        out.text()
    );
    // Memory alone taken out: another instance type, made at the next restart.
    std::fs::write(&file, vm(4096, "echo two", "  ignore_changes: [cmds]\n")).expect("plan");
    let out = ec2.diff(&file);
    assert!(
        out.code() == Some(2)
            && out.stdout.contains("~ instance/ig (needs a reboot)")
            && out
                .stdout
                .contains("instance_type: \"t3.nano\" → \"t3.medium\""),
        "{}",
        out.text()
    );
    let out = ec2.plan(&["destroy", "--yes", "--provider", "ec2"], Some(&file));
    assert!(out.ok(), "{}", out.text());
}
