//! Guards through the binary: prevent_destroy (even without the plan file), ignore_changes, --replace, --target.

use super::*;

/// `prevent_destroy`, `ignore_changes`, `--replace` and `--target`, through the binary.
#[test]
fn guards_and_targets() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let run = |args: &[&str]| {
        let out = Plan::new(args)
            .args(&["tests/fixtures/guards/site.yml", "--provider", "sandbox"])
            .sandbox(&sandbox)
            .run();
        (out.code(), out.text())
    };
    let (code, text) = run(&["apply", "--yes"]);
    assert_eq!(code, Some(0), "{text}");

    // ignore_changes: [memory]
    let (_, text) = run(&["diff", "-P", "memory=512"]);
    assert!(text.contains("No changes."), "{text}");

    // prevent_destroy: a replace, and destroy, are refused, and nothing changes.
    let (code, text) = run(&[
        "apply",
        "--yes",
        "-P",
        "protect=true",
        "-P",
        "cidr=192.168.238.0/24",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("network/gnet has `prevent_destroy`, and this plan would replace it"),
        "{text}"
    );
    let (code, text) = run(&["destroy", "--yes", "-P", "protect=true"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("would delete it"), "{text}");

    // --replace
    let (_, text) = run(&["diff", "--replace", "g0"]);
    assert!(
        text.contains("-/+ vm/g0: replacement requested with --replace"),
        "{text}"
    );
    assert!(
        text.contains("Plan: 0 to add, 0 to change, 1 to replace"),
        "{text}"
    );
    let (code, text) = run(&["diff", "--replace", "nothing-such"]);
    assert_eq!(code, Some(1), "{text}");

    // --target: g0 and what it needs (gnet), not gother.
    let moved = [
        "-P",
        "cidr=192.168.238.0/24",
        "-P",
        "othercidr=192.168.239.0/24",
    ];
    let (_, text) = run(&[&["diff", "--target", "g0"][..], &moved[..]].concat());
    assert!(text.contains("-/+ network/gnet"), "{text}");
    assert!(!text.contains("gother"), "{text}");
    // destroy --target gnet: gnet and what needs it (g0, g1), not gother.
    let (code, text) = run(&["destroy", "--yes", "--target", "gnet"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("Plan: 0 to add, 0 to change, 0 to replace, 7 to destroy."),
        "gnet, and each VM with its disk and seed: {text}"
    );
    assert!(text.contains("- vm/g0: destroyed with the plan"), "{text}");
    let (_, text) = run(&["diff"]);
    assert!(
        text.contains("Plan: 7 to add, 0 to change"),
        "gother stayed: {text}"
    );
}

/// The guard is recorded on the resource: destroy honours `prevent_destroy` when the plan can
/// no longer be read in full (a script it names is gone) and when the plan file itself is gone.
#[test]
fn prevent_destroy_holds_without_the_plan_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("lab");
    std::fs::create_dir(&dir).expect("dir");
    let sandbox = tmp.path().join("sandbox");
    let site = dir.join("site.yml");
    let script = dir.join("s.sh");
    let write_plan = |protect: bool| {
        std::fs::write(
            &site,
            format!(
                "pdnet:\n  type: network\n  cidr: 192.168.241.0/24\n  prevent_destroy: {protect}\n\
                 pd0:\n  virttype: qemu\n  memory: 128\n  nets: [pdnet]\n  scripts: [s.sh]\n"
            ),
        )
        .expect("plan")
    };
    write_plan(true);
    std::fs::write(&script, "#!/bin/sh\necho hello\n").expect("script");
    let run = |args: &[&str]| {
        let out = Plan::new(args)
            .args(&["site.yml", "--provider", "sandbox"])
            .current_dir(&dir)
            .sandbox(&sandbox)
            .run();
        (out.code(), out.text())
    };
    let (code, text) = run(&["apply", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    let refused = "network/pdnet was created with `prevent_destroy` (recorded on the resource)";

    // The script is gone: the plan cannot be read in full.
    std::fs::remove_file(&script).expect("rm script");
    let (code, text) = run(&["destroy", "--yes"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(refused), "{text}");
    assert!(text.contains("Nothing was changed."), "{text}");

    // The plan file is gone too.
    std::fs::remove_file(&site).expect("rm plan");
    let (code, text) = run(&["destroy", "--yes"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("site.yml does not exist"), "{text}");
    assert!(text.contains(refused), "{text}");

    // Everything is still there.
    write_plan(true);
    std::fs::write(&script, "#!/bin/sh\necho hello\n").expect("script");
    let (code, text) = run(&["diff"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("No changes."), "{text}");

    // Taking the guard off the plan updates the marks; then the plan goes, file or not.
    write_plan(false);
    let (_, text) = run(&["diff"]);
    assert!(text.contains("prevent_destroy: true → false"), "{text}");
    let (code, text) = run(&["apply", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    std::fs::remove_file(&site).expect("rm plan");
    let (code, text) = run(&["destroy", "--yes"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("- network/pdnet: destroyed with the plan"),
        "{text}"
    );
    assert!(text.contains("- vm/pd0: destroyed with the plan"), "{text}");
}
