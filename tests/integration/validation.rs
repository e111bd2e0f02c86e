//! `plan validate` finds what `plan diff` would, and the sandbox refuses what libvirt refuses:
//! the gaps a user meets in a first week (the fixtures in `tests/fixtures/bad/` cover the plan
//! checks, one snapshot each).

use std::os::unix::fs::PermissionsExt;

use crate::harness::{Plan, SandboxLab};

#[test]
fn validate_without_a_file_reads_kcli_plan_yml_as_kcli_does() {
    let dir = tempfile::tempdir().expect("tmp");
    let none = Plan::new(&["validate"]).current_dir(dir.path()).run();
    assert_eq!(none.code(), Some(1), "{}", none.text());
    assert!(
        none.stderr.contains("kcli_plan.yml") && none.stderr.contains("name the plan file"),
        "says which file it looked for, and how to name another:\n{}",
        none.stderr
    );

    // Nor does `plan destroy` take the plan the directory's name would give.
    let destroy = Plan::new(&["destroy", "--yes", "--provider", "sandbox"])
        .current_dir(dir.path())
        .sandbox(&dir.path().join("sandbox"))
        .run();
    assert_eq!(destroy.code(), Some(1), "{}", destroy.text());
    assert!(
        destroy.text().contains("there is no kcli_plan.yml here"),
        "{}",
        destroy.text()
    );

    std::fs::write(dir.path().join("kcli_plan.yml"), "vm1:\n  memory: 512\n").expect("plan");
    let found = Plan::new(&["validate"]).current_dir(dir.path()).run();
    assert!(found.ok(), "{}", found.text());
    assert!(
        found.stdout.contains("kcli_plan.yml is valid"),
        "{}",
        found.stdout
    );
}

#[test]
fn a_reference_one_letter_from_a_declared_name_is_said_with_did_you_mean() {
    let lab = SandboxLab::new(
        "near.yml",
        "labnet:\n  type: network\n  cidr: 10.71.0.0/24\n\
         vm1:\n  memory: 512\n  nets: [labnett]\n\
         vm2:\n  memory: 512\n  nets: [labnett]\n",
    );
    let lenient = Plan::new(&["validate"]).arg_path(&lab.file).run();
    assert!(lenient.ok(), "a warning only:\n{}", lenient.text());
    assert!(
        lenient.stderr.contains("did you mean `labnet`?"),
        "{}",
        lenient.stderr
    );
    assert_eq!(
        lenient.stderr.matches("plan::near-miss").count(),
        1,
        "said once for the name, not once per use:\n{}",
        lenient.stderr
    );
    let strict = Plan::new(&["validate", "--strict"])
        .arg_path(&lab.file)
        .run();
    assert_eq!(strict.code(), Some(1), "{}", strict.text());

    // A name far from any declared one is external, as `default` is, and nothing is said.
    let far = SandboxLab::new(
        "far.yml",
        "labnet:\n  type: network\n  cidr: 10.71.0.0/24\nvm1:\n  memory: 512\n  nets: [default]\n",
    );
    let quiet = Plan::new(&["validate"]).arg_path(&far.file).run();
    assert!(quiet.ok() && quiet.stderr.is_empty(), "{}", quiet.text());
}

#[test]
fn the_providers_file_expands_home_and_variables_and_reports_every_problem_at_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let file = tmp.path().join("providers.yml");
    let list = || {
        Plan::new(&["provider", "list"])
            .providers(&file, &tmp.path().join("state"))
            .env("HOME", &home)
            .env("LABS_DIR", tmp.path().join("labs"))
            .run()
    };

    std::fs::write(
        &file,
        "default: nowhere\nproviders:\n\
         \x20 - {name: a, type: sandbox, dir: ~/sandbox-a}\n\
         \x20 - {name: a, type: sandbox, dir: $LABS_DIR/b}\n\
         \x20 - {name: c, type: sandbox, dir: $NO_SUCH_VARIABLE_HERE/c, colour: blue}\n",
    )
    .expect("providers file");
    let bad = list();
    assert_eq!(bad.code(), Some(1), "{}", bad.text());
    for problem in [
        "provider `a` is named twice",
        "`default: nowhere` names no provider",
        "unknown field `colour`",
        "NO_SUCH_VARIABLE_HERE",
    ] {
        assert!(bad.stderr.contains(problem), "{problem}:\n{}", bad.stderr);
    }

    std::fs::write(
        &file,
        "providers:\n\
         \x20 - {name: a, type: sandbox, dir: ~/sandbox-a}\n\
         \x20 - {name: b, type: sandbox, dir: $LABS_DIR/b}\n\
         \x20 - {name: c, type: sandbox, dir: '${LABS_DIR}/c'}\n",
    )
    .expect("providers file");
    let good = list();
    assert!(good.ok(), "{}", good.text());
    assert!(
        home.join("sandbox-a/state.json").is_file(),
        "`~` is the home directory"
    );
    assert!(tmp.path().join("labs/b/state.json").is_file(), "$VAR");
    assert!(tmp.path().join("labs/c/state.json").is_file(), "${{VAR}}");
    assert!(!tmp.path().join("~").exists() && !tmp.path().join("$LABS_DIR").exists());
}

