//! The KubeVirt backend against the stand-in API server (`kube_api.rs`), through the `plan`
//! binary: a real `kube::Client` over TCP on 127.0.0.1.

#![cfg(feature = "kubevirt")]
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::{Plan, Ran};
use crate::kube_api::{Cluster, StandIn};

/// A providers file with KubeVirt providers: the stand-in in namespace `lab`, the stand-in in
/// a namespace it lacks, a second stand-in without KubeVirt, and a port where nothing listens.
fn providers(dir: &Path, good: &StandIn, bare: &StandIn) -> PathBuf {
    let gone = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let gone_addr = gone.local_addr().expect("addr");
    drop(gone);
    let nowhere = StandIn::kubeconfig_for(dir, "nowhere", &gone_addr.to_string(), "lab");
    let file = dir.join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "health_timeout: 3\nproviders:\n\
             \x20 - {{name: play, type: sandbox, dir: {sandbox}}}\n\
             \x20 - {{name: kv, type: kubevirt, kubeconfig: {good}}}\n\
             \x20 - {{name: kv-nons, type: kubevirt, kubeconfig: {good}, namespace: missing}}\n\
             \x20 - {{name: kv-bare, type: kubevirt, kubeconfig: {bare}}}\n\
             \x20 - {{name: kv-gone, type: kubevirt, kubeconfig: {nowhere}}}\n",
            good = good.kubeconfig(&dir.join("good"), "lab").display(),
            bare = bare.kubeconfig(&dir.join("bare"), "lab").display(),
            nowhere = nowhere.display(),
            sandbox = dir.join("play").display(),
        ),
    )
    .expect("providers file");
    file
}

fn plan(file: &Path, state: &Path, args: &[&str]) -> Ran {
    Plan::new(args).providers(file, state).run()
}

/// The first line of `text` that holds `needle` (empty if none).
fn line_with<'t>(text: &'t str, needle: &str) -> &'t str {
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_default()
}

#[test]
fn kubevirt_providers_show_their_health_and_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster {
        kubevirt: false,
        ..Cluster::default()
    });
    let file = providers(tmp.path(), &good, &bare);
    let state = tmp.path().join("state");

    let started = Instant::now();
    let out = plan(&file, &state, &["provider", "list", "-o", "json"]);
    assert!(started.elapsed() < Duration::from_secs(20), "list hung");
    assert!(out.ok(), "{}", out.text());
    let list: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let health = |name: &str| -> (String, String) {
        let p = list["results"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{}", out.stdout));
        assert_eq!(p["provider_type"], "kubevirt");
        (
            p["health_status"].as_str().unwrap_or_default().to_string(),
            p["health_reason"].as_str().unwrap_or_default().to_string(),
        )
    };
    assert_eq!(health("kv"), ("ready".into(), String::new()));
    let (status, reason) = health("kv-nons");
    assert_eq!(status, "unhealthy");
    assert!(
        reason.contains("namespace missing does not exist"),
        "{reason}"
    );
    let (status, reason) = health("kv-bare");
    assert_eq!(status, "unhealthy");
    assert!(reason.contains("does not serve kubevirt.io/v1"), "{reason}");
    let (status, _) = health("kv-gone");
    assert_eq!(status, "unavailable");
    // The health check looked the cluster up: discovery, the namespace, the default class.
    let asked = good.requests();
    assert!(asked.iter().any(|r| r == "GET /apis"), "{asked:?}");
    assert!(
        asked
            .iter()
            .any(|r| r == "GET /apis/storage.k8s.io/v1/storageclasses"),
        "{asked:?}"
    );
}

