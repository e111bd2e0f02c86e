//! A stand-in Kubernetes API server, for the KubeVirt backend's tests: no API server can be
//! installed on these machines. It speaks HTTP on 127.0.0.1 to a real `kube::Client` (the `plan`
//! binary's, over TCP), and behaves as the real one does for what siteplan asks: discovery
//! (`/version`, `/api`, `/apis`), and get and list of any resource by its path, with label
//! selectors, `resourceVersion`, and `Status` bodies for errors. Objects are JSON values kept in
//! memory, by path; a test seeds the ones the cluster has (namespaces, storage classes).
//!
//! Writes: server-side apply (`PATCH` with `fieldManager`, creating what is not there), and
//! `DELETE`. An apply merges the object into what is there, and removes the fields the same
//! manager set last time and sets no more, leaving other managers' fields and `status` alone
//! (lists are one field each). Deleting an object deletes what it owns. A Secret's `stringData` is folded into base64 `data`, as the real
//! server does. And what KubeVirt and CDI would do at once: a VirtualMachine's
//! `status.printableStatus` follows its `runStrategy` and a running one has an instance with
//! addresses; its disk templates become DataVolumes, and DataVolumes claims, that it owns; a
//! DataVolume's `status.phase` goes from ImportScheduled through ImportInProgress to Succeeded,
//! a step at each request served.
//!
//! It lives with the tests, not in the product.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

/// What the stand-in cluster serves.
#[derive(Clone)]
pub struct Cluster {
    /// KubeVirt, CDI and Multus are installed (their API groups are served).
    pub kubevirt: bool,
    pub namespaces: Vec<&'static str>,
    /// Storage classes, and which one is the default.
    pub storage_classes: Vec<(&'static str, bool)>,
    /// Objects, by name, whose applies an admission webhook rejects (422), as a cluster's
    /// policy might.
    pub rejected: Vec<&'static str>,
    /// How long each request takes, as a cluster's round trip would.
    pub latency: std::time::Duration,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            kubevirt: true,
            namespaces: vec!["default", "lab"],
            storage_classes: vec![("standard", true), ("fast", false)],
            rejected: Vec::new(),
            latency: std::time::Duration::ZERO,
        }
    }
}

#[derive(Default)]
struct Store {
    /// Objects by their path (`/api/v1/namespaces/lab`), without a trailing slash.
    objects: BTreeMap<String, Value>,
    version: u64,
    kubevirt: bool,
    rejected: Vec<&'static str>,
    latency: std::time::Duration,
    /// The field paths each manager set last, by object path and manager (server-side apply).
    managed: BTreeMap<(String, String), Vec<Vec<String>>>,
    /// Which object each object belongs to (ownerReferences), by path: deleted with it.
    owners: BTreeMap<String, String>,
    /// Every request, as `METHOD path`, for tests that count them.
    requests: Vec<String>,
}

