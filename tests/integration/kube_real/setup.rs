//! What a cluster with KubeVirt offers before any test runs, installed on a bare
//! kube-apiserver: KubeVirt's, CDI's and Multus's CRDs (`tests/fixtures/kubevirt-crds/`), a
//! node with 8 CPUs and 16 GiB (as a kubelet registers one) and two storage classes
//! (`standard`, the default, and `fast`). Idempotent: server-side apply, and a node that exists
//! is kept. The benchmark includes this file too, so it can start from a fresh server.

use std::path::Path;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

/// Installs the CRDs, the node and the storage classes, and waits until the CRDs are served.
pub async fn kubevirt_installed(client: &kube::Client) {
    crds(client).await;
    node(client).await;
    storage_classes(client).await;
}

async fn crds(client: &kube::Client) {
    let crd = ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    let crds = Api::<DynamicObject>::all_with(client.clone(), &crd);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kubevirt-crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the CRDs") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("a CRD");
        let object: Value = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).expect("CRD JSON")
        } else {
            serde_norway::from_str(&text).expect("CRD YAML")
        };
        let name = object["metadata"]["name"]
            .as_str()
            .expect("name")
            .to_string();
        crds.patch(
            &name,
            &PatchParams::apply("siteplan-tests").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("installing {name}: {e}"));
        names.push(name);
    }
    for name in names {
        for _ in 0..100 {
            let got = crds.get(&name).await.expect("the CRD");
            let established = got.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Established" && c["status"] == "True");
            if established {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A node, as a kubelet registers one, with what it offers: the cluster's capacity.
async fn node(client: &kube::Client) {
    let nodes = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone());
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "played-node"}});
    match nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(node).expect("node"),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("the played node: {e}"),
    }
    let offered = json!({"cpu": "8", "memory": "16Gi", "pods": "110"});
    nodes
        .patch_status(
            "played-node",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"capacity": offered, "allocatable": offered}})),
        )
        .await
        .expect("the played node's status");
}

async fn storage_classes(client: &kube::Client) {
    let classes = Api::<k8s_openapi::api::storage::v1::StorageClass>::all(client.clone());
    for (name, default) in [("standard", true), ("fast", false)] {
        let class = json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": name, "annotations": {
                "storageclass.kubernetes.io/is-default-class": default.to_string()}},
            "provisioner": "siteplan.test/played-cdi", "allowVolumeExpansion": true});
        classes
            .patch(
                name,
                &PatchParams::apply("siteplan-tests").force(),
                &Patch::Apply(&class),
            )
            .await
            .unwrap_or_else(|e| panic!("storage class {name}: {e}"));
    }
}
