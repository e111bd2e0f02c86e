//! Pictures of hand-made states: the marks come from the planner's changes, and every drawing
//! names every element.

use super::*;
use crate::plan::model::desired::{Desired, DesiredResource};
use crate::plan::model::spec::*;
use crate::provider::libvirt::rules::LibvirtRules;
use crate::provider::OwnerMark;

fn network(name: &str) -> Spec {
    Spec::Network(NetworkSpec {
        name: name.into(),
        mode: ForwardMode::Nat,
        bridge: name.into(),
        cidr: "10.0.0.0/24".parse().ok(),
        dhcp: None,
        hosts: Vec::new(),
        dns_hosts: Vec::new(),
        domain: None,
        mtu: None,
        dns: true,
        autostart: true,
    })
}

fn vm(name: &str, memory: u64, nets: &[&str]) -> Spec {
    Spec::Vm(VmSpec {
        name: name.into(),
        memory_mib: memory,
        vcpus: 1,
        cpu_model: "host-model".into(),
        virt_type: VirtType::Qemu,
        uefi: false,
        disks: vec![DiskSpec {
            pool: "default".into(),
            volume: format!("{name}_0.img"),
            bus: Bus::Virtio,
        }],
        nics: nets
            .iter()
            .map(|n| NicSpec {
                network: n.to_string(),
                mac: Some("52:54:00:00:00:01".into()),
                model: "virtio".into(),
            })
            .collect(),
        seed: None,
        running: true,
        autostart: false,
        kernel: None,
        initrd: None,
        cmdline: None,
        guest_agent: false,
        seed_sha256: None,
    })
}

fn disk(vm: &str, gib: u64) -> Spec {
    Spec::Volume(VolumeSpec {
        name: format!("{vm}_0.img"),
        pool: "default".into(),
        capacity_bytes: Some(gib << 30),
        format: VolumeFormat::Qcow2,
        thin: true,
        backing: None,
        source: VolumeSource::Blank,
    })
}

fn observed(specs: &[Spec]) -> Observed {
    let mut o = Observed::default();
    for s in specs {
        o.resources.insert(
            s.id(),
            LiveResource {
                spec: s.clone(),
                owner: Some(OwnerMark {
                    plan: "lab".into(),
                    spec: s.clone(),
                    prevent_destroy: false,
                    created: None,
                    applied_from: None,
                    group: None,
                }),
                active: true,
                empty: None,
                pending_restart: Vec::new(),
                paused: false,
            },
        );
    }
    o
}

/// A lab where web1 stays, web2 grows (a restart), web3 is new and old1 was removed from the
/// plan.
fn lab() -> Picture {
    let want = [
        network("labnet"),
        vm("web1", 1024, &["labnet"]),
        disk("web1", 10),
        vm("web2", 4096, &["labnet", "default"]),
        disk("web2", 10),
        vm("web3", 1024, &["labnet"]),
        disk("web3", 10),
    ];
    let have = observed(&[
        network("labnet"),
        vm("web1", 1024, &["labnet"]),
        disk("web1", 10),
        vm("web2", 2048, &["labnet", "default"]),
        disk("web2", 10),
        vm("old1", 512, &["labnet"]),
    ]);
    let mut addresses = BTreeMap::new();
    addresses.insert("web1".to_string(), vec!["10.0.0.11 (lease)".to_string()]);
    drawn(&want, &have, addresses)
}

/// The picture of one place, `h1`, where `have` is and `want` is planned.
fn drawn(want: &[Spec], have: &Observed, addresses: BTreeMap<String, Vec<String>>) -> Picture {
    let desired = Desired {
        resources: want
            .iter()
            .map(|s| DesiredResource {
                spec: s.clone(),
                entry: s.id().to_string(),
                depends_on: Vec::new(),
            })
            .collect(),
        ..Desired::default()
    };
    let plan = crate::plan::plan(
        &crate::plan::Identity::named("lab"),
        &desired,
        have,
        &LibvirtRules,
    )
    .unwrap();
    Picture::build(
        "lab",
        DrawnFrom::Live,
        vec![PlaceInput {
            name: "h1".into(),
            desired: want.iter().collect(),
            observed: Some(have),
            changes: &plan.changes,
            addresses,
            rules: &LibvirtRules,
        }],
    )
}

fn node<'a>(picture: &'a Picture, address: &str) -> &'a Node {
    picture
        .nodes
        .iter()
        .find(|n| n.address == address)
        .unwrap_or_else(|| panic!("no {address} in {:#?}", picture.nodes))
}