pub struct StandIn {
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    /// Starts serving on a free port of 127.0.0.1, on a thread of its own.
    pub fn start(cluster: Cluster) -> StandIn {
        let store = Arc::new(Mutex::new(Store {
            kubevirt: cluster.kubevirt,
            rejected: cluster.rejected.clone(),
            latency: cluster.latency,
            ..Store::default()
        }));
        {
            let mut s = store.lock().unwrap();
            for ns in &cluster.namespaces {
                let path = format!("/api/v1/namespaces/{ns}");
                s.insert(
                    &path,
                    json!({"apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns}, "status": {"phase": "Active"}}),
                );
            }
            for (name, default) in &cluster.storage_classes {
                let mut annotations = serde_json::Map::new();
                if *default {
                    annotations.insert(
                        "storageclass.kubernetes.io/is-default-class".into(),
                        "true".into(),
                    );
                }
                let path = format!("/apis/storage.k8s.io/v1/storageclasses/{name}");
                s.insert(
                    &path,
                    json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": name, "annotations": annotations},
                    "provisioner": "stand-in", "allowVolumeExpansion": true}),
                );
            }
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let shared = store.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new().fallback(handle).with_state(shared);
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await;
            });
        });
        StandIn {
            addr,
            store,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A kubeconfig that points at the stand-in, with `namespace` as its context's.
    pub fn kubeconfig(&self, dir: &Path, namespace: &str) -> PathBuf {
        StandIn::kubeconfig_for(dir, "kubeconfig", &self.addr.to_string(), namespace)
    }

    /// A kubeconfig, in `dir/file`, for a server at `addr` (which may be nothing at all).
    pub fn kubeconfig_for(dir: &Path, file: &str, addr: &str, namespace: &str) -> PathBuf {
        std::fs::create_dir_all(dir).expect("kubeconfig directory");
        let path = dir.join(file);
        let text = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: standin\n\
             clusters:\n- name: standin\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: standin\n  context:\n    cluster: standin\n    user: tester\n    namespace: {namespace}\n\
             users:\n- name: tester\n  user: {{}}\n"
        );
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    /// Puts an object there, as another tool would (no siteplan mark).
    pub fn seed(&self, path: &str, object: Value) {
        self.store.lock().unwrap().insert(path, object);
    }

    /// The cluster's policy changes: nothing is rejected any more.
    pub fn allow_all(&self) {
        self.store.lock().unwrap().rejected.clear();
    }

    /// The paths of the objects there now.
    pub fn paths(&self) -> Vec<String> {
        self.store.lock().unwrap().objects.keys().cloned().collect()
    }

    /// An object, if it is there.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.store.lock().unwrap().objects.get(path).cloned()
    }

    /// The requests served so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.store.lock().unwrap().requests.clone()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Store {
    fn insert(&mut self, path: &str, mut object: Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = self.version.to_string().into();
        self.objects.insert(path.to_string(), object);
    }
}

/// A `Status` body, as the API server sends for errors.
fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16()});
    (code, Json(body)).into_response()
}

/// What the API server and the controllers do to an object as it is stored.
fn controllers(object: &mut Value) {
    use base64::Engine;
    match object["kind"].as_str() {
        Some("Secret") => {
            if let Some(strings) = object["stringData"].as_object().cloned() {
                let mut data = object["data"].as_object().cloned().unwrap_or_default();
                for (key, value) in strings {
                    let text = value.as_str().unwrap_or_default();
                    data.insert(
                        key,
                        base64::engine::general_purpose::STANDARD
                            .encode(text)
                            .into(),
                    );
                }
                object["data"] = Value::Object(data);
                if let Some(map) = object.as_object_mut() {
                    map.remove("stringData");
                }
            }
        }
        Some("VirtualMachine") => {
            let running = object["spec"]["runStrategy"].as_str() == Some("Always");
            object["status"]["printableStatus"] =
                if running { "Running" } else { "Stopped" }.into();
            object["status"]["ready"] = running.into();
        }
        // CDI imports: the phase moves on at each request the stand-in serves (`progress`).
        Some("DataVolume") if object["status"]["phase"].is_null() => {
            object["status"]["phase"] = "ImportScheduled".into()
        }
        _ => {}
    }
}

/// The leaf paths of an applied object (a list is a leaf), identity left out.
fn leaves(prefix: &[String], value: &Value, out: &mut Vec<Vec<String>>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let mut path = prefix.to_vec();
                path.push(key.clone());
                let identity = matches!(
                    path.iter()
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .as_slice(),
                    ["apiVersion"] | ["kind"] | ["metadata", "name"] | ["metadata", "namespace"]
                );
                if !identity {
                    leaves(&path, v, out);
                }
            }
        }
        _ => out.push(prefix.to_vec()),
    }
}

fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = object;
    for part in parents {
        match node.get_mut(part) {
            Some(next) => node = next,
            None => return,
        }
    }
    if let Some(map) = node.as_object_mut() {
        map.remove(last);
    }
}

