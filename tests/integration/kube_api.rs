//! A stand-in Kubernetes API server, for the KubeVirt backend's tests: no API server can be
//! installed on these machines. It speaks HTTP on 127.0.0.1 to a real `kube::Client` (the `plan`
//! binary's, over TCP), and behaves as the real one does for what siteplan asks: discovery
//! (`/version`, `/api`, `/apis`), and get and list of any resource by its path, with label
//! selectors, `resourceVersion`, and `Status` bodies for errors. Objects are JSON values kept in
//! memory, by path; a test seeds the ones the cluster has (namespaces, storage classes).
//!
//! Writes: server-side apply (`PATCH` with `fieldManager`, creating what is not there), JSON
//! merge patches, `POST` (create; 409 `AlreadyExists`), `PUT` (replace) and `DELETE` (with a
//! uid precondition, 409 when it does not hold). Each
//! manager owns the fields it set (lists are one field each). An apply merges the object into
//! what is there and removes the fields the same manager set last time and sets no more,
//! leaving other managers' fields and `status` alone; changing a field another manager owns is
//! a 409 `Conflict` unless the apply is forced, which takes the field over. An update owns
//! what it changed. A write that names a stale `resourceVersion` is a 409 `Conflict`.
//! Deleting an object deletes what it owns. A Secret's `stringData` is folded into base64
//! `data`, as the real server does. And what KubeVirt and CDI would do at once: a VirtualMachine's
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
                let app = axum::Router::new()
                    .route(
                        "/apis/subresources.kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}/console",
                        axum::routing::get(console),
                    )
                    .fallback(handle)
                    .with_state(shared);
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

    /// A request as another client (kubectl, a controller) would send it: over HTTP, through a
    /// real `kube::Client`. The object written, or the API's `Status` for a refusal.
    pub fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Value,
    ) -> Result<Value, Box<kube::core::Status>> {
        let url = format!("http://{}", self.addr);
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(axum::http::header::CONTENT_TYPE, content_type)
            .body(serde_json::to_vec(&body).expect("JSON"))
            .expect("request");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let config = kube::Config::new(url.parse().expect("url"));
            let client = kube::Client::try_from(config).expect("client");
            match client.request::<Value>(request).await {
                Ok(object) => Ok(object),
                Err(kube::Error::Api(status)) => Err(status),
                Err(other) => panic!("the stand-in did not answer: {other}"),
            }
        })
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

/// The 404 for an object of this name.
fn not_found(name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("\"{name}\" not found"),
    )
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
                    ["apiVersion"]
                        | ["kind"]
                        | ["metadata", "name"]
                        | ["metadata", "namespace"]
                        | ["metadata", "resourceVersion"]
                        | ["metadata", "uid"]
                        | ["metadata", "creationTimestamp"]
                        | ["metadata", "managedFields"]
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

/// RFC 7386: maps merge key by key, `null` removes a key, anything else is replaced.
fn merge_patch_into(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(target) = target.as_object_mut() {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch_into(target.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn at<'v>(value: &'v Value, path: &[String]) -> &'v Value {
    path.iter().fold(value, |node, part| &node[part.as_str()])
}

/// `virtualmachines.kubevirt.io "kv1"`, as the API server names an object in its messages.
fn qualified(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let name = segments.last().copied().unwrap_or_default();
    let resource = segments.iter().rev().nth(1).copied().unwrap_or_default();
    match segments.as_slice() {
        ["", "apis", group, ..] => format!("{resource}.{group} \"{name}\""),
        _ => format!("{resource} \"{name}\""),
    }
}

/// The body as JSON, or why not.
fn parse(body: &Bytes) -> Result<Value, String> {
    serde_json::from_slice::<Value>(body).map_err(|e| format!("the body is not JSON: {e}"))
}

/// A write that names a `resourceVersion` other than the object's is refused (optimistic
/// concurrency), as the API server does.
fn stale(existing: &Value, sent: &Value, path: &str) -> Option<Response> {
    let sent = sent["metadata"]["resourceVersion"].as_str()?;
    (existing["metadata"]["resourceVersion"].as_str() != Some(sent)).then(|| {
        status(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}: the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(path)
            ),
        )
    })
}

/// Stores a written object, after what the API server and the controllers do to it.
fn store_written(store: &mut Store, path: &str, mut object: Value, code: StatusCode) -> Response {
    controllers(&mut object);
    instance(store, path, &mut object);
    disks(store, path, &object);
    store.insert(path, object);
    let stored = store.objects.get(path).cloned().unwrap_or_default();
    (code, Json(stored)).into_response()
}