#[test]
fn a_plan_kubevirt_cannot_hold_is_refused_and_nothing_is_changed() {
    let tmp = tempfile::tempdir().expect("tmp");
    let good = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster::default());
    let file = providers(tmp.path(), &good, &bare);
    let out = Plan::new(&["apply", "--yes", "--provider", "kv", "examples/lab.yml"])
        .providers(&file, &tmp.path().join("state"))
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr
            .contains("pool/labpool: provider `kv` has no storage in host directories"),
        "{}",
        out.stderr
    );
    // A storage class the cluster does not have is found missing before anything is made.
    let plan_file = tmp.path().join("noclass.yml");
    std::fs::write(&plan_file, "vm1:\n  pool: nosuch\n  nets: [default]\n").expect("plan");
    let out = Plan::new(&["apply", "--yes", "--provider", "kv"])
        .args(&[&plan_file.to_string_lossy()])
        .providers(&file, &tmp.path().join("state"))
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(out.stderr.contains("pool/nosuch"), "{}", out.stderr);
    // Lab snapshots are refused by capability, before anything is asked of a VM.
    let vm_file = tmp.path().join("one.yml");
    std::fs::write(&vm_file, "vm1:\n  nets: [default]\n").expect("plan");
    let out = Plan::new(&["snapshot", "create", "--provider", "kv"])
        .args(&[&vm_file.to_string_lossy(), "base"])
        .providers(&file, &tmp.path().join("state"))
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr
            .contains("error: kv: the kubevirt provider cannot take lab snapshots"),
        "{}",
        out.stderr
    );
    // Nothing but the run's own lock, made and given back.
    assert!(
        good.requests()
            .iter()
            .all(|r| r.starts_with("GET ") || r.contains("/coordination.k8s.io/v1/")),
        "{:?}",
        good.requests()
    );
    assert!(!good.paths().iter().any(|p| p.contains("/leases/")));
}

/// A small lab on the stand-in, with parameters to change it.
const LAB: &str = "parameters:\n  memory: 1024\n  cpus: 1\n  second: true\n  more: false\n  size: 10\n\
kvnet:\n  type: network\n  cidr: 10.121.0.0/24\n\
kvnet2:\n  type: network\n  cidr: 10.125.0.0/24\n\
bookworm:\n  type: image\n  url: https://example.org/debian-12.qcow2\n\
kv1:\n  image: bookworm\n  memory: {{ memory }}\n  numcpus: {{ cpus }}\n  cmds: [echo hello]\n  \
disks: [{{ size }}{% if more %}, 5{% endif %}]\n  nets: [default, kvnet{% if more %}, kvnet2{% endif %}]\n\
{% if second %}kv2:\n  image: bookworm\n  start: false\n  nets: [kvnet]\n{% endif %}";

