//! `plan diff`, `apply` and `destroy` end to end: the binary against the sandbox, and against a
//! real libvirtd when SITEPLAN_TEST_LIBVIRT_URI names one (CI); skipped, saying why, elsewhere.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::path::{Path, PathBuf};

use crate::harness::{Plan, Ran};

struct Lab {
    provider: String,
    sandbox: PathBuf,
    name: &'static str,
}

impl Lab {
    fn plan(&self, args: &[&str], params: &[&str]) -> (Ran, String, String) {
        let out = Plan::new(args)
            .sandbox(&self.sandbox)
            .args(&["tests/fixtures/lifecycle/site.yml"])
            .args(&["--provider", &self.provider, "--name", self.name])
            .params(params)
            .run();
        let (stdout, stderr) = (out.stdout.clone(), out.stderr.clone());
        (out, stdout, stderr)
    }

    fn apply(&self, params: &[&str]) -> String {
        let (out, stdout, stderr) = self.plan(&["apply", "--yes"], params);
        assert!(
            out.status.success(),
            "apply {params:?} failed:\n{stdout}\n{stderr}"
        );
        assert!(
            stderr.contains(", 0 failed, 0 skipped") || stdout.contains("No changes"),
            "{stdout}\n{stderr}"
        );
        stdout
    }

    /// `apply --restart`, with a short shutdown timeout: the test's VMs boot no system that
    /// would shut down when asked. Returns what it said on stderr (the progress lines).
    fn restart(&self, params: &[&str]) -> String {
        let (out, stdout, stderr) = self.plan(
            &["apply", "--yes", "--restart", "--shutdown-timeout", "3"],
            params,
        );
        assert!(
            out.status.success(),
            "apply --restart {params:?} failed:\n{stdout}\n{stderr}"
        );
        stderr
    }

    fn diff(&self, params: &[&str]) -> String {
        let (out, stdout, stderr) = self.plan(&["diff"], params);
        assert!(
            out.status.success(),
            "diff {params:?} failed:\n{stdout}\n{stderr}"
        );
        stdout
    }

    fn assert_converged(&self, params: &[&str]) {
        let diff = self.diff(params);
        assert!(
            diff.starts_with("No changes."),
            "applying {params:?} did not converge:\n{diff}"
        );
    }
}

fn lifecycle(lab: &Lab) {
    // Create, then nothing left to do.
    let first = lab.apply(&[]);
    assert!(first.contains("Plan: 9 to add"), "{first}");
    assert!(
        first.contains("life0") && first.contains("running"),
        "the VM table: {first}"
    );
    lab.assert_converged(&[]);

    // Memory and cpus: an update that needs a reboot, with old and new values.
    let bigger = ["memory=384", "cpus=2"];
    let diff = lab.diff(&bigger);
    assert!(diff.contains("~ vm/life0 (needs a reboot)"), "{diff}");
    assert!(diff.contains("memory: 256 MiB → 384 MiB"), "{diff}");
    assert!(diff.contains("vcpus:  1 → 2"), "{diff}");
    lab.apply(&bigger);
    // Saved, not running yet: the diff says so until the VMs restart, and counts it as a
    // change; `apply --restart` restarts them, and then nothing is left.
    let waiting = lab.diff(&bigger);
    assert!(
        waiting.contains("↻ vm/life0: changed by an earlier apply"),
        "{waiting}"
    );
    assert!(waiting.contains("memory: 256 MiB → 384 MiB"), "{waiting}");
    assert!(waiting.contains("2 waiting for a restart"), "{waiting}");
    let (out, _, _) = lab.plan(&["diff", "--detailed-exitcode"], &bigger);
    assert_eq!(out.code(), Some(2), "a pending restart is a change");
    let restarted = lab.restart(&bigger);
    assert!(
        restarted.contains("vm life0 restarted") && restarted.contains("vm life1 restarted"),
        "{restarted}"
    );
    lab.assert_converged(&bigger);

    // A disk and a NIC more: new volumes, and the VMs updated in place.
    let more = ["memory=384", "cpus=2", "disks=2", "nics=2"];
    let diff = lab.diff(&more);
    assert!(diff.contains("+ volume/lifepool/life0_1.img"), "{diff}");
    assert!(diff.contains("~ vm/life0"), "{diff}");
    assert!(
        !diff.contains("-/+ vm/"),
        "disks and NICs are added in place: {diff}"
    );
    // libvirt attaches them to the running VMs (the sandbox, libvirt's test driver, cannot),
    // but either way the seed that configures the new NIC in the guest is read only at boot:
    // the change waits for a restart, and says so.
    assert!(
        diff.contains("~ vm/life0 (needs a reboot)")
            && diff.contains("seed content: \"(sensitive)\" → \"(sensitive, changed)\""),
        "{}: {diff}",
        lab.provider
    );
    let applied = lab.restart(&more);
    assert!(applied.contains("restarted"), "{applied}");
    lab.assert_converged(&more);

    // A network's CIDR: replaced, and the reason says so.
    let moved = [
        "memory=384",
        "cpus=2",
        "disks=2",
        "nics=2",
        "cidr=192.168.233.0/24",
    ];
    let diff = lab.diff(&moved);
    assert!(
        diff.contains("-/+ network/lifenet: `cidr` and `dhcp` force replacement"),
        "{diff}"
    );
    lab.apply(&moved);
    lab.assert_converged(&moved);

    // One VM fewer: deleted with its volumes, with the reason.
    let fewer = [
        "memory=384",
        "cpus=2",
        "disks=2",
        "nics=2",
        "cidr=192.168.233.0/24",
        "vms=1",
    ];
    let diff = lab.diff(&fewer);
    assert!(
        diff.contains("- vm/life1: created by this plan, no longer declared in it"),
        "{diff}"
    );
    assert!(diff.contains("- volume/lifepool/life1_0.img"), "{diff}");
    assert!(
        diff.contains("- volume/lifepool/life1-cidata.img"),
        "{diff}"
    );
    lab.apply(&fewer);
    lab.assert_converged(&fewer);

    // Destroy: everything the plan owns, and nothing else.
    let (out, stdout, stderr) = lab.plan(&["destroy", "--yes"], &fewer);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let after = lab.diff(&fewer);
    assert!(
        after.contains("Plan: 7 to add, 0 to change, 0 to replace, 0 to destroy."),
        "all gone: {after}"
    );
}

