//! plan export on KubeVirt: the objects apply sends, with only fields the published APIs define.

use super::*;

/// Every field path the exported objects may have, written from the API references
/// (KubeVirt v1, CDI v1beta1, Multus v1, core v1): `[]` is any list item, `*` any key.
const API_FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata.name",
    "metadata.namespace",
    "metadata.labels.*",
    "metadata.annotations.*",
    // core v1 Secret
    "type",
    "stringData.*",
    // k8s.cni.cncf.io/v1 NetworkAttachmentDefinition
    "spec.config",
    // cdi.kubevirt.io/v1beta1 DataVolume
    "spec.source.http.url",
    "spec.storage.storageClassName",
    "spec.storage.resources.requests.storage",
    // kubevirt.io/v1 VirtualMachine
    "spec.runStrategy",
    "spec.dataVolumeTemplates[].metadata.name",
    "spec.dataVolumeTemplates[].spec.source.pvc.namespace",
    "spec.dataVolumeTemplates[].spec.source.pvc.name",
    "spec.dataVolumeTemplates[].spec.source.blank",
    "spec.dataVolumeTemplates[].spec.storage.storageClassName",
    "spec.dataVolumeTemplates[].spec.storage.resources.requests.storage",
    "spec.template.metadata.labels.*",
    "spec.template.spec.domain.cpu.cores",
    "spec.template.spec.domain.cpu.sockets",
    "spec.template.spec.domain.cpu.threads",
    "spec.template.spec.domain.cpu.maxSockets",
    "spec.template.spec.domain.memory.guest",
    "spec.template.spec.domain.memory.maxGuest",
    "spec.template.spec.domain.resources.requests.memory",
    "spec.template.spec.domain.firmware.bootloader.efi",
    "spec.template.spec.domain.devices.disks[].name",
    "spec.template.spec.domain.devices.disks[].bootOrder",
    "spec.template.spec.domain.devices.disks[].disk.bus",
    "spec.template.spec.domain.devices.interfaces[].name",
    "spec.template.spec.domain.devices.interfaces[].masquerade",
    "spec.template.spec.domain.devices.interfaces[].bridge",
    "spec.template.spec.domain.devices.interfaces[].macAddress",
    "spec.template.spec.domain.devices.interfaces[].model",
    "spec.template.spec.networks[].name",
    "spec.template.spec.networks[].pod",
    "spec.template.spec.networks[].multus.networkName",
    "spec.template.spec.volumes[].name",
    "spec.template.spec.volumes[].dataVolume.name",
    "spec.template.spec.volumes[].cloudInitNoCloud.secretRef.name",
    "spec.template.spec.volumes[].cloudInitNoCloud.networkDataSecretRef.name",
];

/// The leaf paths of a document, in `API_FIELDS`' notation.
fn leaf_paths(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) if !map.is_empty() => {
            let free_keys = ["labels", "annotations", "stringData"]
                .iter()
                .any(|k| prefix.ends_with(k));
            for (key, v) in map {
                let key = if free_keys { "*" } else { key.as_str() };
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                leaf_paths(&path, v, out);
            }
        }
        serde_json::Value::Array(items) if !items.is_empty() => {
            for item in items {
                leaf_paths(&format!("{prefix}[]"), item, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

#[test]
fn export_prints_the_objects_with_only_fields_the_apis_define() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Nothing listens there: export asks nothing of the cluster.
    let kubeconfig = StandIn::kubeconfig_for(tmp.path(), "kubeconfig", "127.0.0.1:1", "lab");
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "providers:\n  - {{name: kv, type: kubevirt, kubeconfig: {}}}\n",
            kubeconfig.display()
        ),
    )
    .expect("providers file");
    let out = Plan::new(&["export", "examples/kubevirt-lab.yml", "--provider", "kv"])
        .env("SITEPLAN_PROVIDERS", &file)
        .run();
    assert!(out.ok(), "{}", out.text());
    insta::assert_snapshot!("export_kubevirt_lab", out.stdout);

    let mut kinds = Vec::new();
    for document in out.stdout.split("---\n").filter(|d| !d.trim().is_empty()) {
        let object: serde_json::Value = serde_norway::from_str(document).expect("YAML");
        kinds.push(object["kind"].as_str().unwrap_or_default().to_string());
        let mut paths = Vec::new();
        leaf_paths("", &object, &mut paths);
        for path in paths {
            assert!(
                API_FIELDS.contains(&path.as_str()),
                "{} {} has `{path}`, a field its API does not define",
                object["kind"],
                object["metadata"]["name"]
            );
        }
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "DataVolume",
            "NetworkAttachmentDefinition",
            "Secret",
            "Secret",
            "VirtualMachine",
            "VirtualMachine"
        ]
    );

    // A plan with a pool entry (a host directory) is refused, naming it; so is a libvirt provider.
    let refused = Plan::new(&["export", "examples/lab.yml", "--provider", "kv"])
        .env("SITEPLAN_PROVIDERS", &file)
        .run();
    assert_eq!(refused.code(), Some(1));
    assert!(refused
        .stderr
        .contains("pool labpool: on KubeVirt a pool is a storage class"));
    // DNS records: a KubeVirt network has no DNS server of its own, neither a network of the
    // plan's nor another.
    let theirs = tmp.path().join("dns-default.yml");
    std::fs::write(&theirs, "yyy:\n type: dns\n net: default\n ip: 10.0.0.35\n").expect("plan");
    for (plan, record) in [
        (
            "tests/fixtures/kcli/dns/kcli_plan.yml".to_string(),
            "dns api:",
        ),
        (theirs.display().to_string(), "dns yyy:"),
    ] {
        let refused = Plan::new(&["export", &plan, "--provider", "kv"])
            .env("SITEPLAN_PROVIDERS", &file)
            .run();
        assert_eq!(refused.code(), Some(1), "{}", refused.text());
        assert!(
            refused.stderr.contains(&format!(
                "{record} a KubeVirt network has no DNS server of its own"
            )),
            "{}",
            refused.stderr
        );
    }
    let libvirt = Plan::new(&[
        "export",
        "examples/kubevirt-lab.yml",
        "--provider",
        "sandbox",
    ])
    .sandbox(&tmp.path().join("sandbox"))
    .run();
    assert_eq!(libvirt.code(), Some(1));
    assert!(
        libvirt.stderr.contains("prints Kubernetes objects"),
        "{}",
        libvirt.stderr
    );
}
