//! The KubeVirt backend against a real Kubernetes API server (`kube_real`): the plan binary
//! talks to kube-apiserver 1.20.2 with KubeVirt's CRDs, the garbage collector runs, and the
//! part of KubeVirt's and CDI's controllers siteplan depends on is played through the API.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{line_with, LAB};

mod lease;
mod runs;
mod snapshots;
use crate::harness::{Plan, Ran};
use crate::kube_real::RealCluster;

/// A providers file with the cluster's providers: `kv` in the test's namespace, `kv-nons` in
/// a namespace that does not exist, `kv-badtoken` with a token the server does not know,
/// `kv-gone` where nothing listens, `kv-quick`, `kv` with deletes that wait 3 s at most, and
/// `play`, an embedded sandbox.
pub(super) fn providers(dir: &Path, cluster: &RealCluster) -> PathBuf {
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let gone_addr = gone.local_addr().expect("addr");
    drop(gone);
    let text = std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("the kubeconfig's server")
        .to_string();
    let nowhere = dir.join("nowhere");
    std::fs::write(
        &nowhere,
        text.replace(&server, &format!("https://{gone_addr}")),
    )
    .expect("kubeconfig");
    let bad = cluster.kubeconfig_with_token(dir, "badtoken", "0123456789abcdef0123456789abcdef");
    let file = dir.join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "health_timeout: 5\nproviders:\n\
             \x20 - {{name: kv, type: kubevirt, kubeconfig: {good}, namespace: {ns}}}\n\
             \x20 - {{name: kv-nons, type: kubevirt, kubeconfig: {good}, namespace: missing}}\n\
             \x20 - {{name: kv-badtoken, type: kubevirt, kubeconfig: {bad}, namespace: {ns}}}\n\
             \x20 - {{name: kv-gone, type: kubevirt, kubeconfig: {nowhere}, namespace: {ns}}}\n\
             \x20 - {{name: kv-quick, type: kubevirt, kubeconfig: {good}, namespace: {ns}, \
             delete_timeout: 3}}\n\
             \x20 - {{name: play, type: sandbox, dir: {sandbox}}}\n",
            good = cluster.kubeconfig().display(),
            bad = bad.display(),
            nowhere = nowhere.display(),
            ns = cluster.ns(),
            sandbox = dir.join("play").display(),
        ),
    )
    .expect("providers file");
    file
}

/// A test's lab on `cluster`: its directory, the providers file there, and `LAB` as
/// `kvlab.yml`.
pub(super) fn lab(cluster: &RealCluster) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), cluster);
    let plan_file = tmp.path().join("kvlab.yml");
    std::fs::write(&plan_file, LAB).expect("plan");
    (tmp, file, plan_file)
}