#[test]
fn sandbox_lifecycle() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab {
        provider: "sandbox".into(),
        sandbox: tmp.path().join("sandbox"),
        name: "life",
    };
    lifecycle(&lab);
    // The sandbox's own default network and pool, which no plan created, are still there.
    let node = std::fs::read_to_string(lab.sandbox.join("state.json")).expect("state file");
    assert!(node.contains("<name>default</name>"), "{node}");
}

#[test]
fn wait_waits_for_addresses_and_fails_when_none_comes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab {
        provider: "sandbox".into(),
        sandbox: tmp.path().join("sandbox"),
        name: "life",
    };
    // The sandbox leases addresses from the network's DHCP range, as dnsmasq would.
    let (out, stdout, stderr) =
        lab.plan(&["apply", "--yes", "--wait", "--wait-timeout", "10"], &[]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let row: Vec<&str> = stdout
        .lines()
        .find(|l| l.starts_with("life0 "))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        row.get(..3),
        Some(&["life0", "sandbox", "running"][..]),
        "{stdout}"
    );
    assert!(row[3].starts_with("192.168.231."), "{stdout}");
    // The same leases the next time.
    let (_, again, _) = lab.plan(&["apply", "--yes", "--wait"], &[]);
    assert_eq!(
        again
            .lines()
            .filter(|l| l.starts_with("life"))
            .collect::<Vec<_>>(),
        stdout
            .lines()
            .filter(|l| l.starts_with("life"))
            .collect::<Vec<_>>()
    );

    // A VM on a network without DHCP, and no static address: nothing to wait for, so it fails.
    let plan = tmp.path().join("nodhcp.yml");
    std::fs::write(
        &plan,
        "quiet:\n  type: network\n  cidr: 10.231.0.0/24\n  dhcp: false\n\
         lonely:\n  virttype: qemu\n  nets: [quiet]\n",
    )
    .expect("plan");
    let out = Plan::new(&[
        "apply",
        "--yes",
        "--provider",
        "sandbox",
        "--wait",
        "--wait-timeout",
        "1",
    ])
    .sandbox(&lab.sandbox)
    .args(&[&plan.to_string_lossy()])
    .run();
    let stderr = &out.stderr;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no address after 1s for: lonely"),
        "{stderr}"
    );
}

