//! The part of KubeVirt's and CDI's controllers that siteplan depends on, played through the
//! real API in one namespace. It watches VirtualMachines and DataVolumes and writes what the
//! real controllers would, as they would (owner references, the `/status` subresource):
//!
//! - a VirtualMachine's disk templates become DataVolumes it owns (KubeVirt);
//! - a DataVolume gets a PersistentVolumeClaim of its size and class that it owns, `Bound`,
//!   and its `status.phase` goes from ImportScheduled through ImportInProgress to Succeeded
//!   when it imports (CDI);
//! - a VirtualMachine whose `runStrategy` is `Always` gets an instance it owns, made from its
//!   template, whose status gives each interface's MAC and the pod network's interface an
//!   address (10.244.N.M, from the VM's uid), and `status.printableStatus` Running (Stopping
//!   while its instance is being deleted, by a restart); a halted one has no instance and is
//!   Stopped (KubeVirt);
//! - a template that changes while the VM runs reaches the instance only for what KubeVirt
//!   updates live (CPU sockets up to `maxSockets`, memory up to `maxGuest`); anything else sets
//!   the VM's `RestartRequired` condition until the instance is made again.
//!
//! - a VirtualMachineSnapshot keeps the VM's definition in a content object it owns and is
//!   ready to use; a VirtualMachineRestore puts a stopped VM's definition back (one that runs
//!   waits), as KubeVirt's snapshot and restore controllers do (the disks' data is not
//!   played: nothing here holds any).
//!
//! Deleting is the garbage collector's, which runs for real (kube-controller-manager).

#![allow(clippy::disallowed_macros)] // the test's own report of a failed round

use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use serde_json::{json, Value};

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

struct Apis {
    vms: Api<DynamicObject>,
    vmis: Api<DynamicObject>,
    dvs: Api<DynamicObject>,
    claims: Api<DynamicObject>,
    snapshots: Api<DynamicObject>,
    contents: Api<DynamicObject>,
    restores: Api<DynamicObject>,
}