#[test]
fn the_sandbox_refuses_a_network_libvirt_refuses_and_changes_nothing_else() {
    // A new sandbox has libvirt's `default` network: virbr0, 192.168.122.0/24.
    for (network, said) in [
        (
            "cidr: 192.168.122.0/24",
            "192.168.122.0/24 is already in use by network default",
        ),
        (
            "cidr: 10.72.0.0/24\n  bridgename: virbr0",
            "bridge name 'virbr0' is already in use by network default",
        ),
    ] {
        let lab = SandboxLab::new(
            "taken.yml",
            &format!("taken:\n  type: network\n  {network}\n"),
        );
        let apply = lab.plan(&["apply", "--yes"], &[]);
        assert_eq!(apply.code(), Some(1), "{}", apply.text());
        assert!(apply.text().contains(said), "{said}:\n{}", apply.text());
        let diff = lab.plan(&["diff"], &[]);
        assert!(
            diff.text().contains("1 to add"),
            "nothing was made:\n{}",
            diff.text()
        );
    }
}

#[test]
fn the_sandbox_keeps_seeds_private_and_to_a_directory_of_its_own() {
    let lab = SandboxLab::new(
        "seeded.yml",
        "vm1:\n  memory: 512\n  cmds: [echo hi]\n  rootpassword: hunter2-not-shown\n",
    );
    let apply = lab.plan(&["apply", "--yes"], &[]);
    assert!(apply.ok(), "{}", apply.text());
    let blobs = lab.sandbox().join("blobs");
    let mode = |p: &std::path::Path| p.metadata().expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&blobs), 0o700, "only its owner enters the blobs");
    let files: Vec<_> = std::fs::read_dir(&blobs)
        .expect("blobs")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(!files.is_empty(), "the seed is there");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} is its owner's only", file.display());
    }

    // A directory that holds other files is not a sandbox: nothing is written there, nothing
    // of it removed.
    let theirs = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(theirs.path().join("blobs")).expect("dir");
    std::fs::write(theirs.path().join("blobs/photo.jpg"), "mine").expect("file");
    std::fs::write(theirs.path().join("notes.txt"), "mine").expect("file");
    let refused = lab.command(&["diff"], &[]).sandbox(theirs.path()).run();
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(
        refused.text().contains("holds files and no sandbox"),
        "{}",
        refused.text()
    );
    let mut left: Vec<String> = walk(theirs.path());
    left.sort();
    assert_eq!(left, ["blobs", "blobs/photo.jpg", "notes.txt"]);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("dir").flatten() {
        let path = entry.path();
        found.push(entry.file_name().to_string_lossy().into_owned());
        if path.is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            found.extend(walk(&path).into_iter().map(|f| format!("{name}/{f}")));
        }
    }
    found
}

#[test]
fn a_static_address_outside_a_network_the_plan_does_not_declare_is_refused_by_diff() {
    // The sandbox's `default` network is 192.168.122.0/24: only it can say so.
    let lab = SandboxLab::new(
        "elsewhere.yml",
        "vm1:\n  memory: 512\n  nets:\n    - name: default\n      ip: 10.5.5.5\n      prefix: 24\n\
         vm2:\n  memory: 512\n  nets:\n    - name: default\n      ip: 192.168.122.40\n      prefix: 24\n",
    );
    let validate = Plan::new(&["validate"]).arg_path(&lab.file).run();
    assert!(validate.ok(), "{}", validate.text());
    let diff = lab.plan(&["diff"], &[]);
    assert_eq!(diff.code(), Some(1), "{}", diff.text());
    assert!(
        diff.text().contains(
            "vm vm1: the static address 10.5.5.5 is outside network/default (192.168.122.0/24"
        ),
        "{}",
        diff.text()
    );
    assert!(!diff.text().contains("vm vm2:"), "{}", diff.text());
}
