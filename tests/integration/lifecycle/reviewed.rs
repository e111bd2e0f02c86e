//! What was reviewed is what is applied: plan against plan (files, git revisions) and saved plans.

use super::*;

/// `plan diff --against`: two files, and a git revision against the working file, with no
/// provider at all (no sandbox directory is ever made).
#[test]
fn diff_against_another_version_needs_no_provider() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let original =
        std::fs::read_to_string(root.join("tests/fixtures/lifecycle/site.yml")).expect("fixture");
    let repo_dir = tmp.path().join("repo");
    std::fs::create_dir_all(&repo_dir).expect("repo dir");
    let site = repo_dir.join("site.yml");
    std::fs::write(&site, &original).expect("site");
    let old_copy = tmp.path().join("old.yml");
    std::fs::write(&old_copy, &original).expect("old");

    // Commit the original, then change the working file.
    let repo = git2::Repository::init(&repo_dir).expect("git init");
    let mut index = repo.index().expect("index");
    index.add_path(Path::new("site.yml")).expect("add");
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let who = git2::Signature::now("siteplan tests", "tests@siteplan.invalid").expect("sig");
    repo.commit(Some("HEAD"), &who, &who, "lab", &tree, &[])
        .expect("commit");
    let changed = original
        .replace("memory: 256", "memory: 512")
        .replace("cidr: 192.168.231.0/24", "cidr: 192.168.240.0/24");
    std::fs::write(&site, &changed).expect("changed");

    let run = |args: &[&str]| {
        let out = Plan::new(args)
            .current_dir(&repo_dir)
            .sandbox(&tmp.path().join("never-made"))
            .run();
        (out.code(), out.stdout, out.stderr)
    };
    let old_path = old_copy.to_string_lossy().into_owned();
    for old in [old_path.as_str(), "HEAD:site.yml", "HEAD:./site.yml"] {
        let (code, stdout, stderr) =
            run(&["diff", "--against", old, "site.yml", "--detailed-exitcode"]);
        assert_eq!(code, Some(2), "{old}: {stdout}{stderr}");
        assert!(
            stdout.contains("~ vm/life0 (needs a reboot)"),
            "{old}: {stdout}"
        );
        assert!(stdout.contains("memory: 256 MiB → 512 MiB"), "{stdout}");
        assert!(
            stdout.contains("-/+ network/lifenet: `cidr` and `dhcp` force replacement"),
            "{stdout}"
        );
        assert!(!stderr.contains("Provider:"), "no provider: {stderr}");
    }
    let (_, json, _) = run(&[
        "diff",
        "--against",
        "HEAD:site.yml",
        "site.yml",
        "--format",
        "json",
    ]);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(doc["summary"]["replace"], 1, "{json}");
    // The same version: nothing.
    let (code, stdout, _) = run(&[
        "diff",
        "--against",
        "site.yml",
        "site.yml",
        "--detailed-exitcode",
    ]);
    assert_eq!(code, Some(0), "{stdout}");
    // Each provider's part is planned as its backend plans, with nothing asked of it: here a
    // KubeVirt provider whose cluster is nowhere.
    let providers = tmp.path().join("providers.yml");
    std::fs::write(
        &providers,
        "providers:\n  - name: kv\n    type: kubevirt\n    kubeconfig: /nonexistent/kubeconfig\n",
    )
    .expect("providers file");
    let on_kubevirt = |old: &str, new: &str| {
        Plan::new(&["diff", "--against", old, new, "--provider", "kv"])
            .current_dir(&repo_dir)
            .env("SITEPLAN_PROVIDERS", &providers)
            .sandbox(&tmp.path().join("never-made"))
            .run()
    };
    let kv_old = "kvnet:\n  cidr: 192.168.150.0/24\n  type: network\nkv1:\n  memory: 512\n  disks: [10]\n  nets: [kvnet]\n";
    std::fs::write(repo_dir.join("kv-old.yml"), kv_old).expect("kv-old");
    std::fs::write(
        repo_dir.join("kv.yml"),
        kv_old.replace("memory: 512", "memory: 1024"),
    )
    .expect("kv");
    let out = on_kubevirt("kv-old.yml", "kv.yml");
    assert!(
        out.stdout.contains("~ virtualmachine/kv1 (needs a reboot)")
            && !out.stdout.contains("vm/kv1"),
        "{}",
        out.text()
    );
    // What KubeVirt cannot hold is refused as it would be on the cluster.
    let out = on_kubevirt(&old_path, "site.yml");
    assert!(
        out.code() == Some(1)
            && out
                .stderr
                .contains("provider `kv` has no storage in host directories"),
        "{}",
        out.text()
    );
    // A revision that does not exist.
    let (code, _, stderr) = run(&["diff", "--against", "nosuchbranch:site.yml", "site.yml"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("`nosuchbranch` is no revision"), "{stderr}");
    assert!(!tmp.path().join("never-made").exists());
}

