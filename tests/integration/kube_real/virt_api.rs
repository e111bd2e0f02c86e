//! KubeVirt's `subresources.kubevirt.io` API (what virt-api serves, and `virtctl` uses), played
//! behind the real server's aggregation layer: an APIService sends the group's requests
//! through kube-apiserver (its authentication, its proxy) to this HTTPS server on 127.0.0.1,
//! reached through a Service of type ExternalName. It acts as virt-api does, through the real
//! API: `start` and `stop` set a VM's `runStrategy`, `restart` deletes its instance (which the
//! played controller makes again), `pause` and `unpause` set the instance's `Paused`
//! condition, and `console` is a websocket (`plain.kubevirt.io`) to the
//! instance's serial port, where a getty answers each Enter with a login prompt.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{json, Value};

const GROUP: &str = "subresources.kubevirt.io";

/// Serves the played virt-api for the cluster `client` talks to, on a free port of 127.0.0.1;
/// its address.
pub async fn serve(client: kube::Client) -> SocketAddr {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a certificate");
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        certified.cert.pem().into_bytes(),
        certified.signing_key.serialize_pem().into_bytes(),
    )
    .await
    .expect("TLS configuration");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("address");
    let app = axum::Router::new()
        .route(&format!("/apis/{GROUP}"), axum::routing::get(group))
        .route(&format!("/apis/{GROUP}/v1"), axum::routing::get(resources))
        .route(
            &format!(
                "/apis/{GROUP}/v1/namespaces/{{namespace}}/virtualmachines/{{name}}/{{action}}"
            ),
            axum::routing::put(vm_action),
        )
        .route(
            &format!(
                "/apis/{GROUP}/v1/namespaces/{{namespace}}/virtualmachineinstances/{{name}}/console"
            ),
            axum::routing::get(console),
        )
        .route(
            &format!(
                "/apis/{GROUP}/v1/namespaces/{{namespace}}/virtualmachineinstances/{{name}}/{{action}}"
            ),
            axum::routing::put(vmi_action),
        )
        .with_state(client);
    tokio::spawn(async move {
        let server = axum_server::from_tcp_rustls(listener, tls).expect("server");
        let _ = server.serve(app.into_make_service()).await;
    });
    addr
}

async fn group() -> Json<Value> {
    Json(
        json!({"kind": "APIGroup", "apiVersion": "v1", "name": GROUP,
        "versions": [{"groupVersion": format!("{GROUP}/v1"), "version": "v1"}],
        "preferredVersion": {"groupVersion": format!("{GROUP}/v1"), "version": "v1"}}),
    )
}

async fn resources() -> Json<Value> {
    let resource = |name: &str, verbs: &[&str]| json!({"name": name, "singularName": "", "namespaced": true, "kind": "", "verbs": verbs});
    Json(json!({"kind": "APIResourceList", "apiVersion": "v1",
    "groupVersion": format!("{GROUP}/v1"),
    "resources": [
        resource("virtualmachines/start", &["update"]),
        resource("virtualmachines/stop", &["update"]),
        resource("virtualmachines/restart", &["update"]),
        resource("virtualmachineinstances/console", &["get"]),
    ]}))
}

fn api(client: &kube::Client, namespace: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "kubevirt.io".into(),
        version: "v1".into(),
        api_version: "kubevirt.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    Api::namespaced_with(client.clone(), namespace, &resource)
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    (
        code,
        Json(
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "message": message, "code": code.as_u16()}),
        ),
    )
        .into_response()
}

async fn vm_action(
    State(client): State<kube::Client>,
    Path((namespace, name, action)): Path<(String, String, String)>,
) -> Response {
    let vms = api(&client, &namespace, "VirtualMachine", "virtualmachines");
    if !matches!(vms.get_opt(&name).await, Ok(Some(_))) {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("virtualmachine.kubevirt.io \"{name}\" not found"),
        );
    }
    // virt-api sets the run strategy as a field manager of its own.
    let strategy = |value: &str| Patch::Merge(json!({"spec": {"runStrategy": value}}));
    let done = match action.as_str() {
        "start" => vms
            .patch(&name, &PatchParams::default(), &strategy("Always"))
            .await
            .map(drop),
        "stop" => vms
            .patch(&name, &PatchParams::default(), &strategy("Halted"))
            .await
            .map(drop),
        "restart" => {
            let vmis = api(
                &client,
                &namespace,
                "VirtualMachineInstance",
                "virtualmachineinstances",
            );
            match vmis.delete(&name, &DeleteParams::default()).await {
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                other => other.map(drop),
            }
        }
        other => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the played virt-api has no subresource {other}"),
            )
        }
    };
    match done {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        ),
    }
}

