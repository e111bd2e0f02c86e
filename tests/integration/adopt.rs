//! Adoption on a real libvirtd: a network and a VM defined by hand (no plan's mark, as
//! virt-install or a script leaves them) are refused by a plan that declares them, until it is
//! asked to adopt them (`--adopt`); the diff then shows each as adopted with exactly what
//! differs, apply marks them and changes only that, the plan owns them from then on (a change
//! goes through it, destroy deletes them), and what another plan owns is refused even so.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report

use virt::connect::Connect;

use crate::harness::{Plan, Ran};

const NET: &str = "<network><name>spadoptnet</name><bridge name='spadoptnet'/>\
    <domain name='spadoptnet'/><ip address='10.97.5.1' prefix='24'/></network>";
const VM: &str = "<domain type='qemu'><name>spadopt1</name><memory unit='MiB'>128</memory>\
    <vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><features><acpi/></features>\
    <devices><interface type='network'><source network='spadoptnet'/>\
    <mac address='52:54:00:5a:d0:01'/><model type='virtio'/></interface></devices></domain>";

/// The plan that declares them: the network as it is, and the VM with more memory.
fn plan_text(memory: u32) -> String {
    format!(
        "spadoptnet:\n  type: network\n  cidr: 10.97.5.0/24\n  nat: false\n  dhcp: false\n\
         spadopt1:\n  memory: {memory}\n  numcpus: 1\n  start: false\n  cloudinit: false\n  \
         disks: []\n  nets:\n    - name: spadoptnet\n      mac: 52:54:00:5a:d0:01\n"
    )
}

struct Lab {
    tmp: tempfile::TempDir,
    uri: String,
}

impl Lab {
    fn plan(&self, args: &[&str], more: &[&str]) -> Ran {
        Plan::new(args)
            .env("XDG_STATE_HOME", self.tmp.path().join("state"))
            .args(&[
                &self.tmp.path().join("adopt.yml").to_string_lossy(),
                "--provider",
                &self.uri,
            ])
            .args(more)
            .run()
    }
}

fn remove(conn: &Connect) {
    for d in conn.list_all_domains(0).unwrap_or_default() {
        if d.name().is_ok_and(|n| n.starts_with("spadopt")) {
            let _ = d.destroy();
            let _ = d.undefine();
        }
    }
    for n in conn.list_all_networks(0).unwrap_or_default() {
        if n.name().is_ok_and(|n| n.starts_with("spadopt")) {
            let _ = n.destroy();
            let _ = n.undefine();
        }
    }
}

