//! `plan provider list|get` against a providers file with two sandboxes and two libvirt URIs
//! that cannot work: one refuses connections, one accepts and never answers.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::Plan;

struct Env {
    _tmp: tempfile::TempDir,
    file: std::path::PathBuf,
    state: std::path::PathBuf,
    _silent: TcpListener,
}

/// A providers file, a state directory, and a port that accepts and then says nothing.
fn env() -> Env {
    let tmp = tempfile::tempdir().expect("tmp");
    let silent = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("addr").port();
    let refused = TcpListener::bind("127.0.0.1:0").expect("listener");
    let refused_port = refused.local_addr().expect("addr").port();
    drop(refused);
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "default: play\nhealth_timeout: 2\nproviders:\n\
             \x20 - {{name: play, type: sandbox, dir: {dir}/play}}\n\
             \x20 - {{name: play2, type: sandbox, dir: {dir}/play2, parallelism: 2}}\n\
             \x20 - {{name: gone, type: libvirt, uri: 'qemu+tcp://127.0.0.1:{refused_port}/system'}}\n\
             \x20 - {{name: mute, type: libvirt, uri: 'qemu+tcp://127.0.0.1:{port}/system'}}\n",
            dir = tmp.path().display()
        ),
    )
    .expect("providers file");
    Env {
        state: tmp.path().join("state"),
        file,
        _tmp: tmp,
        _silent: silent,
    }
}

/// A providers file with two sandboxes (`play`, the default, and `play2`) and a libvirt URI
/// that refuses connections (`gone`), without one that never answers: for runs that search
/// every provider, which would wait for that one.
fn two_sandboxes() -> Env {
    let env = env();
    let text = std::fs::read_to_string(&env.file).expect("providers file");
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains("name: mute")).collect();
    std::fs::write(&env.file, kept.join("\n") + "\n").expect("providers file");
    env
}

/// `plan` with this environment's providers file and state.
fn plan_in(env: &Env, args: &[&str]) -> Plan {
    Plan::new(args).providers(&env.file, &env.state)
}

fn plan(env: &Env, args: &[&str]) -> (bool, String, String) {
    let out = plan_in(env, args).run();
    (out.ok(), out.stdout, out.stderr)
}

#[test]
fn list_shows_every_provider_with_its_health_and_never_hangs() {
    let env = env();
    let start = Instant::now();
    let (ok, table, err) = plan(&env, &["provider", "list"]);
    let took = start.elapsed();
    assert!(ok, "{err}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let header = table.lines().next().unwrap_or_default();
    for column in ["ID", "NAME", "SERVICE TYPE", "STATUS", "HEALTH", "CREATED"] {
        assert!(header.contains(column), "{header}");
    }
    let row = |name: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {table}"))
            .to_string()
    };
    assert!(row("play").contains("REGISTERED   READY"), "{table}");
    assert!(row("gone").contains("CONFIGURED   UNAVAILABLE"), "{table}");
    assert!(row("mute").contains("UNAVAILABLE"), "{table}");
    assert!(
        table.contains("gone: unavailable: cannot connect"),
        "{table}"
    );
    assert!(
        table.contains("mute: unavailable: no answer within 2 s"),
        "{table}"
    );

    // JSON with DCM's field names; the same ids the next time.
    let (ok, json, _) = plan(&env, &["provider", "list", "-o", "json"]);
    assert!(ok);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let results = doc["results"].as_array().expect("results");
    assert_eq!(results.len(), 4);
    for field in [
        "id",
        "name",
        "service_type",
        "endpoint",
        "schema_version",
        "status",
        "health_status",
        "create_time",
        "update_time",
    ] {
        assert!(results[0].get(field).is_some(), "{field}: {json}");
    }
    assert!(doc["next_page_token"].is_null());
    let first_id = results[0]["id"].as_str().expect("id").to_string();
    assert!(
        row("play").starts_with(&first_id),
        "stable ids and order: {table}"
    );
    let (_, yaml, _) = plan(&env, &["provider", "list", "-o", "yaml"]);
    assert!(yaml.contains("health_status: ready"), "{yaml}");

    // --type
    let (_, vms, _) = plan(&env, &["provider", "list", "--type", "vm", "-o", "json"]);
    assert_eq!(vms.matches("\"service_type\": \"vm\"").count(), 4, "{vms}");
    let (_, none, _) = plan(
        &env,
        &["provider", "list", "--type", "database", "-o", "json"],
    );
    assert!(none.contains("\"results\": []"), "{none}");
}

