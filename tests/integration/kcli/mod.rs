//! kcli plans as kcli users write them (`tests/fixtures/kcli/`): keys of their own that scripts
//! and files use, templated scripts, default parameter files and base plans, and the user's
//! kcli configuration and profiles.

use siteplan::cloudinit::read_seed_file;
use siteplan::provider::capability::VolumeContent;

use crate::harness::{root, Plan};

/// Writes `text` to `name` in `dir`.
fn write(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// Diagnostics as one line of words: miette wraps them at the terminal's width.
fn flat(text: &str) -> String {
    text.split_whitespace()
        .filter(|w| *w != "│")
        .collect::<Vec<_>>()
        .join(" ")
}

const SCRIPTS: &str = "tests/fixtures/kcli/scripts/kcli_plan.yml";

#[test]
fn keys_of_its_own_are_warnings_and_reach_the_scripts_in_the_seed() {
    let validated = Plan::new(&["validate", SCRIPTS]).run();
    assert!(validated.ok(), "{}", validated.stderr);
    let warning = "`ctlplane_ip` is not a siteplan or kcli key: vm `lab-worker-0` keeps it only \
                   as a template variable";
    let said = flat(&validated.stderr);
    assert!(said.contains(warning), "{said}");
    assert!(said.contains(
        "`vips` is a kcli key that siteplan does not implement yet; NIC ignores it except as a \
         template variable"
    ));
    let strict = Plan::new(&["validate", "--strict", SCRIPTS]).run();
    assert_eq!(strict.code(), Some(1), "--strict keeps them errors");

    let sandbox = tempfile::tempdir().expect("tempdir");
    let applied = Plan::new(&["apply", SCRIPTS, "--provider", "sandbox", "--yes"])
        .sandbox(sandbox.path())
        .run();
    assert!(applied.ok(), "{}", applied.stderr);

    let provider = crate::harness::reopen_sandbox(sandbox.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let seed = runtime
        .block_on(provider.read_volume("default", "lab-worker-1-cidata.img"))
        .expect("the seed");
    let user_data = read_seed_file(&seed, "user-data").expect("user-data");
    let script = "    #!/bin/sh\n    echo \"joining lab-worker-1 as worker to 10.30.0.10 in lab.local\"\n    echo \"keepalived vip 10.30.0.100\"\n    echo \"plan scripts on kvm\"\n";
    assert!(user_data.contains(script), "{user_data}");
    assert!(
        user_data.contains("    Welcome to lab-worker-1\n"),
        "a file's own key"
    );
    assert!(
        user_data.contains("    echo \"{{ left as it is }}\"\n"),
        "render: false keeps a file as it is"
    );
}

#[test]
fn a_script_template_error_points_into_the_script() {
    let out = Plan::new(&["validate", "tests/fixtures/kcli/broken/kcli_plan.yml"]).run();
    assert_eq!(out.code(), Some(1));
    insta::assert_snapshot!("script_template_error", out.stderr);
}

#[test]
fn default_parameter_files_and_a_base_plan_give_parameters_in_kclis_order() {
    let out = Plan::new(&["render", "tests/fixtures/kcli/defaults/lab.yml"]).run();
    assert!(out.ok(), "{}", out.stderr);
    // lab_default.yml (3072) over kcli_default.yml (2048); the plan's own numcpus (4) over the
    // base plan's (8); disksize only from the base plan.
    assert!(
        out.stdout
            .contains("web:\n  memory: 3072\n  numcpus: 4\n  disksize: 20\n  nets:\n  - default\n"),
        "{}",
        out.stdout
    );
    let verbose = Plan::new(&["validate", "-v", "tests/fixtures/kcli/defaults/lab.yml"]).run();
    assert!(verbose.ok());
    for file in ["lab_default.yml", "kcli_default.yml", "base.yml"] {
        assert!(
            verbose
                .stdout
                .contains(&format!("read tests/fixtures/kcli/defaults/{file}\n")),
            "{}",
            verbose.stdout
        );
    }
    assert!(verbose.stdout.contains("kcli configuration: off"));

    // Named `other` (--name), the plan reads other_default.yml too, over its base plan.
    let sandbox = tempfile::tempdir().expect("tempdir");
    let named = Plan::new(&[
        "diff",
        "tests/fixtures/kcli/defaults/lab.yml",
        "--name",
        "other",
        "--provider",
        "sandbox",
        "--format",
        "json",
    ])
    .sandbox(sandbox.path())
    .run();
    assert!(named.ok(), "{}", named.stderr);
    let flat_json: String = named.stdout.split_whitespace().collect();
    assert!(
        flat_json.contains(r#"{"name":"capacity_bytes","after":32212254720}"#),
        "30 GiB from other_default.yml: {}",
        named.stdout
    );
}

#[test]
fn profiles_and_defaults_come_from_the_kcli_configuration_unless_it_is_off() {
    let home = root().join("tests/fixtures/kcli/home");
    let file = "tests/fixtures/kcli/small/kcli_plan.yml";
    let sandbox = tempfile::tempdir().expect("tempdir");

    let with = Plan::new(&["diff", file, "--provider", "sandbox", "--format", "json"])
        .kcli_home(&home)
        .sandbox(sandbox.path())
        .run();
    assert!(with.ok(), "{}", with.stderr);
    let diff: serde_json::Value = serde_json::from_str(&with.stdout).expect("json");
    let attribute = |address: &str, name: &str| {
        diff["changes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["address"] == address)
            .flat_map(|c| c["attributes"].as_array().cloned().unwrap_or_default())
            .find(|a| a["name"] == name)
            .map(|a| a["after"].clone())
            .unwrap_or_default()
    };
    // The profile's memory and numcpus; the configuration's numcpus where nothing else says.
    assert_eq!(attribute("vm/db", "memory_mib"), 768, "{diff}");
    assert_eq!(attribute("vm/db", "vcpus"), 1);
    assert_eq!(attribute("vm/cache", "memory_mib"), 512);
    assert_eq!(attribute("vm/cache", "vcpus"), 3);
    // An image's name where a profile is expected: the disk comes from that image.
    assert!(
        attribute("volume/default/cache_0.img", "backing")
            .to_string()
            .contains("debian12.qcow2"),
        "{diff}"
    );
    assert!(
        with.stdout.contains("owned by platform with 1 vcpu"),
        "the profile's own key reaches the script"
    );
    let verbose = Plan::new(&["validate", "-v", file]).kcli_home(&home).run();
    assert!(
        verbose.stdout.contains("/.kcli/profiles.yml\n"),
        "{}",
        verbose.stdout
    );

    let without = Plan::new(&["validate", file]).run();
    assert_eq!(without.code(), Some(1));
    assert!(
        without
            .stderr
            .contains("vm `db` uses profile `small`, which this plan does not declare"),
        "{}",
        without.stderr
    );
    assert!(
        without.stderr.contains("--no-kcli-config"),
        "{}",
        without.stderr
    );
    let flag = Plan::new(&["validate", "--no-kcli-config", file])
        .kcli_home(&home)
        .run();
    assert_eq!(flag.code(), Some(1), "the flag turns it off too");
}

#[test]
fn small_kcli_habits_are_taken() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("habits.yml");
    std::fs::write(
        &file,
        "parameters:\n  owner:\n  nic: e1000-82545em\nvm1:\n  template: old.qcow2\n  memory: {{\u{a0}512\u{a0}}}\n  nets:\n  - name: default\n    type: {{ nic }}\n  cmds:\n  - echo {{ owner }}\n",
    )
    .expect("write");
    let out = Plan::new(&["validate", &file.display().to_string()]).run();
    assert!(out.ok(), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "parameter `owner` has no value: where a template uses it, it writes `None`, as kcli does"
        ),
        "{}",
        out.stderr
    );
    assert!(
        flat(&out.stderr).contains("`template` is what older kcli plans called `image`"),
        "{}",
        out.stderr
    );
    let rendered = Plan::new(&["render", &file.display().to_string()]).run();
    assert!(
        rendered.stdout.contains("- echo None\n"),
        "{}",
        rendered.stdout
    );
}

#[test]
fn a_plan_of_plans_is_one_graph_and_the_included_plan_takes_the_parameters_given_to_it() {
    let file = "tests/fixtures/kcli/nested/kcli_plan.yml";
    let verbose = Plan::new(&["validate", "-v", file]).run();
    assert!(verbose.ok(), "{}", verbose.stderr);
    assert!(verbose
        .stdout
        .contains("read tests/fixtures/kcli/nested/storage/kcli_plan.yml\n"));
    assert!(
        verbose.stdout.contains("is valid: 1 network, 2 vms"),
        "{}",
        verbose.stdout
    );

    let sandbox = tempfile::tempdir().expect("tempdir");
    let applied = Plan::new(&["apply", file, "--provider", "sandbox", "--yes"])
        .sandbox(sandbox.path())
        .run();
    assert!(applied.ok(), "{}", applied.stderr);
    let provider = crate::harness::reopen_sandbox(sandbox.path());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let seed = runtime
        .block_on(provider.read_volume("default", "nest-nfs-cidata.img"))
        .expect("the included plan's VM, named with the including plan's parameter");
    let user_data = read_seed_file(&seed, "user-data").expect("user-data");
    assert!(
        user_data.contains("echo \"exports of nest on nest-nfs: 20G\""),
        "the script beside the included plan, with its own parameter and the inherited one: {user_data}"
    );
    drop(provider);
    let status = Plan::new(&["status", file, "--provider", "sandbox"])
        .sandbox(sandbox.path())
        .run();
    assert_eq!(status.code(), Some(0), "one plan: {}", status.stdout);
}

#[test]
fn a_mistake_in_an_included_plan_points_into_that_plan() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("net")).expect("mkdir");
    write(dir.path(), "lab.yml", "net:\n  type: plan\n  file: net/plan.yml\nweb:\n  nets: [labnet]\nmissing:\n  type: plan\n  url: ftp://example.org/plan.yml\n");
    write(
        dir.path(),
        "net/plan.yml",
        "labnet:\n  type: network\n  cidr: 10.0.0.0/33\n",
    );
    let out = Plan::new(&["validate", "lab.yml"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code(), Some(1));
    let said = flat(&out.stderr);
    assert!(said.contains("╭─[net/plan.yml:3:9]"), "{said}");
    assert!(
        said.contains(
            "plan `missing` cannot be fetched: `ftp://example.org/plan.yml` is not an http(s) URL"
        ),
        "{said}"
    );

    // A cycle no single file shows.
    write(
        dir.path(),
        "cycle.yml",
        "net:\n  type: plan\n  file: net/cycle.yml\na:\n  memory: 256\n  depends_on: [b]\n",
    );
    write(
        dir.path(),
        "net/cycle.yml",
        "b:\n  memory: 256\n  depends_on: [a]\n",
    );
    let out = Plan::new(&["validate", "cycle.yml"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code(), Some(1));
    assert!(
        flat(&out.stderr).contains("dependency cycle: vm/a → vm/b → vm/a (across included plans)"),
        "{}",
        out.stderr
    );
}

/// A dns entry's life: made with its network, read back from the provider unchanged, changed
/// live when an alias changes, and refused in a network the plan does not make.
fn dns_life(provider: &str, sandbox: &std::path::Path, dir: &std::path::Path) {
    let file = dir.join("spdns.yml");
    std::fs::write(
        &file,
        "parameters:\n  alias: registry\nspdnsnet:\n  type: network\n  cidr: 10.97.3.0/24\n  domain: spdns.local\napi:\n  type: dns\n  net: spdnsnet\n  ip: 10.97.3.10\n  domain: spdns.local\n  alias:\n  - '{{ alias }}.spdns.local'\n",
    )
    .expect("write");
    let file = file.display().to_string();
    let run = |args: &[&str], params: &[&str]| {
        Plan::new(args)
            .args(&[file.as_str(), "--provider", provider])
            .params(params)
            .sandbox(sandbox)
            .run()
    };
    // What an earlier run left, from its own temporary file, is this plan's.
    let _ = run(&["destroy", "--yes", "--plan-moved"], &[]);
    let applied = run(&["apply", "--yes"], &[]);
    assert!(applied.ok(), "{}", applied.stderr);
    let unchanged = run(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(
        unchanged.code(),
        Some(0),
        "read back as made: {}",
        unchanged.stdout
    );

    let changed = run(&["diff", "--format", "json"], &["alias=mirror"]);
    let diff: serde_json::Value = serde_json::from_str(&changed.stdout).expect("json");
    let change = &diff["changes"][0];
    assert_eq!(change["address"], "network/spdnsnet", "{diff}");
    assert_eq!(change["impact"], "live", "{diff}");
    assert!(
        change.to_string().contains("registry.spdns.local")
            && change.to_string().contains("mirror.spdns.local"),
        "{change}"
    );
    let applied = run(&["apply", "--yes"], &["alias=mirror"]);
    assert!(applied.ok(), "{}", applied.stderr);
    // On a real daemon, the running network answers for the new name at once.
    #[cfg(feature = "libvirt")]
    if provider != "sandbox" {
        let conn = virt::connect::Connect::open(Some(provider)).expect("connect");
        let live = conn
            .lookup_network_by_name("spdnsnet")
            .and_then(|n| n.xml_desc(0))
            .expect("live definition");
        assert!(
            live.contains("<hostname>mirror.spdns.local</hostname>"),
            "{live}"
        );
        assert!(
            !live.contains("<hostname>registry.spdns.local</hostname>"),
            "{live}"
        );
    }
    let unchanged = run(&["diff", "--detailed-exitcode"], &["alias=mirror"]);
    assert_eq!(unchanged.code(), Some(0), "{}", unchanged.stdout);
    let destroyed = run(&["destroy", "--yes"], &["alias=mirror"]);
    assert!(destroyed.ok(), "{}", destroyed.stderr);
}

/// A dns entry in a network the plan does not make (`theirs`): its record is added and removed
/// there, each change live, and nothing else of the network changes; a name the network
/// answers already, for someone else, is refused.
fn dns_in_their_network(
    provider: &str,
    sandbox: &std::path::Path,
    dir: &std::path::Path,
    theirs: &str,
) {
    let file = dir.join("spdnstheirs.yml");
    std::fs::write(
        &file,
        format!("parameters:\n  alias: one\nspdns-api:\n  type: dns\n  net: {theirs}\n  ip: 192.168.122.35\n  alias: ['{{{{ alias }}}}.spdns.example']\n"),
    )
    .expect("write");
    let file = file.display().to_string();
    let run = |args: &[&str], params: &[&str]| {
        Plan::new(args)
            .args(&[file.as_str(), "--provider", provider])
            .params(params)
            .sandbox(sandbox)
            .run()
    };
    let _ = run(&["destroy", "--yes", "--plan-moved"], &[]);
    let created = run(&["diff", "--format", "json"], &[]);
    assert!(
        created
            .stdout
            .contains(&format!("\"address\": \"dnsrecord/{theirs}/spdns-api\"")),
        "{}",
        created.stdout
    );
    let applied = run(&["apply", "--yes"], &[]);
    assert!(applied.ok(), "{}", applied.stderr);
    let unchanged = run(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(
        unchanged.code(),
        Some(0),
        "read back as made: {}",
        unchanged.stdout
    );
    let changed = run(&["diff"], &["alias=two"]);
    assert!(
        changed
            .stdout
            .contains(&format!("~ dnsrecord/{theirs}/spdns-api (live)")),
        "{}",
        changed.stdout
    );
    assert!(run(&["apply", "--yes"], &["alias=two"]).ok());
    let unchanged = run(&["diff", "--detailed-exitcode"], &["alias=two"]);
    assert_eq!(unchanged.code(), Some(0), "{}", unchanged.stdout);
    // The plan file gone: destroy finds the record by its mark in the network.
    std::fs::write(dir.join("spdnstheirs.yml"), "").expect("empty");
    let destroyed = run(&["destroy", "--yes"], &[]);
    assert!(destroyed.ok(), "{}", destroyed.stderr);
    assert!(
        destroyed.stdout.contains("1 done") || destroyed.stderr.contains("1 done"),
        "{}{}",
        destroyed.stdout,
        destroyed.stderr
    );
}

#[test]
fn dns_records_in_the_plans_network_and_in_theirs_on_the_sandbox() {
    let dir = tempfile::tempdir().expect("tempdir");
    dns_life("sandbox", &dir.path().join("sandbox"), dir.path());
    dns_in_their_network(
        "sandbox",
        &dir.path().join("sandbox"),
        dir.path(),
        "default",
    );

    // A dns entry and a VM's reservedns, each a record in the network.
    let out = Plan::new(&[
        "diff",
        "tests/fixtures/kcli/dns/kcli_plan.yml",
        "--provider",
        "sandbox",
        "--format",
        "json",
    ])
    .sandbox(&dir.path().join("fresh"))
    .run();
    assert!(out.ok(), "{}", out.stderr);
    let records = r#"[{"ip":"10.42.0.10","names":["api","api.lab.local","registry.lab.local"]},{"ip":"10.42.0.11","names":["web","web.lab.local"]}]"#;
    assert!(
        out.stdout
            .split_whitespace()
            .collect::<String>()
            .contains(records),
        "{}",
        out.stdout
    );
}

#[test]
#[cfg(feature = "libvirt")]
fn dns_records_in_the_plans_network_and_in_theirs_on_a_real_libvirtd() {
    let Some((_held, uri)) = crate::harness::libvirtd("dns_records_on_a_real_libvirtd") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    dns_life(&uri, &dir.path().join("unused"), dir.path());

    // A network made by hand, answering one name already.
    let conn = virt::connect::Connect::open(Some(&uri)).expect("connect");
    let theirs = "<network><name>spdns-theirs</name><bridge name='spdnstheirs0'/>\
        <dns><host ip='10.97.4.40'><hostname>theirs-host</hostname></host></dns>\
        <ip address='10.97.4.1' prefix='24'/></network>";
    if let Ok(old) = conn.lookup_network_by_name("spdns-theirs") {
        let _ = old.destroy();
        let _ = old.undefine();
    }
    let net = conn.define_network_xml(theirs).expect("their network");
    net.create().expect("start it");
    let before = net
        .xml_desc(virt::sys::VIR_NETWORK_XML_INACTIVE)
        .expect("xml");
    dns_in_their_network(&uri, &dir.path().join("unused"), dir.path(), "spdns-theirs");
    let after = net
        .xml_desc(virt::sys::VIR_NETWORK_XML_INACTIVE)
        .expect("xml");
    assert_eq!(after, before, "the network is as its owner made it");

    // Their name: refused, and their record left as it is.
    let file = dir.path().join("clash.yml");
    std::fs::write(
        &file,
        "theirs-host:\n  type: dns\n  net: spdns-theirs\n  ip: 10.97.4.41\n",
    )
    .expect("write");
    let clash = Plan::new(&[
        "apply",
        &file.display().to_string(),
        "--provider",
        &uri,
        "--yes",
    ])
    .run();
    assert!(!clash.ok(), "{}", clash.stdout);
    assert!(
        clash.text().contains("already answers this name"),
        "{}",
        clash.text()
    );
    let after = net
        .xml_desc(virt::sys::VIR_NETWORK_XML_INACTIVE)
        .expect("xml");
    assert!(after.contains("<hostname>theirs-host</hostname>"));
    let _ = Plan::new(&[
        "destroy",
        &file.display().to_string(),
        "--provider",
        &uri,
        "--yes",
    ])
    .run();
    let _ = net.destroy();
    let _ = net.undefine();
}

#[test]
fn a_kcli_client_names_a_provider_and_one_siteplan_cannot_drive_is_refused_by_name() {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(home.path().join(".kcli")).expect("mkdir");
    std::fs::write(
        home.path().join(".kcli/config.yml"),
        "default:\n  client: local\ncloud:\n  type: gcp\nlab:\n  type: kvm\n  host: 127.0.0.1\n",
    )
    .expect("config");
    // The clients siteplan can drive are providers too.
    let state = tempfile::tempdir().expect("tempdir");
    let listed = Plan::new(&["provider", "list", "-o", "json"])
        .env("XDG_STATE_HOME", state.path())
        .kcli_home(home.path())
        .run();
    assert!(listed.ok(), "{}", listed.text());
    let names: Vec<String> = serde_json::from_str::<serde_json::Value>(&listed.stdout)
        .expect("json")["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str().map(str::to_string))
        .collect();
    assert!(names.contains(&"lab".to_string()), "{names:?}");
    assert!(!names.contains(&"cloud".to_string()), "{names:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("lab.yml"),
        "a:\n  memory: 256\n  client: cloud\n",
    )
    .expect("plan");
    let out = Plan::new(&["diff", "lab.yml"])
        .current_dir(dir.path())
        .kcli_home(home.path())
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    assert!(
        out.stderr.contains(
            "`cloud` in ~/.kcli/config.yml is a kcli client of type `gcp`, which siteplan cannot drive"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn what_kcli_takes_without_a_word_is_taken_with_a_warning() {
    let plan = "tests/fixtures/kcli/loose/kcli_plan.yml";
    let validated = Plan::new(&["validate", plan]).run();
    assert!(validated.ok(), "{}", validated.stderr);
    let said = flat(&validated.stderr);
    for warning in [
        "vm `web1` uses profile `centos9stream`, which this plan does not declare: it is taken \
         as the name of an image in the VM's pool, as kcli does",
        "this NIC's network is empty (`None`): it joins network `default`",
    ] {
        assert!(said.contains(warning), "{said}");
    }
    let strict = Plan::new(&["validate", "--strict", plan]).run();
    assert_eq!(strict.code(), Some(1), "--strict keeps them errors");

    // Both NICs are on `default` (one named nothing, one None); the image is the profile's name.
    let graph = Plan::new(&["graph", plan]).run();
    assert!(graph.ok(), "{}", graph.stderr);
    assert!(graph.stdout.contains(
        "vm/web1\n  needs image/centos9stream (image)\n  needs network/default (nets)\n"
    ));
    // Only the provider knows whether the pool holds that image: the diff says it does not.
    let sandbox = tempfile::tempdir().expect("tempdir");
    let diff = Plan::new(&["diff", plan, "--provider", "sandbox"])
        .sandbox(sandbox.path())
        .run();
    assert_eq!(diff.code(), Some(1));
    assert!(
        flat(&diff.stderr).contains(
            "the plan uses volume/default/centos9stream, which it does \
             not declare and which does not exist on the provider"
        ),
        "{}",
        diff.stderr
    );
}

mod fetched;

#[test]
fn security_groups_are_read_and_refused_where_there_are_none() {
    let plan = "tests/fixtures/kcli/groups/kcli_plan.yml";
    let validated = Plan::new(&["validate", "--strict", plan]).run();
    assert!(validated.ok(), "{}", validated.stderr);
    let graph = Plan::new(&["graph", plan]).run();
    assert!(graph.ok(), "{}", graph.stderr);
    assert!(
        graph
            .stdout
            .contains("securitygroup/web\n  needs network/lab (network)\n")
            && graph
                .stdout
                .contains("needs securitygroup/web (securitygroups)"),
        "{}",
        graph.stdout
    );
    // The sandbox has none: refused, naming each entry, before anything is made.
    let sandbox = tempfile::tempdir().expect("tempdir");
    let out = Plan::new(&["apply", "--yes", plan, "--provider", "sandbox"])
        .sandbox(sandbox.path())
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    let said = flat(&out.stderr);
    assert!(
        said.contains("securitygroup/web: provider `sandbox` has no security groups")
            && said.contains(
                "vm/web1: provider `sandbox` has no security groups (`securitygroups: [web]`)"
            )
            && said.contains("Nothing was changed."),
        "{said}"
    );
    let status = Plan::new(&["status", plan, "--provider", "sandbox"])
        .sandbox(sandbox.path())
        .run();
    assert!(!status.stdout.contains("running"), "{}", status.text());

    // A port that is none, pointed at.
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "bad.yml",
        "g:\n  type: securitygroup\n  ports: [22, 70000, {to: 5}]\n",
    );
    let out = Plan::new(&["validate", "bad.yml"])
        .current_dir(dir.path())
        .run();
    assert_eq!(out.code(), Some(1), "{}", out.text());
    let said = flat(&out.stderr);
    assert!(
        said.contains("70000 is not a port") && said.contains("a port range has no `from`"),
        "{said}"
    );
}
