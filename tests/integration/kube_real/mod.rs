#![cfg(feature = "kubevirt")]

//! A real Kubernetes API server for the KubeVirt tests: kube-apiserver 1.20.2 with etcd and
//! kube-controller-manager (garbage collector, namespace controller), built and started by
//! `.ci/install-kube` and `.ci/kube`, whose admin kubeconfig `SITEPLAN_TEST_APISERVER` names (a
//! second cluster's `SITEPLAN_TEST_APISERVER_B`). Without it these tests say SKIPPED and pass.
//! (`SITEPLAN_TEST_KUBECONFIG` is another thing: a real cluster with KubeVirt, opt-in.)
//!
//! The server validates and prunes with KubeVirt's, CDI's and Multus's own CRDs
//! (`tests/fixtures/kubevirt-crds/`), installed once per run with two storage classes (`setup`). No
//! KubeVirt, CDI or Multus controller exists here: `controller.rs` plays the part of them that
//! siteplan depends on, through the real API, in each test's namespace, and `virt_api.rs` the
//! subresources virt-api serves (start, stop, restart, console), behind the server's own
//! aggregation layer. Each test has a namespace of its own, deleted when it ends.

mod controller;
pub use controller::FAILS_SNAPSHOTS;
mod setup;
mod virt_api;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};

/// The runtime the harness's clients and played controllers run on.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

pub fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    runtime().block_on(future)
}

/// The environment variable naming cluster `which` (0: the first, 1: the second).
fn variable(which: usize) -> &'static str {
    ["SITEPLAN_TEST_APISERVER", "SITEPLAN_TEST_APISERVER_B"][which]
}

