//! A plan written from what a plan made reads back as the same resources: the plan is loaded
//! and lowered for libvirt, its resources are handed to `generate` as if found live (the seeds'
//! bytes made by their generators), and the plan written is loaded and lowered again.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::manifest;
use crate::plan::model::desired::Desired;
use crate::plan::model::spec::{Spec, VolumeSource};

fn lowered(text: &str, sets: &[String]) -> Desired {
    let overrides = manifest::Overrides {
        sets: sets.to_vec(),
        no_kcli_config: true,
        ..manifest::Overrides::default()
    };
    let path = Path::new("/nonexistent/lab.yml");
    let loaded = match manifest::load_text(text, path, &overrides, manifest::Options::default()) {
        Ok(loaded) => loaded,
        Err(e) => panic!(
            "does not load: {:?}\n{text}",
            e.problems.iter().map(|p| &p.message).collect::<Vec<_>>()
        ),
    };
    let intents = crate::plan::intent::intents(&loaded.manifest, "lab", Path::new("/nonexistent"))
        .expect("intents");
    crate::provider::libvirt::lower::libvirt(&intents).expect("lowered")
}

/// What a provider holding `desired` would be found to hold: every VM, every network, and
/// the volumes, the seeds' bytes made.
fn found_from(desired: &Desired) -> Found {
    let mut found = Found {
        provider: "test".into(),
        ..Found::default()
    };
    for resource in &desired.resources {
        match &resource.spec {
            Spec::Vm(vm) => found.vms.push(vm.clone()),
            Spec::Network(net) => found.networks.push(net.clone()),
            Spec::Pool(pool) => found.pools.push(pool.clone()),
            Spec::Volume(volume) if matches!(volume.source, VolumeSource::Fetch { .. }) => {
                found.images.push(volume.clone());
            }
            Spec::Volume(volume) => {
                if let VolumeSource::Generated { generator, .. } = &volume.source {
                    let bytes = generator.bytes().expect("seed bytes");
                    let read = |name| crate::cloudinit::read_seed_file(&bytes, name).expect(name);
                    let vm = volume.name.trim_end_matches("-cidata.img").to_string();
                    found.seeds.insert(
                        vm,
                        SeedDocuments {
                            user_data: read("user-data"),
                            meta_data: read("meta-data"),
                            network_config: read("network-config"),
                        },
                    );
                }
                found
                    .volumes
                    .insert((volume.pool.clone(), volume.name.clone()), volume.clone());
            }
            _ => {}
        }
    }
    found
}

/// SHARED as found, worker1's seed written again with `files` (by siteplan, as a seed is).
fn worker1_with_files(files: Vec<crate::cloudinit::SeedFile>) -> Found {
    let mut found = found_from(&lowered(SHARED, &["pw=x".into()]));
    let worker = found.seeds.get("worker1").cloned().expect("worker1's seed");
    let input = crate::cloudinit::recover(&worker).expect("siteplan's seed");
    let input = crate::cloudinit::SeedInput { files, ..input };
    found
        .seeds
        .insert("worker1".into(), crate::cloudinit::documents(&input));
    found
}

/// The specs of what `desired` makes.
fn specs(desired: &Desired) -> BTreeMap<String, Spec> {
    desired
        .resources
        .iter()
        .map(|r| (r.spec.id().to_string(), r.spec.clone()))
        .collect()
}

fn round_trip(text: &str, sets: &[String]) -> Generated {
    let before = lowered(text, sets);
    let generated = generate(&found_from(&before));
    let secrets: Vec<String> = generated
        .secrets
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let after = lowered(&generated.text, &secrets);
    let (before, after) = (specs(&before), specs(&after));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "{}",
        generated.text
    );
    for (id, spec) in &before {
        assert_eq!(
            Some(spec),
            after.get(id),
            "{id} differs in\n{}",
            generated.text
        );
    }
    generated
}

#[test]
fn the_example_lab_reads_back_as_the_same_resources() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/lab.yml"))
        .expect("examples/lab.yml");
    let generated = round_trip(&text, &[]);
    assert!(generated.notes.is_empty(), "{:?}", generated.notes);
    insta::assert_snapshot!("lab", generated.text);
}

const SHARED: &str = "
labnet:
  type: network
  cidr: 10.20.0.0/24
  nat: false
  dhcp_start: 10.20.0.50
worker1:
  numcpus: 4
  memory: 4096
  rootpassword: '{{ pw }}'
  keys: [ssh-ed25519 AAAA worker]
  disks: [20]
  nets:
    - name: labnet
      ip: 10.20.0.11
      prefix: 24
  reserveip: true
  reservedns: true
worker2:
  numcpus: 4
  memory: 4096
  rootpassword: '{{ pw }}'
  keys: [ssh-ed25519 AAAA worker]
  disks: [20]
  nets:
    - name: labnet
      ip: 10.20.0.12
      prefix: 24
  reserveip: true
  reservedns: true
