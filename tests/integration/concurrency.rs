//! What happens around a run: signals (Ctrl-C, and SIGTERM as CI sends it), and two runs of one
//! plan at once (the plan lock).

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::Plan;

const SITE: &str = "tests/fixtures/crash/site.yml";

/// `plan ARGS` on the sandbox in `dir`.
fn sandboxed(dir: &std::path::Path, args: &[&str]) -> Plan {
    Plan::new(args)
        .args(&["--provider", "sandbox"])
        .sandbox(dir)
}

/// `plan ARGS` on the sandbox in `dir`, each change made `slow_ms` longer.
fn slow_plan(dir: &std::path::Path, args: &[&str], slow_ms: u64) -> Plan {
    sandboxed(dir, args).env("SITEPLAN_SLOW_CHANGES", slow_ms.to_string())
}

/// The child's stderr lines as they come.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

/// Waits for a line containing `what`, returning every line read so far.
fn wait_for(lines: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let found = line.contains(what);
                seen.push(line);
                if found {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("no line with {what:?} came; saw:\n{}", seen.join("\n"));
}

fn rest(lines: mpsc::Receiver<String>, seen: &mut Vec<String>) -> String {
    seen.extend(lines);
    seen.join("\n")
}

fn send(child: &Child, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    rustix::process::kill_process(pid, signal).expect("signal sent");
}

#[test]
fn sigterm_starts_nothing_more_lets_changes_in_flight_finish_and_exits_143() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = slow_plan(
        dir.path(),
        &["apply", "--yes", "--parallelism", "1", SITE],
        1500,
    )
    .spawn_piped();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&lines, "creating", &mut seen);
    send(&child, rustix::process::Signal::TERM);
    let status = child.wait().unwrap();
    let out = rest(lines, &mut seen);
    assert_eq!(status.code(), Some(143), "{out}");
    assert!(
        out.contains("Interrupted (SIGTERM): starting nothing more"),
        "{out}"
    );
    // The change in flight finished; nothing after it started.
    assert!(out.contains("Apply: 1 done, 0 failed"), "{out}");
    assert!(
        out.contains("not started; run the same command again"),
        "{out}"
    );

    // The next run finishes the job.
    let again = sandboxed(dir.path(), &["apply", "--yes", "-q", SITE]).run();
    assert!(again.ok(), "{}", again.text());
    let diff = sandboxed(dir.path(), &["diff", SITE]).run();
    assert!(diff.text().contains("No changes"), "{}", diff.text());
}

#[test]
fn a_signal_before_any_change_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // While the providers are observed (slowed down for the test), as soon as the run says
    // where it goes.
    let mut child = slow_plan(dir.path(), &["apply", "--yes", SITE], 0)
        .env("SITEPLAN_SLOW_OBSERVE", "3000")
        .spawn_piped();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&lines, "sandbox", &mut seen);
    send(&child, rustix::process::Signal::INT);
    let status = child.wait().unwrap();
    let out = rest(lines, &mut seen);
    assert_eq!(status.code(), Some(130), "{out}");
    assert!(
        out.contains("Interrupted (Ctrl-C) before any change; nothing was changed."),
        "{out}"
    );
    let diff = sandboxed(dir.path(), &["diff", "-q", SITE]).run();
    assert!(
        !diff.text().contains("No changes"),
        "nothing was made: {}",
        diff.text()
    );
}

/// A run on the sandbox in `dir` killed with SIGKILL while its changes are in flight, its
/// lock left behind.
fn killed_run(dir: &std::path::Path, command: &str) {
    let mut child = slow_plan(dir, &[command, "--yes", SITE], 5000).spawn_piped();
    let lines = lines_of(&mut child);
    let mut seen = Vec::new();
    wait_for(&lines, "ing ", &mut seen);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_second_run_on_the_sandbox_is_refused_at_once_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = slow_plan(dir.path(), &["apply", "--yes", SITE], 1000).spawn_piped();
    let lines = lines_of(&mut first);
    let mut seen = Vec::new();
    wait_for(&lines, "creating", &mut seen);
    let started = Instant::now();
    let second = sandboxed(dir.path(), &["apply", "--yes", SITE]).run();
    let took = started.elapsed();
    assert_eq!(second.code(), Some(1), "{}", second.text());
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    assert!(
        second
            .text()
            .contains(&format!("`plan apply` (pid {}, since ", first.id())),
        "{}",
        second.text()
    );
    assert!(
        first.wait().unwrap().success(),
        "{}",
        rest(lines, &mut seen)
    );
    let diff = sandboxed(dir.path(), &["diff", SITE]).run();
    assert!(diff.text().contains("No changes"), "{}", diff.text());
}