/// The VM table says where each address comes from. The sandbox shows a static address as
/// static (the guest configures it and asks no DHCP server), and leases for the others.
#[test]
fn the_table_shows_static_addresses_as_static_and_leases_as_leases() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = Plan::new(&["apply", "--yes", "--wait", "--provider", "sandbox"])
        .sandbox(&tmp.path().join("sandbox"))
        .args(&["examples/bootlab.yml", "--allow-read", "target/guest-image"])
        .params(&[&format!("pool_path={}", tmp.path().join("pool").display())])
        .run();
    assert!(out.ok(), "{}", out.text());
    let row = |vm: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{vm} ")))
            .map(|l| l.split_whitespace().skip(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    assert_eq!(row("boot1"), "10.98.0.10 (static)", "{}", out.stdout);
    assert_eq!(row("boot2"), "10.98.0.100 (lease)", "{}", out.stdout);
    assert_eq!(row("boot3"), "10.98.0.101 (lease)", "{}", out.stdout);
}

/// A change that fails skips what depends on it, the rest is applied, the exit status says so,
/// and the next run finishes the job.
#[test]
fn a_failed_change_skips_its_dependents_and_the_next_run_finishes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab {
        provider: "sandbox".into(),
        sandbox: tmp.path().join("sandbox"),
        name: "life",
    };
    let out = Plan::new(&["apply", "--yes", "tests/fixtures/lifecycle/site.yml"])
        .args(&["--provider", "sandbox", "--name", "life"])
        .sandbox(&lab.sandbox)
        .env("SITEPLAN_FAIL_ON", "volume/lifepool/life0_0.img")
        .run();
    let stderr = &out.stderr;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "volume/lifepool/life0_0.img FAILED: volume/lifepool/life0_0.img: injected failure"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("vm/life0 skipped, because volume/lifepool/life0_0.img failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Apply: 7 done, 1 failed, 1 skipped."),
        "{stderr}"
    );
    // The other VM is there; the next run makes only what is missing.
    let diff = lab.diff(&[]);
    assert!(diff.contains("+ volume/lifepool/life0_0.img"), "{diff}");
    assert!(diff.contains("+ vm/life0"), "{diff}");
    assert!(diff.contains("Plan: 2 to add, 0 to change"), "{diff}");
    lab.apply(&[]);
    lab.assert_converged(&[]);
}

#[test]
fn detailed_exitcode_says_whether_there_are_changes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab {
        provider: "sandbox".into(),
        sandbox: tmp.path().join("sandbox"),
        name: "life",
    };
    let (out, stdout, _) = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(out.status.code(), Some(2), "changes: {stdout}");
    lab.apply(&[]);
    let (out, stdout, _) = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(out.status.code(), Some(0), "no changes: {stdout}");
    let (out, _, stderr) = lab.plan(&["diff", "--detailed-exitcode"], &["memory=oops"]);
    assert_eq!(out.status.code(), Some(1), "an error: {stderr}");
    // The other formats, from the binary.
    let (out, json, _) = lab.plan(&["diff", "--format", "json"], &["memory=300"]);
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(doc["format_version"], "2");
    assert_eq!(doc["summary"]["update"], 2, "{json}");
    let (_, markdown, _) = lab.plan(&["diff", "--format", "markdown"], &["memory=300"]);
    assert!(
        markdown.starts_with("### `plan diff` for `life`: 0 to add, 2 to change"),
        "{markdown}"
    );
}

#[test]
fn quiet_says_only_the_counts_and_the_summary() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab {
        provider: "sandbox".into(),
        sandbox: tmp.path().join("sandbox"),
        name: "life",
    };
    let (out, stdout, stderr) = lab.plan(&["apply", "--yes", "-q"], &[]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout,
        "Plan: 9 to add, 0 to change, 0 to replace, 0 to destroy.\n"
    );
    assert_eq!(stderr, "\nApply: 9 done, 0 failed, 0 skipped.\n");
    let (_, stdout, _) = lab.plan(&["diff", "-q"], &[]);
    assert_eq!(stdout, "No changes to plan `life`.\n");
    // -v says what each change sets.
    let (_, _, stderr) = lab.plan(&["apply", "--yes", "-v"], &["memory=300"]);
    assert!(stderr.contains("Observed "), "{stderr}");
    assert!(stderr.contains("memory: 256 MiB → 300 MiB"), "{stderr}");
}

