//! `plan generate` on the sandbox, driven as a user would: VMs and a network made by hand (no
//! plan's mark: written into the sandbox's saved state as `virsh define` would leave them) are
//! written as a plan, which adoption takes over with nothing to change but the marks, and which
//! then changes and destroys them; a lab whose plan file was lost is written again; and what
//! cannot be written is refused.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report

use std::path::Path;

use crate::harness::{Plan, Ran, SandboxLab};

/// A network and three VMs defined by hand: two on the network, one elsewhere.
fn hand_made(sandbox: &Path) {
    let network = |name: &str, third: u8| {
        format!(
            "<network><name>{name}</name><bridge name='{name}'/><domain name='{name}'/>\
             <ip address='10.97.{third}.1' prefix='24'><dhcp><range start='10.97.{third}.2' \
             end='10.97.{third}.254'/></dhcp></ip></network>"
        )
    };
    // With what siteplan does not manage (a description, a CD-ROM, a display), which it must
    // keep.
    let domain = |name: &str, net: &str, mac: &str| {
        format!(
            "<domain type='test'><name>{name}</name><description>made by hand</description>\
             <memory unit='MiB'>256</memory><vcpu>1</vcpu><os><type arch='x86_64'>hvm</type>\
             </os><devices><disk type='file' device='cdrom'><source file='/srv/tools.iso'/>\
             <target dev='hdc' bus='ide'/><readonly/></disk>\
             <interface type='network'><source network='{net}'/><mac address='{mac}'/>\
             <model type='virtio'/></interface><graphics type='vnc' port='-1'/>\
             <video><model type='vga'/></video></devices></domain>"
        )
    };
    // On a host's bridge, not on a libvirt network: a plan's NICs are on networks.
    let bridged = "<domain type='test'><name>bridged</name><memory unit='MiB'>128</memory>\
        <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>\
        <interface type='bridge'><source bridge='br0'/><mac address='52:54:00:5a:d0:04'/>\
        </interface></devices></domain>";
    let state = serde_json::json!({
        "format": 2,
        "seq": 0,
        "objects": {
            "networks": {
                "handnet": { "xml": network("handnet", 6), "autostart": true },
                "othernet": { "xml": network("othernet", 7), "autostart": true },
            },
            "pools": {},
            "volumes": {},
            "domains": {
                "hand1": { "xml": domain("hand1", "handnet", "52:54:00:5a:d0:01"), "autostart": false },
                "hand2": { "xml": domain("hand2", "handnet", "52:54:00:5a:d0:02"), "autostart": false },
                "elsewhere": { "xml": domain("elsewhere", "othernet", "52:54:00:5a:d0:03"), "autostart": false },
                "bridged": { "xml": bridged, "autostart": false },
                // kcli's plan reads `parameters` as its parameters block.
                "parameters": { "xml": domain("parameters", "othernet", "52:54:00:5a:d0:05"), "autostart": false },
            },
        },
    });
    std::fs::create_dir_all(sandbox).expect("the sandbox");
    std::fs::write(sandbox.join("state.json"), state.to_string()).expect("its state");
}

/// The definition a domain of the sandbox boots with next, as its saved state holds it.
fn definition(sandbox: &Path, name: &str) -> String {
    let record = |objects: &serde_json::Value| -> Option<String> {
        let domain = objects.get("domains")?.get(name)?;
        domain
            .get("defined")
            .and_then(|d| d.as_str())
            .or_else(|| domain.get("xml").and_then(|x| x.as_str()))
            .map(str::to_string)
    };
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(sandbox.join("state.json")).expect("its state"),
    )
    .expect("JSON");
    let mut found = record(&state["objects"]);
    for line in std::fs::read_to_string(sandbox.join("journal"))
        .unwrap_or_default()
        .lines()
    {
        if let Ok(record_line) = serde_json::from_str::<serde_json::Value>(line) {
            found = record(&record_line).or(found);
        }
    }
    found.unwrap_or_default()
}

/// What the hand-made VM had that no plan says, still there.
fn still_as_made(sandbox: &Path, name: &str) {
    let xml = definition(sandbox, name);
    assert!(xml.contains("urn:siteplan:owner"), "not marked:\n{xml}");
    for kept in [
        "device='cdrom'",
        "/srv/tools.iso",
        "<graphics type='vnc'",
        "<video>",
        "made by hand",
    ] {
        assert!(xml.contains(kept), "{kept} was lost:\n{xml}");
    }
}