#[test]
fn pages_follow_the_printed_tokens() {
    let env = env();
    let mut seen = Vec::new();
    let mut args = vec![
        "provider".to_string(),
        "list".into(),
        "--page-size".into(),
        "1".into(),
    ];
    for _ in 0..10 {
        let strs: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, table, err) = plan(&env, &strs);
        assert!(ok, "{err}");
        let rows: Vec<&str> = table
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        assert_eq!(rows.len(), 1, "{table}");
        seen.push(
            rows[0]
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string(),
        );
        match table
            .lines()
            .find_map(|l| l.strip_prefix("Next page: plan "))
        {
            Some(next) => args = next.split_whitespace().map(String::from).collect(),
            None => break,
        }
    }
    assert_eq!(seen, ["play", "play2", "gone", "mute"]);
    let (ok, _, err) = plan(&env, &["provider", "list", "--page-token", "nonsense"]);
    assert!(!ok && err.contains("not a page token"), "{err}");
    let (ok, _, err) = plan(&env, &["provider", "list", "--page-size", "0"]);
    assert!(!ok, "{err}");
}

#[test]
fn get_by_id_and_by_name() {
    let env = env();
    let (ok, json, err) = plan(&env, &["provider", "get", "play2"]);
    assert!(ok, "{err}");
    let by_name: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(by_name["name"], "play2");
    assert_eq!(by_name["health_status"], "ready");
    assert_eq!(by_name["schema_version"], "v1alpha1");
    let id = by_name["id"].as_str().expect("id");
    let (ok, json, _) = plan(&env, &["provider", "get", id, "-o", "json"]);
    assert!(ok);
    let by_id: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(by_id["name"], "play2");
    assert_eq!(by_id["create_time"], by_name["create_time"]);
    let (ok, json, _) = plan(&env, &["provider", "get", "gone"]);
    assert!(ok);
    assert!(
        json.contains("\"health_reason\": \"cannot connect"),
        "{json}"
    );
    let (ok, _, err) = plan(&env, &["provider", "get", "nobody"]);
    assert!(
        !ok && err.contains("no provider has the id or name `nobody`"),
        "{err}"
    );
}

#[test]
fn plans_go_to_a_provider_named_in_the_file() {
    let env = env();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let site = root.join("tests/fixtures/lifecycle/site.yml");
    let site = site.to_string_lossy();
    let (ok, _, err) = plan(&env, &["apply", "--yes", &site, "--provider", "play2"]);
    assert!(ok, "{err}");
    assert!(err.contains("Provider: play2, sandbox"), "{err}");
    // The file's default is `play`, which has none of it: the plan does not go there unless
    // told to.
    let (ok, _, err) = plan(&env, &["diff", &site]);
    assert!(err.contains("Provider: play, sandbox"), "{err}");
    assert!(!ok && err.contains("`--provider play2`"), "{err}");
    let (_, out, _) = plan(&env, &["diff", &site, "--provider", "play"]);
    assert!(out.contains("Plan: 9 to add"), "{out}");
    let (ok, _, err) = plan(&env, &["diff", &site, "--provider", "nobody"]);
    assert!(
        !ok && err.contains("no provider is named `nobody`"),
        "{err}"
    );
}

/// One plan, its VMs on two providers (`client:`): applied, diffed clean and destroyed in one
/// run each, each provider holding its VM and a copy of what the VM needs.
fn spread_over(env: &Env, second: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let site = root.join("tests/fixtures/spread/site.yml");
    let site = site.to_string_lossy();
    let second = format!("second={second}");
    let args = |command: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        a.extend([site.to_string(), "-P".into(), second.clone()]);
        a
    };
    let run = |command: &[&str]| {
        let a = args(command);
        let strs: Vec<&str> = a.iter().map(String::as_str).collect();
        plan(env, &strs)
    };
    let _ = run(&["destroy", "--yes", "--plan-moved"]);
    let (ok, out, err) = run(&["diff"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("+ vm/spread0 on play"), "{out}");
    assert!(out.contains("+ network/spreadnet on play"), "{out}");
    let second_name = second.trim_start_matches("second=");
    assert!(
        out.contains(&format!("+ vm/spread1 on {second_name}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("+ network/spreadnet on {second_name}")),
        "{out}"
    );
    let (ok, out, err) = run(&["apply", "--yes"]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("Apply: 10 done, 0 failed, 0 skipped."),
        "{err}"
    );
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().take(2).eq(["spread0", "play"])),
        "the VM table says where: {out}"
    );
    let (ok, out, err) = run(&["diff", "--format", "json"]);
    assert!(ok, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["summary"]["unchanged"], 10, "{out}");
    assert_eq!(doc["changes"].as_array().map(Vec::len), Some(0), "{out}");
    let (ok, out, err) = run(&["destroy", "--yes"]);
    assert!(ok, "{out}{err}");
    assert!(
        err.contains("Destroy: 10 done, 0 failed, 0 skipped."),
        "{err}"
    );
    let (_, out, _) = run(&["diff"]);
    assert!(out.contains("Plan: 10 to add"), "{out}");
}