#[test]
fn a_killed_runs_lock_is_taken_over_by_the_next_run_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    killed_run(dir.path(), "apply");
    let diff = sandboxed(dir.path(), &["diff", "-q", SITE]).run();
    assert!(
        diff.text()
            .contains("has a stale lock on sandbox, left by `plan apply ")
            && diff.text().contains("no longer runs"),
        "{}",
        diff.text()
    );
    let again = sandboxed(dir.path(), &["apply", "--yes", "-q", SITE]).run();
    assert!(again.ok(), "{}", again.text());
    assert!(
        again
            .text()
            .contains("taking over plan `site`'s lock on sandbox from `plan apply "),
        "{}",
        again.text()
    );
    // Released at the end: the next run says nothing of a lock.
    let diff = sandboxed(dir.path(), &["diff", SITE]).run();
    assert!(diff.text().contains("No changes"), "{}", diff.text());
    assert!(!diff.text().contains("lock"), "{}", diff.text());
}

#[test]
fn plan_unlock_asks_then_removes_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    killed_run(dir.path(), "apply");
    // Not a terminal, and no --yes: nothing is removed.
    let refused = sandboxed(dir.path(), &["unlock", SITE]).run();
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(refused.text().contains("pass --yes"), "{}", refused.text());
    let diff = sandboxed(dir.path(), &["diff", "-q", SITE]).run();
    assert!(diff.text().contains("stale lock"), "{}", diff.text());

    let removed = sandboxed(dir.path(), &["unlock", "--yes", SITE]).run();
    assert!(removed.ok(), "{}", removed.text());
    assert!(
        removed
            .text()
            .contains("Removed plan `site`'s lock on sandbox, held by `plan apply "),
        "{}",
        removed.text()
    );
    let none = sandboxed(dir.path(), &["unlock", "--yes", SITE]).run();
    assert!(
        none.text()
            .contains("Plan `site` holds no lock on sandbox."),
        "{}",
        none.text()
    );
    let again = sandboxed(dir.path(), &["apply", "--yes", "-q", SITE]).run();
    assert!(
        again.ok() && !again.text().contains("lock"),
        "{}",
        again.text()
    );
}

/// `plan ARGS` for the lock plan on the real libvirtd.
fn on_libvirtd(uri: &str, args: &[&str]) -> Plan {
    Plan::new(args).args(&[
        "tests/fixtures/lock/site.yml",
        "--provider",
        uri,
        "--name",
        "lockrace",
    ])
}

#[test]
fn real_libvirtd_two_applies_at_once_one_runs_and_the_other_is_refused_at_once() {
    let Some((_one_at_a_time, uri)) = crate::harness::libvirtd(
        "real_libvirtd_two_applies_at_once_one_runs_and_the_other_is_refused_at_once",
    ) else {
        return;
    };
    let destroy = || {
        let out = on_libvirtd(&uri, &["destroy", "--yes", "-q"]).run();
        assert!(out.ok(), "{}", out.text());
    };
    destroy();
    let mut first = on_libvirtd(&uri, &["apply", "--yes"]).spawn_piped();
    let lines = lines_of(&mut first);
    let mut seen = Vec::new();
    wait_for(&lines, "creating", &mut seen);
    let started = Instant::now();
    let second = on_libvirtd(&uri, &["apply", "--yes"]).run();
    let took = started.elapsed();
    assert_eq!(second.code(), Some(1), "{}", second.text());
    assert!(took < Duration::from_secs(1), "refused after {took:?}");
    let holder = format!(
        "is locked on libvirt by `plan apply tests/fixtures/lock/site.yml --name lockrace \
         --provider {uri}` (pid {} on ",
        first.id()
    );
    assert!(second.text().contains(&holder), "{}", second.text());
    assert!(
        second
            .text()
            .contains("`plan unlock tests/fixtures/lock/site.yml --name lockrace --provider"),
        "{}",
        second.text()
    );
    // Looking takes no lock, and says who changes the plan.
    let status = on_libvirtd(&uri, &["status"]).run();
    assert!(
        status
            .text()
            .contains("plan `lockrace` is being changed on libvirt by `plan apply"),
        "{}",
        status.text()
    );
    let status = first.wait().unwrap();
    assert!(status.success(), "{}", rest(lines, &mut seen));
    let diff = on_libvirtd(&uri, &["diff"]).run();
    assert!(diff.text().contains("No changes"), "{}", diff.text());
    assert!(!diff.text().contains("being changed"), "{}", diff.text());

    // The holder killed outright: the next run takes its lock over, and finishes the job.
    let mut killed = on_libvirtd(&uri, &["destroy", "--yes"])
        .env("SITEPLAN_SLOW_CHANGES", "3000")
        .spawn_piped();
    let lines = lines_of(&mut killed);
    let mut seen = Vec::new();
    wait_for(&lines, "deleting", &mut seen);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let again = on_libvirtd(&uri, &["apply", "--yes", "-q"]).run();
    assert!(again.ok(), "{}", again.text());
    assert!(
        again
            .text()
            .contains("taking over plan `lockrace`'s lock on libvirt from `plan destroy"),
        "{}",
        again.text()
    );
    destroy();
}

