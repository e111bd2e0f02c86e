//! Remote libvirt, for real: `plan` against the real libvirtd through an sshd on 127.0.0.1
//! (`.ci/sshd`), as a user reaches a lab host with `qemu+ssh://`. The host key is checked
//! (unknown and changed keys are refused, saying how to trust the right one), and a diff makes
//! a number of round trips that grows with the number of VMs only by what libvirt's API needs.

use crate::harness::{self, Plan, Ran};

const LOCK_PLAN: &str = "tests/fixtures/lock/site.yml";

fn plan_on(uri: &str, args: &[&str], vms: usize) -> Ran {
    Plan::new(args)
        .args(&[LOCK_PLAN, "--provider", uri, "--name", "remote"])
        .params(&[&format!("vms={vms}")])
        .run()
}

/// The test host's key, as `ssh-keygen -l` shows it (`SHA256:…`).
fn host_fingerprint() -> String {
    let key = harness::test_host_key();
    let out = std::process::Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(key.as_bytes())?;
            child.wait_with_output()
        })
        .expect("ssh-keygen -l");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .expect("a fingerprint")
        .to_string()
}

#[test]
fn remote_libvirt_host_keys_are_checked() {
    let Some((_held, ssh, _local)) = harness::ssh_libvirtd("remote_libvirt_host_keys_are_checked")
    else {
        return;
    };
    let name = harness::test_host_name();
    let fingerprint = host_fingerprint();

    // Unknown: refused, with the key's fingerprint and the command that trusts it.
    harness::trust_test_host(None);
    let unknown = plan_on(&ssh, &["diff"], 1);
    assert_eq!(unknown.code(), Some(1), "{}", unknown.text());
    assert!(
        unknown.stderr.contains(&format!(
            "the host key of {name} is unknown (not in known_hosts)"
        )) && unknown
            .stderr
            .contains(&format!("ssh-ed25519 {fingerprint}"))
            && unknown.stderr.contains(">> ~/.ssh/known_hosts"),
        "{}",
        unknown.text()
    );

    // Changed: known_hosts has another key for it.
    let other = tempfile::tempdir().expect("tmp");
    let key = other.path().join("other");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let other_key = std::fs::read_to_string(key.with_extension("pub")).expect("key");
    let other_key: Vec<&str> = other_key.split_whitespace().take(2).collect();
    harness::trust_test_host(Some(&other_key.join(" ")));
    let changed = plan_on(&ssh, &["diff"], 1);
    assert_eq!(changed.code(), Some(1), "{}", changed.text());
    assert!(
        changed.stderr.contains(&format!(
            "the host key of {name} is not the one known_hosts has for it"
        )) && changed.stderr.contains(&format!("ssh-keygen -R '{name}'"))
            && changed.stderr.contains(&fingerprint),
        "{}",
        changed.text()
    );

    // verify_host_key: false connects, whatever known_hosts says.
    let dir = tempfile::tempdir().expect("tmp");
    let providers = dir.path().join("providers.yml");
    std::fs::write(
        &providers,
        format!(
            "providers:\n  - name: lab1\n    type: libvirt\n    uri: \"{ssh}\"\n    \
             verify_host_key: false\n"
        ),
    )
    .expect("providers file");
    let unchecked = Plan::new(&["diff", LOCK_PLAN, "--provider", "lab1", "--name", "remote"])
        .params(&["vms=1"])
        .providers(&providers, &dir.path().join("state"))
        .run();
    assert!(unchecked.ok(), "{}", unchecked.text());
    harness::trust_test_host(Some(&harness::test_host_key()));
    let trusted = plan_on(&ssh, &["diff"], 1);
    assert!(trusted.ok(), "{}", trusted.text());
}

/// The libvirt RPC calls `plan diff` makes, counted from libvirt's own client log.
fn round_trips(uri: &str, vms: usize) -> usize {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("rpc.log");
    let out = Plan::new(&[
        "diff",
        "-q",
        LOCK_PLAN,
        "--provider",
        uri,
        "--name",
        "remote",
    ])
    .params(&[&format!("vms={vms}")])
    .env("LIBVIRT_LOG_FILTERS", "1:rpc")
    .env("LIBVIRT_LOG_OUTPUTS", format!("1:file:{}", log.display()))
    .run();
    assert!(out.ok(), "{}", out.text());
    assert!(out.text().contains("No changes"), "{}", out.text());
    std::fs::read_to_string(&log)
        .expect("libvirt's log")
        .lines()
        .filter(|l| l.contains("RPC_CLIENT_MSG_TX_QUEUE"))
        .count()
}

/// Each VM of this plan is a domain and two volumes; libvirt's API reads each definition with
/// a call of its own (there is no call that returns many), and a running domain's live
/// definition with one more. Everything else is a constant number of listings.
const ROUND_TRIPS_PER_VM: usize = 4;

/// The constant part is not quite constant: the plan's ledger is a file in its pool, which
/// libvirt lists (and siteplan reads) as one more volume only once the pool was refreshed after
/// the ledger was written. CI saw 64 with 10 VMs and 145 with 30 for that reason alone.
const LEDGER_VOLUME: usize = 1;

fn round_trips_grow_only_per_vm(uri: &str, how: &str) {
    let apply = |vms: usize| {
        let out = plan_on(uri, &["apply", "--yes", "-q"], vms);
        assert!(out.ok(), "{}", out.text());
    };
    // What an earlier, failed run left.
    let out = plan_on(uri, &["destroy", "--yes", "-q"], 30);
    assert!(out.ok(), "{}", out.text());
    apply(10);
    let ten = round_trips(uri, 10);
    apply(30);
    let thirty = round_trips(uri, 30);
    harness::report(&format!(
        "round trips of `plan diff` {how}: {ten} with 10 VMs, {thirty} with 30 VMs"
    ));
    assert!(
        thirty - ten <= 20 * ROUND_TRIPS_PER_VM + LEDGER_VOLUME,
        "{how}: {ten} round trips with 10 VMs, {thirty} with 30: more than \
         {ROUND_TRIPS_PER_VM} per VM"
    );
    let out = plan_on(uri, &["destroy", "--yes", "-q"], 30);
    assert!(out.ok(), "{}", out.text());
}

#[test]
fn remote_libvirt_diff_round_trips_grow_only_by_what_each_vm_needs() {
    let Some((_held, ssh, local)) =
        harness::ssh_libvirtd("remote_libvirt_diff_round_trips_grow_only_by_what_each_vm_needs")
    else {
        return;
    };
    round_trips_grow_only_per_vm(&local, "on the local socket");
    round_trips_grow_only_per_vm(&ssh, "over ssh");
}
