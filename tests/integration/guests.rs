//! Real guests, end to end: `examples/bootlab.yml` brings up three VMs that boot the test image
//! (`tests/guest-image/build`) on a real libvirtd under TCG, on an isolated network. Then each
//! guest is looked at through libvirt only, by the QEMU guest agent's exec command (never over
//! the network): hostname, authorized key, file content and mode, commands and scripts run, root
//! password, address and default route, all as the plan says. `plan destroy` removes it all.
//!
//! Needs SITEPLAN_TEST_LIBVIRT_URI and the test image (`SITEPLAN_TEST_GUEST_IMAGE`, default
//! `target/guest-image`); skipped, saying so, without them, except in CI, where a missing image
//! is a failure.

#![cfg(feature = "libvirt")]
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use virt::connect::Connect;
use virt::domain::Domain;

use crate::harness::{Plan, Ran};

const PREFIX: &str = "sptest";
const SUBNET: &str = "10.97.7";
const POOL_PATH: &str = "/var/lib/libvirt/siteplan-test-guests";
const ROOT_PASSWORD: &str = "e2e-Root-Pass-4711";
const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQ8n3dC4d1c0ExampleKeyOnlyForTheLab lab@example";

/// The test image's directory, or `None` (saying so) when it has not been built.
pub fn guest_image(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("SITEPLAN_TEST_GUEST_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/guest-image"));
    if dir.join("SHA256SUMS").is_file() {
        return Some(dir);
    }
    let why = format!(
        "no test image in {} (build it with tests/guest-image/build)",
        dir.display()
    );
    assert!(std::env::var_os("CI").is_none(), "{test}: {why}");
    crate::harness::report(&format!("SKIPPED {test}: {why}"));
    None
}

struct BootLab {
    uri: String,
    image: PathBuf,
}

impl BootLab {
    fn plan(&self, args: &[&str]) -> Ran {
        self.plan_with(args, &[])
    }

    /// `plan ARGS examples/bootlab.yml … MORE` with the lab's parameters and `params`.
    fn plan_with(&self, args: &[&str], more: &[&str]) -> Ran {
        self.command(args, more).run()
    }

    /// The same, started with pipes.
    fn spawn(&self, args: &[&str], more: &[&str]) -> std::process::Child {
        self.command(args, more).spawn_piped()
    }

    fn command(&self, args: &[&str], more: &[&str]) -> Plan {
        Plan::new(args)
            .args(&["examples/bootlab.yml", "--provider", &self.uri])
            .args(&["--allow-read", &self.image.display().to_string()])
            .args(more)
            .params(&[
                &format!("image_dir={}", self.image.display()),
                &format!("pool_path={POOL_PATH}"),
                &format!("prefix={PREFIX}"),
                &format!("subnet={SUBNET}"),
                &format!("root_password={ROOT_PASSWORD}"),
            ])
    }

    fn destroy(&self) -> Ran {
        self.plan(&["destroy", "--yes"])
    }
}

/// Whatever happens, the guests do not outlive the test (they would slow every later one).
impl Drop for BootLab {
    fn drop(&mut self) {
        let _ = self.destroy();
    }
}

