//! A plan is never mistaken for another: kcli's `kcli_plan.yml`, which every kcli plan
//! directory holds, is named after its directory; and a plan whose name marks resources that
//! another file applied is refused, naming both files and `--plan-moved`, until told the file
//! moved. Each case drives the binary on one sandbox.

use std::path::{Path, PathBuf};

use crate::harness::{Plan, Ran};

fn lab(net: &str, cidr: &str, vm: &str) -> String {
    format!("{net}:\n  type: network\n  cidr: {cidr}\n{vm}:\n  memory: 256\n  nets: [{net}]\n")
}

/// Writes `text` as `dir/name` under `root`.
fn write(root: &Path, dir: &str, name: &str, text: &str) -> PathBuf {
    let dir = root.join(dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join(name);
    std::fs::write(&file, text).expect("plan");
    file
}

fn run(sandbox: &Path, args: &[&str], file: &Path, extra: &[&str]) -> Ran {
    Plan::new(args)
        .sandbox(sandbox)
        .arg_path(file)
        .args(&["--provider", "sandbox"])
        .args(extra)
        .run()
}

/// The VMs on the sandbox, by plan: `plan list`.
fn listed(sandbox: &Path) -> String {
    Plan::new(&["list", "--provider", "sandbox"])
        .sandbox(sandbox)
        .run()
        .stdout
}

#[test]
fn two_kcli_plan_directories_are_two_plans() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let one = write(
        tmp.path(),
        "ocp",
        "kcli_plan.yml",
        &lab("net1", "192.168.201.0/24", "a1"),
    );
    let two = write(
        tmp.path(),
        "k8s",
        "kcli_plan.yml",
        &lab("net2", "192.168.202.0/24", "b1"),
    );
    let first = run(&sandbox, &["apply", "--yes"], &one, &[]);
    assert!(first.ok(), "{}", first.text());
    assert!(
        first.stdout.contains("Plan `ocp` will make"),
        "{}",
        first.stdout
    );
    let second = run(&sandbox, &["apply", "--yes"], &two, &[]);
    assert!(second.ok(), "{}", second.text());
    assert!(
        second
            .stdout
            .contains("Plan: 4 to add, 0 to change, 0 to replace, 0 to destroy"),
        "the second lab deletes nothing of the first:\n{}",
        second.stdout
    );
    let list = listed(&sandbox);
    assert!(
        list.contains("ocp") && list.contains("a1 (running)"),
        "{list}"
    );
    assert!(
        list.contains("k8s") && list.contains("b1 (running)"),
        "{list}"
    );
    // `{{ plan }}` says the same name.
    let rendered = Plan::new(&["render"])
        .arg_path(&write(
            tmp.path(),
            "ocp",
            "kcli_plan.yml",
            "x:\n  memory: 256\n  cmds: ['echo {{ plan }}']\n",
        ))
        .run();
    assert!(rendered.stdout.contains("echo ocp"), "{}", rendered.text());
}

#[test]
fn a_plan_of_the_same_name_from_another_file_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let one = write(
        tmp.path(),
        "lab1",
        "site.yml",
        &lab("net1", "192.168.201.0/24", "a1"),
    );
    let two = write(
        tmp.path(),
        "lab2",
        "site.yml",
        &lab("net2", "192.168.202.0/24", "b1"),
    );
    assert!(run(&sandbox, &["apply", "--yes"], &one, &[]).ok());
    let before = listed(&sandbox);

    for args in [
        vec!["diff"],
        vec!["apply", "--yes"],
        vec!["destroy", "--yes"],
    ] {
        let refused = run(&sandbox, &args, &two, &[]);
        assert_eq!(refused.code(), Some(1), "plan {args:?}: {}", refused.text());
        let said = refused.stderr.replace('\n', " ");
        for needed in [
            "of plan `site` were applied from",
            &one.canonicalize().expect("real").display().to_string(),
            &two.canonicalize().expect("real").display().to_string(),
            "--plan-moved",
            "--name",
        ] {
            assert!(
                said.contains(needed),
                "plan {args:?} does not say {needed:?}: {said}"
            );
        }
        assert!(said.contains("Nothing was changed"), "{said}");
    }
    // `--name` given by mistake to an unrelated file.
    let other = write(
        tmp.path(),
        "elsewhere",
        "other.yml",
        &lab("net3", "192.168.203.0/24", "c1"),
    );
    let refused = run(
        &sandbox,
        &["destroy", "--yes", "--name", "site"],
        &other,
        &[],
    );
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(
        refused.stderr.contains("would delete 4 of them"),
        "{}",
        refused.stderr
    );
    assert_eq!(listed(&sandbox), before, "the first lab is as it was");
}

#[test]
fn a_moved_plan_is_taken_back_with_plan_moved_and_its_marks_record_the_new_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let old = write(
        tmp.path(),
        "old",
        "site.yml",
        &lab("net1", "192.168.201.0/24", "a1"),
    );
    assert!(run(&sandbox, &["apply", "--yes"], &old, &[]).ok());
    let new = tmp.path().join("new");
    std::fs::rename(tmp.path().join("old"), &new).expect("moved");
    let new = new.join("site.yml");
    let refused = run(&sandbox, &["diff"], &new, &[]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());

    let diff = run(&sandbox, &["diff", "--plan-moved"], &new, &[]);
    assert!(diff.ok(), "{}", diff.text());
    assert!(
        diff.stdout.contains("applied_from:") && diff.stdout.contains("0 to replace, 0 to destroy"),
        "{}",
        diff.stdout
    );
    let moved = run(&sandbox, &["apply", "--yes", "--plan-moved"], &new, &[]);
    assert!(moved.ok(), "{}", moved.text());
    let clean = run(&sandbox, &["diff", "--detailed-exitcode"], &new, &[]);
    assert_eq!(
        clean.code(),
        Some(0),
        "the marks record the new file: {}",
        clean.text()
    );
    let gone = run(&sandbox, &["destroy", "--yes"], &new, &[]);
    assert!(gone.ok(), "{}", gone.text());
    assert!(!listed(&sandbox).contains("a1"));
}