/// Maps merge key by key; anything else is replaced.
fn merge(into: &mut Value, from: &Value) {
    match (into, from) {
        (Value::Object(target), Value::Object(source)) => {
            for (key, value) in source {
                merge(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
        (target, source) => *target = source.clone(),
    }
}

/// CDI's and KubeVirt's part for disks: a VirtualMachine's disk templates become DataVolumes
/// it owns, and every DataVolume a PersistentVolumeClaim of its size that it owns.
fn disks(store: &mut Store, path: &str, object: &Value) {
    let Some(namespace) = object["metadata"]["namespace"].as_str() else {
        return;
    };
    let claim_for = |store: &mut Store, dv: &str, spec: &Value, owner: &str| {
        let claim = format!("/api/v1/namespaces/{namespace}/persistentvolumeclaims/{dv}");
        if !store.objects.contains_key(&claim) {
            let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": dv, "namespace": namespace},
                "spec": {"resources": {"requests": {"storage": spec["storage"]["resources"]["requests"]["storage"]}},
                    "storageClassName": spec["storage"]["storageClassName"]},
                "status": {"phase": "Bound"}});
            store.insert(&claim, pvc);
            store.owners.insert(claim, owner.to_string());
        }
    };
    match object["kind"].as_str() {
        Some("VirtualMachine") => {
            for template in object["spec"]["dataVolumeTemplates"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(name) = template["metadata"]["name"].as_str() else {
                    continue;
                };
                let dv = format!(
                    "/apis/cdi.kubevirt.io/v1beta1/namespaces/{namespace}/datavolumes/{name}"
                );
                if !store.objects.contains_key(&dv) {
                    let made = json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": template["spec"], "status": {"phase": "Succeeded"}});
                    store.insert(&dv, made);
                    store.owners.insert(dv.clone(), path.to_string());
                }
                claim_for(store, name, &template["spec"], &dv);
            }
        }
        Some("DataVolume") => {
            if let Some(name) = object["metadata"]["name"].as_str() {
                claim_for(store, name, &object["spec"], path);
            }
        }
        _ => {}
    }
}

/// Deletes what `path` owns, and what that owns.
fn collect_garbage(store: &mut Store, path: &str) {
    let owned: Vec<String> = store
        .owners
        .iter()
        .filter(|(_, owner)| owner.as_str() == path)
        .map(|(p, _)| p.clone())
        .collect();
    for child in owned {
        store.owners.remove(&child);
        collect_garbage(store, &child);
        store.objects.remove(&child);
    }
}

/// KubeVirt's part: a running VirtualMachine has an instance, whose status gives each
/// interface's MAC, and the pod network's interface an address (10.244.0.N, N from the VM's
/// uid); a halted one has none.
fn instance(store: &mut Store, path: &str, vm: &Value) {
    if vm["kind"].as_str() != Some("VirtualMachine") {
        return;
    }
    let vmi_path = path.replace("/virtualmachines/", "/virtualmachineinstances/");
    if vm["spec"]["runStrategy"].as_str() != Some("Always") {
        store.objects.remove(&vmi_path);
        return;
    }
    let n: u64 = vm["metadata"]["uid"]
        .as_str()
        .and_then(|u| u.trim_start_matches("uid-").parse().ok())
        .unwrap_or(1);
    let pod_networks: Vec<&str> = vm["spec"]["template"]["spec"]["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n.get("pod").is_some())
        .filter_map(|n| n["name"].as_str())
        .collect();
    let interfaces: Vec<Value> = vm["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let name = i["name"].as_str().unwrap_or_default();
            let mut status = json!({"name": name, "mac": i["macAddress"]});
            if pod_networks.contains(&name) {
                let ip = format!("10.244.0.{}", 10 + n % 200);
                status["ipAddress"] = ip.clone().into();
                status["ipAddresses"] = json!([ip]);
            }
            status
        })
        .collect();
    let name = vm["metadata"]["name"].clone();
    let vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": vm["metadata"]["namespace"]},
        "status": {"phase": "Running", "interfaces": interfaces}});
    store.insert(&vmi_path, vmi);
}

/// The controllers' loop, one step per request: a DataVolume goes from ImportScheduled through
/// ImportInProgress to Succeeded.
fn progress(store: &mut Store) {
    for object in store.objects.values_mut() {
        if object["kind"] != "DataVolume" {
            continue;
        }
        let next = match object["status"]["phase"].as_str() {
            Some("ImportScheduled") => "ImportInProgress",
            Some("ImportInProgress") => "Succeeded",
            _ => continue,
        };
        object["status"]["phase"] = next.into();
    }
}

/// `app=web,tier=db`: equality terms only, which is all siteplan sends.
fn selected(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| {
        let (key, want) = term.split_once('=').unwrap_or((term, ""));
        let want = want.trim_start_matches('=');
        object["metadata"]["labels"][key.trim()].as_str() == Some(want.trim())
    })
}