lonely:
  numcpus: 1
  memory: 256
  cloudinit: false
  start: false
  disks:
    - size: 1536M
      name: lonely-root.qcow2
      interface: sata
  nets: [labnet]
";

#[test]
fn vms_alike_share_a_profile_and_the_password_is_a_required_parameter() {
    let generated = round_trip(SHARED, &["pw=s3cret-pass".into()]);
    let text = &generated.text;
    assert!(!text.contains("s3cret-pass"), "{text}");
    assert!(text.contains("rootpassword: ?required"), "{text}");
    assert!(text.contains("rootpassword: {{ rootpassword }}"), "{text}");
    assert!(text.contains("worker-profile:\n  type: profile"), "{text}");
    assert_eq!(text.matches("profile: worker-profile").count(), 2, "{text}");
    assert_eq!(
        generated.secrets.get("rootpassword").map(String::as_str),
        Some("s3cret-pass")
    );
    insta::assert_snapshot!("shared", text);
}

#[test]
fn what_a_guest_file_holds_is_never_a_template() {
    // `lonely` has no seed: its file is not in the plan, which is what the note says is lost.
    // A seed with a file that looks like a template: written so it stays text.
    let found = worker1_with_files(vec![crate::cloudinit::SeedFile {
        path: "/etc/motd".into(),
        content: "{{ rootpassword }} {% if x %}".into(),
        owner: None,
        mode: None,
    }]);
    let generated = generate(&found);
    let again = lowered(&generated.text, &["rootpassword=x".into()]);
    let seed = again
        .resources
        .iter()
        .find_map(|r| match &r.spec {
            Spec::Volume(v) if v.name == "worker1-cidata.img" => Some(v.clone()),
            _ => None,
        })
        .expect("worker1's seed");
    let VolumeSource::Generated { generator, .. } = seed.source else {
        panic!("a seed");
    };
    let user_data =
        crate::cloudinit::read_seed_file(&generator.bytes().expect("bytes"), "user-data")
            .expect("user-data");
    assert!(
        user_data.contains("{{ rootpassword }} {% if x %}"),
        "{user_data}\n{}",
        generated.text
    );
}

#[test]
fn a_file_that_holds_a_private_key_is_left_out_and_said() {
    let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAKEYBODY\n\
               -----END OPENSSH PRIVATE KEY-----\n";
    let found = worker1_with_files(vec![
        crate::cloudinit::SeedFile {
            path: "/root/.ssh/id_ed25519".into(),
            content: key.into(),
            owner: None,
            mode: Some(0o600),
        },
        crate::cloudinit::SeedFile {
            path: "/etc/app/api_token".into(),
            content: "abc".into(),
            owner: None,
            mode: None,
        },
        crate::cloudinit::SeedFile {
            path: "/etc/motd".into(),
            content: "hello".into(),
            owner: None,
            mode: None,
        },
    ]);
    let generated = generate(&found);
    assert!(!generated.text.contains("KEYBODY"), "{}", generated.text);
    assert!(
        !generated.text.contains("path: /etc/app/api_token"),
        "{}",
        generated.text
    );
    assert!(
        generated.text.contains("path: /etc/motd"),
        "{}",
        generated.text
    );
    assert_eq!(
        generated
            .notes
            .iter()
            .filter(|n| n.contains("holds a secret"))
            .count(),
        2,
        "{:?}",
        generated.notes
    );
}

#[test]
fn an_image_urls_password_becomes_a_required_parameter() {
    let text = "pool1:\n  type: pool\n  path: /srv/pool1\n\
                img:\n  type: image\n  pool: pool1\n  url: https://alice:pw-LOGIN-9@images.example.org/d.qcow2\n\
                vm1:\n  image: img\n  pool: pool1\n  memory: 256\n  cloudinit: false\n  nets: []\n";
    let generated = round_trip(text, &[]);
    assert!(!generated.text.contains("pw-LOGIN-9"), "{}", generated.text);
    assert!(
        generated
            .text
            .contains("url: https://alice:{{ img_password }}@images.example.org/d.qcow2"),
        "{}",
        generated.text
    );
    assert!(
        generated.text.contains("img_password: ?required"),
        "{}",
        generated.text
    );
}

#[test]
fn a_network_named_as_a_vm_is_only_named() {
    let mut found = found_from(&lowered(SHARED, &["pw=x".into()]));
    let mut net = found.networks[0].clone();
    net.name = "lonely".into();
    net.bridge = "lonely".into();
    found.networks.push(net);
    let generated = generate(&found);
    assert_eq!(
        generated.text.matches("\nlonely:").count(),
        1,
        "{}",
        generated.text
    );
    assert!(
        generated
            .notes
            .iter()
            .any(|n| n.contains("network `lonely` has the name of another entry")),
        "{:?}",
        generated.notes
    );
}