/// `pause` and `unpause`: the instance's `Paused` condition, which the played controller
/// shows as the VM's `printableStatus`.
async fn vmi_action(
    State(client): State<kube::Client>,
    Path((namespace, name, action)): Path<(String, String, String)>,
) -> Response {
    let vmis = api(
        &client,
        &namespace,
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    let Ok(Some(vmi)) = vmis.get_opt(&name).await else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("virtualmachineinstance.kubevirt.io \"{name}\" not found"),
        );
    };
    let paused = match action.as_str() {
        "pause" => true,
        "unpause" => false,
        other => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the played virt-api has no subresource {other}"),
            )
        }
    };
    let vmi = serde_json::to_value(&vmi).unwrap_or_default();
    let mut conditions: Vec<Value> = vmi["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "Paused")
        .collect();
    if paused {
        conditions.push(json!({"type": "Paused", "status": "True", "reason": "PausedByUser"}));
    }
    match vmis
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions}})),
        )
        .await
    {
        Ok(_) => StatusCode::ACCEPTED.into_response(),
        Err(e) => status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            e.to_string(),
        ),
    }
}

async fn console(
    State(client): State<kube::Client>,
    Path((namespace, name)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    let vmis = api(
        &client,
        &namespace,
        "VirtualMachineInstance",
        "virtualmachineinstances",
    );
    if !matches!(vmis.get_opt(&name).await, Ok(Some(_))) {
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

/// Registers the played virt-api with the cluster `client` talks to, at `addr`: a Service of
/// type ExternalName and an APIService for the group; waits until the server finds it
/// available.
pub async fn register(client: &kube::Client, addr: SocketAddr) {
    let apply = |what: &str| PatchParams::apply(&format!("siteplan-tests-{what}")).force();
    let namespaces = Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone());
    namespaces
        .patch(
            "kubevirt",
            &apply("ns"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": "kubevirt"}})),
        )
        .await
        .expect("namespace kubevirt");
    let services =
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "kubevirt");
    services
        .patch(
            "virt-api",
            &apply("svc"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "virt-api", "namespace": "kubevirt"},
                "spec": {"type": "ExternalName", "externalName": addr.ip().to_string(),
                    "ports": [{"name": "https", "port": addr.port(), "protocol": "TCP"}]}})),
        )
        .await
        .expect("the virt-api Service");
    let apiservice = ApiResource {
        group: "apiregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiregistration.k8s.io/v1".into(),
        kind: "APIService".into(),
        plural: "apiservices".into(),
    };
    let apiservices = Api::<DynamicObject>::all_with(client.clone(), &apiservice);
    let name = format!("v1.{GROUP}");
    let mut wanted: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name},
        "spec": {"group": GROUP, "version": "v1",
            "service": {"namespace": "kubevirt", "name": "virt-api", "port": addr.port()},
            // The played virt-api's certificate is its own, made for this run.
            "insecureSkipTLSVerify": true,
            "groupPriorityMinimum": 1000, "versionPriority": 15}}))
    .expect("APIService");
    // The 1.20 aggregator takes no server-side apply: created, or replaced.
    match apiservices.create(&Default::default(), &wanted).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let live = apiservices.get(&name).await.expect("the APIService");
            wanted.metadata.resource_version = live.metadata.resource_version;
            apiservices
                .replace(&name, &Default::default(), &wanted)
                .await
                .expect("the subresources APIService");
        }
        Err(e) => panic!("the subresources APIService: {e}"),
    }
    for _ in 0..200 {
        let available = apiservices.get(&name).await.is_ok_and(|s| {
            s.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True")
        });
        if available {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the played virt-api did not become available through the aggregation layer");
}
