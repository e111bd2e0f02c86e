//! What happens around a run: signals (Ctrl-C, and SIGTERM as CI sends it), and two runs of one
//! plan at once (the plan lock).

use std::io::{BufRead, BufReader};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::Plan;

const SITE: &str = "tests/fixtures/crash/site.yml";

/// `plan ARGS` on the sandbox in `dir`, each change made `slow_ms` longer.
fn slow_plan(dir: &std::path::Path, args: &[&str], slow_ms: u64) -> Plan {
    Plan::new(args)
        .sandbox(dir)
        .env("SITEPLAN_SLOW_CHANGES", slow_ms.to_string())
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
    let again = Plan::new(&["apply", "--yes", "-q", SITE])
        .sandbox(dir.path())
        .run();
    assert!(again.ok(), "{}", again.text());
    let diff = Plan::new(&["diff", SITE]).sandbox(dir.path()).run();
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
    let diff = Plan::new(&["diff", "-q", SITE]).sandbox(dir.path()).run();
    assert!(
        !diff.text().contains("No changes"),
        "nothing was made: {}",
        diff.text()
    );
}