fn generate(lab: &SandboxLab, args: &[&str]) -> Ran {
    Plan::new(&["generate"])
        .sandbox(&lab.sandbox())
        .env("XDG_STATE_HOME", lab.dir.path().join("state"))
        .args(args)
        .args(&["--provider", "sandbox"])
        .run()
}

/// The lines of a diff that name an attribute (indented under their resource).
fn attributes(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|l| l.starts_with("      "))
        .map(str::trim)
        .collect()
}

#[test]
fn vms_made_by_hand_are_written_as_a_plan_that_adopts_them_as_they_are() {
    let lab = SandboxLab::new("unused.yml", "");
    hand_made(&lab.sandbox());
    let file = lab.dir.path().join("hand.yml");
    let made = generate(
        &lab,
        &["--network", "handnet", "-o", &file.to_string_lossy()],
    );
    assert!(made.ok(), "{}", made.text());
    assert!(
        made.stderr.contains("changes nothing but siteplan's marks"),
        "{}",
        made.stderr
    );
    let text = std::fs::read_to_string(&file).expect("the plan written");
    crate::harness::report(&format!("the plan written:\n{text}"));
    // The network and its two VMs, alike, as one profile; nothing of the other network.
    assert!(
        text.contains("handnet:\n  type: network\n  cidr: 10.97.6.0/24"),
        "{text}"
    );
    assert!(text.contains("hand-profile:\n  type: profile"), "{text}");
    assert!(text.contains("mac: 52:54:00:5a:d0:02"), "{text}");
    assert!(
        !text.contains("elsewhere") && !text.contains("othernet"),
        "{text}"
    );

    let run = |args: &[&str], more: &[&str]| {
        Plan::new(args)
            .sandbox(&lab.sandbox())
            .env("XDG_STATE_HOME", lab.dir.path().join("state"))
            .args(&[&file.to_string_lossy(), "--provider", "sandbox"])
            .args(more)
            .run()
    };
    // Without adoption: refused, as anything the plan did not make.
    let refused = run(&["diff"], &[]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    let diff = run(&["diff"], &["--adopt-all"]);
    assert!(diff.ok(), "{}", diff.text());
    for adopted in ["<= network/handnet", "<= vm/hand1", "<= vm/hand2"] {
        assert!(diff.stdout.contains(adopted), "{}", diff.stdout);
    }
    assert!(
        attributes(&diff.stdout)
            .iter()
            .all(|a| a.starts_with("owner:")),
        "more than the marks would change:\n{}",
        diff.stdout
    );
    assert!(diff.stdout.contains("3 to adopt"), "{}", diff.stdout);
    let applied = run(&["apply", "--yes"], &["--adopt-all"]);
    assert!(applied.ok(), "{}", applied.text());
    let clean = run(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(clean.code(), Some(0), "{}", clean.text());
    // Only the mark changed: its CD-ROM and display are as they were.
    still_as_made(&lab.sandbox(), "hand1");

    // The plan's own now: a change to its profile goes to both VMs.
    std::fs::write(&file, text.replace("memory: 256", "memory: 384")).expect("changed");
    let changed = run(&["apply", "--yes"], &[]);
    assert!(changed.ok(), "{}", changed.text());
    still_as_made(&lab.sandbox(), "hand2");
    assert!(
        definition(&lab.sandbox(), "hand2").contains("393216"),
        "memory not changed"
    );
    // They run: the new memory waits for their restart, and status says so.
    let status = run(&["status", "-o", "json"], &[]);
    assert_eq!(status.code(), Some(2), "{}", status.text());
    assert!(
        status.stdout.contains("\"memory_mib\""),
        "{}",
        status.stdout
    );
    let destroyed = run(&["destroy", "--yes"], &[]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    for gone in ["network/handnet", "vm/hand1", "vm/hand2"] {
        assert!(destroyed.stdout.contains(gone), "{}", destroyed.stdout);
    }
    // What was not chosen is still there, as it was.
    let listed = generate(&lab, &["elsewhere"]);
    assert!(listed.ok(), "{}", listed.text());
    assert!(listed.stdout.contains("elsewhere:"), "{}", listed.stdout);
    let gone = generate(&lab, &["hand1"]);
    assert_eq!(gone.code(), Some(1), "{}", gone.text());
    assert!(gone.stderr.contains("not found"), "{}", gone.stderr);
}

const SECRET_LAB: &str = "
labnet:
  type: network
  cidr: 10.98.0.0/24
labpool:
  type: pool
  path: /var/lib/siteplan/genpool
node1:
  pool: labpool
  memory: 512
  rootpassword: '{{ password }}'
  keys: [ssh-ed25519 AAAA node]
  cmds: [echo one]
  disks: [2]
  nets:
    - name: labnet
      ip: 10.98.0.11
      prefix: 24
node2:
  pool: labpool
  memory: 512
  rootpassword: '{{ password }}'
  keys: [ssh-ed25519 AAAA node]
  cmds: [echo two]
  disks: [2]
  nets: [labnet]
";

#[test]
fn a_lab_whose_plan_file_was_lost_is_written_again_without_its_password() {
    let password = "gen-Secret-7731";
    let lab = SandboxLab::new("nodes.yml", SECRET_LAB);
    let applied = lab.plan(
        &["apply", "--yes"],
        &["-P", &format!("password={password}")],
    );
    assert!(applied.ok(), "{}", applied.text());
    std::fs::remove_file(&lab.file).expect("the plan file, lost");

    let file = lab.dir.path().join("again.yml");
    let made = generate(&lab, &["--plan", "nodes", "-o", &file.to_string_lossy()]);
    assert!(made.ok(), "{}", made.text());
    let text = std::fs::read_to_string(&file).expect("the plan written");
    crate::harness::report(&format!("the plan written again:\n{text}"));
    assert!(
        !text.contains(password) && !made.text().contains(password),
        "{text}"
    );
    assert!(text.contains("rootpassword: ?required"), "{text}");
    assert!(
        made.stderr.contains("give rootpassword with -P"),
        "{}",
        made.stderr
    );
    assert!(text.contains("labpool:\n  type: pool"), "{text}");

    let run = |more: &[&str]| {
        Plan::new(&["diff", "--detailed-exitcode"])
            .sandbox(&lab.sandbox())
            .env("XDG_STATE_HOME", lab.dir.path().join("state"))
            .args(&[
                &file.to_string_lossy(),
                "--provider",
                "sandbox",
                "--name",
                "nodes",
                "--plan-moved",
            ])
            .args(more)
            .run()
    };
    let without = run(&[]);
    assert_eq!(without.code(), Some(1), "{}", without.text());
    assert!(
        without.stderr.contains("rootpassword"),
        "{}",
        without.stderr
    );
    // With the password, nothing differs but the file the marks record.
    let diff = run(&["-P", &format!("rootpassword={password}")]);
    assert!(
        attributes(&diff.stdout)
            .iter()
            .all(|a| a.starts_with("applied_from:")),
        "{}",
        diff.stdout
    );
    assert!(!diff.text().contains(password), "{}", diff.text());
}

#[test]
fn generate_refuses_what_it_cannot_write() {
    let lab = SandboxLab::new("unused.yml", "");
    hand_made(&lab.sandbox());
    let nothing = generate(&lab, &[]);
    assert_eq!(nothing.code(), Some(1), "{}", nothing.text());
    assert!(
        nothing.stderr.contains("nothing was chosen"),
        "{}",
        nothing.stderr
    );
    let unknown = generate(&lab, &["--plan", "nosuchplan"]);
    assert_eq!(unknown.code(), Some(1), "{}", unknown.text());
    assert!(
        unknown.stderr.contains("`nosuchplan`"),
        "{}",
        unknown.stderr
    );
    // A VM whose name cannot name an entry: refused, named.
    let reserved = generate(&lab, &["parameters"]);
    assert_eq!(reserved.code(), Some(1), "{}", reserved.text());
    assert!(
        reserved
            .stderr
            .contains("vm `parameters` cannot name an entry"),
        "{}",
        reserved.stderr
    );
    // Written, but generate says the plan would be refused, and why.
    let bridged = generate(&lab, &["bridged"]);
    assert!(bridged.ok(), "{}", bridged.text());
    assert!(
        bridged
            .stderr
            .contains("network/br0 is used but is not on the provider as such"),
        "{}",
        bridged.stderr
    );
    let file = lab.dir.path().join("taken.yml");
    std::fs::write(&file, "kept: {}\n").expect("a file");
    let taken = generate(&lab, &["hand1", "-o", &file.to_string_lossy()]);
    assert_eq!(taken.code(), Some(1), "{}", taken.text());
    assert_eq!(
        std::fs::read_to_string(&file).expect("still there"),
        "kept: {}\n"
    );
}