async fn handle(
    State(store): State<Arc<Mutex<Store>>>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let latency = store.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut store = store.lock().unwrap();
    store.requests.push(format!("{method} {path}"));
    let name = path.rsplit('/').next().unwrap_or_default().to_string();
    if method == Method::PATCH && store.rejected.contains(&name.as_str()) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("admission webhook denied the request: {name} is not allowed here"),
        );
    }
    match method {
        Method::PATCH => {
            if !query.contains_key("fieldManager") {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "fieldManager is required for apply patch".into(),
                );
            }
            let Ok(mut applied) = serde_json::from_slice::<Value>(&body) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not JSON".into(),
                );
            };
            if applied["metadata"]["name"].as_str() != Some(name.as_str()) {
                return status(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("metadata.name must be {name}"),
                );
            }
            let manager = query.get("fieldManager").cloned().unwrap_or_default();
            let existing = store.objects.get(&path).cloned();
            let mut fields = Vec::new();
            leaves(&[], &applied, &mut fields);
            let mut merged = match &existing {
                Some(existing) => {
                    // Fields this manager set before and sets no more are removed; the rest
                    // of what the object holds (other managers', status) stays.
                    let mut kept = existing.clone();
                    let before = store.managed.get(&(path.clone(), manager.clone())).cloned();
                    for gone in before
                        .unwrap_or_default()
                        .iter()
                        .filter(|f| !fields.contains(f))
                    {
                        remove(&mut kept, gone);
                    }
                    merge(&mut kept, &applied);
                    kept
                }
                None => {
                    applied["metadata"]["uid"] = format!("uid-{}", store.version + 1).into();
                    applied["metadata"]["creationTimestamp"] = "2026-11-24T00:00:00Z".into();
                    applied
                }
            };
            store.managed.insert((path.clone(), manager), fields);
            controllers(&mut merged);
            instance(&mut store, &path, &merged);
            disks(&mut store, &path, &merged);
            store.insert(&path, merged);
            let stored = store.objects.get(&path).cloned().unwrap_or_default();
            let code = if existing.is_some() {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            return (code, Json(stored)).into_response();
        }
        Method::DELETE => {
            let vmi = path.replace("/virtualmachines/", "/virtualmachineinstances/");
            if vmi != path {
                store.objects.remove(&vmi);
            }
            collect_garbage(&mut store, &path);
            return match store.objects.remove(&path) {
                Some(gone) => Json(gone).into_response(),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("\"{name}\" not found"),
                ),
            };
        }
        Method::GET => progress(&mut store),
        other => {
            return status(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("the stand-in does not serve {other}"),
            )
        }
    }
    match path.as_str() {
        "/version" => {
            return Json(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-standin",
                "platform": "linux/amd64"}),
            )
            .into_response()
        }
        "/api" => {
            return Json(json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": []}))
            .into_response()
        }
        "/apis" => {
            let mut groups = vec![("storage.k8s.io", "v1")];
            if store.kubevirt {
                groups.extend([
                    ("kubevirt.io", "v1"),
                    ("cdi.kubevirt.io", "v1beta1"),
                    ("k8s.cni.cncf.io", "v1"),
                ]);
            }
            let groups: Vec<Value> = groups
                .into_iter()
                .map(|(name, version)| {
                    let gv =
                        json!({"groupVersion": format!("{name}/{version}"), "version": version});
                    json!({"name": name, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            return Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
                .into_response();
        }
        _ => {}
    }
    if let Some(object) = store.objects.get(&path) {
        return Json(object.clone()).into_response();
    }
    // A list: the objects one level below this path.
    let prefix = format!("{path}/");
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(p, _)| {
            p.strip_prefix(&prefix)
                .is_some_and(|rest| !rest.contains('/'))
        })
        .map(|(_, o)| o.clone())
        .filter(|o| selected(o, query.get("labelSelector")))
        .collect();
    let segments: Vec<&str> = path.split('/').collect();
    let is_collection = matches!(
        segments.as_slice(),
        ["", "api", "v1", _]
            | ["", "api", "v1", "namespaces", _, _]
            | ["", "apis", _, _, _]
            | ["", "apis", _, _, "namespaces", _, _]
    );
    if is_collection {
        let version = store.version.to_string();
        return Json(json!({"kind": "List", "apiVersion": "v1",
            "metadata": {"resourceVersion": version}, "items": items}))
        .into_response();
    }
    let name = segments.last().copied().unwrap_or_default();
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("\"{name}\" not found"),
    )
}
