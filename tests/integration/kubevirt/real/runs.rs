//! Whole runs on a real server: a refusal by the server's own admission (a ResourceQuota), a
//! plan spread over the sandbox and the cluster, runs killed at every point, every example.

use super::*;

/// A change the server refuses (a quota allows no network attachment) fails, what depends on
/// it is skipped, the rest is made, the exit status says so, and a later run (once the quota
/// is gone) finishes the job.
#[test]
fn an_object_the_server_refuses_skips_what_needs_it_and_the_rest_is_made() {
    let Some(cluster) = RealCluster::start("real-refused") else {
        return;
    };
    let ns = cluster.ns().to_string();
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), &cluster);
    let quotas = format!("/api/v1/namespaces/{ns}/resourcequotas");
    cluster.seed(
        &quotas,
        serde_json::json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "no-networks"},
            "spec": {"hard": {"count/network-attachment-definitions.k8s.cni.cncf.io": "0"}}}),
    );
    // The quota controller has seen the quota: admission enforces it from then on, refusing
    // with "exceeded quota" once the controller has counted what is there, and with "status
    // unknown for quota" before (how soon depends on the machine's load).
    cluster.wait_for(Duration::from_secs(30), "the quota seen", |c| {
        c.object(&format!("{quotas}/no-networks"))
            .is_some_and(|q| q["status"]["hard"].is_object())
    });
    let plan_file = tmp.path().join("kvlab.yml");
    std::fs::write(&plan_file, LAB).expect("plan");
    let apply = || {
        Plan::new(&["apply", "--yes", "--provider", "kv"])
            .args(&[&plan_file.to_string_lossy()])
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let out = apply();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    let log = out.text();
    assert!(
        log.contains("networkattachmentdefinition/kvnet FAILED")
            && (log.contains("exceeded quota") || log.contains("status unknown for quota")),
        "{log}"
    );
    assert!(
        log.contains(
            "virtualmachine/kv1 skipped, because networkattachmentdefinition/kvnet failed"
        ),
        "{log}"
    );
    // What does not need the network was made.
    let vms = format!("/apis/kubevirt.io/v1/namespaces/{ns}/virtualmachines");
    assert!(cluster
        .object(&format!(
            "/apis/cdi.kubevirt.io/v1beta1/namespaces/{ns}/datavolumes/bookworm"
        ))
        .is_some());
    assert!(cluster.object(&format!("{vms}/kv1")).is_none());

    cluster
        .send(
            http::Method::DELETE,
            &format!("{quotas}/no-networks"),
            "application/json",
            serde_json::json!({}),
        )
        .expect("the quota is lifted");
    // The server's admission learns of it from its own cache: a moment later.
    let start = Instant::now();
    let again = loop {
        std::thread::sleep(Duration::from_millis(500));
        let again = apply();
        if again.ok() || start.elapsed() > Duration::from_secs(15) {
            break again;
        }
    };
    assert!(again.ok(), "{}", again.text());
    assert!(cluster.object(&format!("{vms}/kv1")).is_some());
}

