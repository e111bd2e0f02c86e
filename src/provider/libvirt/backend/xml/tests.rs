use super::*;
use crate::provider::Spec;

fn vm() -> VmSpec {
    VmSpec {
        name: "web1".into(),
        memory_mib: 2048,
        vcpus: 2,
        cpu_model: "host-model".into(),
        virt_type: VirtType::Qemu,
        uefi: false,
        disks: vec![
            DiskSpec {
                pool: "lab".into(),
                volume: "web1_0.qcow2".into(),
                bus: Bus::Virtio,
            },
            DiskSpec {
                pool: "lab".into(),
                volume: "web1_1.qcow2".into(),
                bus: Bus::Virtio,
            },
        ],
        nics: vec![NicSpec {
            network: "labnet".into(),
            mac: Some("52:54:00:00:00:01".into()),
            model: "virtio".into(),
        }],
        seed: Some(("lab".into(), "web1-cidata.img".into())),
        running: true,
        autostart: false,
        kernel: None,
        initrd: None,
        cmdline: None,
        guest_agent: true,
        seed_sha256: None,
    }
}

/// A VM that boots a kernel from a volume and an initrd from a host path.
fn booting_vm() -> VmSpec {
    VmSpec {
        kernel: Some(BootFile::Volume {
            pool: "lab".into(),
            volume: "vmlinuz".into(),
        }),
        initrd: Some(BootFile::Path("/srv/boot/initrd.img".into())),
        cmdline: Some("root=/dev/vda console=ttyS0".into()),
        ..vm()
    }
}

#[test]
fn domain_xml_round_trips() {
    let spec = booting_vm();
    let mark = OwnerMark {
        plan: "lab".into(),
        spec: Spec::Vm(spec.clone()),
        prevent_destroy: true,
        created: None,
        applied_from: None,
        group: None,
    };
    let key = |volume: &str| ("lab".to_string(), volume.to_string());
    let facts = VolumeFacts {
        formats: [
            (key("web1_0.qcow2"), VolumeFormat::Qcow2),
            (key("web1_1.qcow2"), VolumeFormat::Qcow2),
        ]
        .into_iter()
        .collect(),
        paths: [(key("vmlinuz"), "/srv/lab/vmlinuz".to_string())]
            .into_iter()
            .collect(),
    };
    let xml = domain_xml(
        &spec,
        Some(&mark),
        None,
        DomainFlavor { test_driver: false },
        &facts,
    )
    .unwrap();
    insta::assert_snapshot!("domain_xml", xml);
    assert!(
        xml.contains(r#"<driver name="qemu" type="qcow2"/>"#),
        "{xml}"
    );
    let mut parsed = parse_domain(&xml, true, false).unwrap();
    // The kernel is given by path, which names the volume once the pools are known.
    assert_eq!(
        parsed.spec.kernel,
        Some(BootFile::Path("/srv/lab/vmlinuz".into()))
    );
    parsed.resolve_paths(&[("/srv/lab/vmlinuz".to_string(), key("vmlinuz"))].into());
    assert_eq!(parsed.spec, spec);
    assert_eq!(parsed.mark, Some(mark));
}

#[test]
fn a_boot_volume_that_is_not_there_is_an_error_not_a_guess() {
    let err = domain_xml(
        &booting_vm(),
        None,
        None,
        DomainFlavor { test_driver: false },
        &VolumeFacts::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("volume vmlinuz is not in pool lab"),
        "{err}"
    );
}

#[test]
fn network_xml_round_trips() {
    let spec = NetworkSpec {
        name: "labnet".into(),
        mode: ForwardMode::Nat,
        bridge: "labnet".into(),
        cidr: Some("192.168.150.0/24".parse().unwrap()),
        dhcp: Some((
            "192.168.150.100".parse().unwrap(),
            "192.168.150.200".parse().unwrap(),
        )),
        hosts: vec![DhcpHost {
            mac: "52:54:00:00:00:01".into(),
            ip: "192.168.150.11".parse().unwrap(),
            name: "web1".into(),
        }],
        dns_hosts: Vec::new(),
        domain: Some("lab.local".into()),
        mtu: Some(1500),
        dns: true,
        autostart: true,
    };
    let xml = network_xml(&spec, None).unwrap();
    insta::assert_snapshot!("network_xml", xml);
    let (parsed, mark) = parse_network(&xml, true).unwrap();
    assert_eq!(parsed, spec);
    assert_eq!(mark, None);
}

#[test]
fn names_are_escaped_not_concatenated() {
    let mut spec = vm();
    spec.name = "a<b>&\"c".into();
    let xml = domain_xml(
        &spec,
        None,
        None,
        DomainFlavor { test_driver: true },
        &VolumeFacts::default(),
    )
    .unwrap();
    assert!(xml.contains("<name>a&lt;b&gt;&amp;&quot;c</name>"), "{xml}");
    assert_eq!(
        parse_domain(&xml, false, false).unwrap().spec.name,
        spec.name
    );
}

#[test]
fn target_devices() {
    assert_eq!(target_dev(Bus::Virtio, 0), "vda");
    assert_eq!(target_dev(Bus::Virtio, 25), "vdz");
    assert_eq!(target_dev(Bus::Virtio, 26), "vdaa");
    assert_eq!(target_dev(Bus::Sata, 1), "sdb");
    let xml = domain_xml(
        &vm(),
        None,
        None,
        DomainFlavor { test_driver: false },
        &VolumeFacts::default(),
    )
    .unwrap();
    assert!(
        xml.contains(r#"<target dev="vdz" bus="virtio"/>"#),
        "the seed keeps vdz: {xml}"
    );
}

#[test]
fn runstate_is_added_to_test_driver_domains() {
    let xml = domain_xml(
        &vm(),
        None,
        None,
        DomainFlavor { test_driver: true },
        &VolumeFacts::default(),
    )
    .unwrap();
    let wrapped = test_driver_domain(&xml, RunState::Off).unwrap();
    assert!(
        wrapped.contains("<test:runstate>5</test:runstate></domain>"),
        "{wrapped}"
    );
    assert!(roxmltree::Document::parse(&wrapped).is_ok());
}

#[test]
fn a_running_domain_reads_as_its_saved_definition_without_its_id() {
    let running = "<domain type='test' id='4'>\n  <name>web1</name>\n</domain>";
    assert_eq!(
        without_domain_id(running),
        "<domain type='test'>\n  <name>web1</name>\n</domain>"
    );
    let saved = "<domain type='test'>\n  <name>id='7'</name>\n</domain>";
    assert_eq!(without_domain_id(saved), saved, "only the root tag's id");
}
