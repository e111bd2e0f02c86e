//! A plan that goes to a group of hosts (the providers file's `groups:`), here three sandboxes
//! of 3 GiB each: its VMs are placed by the room left on each host and their anti-affinity, a
//! placed VM stays where it is, a lab that does not fit is refused before anything changes,
//! and destroy takes it from every host. Real hosts, in namespaces, with guests that boot:
//! `real`.

#[cfg(feature = "libvirt")]
mod real;

use std::path::{Path, PathBuf};

use crate::harness::Plan;

struct Group {
    tmp: tempfile::TempDir,
    file: PathBuf,
}

/// Three sandboxes, `h1`..`h3`, in group `lab`, the file's default; `extra` is appended to the
/// providers list.
fn group(extra: &str) -> Group {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().display();
    let file = tmp.path().join("providers.yml");
    std::fs::write(
        &file,
        format!(
            "default: lab\nhealth_timeout: 2\nproviders:\n\
             \x20 - {{name: h1, type: sandbox, dir: {dir}/h1}}\n\
             \x20 - {{name: h2, type: sandbox, dir: {dir}/h2}}\n\
             \x20 - {{name: h3, type: sandbox, dir: {dir}/h3}}\n{extra}\
             groups:\n  - {{name: lab, hosts: [h1, h2, h3]}}\n"
        ),
    )
    .expect("providers file");
    Group { tmp, file }
}

impl Group {
    fn plan(&self, args: &[&str]) -> Plan {
        Plan::new(args).providers(&self.file, &self.tmp.path().join("state"))
    }

    /// `plan ARGS` on the group's lab with `workers` workers.
    fn lab(&self, args: &[&str], workers: u32) -> crate::harness::Ran {
        let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/groups/lab.yml");
        self.plan(args)
            .arg_path(&lab)
            .params(&[&format!("workers={workers}")])
            .run()
    }
}