/// An admin client of the cluster whose kubeconfig is `path`.
async fn client_for(path: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("the test cluster's kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("the test cluster's configuration");
    kube::Client::try_from(config).expect("a client of the test cluster")
}

/// A test's namespace on a real cluster, with KubeVirt's controllers played in it.
pub struct RealCluster {
    kubeconfig: PathBuf,
    client: kube::Client,
    namespace: String,
    controller: Option<tokio::task::JoinHandle<()>>,
}

impl RealCluster {
    /// The first test cluster, with a namespace for `test`; `None` (and a SKIPPED line) when
    /// none is named.
    pub fn start(test: &str) -> Option<RealCluster> {
        RealCluster::start_on(0, test)
    }

    /// Test cluster `which` (0 or 1), with a namespace for `test`.
    pub fn start_on(which: usize, test: &str) -> Option<RealCluster> {
        let Some(path) = std::env::var_os(variable(which)) else {
            crate::harness::report(&format!(
                "SKIPPED {test}: no real Kubernetes API server ({} is not set; .ci/run starts \
                 one with .ci/install-kube and .ci/kube)",
                variable(which)
            ));
            return None;
        };
        let kubeconfig = PathBuf::from(path);
        let client = block_on(client_for(&kubeconfig));
        block_on(prepared(which, &client));
        let namespace = format!(
            "{}-{}",
            test.replace('_', "-")
                .chars()
                .take(40)
                .collect::<String>()
                .trim_end_matches('-'),
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        block_on(async {
            Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": namespace}}))
                        .expect("namespace"),
                )
                .await
                .expect("the test's namespace")
        });
        let controller = runtime().spawn(controller::run(client.clone(), namespace.clone()));
        Some(RealCluster {
            kubeconfig,
            client,
            namespace,
            controller: Some(controller),
        })
    }

    /// The test's namespace.
    pub fn ns(&self) -> &str {
        &self.namespace
    }

    /// The admin kubeconfig (whose context's namespace is not the test's: providers name it).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// A kubeconfig, in `dir/file`, for this cluster with a token it does not know.
    pub fn kubeconfig_with_token(&self, dir: &Path, file: &str, token: &str) -> PathBuf {
        let text = std::fs::read_to_string(&self.kubeconfig).expect("kubeconfig");
        let known = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("token: "))
            .expect("the kubeconfig's token")
            .to_string();
        let path = dir.join(file);
        std::fs::write(&path, text.replace(&known, token)).expect("kubeconfig");
        path
    }

    /// The object at `path` (an API path), if it is there.
    pub fn object(&self, path: &str) -> Option<Value> {
        let request = http::Request::get(path).body(Vec::new()).expect("request");
        block_on(async {
            match self.client.request::<Value>(request).await {
                Ok(object) => Some(object),
                Err(kube::Error::Api(status)) if status.code == 404 => None,
                Err(e) => panic!("GET {path}: {e}"),
            }
        })
    }

    /// A request as another client (kubectl, a controller) would send it. The object written,
    /// or the API's `Status` for a refusal.
    pub fn send(
        &self,
        method: http::Method,
        path_and_query: &str,
        content_type: &str,
        body: Value,
    ) -> Result<Value, Box<kube::core::Status>> {
        let request = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(http::header::CONTENT_TYPE, content_type)
            .body(serde_json::to_vec(&body).expect("JSON"))
            .expect("request");
        block_on(async {
            match self.client.request::<Value>(request).await {
                Ok(object) => Ok(object),
                Err(kube::Error::Api(status)) => Err(status),
                Err(other) => panic!("the test cluster did not answer: {other}"),
            }
        })
    }

    /// Creates `object` at `collection` (an API path), as another tool would (no siteplan
    /// mark).
    pub fn seed(&self, collection: &str, object: Value) {
        self.send(http::Method::POST, collection, "application/json", object)
            .unwrap_or_else(|status| panic!("seeding {collection}: {status:?}"));
    }

    /// The paths of the objects of the kinds siteplan makes, and those KubeVirt makes for them,
    /// in the test's namespace, sorted.
    pub fn paths(&self) -> Vec<String> {
        let ns = &self.namespace;
        let collections = [
            format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines"),
            format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances"),
            format!("/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes"),
            format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions"),
            format!("/api/v1/namespaces/{ns}/secrets"),
            format!("/api/v1/namespaces/{ns}/persistentvolumeclaims"),
            format!("/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"),
        ];
        let mut paths = Vec::new();
        for collection in collections {
            let list = self.object(&collection).unwrap_or_default();
            for item in list["items"].as_array().into_iter().flatten() {
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                // Service-account tokens are the cluster's, in every namespace.
                if item["type"] == "kubernetes.io/service-account-token" {
                    continue;
                }
                paths.push(format!("{collection}/{name}"));
            }
        }
        paths.sort();
        paths
    }

    /// Where the server's audit log of writes is now: what `writes_since` counts from.
    pub fn audit_mark(&self) -> usize {
        self.audit().len()
    }

    /// The writes siteplan (by its user agent) made in the test's namespace since `mark` and
    /// the server accepted, as its audit log recorded them: `VERB path`.
    pub fn writes_since(&self, mark: usize) -> Vec<String> {
        let inside = format!("/namespaces/{}/", self.namespace);
        self.audit()
            .into_iter()
            .skip(mark)
            .filter(|e| {
                e["userAgent"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("siteplan/"))
                    && e["responseStatus"]["code"]
                        .as_u64()
                        .is_some_and(|c| (200..300).contains(&c))
            })
            .filter_map(|e| {
                let uri = e["requestURI"].as_str()?;
                let path = uri.split('?').next().unwrap_or(uri);
                (path.contains(&inside) || path.ends_with(&inside[..inside.len() - 1]))
                    .then(|| format!("{} {path}", e["verb"].as_str().unwrap_or_default()))
            })
            .collect()
    }

    /// The server's audit log (`.ci/kube` writes it beside the kubeconfig), one event a line.
    fn audit(&self) -> Vec<Value> {
        let log = self.kubeconfig.with_file_name("audit.log");
        // Only the events the server finished writing.
        std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()))
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits up to `limit` for `check` to hold of the cluster.
    pub fn wait_for(&self, limit: Duration, what: &str, check: impl Fn(&RealCluster) -> bool) {
        assert!(
            self.waited(limit, check),
            "{what}: not within {limit:?}; the namespace holds {:?}",
            self.paths()
        );
    }

    /// Whether `check` holds of the cluster within `limit`.
    pub fn waited(&self, limit: Duration, check: impl Fn(&RealCluster) -> bool) -> bool {
        let start = std::time::Instant::now();
        while !check(self) {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.abort();
        }
        let client = self.client.clone();
        let namespace = self.namespace.clone();
        // The namespace controller removes what is left in it.
        let _ = block_on(async move {
            Api::<k8s_openapi::api::core::v1::Namespace>::all(client)
                .delete(&namespace, &Default::default())
                .await
        });
    }
}

/// Prepares, once per run and cluster, what a cluster with KubeVirt offers (`setup`) and the
/// played virt-api (`virt_api`).
async fn prepared(which: usize, client: &kube::Client) {
    static DONE: [tokio::sync::OnceCell<()>; 2] = [
        tokio::sync::OnceCell::const_new(),
        tokio::sync::OnceCell::const_new(),
    ];
    DONE[which]
        .get_or_init(|| async {
            setup::kubevirt_installed(client).await;
            let addr = virt_api::serve(client.clone()).await;
            virt_api::register(client, addr).await;
        })
        .await;
}