#[test]
fn apply_refuses_without_yes_when_not_on_a_terminal() {
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab {
        provider: "sandbox".into(),
        sandbox: tmp.path().join("sandbox"),
        name: "life",
    };
    let (out, _, stderr) = lab.plan(&["apply"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("pass --yes"), "{stderr}");
    assert!(
        lab.diff(&[]).contains("Plan: 9 to add"),
        "nothing was created"
    );
}

#[test]
fn a_missing_external_reference_changes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let plan = tmp.path().join("missing.yml");
    std::fs::write(
        &plan,
        "web1:\n  image: no-such-image\n  nets: [no-such-net]\n",
    )
    .expect("plan");
    let out = Plan::new(&["apply", "--yes", "--provider", "sandbox"])
        .args(&[&plan.to_string_lossy()])
        .sandbox(&tmp.path().join("sandbox"))
        .run();
    let stderr = &out.stderr;
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("network/no-such-net"), "{stderr}");
    assert!(stderr.contains("volume/default/no-such-image"), "{stderr}");
    assert!(stderr.contains("Nothing was changed."), "{stderr}");
}

#[test]
#[cfg(feature = "libvirt")]
fn real_libvirtd_lifecycle() {
    let Some((_held, uri)) = crate::harness::libvirtd("real_libvirtd_lifecycle") else {
        return;
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let lab = Lab {
        provider: uri.clone(),
        sandbox: tmp.path().join("unused"),
        name: "life",
    };
    // Whatever an earlier failed run left is the plan's own, from its own temporary file:
    // destroy finds it by its marks.
    let _ = lab.plan(&["destroy", "--yes", "--plan-moved"], &[]);
    let theirs = Unrelated::define(&uri);
    lifecycle(&lab);
    theirs.assert_still_there();
}

/// A domain, network and pool made by hand beside the plan's: no `plan` command may touch them.
#[cfg(feature = "libvirt")]
struct Unrelated {
    conn: virt::connect::Connect,
}

#[cfg(feature = "libvirt")]
const THEIR_NET: &str = "<network><name>life-theirs-net</name><bridge name='lifetheirs0'/>\
    <ip address='192.168.239.1' prefix='24'/></network>";
#[cfg(feature = "libvirt")]
const THEIR_POOL: &str = "<pool type='dir'><name>life-theirs-pool</name>\
    <target><path>/var/lib/libvirt/siteplan-life-theirs</path></target></pool>";
#[cfg(feature = "libvirt")]
const THEIR_VM: &str = "<domain type='qemu'><name>life-theirs-vm</name>\
    <memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type></os></domain>";

#[cfg(feature = "libvirt")]
impl Unrelated {
    fn define(uri: &str) -> Self {
        let conn = virt::connect::Connect::open(Some(uri)).expect("connect");
        let unrelated = Unrelated { conn };
        unrelated.remove();
        let net = unrelated.conn.define_network_xml(THEIR_NET).expect("net");
        net.create().expect("start net");
        let pool = unrelated
            .conn
            .define_storage_pool_xml(THEIR_POOL, 0)
            .expect("pool");
        pool.build(0).expect("build pool");
        pool.create(0).expect("start pool");
        unrelated.conn.define_domain_xml(THEIR_VM).expect("vm");
        unrelated
    }

    fn assert_still_there(&self) {
        assert!(self.conn.lookup_network_by_name("life-theirs-net").is_ok());
        assert!(self
            .conn
            .lookup_storage_pool_by_name("life-theirs-pool")
            .is_ok());
        assert!(self.conn.lookup_domain_by_name("life-theirs-vm").is_ok());
    }

    fn remove(&self) {
        if let Ok(n) = self.conn.lookup_network_by_name("life-theirs-net") {
            let _ = n.destroy();
            let _ = n.undefine();
        }
        if let Ok(p) = self.conn.lookup_storage_pool_by_name("life-theirs-pool") {
            let _ = p.destroy();
            let _ = p.delete(0);
            let _ = p.undefine();
        }
        if let Ok(d) = self.conn.lookup_domain_by_name("life-theirs-vm") {
            let _ = d.undefine();
        }
    }
}

#[cfg(feature = "libvirt")]
impl Drop for Unrelated {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The bridge a running VM's first NIC is plugged into, as the host's sysfs shows it (the
/// host's own view of its tap device: nothing is sent to the guest or the bridge).
fn bridge_of(uri: &str, vm: &str) -> Option<String> {
    let out = std::process::Command::new("virsh")
        .args(["-c", uri, "domiflist", vm])
        .output()
        .expect("virsh");
    let tap = String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(2)
        .find_map(|l| l.split_whitespace().next().map(String::from))?;
    let master = std::fs::read_link(format!("/sys/class/net/{tap}/master")).ok()?;
    Some(master.file_name()?.to_string_lossy().into_owned())
}

#[test]
fn real_libvirtd_a_network_made_again_takes_its_running_vms_along() {
    let Some((_one_at_a_time, uri)) =
        crate::harness::libvirtd("real_libvirtd_a_network_made_again_takes_its_running_vms_along")
    else {
        return;
    };
    let run = |args: &[&str], cidr: &str| {
        let out = Plan::new(args)
            .args(&["tests/fixtures/lock/moving.yml", "--provider", &uri])
            .params(&[&format!("cidr={cidr}")])
            .run();
        assert!(out.ok(), "{}", out.text());
        out.text()
    };
    run(&["destroy", "--yes", "-q"], "192.168.247.0/24");
    run(&["apply", "--yes", "-q"], "192.168.247.0/24");
    assert_eq!(bridge_of(&uri, "mover").as_deref(), Some("movenet"));

    let diff = run(&["diff"], "192.168.248.0/24");
    assert!(
        diff.contains("-/+ network/movenet")
            && diff.contains(
                "~ vm/mover: its network network/movenet is made again: its NICs on it are \
                 moved onto the new one, live (live)"
            ),
        "{diff}"
    );
    let applied = run(&["apply", "--yes"], "192.168.248.0/24");
    assert!(
        applied.contains("vm mover: NIC 52:54:00:") && applied.contains("onto movenet"),
        "{applied}"
    );
    // On the new bridge, not left on the one that went with the old network.
    assert_eq!(
        bridge_of(&uri, "mover").as_deref(),
        Some("movenet"),
        "{applied}"
    );
    let again = run(&["diff"], "192.168.248.0/24");
    assert!(again.contains("No changes"), "{again}");
    run(&["destroy", "--yes", "-q"], "192.168.248.0/24");
}

#[test]
fn destroy_finds_what_the_plan_left_on_a_provider_it_no_longer_names() {
    let tmp = tempfile::tempdir().expect("tmp");
    let providers = tmp.path().join("providers.yml");
    std::fs::write(
        &providers,
        format!(
            "default: here\nproviders:\n  - {{name: here, type: sandbox, dir: {here}}}\n  \
             - {{name: there, type: sandbox, dir: {there}}}\n",
            here = tmp.path().join("here").display(),
            there = tmp.path().join("there").display()
        ),
    )
    .expect("providers file");
    let state = tmp.path().join("state");
    let run = |args: &[&str]| {
        let out = Plan::new(args).providers(&providers, &state).run();
        (out.ok(), out.text())
    };
    let site = "tests/fixtures/lifecycle/site.yml";
    // Applied to `there` once; another plan lives there too.
    let (ok, text) = run(&["apply", "--yes", "-q", site, "--provider", "there"]);
    assert!(ok, "{text}");
    let neighbour = [
        "tests/fixtures/lock/site.yml",
        "--provider",
        "there",
        "--name",
        "neighbour",
        "-P",
        "vms=1",
    ];
    let (ok, text) = run(&[&["apply", "--yes", "-q"], &neighbour[..]].concat());
    assert!(ok, "{text}");

    // The plan goes to `here` now: destroy still finds what it left `there`, lists it, and
    // deletes it, and only it.
    let (ok, text) = run(&["destroy", "--yes", site]);
    assert!(ok, "{text}");
    assert!(
        text.contains("provider `there` holds ")
            && text.contains("resources of plan `site`, though the plan no longer names it"),
        "{text}"
    );
    assert!(text.contains("- vm/life0 on there"), "{text}");
    let (_, left) = run(&["diff", site, "--provider", "there"]);
    assert!(
        !left.contains("No changes"),
        "nothing of plan `site` is left: {left}"
    );
    let (ok, kept) = run(&[&["diff"], &neighbour[..]].concat());
    assert!(ok && kept.contains("No changes"), "{kept}");
}

/// Destroying a plan keeps a network that another plan's VM is attached to, naming them; the
/// network goes with the plan once nothing else uses it.
#[test]
fn destroy_keeps_a_network_that_another_plans_vm_uses() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let write = |name: &str, text: &str| {
        let file = tmp.path().join(name);
        std::fs::write(&file, text).expect("plan");
        file
    };
    let owner = write(
        "owner.yml",
        "shared:\n  type: network\n  cidr: 192.168.247.0/24\na1:\n  memory: 128\n  nets: [shared]\n",
    );
    let user = write("user.yml", "b1:\n  memory: 128\n  nets: [shared]\n");
    let run = |args: &[&str], file: &Path| {
        Plan::new(args)
            .sandbox(&sandbox)
            .arg_path(file)
            .args(&["--provider", "sandbox"])
            .run()
    };
    assert!(run(&["apply", "--yes"], &owner).ok());
    assert!(run(&["apply", "--yes"], &user).ok());

    let destroyed = run(&["destroy", "--yes"], &owner);
    assert!(destroyed.ok(), "{}", destroyed.text());
    let said = destroyed.stderr.replace('\n', " ");
    assert!(
        said.contains(
            "network/shared is kept, not deleted: vm/b1 (plan `user`, running) is attached to it"
        ),
        "{said}"
    );
    assert!(
        !destroyed.stdout.contains("- network/shared"),
        "{}",
        destroyed.stdout
    );
    // b1 still runs on it.
    let status = run(&["status"], &user);
    assert_eq!(status.code(), Some(0), "{}", status.text());

    assert!(run(&["destroy", "--yes"], &user).ok());
    let again = run(&["destroy", "--yes"], &owner);
    assert!(again.ok(), "{}", again.text());
    assert!(
        again.stdout.contains("- network/shared"),
        "{}",
        again.stdout
    );
}

/// The diff reads as people write a plan: sizes in their unit, a VM's disks and NICs one field a
/// line (a change as a diff of those lines), a delete that loses nothing called deleted; the
/// JSON keeps the exact values.
#[test]
fn review_output_reads_as_people_write_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let file = tmp.path().join("read.yml");
    let write = |net: &str, spare: bool| {
        let spare = if spare {
            "spare:\n  type: network\n  cidr: 192.168.249.0/24\n"
        } else {
            ""
        };
        std::fs::write(
            &file,
            format!(
                "{net}:\n  type: network\n  cidr: 192.168.248.0/24\n{spare}r1:\n  memory: 2048\n  disks: [10]\n  nets: [{net}]\n"
            ),
        )
        .expect("plan")
    };
    let run = |args: &[&str]| {
        Plan::new(args)
            .sandbox(&sandbox)
            .arg_path(&file)
            .args(&["--provider", "sandbox"])
            .run()
    };
    write("readnet", true);
    let human = run(&["diff"]).stdout;
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("      memory:") && l.ends_with(" 2 GiB")),
        "{human}"
    );
    for shown in [
        "capacity: 10 GiB",
        "disks:\n        +- bus: virtio\n        +  pool: default\n        +  volume: r1_0.img\n",
        "nics:\n        +- mac: ",
    ] {
        assert!(human.contains(shown), "{shown:?} in:\n{human}");
    }
    assert!(
        !human.contains("capacity_bytes") && !human.contains("[{\""),
        "{human}"
    );
    let markdown = run(&["diff", "--format", "markdown"]).stdout;
    assert!(markdown.contains("+ capacity: 10 GiB"), "{markdown}");
    let json = run(&["diff", "--format", "json"]).stdout;
    assert!(
        json.contains("\"capacity_bytes\"") && json.contains("10737418240"),
        "{json}"
    );
    assert!(run(&["apply", "--yes"]).ok());

    // The network the VM is on is renamed, and the spare one dropped: the NIC's move is said
    // as a diff of its lines; the spare network is deleted, and it held no data; the old one
    // is kept while the running VM waits for a restart to leave it (the sandbox cannot move a
    // NIC live).
    write("readnet2", false);
    let diff = run(&["diff"]);
    let human = &diff.stdout;
    assert!(
        human.contains("-  network: readnet\n") && human.contains("+  network: readnet2\n"),
        "{human}"
    );
    assert!(
        human.contains("- network/spare: created by this plan, no longer declared in it (deleted)"),
        "{human}"
    );
    assert!(
        diff.stderr.replace('\n', " ").contains(
            "network/readnet is kept, not deleted: vm/r1 (plan `read`, running) is attached to it"
        ),
        "{}",
        diff.stderr
    );
    let json = run(&["diff", "--format", "json"]).stdout;
    assert!(json.contains("\"impact\": \"deleted\""), "{json}");
}

mod reviewed;

mod guards;

mod every_file;