/// An update by `manager` (create, replace, merge patch) owns the fields it set to a new value;
/// the managers that owned them before lose them, and fields no longer there are nobody's.
fn take_fields(store: &mut Store, path: &str, manager: &str, before: &Value, after: &Value) {
    let mut now = Vec::new();
    leaves(&[], after, &mut now);
    let changed: Vec<Vec<String>> = now
        .iter()
        .filter(|f| at(before, f) != at(after, f))
        .cloned()
        .collect();
    for ((p, _), owned) in store.managed.iter_mut().filter(|((p, _), _)| p == path) {
        let _ = p;
        owned.retain(|f| now.contains(f) && !changed.contains(f));
    }
    let mine = store
        .managed
        .entry((path.to_string(), manager.to_string()))
        .or_default();
    for field in changed {
        if !mine.contains(&field) {
            mine.push(field);
        }
    }
}

/// Server-side apply: the object is merged into what is there; the fields this manager set
/// last time and sets no more are removed; a field another manager owns and this apply would
/// change is a 409 conflict, unless forced, which takes it over.
fn apply(
    store: &mut Store,
    path: &str,
    name: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let Some(manager) = query.get("fieldManager").cloned() else {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "fieldManager is required for apply patch".into(),
        );
    };
    let mut applied = match parse(body) {
        Ok(applied) => applied,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    if applied["metadata"]["name"].as_str() != Some(name) {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("metadata.name must be {name}"),
        );
    }
    let force = query.get("force").map(String::as_str) == Some("true");
    let existing = store.objects.get(path).cloned();
    let mut fields = Vec::new();
    leaves(&[], &applied, &mut fields);
    let merged = match &existing {
        Some(existing) => {
            if let Some(refused) = stale(existing, &applied, path) {
                return refused;
            }
            let conflicts: Vec<(String, Vec<String>)> = store
                .managed
                .iter()
                .filter(|((p, other), _)| p == path && *other != manager)
                .flat_map(|((_, other), owned)| owned.iter().map(move |f| (other.clone(), f)))
                .filter(|(_, f)| fields.contains(f) && at(existing, f) != at(&applied, f))
                .map(|(other, f)| (other, f.clone()))
                .collect();
            if !conflicts.is_empty() && !force {
                let named: Vec<String> = conflicts
                    .iter()
                    .map(|(other, f)| format!("conflict with \"{other}\": .{}", f.join(".")))
                    .collect();
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflict{}: {}",
                        conflicts.len(),
                        if conflicts.len() == 1 { "" } else { "s" },
                        named.join("; ")
                    ),
                );
            }
            for ((p, other), owned) in store.managed.iter_mut() {
                if p == path && *other != manager {
                    owned.retain(|f| !conflicts.iter().any(|(_, c)| c == f));
                }
            }
            // Fields this manager set before and sets no more are removed, unless another
            // manager owns them too; the rest of what the object holds stays.
            let mut kept = existing.clone();
            let before = store
                .managed
                .get(&(path.to_string(), manager.clone()))
                .cloned()
                .unwrap_or_default();
            for gone in before.iter().filter(|f| !fields.contains(f)) {
                let shared = store.managed.iter().any(|((p, other), owned)| {
                    p == path && *other != manager && owned.contains(gone)
                });
                if !shared {
                    remove(&mut kept, gone);
                }
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
    store.managed.insert((path.to_string(), manager), fields);
    let code = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    store_written(store, path, merged, code)
}

