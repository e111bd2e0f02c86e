//! Living with a lab: `plan status`, pending restarts and `apply --restart`, and
//! `plan start|stop|restart`, through the binary on the sandbox.

use crate::harness::{Plan, SandboxLab};

const LAB: &str = "\
parameters:
  memory: 256
daynet:
  type: network
  cidr: 10.96.1.0/24
daypool:
  type: pool
  path: /var/lib/libvirt/siteplan-day-two
day0:
  pool: daypool
  memory: {{ memory }}
  nets: [daynet]
  disks: [1]
day1:
  pool: daypool
  memory: 256
  nets: [daynet]
  disks: [1]
  depends_on: [day0]
";

fn new_lab() -> SandboxLab {
    SandboxLab::new("day.yml", LAB)
}

fn row<'t>(table: &'t str, resource: &str) -> &'t str {
    table
        .lines()
        .find(|l| l.starts_with(&format!("{resource} ")))
        .unwrap_or_else(|| panic!("no row for {resource}:\n{table}"))
}

fn status_json(lab: &SandboxLab, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = lab.plan(&["status", "-o", "json"], extra);
    let doc = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("status -o json: {e}\n{}", out.text()));
    (out.code(), doc)
}

fn vm_of<'d>(doc: &'d serde_json::Value, address: &str) -> &'d serde_json::Value {
    doc["resources"]
        .as_array()
        .and_then(|all| all.iter().find(|r| r["address"] == address))
        .unwrap_or_else(|| panic!("no {address} in {doc}"))
}

#[test]
fn status_tells_the_truth_about_a_change_that_waits_for_a_restart() {
    let lab = new_lab();
    // Declared, nothing there yet: missing, and apply would create it.
    let before = lab.plan(&["status"], &[]);
    assert_eq!(before.code(), Some(2), "{}", before.text());
    assert!(
        row(&before.stdout, "vm/day0").contains("missing"),
        "{}",
        before.stdout
    );
    assert!(row(&before.stdout, "vm/day0").contains("apply would create"));

    assert!(lab.plan(&["apply", "--yes"], &[]).ok());
    let matched = lab.plan(&["status"], &[]);
    assert_eq!(matched.code(), Some(0), "{}", matched.text());
    let day0 = row(&matched.stdout, "vm/day0");
    assert!(
        day0.contains("running") && day0.contains("10.96.1."),
        "{day0}"
    );
    assert!(matched.stdout.contains("Plan `day` matches the providers."));

    // Memory of a running VM: saved by apply, not running until a restart, and every
    // command says so until then.
    let bigger = ["-P", "memory=512"];
    let applied = lab.plan(&["apply", "--yes"], &bigger);
    assert!(applied.ok(), "{}", applied.text());
    assert!(
        applied
            .stderr
            .contains("Waiting for a restart (saved, not running yet): vm/day0.")
            && applied.stderr.contains("`plan apply --restart "),
        "{}",
        applied.stderr
    );
    let diff = lab.plan(&["diff", "--detailed-exitcode"], &bigger);
    assert_eq!(diff.code(), Some(2), "{}", diff.text());
    assert!(diff.stdout.contains("↻ vm/day0"), "{}", diff.stdout);
    assert!(
        diff.stdout.contains("memory: 256 MiB → 512 MiB"),
        "{}",
        diff.stdout
    );
    let (code, doc) = status_json(&lab, &bigger);
    assert_eq!(code, Some(2));
    assert_eq!(doc["matches"], false);
    let day0 = vm_of(&doc, "vm/day0");
    assert_eq!(day0["apply"], "restart");
    assert_eq!(
        day0["pending_restart"],
        serde_json::json!([{"name": "memory_mib", "before": 256, "after": 512}])
    );
    let table = lab.plan(&["status"], &bigger);
    assert!(
        row(&table.stdout, "vm/day0").contains("waits for a restart: memory 256 MiB → 512 MiB"),
        "{}",
        table.stdout
    );
    // Applying again restarts nothing, and still says what waits.
    let again = lab.plan(&["apply", "--yes"], &bigger);
    assert!(
        again.ok() && !again.stderr.contains("restarted"),
        "{}",
        again.text()
    );
    assert!(
        again.stderr.contains("Waiting for a restart"),
        "{}",
        again.stderr
    );

    assert!(
        !again.text().contains("restarted by this run"),
        "{}",
        again.text()
    );

    let restarted = lab.plan(&["apply", "--yes", "--restart"], &bigger);
    assert!(restarted.ok(), "{}", restarted.text());
    // The plan shown says what the run does: --restart is decided before it is shown.
    let shown = restarted.text();
    assert!(
        shown.contains("↻ vm/day0")
            && shown.contains("(needs a reboot: restarted by this run)")
            && shown.contains("1 to restart."),
        "{shown}"
    );
    assert!(
        restarted.stderr.contains("vm day0 restarted"),
        "{}",
        restarted.stderr
    );
    assert!(!restarted.stderr.contains("vm day1 restarted"));
    let (code, doc) = status_json(&lab, &bigger);
    assert_eq!((code, &doc["matches"]), (Some(0), &serde_json::json!(true)));
    assert!(lab.plan(&["diff", "--detailed-exitcode"], &bigger).ok());
}