#[test]
fn three_real_guests_boot_configured_as_the_plan_says() {
    let test = "three_real_guests_boot_configured_as_the_plan_says";
    let Some((_held, uri)) = crate::harness::libvirtd(test) else {
        return;
    };
    let Some(image) = guest_image(test) else {
        return;
    };
    let lab = BootLab { uri, image };
    // An earlier run killed midway left the plan's own resources, perhaps from another
    // checkout: destroy finds them by marks.
    let _ = lab.plan(&["destroy", "--yes", "--plan-moved"]);

    let started = Instant::now();
    let applied = lab.plan(&["apply", "--yes", "--wait", "--wait-timeout", "420"]);
    let bring_up = started.elapsed();
    assert!(applied.ok(), "apply --wait failed:\n{}", applied.text());
    assert!(
        !applied.text().contains(ROOT_PASSWORD),
        "the root password was printed:\n{}",
        applied.text()
    );
    crate::harness::report(&format!(
        "bring-up: `plan apply --wait` of three guests took {:.0}s to every guest ready",
        bring_up.as_secs_f64()
    ));
    // The second has kcli's `wait`: its change ends when its guest is ready, and the third
    // is only then made.
    let said = applied.text();
    let line = |what: &str| said.lines().position(|l| l.contains(what));
    let second_ready = line(&format!("vm/{PREFIX}2 ok"))
        .unwrap_or_else(|| panic!("no line for vm/{PREFIX}2:\n{said}"));
    let third_made = line(&format!("creating vm/{PREFIX}3"))
        .unwrap_or_else(|| panic!("no line for vm/{PREFIX}3:\n{said}"));
    assert!(
        second_ready < third_made,
        "vm/{PREFIX}3 was made before vm/{PREFIX}2 was ready:\n{said}"
    );

    // The table: the static address, confirmed by the guest's agent; leases for the others.
    let row = |vm: &str| -> String {
        applied
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{vm} ")))
            .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let static_vm = format!("{PREFIX}1");
    assert_eq!(
        row(&static_vm),
        format!("{SUBNET}.10 (static, agent)"),
        "{}",
        applied.stdout
    );
    let mut expected = vec![(static_vm.clone(), format!("{SUBNET}.10"))];
    for n in [2, 3] {
        let vm = format!("{PREFIX}{n}");
        let shown = row(&vm);
        let ip = shown.split(' ').next().unwrap_or_default().to_string();
        let last: u8 = ip
            .strip_prefix(&format!("{SUBNET}."))
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        assert!(
            (100..=199).contains(&last) && shown.contains("lease"),
            "{vm} should show a lease from the DHCP range, not `{shown}`:\n{}",
            applied.stdout
        );
        expected.push((vm, ip));
    }

    // Lookups that find nothing are expected below: libvirt need not print them.
    virt::error::clear_error_callback();
    let conn = Connect::open(Some(&lab.uri)).expect("connect");
    // `--wait` waited for every guest to be ready: their commands and scripts have run by
    // the time it returned (nothing here waits for cloud-init first).
    for (vm, _) in &expected {
        let guest = Guest::find(&conn, vm);
        guest.wait_for_agent();
        assert_eq!(guest.run("cat /var/tmp/cmds-ran"), "cmds ran\n", "{vm}");
        assert_eq!(
            guest.run("cat /var/tmp/script-ran"),
            format!("script ran on {vm}\n"),
            "{vm}"
        );
    }
    for (vm, ip) in &expected {
        let guest = Guest::find(&conn, vm);
        guest.check(vm, ip, *vm == static_vm);
    }

    broken_guest(&lab);
    day_two(&lab, &conn, &static_vm, &expected[1]);
    let names: Vec<String> = expected.iter().map(|(vm, _)| vm.clone()).collect();
    lab_snapshot(&lab, &conn, &names);

    // The lab snapshot is still there: destroy deletes it with the VMs.
    let destroyed = lab.destroy();
    assert!(destroyed.ok(), "destroy failed:\n{}", destroyed.text());
    for (vm, _) in &expected {
        assert!(
            conn.lookup_domain_by_name(vm).is_err(),
            "{vm} is still there"
        );
    }
    assert!(conn
        .lookup_network_by_name(&format!("{PREFIX}net"))
        .is_err());
    assert!(conn
        .lookup_storage_pool_by_name(&format!("{PREFIX}pool"))
        .is_err());
}

/// A fourth guest whose cloud-init fails: `apply --wait` says so, with what its commands
/// printed, and fails; taking it out again leaves the three as they were.
fn broken_guest(lab: &BootLab) {
    let broken = format!("{PREFIX}4");
    let applied = lab.plan_with(
        &["apply", "--yes", "--wait", "--wait-timeout", "420"],
        &["-P", "broken=true"],
    );
    assert_eq!(applied.code(), Some(1), "{}", applied.text());
    let said = applied.text();
    assert!(
        said.contains(&format!("error: vm {broken}: cloud-init failed")),
        "{said}"
    );
    assert!(
        said.contains("the fourth guest fails on purpose"),
        "its output's last lines are shown:\n{said}"
    );
    let removed = lab.plan(&["apply", "--yes"]);
    assert!(removed.ok(), "{}", removed.text());
}

/// Living with the lab: a memory change waits for a restart until `apply --restart`, after
/// which the guest itself reports the new memory; a DHCP guest stopped and started comes
/// back with the address it had.
fn day_two(lab: &BootLab, conn: &Connect, first: &str, (dhcp_vm, dhcp_ip): &(String, String)) {
    let guest = Guest::find(conn, first);
    assert_eq!(guest.memory_mib(), 768, "{first}: memory before");
    let bigger = ["-P", "memory=1024", "--target", first];
    let saved = lab.plan_with(&["apply", "--yes"], &bigger);
    assert!(saved.ok(), "{}", saved.text());
    assert!(
        saved.stderr.contains(&format!(
            "Waiting for a restart (saved, not running yet): vm/{first}."
        )),
        "{}",
        saved.stderr
    );
    let status = lab.plan_with(&["status"], &["-P", "memory=1024"]);
    let row = status
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("vm/{first} ")))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("waits for a restart: memory 768 MiB → 1 GiB"),
        "{}",
        status.stdout
    );
    assert_eq!(guest.memory_mib(), 768, "{first}: nothing restarted it yet");

    let started = Instant::now();
    let restarted = lab.plan_with(
        &[
            "apply",
            "--yes",
            "--restart",
            "--wait",
            "--wait-timeout",
            "420",
        ],
        &bigger,
    );
    assert!(restarted.ok(), "{}", restarted.text());
    assert!(
        restarted
            .stderr
            .contains(&format!("vm {first} restarted (shut down, started)")),
        "the guest shuts down when asked:\n{}",
        restarted.stderr
    );
    guest.wait_for_agent();
    assert_eq!(
        guest.memory_mib(),
        1024,
        "{first}: memory after apply --restart"
    );
    crate::harness::report(&format!(
        "{first}: `apply --restart` to the guest reporting 1024 MiB took {:.0}s",
        started.elapsed().as_secs_f64()
    ));
    let after = lab.plan_with(&["status"], &bigger);
    assert!(
        after
            .stdout
            .lines()
            .any(|l| l.starts_with(&format!("vm/{first} ")) && !l.contains("waits")),
        "{}",
        after.stdout
    );

    let stopped = lab.plan_with(&["stop", "--timeout", "120"], &[dhcp_vm]);
    assert!(stopped.ok(), "{}", stopped.text());
    let domain = conn.lookup_domain_by_name(dhcp_vm).expect("domain");
    assert!(!domain.is_active().unwrap_or(true), "{dhcp_vm} still runs");
    let back = lab.plan_with(&["start", "--wait", "--wait-timeout", "420"], &[dhcp_vm]);
    assert!(back.ok(), "{}", back.text());
    let shown = back
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{dhcp_vm} ")))
        .unwrap_or_default()
        .to_string();
    assert!(
        shown.contains(&format!("{dhcp_ip} (lease")),
        "{dhcp_vm} came back with another address: {shown}\n{}",
        back.stdout
    );

    // What other tools get: the table's address, the image's user, the plan's NICs.
    let output = lab.plan_with(&["output", "--format", "json"], &[]);
    assert!(output.ok(), "{}", output.text());
    let doc: Value = serde_json::from_str(&output.stdout).expect("json");
    let listed = doc["vms"]
        .as_array()
        .and_then(|vms| vms.iter().find(|v| v["name"] == dhcp_vm.as_str()))
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed["address"], dhcp_ip.as_str(), "{doc}");
    assert_eq!(listed["state"], "running");
    let info = lab.plan_with(&["info"], &["-P", "memory=1024", first]);
    assert!(info.ok(), "{}", info.text());
    assert!(
        info.stdout.contains("memory: 1024MiB\n") && info.stdout.contains("state: running\n"),
        "{}",
        info.stdout
    );

    console(lab, dhcp_vm);
}