/// One plan over two providers: a VM on the sandbox and one on the cluster, each with the
/// network they share made where it is needed; one diff, one run, one destroy.
#[test]
fn a_plan_spread_over_a_sandbox_and_a_real_server() {
    let Some(cluster) = RealCluster::start("real-spread") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), &cluster);
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
    let vm = format!(
        "/apis/kubevirt.io/v1/namespaces/{}/virtualmachines/remote1",
        cluster.ns()
    );
    assert!(cluster.object(&vm).is_some());
    let again = run(&["diff"]);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
    let destroyed = run(&["destroy", "--yes"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    cluster.wait_for(Duration::from_secs(30), "everything gone", |c| {
        c.paths().is_empty()
    });
}

/// `ignore_changes` on KubeVirt: the plan's keys it names leave the VM (and its cloud-init
/// Secret) as they are live, until they are taken out of it.
#[test]
fn ignore_changes_leave_a_kubevirt_vm_as_it_is() {
    let Some(cluster) = RealCluster::start("real-ignore") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), &cluster);
    let plan_file = tmp.path().join("ignore.yml");
    let write = |memory: u32, cmd: &str, ignore: &str| {
        std::fs::write(
            &plan_file,
            format!(
                "kvi:\n  memory: {memory}\n  start: false\n  cmds: ['{cmd}']\n  nets: [default]\n{ignore}"
            ),
        )
        .expect("plan");
    };
    let run = |args: &[&str]| {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy(), "--provider", "kv"])
            .providers(&file, &tmp.path().join("state"))
            .run()
    };
    let ignoring = "  ignore_changes: [memory, cmds]\n";
    write(512, "echo one", ignoring);
    let applied = run(&["apply", "--yes"]);
    assert!(applied.ok(), "{}", applied.text());
    write(2048, "echo two", ignoring);
    let diff = run(&["diff", "--detailed-exitcode"]);
    assert_eq!(diff.code(), Some(0), "{}", diff.text());
    // Taken out, both are changes again.
    write(2048, "echo two", "");
    let diff = run(&["diff", "--detailed-exitcode"]);
    assert!(
        diff.code() == Some(2)
            && diff
                .stdout
                .contains("spec.template.spec.domain.memory.guest")
            && diff.stdout.contains("secret/kvi-cloudinit"),
        "{}",
        diff.text()
    );
    let destroyed = run(&["destroy", "--yes"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
}

/// Runs killed at every point between two writes to the server (`SITEPLAN_CRASH_AT=N`), each
/// followed by a run that must finish the job: create, change (memory, a VM dropped), destroy.
#[test]
fn runs_killed_at_every_point_on_a_real_server_are_finished_by_the_next_run() {
    let Some(cluster) = RealCluster::start("real-crash") else {
        return;
    };
    let (tmp, file, plan_file) = lab(&cluster);
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
    // What a destroy must leave: nothing of the plan's (the garbage collector takes what the
    // VMs owned a moment later).
    let emptied = |after: &str| {
        cluster.wait_for(Duration::from_secs(30), after, |c| {
            c.paths().iter().all(|p| p.contains("/leases/"))
        });
    };
    let steps: [(&str, &[&str]); 3] = [
        ("apply", &[]),
        ("apply", &["memory=2048", "second=false"]),
        ("destroy", &["memory=2048", "second=false"]),
    ];
    let mut kills = 0;
    for (step, (command, params)) in steps.iter().enumerate() {
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
                emptied(&format!("destroy after a kill at point {n}"));
            }
            let _ = run("destroy", &["second=true"], None);
            emptied("the reset");
            for (earlier, earlier_params) in &steps[..step] {
                let ran = run(earlier, earlier_params, None);
                assert!(ran.ok(), "{}", ran.text());
            }
        }
        let _ = run("destroy", &["second=true"], None);
        emptied("the step's end");
    }
    assert!(kills >= 10, "only {kills} crash points were reached");
    crate::harness::report(&format!(
        "kubevirt crash suite on a real server: {kills} runs killed, each finished by the next"
    ));
}

