//! A stand-in Kubernetes API server, kept for what the real one (`kube_real`) is not made to do
//! here: a fixed latency per request and a count of the requests served (the KubeVirt
//! benchmark), and a server that goes away and comes back (the health model's test). Every
//! other KubeVirt test runs against a real kube-apiserver.
//!
//! It speaks HTTP on 127.0.0.1 to a real `kube::Client` (the `plan` binary's, over TCP), and
//! behaves as the real one does for what siteplan asks: discovery
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
    /// How long each request takes, as a cluster's round trip would.
    pub latency: std::time::Duration,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            kubevirt: true,
            namespaces: vec!["default", "lab"],
            storage_classes: vec![("standard", true), ("fast", false)],
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

    /// The requests served so far, as `METHOD path` (the benchmark counts them).
    #[allow(dead_code)]
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

mod controllers;
mod writes;
use controllers::*;
use writes::*;

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