#[test]
fn vms_stop_and_start_in_order_and_come_back_with_their_addresses() {
    let lab = new_lab();
    assert!(lab.plan(&["apply", "--yes"], &[]).ok());
    let (_, doc) = status_json(&lab, &[]);
    let address = vm_of(&doc, "vm/day0")["addresses"].clone();
    assert!(address.as_array().is_some_and(|a| !a.is_empty()), "{doc}");

    // day1 depends on day0: it stops first, and starts after.
    let stopped = lab.plan(&["stop"], &[]);
    assert!(stopped.ok(), "{}", stopped.text());
    let at = |text: &str, needle: &str| text.find(needle).unwrap_or(usize::MAX);
    assert!(
        at(&stopped.stderr, "vm/day1 ok") < at(&stopped.stderr, "vm/day0 ok"),
        "{}",
        stopped.stderr
    );
    assert!(stopped
        .stderr
        .contains("Stop: 2 done, 0 failed, 0 skipped."));
    let table = lab.plan(&["status"], &[]);
    assert_eq!(table.code(), Some(2));
    assert!(
        row(&table.stdout, "vm/day0").contains("stopped")
            && row(&table.stdout, "vm/day0").contains("`plan start` or apply starts it"),
        "{}",
        table.stdout
    );

    let started = lab.plan(&["start", "--wait", "--wait-timeout", "30"], &[]);
    assert!(started.ok(), "{}", started.text());
    assert!(
        at(&started.stderr, "vm/day0 ok") < at(&started.stderr, "vm/day1 ok"),
        "{}",
        started.stderr
    );
    let (code, doc) = status_json(&lab, &[]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(vm_of(&doc, "vm/day0")["addresses"], address);

    // `plan info`: kcli's fields, from the provider.
    let info = lab.plan(&["info"], &["day0"]);
    assert!(info.ok(), "{}", info.text());
    for line in [
        "name: day0\n",
        "state: running\n",
        "plan: day\n",
        "memory: 256MiB\n",
        "cpus: 2\n",
        "net interface: eth0 mac: 52:54:00:",
        "net: daynet type: virtio\n",
        "disk: daypool/day0_0.img size: 1GiB format: qcow2 bus: virtio path: ",
    ] {
        assert!(info.stdout.contains(line), "{line:?} in:\n{}", info.stdout);
    }
    let (code, doc) = {
        let out = lab.plan(&["info", "-o", "json"], &["day0"]);
        (
            out.code(),
            serde_json::from_str::<serde_json::Value>(&out.stdout).expect("json"),
        )
    };
    assert_eq!(code, Some(0));
    assert!(
        doc["created"].as_str().is_some_and(|c| c.starts_with("20")),
        "{doc}"
    );
    assert_eq!(doc["addresses"], address);
    let unknown = lab.plan(&["info"], &["nosuch"]);
    assert_eq!(unknown.code(), Some(1));
    assert!(unknown.stderr.contains("`nosuch` is no VM of plan `day`"));

    // One VM by name; the other is left alone.
    let one = lab.plan(&["restart"], &["day1"]);
    assert!(one.ok(), "{}", one.text());
    assert!(one.stderr.contains("vm day1 restarted") && !one.stderr.contains("vm/day0"));
}

#[test]
fn power_commands_refuse_what_is_not_theirs_and_change_nothing() {
    let lab = new_lab();
    let unknown = lab.plan(&["stop"], &["nosuch"]);
    assert_eq!(unknown.code(), Some(1));
    assert!(
        unknown
            .stderr
            .contains("`nosuch` is no VM of plan `day`; its VMs are: day0, day1"),
        "{}",
        unknown.stderr
    );
    let missing = lab.plan(&["start"], &[]);
    assert_eq!(missing.code(), Some(1));
    assert!(
        missing
            .stderr
            .contains("vm/day0 does not exist on sandbox; `plan apply` creates it"),
        "{}",
        missing.stderr
    );

    // The same VMs under another plan's name: its VMs, not this plan's.
    assert!(lab.plan(&["apply", "--yes", "--name", "other"], &[]).ok());
    let theirs = lab.plan(&["stop"], &[]);
    assert_eq!(theirs.code(), Some(1));
    assert!(
        theirs
            .stderr
            .contains("vm/day0 on sandbox belongs to plan `other`, not `day`"),
        "{}",
        theirs.stderr
    );
    assert!(theirs.stderr.contains("Nothing was changed."));
    let (_, doc) = status_json(&lab, &["--name", "other"]);
    assert_eq!(vm_of(&doc, "vm/day0")["state"], "running");

    // A provider that does not answer: a clear error, nothing else.
    let down = Plan::new(&["stop"])
        .env("XDG_STATE_HOME", lab.dir.path().join("state"))
        .args(&[
            &lab.file.to_string_lossy(),
            "--provider",
            "qemu+tcp://127.0.0.1:1/system",
        ])
        .run();
    assert_eq!(down.code(), Some(1), "{}", down.text());
    assert!(down.stderr.contains("error:"), "{}", down.stderr);
}

#[test]
fn output_gives_other_tools_the_lab_and_ssh_logs_in_as_the_plan_implies() {
    let lab = new_lab();
    // A key pair in a home of its own: the plan installs its public half.
    let home = lab.dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).expect("home");
    let public = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDayTwoTestKeyOnly me@laptop";
    std::fs::write(home.join(".ssh/lab.pub"), format!("{public}\n")).expect("pub");
    std::fs::write(home.join(".ssh/lab"), "not a real key\n").expect("key");
    let keyed = LAB.replace(
        "  disks: [1]\nday1:",
        &format!("  disks: [1]\n  image: debian-12-genericcloud-amd64.qcow2\n  keys: [\"{public}\"]\nday1:"),
    );
    std::fs::write(&lab.file, keyed).expect("plan");
    // The image must be there for the VM that uses it: the sandbox's pool holds a volume.
    let image = lab.dir.path().join("debian-12-genericcloud-amd64.qcow2");
    std::fs::write(&image, b"qcow").expect("image");
    let with_image = std::fs::read_to_string(&lab.file).expect("plan").replace(
        "daypool:\n",
        &format!(
            "debian-12-genericcloud-amd64.qcow2:\n  type: image\n  url: {}\n  pool: daypool\ndaypool:\n",
            image.display()
        ),
    );
    std::fs::write(&lab.file, with_image).expect("plan");
    let run = |args: &[&str], extra: &[&str]| {
        Plan::new(args)
            .sandbox(&lab.sandbox())
            .env("XDG_STATE_HOME", lab.dir.path().join("state"))
            .env("HOME", &home)
            .args(&[&lab.file.to_string_lossy(), "--provider", "sandbox"])
            .args(extra)
            .run()
    };
    let applied = run(&["apply", "--yes"], &[]);
    assert!(applied.ok(), "{}", applied.text());

    let json = run(&["output", "--format", "json"], &[]);
    assert!(json.ok(), "{}", json.text());
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let day0 = &doc["vms"][0];
    assert_eq!(day0["name"], "day0");
    assert_eq!(day0["user"], "debian", "from the image's name");
    assert_eq!(
        day0["key"],
        home.join(".ssh/lab").display().to_string(),
        "the private half of the plan's key"
    );
    let ip = day0["address"].as_str().expect("an address").to_string();
    assert!(ip.starts_with("10.96.1."), "{doc}");
    assert_eq!(day0["nics"][0]["network"], "daynet");
    assert!(day0["nics"][0]["mac"]
        .as_str()
        .is_some_and(|m| m.starts_with("52:54:00:")));
    assert_eq!(doc["vms"][1]["user"], "root", "day1 names no image");

    let ansible = run(&["output", "--format", "ansible"], &[]);
    assert!(
        ansible.stdout.contains(&format!("ansible_host: {ip}"))
            && ansible.stdout.contains("    day:\n"),
        "{}",
        ansible.stdout
    );
    let config = run(&["output", "--format", "ssh-config"], &[]);
    assert!(
        config
            .stdout
            .contains(&format!("Host day0\n  HostName {ip}\n  User debian\n")),
        "{}",
        config.stdout
    );
    let hosts = run(&["output", "--format", "hosts"], &[]);
    assert!(
        hosts.stdout.contains(&format!("{ip}\tday0\n")),
        "{}",
        hosts.stdout
    );

    // `plan ssh` runs the system's ssh: a stand-in on PATH records how it was called.
    let bin = lab.dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let called = lab.dir.path().join("ssh-args");
    let fake = bin.join("ssh");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nexit 7\n",
            called.display()
        ),
    )
    .expect("fake ssh");
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ssh = Plan::new(&["ssh"])
        .sandbox(&lab.sandbox())
        .env("XDG_STATE_HOME", lab.dir.path().join("state"))
        .env("HOME", &home)
        .env("PATH", path)
        .args(&[
            &lab.file.to_string_lossy(),
            "day0",
            "--provider",
            "sandbox",
            "--",
            "uname",
            "-a",
        ])
        .run();
    assert_eq!(ssh.code(), Some(7), "ssh's exit status: {}", ssh.text());
    let args = std::fs::read_to_string(&called).expect("ssh ran");
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-i",
            &home.join(".ssh/lab").display().to_string(),
            "-o",
            "IdentitiesOnly=yes",
            &format!("debian@{ip}"),
            "--",
            "uname",
            "-a",
        ]
    );
    let unknown = run(&["ssh"], &["nosuch"]);
    assert_eq!(unknown.code(), Some(1));
    assert!(
        unknown.stderr.contains("`nosuch` is no VM of plan `day`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn list_shows_the_plans_on_a_provider() {
    let lab = new_lab();
    assert!(lab.plan(&["apply", "--yes"], &[]).ok());
    assert!(lab.plan(&["stop"], &["day1"]).ok());
    let listed = Plan::new(&["list", "--provider", "sandbox"])
        .sandbox(&lab.sandbox())
        .env("XDG_STATE_HOME", lab.dir.path().join("state"))
        .run();
    assert!(listed.ok(), "{}", listed.text());
    let row = row(&listed.stdout, "day");
    assert!(
        row.contains("sandbox")
            && row.contains("siteplan")
            && row.contains("day0 (running), day1 (stopped)"),
        "{}",
        listed.stdout
    );
}

/// A plan kcli made is listed next to siteplan's, on a real libvirtd. kcli itself makes it
/// when `SITEPLAN_TEST_KCLI` names its command (`.ci/install-kcli` installs it; CI does);
/// otherwise a domain with kcli's metadata, as kcli writes it, stands in, and the test says so.
#[test]
#[cfg(feature = "libvirt")]
fn list_shows_kcli_plans_next_to_siteplans_on_a_real_libvirtd() {
    let test = "list_shows_kcli_plans_next_to_siteplans_on_a_real_libvirtd";
    let Some((_held, uri)) = crate::harness::libvirtd(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("listlab.yml");
    std::fs::write(
        &file,
        "listnet:\n  type: network\n  cidr: 10.96.9.0/24\n  nat: false\n\
         listpool:\n  type: pool\n  path: /var/lib/libvirt/siteplan-list-test\n\
         listvm:\n  pool: listpool\n  nets: [listnet]\n  disks: [1]\n  start: false\n  virttype: qemu\n  cloudinit: false\n",
    )
    .expect("plan");
    let run = |args: &[&str]| {
        Plan::new(args)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .args(&[&file.to_string_lossy(), "--provider", &uri])
            .run()
    };
    // What an earlier run left, from its own temporary file, is this plan's.
    let _ = run(&["destroy", "--yes", "--plan-moved"]);
    virt::error::clear_error_callback();
    let conn = virt::connect::Connect::open(Some(&uri)).expect("connect");
    let kcli_pool = KcliPool::new(&conn);
    let kcli = std::env::var("SITEPLAN_TEST_KCLI")
        .ok()
        .filter(|k| !k.is_empty());
    match &kcli {
        Some(kcli) => {
            let kcli_plan = dir.path().join("kplan.yml");
            std::fs::write(
                &kcli_plan,
                format!(
                    "kcli-made-vm:\n  memory: 64\n  numcpus: 1\n  pool: {KCLI_POOL}\n  disks: [1]\n  nets: []\n  start: false\n  cloudinit: false\n"
                ),
            )
            .expect("kcli plan");
            let made = std::process::Command::new(kcli)
                .args(["create", "plan", "-f"])
                .arg(&kcli_plan)
                .arg("kcliplan")
                .env("HOME", dir.path())
                .output()
                .expect("kcli runs");
            assert!(
                made.status.success(),
                "kcli create plan:\n{}{}",
                String::from_utf8_lossy(&made.stdout),
                String::from_utf8_lossy(&made.stderr)
            );
            crate::harness::report(&format!("{test}: kcli itself made plan `kcliplan`"));
        }
        None => {
            crate::harness::report(&format!(
                "{test}: SITEPLAN_TEST_KCLI is not set (.ci/install-kcli installs kcli): a domain \
                 with kcli's metadata, as kcli writes it, stands in for a plan kcli made"
            ));
            // What kcli's libvirt provider writes into a domain it creates for a plan.
            let kcli_domain = "<domain type='qemu'><name>kcli-made-vm</name>\
                <metadata><kvirt:info xmlns:kvirt='kvirt'><kvirt:creationdate>24-11-2026 13:18</kvirt:creationdate>\
                <kvirt:plan>kcliplan</kvirt:plan><kvirt:profile>kvirt</kvirt:profile></kvirt:info></metadata>\
                <memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>";
            conn.define_domain_xml(kcli_domain).expect("kcli's domain");
        }
    }
    let applied = run(&["apply", "--yes"]);
    assert!(applied.ok(), "{}", applied.text());

    let listed = Plan::new(&["list", "--provider", &uri])
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .run();
    drop(kcli_pool);
    let destroyed = run(&["destroy", "--yes"]);
    assert!(listed.ok(), "{}", listed.text());
    assert!(
        row(&listed.stdout, "kcliplan").contains("kcli")
            && row(&listed.stdout, "kcliplan").contains("kcli-made-vm (stopped)"),
        "{}",
        listed.stdout
    );
    assert!(
        row(&listed.stdout, "listlab").contains("siteplan")
            && row(&listed.stdout, "listlab").contains("listvm (stopped)"),
        "{}",
        listed.stdout
    );
    assert!(destroyed.ok(), "{}", destroyed.text());
}

#[cfg(feature = "libvirt")]
const KCLI_POOL: &str = "siteplan-kcli-test";

/// The pool kcli's plan puts its disk in, and its VM: made before, gone after, whatever
/// happens (no plan of siteplan's owns them).
#[cfg(feature = "libvirt")]
struct KcliPool<'c> {
    conn: &'c virt::connect::Connect,
}

#[cfg(feature = "libvirt")]
impl<'c> KcliPool<'c> {
    fn new(conn: &'c virt::connect::Connect) -> Self {
        let pool = KcliPool { conn };
        pool.remove();
        let xml = format!(
            "<pool type='dir'><name>{KCLI_POOL}</name><target><path>/var/lib/libvirt/{KCLI_POOL}</path></target></pool>"
        );
        let made = conn.define_storage_pool_xml(&xml, 0).expect("kcli's pool");
        made.build(0).expect("build kcli's pool");
        made.create(0).expect("start kcli's pool");
        pool
    }

    fn remove(&self) {
        if let Ok(d) = self.conn.lookup_domain_by_name("kcli-made-vm") {
            let _ = d.destroy();
            let _ = d.undefine();
        }
        if let Ok(p) = self.conn.lookup_storage_pool_by_name(KCLI_POOL) {
            for volume in p.list_all_volumes(0).unwrap_or_default() {
                let _ = volume.delete(0);
            }
            let _ = p.destroy();
            let _ = p.delete(0);
            let _ = p.undefine();
        }
    }
}

#[cfg(feature = "libvirt")]
impl Drop for KcliPool<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A plan file that declares nothing (here its template leaves nothing) is not a plan: apply
/// and diff refuse it, as kcli does, instead of planning to delete the whole lab; destroy
/// still takes it, deleting what the plan's marks name.
#[test]
fn a_file_that_declares_nothing_is_refused_rather_than_emptying_the_lab() {
    let lab = new_lab();
    assert!(lab.plan(&["apply", "--yes"], &[]).ok());
    std::fs::write(
        &lab.file,
        format!(
            "parameters:\n  everything: false\n  memory: 256\n{{% if everything %}}\n{}{{% endif %}}\n",
            LAB.replace("parameters:\n  memory: 256\n", "")
        ),
    )
    .expect("plan");
    for command in [&["apply", "--yes"][..], &["diff"][..], &["status"][..]] {
        let refused = lab.plan(command, &[]);
        assert_eq!(refused.code(), Some(1), "{command:?}: {}", refused.text());
        assert!(
            refused
                .stderr
                .contains("declares no VM, network, pool, image or disk: it is not a plan"),
            "{command:?}: {}",
            refused.stderr
        );
    }
    let everything = lab.plan(&["status"], &["-P", "everything=true"]);
    assert_eq!(
        everything.code(),
        Some(0),
        "the lab is intact: {}",
        everything.text()
    );
    let destroyed = lab.plan(&["destroy", "--yes"], &[]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(
        destroyed.stderr.contains("Destroy: "),
        "{}",
        destroyed.stderr
    );
    let gone = lab.plan(&["status"], &["-P", "everything=true"]);
    assert!(
        row(&gone.stdout, "vm/day0").contains("missing"),
        "{}",
        gone.stdout
    );
}

const ADDRESSED: &str = "\
addrnet:
  type: network
  cidr: 10.96.7.0/24
{% for i in range(3) %}
o{{ i }}:
  memory: 256
  nets:
    - name: addrnet
      ip: 10.96.7.{{ 10 + i }}
{% endfor %}
";

/// A VM that is stopped, or was never made, is given no address by any day-two output: not
/// the plan's static one, which nobody in the lab holds then.
#[test]
fn only_running_vms_have_addresses_in_day_two_outputs() {
    let lab = SandboxLab::new("addressed.yml", ADDRESSED);
    // o2 is never made; o1 is stopped.
    let applied = lab.plan(&["apply", "--yes", "--target", "o0", "--target", "o1"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    let stopped = lab.plan(&["stop"], &["o1"]);
    assert!(stopped.ok(), "{}", stopped.text());

    let json = lab.plan(&["output", "--format", "json"], &[]);
    assert!(json.ok(), "{}", json.text());
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(doc["format_version"], "1");
    let vm = |name: &str| {
        doc["vms"]
            .as_array()
            .and_then(|vms| vms.iter().find(|v| v["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {doc}"))
    };
    assert_eq!(vm("o0")["address"], "10.96.7.10");
    for (name, state) in [("o1", "stopped"), ("o2", "missing")] {
        let v = vm(name);
        assert_eq!(v["state"], state, "{v}");
        assert!(v["address"].is_null(), "{v}");
        assert_eq!(v["addresses"], serde_json::json!([]), "{v}");
        assert!(v["nics"][0]["ip"].is_null(), "{v}");
    }
    let ssh_config = lab.plan(&["output", "--format", "ssh-config"], &[]).stdout;
    assert!(
        ssh_config.contains("Host o0\n  HostName 10.96.7.10"),
        "{ssh_config}"
    );
    let ansible = lab.plan(&["output", "--format", "ansible"], &[]).stdout;
    let hosts = lab.plan(&["output", "--format", "hosts"], &[]).stdout;
    for shown in [&ssh_config, &ansible, &hosts] {
        assert!(
            !shown.contains("10.96.7.11") && !shown.contains("10.96.7.12"),
            "{shown}"
        );
        assert!(
            !shown.contains("Host o1") && !shown.contains("o2:\n"),
            "{shown}"
        );
    }
    assert!(
        ansible.contains("# left out: o1 (stopped, no address)"),
        "{ansible}"
    );
    assert!(
        ansible.contains("# left out: o2 (missing, no address)"),
        "{ansible}"
    );

    // `plan ssh` refuses, as `plan info` does, and runs no ssh.
    for (vm, said) in [
        ("o1", "vm/o1 is not running (stopped), so it has no address"),
        ("o2", "vm/o2 does not exist on its provider"),
    ] {
        let ssh = Plan::new(&["ssh"])
            .sandbox(&lab.sandbox())
            .env("XDG_STATE_HOME", lab.dir.path().join("state"))
            .args(&[
                &lab.file.to_string_lossy(),
                vm,
                "--provider",
                "sandbox",
                "--",
                "true",
            ])
            .env("PATH", "/nonexistent")
            .run();
        assert_eq!(ssh.code(), Some(1), "{}", ssh.text());
        assert!(ssh.stderr.contains(said), "{}", ssh.stderr);
    }

    // Status: addresses as values with their source, and a format version.
    let (_, doc) = status_json(&lab, &[]);
    assert_eq!(doc["format_version"], "2");
    assert_eq!(
        vm_of(&doc, "vm/o0")["addresses"],
        serde_json::json!([{"ip": "10.96.7.10", "sources": ["static"]}])
    );
    assert!(vm_of(&doc, "vm/o1").get("addresses").is_none(), "{doc}");
    let table = lab.plan(&["status"], &[]).stdout;
    assert!(
        !table.contains("10.96.7.11") && !table.contains("10.96.7.12"),
        "{table}"
    );
}

mod hints;
mod waiting;
