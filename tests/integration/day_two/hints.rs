//! The commands the output suggests (restart, ssh) are the commands that were run, with no secret in them.

use super::*;

const WORKERS: &str = "\
parameters:
  workers: 1
  memory: 128
  admin_pass: unset
{% for i in range(workers) %}
w{{ i }}:
  memory: {{ memory }}
  cmds: ['echo {{ admin_pass }} > /root/pass']
{% endfor %}
";

/// The command between the first pair of backticks after `after` in `text`.
fn hint<'t>(text: &'t str, after: &str) -> &'t str {
    let from = text
        .find(after)
        .unwrap_or_else(|| panic!("no {after:?} in:\n{text}"));
    let rest = &text[from..];
    let start = rest.find('`').expect("a command") + 1;
    let len = rest[start..].find('`').expect("its end");
    &rest[start..start + len]
}

/// Runs a hint as a person pastes it into a shell, with the secret typed in again.
fn run_hint(lab: &SandboxLab, command: &str, secret: &str) -> crate::harness::Ran {
    let words = shlex::split(&command.replace('…', secret)).expect("a command line");
    assert_eq!(words[0], "plan", "{command}");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    Plan::new(&args)
        .sandbox(&lab.sandbox())
        .env("XDG_STATE_HOME", lab.dir.path().join("state"))
        .current_dir(lab.dir.path())
        .run()
}

/// The commands that hints offer to copy are the run's own: its parameter file, `-P` values
/// and provider. Followed, they do what they say, and nothing else (no worker deleted).
#[test]
fn hints_are_the_command_that_was_run() {
    let lab = SandboxLab::new("workers.yml", WORKERS);
    let params = lab.dir.path().join("big.yml");
    std::fs::write(&params, "workers: 2\nmemory: 128\n").expect("params");
    let params = params.to_string_lossy().into_owned();
    let flags = [
        "--paramfile",
        params.as_str(),
        "-P",
        "admin_pass=s3cret-0301",
    ];
    let mut with = flags.to_vec();
    with.push("--yes");
    assert!(lab.plan(&["apply"], &with).ok());

    // More memory waits for a restart: the hint restarts both workers, and deletes none.
    std::fs::write(&params, "workers: 2\nmemory: 256\n").expect("params");
    let applied = lab.plan(&["apply"], &with);
    assert!(applied.ok(), "{}", applied.text());
    let restart = hint(&applied.stderr, "Waiting for a restart");
    for needed in [
        "--restart",
        "--provider sandbox",
        "--paramfile",
        "-P admin_pass=…",
    ] {
        assert!(restart.contains(needed), "{needed:?} in {restart:?}");
    }
    assert!(
        !applied.text().contains("s3cret-0301"),
        "{}",
        applied.text()
    );
    let restarted = run_hint(&lab, &format!("{restart} --yes"), "s3cret-0301");
    assert!(restarted.ok(), "{}", restarted.text());
    assert!(
        restarted.stdout.contains("0 to destroy") && !restarted.stdout.contains("- vm/w1"),
        "{}",
        restarted.stdout
    );
    assert!(restarted.stderr.contains("vm w1"), "{}", restarted.stderr);

    // A stale saved plan's hint reviews the plan as it was saved.
    let saved = lab.dir.path().join("saved.plan");
    let saved_arg = saved.to_string_lossy().into_owned();
    let mut out = flags.to_vec();
    out.extend(["--out", saved_arg.as_str()]);
    std::fs::write(&params, "workers: 2\nmemory: 300\n").expect("params");
    assert!(lab.plan(&["diff"], &out).ok());
    assert!(lab.plan(&["stop"], &["w0"]).ok());
    let stale = Plan::new(&["apply", &saved_arg, "-P", "admin_pass=s3cret-0301"])
        .sandbox(&lab.sandbox())
        .env("XDG_STATE_HOME", lab.dir.path().join("state"))
        .run();
    assert_eq!(stale.code(), Some(1), "{}", stale.text());
    let again = hint(&stale.stderr, "Review the plan again");
    for needed in [
        "plan diff",
        "--paramfile",
        "-P admin_pass=…",
        "--out",
        "saved.plan",
    ] {
        assert!(again.contains(needed), "{needed:?} in {again:?}");
    }
    let reviewed = run_hint(&lab, again, "s3cret-0301");
    assert!(reviewed.ok(), "{}", reviewed.text());
    assert!(
        reviewed.stdout.contains("0 to destroy"),
        "{}",
        reviewed.stdout
    );

    // The status hint is the run's diff.
    let status = lab.plan(&["status"], &flags);
    assert_eq!(status.code(), Some(2), "{}", status.text());
    let diff = hint(&status.stdout, "does not match the providers");
    assert!(
        diff.contains("--paramfile") && diff.contains("-P admin_pass=…"),
        "{diff}"
    );
    let shown = run_hint(&lab, diff, "s3cret-0301");
    assert!(
        shown.ok() && shown.stdout.contains("0 to destroy"),
        "{}",
        shown.text()
    );
}