/// `plan diff --out` then `plan apply PLANFILE`: applied as reviewed, and refused once the live
/// state, the plan file or a parameter has changed since.
#[test]
fn saved_plans_apply_as_reviewed_or_not_at_all() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let site = tmp.path().join("site.yml");
    std::fs::copy(root.join("tests/fixtures/lifecycle/site.yml"), &site).expect("copy");
    let params = tmp.path().join("params.yml");
    std::fs::write(&params, "cpus: 1\n").expect("params");
    let saved = tmp.path().join("reviewed.plan");
    let sandbox = tmp.path().join("sandbox");
    let run = |args: &[&str]| {
        let out = Plan::new(args)
            .current_dir(tmp.path())
            .sandbox(&sandbox)
            .run();
        (out.code(), out.text())
    };
    let diff_out = |extra: &[&str]| {
        let mut args = vec![
            "diff",
            "site.yml",
            "--provider",
            "sandbox",
            "--paramfile",
            "params.yml",
            "--out",
            "reviewed.plan",
        ];
        args.extend_from_slice(extra);
        let (code, text) = run(&args);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("Saved the plan to reviewed.plan"), "{text}");
    };

    // Reviewed, then applied as reviewed, without asking.
    diff_out(&[]);
    let saved_text = std::fs::read_to_string(&saved).expect("saved");
    assert!(
        saved_text.contains("\"saved_plan_version\": 1"),
        "{saved_text}"
    );
    let (code, text) = run(&["apply", "reviewed.plan"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Apply: 9 done, 0 failed, 0 skipped."),
        "{text}"
    );
    let (_, text) = run(&[
        "diff",
        "site.yml",
        "--provider",
        "sandbox",
        "--paramfile",
        "params.yml",
    ]);
    assert!(text.contains("No changes."), "{text}");

    // The live state changed since: refused.
    diff_out(&["-P", "memory=300"]);
    let (code, text) = run(&[
        "apply",
        "--yes",
        "site.yml",
        "--provider",
        "sandbox",
        "--paramfile",
        "params.yml",
        "-P",
        "memory=320",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&["apply", "reviewed.plan"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("the provider's resources have changed since the plan was saved"),
        "{text}"
    );

    // The plan file changed since: refused.
    diff_out(&["-P", "memory=300"]);
    let changed = std::fs::read_to_string(&site)
        .expect("site")
        .replace("cpus: 1", "cpus: 1 # edited");
    std::fs::write(&site, changed).expect("edit");
    let (code, text) = run(&["apply", "reviewed.plan"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("site.yml has changed since the plan was saved"),
        "{text}"
    );

    // A parameter changed since: refused.
    diff_out(&["-P", "memory=300"]);
    std::fs::write(&params, "cpus: 2\n").expect("params");
    let (code, text) = run(&["apply", "reviewed.plan"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("parameters have changed since the plan was saved"),
        "{text}"
    );

    // Nothing of those three refused plans was applied.
    let (_, text) = run(&[
        "diff",
        "site.yml",
        "--provider",
        "sandbox",
        "--paramfile",
        "params.yml",
        "-P",
        "memory=320",
    ]);
    assert!(text.contains("vcpus: 1 → 2"), "{text}");
}

/// `--against REV:PATH` reads the old version's scripts from the revision too, so a changed
/// script shows, though the plan file is the same.
#[test]
fn diff_against_a_revision_reads_its_scripts_from_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo_dir = tmp.path().join("repo");
    std::fs::create_dir_all(repo_dir.join("scripts")).expect("dirs");
    std::fs::write(
        repo_dir.join("site.yml"),
        "scripted:\n  virttype: qemu\n  scripts: [scripts/setup.sh]\n",
    )
    .expect("site");
    std::fs::write(repo_dir.join("scripts/setup.sh"), "#!/bin/sh\necho one\n").expect("script");
    let repo = git2::Repository::init(&repo_dir).expect("git init");
    let mut index = repo.index().expect("index");
    for file in ["site.yml", "scripts/setup.sh"] {
        index.add_path(Path::new(file)).expect("add");
    }
    let tree = repo
        .find_tree(index.write_tree().expect("tree"))
        .expect("tree");
    let who = git2::Signature::now("siteplan tests", "tests@siteplan.invalid").expect("sig");
    repo.commit(Some("HEAD"), &who, &who, "lab", &tree, &[])
        .expect("commit");
    std::fs::write(repo_dir.join("scripts/setup.sh"), "#!/bin/sh\necho two\n").expect("edit");

    let out = Plan::new(&["diff", "--against", "HEAD:site.yml", "site.yml"])
        .current_dir(&repo_dir)
        .run();
    let stdout = &out.stdout;
    assert!(out.ok(), "{}", out.text());
    assert!(
        stdout.contains("-/+ volume/default/scripted-cidata.img"),
        "{stdout}"
    );
    assert!(stdout.contains("-    echo one\n"), "{stdout}");
    assert!(stdout.contains("+    echo two\n"), "{stdout}");
}