#[test]
fn a_real_api_server_shows_its_health_and_refuses_clearly() {
    let Some(cluster) = RealCluster::start("real-health") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), &cluster);
    let state = tmp.path().join("state");
    let started = Instant::now();
    let out = Plan::new(&["provider", "list", "-o", "json"])
        .providers(&file, &state)
        .run();
    assert!(started.elapsed() < Duration::from_secs(20), "list hung");
    assert!(out.ok(), "{}", out.text());
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let health = |name: &str| -> (String, String) {
        let p = list["results"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{}", out.stdout));
        (
            p["health_status"].as_str().unwrap_or_default().to_string(),
            p["health_reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(health("kv"), ("ready".into(), String::new()));
    let (status, reason) = health("kv-nons");
    assert_eq!(status, "unhealthy", "{reason}");
    assert!(
        reason.contains("namespace missing does not exist"),
        "{reason}"
    );
    let (status, reason) = health("kv-gone");
    assert_eq!(status, "unavailable", "{reason}");
    let (status, reason) = health("kv-badtoken");
    assert_ne!(status, "ready", "{reason}");
    assert!(reason.contains("token"), "{reason}");
    // A server without KubeVirt (`.ci/kube` starts one, bare).
    match std::env::var_os("SITEPLAN_TEST_APISERVER_BARE") {
        Some(bare) => {
            let bare_file = tmp.path().join("bare.yml");
            std::fs::write(
                &bare_file,
                format!(
                    "providers:\n  - {{name: kv-bare, type: kubevirt, kubeconfig: {}}}\n",
                    PathBuf::from(bare).display()
                ),
            )
            .expect("providers file");
            let out = Plan::new(&["provider", "get", "kv-bare", "-o", "json"])
                .providers(&bare_file, &state)
                .run();
            let got: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
            assert_eq!(got["health_status"], "unhealthy", "{got}");
            assert!(
                got["health_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("does not serve kubevirt.io/v1")),
                "{got}"
            );
            // A plan sent there says what the cluster lacks, not a raw 404.
            let plan = tmp.path().join("bare-plan.yml");
            std::fs::write(&plan, "vm1:\n  memory: 512\n").expect("plan");
            let out = Plan::new(&["apply", "--yes", "--provider", "kv-bare"])
                .arg_path(&plan)
                .providers(&bare_file, &state)
                .run();
            assert_eq!(out.code(), Some(1), "{}", out.text());
            assert!(
                out.stderr.contains("the cluster does not serve")
                    && out.stderr.contains("is not installed there")
                    && !out.stderr.contains("404 page not found"),
                "{}",
                out.stderr
            );
        }
        None => crate::harness::report(
            "SKIPPED a_real_api_server_shows_its_health_and_refuses_clearly (a server without \
             KubeVirt): SITEPLAN_TEST_APISERVER_BARE is not set",
        ),
    }
    let mark = cluster.audit_mark();

    // A plan sent with a token the server does not know, or to no server, is refused at once,
    // saying why.
    let plan_file = tmp.path().join("one.yml");
    std::fs::write(&plan_file, "vm1:\n  nets: [default]\n").expect("plan");
    for (provider, says) in [("kv-badtoken", "token"), ("kv-gone", "does not answer")] {
        let started = Instant::now();
        let out = Plan::new(&["apply", "--yes", "--provider", provider])
            .args(&[&plan_file.to_string_lossy()])
            .providers(&file, &state)
            .run();
        assert_eq!(out.code(), Some(1), "{}", out.text());
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{provider}: took {:?}",
            started.elapsed()
        );
        assert!(out.stderr.contains(says), "{provider}:\n{}", out.stderr);
    }
    // A storage class the cluster lacks is refused, naming those it has.
    std::fs::write(&plan_file, "vm1:\n  pool: nosuch\n  nets: [default]\n").expect("plan");
    let out = Plan::new(&["apply", "--yes", "--provider", "kv"])
        .args(&[&plan_file.to_string_lossy()])
        .providers(&file, &state)
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr.contains("pool/nosuch") && out.stderr.contains("fast, standard"),
        "{}",
        out.stderr
    );
    // A pool entry (a host directory) cannot be held.
    let out = Plan::new(&["apply", "--yes", "--provider", "kv", "examples/lab.yml"])
        .providers(&file, &state)
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr
            .contains("pool/labpool: provider `kv` has no storage in host directories"),
        "{}",
        out.stderr
    );
    // Nothing but the runs' own locks, made and given back.
    let writes: Vec<String> = cluster
        .writes_since(mark)
        .into_iter()
        .filter(|w| !w.contains("/leases"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(cluster.paths().is_empty(), "{:?}", cluster.paths());
}

#[test]
fn a_plan_lives_its_life_on_a_real_api_server() {
    let Some(cluster) = RealCluster::start("real-life") else {
        return;
    };
    let ns = cluster.ns().to_string();
    let (tmp, file, plan_file) = lab(&cluster);
    let vms = format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines");
    // Another tool's VM, on the plan's network.
    cluster.seed(
        &vms,
        serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "theirs"}, "spec": {"runStrategy": "Halted",
            "template": {"spec": {"domain": {"devices": {}},
                "networks": [{"name": "n", "multus": {"networkName": format!("{ns}/kvnet")}}]}}}}),
    );
    let theirs = format!("{vms}/theirs");
    let run = |args: &[&str], params: &[&str]| -> Ran {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "kv"])
            .params(params)
            .providers(&file, &tmp.path().join("state"))
            .run()
    };

    let applied = run(&["apply", "--yes", "--wait", "--wait-timeout", "30"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(
        applied.stderr.contains("0 failed, 0 skipped"),
        "{}",
        applied.text()
    );
    let row = |out: &Ran, vm: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{vm} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    // kv1's pod address from its instance's status, which the played KubeVirt wrote.
    assert!(
        row(&applied, "kv1").starts_with("kv1 kv running 10.244."),
        "{}",
        applied.stdout
    );
    assert_eq!(
        row(&applied, "kv2"),
        "kv2 kv stopped -",
        "{}",
        applied.stdout
    );
    let vm = format!("{vms}/kv1");
    let made = cluster.object(&vm).expect("kv1 exists");
    assert_eq!(made["metadata"]["labels"]["siteplan.io/plan"], "kvlab");
    assert_eq!(
        made["spec"]["template"]["spec"]["domain"]["memory"]["guest"],
        "1024Mi"
    );
    let secret = cluster
        .object(&format!("/api/v1/namespaces/{ns}/secrets/kv1-cloudinit"))
        .expect("the cloud-init secret");
    assert!(secret["data"]["userdata"].is_string(), "{secret}");
    let image = format!("/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes/bookworm");
    assert!(cluster.object(&image).is_some());
    assert!(cluster
        .object(&format!(
            "/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/kvnet"
        ))
        .is_some());

    let diff = run(&["diff"], &[]);
    assert!(diff.ok(), "{}", diff.text());
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);
    // The import goes on meanwhile; its progress is CDI's business, not a change of the plan.
    cluster.wait_for(Duration::from_secs(20), "the image imported", |c| {
        c.object(&image)
            .is_some_and(|dv| dv["status"]["phase"] == "Succeeded")
    });
    let diff = run(&["diff"], &[]);
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);

    // `plan status` reads the VM's state from the cluster: stopped by another tool, kv1 has
    // no instance, and is not shown running.
    let merge = "application/merge-patch+json";
    cluster
        .send(
            http::Method::PATCH,
            &format!("{vm}?fieldManager=kubectl-edit"),
            merge,
            serde_json::json!({"spec": {"runStrategy": "Halted"}}),
        )
        .expect("kubectl stops the VM");
    cluster.wait_for(Duration::from_secs(10), "kv1's instance gone", |c| {
        c.object(&format!(
            "/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachineinstances/kv1"
        ))
        .is_none()
    });
    let status = run(&["status"], &[]);
    assert_eq!(status.code(), Some(2), "{}", status.text());
    assert!(
        line_with(&status.stdout, "virtualmachine/kv1 ").contains("stopped"),
        "{}",
        status.stdout
    );
    // Another controller annotates it. The plan says it runs, and the diff says so; apply takes
    // the field back and leaves the annotation alone.
    cluster
        .send(
            http::Method::PATCH,
            &format!("{vm}?fieldManager=backup-operator"),
            merge,
            serde_json::json!({"metadata": {"annotations": {"backup.example.io/last": "today"}}}),
        )
        .expect("a controller annotates the VM");
    let diff = run(&["diff"], &[]);
    assert!(
        line_with(&diff.stdout, "spec.runStrategy:").ends_with("\"Halted\" → \"Always\""),
        "{}",
        diff.stdout
    );
    assert!(
        !diff.stdout.contains("backup.example.io"),
        "{}",
        diff.stdout
    );
    let restored = run(&["apply", "--yes", "--wait", "--wait-timeout", "30"], &[]);
    assert!(restored.ok(), "{}", restored.text());
    let now = cluster.object(&vm).expect("kv1");
    assert_eq!(now["spec"]["runStrategy"], "Always");
    assert_eq!(
        now["metadata"]["annotations"]["backup.example.io/last"],
        "today"
    );
    assert!(
        row(&restored, "kv1").starts_with("kv1 kv running 10.244."),
        "{}",
        restored.stdout
    );

    // More memory and cpus for the running VM: it must restart to get them, and KubeVirt says
    // so (`RestartRequired`).
    let more = ["memory=2048", "cpus=2"];
    let diff = run(&["diff"], &more);
    assert!(
        diff.stdout
            .contains("~ virtualmachine/kv1 (needs a reboot)"),
        "{}",
        diff.stdout
    );
    let changed = run(&["apply", "--yes"], &more);
    assert!(changed.ok(), "{}", changed.text());
    cluster.wait_for(Duration::from_secs(10), "RestartRequired", |c| {
        c.object(&vm).is_some_and(|v| {
            v["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "RestartRequired")
        })
    });
    let diff = run(&["diff", "--detailed-exitcode"], &more);
    assert_eq!(diff.code(), Some(2), "{}", diff.text());
    assert!(
        diff.stdout.contains("↻ virtualmachine/kv1")
            && line_with(&diff.stdout, "spec.template.spec.domain.memory.guest:")
                .ends_with("\"1024Mi\" → \"2048Mi\""),
        "{}",
        diff.stdout
    );

    // --restart restarts it through KubeVirt's restart subresource (the played virt-api, behind
    // the server's aggregation layer); the instance is made again, with what it waited for.
    let mark = cluster.audit_mark();
    let restarted = run(&["apply", "--yes", "--restart"], &more);
    assert!(
        restarted.ok() && restarted.stderr.contains("vm kv1 restarted"),
        "{}",
        restarted.text()
    );
    assert!(
        cluster
            .writes_since(mark)
            .iter()
            .any(|w| w.ends_with("/virtualmachines/kv1/restart")),
        "{:?}",
        cluster.writes_since(mark)
    );
    cluster.wait_for(Duration::from_secs(10), "kv1 running again", |c| {
        c.object(&vm)
            .is_some_and(|v| v["status"]["printableStatus"] == "Running")
    });
    let diff = run(&["diff"], &more);
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);

    // Its serial console, through KubeVirt's console subresource (a websocket, upgraded
    // through the server).
    let attached = Plan::new(&["console"])
        .args(&[&plan_file.to_string_lossy(), "kv1", "--provider", "kv"])
        .params(&more)
        .providers(&file, &tmp.path().join("state"))
        .spawn_piped();
    let (shown, said) =
        crate::harness::drive_console(attached, "kv1 login:", Duration::from_secs(20));
    assert!(shown.contains("Debian GNU/Linux 12 kv1 ttyS0"), "{shown}");
    assert!(said.contains("Detached from vm/kv1."), "{said}");

    // Stopped and started through the subresources: the plan says it runs.
    let stopped = run(&["stop"], &more);
    assert!(stopped.ok(), "{}", stopped.text());
    assert_eq!(
        cluster.object(&vm).expect("kv1")["spec"]["runStrategy"],
        "Halted"
    );
    let status = run(&["status"], &more);
    assert_eq!(status.code(), Some(2), "{}", status.text());
    let started = run(&["start"], &more);
    assert!(started.ok(), "{}", started.text());
    let diff = run(&["diff"], &more);
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);

    // A disk and a NIC more: the VM gets them when it restarts, and is not made again (its
    // cloud-init Secret is, with the new NIC in its network data, whose digest is never shown).
    let grown_more = ["memory=2048", "cpus=2", "more=true"];
    let diff = run(&["diff"], &grown_more);
    assert!(
        diff.stdout
            .contains("content.sha256: \"(sensitive)\" → \"(sensitive, changed)\"")
            && diff
                .stdout
                .contains("~ virtualmachine/kv1 (needs a reboot)")
            && diff.stdout.contains("spec.dataVolumeTemplates")
            && !diff.stdout.contains("-/+ virtualmachine"),
        "{}",
        diff.stdout
    );
    let grown = run(&["apply", "--yes", "--restart"], &grown_more);
    assert!(grown.ok(), "{}", grown.text());
    let made = cluster.object(&vm).expect("kv1");
    assert_eq!(
        made["spec"]["dataVolumeTemplates"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        made["spec"]["template"]["spec"]["domain"]["devices"]["interfaces"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    // The played KubeVirt made the new disk's DataVolume, and CDI its claim.
    cluster.wait_for(Duration::from_secs(10), "the new disk's claim", |c| {
        c.object(&format!(
            "/api/v1/namespaces/{ns}/persistentvolumeclaims/kv1-disk1"
        ))
        .is_some()
    });
    let clean = run(&["diff"], &grown_more);
    assert!(clean.stdout.starts_with("No changes."), "{}", clean.stdout);
    let back = run(&["apply", "--yes", "--restart"], &more);
    assert!(back.ok(), "{}", back.text());

    // A disk grows in place: its claim (bound, of an expandable class) is expanded by the real
    // server's rules. It never shrinks.
    let grow = ["memory=2048", "cpus=2", "size=20"];
    // Taking the disk away made the VM again, and its disks with it: CDI makes their claims
    // again a moment later.
    cluster.wait_for(Duration::from_secs(10), "kv1's claim made again", |c| {
        c.object(&format!(
            "/api/v1/namespaces/{ns}/persistentvolumeclaims/kv1-disk0"
        ))
        .is_some_and(|claim| claim["status"]["phase"] == "Bound")
    });
    let grown = run(&["apply", "--yes"], &grow);
    assert!(grown.ok(), "{}", grown.text());
    let claim = cluster
        .object(&format!(
            "/api/v1/namespaces/{ns}/persistentvolumeclaims/kv1-disk0"
        ))
        .expect("the disk's claim");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "20Gi");
    let shrink = run(&["apply", "--yes"], &["memory=2048", "cpus=2", "size=10"]);
    assert_eq!(shrink.code(), Some(1), "{}", shrink.text());
    assert!(
        shrink
            .stderr
            .contains("disk kv1-disk0 would shrink from 20Gi to 10Gi"),
        "{}",
        shrink.stderr
    );

    // A VM dropped from the plan is deleted, with what it owns (the garbage collector's work).
    let dropped = run(
        &["apply", "--yes"],
        &["memory=2048", "cpus=2", "size=20", "second=false"],
    );
    assert!(dropped.ok(), "{}", dropped.text());
    assert!(cluster.object(&format!("{vms}/kv2")).is_none());
    assert!(cluster.object(&vm).is_some());

    // Destroy takes everything of the plan's but the network the other VM is on, and says so;
    // what the VMs owned goes with them.
    let destroyed = run(&["destroy", "--yes"], &["second=false", "size=20"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(
        destroyed.stderr.replace('\n', " ").contains(
            "networkattachmentdefinition/kvnet is kept, not deleted: vm/theirs (made outside any \
             plan, stopped) is attached to it"
        ),
        "{}",
        destroyed.stderr
    );
    let kept =
        format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/kvnet");
    cluster.wait_for(Duration::from_secs(30), "the garbage collected", |c| {
        c.paths() == [kept.clone(), theirs.clone()]
    });
}

/// A delete that another controller's finalizer holds fails within the provider's
/// `delete_timeout`, naming the finalizer; once it is removed, destroy finishes.
#[test]
fn a_delete_held_by_a_finalizer_says_what_holds_it() {
    let Some(cluster) = RealCluster::start("real-finalizer") else {
        return;
    };
    let ns = cluster.ns().to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), &cluster);
    let plan_file = tmp.path().join("held.yml");
    std::fs::write(
        &plan_file,
        "held:\n  type: network\n  cidr: 10.126.0.0/24\n",
    )
    .expect("plan");
    let run = |args: &[&str]| -> Ran {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "kv-quick"])
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let applied = run(&["apply", "--yes"]);
    assert!(applied.ok(), "{}", applied.text());
    let nad =
        format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions/held");
    let merge = "application/merge-patch+json";
    cluster
        .send(
            http::Method::PATCH,
            &nad,
            merge,
            serde_json::json!({"metadata": {"finalizers": ["example.io/hold"]}}),
        )
        .expect("another controller holds it");
    let started = Instant::now();
    let held = run(&["destroy", "--yes"]);
    assert_eq!(held.code(), Some(1), "{}", held.text());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(
        held.stderr.replace('\n', " ").contains(
            "still there 3 s after it was deleted: it waits for finalizer example.io/hold"
        ),
        "{}",
        held.stderr
    );
    cluster
        .send(
            http::Method::PATCH,
            &nad,
            merge,
            serde_json::json!({"metadata": {"finalizers": null}}),
        )
        .expect("the controller lets go");
    let destroyed = run(&["destroy", "--yes"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(cluster.object(&nad).is_none());
}

/// A network attachment and a VM another tool made (siteplan's own spec, none of its marks;
/// the VM with less memory) are refused, then adopted when asked: the diff shows both adopted
/// and the VM's memory changing, apply writes the plan's marks and the memory, and they are
/// the plan's from then on (destroy deletes them).
#[test]
fn objects_another_tool_made_are_adopted_when_asked() {
    let Some(cluster) = RealCluster::start("real-adopt") else {
        return;
    };
    let ns = cluster.ns().to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), &cluster);
    let plan_file = tmp.path().join("adopted.yml");
    std::fs::write(
        &plan_file,
        "adopted:\n  type: network\n  cidr: 10.127.0.0/24\n\
         adoptvm:\n  memory: 512\n  numcpus: 1\n  nets: [adopted]\n  disks: []\n  \
         cloudinit: false\n  start: false\n",
    )
    .expect("plan");
    let run = |args: &[&str], more: &[&str]| -> Ran {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "kv"])
            .args(more)
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    // What siteplan would send, made by another tool: the same specs, without the marks, and
    // the VM with 256 MiB.
    let export = run(&["export"], &[]);
    assert!(export.ok(), "{}", export.text());
    let object = |kind: &str| -> serde_json::Value {
        let mut object: serde_json::Value = serde_norway::from_str(
            export
                .stdout
                .split("\n---")
                .find(|d| d.contains(&format!("kind: {kind}")))
                .unwrap_or_else(|| panic!("no {kind} in {}", export.stdout)),
        )
        .expect("YAML");
        let name = object["metadata"]["name"].clone();
        object["metadata"] = serde_json::json!({ "name": name });
        object
    };
    let nads = format!("/apis/k8s.cni.cncf.io/v1/namespaces/{ns}/network-attachment-definitions");
    let vms = format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines");
    cluster.seed(&nads, object("NetworkAttachmentDefinition"));
    let mut vm = object("VirtualMachine");
    vm["spec"]["template"]["spec"]["domain"]["memory"]["guest"] = "256Mi".into();
    vm["spec"]["template"]["spec"]["domain"]["resources"]["requests"]["memory"] = "256Mi".into();
    cluster.seed(&vms, vm);

    let refused = run(&["diff"], &[]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(
        refused.stderr.contains("was not created by siteplan"),
        "{}",
        refused.stderr
    );
    let adopt = ["--adopt", "adopted", "--adopt", "adoptvm"];
    let diff = run(&["diff"], &adopt);
    assert!(diff.ok(), "{}", diff.text());
    crate::harness::report(&format!(
        "the diff of an adoption on KubeVirt:\n{}",
        diff.stdout
    ));
    for address in [
        "<= networkattachmentdefinition/adopted",
        "<= virtualmachine/adoptvm",
    ] {
        assert!(diff.stdout.contains(address), "{}", diff.stdout);
    }
    assert!(diff.stdout.contains("256Mi"), "{}", diff.stdout);
    let applied = run(&["apply", "--yes"], &adopt);
    assert!(applied.ok(), "{}", applied.text());
    for path in [format!("{nads}/adopted"), format!("{vms}/adoptvm")] {
        let live = cluster.object(&path).expect("still there");
        assert_eq!(
            live["metadata"]["labels"]["app.kubernetes.io/managed-by"], "siteplan",
            "{live:#}"
        );
    }
    let live = cluster.object(&format!("{vms}/adoptvm")).expect("the VM");
    assert_eq!(
        live["spec"]["template"]["spec"]["domain"]["memory"]["guest"], "512Mi",
        "{live:#}"
    );
    let clean = run(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(clean.code(), Some(0), "{}", clean.text());
    let destroyed = run(&["destroy", "--yes"], &[]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(cluster.object(&format!("{nads}/adopted")).is_none());
    assert!(cluster.object(&format!("{vms}/adoptvm")).is_none());
}