/// The state of each of `vms` (running, paused...), and its snapshots' names.
fn domains(conn: &Connect, vms: &[String]) -> Vec<(String, bool, Vec<String>)> {
    vms.iter()
        .map(|vm| {
            let domain = conn.lookup_domain_by_name(vm).expect("domain");
            let running = matches!(
                domain.state(),
                Ok((state, _)) if state.is(virt::domain::DomainState::Running)
            );
            let mut names: Vec<String> = domain
                .list_all_snapshots(0)
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.name().ok())
                .collect();
            names.sort();
            (vm.clone(), running, names)
        })
        .collect()
}

/// A lab snapshot of the running guests: a file written in each through its agent, the
/// snapshot taken, the files deleted, the snapshot reverted: every file is back and every
/// guest runs. A snapshot that fails on one guest leaves none of its name anywhere.
fn lab_snapshot(lab: &BootLab, conn: &Connect, vms: &[String]) {
    let guests: Vec<Guest> = vms.iter().map(|vm| Guest::find(conn, vm)).collect();
    for guest in &guests {
        guest.wait_for_agent();
        guest.run(&format!("echo before-{0} > /root/lab-marker", guest.name));
    }
    let created = lab.plan_with(&["snapshot", "create"], &["base"]);
    assert!(created.ok(), "{}", created.text());
    let said = created
        .stderr
        .lines()
        .find(|l| l.starts_with("Snapshot `base`"))
        .unwrap_or_default()
        .to_string();
    assert!(
        said.contains("the lab was paused for ") && said.contains("(3 running VMs)"),
        "{}",
        created.stderr
    );
    crate::harness::report(&format!("lab snapshot of three guests: {said}"));
    let all_running_with = |names: &[&str]| {
        let found = domains(conn, vms);
        found
            .iter()
            .all(|(_, running, snapshots)| *running && snapshots == names)
    };
    assert!(all_running_with(&["base"]), "{:?}", domains(conn, vms));

    // A failure on one guest's snapshot: nothing of that name is kept, every guest runs.
    let failed = lab
        .command(&["snapshot", "create"], &["broken"])
        .env("SITEPLAN_FAIL_ON", format!("snapshot/{}", vms[1]))
        .run();
    assert_eq!(failed.code(), Some(1), "{}", failed.text());
    assert!(
        failed.stderr.contains("Nothing was kept"),
        "{}",
        failed.stderr
    );
    assert!(all_running_with(&["base"]), "{:?}", domains(conn, vms));

    for guest in &guests {
        guest.run("rm /root/lab-marker");
    }
    let reverted = lab.plan_with(&["snapshot", "revert", "--yes"], &["base"]);
    assert!(reverted.ok(), "{}", reverted.text());
    assert!(
        reverted.stderr.contains("the lab was paused for "),
        "{}",
        reverted.stderr
    );
    crate::harness::report(&format!(
        "lab snapshot reverted: {}",
        reverted
            .stderr
            .lines()
            .find(|l| l.starts_with("Reverted"))
            .unwrap_or_default()
    ));
    assert!(all_running_with(&["base"]), "{:?}", domains(conn, vms));
    for guest in &guests {
        guest.wait_for_agent();
        let marker = guest.run("cat /root/lab-marker");
        assert_eq!(marker.trim(), format!("before-{}", guest.name));
    }
    let status = lab.plan_with(&["status"], &[]);
    assert!(
        status.stdout.contains("Snapshot `base` (taken ")
            && status.stdout.contains("3 VMs, 3 running"),
        "{}",
        status.stdout
    );
}