#[test]
fn a_plan_spread_over_two_sandboxes() {
    let env = env();
    spread_over(&env, "play2");

    // A failure on one provider stops nothing on the other.
    let out = plan_in(&env, &["apply", "--yes", "tests/fixtures/spread/site.yml"])
        .env("SITEPLAN_FAIL_ON", "vm/spread0")
        .run();
    let err = &out.stderr;
    assert_eq!(out.code(), Some(1), "{err}");
    assert!(err.contains("vm/spread0 on play FAILED"), "{err}");
    assert!(err.contains("vm/spread1 on play2 ok"), "{err}");
    assert!(err.contains("Apply: 9 done, 1 failed, 0 skipped."), "{err}");
}

#[test]
fn a_plan_spread_over_a_sandbox_and_a_real_libvirtd() {
    let Some((_held, uri)) =
        crate::harness::libvirtd("a_plan_spread_over_a_sandbox_and_a_real_libvirtd")
    else {
        return;
    };
    let env = env();
    let mut file = std::fs::read_to_string(&env.file).expect("providers file");
    file.push_str(&format!(
        "  - {{name: real, type: libvirt, uri: '{uri}'}}\n"
    ));
    std::fs::write(&env.file, file).expect("providers file");
    spread_over(&env, "real");
}

#[test]
fn a_provider_without_its_pool_is_unhealthy_and_says_why() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "providers:\n  - {{name: nopool, type: sandbox, dir: {}/s, pool: images}}\n  - {{name: off, type: sandbox, dir: {}/o, enabled: false}}\n",
            tmp.path().display(),
            tmp.path().display()
        ),
    )
    .expect("file");
    let get = |name: &str| {
        Plan::new(&["provider", "get", name])
            .env("SITEPLAN_PROVIDERS", &file)
            .env("XDG_STATE_HOME", tmp.path().join("state"))
            .run()
    };
    let out = get("nopool");
    let json = &out.stdout;
    assert!(out.ok(), "{json}");
    assert!(json.contains("\"health_status\": \"unhealthy\""), "{json}");
    assert!(
        json.contains("\"health_reason\": \"pool/images does not exist\""),
        "{json}"
    );
    assert!(
        json.contains("\"status\": \"registered\""),
        "it answered: {json}"
    );
    let json = get("off").stdout;
    assert!(json.contains("disabled in the providers file"), "{json}");
}

/// Without a providers file or `--provider`, a plan goes to the local libvirt, and when that
/// does not answer, nowhere: never to the sandbox in its place.
#[test]
fn a_default_provider_that_does_not_answer_is_not_replaced_by_another() {
    let tmp = tempfile::tempdir().expect("tmp");
    let refused = TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = refused.local_addr().expect("addr").port();
    drop(refused);
    let plan_file = tmp.path().join("site.yml");
    std::fs::write(&plan_file, "a1:\n  memory: 128\n").expect("plan");
    let sandbox = tmp.path().join("sandbox");
    for args in [vec!["diff"], vec!["apply", "--yes"], vec!["status"]] {
        let out = Plan::new(&args)
            .arg_path(&plan_file)
            .current_dir(tmp.path())
            .env("XDG_CONFIG_HOME", tmp.path().join("config"))
            .env("XDG_STATE_HOME", tmp.path().join("state"))
            .env("SITEPLAN_SANDBOX_DIR", &sandbox)
            .env(
                "SITEPLAN_LOCAL_URI",
                format!("qemu+tcp://127.0.0.1:{port}/system"),
            )
            .run();
        assert_eq!(out.code(), Some(1), "plan {args:?}: {}", out.text());
        assert!(
            out.stderr.contains("the local libvirt")
                && out.stderr.contains("does not answer")
                && out.stderr.contains("--provider")
                && out.stderr.contains("`sandbox`"),
            "plan {args:?}: {}",
            out.stderr
        );
        assert!(!sandbox.exists(), "plan {args:?} used the sandbox");
    }
}