#[test]
fn a_lab_is_placed_on_a_group_by_room_and_anti_affinity_and_stays_where_it_is() {
    let group = group("");
    let diff = group.lab(&["diff"], 1);
    assert!(diff.ok(), "{}", diff.text());
    let err = &diff.stderr;
    assert!(
        err.contains(
            "Placement on group lab:\n  m0 on h1 (new: the most memory left)\n  \
                      m1 on h2 (new: the most memory left)\n  m2 on h3 (new: the most memory \
                      left)\n  w0 on h1 (new: the most memory left)"
        ),
        "{err}"
    );
    // The network spans the hosts: each has it and a tunnel, and only h1 (the first host that
    // uses it) runs its DHCP; the others have the bridge alone.
    for host in ["h1", "h2", "h3"] {
        for entry in ["network/grouped", "tunnel/grouped"] {
            assert!(
                diff.stdout.contains(&format!("+ {entry} on {host}")),
                "{}",
                diff.stdout
            );
        }
    }
    assert!(
        err.contains("Network grouped spans hosts: DHCP and DNS on h1, joined by VXLAN"),
        "{err}"
    );
    let json = group.lab(&["diff", "--format", "json"], 1);
    let diff_json: serde_json::Value = serde_json::from_str(&json.stdout).expect("diff JSON");
    let changes = diff_json["changes"].as_array().expect("changes");
    // An attribute of the change to `address` on `host`, as it would be.
    let after = |address: &str, host: &str, attribute: &str| -> serde_json::Value {
        changes
            .iter()
            .find(|c| c["address"] == address && c["provider"] == host)
            .and_then(|c| c["attributes"].as_array())
            .and_then(|a| a.iter().find(|a| a["name"] == attribute))
            .map(|a| a["after"].clone())
            .unwrap_or_else(|| panic!("{address} on {host}: no {attribute} in {diff_json}"))
    };
    assert_eq!(after("network/grouped", "h1", "mode"), "nat");
    assert_eq!(after("network/grouped", "h2", "mode"), "bridge");
    assert_eq!(
        after("network/grouped", "h3", "cidr"),
        serde_json::Value::Null
    );
    assert_eq!(after("tunnel/grouped", "h1", "makes_bridge"), false);
    assert_eq!(after("tunnel/grouped", "h2", "makes_bridge"), true);
    assert_eq!(
        after("tunnel/grouped", "h1", "vni"),
        after("tunnel/grouped", "h3", "vni")
    );
    assert_eq!(
        after("tunnel/grouped", "h2", "peers")
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    let apply = group.lab(&["apply", "--yes"], 1);
    assert!(apply.ok(), "{}", apply.text());
    let placed = hosts(&apply.stdout);
    assert_eq!(
        placed,
        [("m0", "h1"), ("m1", "h2"), ("m2", "h3"), ("w0", "h1")]
            .map(|(v, h)| (v.to_string(), h.to_string())),
        "{}",
        apply.stdout
    );

    // Each VM's mark records the group that placed it.
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/groups/lab.yml");
    let info = group.plan(&["info"]).arg_path(&lab).args(&["m1"]).run();
    assert!(info.ok(), "{}", info.text());
    assert!(
        info.stdout.contains("provider: h2\ngroup: lab\n"),
        "{}",
        info.stdout
    );

    // Nothing moves; a new worker goes where the most memory is left (h1 holds 2.5 of 3 GiB).
    let again = group.lab(&["diff"], 2);
    assert!(again.ok(), "{}", again.text());
    assert!(
        again.stderr.contains("  m0 on h1 (holds it)"),
        "{}",
        again.stderr
    );
    assert!(
        again.stderr.contains("  w0 on h1 (holds it)"),
        "{}",
        again.stderr
    );
    assert!(
        again
            .stderr
            .contains("  w1 on h2 (new: the most memory left)"),
        "{}",
        again.stderr
    );
    // The review says why there too (the Markdown report's "Why" column).
    assert!(
        again
            .stdout
            .contains("+ vm/w1 on h2: placed by group `lab`: the most memory left"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("vm/m0"), "{}", again.stdout);

    // Five workers of 1.5 GiB do not fit in what is left: refused, saying what is short where,
    // and nothing changes.
    let refused = group.lab(&["apply", "--yes"], 5);
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    assert!(
        refused.stderr.contains(
            "group `lab`: VM `w3` (1536 MiB memory, 2 CPUs) fits on no host of the group: h1: \
             512 MiB of 3072 MiB memory free; h2: 512 MiB of 3072 MiB memory free; h3: 512 MiB \
             of 3072 MiB memory free"
        ),
        "{}",
        refused.stderr
    );
    assert!(
        refused.stderr.contains("Nothing was changed."),
        "{}",
        refused.stderr
    );
    let status = group.lab(&["diff"], 1);
    assert!(status.stdout.contains("No changes."), "{}", status.text());

    // What each host offers and holds, and its group.
    let list = group.plan(&["provider", "list"]).run();
    assert!(list.ok(), "{}", list.text());
    assert!(
        list.stdout.contains(
            "h1: 4 of 16 CPUs, 2.5 of 3.0 GiB memory allocated; pools: default 100.0 GiB \
             free; group lab"
        ),
        "{}",
        list.stdout
    );

    let destroy = group.lab(&["destroy", "--yes"], 1);
    assert!(destroy.ok(), "{}", destroy.text());
    let list = group.plan(&["provider", "list"]).run();
    for host in ["h1", "h2", "h3"] {
        assert!(
            list.stdout.contains(&format!(
                "{host}: 0 of 16 CPUs, 0.0 of 3.0 GiB memory allocated"
            )),
            "{}",
            list.stdout
        );
    }
}

#[test]
fn a_host_that_does_not_answer_stops_an_apply_until_it_leaves_the_group() {
    let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = refused.local_addr().expect("addr").port();
    drop(refused);
    let gone =
        format!("  - {{name: h4, type: libvirt, uri: 'qemu+tcp://127.0.0.1:{port}/system'}}\n");
    let group = group(&gone);
    let text = std::fs::read_to_string(&group.file).expect("file");
    std::fs::write(
        &group.file,
        text.replace("[h1, h2, h3]", "[h1, h2, h3, h4]"),
    )
    .expect("file");
    let diff = group.lab(&["apply", "--yes"], 1);
    assert_eq!(diff.code(), Some(1), "{}", diff.text());
    assert!(
        diff.stderr
            .contains("group `lab`: host `h4` does not answer")
            && diff
                .stderr
                .contains("it may hold VMs of the plan (set `enabled: false` on it"),
        "{}",
        diff.stderr
    );
    let text = std::fs::read_to_string(&group.file).expect("file");
    std::fs::write(
        &group.file,
        text.replace("/system'}", "/system', enabled: false}"),
    )
    .expect("file");
    let apply = group.lab(&["apply", "--yes"], 1);
    assert!(apply.ok(), "{}", apply.text());
    assert!(!apply.stdout.contains(" h4 "), "{}", apply.stdout);
}

#[test]
fn a_vm_pinned_to_a_host_goes_there() {
    let group = group("");
    let plan = group.tmp.path().join("pinned.yml");
    std::fs::write(
        &plan,
        "solo:\n  memory: 512\n  client: h3\nfree:\n  memory: 512\n",
    )
    .expect("plan");
    let apply = group.plan(&["apply", "--yes"]).arg_path(&plan).run();
    assert!(apply.ok(), "{}", apply.text());
    assert_eq!(
        hosts(&apply.stdout),
        [("free", "h1"), ("solo", "h3")].map(|(v, h)| (v.to_string(), h.to_string())),
        "{}",
        apply.stdout
    );
    // Removed from the plan, it goes from its host, though nothing else of the plan is there.
    std::fs::write(&plan, "free:\n  memory: 512\n").expect("plan");
    let diff = group.plan(&["diff"]).arg_path(&plan).run();
    assert!(diff.ok(), "{}", diff.text());
    assert!(diff.stdout.contains("- vm/solo on h3"), "{}", diff.stdout);
    let apply = group.plan(&["apply", "--yes"]).arg_path(&plan).run();
    assert!(apply.ok(), "{}", apply.text());
    let again = group
        .plan(&["diff", "--detailed-exitcode"])
        .arg_path(&plan)
        .run();
    assert_eq!(again.code(), Some(0), "{}", again.text());
}

#[test]
fn a_network_spans_the_hosts_of_its_vms_with_one_dhcp_and_its_reservations_and_records() {
    let group = group("");
    let plan = group.tmp.path().join("span.yml");
    std::fs::write(
        &plan,
        "spannet:\n  type: network\n  cidr: 192.168.151.0/24\n\
         a:\n  memory: 512\n  client: h1\n  nets: [spannet]\n\
         b:\n  memory: 512\n  client: h2\n  reserveip: true\n  reservedns: true\n  nets:\n\
         \x20   - {name: spannet, ip: 192.168.151.20, prefix: 24, gateway: 192.168.151.1}\n\
         alone:\n  memory: 512\n  client: h3\n",
    )
    .expect("plan");
    let diff = group
        .plan(&["diff", "--format", "json"])
        .arg_path(&plan)
        .run();
    assert!(diff.ok(), "{}", diff.text());
    assert!(
        diff.stderr
            .contains("Network spannet spans hosts: DHCP and DNS on h1, joined by VXLAN"),
        "{}",
        diff.stderr
    );
    let json: serde_json::Value = serde_json::from_str(&diff.stdout).expect("diff JSON");
    let after = |address: &str, host: &str, attribute: &str| -> Option<serde_json::Value> {
        json["changes"]
            .as_array()?
            .iter()
            .find(|c| c["address"] == address && c["provider"] == host)?["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["name"] == attribute)
            .map(|a| a["after"].clone())
    };
    // The reservation and the record of the VM on h2 are served by h1, the network's home.
    let hosts = after("network/spannet", "h1", "hosts").expect("h1's reservations");
    assert_eq!(hosts[0]["ip"], "192.168.151.20", "{hosts}");
    assert_eq!(hosts[0]["name"], "b", "{hosts}");
    let records = after("network/spannet", "h1", "dns_hosts").expect("h1's records");
    assert_eq!(records[0]["ip"], "192.168.151.20", "{records}");
    assert_eq!(
        after("network/spannet", "h2", "mode"),
        Some("bridge".into())
    );
    assert_eq!(
        after("network/spannet", "h2", "hosts"),
        Some(serde_json::json!([]))
    );
    // Only the hosts whose VMs use it: h3 has neither the network nor a tunnel.
    assert_eq!(after("network/spannet", "h3", "name"), None);
    assert_eq!(after("tunnel/spannet", "h3", "name"), None);
    assert_eq!(
        after("tunnel/spannet", "h1", "peers").and_then(|p| p.as_array().map(Vec::len)),
        Some(1)
    );

    let apply = group.plan(&["apply", "--yes"]).arg_path(&plan).run();
    assert!(apply.ok(), "{}", apply.text());
    let again = group
        .plan(&["diff", "--detailed-exitcode"])
        .arg_path(&plan)
        .run();
    assert_eq!(again.code(), Some(0), "{}", again.text());
    // The lab's picture: a frame a host, the network in each of its hosts with its tunnel under
    // it, and each VM on its own host's network.
    let drawn = group
        .plan(&["graph", "--view", "topology", "--format", "json"])
        .arg_path(&plan)
        .run();
    assert!(drawn.ok(), "{}", drawn.text());
    let picture: serde_json::Value = serde_json::from_str(&drawn.stdout).expect("JSON");
    assert_eq!(picture["places"], serde_json::json!(["h1", "h2", "h3"]));
    let links = picture["links"].as_array().expect("links");
    for (from, to) in [
        ("h1:network/spannet", "h1:tunnel/spannet"),
        ("h2:network/spannet", "h2:tunnel/spannet"),
        ("h1:network/spannet", "h1:vm/a"),
        ("h2:network/spannet", "h2:vm/b"),
    ] {
        assert!(
            links.contains(&serde_json::json!({"from": from, "to": to})),
            "no {from} -> {to}: {links:?}"
        );
    }
    let destroy = group.plan(&["destroy", "--yes"]).arg_path(&plan).run();
    assert!(destroy.ok(), "{}", destroy.text());
    for host in ["h1", "h2"] {
        assert!(
            destroy
                .stdout
                .contains(&format!("- tunnel/spannet on {host}")),
            "{}",
            destroy.stdout
        );
    }
}

#[test]
fn a_drain_that_cannot_move_everything_is_refused_before_anything_changes() {
    let group = group("");
    let apply = group.lab(&["apply", "--yes"], 1);
    assert!(apply.ok(), "{}", apply.text());
    let unchanged = |what: &str| {
        let diff = group.lab(&["diff", "--detailed-exitcode"], 1);
        assert_eq!(diff.code(), Some(0), "after {what}: {}", diff.text());
    };
    // m1's anti-affinity group holds the two other hosts.
    let full = group.lab(&["drain", "h2", "--yes"], 1);
    assert_eq!(full.code(), Some(1), "{}", full.text());
    assert!(
        full.stderr.contains(
            "VM `m1` (1024 MiB memory, 2 CPUs, anti-affinity group `masters`) fits on no host \
             of the group"
        ) && full.stderr.contains("h2: it is being drained"),
        "{}",
        full.stderr
    );
    unchanged("a drain with nowhere to go");
    let unknown = group.lab(&["drain", "h9", "--yes"], 1);
    assert_eq!(unknown.code(), Some(1), "{}", unknown.text());
    assert!(
        unknown
            .stderr
            .contains("`h9` is no host of a group plan `lab` goes to"),
        "{}",
        unknown.stderr
    );
    let plan = group.tmp.path().join("pinned.yml");
    std::fs::write(
        &plan,
        "solo:\n  memory: 512\n  client: h3\nfree:\n  memory: 512\n",
    )
    .expect("plan");
    let apply = group.plan(&["apply", "--yes"]).arg_path(&plan).run();
    assert!(apply.ok(), "{}", apply.text());
    let pinned = group.plan(&["drain", "h3", "--yes"]).arg_path(&plan).run();
    assert_eq!(pinned.code(), Some(1), "{}", pinned.text());
    assert!(
        pinned
            .stderr
            .contains("solo pinned to `h3` (`client: h3`): a drain moves the VMs a group placed"),
        "{}",
        pinned.stderr
    );
    // `free` (on h2) could go to h3, but a sandbox has no migration: refused before any room
    // is made for it there.
    let sandbox = group.plan(&["drain", "h2", "--yes"]).arg_path(&plan).run();
    assert_eq!(sandbox.code(), Some(1), "{}", sandbox.text());
    assert!(
        sandbox.stderr.contains(
            "h2 cannot be drained: libvirt's test driver (the sandbox) moves no VM between hosts"
        ),
        "{}",
        sandbox.stderr
    );
    let diff = group
        .plan(&["diff", "--detailed-exitcode"])
        .arg_path(&plan)
        .run();
    assert_eq!(diff.code(), Some(0), "{}", diff.text());
    unchanged("a drain of a sandbox");
}

/// The host each VM is on, from the apply's VM table, sorted by VM.
fn hosts(table: &str) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = table
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let vm = words.next()?;
            let host = words.next()?;
            (host.len() == 2 && host.starts_with('h')).then(|| (vm.to_string(), host.to_string()))
        })
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_spread_lab_whose_file_is_gone_is_destroyed_on_every_host() {
    let group = group("");
    let plan = group.tmp.path().join("spread.yml");
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/groups/lab.yml");
    std::fs::copy(&lab, &plan).expect("plan");
    let apply = group.plan(&["apply", "--yes"]).arg_path(&plan).run();
    assert!(apply.ok(), "{}", apply.text());
    std::fs::remove_file(&plan).expect("gone");
    let destroy = group.plan(&["destroy", "--yes"]).arg_path(&plan).run();
    assert!(destroy.ok(), "{}", destroy.text());
    assert!(
        destroy
            .stderr
            // 15 resources and the network's tunnel on each of the three hosts, found by the
            // marks alone.
            .contains("Destroy: 18 done, 0 failed, 0 skipped."),
        "{}",
        destroy.stderr
    );
    // Its hosts are the group's: nothing to warn of there.
    assert!(
        !destroy.stderr.contains("no longer names it"),
        "{}",
        destroy.stderr
    );
    let list = group.plan(&["list"]).run();
    assert!(list.stdout.contains("No plans"), "{}", list.text());
}

#[test]
fn an_unhealthy_host_keeps_its_vms_and_gets_no_new_one() {
    let group = group("");
    let apply = group.lab(&["apply", "--yes"], 1);
    assert!(apply.ok(), "{}", apply.text());
    // h2 is unhealthy now, as `plan provider list` shows it: its pool is not there.
    let text = std::fs::read_to_string(&group.file).expect("file");
    std::fs::write(&group.file, text.replace("/h2}", "/h2, pool: nosuchpool}")).expect("file");
    let diff = group.lab(&["diff"], 3);
    assert_eq!(diff.code(), Some(1), "{}", diff.text());
    let err = &diff.stderr;
    // w1 goes to h3; w2 fits nowhere, and h2 says why it takes nothing.
    assert!(
        err.contains(
            "VM `w2` (1536 MiB memory, 2 CPUs) fits on no host of the group: h1: 512 MiB of \
             3072 MiB memory free; h2: unhealthy: pool/nosuchpool does not exist; h3: 512 MiB"
        ),
        "{err}"
    );
    let diff = group.lab(&["diff"], 2);
    assert!(diff.ok(), "{}", diff.text());
    assert!(
        diff.stderr.contains("  m1 on h2 (holds it)"),
        "{}",
        diff.stderr
    );
    assert!(
        diff.stderr
            .contains("  w1 on h3 (new: the most memory left)"),
        "{}",
        diff.stderr
    );
}
