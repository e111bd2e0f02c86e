//! The `plan` binary end to end, on the fixtures and examples.

use std::path::{Path, PathBuf};

use crate::harness::{root, Plan, Ran};

/// Runs `plan` from the repository root, with output made stable for snapshots.
fn plan(args: &[&str]) -> Ran {
    Plan::new(args).run()
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("fixture directory exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_example_and_good_fixture_validates() {
    let mut files = yaml_files("examples");
    files.extend(yaml_files("tests/fixtures/good"));
    assert!(
        files.len() >= 13,
        "three examples and at least ten fixtures"
    );
    // 09_cloudinit.yml copies ~/notes/local.txt into its VM: a file that must be there.
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir_all(home.path().join("notes")).expect("notes");
    std::fs::write(home.path().join("notes/local.txt"), "local\n").expect("local file");
    for file in files {
        let name = relative(&file);
        // 09_cloudinit.yml copies /etc/hosts and a file of the home directory into its VM, as
        // kcli plans do, and the boot lab reads the test image where `tests/guest-image/build`
        // leaves it: allowed as a user would allow them.
        let out = Plan::new(&["validate", &name])
            .env("HOME", home.path())
            .env(
                "SITEPLAN_ALLOW_READ",
                format!(
                    "/etc/hosts:{}:{}",
                    home.path().join("notes").display(),
                    root().join("target/guest-image").display()
                ),
            )
            .run();
        assert!(
            out.status.success(),
            "{name} should validate:\n{}",
            out.stderr.clone()
        );
        assert!(
            out.stdout.clone().contains("is valid"),
            "{name}: {}",
            out.stdout.clone()
        );
        let stderr = out.stderr.clone();
        if !name.contains("warn") {
            assert!(
                stderr.is_empty(),
                "{name} should have no warnings:\n{stderr}"
            );
        }
    }
}

#[test]
fn every_bad_fixture_fails_with_a_message_at_its_line() {
    let files = yaml_files("tests/fixtures/bad");
    assert!(files.len() >= 20, "at least twenty bad plans");
    for file in files {
        let name = relative(&file);
        let out = plan(&["validate", &name]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name} must exit 1:\n{}",
            out.stderr.clone()
        );
        assert!(out.stdout.is_empty(), "{name} printed to stdout");
        let stderr = out.stderr.clone();
        assert!(!stderr.contains("panicked"), "{name} panicked:\n{stderr}");
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("bad");
        insta::assert_snapshot!(format!("bad_{stem}"), stderr);
    }
}