/// A plan that exists on one provider is not made again on another because it went there by
/// default: the run is refused, naming where it is and the flags that say where it goes.
#[test]
fn a_plan_held_by_another_provider_is_not_made_again_by_default() {
    let env = two_sandboxes();
    let tmp = tempfile::tempdir().expect("tmp");
    let plan_file = tmp.path().join("held.yml");
    std::fs::write(&plan_file, "h1:\n  memory: 128\n").expect("plan");
    let run = |args: &[&str]| plan_in(&env, args).arg_path(&plan_file).run();
    let made = run(&["apply", "--yes", "--provider", "play2"]);
    assert!(made.ok(), "{}", made.text());
    for args in [vec!["diff"], vec!["apply", "--yes"], vec!["status"]] {
        let refused = run(&args);
        assert_eq!(refused.code(), Some(1), "plan {args:?}: {}", refused.text());
        let said = refused.stderr.replace('\n', " ");
        assert!(
            said.contains("provider `play2`")
                && said.contains("holds 3 resources of it")
                && said.contains("`--provider play2`")
                && said.contains("`--provider play`"),
            "plan {args:?}: {said}"
        );
    }
    // Told where: it goes there.
    let there = run(&["diff", "--provider", "play2", "--detailed-exitcode"]);
    assert_eq!(there.code(), Some(0), "{}", there.text());
    let here = run(&["diff", "--provider", "play"]);
    assert!(
        here.ok() && here.stdout.contains("+ vm/h1"),
        "{}",
        here.text()
    );
}

/// `depends_on` naming a VM on another provider orders the two and copies nothing: the VM
/// waits for the other to be made (and is skipped when that fails), and is deleted first.
#[test]
fn a_dependency_across_providers_orders_the_changes_and_copies_nothing() {
    let env = two_sandboxes();
    let tmp = tempfile::tempdir().expect("tmp");
    let plan_file = tmp.path().join("across.yml");
    std::fs::write(
        &plan_file,
        "acrossnet:\n  type: network\n  cidr: 192.168.246.0/24\n\
         db:\n  client: play\n  memory: 128\n  nets: [acrossnet]\n\
         app:\n  client: play2\n  memory: 128\n  nets: [acrossnet]\n  depends_on: [db]\n",
    )
    .expect("plan");
    let run = |args: &[&str]| plan_in(&env, args).arg_path(&plan_file);
    let diff = run(&["diff"]).run();
    assert!(diff.ok(), "{}", diff.text());
    assert!(diff.stdout.contains("+ vm/db on play\n"), "{}", diff.stdout);
    assert!(
        diff.stdout.contains("+ vm/app on play2\n"),
        "{}",
        diff.stdout
    );
    assert!(
        !diff.stdout.contains("vm/db on play2") && !diff.stdout.contains("db_0.img on play2"),
        "nothing of db is copied to play2:\n{}",
        diff.stdout
    );

    // db fails: app, which waits for it on the other provider, is skipped.
    let failed = run(&["apply", "--yes"])
        .env("SITEPLAN_FAIL_ON", "vm/db")
        .run();
    assert_eq!(failed.code(), Some(1), "{}", failed.text());
    assert!(
        failed
            .stderr
            .contains("vm/app on play2 skipped, because vm/db failed"),
        "{}",
        failed.stderr
    );
    assert!(failed
        .stderr
        .contains("volume/default/app_0.img on play2 ok"));

    // Slowed down, app still starts only once db is made.
    let applied = run(&["apply", "--yes"])
        .env("SITEPLAN_SLOW_CHANGES", "200")
        .run();
    assert!(applied.ok(), "{}", applied.text());
    let at = |needle: &str| {
        applied
            .stderr
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{}", applied.stderr))
    };
    assert!(
        at("vm/db on play ok") < at("creating vm/app on play2"),
        "{}",
        applied.stderr
    );
    let destroyed = run(&["destroy", "--yes"])
        .env("SITEPLAN_SLOW_CHANGES", "200")
        .run();
    assert!(destroyed.ok(), "{}", destroyed.text());
    let at = |needle: &str| {
        destroyed
            .stderr
            .find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in:\n{}", destroyed.stderr))
    };
    assert!(
        at("vm/app on play2 ok") < at("deleting vm/db on play"),
        "{}",
        destroyed.stderr
    );
}