#[test]
fn a_plan_applies_to_kubevirt_diffs_clean_changes_and_is_destroyed_leaving_others_alone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster::default());
    let file = providers(tmp.path(), &cluster, &bare);
    let plan_file = tmp.path().join("kvlab.yml");
    std::fs::write(&plan_file, LAB).expect("plan");
    // Another tool's VM, on the plan's network, which KubeVirt runs.
    let theirs = "/apis/kubevirt.io/v1/namespaces/lab/virtualmachines/theirs";
    cluster.seed(
        theirs,
        serde_json::json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": "theirs", "namespace": "lab"}, "spec": {"runStrategy": "Always",
            "template": {"spec": {"networks": [{"name": "n", "multus": {"networkName": "lab/kvnet"}}]}}},
            "status": {"printableStatus": "Running"}}),
    );
    let run = |args: &[&str], params: &[&str]| {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "kv"])
            .params(params)
            .providers(&file, &tmp.path().join("state"))
            .run()
    };

    let applied = run(&["apply", "--yes", "--wait", "--wait-timeout", "20"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(
        applied.stderr.contains("0 failed, 0 skipped"),
        "{}",
        applied.text()
    );
    // The table: kv1's pod address from its instance's status; kv2 is halted.
    let row = |vm: &str| {
        applied
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{vm} ")))
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert!(
        row("kv1").starts_with("kv1 kv running 10.244.0."),
        "{}",
        applied.stdout
    );
    assert!(row("kv1").ends_with("(vmi)"), "{}", applied.stdout);
    assert_eq!(row("kv2"), "kv2 kv stopped -", "{}", applied.stdout);
    let vm = "/apis/kubevirt.io/v1/namespaces/lab/virtualmachines/kv1";
    let made = cluster.object(vm).expect("kv1 exists");
    assert_eq!(made["metadata"]["labels"]["siteplan.io/plan"], "kvlab");
    assert_eq!(made["metadata"]["annotations"]["kcli/plan"], "kvlab");
    assert_eq!(
        made["spec"]["template"]["spec"]["domain"]["memory"]["guest"],
        "1024Mi"
    );
    let secret = cluster
        .object("/api/v1/namespaces/lab/secrets/kv1-cloudinit")
        .expect("the cloud-init secret");
    assert!(secret["data"]["userdata"].is_string(), "{secret}");
    for path in [
        "/apis/cdi.kubevirt.io/v1beta1/namespaces/lab/datavolumes/bookworm",
        "/apis/k8s.cni.cncf.io/v1/namespaces/lab/network-attachment-definitions/kvnet",
        "/apis/kubevirt.io/v1/namespaces/lab/virtualmachines/kv2",
    ] {
        assert!(cluster.object(path).is_some(), "{path} was not made");
    }

    let diff = run(&["diff"], &[]);
    assert!(diff.ok(), "{}", diff.text());
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);
    // The import went on meanwhile; its progress is CDI's business, not a change of the plan.
    let image = cluster
        .object("/apis/cdi.kubevirt.io/v1beta1/namespaces/lab/datavolumes/bookworm")
        .expect("the image");
    assert_eq!(image["status"]["phase"], "Succeeded", "{image}");

    // More memory and cpus for the running VM: it must restart to get them.
    let diff = run(&["diff"], &["memory=2048", "cpus=2"]);
    assert!(
        diff.stdout
            .contains("~ virtualmachine/kv1 (needs a reboot)"),
        "{}",
        diff.stdout
    );
    let memory = line_with(&diff.stdout, "spec.template.spec.domain.memory.guest:");
    assert!(
        memory.ends_with("\"1024Mi\" → \"2048Mi\""),
        "{}",
        diff.stdout
    );
    let changed = run(&["apply", "--yes"], &["memory=2048", "cpus=2"]);
    assert!(changed.ok(), "{}", changed.text());
    // KubeVirt says so (`RestartRequired`), and the instance tells what it runs with.
    let diff = run(&["diff", "--detailed-exitcode"], &["memory=2048", "cpus=2"]);
    assert_eq!(diff.code(), Some(2), "{}", diff.text());
    assert!(
        diff.stdout.contains("↻ virtualmachine/kv1")
            && line_with(&diff.stdout, "spec.template.spec.domain.memory.guest:")
                .ends_with("\"1024Mi\" → \"2048Mi\""),
        "{}",
        diff.stdout
    );
    let restarted = run(&["apply", "--yes", "--restart"], &["memory=2048", "cpus=2"]);
    assert!(
        restarted.ok() && restarted.stderr.contains("vm kv1 restarted"),
        "{}",
        restarted.text()
    );
    assert!(cluster
        .requests()
        .iter()
        .any(|r| r.ends_with("/virtualmachines/kv1/restart")));
    let diff = run(&["diff"], &["memory=2048", "cpus=2"]);
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);

    // Its serial console, through KubeVirt's console subresource (a websocket).
    let attached = Plan::new(&["console"])
        .args(&[&plan_file.to_string_lossy(), "kv1", "--provider", "kv"])
        .params(&["memory=2048", "cpus=2"])
        .providers(&file, &tmp.path().join("state"))
        .spawn_piped();
    let (shown, said) =
        crate::harness::drive_console(attached, "kv1 login:", Duration::from_secs(20));
    assert!(shown.contains("Debian GNU/Linux 12 kv1 ttyS0"), "{shown}");
    assert!(said.contains("Detached from vm/kv1."), "{said}");

    // Stopped and started through KubeVirt's subresources: the plan says it runs.
    let stopped = run(&["stop"], &["memory=2048", "cpus=2"]);
    assert!(stopped.ok(), "{}", stopped.text());
    assert_eq!(
        cluster.object(vm).expect("kv1")["spec"]["runStrategy"],
        "Halted"
    );
    let status = run(&["status"], &["memory=2048", "cpus=2"]);
    assert_eq!(status.code(), Some(2), "{}", status.text());
    let started = run(&["start"], &["memory=2048", "cpus=2"]);
    assert!(started.ok(), "{}", started.text());
    let diff = run(&["diff"], &["memory=2048", "cpus=2"]);
    assert!(diff.stdout.starts_with("No changes."), "{}", diff.stdout);

    // A disk and a NIC more: the VM gets them when it restarts, and is not made again (its
    // cloud-init Secret is, with the new NIC in its network data).
    let more = ["memory=2048", "cpus=2", "more=true"];
    let diff = run(&["diff"], &more);
    // The Secret's digest changes, and is never shown.
    assert!(
        diff.stdout
            .contains("content.sha256: \"(sensitive)\" → \"(sensitive, changed)\""),
        "{}",
        diff.stdout
    );
    assert!(
        diff.stdout
            .contains("~ virtualmachine/kv1 (needs a reboot)")
            && diff.stdout.contains("spec.dataVolumeTemplates")
            && diff.stdout.contains("spec.template.spec.networks")
            && !diff.stdout.contains("-/+ virtualmachine"),
        "{}",
        diff.stdout
    );
    // They wait for a restart, which --restart gives them.
    let grown = run(&["apply", "--yes", "--restart"], &more);
    assert!(grown.ok(), "{}", grown.text());
    let made = cluster.object(vm).expect("kv1");
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
    let clean = run(&["diff"], &more);
    assert!(
        clean.stdout.starts_with("No changes."),
        "{}\n{}",
        clean.stdout,
        grown.stderr
    );
    let back = run(&["apply", "--yes", "--restart"], &["memory=2048", "cpus=2"]);
    assert!(back.ok(), "{}", back.text());

    // A disk grows in place: its claim is expanded, and the VM is neither restarted nor made
    // again. It never shrinks: that plan is refused, and nothing changes.
    let grow = ["memory=2048", "cpus=2", "size=20"];
    let diff = run(&["diff"], &grow);
    assert!(
        diff.stdout.contains("~ virtualmachine/kv1 (live)") && !diff.stdout.contains("reboot"),
        "{}",
        diff.stdout
    );
    let grown = run(&["apply", "--yes"], &grow);
    assert!(grown.ok(), "{}", grown.text());
    let claim = cluster
        .object("/api/v1/namespaces/lab/persistentvolumeclaims/kv1-disk0")
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
    let back = run(&["apply", "--yes"], &grow);
    assert!(back.ok(), "{}", back.text());

    // Drift: kubectl stops the VM (a merge patch, which takes the field from siteplan), and
    // another controller annotates it. The plan says it runs, and the diff says so; apply
    // takes the field back and leaves the annotation alone.
    let merge = "application/merge-patch+json";
    cluster
        .send(
            axum::http::Method::PATCH,
            &format!("{vm}?fieldManager=kubectl-edit"),
            merge,
            serde_json::json!({"spec": {"runStrategy": "Halted"}}),
        )
        .expect("kubectl stops the VM");
    cluster
        .send(
            axum::http::Method::PATCH,
            &format!("{vm}?fieldManager=backup-operator"),
            merge,
            serde_json::json!({"metadata": {"annotations": {"backup.example.io/last": "today"}}}),
        )
        .expect("a controller annotates the VM");
    let diff = run(&["diff"], &grow);
    let strategy = line_with(&diff.stdout, "spec.runStrategy:");
    assert!(
        strategy.ends_with("\"Halted\" → \"Always\""),
        "{}",
        diff.stdout
    );
    assert!(
        !diff.stdout.contains("backup.example.io"),
        "{}",
        diff.stdout
    );
    let restored = run(&["apply", "--yes"], &grow);
    assert!(restored.ok(), "{}", restored.text());
    let now = cluster.object(vm).expect("kv1");
    assert_eq!(now["spec"]["runStrategy"], "Always");
    assert_eq!(
        now["metadata"]["annotations"]["backup.example.io/last"],
        "today"
    );
    assert!(run(&["diff", "--detailed-exitcode"], &grow).ok());

    // A VM dropped from the plan is deleted; everything else stays. The diff says which
    // deletes lose data, as KubeVirt's rules say: the VirtualMachine does (with the volumes
    // its templates own), its cloud-init Secret is only deleted.
    let planned = run(
        &["diff"],
        &["memory=2048", "cpus=2", "size=20", "second=false"],
    );
    assert!(planned.ok(), "{}", planned.text());
    let deletes: Vec<&str> = planned
        .stdout
        .lines()
        .filter(|l| l.starts_with("  - "))
        .collect();
    for (kind, impact) in [("virtualmachine/", "(data loss)"), ("secret/", "(deleted)")] {
        let line = deletes
            .iter()
            .find(|l| l.contains(kind))
            .unwrap_or_else(|| panic!("no {kind} deleted:\n{}", planned.stdout));
        assert!(line.ends_with(impact), "{line}");
    }
    let dropped = run(
        &["apply", "--yes"],
        &["memory=2048", "cpus=2", "size=20", "second=false"],
    );
    assert!(dropped.ok(), "{}", dropped.text());
    assert!(cluster
        .object("/apis/kubevirt.io/v1/namespaces/lab/virtualmachines/kv2")
        .is_none());
    assert!(cluster.object(vm).is_some());

    // Destroy takes everything of the plan's but the network the other VM is on, and says so.
    let destroyed = run(&["destroy", "--yes"], &["second=false", "size=20"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(
        destroyed.stderr.replace('\n', " ").contains(
            "networkattachmentdefinition/kvnet is kept, not deleted: vm/theirs (made outside any \
             plan, running) is attached to it"
        ),
        "{}",
        destroyed.stderr
    );
    let kept = "/apis/k8s.cni.cncf.io/v1/namespaces/lab/network-attachment-definitions/kvnet";
    let left: Vec<String> = cluster
        .paths()
        .into_iter()
        .filter(|p| p.contains("/namespaces/lab/") && !p.ends_with("/namespaces/lab"))
        .collect();
    assert_eq!(
        left,
        [kept.to_string(), theirs.to_string()],
        "destroy left or took too much"
    );
}

/// One plan over two providers: a VM on the sandbox and one on the cluster, each with the
/// network they share made where it is needed; one diff, one run, one destroy.
#[test]
fn a_plan_spread_over_a_sandbox_and_kubevirt() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster::default());
    let file = providers(tmp.path(), &cluster, &bare);
    let plan_file = tmp.path().join("spread.yml");
    std::fs::write(
        &plan_file,
        "shared:\n  type: network\n  cidr: 10.122.0.0/24\n\
         local1:\n  virttype: qemu\n  nets: [shared]\n\
         remote1:\n  client: kv\n  nets: [default, shared]\n",
    )
    .expect("plan");
    let run = |args: &[&str]| {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "play"])
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let diff = run(&["diff"]);
    assert!(diff.ok(), "{}", diff.text());
    for line in [
        "+ network/shared on play",
        "+ vm/local1 on play",
        "+ networkattachmentdefinition/shared on kv",
        "+ virtualmachine/remote1 on kv",
    ] {
        assert!(
            diff.stdout.contains(line),
            "no `{line}` in:\n{}",
            diff.stdout
        );
    }
    let applied = run(&["apply", "--yes"]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(cluster
        .object("/apis/kubevirt.io/v1/namespaces/lab/virtualmachines/remote1")
        .is_some());
    let again = run(&["diff"]);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
    let destroyed = run(&["destroy", "--yes"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(
        cluster
            .paths()
            .iter()
            .all(|p| !p.contains("/namespaces/lab/")),
        "{:?}",
        cluster.paths()
    );
}

/// A change the cluster refuses fails, what depends on it is skipped, the rest is made, the
/// exit status says so, and a later run (once the cluster allows it) finishes the job.
#[test]
fn a_refused_object_skips_what_needs_it_and_the_rest_is_made() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = StandIn::start(Cluster {
        rejected: vec!["kvnet"],
        ..Cluster::default()
    });
    let bare = StandIn::start(Cluster::default());
    let file = providers(tmp.path(), &cluster, &bare);
    let plan_file = tmp.path().join("kvlab.yml");
    std::fs::write(&plan_file, LAB).expect("plan");
    let out = Plan::new(&["apply", "--yes", "--provider", "kv"])
        .args(&[&plan_file.to_string_lossy()])
        .providers(&file, &tmp.path().join("state"))
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    let log = out.text();
    assert!(
        log.contains("networkattachmentdefinition/kvnet FAILED"),
        "{log}"
    );
    assert!(
        log.contains("admission webhook denied the request"),
        "{log}"
    );
    assert!(
        log.contains(
            "virtualmachine/kv1 skipped, because networkattachmentdefinition/kvnet failed"
        ),
        "{log}"
    );
    // What does not need the network was made.
    assert!(cluster
        .object("/apis/cdi.kubevirt.io/v1beta1/namespaces/lab/datavolumes/bookworm")
        .is_some());
    assert!(cluster
        .object("/apis/kubevirt.io/v1/namespaces/lab/virtualmachines/kv1")
        .is_none());

    cluster.allow_all();
    let again = Plan::new(&["apply", "--yes", "--provider", "kv"])
        .args(&[&plan_file.to_string_lossy()])
        .providers(&file, &tmp.path().join("state"))
        .run();
    assert!(again.ok(), "{}", again.text());
    assert!(cluster
        .object("/apis/kubevirt.io/v1/namespaces/lab/virtualmachines/kv1")
        .is_some());
}

/// Runs killed at every point between two writes to the cluster (`SITEPLAN_CRASH_AT=N`), each
/// followed by a run that must finish the job: create, change (memory, a VM dropped), destroy.
#[test]
fn kubevirt_runs_killed_at_every_point_are_finished_by_the_next_run() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster::default());
    let file = providers(tmp.path(), &cluster, &bare);
    let plan_file = tmp.path().join("kvlab.yml");
    std::fs::write(&plan_file, LAB).expect("plan");
    let run = |command: &str, params: &[&str], crash_at: Option<usize>| {
        Plan::new(&[command, "-q"])
            .args(if command == "diff" {
                &[][..]
            } else {
                &["--yes", "--parallelism", "1"][..]
            })
            .args(&[&plan_file.to_string_lossy(), "--provider", "kv"])
            .params(params)
            .providers(&file, &tmp.path().join("state"))
            .env(
                "SITEPLAN_CRASH_AT",
                crash_at.map(|n| n.to_string()).unwrap_or_default(),
            )
            .run()
    };
    let steps: [(&str, &[&str]); 3] = [
        ("apply", &[]),
        ("apply", &["memory=2048", "second=false"]),
        ("destroy", &["memory=2048", "second=false"]),
    ];
    let mut kills = 0;
    for (step, (command, params)) in steps.iter().enumerate() {
        // Where the earlier steps left it.
        for (earlier, earlier_params) in &steps[..step] {
            let ran = run(earlier, earlier_params, None);
            assert!(ran.ok(), "{}", ran.text());
        }
        for n in 1.. {
            let crashed = run(command, params, Some(n));
            if crashed.ok() {
                break; // fewer than n points: the step ran to its end
            }
            assert!(crashed.stderr.contains("crash point"), "{}", crashed.text());
            kills += 1;
            let finished = run(command, params, None);
            assert!(
                finished.ok(),
                "after a kill at point {n} of {command} {params:?}:\n{}",
                finished.text()
            );
            if *command == "apply" {
                let diff = run("diff", params, None);
                // Apply restarts nothing without --restart: a VM may wait for one.
                let settled = diff.stdout.starts_with("No changes")
                    || diff
                        .stdout
                        .contains("Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy.");
                assert!(
                    settled,
                    "after a kill at point {n} of {command} {params:?}:\n{}",
                    diff.stdout
                );
            } else {
                assert!(
                    cluster
                        .paths()
                        .iter()
                        .all(|p| !p.contains("/namespaces/lab/")),
                    "destroy after a kill at point {n} left {:?}",
                    cluster.paths()
                );
            }
            // Back to where this step starts.
            let _ = run("destroy", &["second=true"], None);
            for (earlier, earlier_params) in &steps[..step] {
                let ran = run(earlier, earlier_params, None);
                assert!(ran.ok(), "{}", ran.text());
            }
        }
        let _ = run("destroy", &["second=true"], None);
    }
    assert!(kills >= 10, "only {kills} crash points were reached");
    crate::harness::report(&format!(
        "kubevirt crash suite: {kills} runs killed, each finished by the next"
    ));
}