#[test]
fn strict_turns_kcli_only_keys_into_errors() {
    let lenient = plan(&["validate", "tests/fixtures/good/13_kcli_extras_warn.yml"]);
    assert!(lenient.status.success());
    assert_eq!(
        lenient.stderr.clone().matches("not implement yet").count(),
        3
    );
    let strict = plan(&[
        "validate",
        "--strict",
        "tests/fixtures/good/13_kcli_extras_warn.yml",
    ]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(
        strict.stderr.clone().contains("has 3 errors"),
        "{}",
        strict.stderr.clone()
    );
}

#[test]
fn parameters_follow_kcli_precedence() {
    // The plan says 1024, kcli_parameters.yml in the current directory says 3072 (kcli reads
    // it there, not beside the plan).
    let paramdir = root().join("tests/fixtures/paramdir");
    let out = Plan::new(&["render", "plan.yml"])
        .current_dir(&paramdir)
        .run();
    assert!(out.status.success(), "{}", out.stderr.clone());
    let rendered = out.stdout.clone();
    assert!(
        rendered.contains("fromfile:\n  image: debian12\n  memory: 3072"),
        "{rendered}"
    );
    let out = plan(&["render", "tests/fixtures/paramdir/plan.yml"]);
    assert!(
        out.stdout.clone().contains("memory: 1024"),
        "{}",
        out.stdout.clone()
    );

    // An explicit parameter file replaces the default one; -P beats both.
    let out = plan(&[
        "render",
        "tests/fixtures/paramdir/plan.yml",
        "--paramfile",
        "tests/fixtures/paramdir/override.yml",
    ]);
    assert!(
        out.stdout
            .clone()
            .contains("fromplan:\n  image: debian12\n  memory: 5120"),
        "{}",
        out.stdout.clone()
    );
    let out = plan(&[
        "render",
        "tests/fixtures/paramdir/plan.yml",
        "--paramfile",
        "tests/fixtures/paramdir/override.yml",
        "-P",
        "memory=6144",
        "-P",
        "name=cli",
    ]);
    assert!(
        out.stdout
            .clone()
            .contains("cli:\n  image: debian12\n  memory: 6144"),
        "{}",
        out.stdout.clone()
    );
}

#[test]
fn required_parameter_is_satisfied_by_a_command_line_value() {
    let out = plan(&[
        "validate",
        "tests/fixtures/bad/required_parameter.yml",
        "-P",
        "image=debian12",
    ]);
    assert!(out.status.success(), "{}", out.stderr.clone());
}

#[test]
fn loops_take_list_parameters_from_the_command_line() {
    let out = plan(&[
        "graph",
        "tests/fixtures/good/10_conditionals.yml",
        "-P",
        "nodes=[x,y]",
        "-P",
        "with_db=false",
    ]);
    assert!(out.status.success(), "{}", out.stderr.clone());
    let graph = out.stdout.clone();
    assert!(
        graph.contains("vm/x\n") && graph.contains("vm/y\n"),
        "{graph}"
    );
    assert!(
        !graph.contains("vm/db") && !graph.contains("vm/alpha"),
        "{graph}"
    );
}

#[test]
fn render_shows_the_templated_plan() {
    let out = plan(&["render", "examples/templated.yml", "-P", "workers=2"]);
    assert!(out.status.success(), "{}", out.stderr.clone());
    insta::assert_snapshot!("render_templated", out.stdout.clone());
}

#[test]
fn problems_after_templating_say_so() {
    let out = plan(&[
        "validate",
        "examples/templated.yml",
        "-P",
        "worker_memory=0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = out.stderr.clone();
    assert!(
        stderr.contains("examples/templated.yml (after templating; see `plan render`)"),
        "{stderr}"
    );
}

#[test]
fn graph_dot_is_a_valid_digraph_with_an_edge_per_reference() {
    let out = plan(&["graph", "examples/lab.yml", "--format", "dot"]);
    assert!(out.status.success(), "{}", out.stderr.clone());
    let dot = out.stdout.clone();
    let parsed = graphviz_rust::parse(&dot).expect("plan graph emits valid DOT");
    let graphviz_rust::dot_structures::Graph::DiGraph { stmts, .. } = parsed else {
        panic!("expected a digraph");
    };
    let edges: Vec<_> = stmts
        .iter()
        .filter(|s| matches!(s, graphviz_rust::dot_structures::Stmt::Edge(_)))
        .collect();
    // Each of 3 VMs: network, image, pool, disk pool = 12; the image's pool = 1.
    assert_eq!(edges.len(), 13, "{dot}");
    for reference in [
        "\"vm/web1\" -> \"network/labnet\" [label=\"nets\"]",
        "\"vm/db1\" -> \"image/debian12\" [label=\"image\"]",
        "\"image/debian12\" -> \"pool/labpool\" [label=\"pool\"]",
    ] {
        assert!(dot.contains(reference), "missing {reference} in\n{dot}");
    }
}

#[test]
fn graph_formats() {
    for (format, name) in [
        ("text", "graph_multinet_text"),
        ("mermaid", "graph_multinet_mermaid"),
        ("dot", "graph_multinet_dot"),
    ] {
        let out = plan(&["graph", "examples/multinet.yml", "--format", format]);
        assert!(out.status.success(), "{}", out.stderr.clone());
        insta::assert_snapshot!(name, out.stdout.clone());
    }
}

#[test]
fn graph_text_lists_dependencies_before_dependents() {
    let out = plan(&["graph", "tests/fixtures/good/11_depends_on.yml"]);
    let order: Vec<String> = out
        .stdout
        .clone()
        .lines()
        .filter(|l| l.starts_with("vm/"))
        .map(str::to_string)
        .collect();
    assert_eq!(order, ["vm/dns", "vm/ldap", "vm/app"]);
}

#[test]
fn checked_in_schema_is_current() {
    let out = plan(&["schema"]);
    assert!(out.status.success());
    let generated = out.stdout.clone();
    let path = root().join("schemas/plan.schema.json");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("schema written");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schemas/plan.schema.json is stale: run `UPDATE_SCHEMAS=1 cargo test --test cli checked_in_schema_is_current`"
    );
    let schema: serde_json::Value = serde_json::from_str(&generated).expect("schema is JSON");
    assert_eq!(
        schema["$defs"]["VmFormat"]["properties"]["memory"]["anyOf"][0]["$ref"],
        "#/$defs/Size"
    );
}

#[test]
fn checked_in_diff_schema_is_current() {
    let out = plan(&["schema", "diff"]);
    assert!(out.status.success());
    let generated = out.stdout.clone();
    let path = root().join("schemas/diff.schema.json");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("schema written");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schemas/diff.schema.json is stale: run `UPDATE_SCHEMAS=1 cargo test --test cli checked_in_diff_schema_is_current`"
    );
    let schema: serde_json::Value = serde_json::from_str(&generated).expect("schema is JSON");
    let required = schema["required"].as_array().expect("required fields");
    assert!(required.contains(&"format_version".into()), "{schema}");
}

#[test]
fn checked_in_providers_schema_is_current() {
    let out = plan(&["schema", "providers"]);
    assert!(out.status.success());
    let generated = out.stdout.clone();
    let path = root().join("schemas/providers.schema.json");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("schema written");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "schemas/providers.schema.json is stale: run `UPDATE_SCHEMAS=1 cargo test --test cli checked_in_providers_schema_is_current`"
    );
}

#[test]
fn shell_completions_are_generated() {
    for shell in ["bash", "zsh", "fish"] {
        let out = plan(&["completions", shell]);
        assert!(out.status.success());
        assert!(out.stdout.clone().contains("validate"), "{shell}");
    }
}

#[test]
fn a_missing_file_is_an_error_not_a_panic() {
    let out = plan(&["validate", "does/not/exist.yml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr
            .clone()
            .contains("cannot read does/not/exist.yml"),
        "{}",
        out.stderr.clone()
    );
}

#[test]
fn bad_usage_exits_1() {
    let out = plan(&["validate"]);
    assert_eq!(out.status.code(), Some(1));
    let out = plan(&["graph", "examples/lab.yml", "--format", "png"]);
    assert_eq!(out.status.code(), Some(1));
    let out = plan(&["validate", "examples/lab.yml", "-P", "novalue"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stderr.clone().contains("is not key=value"),
        "{}",
        out.stderr.clone()
    );
}
