//! What KubeVirt's and CDI's controllers and the garbage collector do, as the stand-in plays them: DataVolumes and claims for disks, instances for running VMs, RestartRequired, the console.

use super::*;

/// CDI's and KubeVirt's part for disks: a VirtualMachine's disk templates become DataVolumes
/// it owns, and every DataVolume a PersistentVolumeClaim of its size that it owns.
pub(super) fn disks(store: &mut Store, path: &str, object: &Value) {
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
pub(super) fn collect_garbage(store: &mut Store, path: &str) {
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
pub(super) fn instance(store: &mut Store, path: &str, vm: &mut Value) {
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
    // An instance keeps its uid while it runs; one made again (a restart) has a new one.
    let uid = store
        .objects
        .get(&vmi_path)
        .map(|vmi| vmi["metadata"]["uid"].clone())
        .unwrap_or_else(|| format!("uid-vmi-{}", store.version + 1).into());
    let vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": vm["metadata"]["namespace"], "uid": uid},
        "spec": running,
        "status": {"phase": "Running", "interfaces": interfaces}});
    store.insert(&vmi_path, vmi);
}

/// KubeVirt's `console` subresource: a websocket speaking `plain.kubevirt.io` to a running
/// instance's serial port, where a getty answers each Enter with a login prompt.
pub(super) async fn console(
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
pub(super) fn quantity(value: &Value) -> u64 {
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

pub(super) fn set_restart_required(vm: &mut Value, required: bool) {
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
pub(super) fn vm_subresource(store: &mut Store, path: &str) -> Option<Response> {
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
pub(super) fn progress(store: &mut Store) {
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