/// Every example applies to the server and then diffs clean, or is refused before anything
/// changes for what KubeVirt cannot hold (a pool entry: a host directory), saying so.
#[test]
fn every_example_applies_to_a_real_server_or_is_refused_saying_why() {
    let Some(cluster) = RealCluster::start("real-examples") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let file = providers(tmp.path(), &cluster);
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
            Plan::new(args)
                .args(&[&name, "--provider", "kv"])
                .args(&["--allow-read", "target/guest-image"])
                .providers(&file, &tmp.path().join("state"))
                .run()
        };
        let mark = cluster.audit_mark();
        let out = run(&["apply", "--yes"]);
        if !out.ok() {
            assert!(
                out.stderr.contains("has no storage in host directories"),
                "{name} was refused for another reason:\n{}",
                out.text()
            );
            // Its lock, taken and given back, is all it wrote.
            let writes: Vec<String> = cluster
                .writes_since(mark)
                .into_iter()
                .filter(|w| !w.contains("/leases"))
                .collect();
            assert!(
                writes.is_empty(),
                "{name} was refused after writing {writes:?}"
            );
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

/// Two API servers ("clusters") as two providers of one providers file: a plan spreads its VMs
/// over them with `client:`, each cluster gets the network its VM needs, `plan provider list`
/// shows both with their health and their nodes' capacity, and destroy empties both.
#[test]
fn a_plan_spread_over_two_clusters() {
    let Some(a) = RealCluster::start("real-two-a") else {
        return;
    };
    let Some(b) = RealCluster::start_on(1, "real-two-b") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "providers:\n\
             \x20 - {{name: kv-a, type: kubevirt, kubeconfig: {}, namespace: {}}}\n\
             \x20 - {{name: kv-b, type: kubevirt, kubeconfig: {}, namespace: {}}}\n",
            a.kubeconfig().display(),
            a.ns(),
            b.kubeconfig().display(),
            b.ns()
        ),
    )
    .expect("providers file");
    let state = tmp.path().join("state");
    let listed = Plan::new(&["provider", "list", "-o", "json"])
        .providers(&file, &state)
        .run();
    assert!(listed.ok(), "{}", listed.text());
    let list: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
    for name in ["kv-a", "kv-b"] {
        let p = list["results"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .unwrap_or_else(|| panic!("{name} is not listed:\n{}", listed.stdout));
        assert_eq!(p["health_status"], "ready", "{p}");
        assert_eq!(p["capacity"]["cpus"], 8, "{p}");
        assert_eq!(p["capacity"]["memory_bytes"], 16u64 << 30, "{p}");
    }
    assert_ne!(
        list["results"][0]["endpoint"], list["results"][1]["endpoint"],
        "two clusters"
    );

    let plan_file = tmp.path().join("two.yml");
    std::fs::write(
        &plan_file,
        "shared:\n  type: network\n  cidr: 10.123.0.0/24\n\
         vm1:\n  client: kv-a\n  nets: [default, shared]\n\
         vm2:\n  client: kv-b\n  nets: [shared]\n",
    )
    .expect("plan");
    let run = |args: &[&str]| {
        Plan::new(args)
            .args(&[&plan_file.to_string_lossy()])
            .providers(&file, &state)
            .run()
    };
    let diff = run(&["diff", "--provider", "kv-a"]);
    assert!(diff.ok(), "{}", diff.text());
    for line in [
        "+ networkattachmentdefinition/shared on kv-a",
        "+ virtualmachine/vm1 on kv-a",
        "+ networkattachmentdefinition/shared on kv-b",
        "+ virtualmachine/vm2 on kv-b",
    ] {
        assert!(
            diff.stdout.contains(line),
            "no `{line}` in:\n{}",
            diff.stdout
        );
    }
    let applied = run(&["apply", "--yes", "--provider", "kv-a"]);
    assert!(applied.ok(), "{}", applied.text());
    let vm = |cluster: &RealCluster, name: &str| {
        cluster.object(&format!(
            "/apis/kubevirt.io/v1/namespaces/{}/virtualmachines/{name}",
            cluster.ns()
        ))
    };
    assert!(vm(&a, "vm1").is_some() && vm(&a, "vm2").is_none());
    assert!(vm(&b, "vm2").is_some() && vm(&b, "vm1").is_none());
    let again = run(&["diff", "--provider", "kv-a"]);
    assert!(again.stdout.starts_with("No changes."), "{}", again.stdout);
    let destroyed = run(&["destroy", "--yes", "--provider", "kv-a"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    for cluster in [&a, &b] {
        cluster.wait_for(Duration::from_secs(30), "everything gone", |c| {
            c.paths().is_empty()
        });
    }
}