/// `plan console`: attached through libvirt's console stream, the guest's getty answers on
/// its serial port; Ctrl-] detaches, and `plan` ends.
fn console(lab: &BootLab, vm: &str) {
    let attached = lab.spawn(&["console"], &[vm]);
    let (shown, said) = crate::harness::drive_console(attached, "login:", Duration::from_secs(120));
    assert!(said.contains(&format!("Detached from vm/{vm}.")), "{said}");
    crate::harness::report(&format!(
        "{vm}: the console showed `{}`",
        shown
            .lines()
            .rev()
            .find(|l| l.contains("login:"))
            .unwrap_or_default()
            .trim()
    ));
}

/// A guest, looked at through its QEMU guest agent.
pub(crate) struct Guest {
    domain: Domain,
    name: String,
}

/// What a command run in the guest ended with.
struct Exec {
    code: i64,
    stdout: String,
    stderr: String,
}

impl Guest {
    pub(crate) fn find(conn: &Connect, name: &str) -> Guest {
        Guest {
            domain: conn
                .lookup_domain_by_name(name)
                .expect("the guest's domain"),
            name: name.to_string(),
        }
    }

    fn agent(&self, command: Value) -> Result<Value, String> {
        let reply = self
            .domain
            .qemu_agent_command(&command.to_string(), 30, 0)
            .map_err(|e| e.to_string())?;
        let reply: Value = serde_json::from_str(&reply).map_err(|e| e.to_string())?;
        Ok(reply["return"].clone())
    }