#[test]
fn real_libvirtd_restarted_during_an_apply_fails_what_was_in_flight_and_the_next_apply_finishes() {
    let test =
        "real_libvirtd_restarted_during_an_apply_fails_what_was_in_flight_and_the_next_apply_finishes";
    let Some((_one_at_a_time, uri)) = crate::harness::libvirtd(test) else {
        return;
    };
    let Some(restart) = std::env::var("SITEPLAN_TEST_RESTART_LIBVIRTD")
        .ok()
        .filter(|c| !c.is_empty())
    else {
        crate::harness::report(&format!(
            "SKIPPED {test}: SITEPLAN_TEST_RESTART_LIBVIRTD does not say how to restart \
             libvirtd (.ci/run sets it to `.ci/libvirtd restart`)"
        ));
        return;
    };
    let run = |args: &[&str]| {
        Plan::new(args)
            .args(&[
                "tests/fixtures/lock/site.yml",
                "--provider",
                &uri,
                "--name",
                "restarted",
            ])
            .params(&["vms=4"])
    };
    let destroyed = run(&["destroy", "--yes", "-q"]).run();
    assert!(destroyed.ok(), "{}", destroyed.text());

    // The network and the pool are made first; the daemon goes away while the volumes are.
    let mut applying = run(&["apply", "--yes"])
        .env("SITEPLAN_SLOW_CHANGES", "1500")
        .spawn_piped();
    let lines = lines_of(&mut applying);
    let mut seen = Vec::new();
    wait_for(&lines, "creating volume/", &mut seen);
    // The network is made alongside the pool, and may still be starting (libvirtd starts its
    // dnsmasq) when the first volume is: the daemon goes away only once it is made, while
    // the volumes wait out their slowdown.
    if !seen.iter().any(|l| l.contains("network/locknet ok")) {
        wait_for(&lines, "network/locknet ok", &mut seen);
    }
    let restarted = std::process::Command::new("sh")
        .args(["-c", &restart])
        .output()
        .expect("the restart command runs");
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let status = applying.wait().unwrap();
    let out = rest(lines, &mut seen);
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("FAILED: lost the connection to {uri}")),
        "{out}"
    );
    assert!(out.contains("skipped, because volume/"), "{out}");
    // The lost connection is not mistaken for missing resources.
    assert!(!out.contains("does not exist"), "{out}");
    assert!(
        out.contains("cannot release plan `restarted`'s lock on libvirt"),
        "{out}"
    );

    // The next run takes the dead run's lock over and finishes the job, duplicating nothing.
    let again = run(&["apply", "--yes", "-q"]).run();
    assert!(again.ok(), "{}", again.text());
    assert!(
        again.text().contains("taking over plan `restarted`'s lock"),
        "{}",
        again.text()
    );
    let diff = run(&["diff"]).run();
    assert!(diff.text().contains("No changes"), "{}", diff.text());
    let volumes = std::process::Command::new("virsh")
        .args(["-c", &uri, "vol-list", "lockpool"])
        .output()
        .expect("virsh");
    // `Name  Path` rows after a header and a rule.
    let mut names: Vec<String> = String::from_utf8_lossy(&volumes.stdout)
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "lock0-cidata.img",
            "lock0_0.img",
            "lock1-cidata.img",
            "lock1_0.img",
            "lock2-cidata.img",
            "lock2_0.img",
            "lock3-cidata.img",
            "lock3_0.img",
            "siteplan-ledger.json"
        ]
    );
    let destroyed = run(&["destroy", "--yes", "-q"]).run();
    assert!(destroyed.ok(), "{}", destroyed.text());
}
