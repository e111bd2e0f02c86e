//! What waits in a lab: a seed made again waits for its VM's restart, a paused VM for apply to resume it.

use super::*;

/// A seed made again for a running VM is read only when the VM boots: after the apply that
/// made it, the diff and status still say the VM waits for a restart, until it restarts.
#[test]
fn a_seed_made_again_stays_waiting_until_the_vm_restarts() {
    let lab = SandboxLab::new(
        "seeded.yml",
        "parameters:\n  greeting: one\ns1:\n  memory: 128\n  cmds: ['echo {{ greeting }}']\n",
    );
    assert!(lab.plan(&["apply", "--yes"], &[]).ok());
    let two = ["-P", "greeting=two"];
    let mut yes = two.to_vec();
    yes.push("--yes");
    let applied = lab.plan(&["apply"], &yes);
    assert!(applied.ok(), "{}", applied.text());
    assert!(
        applied
            .stderr
            .contains("Waiting for a restart (saved, not running yet): vm/s1"),
        "{}",
        applied.stderr
    );
    for _ in 0..2 {
        let diff = lab.plan(&["diff", "--detailed-exitcode"], &two);
        assert_eq!(diff.code(), Some(2), "{}", diff.text());
        assert!(
            diff.stdout.contains("↻ vm/s1")
                && diff
                    .stdout
                    .contains("seed content: \"(sensitive)\" → \"(sensitive, changed)\""),
            "{}",
            diff.stdout
        );
        let status = lab.plan(&["status"], &two);
        assert!(
            row(&status.stdout, "vm/s1").contains("waits for a restart: seed content"),
            "{}",
            status.stdout
        );
    }
    let mut restart = yes.clone();
    restart.push("--restart");
    assert!(lab.plan(&["apply"], &restart).ok());
    let clean = lab.plan(&["diff", "--detailed-exitcode"], &two);
    assert_eq!(clean.code(), Some(0), "{}", clean.text());
}

/// A VM left paused (a lab snapshot stopped half-way by a second signal, or a person) stays
/// paused across processes, is said to be paused by status and diff, is given no address, and
/// apply resumes it.
#[test]
fn a_paused_vm_is_shown_paused_and_apply_resumes_it() {
    let lab = new_lab();
    assert!(lab.plan(&["apply", "--yes"], &[]).ok());
    {
        use siteplan::provider::capability::LabSnapshots;
        let sandbox = crate::harness::reopen_sandbox(&lab.sandbox());
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let paused = runtime
            .block_on(sandbox.pause("day1", &siteplan::provider::Owner::plan("day")))
            .expect("paused");
        assert!(paused);
    }
    let table = lab.plan(&["status"], &[]);
    assert_eq!(table.code(), Some(2), "{}", table.text());
    let day1 = row(&table.stdout, "vm/day1");
    assert!(
        day1.contains("paused") && !day1.contains("10.96.1."),
        "{}",
        table.stdout
    );
    let diff = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(diff.code(), Some(2), "{}", diff.text());
    assert!(
        diff.stdout
            .contains("~ vm/day1: paused (a lab snapshot stopped half-way")
            && diff.stdout.contains("apply resumes it")
            && diff.stdout.contains("paused: true → false"),
        "{}",
        diff.stdout
    );
    let ssh = lab.plan(&["ssh"], &["day1"]);
    assert!(ssh.stderr.contains("vm/day1 is paused"), "{}", ssh.stderr);
    let applied = lab.plan(&["apply", "--yes"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(applied.stderr.contains("resumed"), "{}", applied.stderr);
    let (code, doc) = status_json(&lab, &[]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(vm_of(&doc, "vm/day1")["state"], "running");
}
