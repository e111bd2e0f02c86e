//! Every example and every good fixture applies to the sandbox and then diffs clean.

use super::*;

#[test]
fn every_example_applies_and_then_diffs_clean_on_the_sandbox() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tmp");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root.join("examples"))
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    examples.sort();
    assert!(examples.len() >= 3);
    for example in &examples {
        let run = |command: &[&str]| {
            // The boot lab reads the test image outside its directory, where
            // `tests/guest-image/build` leaves it: allowed as a user would allow it.
            let out = Plan::new(command)
                .args(&[&example.to_string_lossy(), "--provider", "sandbox"])
                .args(&["--allow-read", "target/guest-image"])
                .sandbox(&tmp.path().join("sandbox"))
                .run();
            let text = out.text();
            assert!(out.ok(), "{command:?} {}:\n{text}", example.display());
            text
        };
        let applied = run(&["apply", "--yes"]);
        assert!(applied.contains(", 0 failed, 0 skipped"), "{applied}");
        let diff = run(&["diff"]);
        assert!(
            diff.contains("No changes."),
            "{} did not converge:\n{diff}",
            example.display()
        );
    }
}

/// Every good fixture applies and then diffs clean, once what it uses without declaring (images
/// already in a pool, networks) exists: those are created first by a plan of their own.
#[test]
fn every_good_fixture_applies_and_then_diffs_clean_on_the_sandbox() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().expect("tmp");
    // 09_cloudinit.yml copies ~/notes/local.txt and /etc/hosts into its VM, outside its
    // directory: allowed here as a user would allow them.
    let home = tmp.path().join("home");
    std::fs::create_dir_all(home.join("notes")).expect("home");
    std::fs::write(home.join("notes/local.txt"), "local\n").expect("local file");
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(root.join("tests/fixtures/good"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 13);
    for (n, fixture) in fixtures.iter().enumerate() {
        let sandbox = tmp.path().join(format!("sandbox{n}"));
        let run = |command: &[&str], plan: &Path| {
            let out = Plan::new(command)
                .args(&[&plan.to_string_lossy(), "--provider", "sandbox"])
                .sandbox(&sandbox)
                .env("HOME", &home)
                .env(
                    "SITEPLAN_ALLOW_READ",
                    format!("/etc/hosts:{}", home.join("notes").display()),
                )
                .run();
            (out.ok(), out.text())
        };
        let (_, first) = run(&["diff"], fixture);
        let mut externals = String::new();
        for line in first.lines() {
            let Some(rest) = line.strip_prefix("error: the plan uses ") else {
                continue;
            };
            let id = rest.split(',').next().unwrap_or_default();
            match id.split('/').collect::<Vec<_>>().as_slice() {
                ["volume", pool, name] => externals.push_str(&format!(
                    "{name}:\n  type: image\n  pool: {pool}\n  url: https://images.example/{name}.qcow2\n"
                )),
                ["network", name] => externals.push_str(&format!(
                    "{name}:\n  type: network\n  cidr: 10.{}.0.0/24\n",
                    100 + externals.len() % 100
                )),
                other => panic!("{}: unexpected external {other:?}", fixture.display()),
            }
        }
        if !externals.is_empty() {
            let plan = tmp.path().join(format!("externals{n}.yml"));
            std::fs::write(&plan, &externals).expect("externals plan");
            let (ok, text) = run(&["apply", "--yes"], &plan);
            assert!(
                ok,
                "externals of {}:\n{externals}\n{text}",
                fixture.display()
            );
        }
        let (ok, applied) = run(&["apply", "--yes"], fixture);
        assert!(ok, "{}:\n{applied}", fixture.display());
        assert!(applied.contains(", 0 failed, 0 skipped"), "{applied}");
        let (ok, diff) = run(&["diff"], fixture);
        assert!(
            ok && diff.contains("No changes."),
            "{} did not converge:\n{diff}",
            fixture.display()
        );
    }
}