#[test]
fn a_network_and_a_vm_made_by_hand_are_adopted_changed_and_destroyed_by_the_plan() {
    let test = "a_network_and_a_vm_made_by_hand_are_adopted_changed_and_destroyed_by_the_plan";
    let Some((_held, uri)) = crate::harness::libvirtd(test) else {
        return;
    };
    let conn = Connect::open(Some(&uri)).expect("libvirtd");
    remove(&conn);
    let net = conn.define_network_xml(NET).expect("the network, by hand");
    net.create().expect("started");
    conn.define_domain_xml(VM).expect("the VM, by hand");
    let lab = Lab {
        tmp: tempfile::tempdir().expect("tmp"),
        uri: uri.clone(),
    };
    std::fs::write(lab.tmp.path().join("adopt.yml"), plan_text(256)).expect("plan");

    // Not asked to adopt: refused, nothing changed.
    let refused = lab.plan(&["apply", "--yes"], &[]);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(
        refused
            .stderr
            .contains("vm/spadopt1 already exists and was not created by siteplan"),
        "{}",
        refused.stderr
    );

    // `plan generate` writes them as a plan that adopts them with nothing but the marks:
    // the network too, as nothing else uses it.
    let generated = lab.tmp.path().join("generated.yml");
    let made = Plan::new(&["generate", "spadopt1", "--provider", &uri, "-o"])
        .env("XDG_STATE_HOME", lab.tmp.path().join("state"))
        .args(&[&generated.to_string_lossy()])
        .run();
    assert!(made.ok(), "{}", made.text());
    // The network was not set to start with the host, as a plan's networks are: generate
    // says so, and the diff shows it.
    assert!(
        made.stderr
            .contains("network/spadoptnet: autostart (false → true) would change"),
        "{}",
        made.stderr
    );
    let text = std::fs::read_to_string(&generated).expect("the plan written");
    crate::harness::report(&format!(
        "{test}: the plan generated:\n{text}{}",
        made.stderr
    ));
    assert!(text.contains("spadoptnet:\n  type: network"), "{text}");
    let from_generated = Plan::new(&["diff", "--adopt-all"])
        .env("XDG_STATE_HOME", lab.tmp.path().join("state"))
        .args(&[&generated.to_string_lossy(), "--provider", &uri])
        .run();
    assert!(from_generated.ok(), "{}", from_generated.text());
    let attributes: Vec<&str> = from_generated
        .stdout
        .lines()
        .filter(|l| l.starts_with("      "))
        .map(str::trim)
        .filter(|a| !a.starts_with("owner:"))
        .collect();
    assert_eq!(
        attributes,
        ["autostart: false → true"],
        "{}",
        from_generated.stdout
    );

    // Asked: the diff shows each adopted, with what differs and nothing else.
    let adopt = ["--adopt", "spadoptnet", "--adopt", "spadopt1"];
    let diff = lab.plan(&["diff"], &adopt);
    assert!(diff.ok(), "{}", diff.text());
    crate::harness::report(&format!(
        "{test}: the diff of the adoption:\n{}",
        diff.stdout
    ));
    assert!(
        diff.stdout.contains("<= network/spadoptnet"),
        "{}",
        diff.stdout
    );
    assert!(diff.stdout.contains("<= vm/spadopt1"), "{}", diff.stdout);
    assert!(diff.stdout.contains("memory"), "{}", diff.stdout);
    assert!(diff.stdout.contains("to adopt"), "{}", diff.stdout);

    let applied = lab.plan(&["apply", "--yes"], &adopt);
    assert!(applied.ok(), "{}", applied.text());
    let domain = conn.lookup_domain_by_name("spadopt1").expect("still there");
    let xml = domain.xml_desc(0).expect("its XML");
    assert!(xml.contains("urn:siteplan:owner"), "not marked:\n{xml}");
    assert!(xml.contains("<memory unit='KiB'>262144</memory>"), "{xml}");
    let again = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(again.code(), Some(0), "{}", again.text());

    // The plan's own now: a change goes through it, without --adopt.
    std::fs::write(lab.tmp.path().join("adopt.yml"), plan_text(384)).expect("plan");
    let changed = lab.plan(&["apply", "--yes"], &[]);
    assert!(changed.ok(), "{}", changed.text());
    let xml = conn
        .lookup_domain_by_name("spadopt1")
        .expect("there")
        .xml_desc(0)
        .expect("XML");
    assert!(xml.contains("<memory unit='KiB'>393216</memory>"), "{xml}");

    // What another plan owns is not adopted.
    let other = tempfile::tempdir().expect("tmp");
    std::fs::write(other.path().join("adopt.yml"), plan_text(384)).expect("plan");
    let theirs = Plan::new(&["diff"])
        .env("XDG_STATE_HOME", other.path().join("state"))
        .args(&[
            &other.path().join("adopt.yml").to_string_lossy(),
            "--provider",
            &uri,
            "--name",
            "someoneelse",
        ])
        .args(&adopt)
        .run();
    assert_eq!(theirs.code(), Some(1), "{}", theirs.text());
    assert!(
        theirs.stderr.contains("belongs to plan `adopt`"),
        "{}",
        theirs.stderr
    );

    // And destroy deletes them, as the plan's.
    let destroyed = lab.plan(&["destroy", "--yes"], &[]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(conn.lookup_network_by_name("spadoptnet").is_err());
    let left: Vec<String> = conn
        .list_all_domains(0)
        .unwrap_or_default()
        .iter()
        .filter_map(|d| d.name().ok())
        .filter(|n| n.starts_with("spadopt"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The pool a kcli plan puts its disks in, and the VMs whose names start with `vms`: made
/// before, gone after, whatever happens.
struct KcliPool {
    conn: Connect,
    name: &'static str,
    vms: &'static str,
}

const KCLI_POOL: &str = "siteplan-kcli-adopt";

impl KcliPool {
    fn new(conn: &Connect, name: &'static str, vms: &'static str) -> KcliPool {
        let pool = KcliPool {
            conn: conn.clone(),
            name,
            vms,
        };
        pool.remove();
        let xml = format!(
            "<pool type='dir'><name>{name}</name><target><path>/var/lib/libvirt/{name}\
             </path></target></pool>"
        );
        let p = conn.define_storage_pool_xml(&xml, 0).expect("kcli's pool");
        p.build(0).expect("built");
        p.create(0).expect("started");
        pool
    }

    fn remove(&self) {
        for d in self.conn.list_all_domains(0).unwrap_or_default() {
            if d.name().is_ok_and(|n| n.starts_with(self.vms)) {
                let _ = d.destroy();
                let _ = d.undefine();
            }
        }
        for p in self.conn.list_all_storage_pools(0).unwrap_or_default() {
            if p.name().is_ok_and(|n| n == self.name) {
                for v in p.list_all_volumes(0).unwrap_or_default() {
                    let _ = v.delete(0);
                }
                let _ = p.destroy();
                let _ = p.undefine();
            }
        }
    }
}

impl Drop for KcliPool {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A plan `kcli create plan` made (kcli itself, as `.ci` installs it) becomes siteplan's in one
/// step, its own plan file applied with `--adopt-all`: siteplan's reading of a kcli plan is
/// kcli's, so nothing differs but the marks; kcli still lists it, and so does `plan list`.
#[test]
fn a_plan_kcli_made_is_taken_over_with_its_own_file() {
    let test = "a_plan_kcli_made_is_taken_over_with_its_own_file";
    let Some((_held, uri, kcli)) = libvirtd_and_kcli(test) else {
        return;
    };
    virt::error::clear_error_callback();
    let conn = Connect::open(Some(&uri)).expect("libvirtd");
    let _pool = KcliPool::new(&conn, KCLI_POOL, "kcli-adopted");
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("kcliadopt.yml");
    std::fs::write(
        &file,
        format!(
            "kcli-adopted:\n  memory: 64\n  numcpus: 1\n  pool: {KCLI_POOL}\n  disks: [1]\n  \
             nets: []\n  start: false\n  cloudinit: false\n"
        ),
    )
    .expect("plan");
    let kcli_run = |args: &[&str]| {
        let out = std::process::Command::new(&kcli)
            .args(args)
            .env("HOME", dir.path())
            .output()
            .expect("kcli runs");
        assert!(
            out.status.success(),
            "kcli {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    kcli_run(&["create", "plan", "-f", &file.to_string_lossy(), "kcliadopt"]);
    let run = |args: &[&str]| {
        Plan::new(args)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .args(&[&file.to_string_lossy(), "--provider", &uri])
            .run()
    };
    let diff = run(&["diff", "--adopt-all"]);
    assert!(diff.ok(), "{}", diff.text());
    crate::harness::report(&format!(
        "{test}: the diff of kcli's plan:\n{}",
        diff.stdout
    ));
    for adopted in [
        "<= vm/kcli-adopted",
        &format!("<= volume/{KCLI_POOL}/kcli-adopted_0.img"),
    ] {
        assert!(diff.stdout.contains(adopted), "{}", diff.stdout);
    }
    // Nothing but the marks: each adopted resource's only attribute is its owner.
    assert!(only_marks(&diff.stdout), "{}", diff.stdout);

    // The same plan, generated from what kcli made (generate, review, adopt), is the one
    // taken over: it is named as kcli's plan is, by its file.
    let generated = dir.path().join("generated").join("kcliadopt.yml");
    std::fs::create_dir_all(generated.parent().expect("a directory")).expect("made");
    let made = Plan::new(&["generate", "--plan", "kcliadopt", "--provider", &uri, "-o"])
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .args(&[&generated.to_string_lossy()])
        .run();
    assert!(made.ok(), "{}", made.text());
    crate::harness::report(&format!(
        "{test}: the plan generated from kcli's:\n{}{}",
        std::fs::read_to_string(&generated).unwrap_or_default(),
        made.stderr
    ));
    assert!(
        made.stderr.contains("changes nothing but siteplan's marks"),
        "{}",
        made.stderr
    );
    let run = |args: &[&str]| {
        Plan::new(args)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .args(&[&generated.to_string_lossy(), "--provider", &uri])
            .run()
    };
    let diff = run(&["diff", "--adopt-all"]);
    assert!(diff.ok(), "{}", diff.text());
    assert!(only_marks(&diff.stdout), "{}", diff.stdout);
    let applied = run(&["apply", "--yes", "--adopt-all"]);
    assert!(applied.ok(), "{}", applied.text());
    let clean = run(&["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code(), Some(0), "{}", clean.text());
    assert!(kcli_run(&["list", "plan"]).contains("kcliadopt"));
    let listed = Plan::new(&["list", "--provider", &uri])
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .run();
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.starts_with("kcliadopt ") && l.contains("siteplan")),
        "{}",
        listed.stdout
    );
    // Changed through the plan: more memory (the VM is stopped, so it takes it now).
    let text = std::fs::read_to_string(&generated).expect("the plan");
    assert!(text.contains("memory: 64\n"), "{text}");
    std::fs::write(&generated, text.replace("memory: 64\n", "memory: 96\n")).expect("changed");
    let changed = run(&["apply", "--yes"]);
    assert!(changed.ok(), "{}", changed.text());
    let xml = conn
        .lookup_domain_by_name("kcli-adopted")
        .expect("still there")
        .xml_desc(0)
        .expect("its XML");
    assert!(xml.contains("<memory unit='KiB'>98304</memory>"), "{xml}");
    let destroyed = run(&["destroy", "--yes"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(conn.lookup_domain_by_name("kcli-adopted").is_err());
}

/// Whether each resource of a diff changes in nothing but its mark (its `owner`).
fn only_marks(diff: &str) -> bool {
    diff.lines()
        .filter(|l| l.starts_with("      "))
        .all(|l| l.trim().starts_with("owner:"))
}

/// kcli with an image and cloud-init, as its plans usually are: each VM's disk an overlay of
/// the image, and its cloud-init an ISO on a CD-ROM. `plan generate` writes the plan (one
/// profile for the two VMs alike), adoption changes nothing but the marks, the ISOs stay on
/// the VMs (siteplan keeps what a plan does not say), and destroy leaves them to kcli.
#[test]
fn a_kcli_plan_with_an_image_and_cloud_init_is_generated_and_taken_over_keeping_its_isos() {
    let test =
        "a_kcli_plan_with_an_image_and_cloud_init_is_generated_and_taken_over_keeping_its_isos";
    let Some((_held, uri, kcli)) = libvirtd_and_kcli(test) else {
        return;
    };
    virt::error::clear_error_callback();
    let conn = Connect::open(Some(&uri)).expect("libvirtd");
    const POOL: &str = "siteplan-kcli-seeded";
    let _pool = KcliPool::new(&conn, POOL, "kcli-seeded");
    let pool = conn.lookup_storage_pool_by_name(POOL).expect("the pool");
    virt::storage_vol::StorageVol::create_xml(
        &pool,
        "<volume><name>tiny.qcow2</name><capacity unit='MiB'>64</capacity>\
         <target><format type='qcow2'/></target></volume>",
        0,
    )
    .expect("the image");
    let dir = tempfile::tempdir().expect("tmp");
    let vm = |name: &str| {
        format!(
            "{name}:\n  image: tiny.qcow2\n  pool: {POOL}\n  memory: 64\n  numcpus: 1\n  \
             start: false\n  nets: []\n  cmds: [echo hello]\n"
        )
    };
    let file = dir.path().join("kcli_plan.yml");
    std::fs::write(&file, vm("kcli-seeded1") + &vm("kcli-seeded2")).expect("plan");
    let out = std::process::Command::new(&kcli)
        .args([
            "create",
            "plan",
            "-f",
            &file.to_string_lossy(),
            "kcliseeded",
        ])
        .env("HOME", dir.path())
        .output()
        .expect("kcli runs");
    assert!(
        out.status.success() && conn.lookup_domain_by_name("kcli-seeded2").is_ok(),
        "kcli create plan:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let iso_of = |vm: &str| {
        conn.lookup_domain_by_name(vm)
            .and_then(|d| d.xml_desc(sys_inactive()))
            .map(|xml| xml.contains("device='cdrom'") && xml.contains(&format!("{vm}.ISO")))
            .unwrap_or(false)
    };
    assert!(iso_of("kcli-seeded1"), "kcli made no cloud-init ISO");

    let generated = dir.path().join("generated").join("kcliseeded.yml");
    std::fs::create_dir_all(generated.parent().expect("a directory")).expect("made");
    let made = Plan::new(&["generate", "--plan", "kcliseeded", "--provider", &uri, "-o"])
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .args(&[&generated.to_string_lossy()])
        .run();
    assert!(made.ok(), "{}", made.text());
    let text = std::fs::read_to_string(&generated).expect("the plan written");
    crate::harness::report(&format!(
        "{test}: the plan generated:\n{text}{}",
        made.stderr
    ));
    assert!(
        made.stderr.contains("changes nothing but siteplan's marks"),
        "{}",
        made.stderr
    );
    assert!(
        text.contains("kcli-seeded-profile:\n  type: profile"),
        "{text}"
    );
    assert!(text.contains("image: tiny.qcow2"), "{text}");
    let run = |args: &[&str]| {
        Plan::new(args)
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .args(&[&generated.to_string_lossy(), "--provider", &uri])
            .run()
    };
    let diff = run(&["diff", "--adopt-all"]);
    assert!(diff.ok(), "{}", diff.text());
    assert!(only_marks(&diff.stdout), "{}", diff.stdout);
    assert!(diff.stdout.contains("4 to adopt"), "{}", diff.stdout);
    let applied = run(&["apply", "--yes", "--adopt-all"]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(
        iso_of("kcli-seeded1") && iso_of("kcli-seeded2"),
        "an ISO was lost"
    );
    let clean = run(&["diff", "--detailed-exitcode"]);
    assert_eq!(clean.code(), Some(0), "{}", clean.text());
    let destroyed = run(&["destroy", "--yes"]);
    assert!(destroyed.ok(), "{}", destroyed.text());
    assert!(conn.lookup_domain_by_name("kcli-seeded1").is_err());
    // kcli's ISOs and the image were never the plan's.
    let left: Vec<String> = pool
        .list_all_volumes(0)
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.name().ok())
        .collect();
    for kept in ["kcli-seeded1.ISO", "kcli-seeded2.ISO", "tiny.qcow2"] {
        assert!(
            left.iter().any(|v| v == kept),
            "{kept} was deleted: {left:?}"
        );
    }
}

fn sys_inactive() -> u32 {
    virt::sys::VIR_DOMAIN_XML_INACTIVE
}

/// A real libvirtd and kcli itself, or `None` (the test said SKIPPED) when either is missing.
fn libvirtd_and_kcli(test: &str) -> Option<(impl Sized, String, String)> {
    let (held, uri) = crate::harness::libvirtd(test)?;
    let Some(kcli) = std::env::var("SITEPLAN_TEST_KCLI")
        .ok()
        .filter(|k| !k.is_empty())
    else {
        crate::harness::report(&format!(
            "SKIPPED {test}: SITEPLAN_TEST_KCLI is not set (.ci/install-kcli installs kcli)"
        ));
        return None;
    };
    Some((held, uri, kcli))
}