#[test]
fn each_element_carries_its_change_and_its_state() {
    let picture = lab();
    assert_eq!(node(&picture, "vm/web1").mark, Mark::Unchanged);
    assert_eq!(node(&picture, "vm/web1").state.as_deref(), Some("running"));
    assert!(node(&picture, "vm/web1")
        .detail
        .contains(&"10.0.0.11 (lease)".to_string()));
    assert_eq!(node(&picture, "vm/web2").mark, Mark::WaitsRestart);
    assert!(node(&picture, "vm/web2")
        .why
        .as_deref()
        .is_some_and(|w| w.contains("memory")));
    assert_eq!(node(&picture, "vm/web3").mark, Mark::Added);
    assert_eq!(node(&picture, "vm/web3").state.as_deref(), Some("missing"));
    assert_eq!(node(&picture, "vm/old1").mark, Mark::Removed);
    // The network the plan uses and does not declare is drawn, as such.
    let default = node(&picture, "network/default");
    assert!(default.external);
    assert!(picture.links.contains(&Link {
        from: "h1:network/default".into(),
        to: "h1:vm/web2".into()
    }));
    assert!(picture.links.contains(&Link {
        from: "h1:volume/default/web1_0.img".into(),
        to: "h1:pool/default".into()
    }));
}

#[test]
fn every_drawing_names_every_element() {
    let picture = lab();
    let svg = svg::svg(&picture);
    let html = html::html(&picture);
    let mermaid = mermaid::mermaid(&picture);
    for node in &picture.nodes {
        assert!(
            svg.contains(&format!("id=\"{}\"", svg::element_id(&node.key))),
            "{} is not in the SVG",
            node.key
        );
        assert!(mermaid.contains(&node.name), "{} not in Mermaid", node.key);
    }
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg "));
    // Nothing the page loads comes from elsewhere.
    for outside in ["http:", "https:", "<script", "<link", "@import", "url("] {
        let svg_namespace = "xmlns=\"http://www.w3.org/2000/svg\"";
        assert!(
            !html.replace(svg_namespace, "").contains(outside),
            "the page refers to {outside}"
        );
    }
    insta::assert_snapshot!("lab_mermaid", mermaid);
    insta::assert_snapshot!("lab_svg", svg);
}

#[test]
fn a_big_place_is_collapsed_in_mermaid_but_not_its_changes() {
    let mut want = vec![network("labnet")];
    for i in 0..50 {
        want.push(vm(&format!("node{i}"), 1024, &["labnet"]));
        want.push(disk(&format!("node{i}"), 10));
    }
    let have = observed(&want[..79]);
    let picture = drawn(&want, &have, BTreeMap::new());
    let mermaid = mermaid::mermaid(&picture);
    assert!(mermaid.contains("39 unchanged VMs"), "{mermaid}");
    for i in 39..50 {
        assert!(mermaid.contains(&format!("+ node{i}<br/>")), "{mermaid}");
    }
    for i in 0..39 {
        assert!(!mermaid.contains(&format!("node{i}_0.img")), "{mermaid}");
    }
    assert!(mermaid.lines().count() < 100, "{mermaid}");
}

#[test]
fn a_replaced_network_and_a_drifted_vm_say_why() {
    let want = [network("labnet"), vm("web1", 1024, &["labnet"])];
    let mut have = observed(&want);
    // The network's range changes (a replace); web1's memory was changed by hand (drift).
    if let Some(live) = have.resources.get_mut(&ResourceId::network("labnet")) {
        let Spec::Network(n) = &mut live.spec else {
            unreachable!()
        };
        n.cidr = "10.9.0.0/24".parse().ok();
        if let Some(mark) = &mut live.owner {
            mark.spec = live.spec.clone();
        }
    }
    if let Some(live) = have.resources.get_mut(&ResourceId::vm("web1")) {
        live.spec = vm("web1", 4096, &["labnet"]);
    }
    let picture = drawn(&want, &have, BTreeMap::new());
    let network = node(&picture, "network/labnet");
    assert_eq!(network.mark, Mark::Replaced);
    assert!(
        network.why.as_deref().is_some_and(|w| !w.is_empty()),
        "{network:?}"
    );
    let web1 = node(&picture, "vm/web1");
    assert_eq!(web1.mark, Mark::Drifted);
    assert!(
        web1.why
            .as_deref()
            .is_some_and(|w| w.contains("outside siteplan: memory 1024 MiB → 4096 MiB")),
        "{web1:?}"
    );
    let svg = svg::svg(&picture);
    assert!(svg.contains("class=\"node network replaced\""), "{svg}");
    assert!(svg.contains("class=\"node vm drifted\""), "{svg}");
}