/// Plays the controllers in `namespace` until aborted.
pub async fn run(client: kube::Client, namespace: String) {
    let api =
        |r: ApiResource| Api::<DynamicObject>::namespaced_with(client.clone(), &namespace, &r);
    let apis = Apis {
        vms: api(resource(
            "kubevirt.io",
            "v1",
            "VirtualMachine",
            "virtualmachines",
        )),
        vmis: api(resource(
            "kubevirt.io",
            "v1",
            "VirtualMachineInstance",
            "virtualmachineinstances",
        )),
        dvs: api(resource(
            "cdi.kubevirt.io",
            "v1beta1",
            "DataVolume",
            "datavolumes",
        )),
        claims: api(resource(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
        )),
        snapshots: api(resource(
            "snapshot.kubevirt.io",
            "v1beta1",
            "VirtualMachineSnapshot",
            "virtualmachinesnapshots",
        )),
        contents: api(resource(
            "snapshot.kubevirt.io",
            "v1beta1",
            "VirtualMachineSnapshotContent",
            "virtualmachinesnapshotcontents",
        )),
        restores: api(resource(
            "snapshot.kubevirt.io",
            "v1beta1",
            "VirtualMachineRestore",
            "virtualmachinerestores",
        )),
    };
    loop {
        let since = match reconcile(&apis).await {
            Ok(since) => since,
            Err(e) => {
                eprintln!("played controllers in {namespace}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        // The next change to a VM, an instance or a DataVolume (resource versions are the whole
        // server's),
        // or a second, for imports in progress.
        let params = WatchParams::default().timeout(1);
        let (Ok(vm_events), Ok(vmi_events), Ok(dv_events)) = (
            apis.vms.watch(&params, &since).await,
            apis.vmis.watch(&params, &since).await,
            apis.dvs.watch(&params, &since).await,
        ) else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut events =
            futures::stream::select_all([vm_events.boxed(), vmi_events.boxed(), dv_events.boxed()]);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(event) = events.next().await {
                if matches!(
                    event,
                    Ok(WatchEvent::Added(_) | WatchEvent::Modified(_) | WatchEvent::Deleted(_))
                ) {
                    break;
                }
            }
        })
        .await;
    }
}

/// One round of every controller; the resource version it saw.
async fn reconcile(apis: &Apis) -> Result<String, kube::Error> {
    let vms = apis.vms.list(&ListParams::default()).await?;
    let since = vms.metadata.resource_version.clone().unwrap_or_default();
    for vm in vms {
        if vm.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let vm = serde_json::to_value(&vm).unwrap_or_default();
        disks(apis, &vm).await?;
        instance(apis, &vm).await?;
    }
    for dv in apis.dvs.list(&ListParams::default()).await? {
        if dv.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let dv = serde_json::to_value(&dv).unwrap_or_default();
        claim(apis, &dv).await?;
        import(apis, &dv).await?;
    }
    for snapshot in apis.snapshots.list(&ListParams::default()).await? {
        snapshot_taken(apis, &serde_json::to_value(&snapshot).unwrap_or_default()).await?;
    }
    for restore in apis.restores.list(&ListParams::default()).await? {
        restored(apis, &serde_json::to_value(&restore).unwrap_or_default()).await?;
    }
    Ok(since)
}

/// The annotation a test sets on a VM whose snapshots the played controller fails.
pub const FAILS_SNAPSHOTS: &str = "tests.siteplan.io/snapshots-fail";

/// KubeVirt's snapshot controller: the VM's definition kept in a content object the snapshot
/// owns, and the snapshot ready (online when the VM runs).
async fn snapshot_taken(apis: &Apis, snapshot: &Value) -> Result<(), kube::Error> {
    if snapshot["status"]["readyToUse"] == true
        || !snapshot["metadata"]["deletionTimestamp"].is_null()
    {
        return Ok(());
    }
    let vm_name = snapshot["spec"]["source"]["name"]
        .as_str()
        .unwrap_or_default();
    let Some(vm) = apis.vms.get_opt(vm_name).await? else {
        return set_status(
            &apis.snapshots,
            snapshot,
            json!({"phase": "Failed", "readyToUse": false,
                "error": {"message": format!("VirtualMachine {vm_name} does not exist")}}),
        )
        .await;
    };
    let vm = serde_json::to_value(&vm).unwrap_or_default();
    // A test marks a VM whose snapshots fail, as KubeVirt's do when the guest cannot be frozen.
    if vm["metadata"]["annotations"][FAILS_SNAPSHOTS] == "true" {
        return set_status(
            &apis.snapshots,
            snapshot,
            json!({"phase": "Failed", "readyToUse": false,
                "error": {"message": "failed to freeze the guest's filesystems"}}),
        )
        .await;
    }
    let content = format!("{}-content", name_of(snapshot));
    create(
        &apis.contents,
        json!({"apiVersion": "snapshot.kubevirt.io/v1beta1",
            "kind": "VirtualMachineSnapshotContent",
            "metadata": {"name": content, "ownerReferences": owned_by(snapshot)},
            "spec": {"virtualMachineSnapshotName": name_of(snapshot),
                "source": {"virtualMachine": {"metadata": {"name": vm_name},
                    "spec": vm["spec"]}}}}),
    )
    .await?;
    let online =
        vm["status"]["printableStatus"] == "Running" || vm["status"]["printableStatus"] == "Paused";
    set_status(
        &apis.snapshots,
        snapshot,
        json!({"phase": "Succeeded", "readyToUse": true,
            "sourceUID": vm["metadata"]["uid"],
            "creationTime": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            "virtualMachineSnapshotContentName": content,
            "indications": if online { json!(["Online"]) } else { json!([]) }}),
    )
    .await
}

/// KubeVirt's restore controller: a stopped VM's definition put back as its snapshot kept it
/// (its run strategy left as it is); a VM that runs waits.
async fn restored(apis: &Apis, restore: &Value) -> Result<(), kube::Error> {
    if restore["status"]["complete"] == true || !restore["metadata"]["deletionTimestamp"].is_null()
    {
        return Ok(());
    }
    let vm_name = restore["spec"]["target"]["name"]
        .as_str()
        .unwrap_or_default();
    if apis.vmis.get_opt(vm_name).await?.is_some() {
        return set_status(
            &apis.restores,
            restore,
            json!({"complete": false, "conditions": [{"type": "Ready", "status": "False",
                "reason": "VM must be stopped to restore"}]}),
        )
        .await;
    }
    let snapshot = restore["spec"]["virtualMachineSnapshotName"]
        .as_str()
        .unwrap_or_default();
    let content = format!("{snapshot}-content");
    let (Some(vm), Some(content)) = (
        apis.vms.get_opt(vm_name).await?,
        apis.contents.get_opt(&content).await?,
    ) else {
        return Ok(());
    };
    let mut vm = serde_json::to_value(&vm).unwrap_or_default();
    let content = serde_json::to_value(&content).unwrap_or_default();
    let strategy = vm["spec"]["runStrategy"].clone();
    vm["spec"] = content["spec"]["source"]["virtualMachine"]["spec"].clone();
    vm["spec"]["runStrategy"] = strategy;
    let vm: DynamicObject = serde_json::from_value(vm).map_err(kube::Error::SerdeError)?;
    apis.vms
        .replace(vm_name, &PostParams::default(), &vm)
        .await?;
    set_status(
        &apis.restores,
        restore,
        json!({"complete": true, "conditions": null,
            "restoreTime": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()}),
    )
    .await
}

/// An owner reference to `owner`, as a controller sets it.
fn owned_by(owner: &Value) -> Value {
    json!([{
        "apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": true,
    }])
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

/// Creates `object` in `api` unless it is there.
async fn create(api: &Api<DynamicObject>, object: Value) -> Result<(), kube::Error> {
    let object: DynamicObject = serde_json::from_value(object).map_err(kube::Error::SerdeError)?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `status` through the `/status` subresource, when it differs from `object`'s.
async fn set_status(
    api: &Api<DynamicObject>,
    object: &Value,
    status: Value,
) -> Result<(), kube::Error> {
    let mut merged = object["status"].clone();
    if !merged.is_object() {
        merged = json!({});
    }
    json_merge(&mut merged, &status);
    if merged == object["status"] {
        return Ok(());
    }
    match api
        .patch_status(
            name_of(object),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

fn json_merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(into), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    into.remove(key);
                } else {
                    json_merge(into.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (into, patch) => *into = patch.clone(),
    }
}

/// KubeVirt: a VM's disk templates become DataVolumes it owns.
async fn disks(apis: &Apis, vm: &Value) -> Result<(), kube::Error> {
    for template in vm["spec"]["dataVolumeTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut metadata = template["metadata"].clone();
        metadata["ownerReferences"] = owned_by(vm);
        create(
            &apis.dvs,
            json!({"apiVersion": "cdi.kubevirt.io/v1beta1", "kind": "DataVolume",
                "metadata": metadata, "spec": template["spec"]}),
        )
        .await?;
    }
    Ok(())
}

/// CDI: a DataVolume's claim, of its size and class, bound.
async fn claim(apis: &Apis, dv: &Value) -> Result<(), kube::Error> {
    let spec = if dv["spec"]["storage"].is_object() {
        &dv["spec"]["storage"]
    } else {
        &dv["spec"]["pvc"]
    };
    let mut claim_spec = json!({
        "accessModes": spec["accessModes"].as_array().cloned().unwrap_or_else(|| vec!["ReadWriteOnce".into()]),
        "resources": {"requests": {"storage": spec["resources"]["requests"]["storage"]}},
    });
    if let Some(class) = spec["storageClassName"].as_str() {
        claim_spec["storageClassName"] = class.into();
    }
    create(
        &apis.claims,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name_of(dv), "ownerReferences": owned_by(dv)},
            "spec": claim_spec}),
    )
    .await?;
    let claim = apis.claims.get(name_of(dv)).await?;
    let claim = serde_json::to_value(&claim).unwrap_or_default();
    let size = claim["spec"]["resources"]["requests"]["storage"].clone();
    set_status(
        &apis.claims,
        &claim,
        json!({"phase": "Bound", "accessModes": claim["spec"]["accessModes"],
            "capacity": {"storage": size}}),
    )
    .await
}

/// CDI: an import goes from scheduled through in progress to done, a step each round; a blank
/// disk is done at once.
async fn import(apis: &Apis, dv: &Value) -> Result<(), kube::Error> {
    let imports = dv["spec"]["source"]
        .as_object()
        .is_some_and(|s| !s.contains_key("blank"));
    let next = match (imports, dv["status"]["phase"].as_str()) {
        (_, Some("Succeeded")) => return Ok(()),
        (false, _) => "Succeeded",
        (true, None) => "ImportScheduled",
        (true, Some("ImportScheduled")) => "ImportInProgress",
        (true, _) => "Succeeded",
    };
    let progress = if next == "Succeeded" { "100.0%" } else { "N/A" };
    set_status(
        &apis.dvs,
        dv,
        json!({"phase": next, "progress": progress, "claimName": name_of(dv)}),
    )
    .await
}

/// Whether a VM's run strategy has it run.
fn should_run(vm: &Value) -> bool {
    match vm["spec"]["runStrategy"].as_str() {
        Some(strategy) => matches!(strategy, "Always" | "RerunOnFailure" | "Once"),
        None => vm["spec"]["running"].as_bool().unwrap_or(false),
    }
}

/// KubeVirt: a running VM's instance, and the VM's status.
async fn instance(apis: &Apis, vm: &Value) -> Result<(), kube::Error> {
    let name = name_of(vm);
    let existing = apis
        .vmis
        .get_opt(name)
        .await?
        .map(|vmi| serde_json::to_value(&vmi).unwrap_or_default());
    if !should_run(vm) {
        if existing.is_some() {
            match apis.vmis.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        return set_status(
            &apis.vms,
            vm,
            json!({"printableStatus": "Stopped", "ready": null, "created": null,
                "conditions": conditions(vm, false)}),
        )
        .await;
    }
    let template = &vm["spec"]["template"]["spec"];
    let vmi = match existing {
        Some(vmi) if vmi["metadata"]["deletionTimestamp"].is_null() => vmi,
        // Being deleted (a restart): made again once it is gone.
        Some(_) => {
            return set_status(
                &apis.vms,
                vm,
                json!({"printableStatus": "Stopping", "ready": false}),
            )
            .await
        }
        None => {
            create(
                &apis.vmis,
                json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                    "metadata": {"name": name, "ownerReferences": owned_by(vm),
                        "labels": vm["spec"]["template"]["metadata"]["labels"]},
                    "spec": template}),
            )
            .await?;
            serde_json::to_value(apis.vmis.get(name).await?).unwrap_or_default()
        }
    };
    // What KubeVirt updates live.
    let mut running = vmi["spec"].clone();
    let mut live = false;
    for (field, most) in [
        (["cpu", "sockets"], ["cpu", "maxSockets"]),
        (["memory", "guest"], ["memory", "maxGuest"]),
    ] {
        let wanted = &template["domain"][field[0]][field[1]];
        let headroom = &running["domain"][most[0]][most[1]];
        if !wanted.is_null()
            && !headroom.is_null()
            && wanted != &running["domain"][field[0]][field[1]]
            && quantity(wanted) <= quantity(headroom)
        {
            running["domain"][field[0]][field[1]] = wanted.clone();
            live = true;
        }
    }
    if live {
        apis.vmis
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"domain": running["domain"]}})),
            )
            .await?;
    }
    let uid = vm["metadata"]["uid"].as_str().unwrap_or_default();
    let n = uid
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(b.into()));
    let ip = format!("10.244.{}.{}", n % 250, 2 + (n / 250) % 250);
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
            let iface = i["name"].as_str().unwrap_or_default();
            let mut status = json!({"name": iface, "mac": i["macAddress"]});
            if pod_networks.contains(&iface) {
                status["ipAddress"] = ip.clone().into();
                status["ipAddresses"] = json!([ip]);
            }
            status
        })
        .collect();
    set_status(
        &apis.vmis,
        &vmi,
        json!({"phase": "Running", "nodeName": "played-node", "interfaces": interfaces}),
    )
    .await?;
    // Paused through virt-api's `pause`: the instance says so.
    let paused = vmi["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Paused" && c["status"] == "True");
    set_status(
        &apis.vms,
        vm,
        json!({"printableStatus": if paused { "Paused" } else { "Running" },
            "ready": !paused, "created": true,
            "conditions": conditions(vm, &running != template)}),
    )
    .await
}

/// The VM's conditions with `RestartRequired` set or cleared.
fn conditions(vm: &Value, restart_required: bool) -> Value {
    let mut conditions: Vec<Value> = vm["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c["type"] != "RestartRequired")
        .collect();
    if restart_required {
        conditions.push(json!({"type": "RestartRequired", "status": "True",
            "message": "a non-live-updatable field was changed in the template spec"}));
    }
    Value::Array(conditions)
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