/// The same plan's life on a real cluster with KubeVirt and CDI, when
/// `SITEPLAN_TEST_KUBECONFIG` names its kubeconfig (and `SITEPLAN_TEST_KUBE_NAMESPACE` a
/// namespace to use, default `default`): healthy, applied, diffs clean, changed, destroyed,
/// all through the binary. Skipped, saying so, without it: no cluster can run here.
#[test]
fn a_plan_on_a_real_kubevirt_cluster() {
    let test = "a_plan_on_a_real_kubevirt_cluster";
    let Some(kubeconfig) = std::env::var_os("SITEPLAN_TEST_KUBECONFIG") else {
        crate::harness::report(&format!(
            "SKIPPED {test}: SITEPLAN_TEST_KUBECONFIG is not set (no Kubernetes API server can \
             run on these machines; point it at a cluster with KubeVirt and CDI)"
        ));
        return;
    };
    let namespace =
        std::env::var("SITEPLAN_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "providers:\n  - {{name: real, type: kubevirt, kubeconfig: {}, namespace: {namespace}}}\n",
            PathBuf::from(kubeconfig).display()
        ),
    )
    .expect("providers file");
    let plan_file = tmp.path().join("kvlab.yml");
    std::fs::write(&plan_file, LAB).expect("plan");
    let run = |args: &[&str], params: &[&str]| {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "real"])
            .params(params)
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let listed = Plan::new(&["provider", "get", "real"])
        .providers(&file, &tmp.path().join("state"))
        .run();
    assert!(listed.stdout.contains("READY"), "{}", listed.text());
    let _ = run(&["destroy", "--yes"], &[]);
    for (args, params) in [
        (&["apply", "--yes"][..], &[][..]),
        (&["apply", "--yes"][..], &["memory=2048"][..]),
    ] {
        let applied = run(args, params);
        assert!(applied.ok(), "{}", applied.text());
        let diff = run(&["diff"], params);
        assert!(diff.stdout.starts_with("No changes"), "{}", diff.stdout);
    }
    let destroyed = run(&["destroy", "--yes"], &["memory=2048"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
}

/// Every example applies to the stand-in and then diffs clean, or is refused before anything
/// changes for what KubeVirt cannot hold (a pool entry: a host directory), saying so.
#[test]
fn every_example_applies_to_kubevirt_or_is_refused_saying_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cluster = StandIn::start(Cluster::default());
    let bare = StandIn::start(Cluster::default());
    let file = providers(tmp.path(), &cluster, &bare);
    let mut applied = Vec::new();
    let mut examples: Vec<PathBuf> = std::fs::read_dir("examples")
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    examples.sort();
    for example in examples {
        let name = example.display().to_string();
        let run = |args: &[&str]| {
            // The boot lab reads the test image outside its directory, where
            // `tests/guest-image/build` leaves it: allowed as a user would allow it.
            Plan::new(args)
                .args(&[&name, "--provider", "kv"])
                .args(&["--allow-read", "target/guest-image"])
                .providers(&file, &tmp.path().join("state"))
                .run()
        };
        let before = cluster.requests().len();
        let out = run(&["apply", "--yes"]);
        if !out.ok() {
            assert!(
                out.stderr.contains("has no storage in host directories"),
                "{name} was refused for another reason:\n{}",
                out.text()
            );
            let writes = cluster.requests()[before..]
                .iter()
                .filter(|r| !r.starts_with("GET "))
                .count();
            assert_eq!(writes, 0, "{name} was refused after changing something");
            continue;
        }
        let diff = run(&["diff"]);
        assert!(
            diff.stdout.starts_with("No changes."),
            "{name}:\n{}",
            diff.stdout
        );
        applied.push(name);
    }
    assert!(applied.len() >= 3, "only {applied:?} applied");
}

mod lease;

mod real;

mod export;