/// A JSON merge patch (RFC 7386), as `kubectl patch --type merge` or `kubectl edit` send.
fn merge_patch(
    store: &mut Store,
    path: &str,
    name: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let patch = match parse(body) {
        Ok(patch) => patch,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    let Some(existing) = store.objects.get(path).cloned() else {
        return not_found(name);
    };
    if let Some(refused) = stale(&existing, &patch, path) {
        return refused;
    }
    let mut patched = existing.clone();
    merge_patch_into(&mut patched, &patch);
    if let Some(map) = patched["metadata"].as_object_mut() {
        map.remove("resourceVersion");
    }
    let manager = query.get("fieldManager").map_or("unknown", String::as_str);
    take_fields(store, path, manager, &existing, &patched);
    store_written(store, path, patched, StatusCode::OK)
}

/// `POST` to a collection: the object is made, or 409 if one of its name is there.
fn create(
    store: &mut Store,
    collection: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let mut object = match parse(body) {
        Ok(object) => object,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    let Some(name) = object["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value: name or generateName is required".into(),
        );
    };
    let path = format!("{collection}/{name}");
    if store.objects.contains_key(&path) {
        return status(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{} already exists", qualified(&path)),
        );
    }
    object["metadata"]["uid"] = format!("uid-{}", store.version + 1).into();
    object["metadata"]["creationTimestamp"] = "2026-11-24T00:00:00Z".into();
    let manager = query.get("fieldManager").map_or("unknown", String::as_str);
    take_fields(store, &path, manager, &Value::Null, &object);
    store_written(store, &path, object, StatusCode::CREATED)
}

/// `PUT`: the whole object replaced; with a `resourceVersion` that is not the object's, 409.
fn replace(
    store: &mut Store,
    path: &str,
    name: &str,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Response {
    let mut object = match parse(body) {
        Ok(object) => object,
        Err(why) => return status(StatusCode::BAD_REQUEST, "BadRequest", why),
    };
    let Some(existing) = store.objects.get(path).cloned() else {
        return not_found(name);
    };
    if let Some(refused) = stale(&existing, &object, path) {
        return refused;
    }
    // The server keeps what a client cannot replace: identity, and status (a subresource).
    for key in ["uid", "creationTimestamp"] {
        object["metadata"][key] = existing["metadata"][key].clone();
    }
    if !existing["status"].is_null() {
        object["status"] = existing["status"].clone();
    }
    let manager = query.get("fieldManager").map_or("unknown", String::as_str);
    take_fields(store, path, manager, &existing, &object);
    store_written(store, path, object, StatusCode::OK)
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

/// KubeVirt's part: a running VirtualMachine has an instance, made from its template when it
/// starts, whose status gives each interface's MAC, and the pod network's interface an
/// address (10.244.0.N, N from the VM's uid); a halted one has none. A template that changes
/// while it runs reaches the instance only for what KubeVirt updates live (CPU sockets up to
/// `maxSockets`, memory up to `maxGuest`); anything else sets the VM's `RestartRequired`
/// condition until the instance is made again.
fn instance(store: &mut Store, path: &str, vm: &mut Value) {
    if vm["kind"].as_str() != Some("VirtualMachine") {
        return;
    }
    let vmi_path = path.replace("/virtualmachines/", "/virtualmachineinstances/");
    if vm["spec"]["runStrategy"].as_str() != Some("Always") {
        store.objects.remove(&vmi_path);
        set_restart_required(vm, false);
        return;
    }
    let template = vm["spec"]["template"]["spec"].clone();
    let running = match store.objects.get(&vmi_path) {
        Some(vmi) => {
            let mut running = vmi["spec"].clone();
            for (field, most) in [
                (["cpu", "sockets"], ["cpu", "maxSockets"]),
                (["memory", "guest"], ["memory", "maxGuest"]),
            ] {
                let wanted = &template["domain"][field[0]][field[1]];
                let headroom = &running["domain"][most[0]][most[1]];
                if !wanted.is_null()
                    && !headroom.is_null()
                    && quantity(wanted) <= quantity(headroom)
                {
                    running["domain"][field[0]][field[1]] = wanted.clone();
                }
            }
            running
        }
        None => template.clone(),
    };
    set_restart_required(vm, running != template);
    let n: u64 = vm["metadata"]["uid"]
        .as_str()
        .and_then(|u| u.trim_start_matches("uid-").parse().ok())
        .unwrap_or(1);
    let pod_networks: Vec<&str> = running["networks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n.get("pod").is_some())
        .filter_map(|n| n["name"].as_str())
        .collect();
    let interfaces: Vec<Value> = running["domain"]["devices"]["interfaces"]
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
        "spec": running,
        "status": {"phase": "Running", "interfaces": interfaces}});
    store.insert(&vmi_path, vmi);
}

/// KubeVirt's `console` subresource: a websocket speaking `plain.kubevirt.io` to a running
/// instance's serial port, where a getty answers each Enter with a login prompt.
async fn console(
    State(store): State<Arc<Mutex<Store>>>,
    axum::extract::Path((namespace, name)): axum::extract::Path<(String, String)>,
    headers: axum::http::HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let vmi = format!("/apis/kubevirt.io/v1/namespaces/{namespace}/virtualmachineinstances/{name}");
    if !store.lock().unwrap().objects.contains_key(&vmi) {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("virtualmachineinstance.kubevirt.io \"{name}\" not found"),
        );
    }
    let offered = headers
        .get(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !offered.split(',').any(|p| p.trim() == "plain.kubevirt.io") {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the console speaks plain.kubevirt.io".into(),
        );
    }
    upgrade
        .protocols(["plain.kubevirt.io"])
        .on_upgrade(move |mut socket| async move {
            use axum::extract::ws::Message;
            while let Some(Ok(message)) = socket.recv().await {
                let typed = match message {
                    Message::Binary(bytes) => bytes.to_vec(),
                    Message::Text(text) => text.as_bytes().to_vec(),
                    Message::Close(_) => break,
                    _ => continue,
                };
                if typed.contains(&b'\r') {
                    let prompt =
                        format!("\r\nDebian GNU/Linux 12 {name} ttyS0\r\n\r\n{name} login: ");
                    if socket
                        .send(Message::Binary(prompt.into_bytes().into()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        })
}

/// `2Gi`, `512Mi` or a plain number, in one unit, to compare.
fn quantity(value: &Value) -> u64 {
    if let Some(n) = value.as_u64() {
        return n;
    }
    let text = value.as_str().unwrap_or_default();
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = digits.parse().unwrap_or(0);
    match unit {
        "Gi" => n << 30,
        "Mi" => n << 20,
        "Ki" => n << 10,
        _ => n,
    }
}

fn set_restart_required(vm: &mut Value, required: bool) {
    let mut conditions: Vec<Value> = vm["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "RestartRequired")
        .collect();
    if required {
        conditions.push(json!({"type": "RestartRequired", "status": "True",
            "message": "a non-live-updatable field was changed in the template spec"}));
    }
    vm["status"]["conditions"] = Value::Array(conditions);
}

/// KubeVirt's `start`, `stop` and `restart` subresources of a VirtualMachine (what `virtctl`
/// sends): start and stop set its `runStrategy` (an update by KubeVirt's API server, which
/// takes the field), restart makes its instance again from the template.
fn vm_subresource(store: &mut Store, path: &str) -> Option<Response> {
    let rest = path.strip_prefix("/apis/subresources.kubevirt.io/v1/")?;
    let (vm_rest, action) = rest.rsplit_once('/')?;
    let vm_path = format!("/apis/kubevirt.io/v1/{vm_rest}");
    let Some(mut vm) = store.objects.get(&vm_path).cloned() else {
        return Some(status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("{} not found", qualified(&vm_path)),
        ));
    };
    let before = vm.clone();
    match action {
        "start" => vm["spec"]["runStrategy"] = "Always".into(),
        "stop" => vm["spec"]["runStrategy"] = "Halted".into(),
        "restart" => {
            let vmi_path = vm_path.replace("/virtualmachines/", "/virtualmachineinstances/");
            store.objects.remove(&vmi_path);
        }
        other => {
            return Some(status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the stand-in has no subresource {other}"),
            ))
        }
    }
    take_fields(store, &vm_path, "virt-api", &before, &vm);
    controllers(&mut vm);
    instance(store, &vm_path, &mut vm);
    store.insert(&vm_path, vm);
    Some(StatusCode::ACCEPTED.into_response())
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
    headers: axum::http::HeaderMap,
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
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match method {
        Method::PATCH if content_type.starts_with("application/apply-patch") => {
            return apply(&mut store, &path, &name, &query, &body);
        }
        Method::PATCH if content_type.starts_with("application/merge-patch+json") => {
            return merge_patch(&mut store, &path, &name, &query, &body);
        }
        Method::PATCH => {
            return status(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the stand-in does not serve patches of type {content_type:?}"),
            )
        }
        Method::POST => return create(&mut store, &path, &query, &body),
        Method::PUT if path.starts_with("/apis/subresources.kubevirt.io/") => {
            if let Some(done) = vm_subresource(&mut store, &path) {
                return done;
            }
        }
        Method::PUT => return replace(&mut store, &path, &name, &query, &body),
        Method::DELETE => {
            // A precondition on the uid: the object must still be the one the client saw.
            let precondition = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|p| p["preconditions"]["uid"].as_str().map(str::to_string));
            if let (Some(uid), Some(object)) = (precondition, store.objects.get(&path)) {
                if object["metadata"]["uid"] != uid.as_str() {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object \
                             meta: {}",
                            object["metadata"]["uid"]
                        ),
                    );
                }
            }
            let vmi = path.replace("/virtualmachines/", "/virtualmachineinstances/");
            if vmi != path {
                store.objects.remove(&vmi);
            }
            collect_garbage(&mut store, &path);
            let gone = store.objects.remove(&path);
            let Store {
                objects, managed, ..
            } = &mut *store;
            managed.retain(|(p, _), _| objects.contains_key(p));
            return match gone {
                Some(gone) => Json(gone).into_response(),
                None => not_found(&name),
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
    not_found(name)
}

/// The stand-in itself, spoken to as a real client speaks to an API server: what it accepts,
/// what it refuses and with which status, and who owns which field afterwards.
#[test]
fn the_stand_in_answers_writes_as_an_api_server_does() {
    let cluster = StandIn::start(Cluster::default());
    let maps = "/api/v1/namespaces/lab/configmaps";
    let path = format!("{maps}/settings");
    let map = |data: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "lab", "labels": {"app": "lab"}},
            "data": data})
    };
    let json_type = "application/json";
    let merge_type = "application/merge-patch+json";
    let apply_type = "application/apply-patch+yaml";

    // Create, then create again: 409 AlreadyExists.
    let made = cluster
        .send(Method::POST, maps, json_type, map(json!({"a": "1"})))
        .expect("created");
    let first_version = made["metadata"]["resourceVersion"].clone();
    let again = cluster
        .send(Method::POST, maps, json_type, map(json!({"a": "1"})))
        .expect_err("a second create is refused");
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(again.message, "configmaps \"settings\" already exists");

    // A merge patch by kubectl edits a field and removes one; the object's version moves on.
    let edited = cluster
        .send(
            Method::PATCH,
            &format!("{path}?fieldManager=kubectl-edit"),
            merge_type,
            json!({"data": {"a": "2", "b": "3"}}),
        )
        .expect("patched");
    assert_eq!(edited["data"], json!({"a": "2", "b": "3"}));
    assert_ne!(edited["metadata"]["resourceVersion"], first_version);
    let removed = cluster
        .send(
            Method::PATCH,
            &path,
            merge_type,
            json!({"data": {"b": null}}),
        )
        .expect("patched");
    assert_eq!(removed["data"], json!({"a": "2"}));

    // A replace or a patch naming an old resourceVersion: 409 Conflict.
    let mut old = map(json!({"a": "9"}));
    old["metadata"]["resourceVersion"] = first_version.clone();
    let replaced = cluster
        .send(Method::PUT, &path, json_type, old)
        .expect_err("a stale replace is refused");
    assert_eq!((replaced.code, replaced.reason.as_str()), (409, "Conflict"));
    assert!(replaced.message.contains("the object has been modified"));
    let patched = cluster
        .send(
            Method::PATCH,
            &path,
            merge_type,
            json!({"metadata": {"resourceVersion": first_version}, "data": {"a": "9"}}),
        )
        .expect_err("a stale patch is refused");
    assert_eq!(patched.code, 409);
    assert_eq!(cluster.object(&path).expect("there")["data"]["a"], "2");

    // An apply that would change a field kubectl-edit owns: 409, naming the field and owner.
    let applied = map(json!({"a": "5", "c": "6"}));
    let conflict = cluster
        .send(
            Method::PATCH,
            &format!("{path}?fieldManager=siteplan"),
            apply_type,
            applied.clone(),
        )
        .expect_err("the conflict is refused");
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        conflict.message,
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\": .data.a"
    );
    // Forced, it takes the field over; a later apply without the field removes only what
    // this manager owned.
    let forced = cluster
        .send(
            Method::PATCH,
            &format!("{path}?fieldManager=siteplan&force=true"),
            apply_type,
            applied,
        )
        .expect("forced");
    assert_eq!(forced["data"], json!({"a": "5", "c": "6"}));
    let other = cluster
        .send(
            Method::PATCH,
            &format!("{path}?fieldManager=operator"),
            apply_type,
            map(json!({"d": "7"})),
        )
        .expect("another manager's apply");
    assert_eq!(other["data"], json!({"a": "5", "c": "6", "d": "7"}));
    let shrunk = cluster
        .send(
            Method::PATCH,
            &format!("{path}?fieldManager=siteplan&force=true"),
            apply_type,
            map(json!({"a": "5"})),
        )
        .expect("applied");
    assert_eq!(shrunk["data"], json!({"a": "5", "d": "7"}));
    let unmanaged = cluster
        .send(Method::PATCH, &path, apply_type, map(json!({})))
        .expect_err("an apply needs a field manager");
    assert_eq!(unmanaged.code, 400);

    // Lists select by label; a deleted object is gone, and deleting it again is a 404.
    let listed = cluster
        .send(
            Method::GET,
            &format!("{maps}?labelSelector=app%3Dlab"),
            json_type,
            json!(null),
        )
        .expect("listed");
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    let none = cluster
        .send(
            Method::GET,
            &format!("{maps}?labelSelector=app%3Dother"),
            json_type,
            json!(null),
        )
        .expect("listed");
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    cluster
        .send(Method::DELETE, &path, json_type, json!(null))
        .expect("deleted");
    let missing = cluster
        .send(Method::DELETE, &path, json_type, json!(null))
        .expect_err("gone");
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
}