    /// Runs a shell command in the guest (guest-exec) and waits for it to end.
    fn exec(&self, script: &str) -> Result<Exec, String> {
        let started = self.agent(json!({
            "execute": "guest-exec",
            "arguments": {"path": "/bin/sh", "arg": ["-c", script], "capture-output": true}
        }))?;
        let pid = started["pid"].as_i64().ok_or("guest-exec gave no pid")?;
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            let status = self.agent(json!({
                "execute": "guest-exec-status", "arguments": {"pid": pid}
            }))?;
            if status["exited"].as_bool() == Some(true) {
                let text = |key: &str| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(status[key].as_str().unwrap_or(""))
                        .unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                };
                return Ok(Exec {
                    code: status["exitcode"].as_i64().unwrap_or(-1),
                    stdout: text("out-data"),
                    stderr: text("err-data"),
                });
            }
            if Instant::now() > deadline {
                return Err(format!("`{script}` did not end"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// A command that must succeed; its output.
    pub(crate) fn run(&self, script: &str) -> String {
        match self.exec(script) {
            Ok(done) if done.code == 0 => done.stdout,
            Ok(done) => panic!(
                "{}: `{script}` exited {}:\n{}{}",
                self.name, done.code, done.stdout, done.stderr
            ),
            Err(e) => panic!("{}: `{script}`: {e}", self.name),
        }
    }

    /// The memory the guest sees, from its agent: online memory blocks times their size.
    fn memory_mib(&self) -> u64 {
        let size = self
            .agent(json!({"execute": "guest-get-memory-block-info"}))
            .unwrap_or_else(|e| panic!("{}: memory block info: {e}", self.name))["size"]
            .as_u64()
            .unwrap_or(0);
        let blocks = self
            .agent(json!({"execute": "guest-get-memory-blocks"}))
            .unwrap_or_else(|e| panic!("{}: memory blocks: {e}", self.name));
        let online = blocks.as_array().map_or(0, |all| {
            all.iter().filter(|b| b["online"] == true).count() as u64
        });
        online * size / (1 << 20)
    }

    /// Waits for the agent to answer (a DHCP guest's lease comes before its agent starts).
    pub(crate) fn wait_for_agent(&self) {
        let deadline = Instant::now() + Duration::from_secs(600);
        loop {
            match self.agent(json!({"execute": "guest-ping"})) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("{}: the guest agent never answered: {e}", self.name)
                }
                Err(_) => std::thread::sleep(Duration::from_secs(2)),
            }
        }
    }

    fn check(&self, vm: &str, ip: &str, is_static: bool) {
        self.wait_for_agent();
        // cloud-init has finished, without errors, from the NoCloud seed.
        let status = self
            .exec("cloud-init status --wait --long")
            .unwrap_or_else(|e| panic!("{vm}: cloud-init status: {e}"));
        assert!(
            status.code == 0 && status.stdout.contains("status: done"),
            "{vm}: cloud-init did not finish cleanly (exit {}):\n{}{}",
            status.code,
            status.stdout,
            status.stderr
        );
        let source = self.run("python3 -c 'import json; print(json.load(open(\"/run/cloud-init/status.json\"))[\"v1\"][\"datasource\"])'");
        assert!(source.contains("DataSourceNoCloud"), "{vm}: {source}");
        crate::harness::report(&format!("{vm}: cloud-init read {}", source.trim()));

        assert_eq!(self.run("hostname").trim(), vm);
        let keys = self.run("cat /home/debian/.ssh/authorized_keys");
        assert!(keys.lines().any(|l| l.trim() == KEY), "{vm}: keys:\n{keys}");
        assert_eq!(self.run("cat /etc/siteplan-lab"), format!("lab {PREFIX}\n"));
        assert_eq!(self.run("stat -c %a /etc/siteplan-lab").trim(), "640");
        assert_eq!(self.run("cat /var/tmp/cmds-ran"), "cmds ran\n");
        assert_eq!(
            self.run("cat /var/tmp/script-ran"),
            format!("script ran on {vm}\n")
        );
        // The root password is the plan's: crypt() of it gives the hash in /etc/shadow.
        let password = self.run(&format!(
            "perl -e '$h = (getpwnam(\"root\"))[1]; print crypt(\"{ROOT_PASSWORD}\", $h) eq $h ? \"set\" : \"other: $h\"'"
        ));
        assert_eq!(password, "set", "{vm}: root password");

        // The address the plan configures (static) or the lease the table showed (DHCP).
        let addresses = self.run("ip -4 -o addr show scope global");
        assert!(
            addresses.contains(&format!(" {ip}/24 ")),
            "{vm}: expected {ip}/24 in:\n{addresses}"
        );
        let route = self.run("ip route show default");
        if is_static {
            assert!(
                route.starts_with(&format!("default via {SUBNET}.1 ")),
                "{vm}: expected the plan's gateway as default route, not:\n{route}"
            );
        } else {
            // libvirt's DHCP server on an isolated network offers no router.
            assert!(
                route.trim().is_empty(),
                "{vm}: an isolated network gives no default route, yet:\n{route}"
            );
        }
    }
}
