//! The planner on hand-made states: no backend needed.

use super::model::desired::{Desired, DesiredResource, ResourceGuards};
use super::*;
use crate::plan::model::spec::*;
use crate::provider::libvirt::rules::LibvirtRules;
use crate::provider::{LiveResource, Observed, OwnerMark};

fn network(cidr: &str) -> Spec {
    Spec::Network(NetworkSpec {
        name: "labnet".into(),
        mode: ForwardMode::Nat,
        bridge: "labnet".into(),
        cidr: cidr.parse().ok(),
        dhcp: None,
        hosts: Vec::new(),
        dns_hosts: Vec::new(),
        domain: None,
        mtu: None,
        dns: true,
        autostart: true,
    })
}

fn vm(memory: u64) -> Spec {
    vm_named("web1", memory)
}

fn vm_named(name: &str, memory: u64) -> Spec {
    Spec::Vm(VmSpec {
        name: name.into(),
        memory_mib: memory,
        vcpus: 2,
        cpu_model: "host-model".into(),
        virt_type: VirtType::Qemu,
        uefi: false,
        disks: Vec::new(),
        nics: Vec::new(),
        seed: None,
        running: true,
        autostart: false,
        kernel: None,
        initrd: None,
        cmdline: None,
        guest_agent: false,
        seed_sha256: None,
    })
}

fn volume(capacity: u64) -> Spec {
    Spec::Volume(VolumeSpec {
        name: "web1_0.img".into(),
        pool: "default".into(),
        capacity_bytes: Some(capacity),
        format: VolumeFormat::Qcow2,
        thin: true,
        backing: None,
        source: VolumeSource::Blank,
    })
}

fn desired(specs: &[Spec]) -> Desired {
    Desired {
        resources: specs
            .iter()
            .map(|s| DesiredResource {
                spec: s.clone(),
                entry: format!("{}", s.id()),
                depends_on: Vec::new(),
            })
            .collect(),
        external: Vec::new(),
        ..Desired::default()
    }
}

fn owned(specs: &[Spec], plan: &str) -> Observed {
    let mut o = Observed::default();
    for s in specs {
        o.resources.insert(
            s.id(),
            LiveResource {
                spec: s.clone(),
                owner: Some(OwnerMark {
                    plan: plan.into(),
                    spec: s.clone(),
                    prevent_destroy: false,
                    created: None,
                    applied_from: None,
                    group: None,
                }),
                active: true,
                empty: None,
                pending_restart: Vec::new(),
                paused: false,
            },
        );
    }
    o
}

fn run(d: &Desired, o: &Observed) -> Result<Plan, Vec<String>> {
    plan(&crate::plan::Identity::named("lab"), d, o, &LibvirtRules)
}

#[test]
fn nothing_exists_so_everything_is_created() {
    let p = run(
        &desired(&[network("10.0.0.0/24"), vm(1024)]),
        &Observed::default(),
    )
    .unwrap();
    assert_eq!(p.count(Action::Create), 2);
    assert!(p.changes.iter().all(|c| !c.attributes.is_empty()));
}

#[test]
fn matching_state_is_no_change() {
    let specs = [network("10.0.0.0/24"), vm(1024)];
    let p = run(&desired(&specs), &owned(&specs, "lab")).unwrap();
    assert!(p.is_empty());
    assert_eq!(p.unchanged, 2);
}

#[test]
fn memory_change_of_a_running_vm_needs_a_reboot() {
    let p = run(&desired(&[vm(2048)]), &owned(&[vm(1024)], "lab")).unwrap();
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Update);
    assert_eq!(c.disruption, Some(Disruption::Reboot));
    assert_eq!(c.attributes[0].name, "memory_mib");
    assert_eq!(c.attributes[0].before, Some(1024.into()));
    assert_eq!(c.attributes[0].after, Some(2048.into()));
}

/// A running VM defined with `defined` memory that still runs with `running`.
fn waiting(defined: u64, running: u64) -> Observed {
    let mut o = owned(&[vm(defined)], "lab");
    for r in o.resources.values_mut() {
        r.pending_restart = crate::provider::Pending::between(&vm(running), &vm(defined));
    }
    o
}

#[test]
fn a_vm_that_runs_with_an_older_definition_waits_for_a_restart() {
    let p = run(&desired(&[vm(2048)]), &waiting(2048, 1024)).unwrap();
    assert_eq!(p.unchanged, 0, "a pending restart is not up to date");
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Restart);
    assert!(
        c.attributes.is_empty(),
        "nothing to change in its definition"
    );
    assert_eq!(c.disruption, Some(Disruption::Reboot));
    let pending = &c.pending_restart[0];
    assert_eq!(pending.name, "memory_mib");
    assert_eq!(
        (pending.before.clone(), pending.after.clone()),
        (Some(1024.into()), Some(2048.into()))
    );
    assert!(render::human(&p).contains("1 waiting for a restart"));
    assert_eq!(render::json::document(&p).summary.restart, 1);
}

#[test]
fn a_new_change_to_a_vm_still_waiting_shows_both() {
    let p = run(&desired(&[vm(4096)]), &waiting(2048, 1024)).unwrap();
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Update);
    assert_eq!(c.attributes[0].after, Some(4096.into()));
    assert_eq!(c.pending_restart[0].before, Some(1024.into()));
    let shown = render::human(&p);
    assert!(shown.contains("memory: 2 GiB → 4 GiB"), "{shown}");
    assert!(shown.contains("memory: 1 GiB → 2 GiB"), "{shown}");
}

#[test]
fn a_stopped_vm_changes_live() {
    let mut o = owned(&[vm(1024)], "lab");
    o.resources.values_mut().for_each(|r| r.active = false);
    let p = run(&desired(&[vm(2048)]), &o).unwrap();
    assert_eq!(p.changes[0].disruption, Some(Disruption::Live));
}

#[test]
fn cidr_change_replaces_the_network_and_says_why() {
    let p = run(
        &desired(&[network("10.0.1.0/24")]),
        &owned(&[network("10.0.0.0/24")], "lab"),
    )
    .unwrap();
    let c = &p.changes[0];
    assert_eq!(c.action, Action::Replace);
    assert_eq!(c.reason.as_deref(), Some("`cidr` forces replacement"));
}

#[test]
fn growing_a_volume_is_live_and_shrinking_replaces() {
    let grow = run(&desired(&[volume(20)]), &owned(&[volume(10)], "lab")).unwrap();
    assert_eq!(grow.changes[0].action, Action::Update);
    let shrink = run(&desired(&[volume(5)]), &owned(&[volume(10)], "lab")).unwrap();
    assert_eq!(shrink.changes[0].action, Action::Replace);
}

#[test]
fn what_the_plan_no_longer_declares_is_deleted_and_nothing_else() {
    let mut o = owned(&[network("10.0.0.0/24"), vm(1024)], "lab");
    // Another plan's VM and an unmarked volume are never touched.
    let other = owned(&[volume(10)], "other");
    o.resources.extend(other.resources);
    let p = run(&desired(&[network("10.0.0.0/24")]), &o).unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].action, Action::Delete);
    assert_eq!(p.changes[0].id, ResourceId::vm("web1"));
    assert!(p.changes[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("no longer declared"));
}

#[test]
fn drift_is_reported_and_undone() {
    let mut o = owned(&[vm(1024)], "lab");
    // Someone changed the memory by hand.
    o.resources.values_mut().for_each(|r| r.spec = vm(4096));
    let p = run(&desired(&[vm(1024)]), &o).unwrap();
    let c = &p.changes[0];
    assert_eq!(c.drift[0].name, "memory_mib");
    assert_eq!(c.attributes[0].after, Some(1024.into()));
}

#[test]
fn missing_external_references_and_foreign_names_are_errors() {
    let mut d = desired(&[vm(1024)]);
    d.external.push(ResourceId::network("default"));
    let mut o = owned(&[vm(1024)], "lab");
    o.resources.values_mut().for_each(|r| r.owner = None);
    let problems = run(&d, &o).unwrap_err();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("network/default"));
    assert!(problems[1].contains("not created by siteplan"));
}

#[test]
fn rendering() {
    let mut o = owned(&[network("10.0.0.0/24"), vm(1024), volume(10)], "lab");
    o.resources
        .extend(owned(&[vm_named("old", 512)], "lab").resources);
    let mut d = desired(&[network("10.0.1.0/24"), vm(2048), volume(20)]);
    d.resources.push(DesiredResource {
        spec: Spec::Pool(PoolSpec {
            name: "images".into(),
            path: "/srv/images".into(),
            autostart: true,
        }),
        entry: "pool/images".into(),
        depends_on: Vec::new(),
    });
    let p = run(&d, &o).unwrap();
    insta::assert_snapshot!("plan_human", render::human(&p));
}

#[test]
fn a_stopped_network_is_started() {
    let mut o = owned(&[network("10.0.0.0/24")], "lab");
    o.resources.values_mut().for_each(|r| r.active = false);
    let p = run(&desired(&[network("10.0.0.0/24")]), &o).unwrap();
    assert_eq!(p.changes[0].action, Action::Update);
    assert_eq!(p.changes[0].attributes[0].name, "active");
}

fn seed(review: &str, sha256: &str) -> Spec {
    Spec::Volume(VolumeSpec {
        name: "web1-cidata.img".into(),
        pool: "default".into(),
        capacity_bytes: Some(1024),
        format: VolumeFormat::Raw,
        thin: true,
        backing: None,
        source: VolumeSource::Generated {
            sha256: sha256.into(),
            review: review.into(),
            generator: Default::default(),
        },
    })
}

#[test]
fn multi_line_values_render_as_unified_diffs() {
    let before = "#cloud-config\nhostname: web1\nruncmd:\n- echo one\n- echo two\n- echo three\n- echo four\n- echo five\n";
    let after = before.replace("echo three", "echo 3");
    let o = owned(&[seed(before, "aaaa")], "lab");
    let p = run(&desired(&[seed(&after, "bbbb")]), &o).unwrap();
    assert_eq!(p.changes[0].action, Action::Replace);
    let text = render::human(&p);
    assert!(
        text.contains("        -- echo three\n        +- echo 3\n"),
        "{text}"
    );
    insta::assert_snapshot!("plan_human_multi_line", text);
}

fn pool(path: &str) -> Spec {
    Spec::Pool(PoolSpec {
        name: "labpool".into(),
        path: path.into(),
        autostart: true,
    })
}

/// `spec` exists without a mark, as a killed run of the plan that was creating it left it (its
/// lock says so).
fn unmarked(spec: Spec, empty: Option<bool>) -> Observed {
    let mut o = Observed::default();
    o.unmarked_by_killed_run.insert(spec.id().to_string());
    o.resources.insert(
        spec.id(),
        LiveResource {
            spec,
            owner: None,
            active: empty.is_some(),
            empty,
            pending_restart: Vec::new(),
            paused: false,
        },
    );
    o
}

#[test]
fn an_unmarked_empty_pool_where_the_plan_puts_it_is_taken_over() {
    let want = desired(&[pool("/srv/lab")]);
    for empty in [Some(true), None] {
        let p = run(&want, &unmarked(pool("/srv/lab"), empty)).unwrap();
        assert_eq!(p.changes[0].action, Action::Update);
        assert!(p.changes[0].claim);
        assert!(p.changes[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("killed run"));
    }
    // Holding volumes, or somewhere else: someone else's pool.
    assert!(run(&want, &unmarked(pool("/srv/lab"), Some(false))).is_err());
    assert!(run(&want, &unmarked(pool("/srv/other"), Some(true))).is_err());
    // Empty and where the plan puts it, but no run of the plan was making it: a person made
    // it, and it is not taken.
    let mut theirs = unmarked(pool("/srv/lab"), Some(true));
    theirs.unmarked_by_killed_run.clear();
    let refused = run(&want, &theirs).unwrap_err();
    assert!(
        refused[0].contains("was not created by siteplan"),
        "{refused:?}"
    );
}

#[test]
fn destroy_deletes_a_leftover_pool_and_nothing_unmarked_else() {
    let mut nothing = desired(&[]);
    nothing.claimable = vec![pool("/srv/lab")];
    let p = run(&nothing, &unmarked(pool("/srv/lab"), Some(true))).unwrap();
    assert_eq!(p.changes.len(), 1);
    assert_eq!(p.changes[0].action, Action::Delete);
    assert!(p.changes[0].claim);
    let p = run(&nothing, &unmarked(pool("/srv/lab"), Some(false))).unwrap();
    assert!(p.is_empty(), "a pool that holds volumes is not touched");
    let p = run(&desired(&[]), &unmarked(pool("/srv/lab"), Some(true))).unwrap();
    assert!(p.is_empty(), "nor one the plan does not declare");
    let mut theirs = unmarked(pool("/srv/lab"), Some(true));
    theirs.unmarked_by_killed_run.clear();
    let p = run(&nothing, &theirs).unwrap();
    assert!(p.is_empty(), "nor one no run of the plan was making");
}

/// A plan with every kind of change: create, update live, update with a reboot, replace with a
/// reason, delete, drift, and a multi-line value.
fn every_kind_of_change() -> Plan {
    let mut o = owned(
        &[
            network("10.0.0.0/24"),
            vm(1024),
            volume(10),
            seed("#cloud-config\nruncmd:\n- echo one\n- echo two\n", "aaaa"),
        ],
        "lab",
    );
    o.resources
        .extend(owned(&[vm_named("old", 512)], "lab").resources);
    // Drift: the volume was grown by hand after siteplan made it.
    if let Some(live) = o.resources.get_mut(&volume(10).id()) {
        live.spec = volume(15);
    }
    let mut d = desired(&[
        network("10.0.1.0/24"),
        vm(2048),
        volume(20),
        seed("#cloud-config\nruncmd:\n- echo one\n- echo 2\n", "bbbb"),
    ]);
    d.resources.push(DesiredResource {
        spec: Spec::Pool(PoolSpec {
            name: "images".into(),
            path: "/srv/images".into(),
            autostart: true,
        }),
        entry: "pool/images".into(),
        depends_on: Vec::new(),
    });
    run(&d, &o).unwrap()
}

#[test]
fn every_format_of_every_kind_of_change() {
    let p = every_kind_of_change();
    let kinds: Vec<Action> = p.changes.iter().map(|c| c.action).collect();
    for action in [
        Action::Create,
        Action::Update,
        Action::Replace,
        Action::Delete,
    ] {
        assert!(kinds.contains(&action), "{kinds:?}");
    }
    assert!(p.changes.iter().any(|c| !c.drift.is_empty()));
    insta::assert_snapshot!("every_kind_human", render::human(&p));
    insta::assert_snapshot!("every_kind_markdown", render::markdown(&p));
    insta::assert_snapshot!("every_kind_json", render::json::json(&p));
    // The JSON is what its schema says.
    let doc: render::json::DiffDocument =
        serde_json::from_str(&render::json::json(&p)).expect("parses back");
    assert_eq!(doc.format_version, "2");
    assert_eq!(doc.changes.len(), p.changes.len());
    assert_eq!(doc.drift.len(), 1);
}

#[test]
fn the_markdown_renders_to_a_table_folded_details_and_diff_blocks() {
    let markdown = render::markdown(&every_kind_of_change());
    let mut options = pulldown_cmark::Options::empty();
    options.insert(pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::new();
    pulldown_cmark::html::push_html(
        &mut html,
        pulldown_cmark::Parser::new_ext(&markdown, options),
    );
    assert!(html.contains("<table>"), "{html}");
    assert_eq!(
        html.matches("<tr>").count(),
        7,
        "a header and six changes: {html}"
    );
    assert_eq!(html.matches("<details>").count(), 6, "{html}");
    assert!(html.contains(r#"<code class="language-diff">"#), "{html}");
    assert!(html.contains("<blockquote>"), "the warning: {html}");
    assert!(html.contains("-     - echo two\n+     - echo 2"), "{html}");
}

fn guarded(specs: &[Spec], guards: ResourceGuards) -> Desired {
    let mut d = desired(specs);
    for s in specs {
        d.guards.insert(s.id(), guards.clone());
    }
    d
}

#[test]
fn prevent_destroy_refuses_deletes_and_replaces() {
    let protect = ResourceGuards {
        prevent_destroy: true,
        ..ResourceGuards::default()
    };
    let o = owned(&[network("10.0.0.0/24")], "lab");
    let problems = run(&guarded(&[network("10.0.1.0/24")], protect.clone()), &o).unwrap_err();
    assert!(problems[0].contains("has `prevent_destroy`, and this plan would replace it"));
    // Destroy keeps the guards.
    let mut gone = guarded(&[network("10.0.0.0/24")], protect).nothing_but_leftovers();
    gone.resources.clear();
    let problems = run(&gone, &o).unwrap_err();
    assert!(problems[0].contains("would delete it"), "{problems:?}");
    // An update is fine.
    let o = owned(&[vm(1024)], "lab");
    let p = run(
        &guarded(
            &[vm(2048)],
            ResourceGuards {
                prevent_destroy: true,
                ..ResourceGuards::default()
            },
        ),
        &o,
    )
    .unwrap();
    assert_eq!(p.changes[0].action, Action::Update);
}

#[test]
fn create_before_destroy_refuses_a_replace_it_cannot_do() {
    let o = owned(&[network("10.0.0.0/24")], "lab");
    let d = guarded(
        &[network("10.0.1.0/24")],
        ResourceGuards {
            create_before_destroy: true,
            ..ResourceGuards::default()
        },
    );
    let problems = run(&d, &o).unwrap_err();
    assert!(
        problems[0].contains("names on this provider are unique"),
        "{problems:?}"
    );
}

#[test]
fn ignored_changes_keep_the_live_value_in_what_is_applied() {
    let o = owned(&[vm(1024)], "lab");
    let ignore_memory = ResourceGuards {
        ignore: vec!["memory_mib"],
        ..ResourceGuards::default()
    };
    let p = run(&guarded(&[vm(2048)], ignore_memory.clone()), &o).unwrap();
    assert!(p.is_empty(), "memory is ignored");
    // Another change still applies, with the live memory.
    let Spec::Vm(mut more) = vm(2048) else {
        unreachable!()
    };
    more.vcpus = 4;
    let p = run(&guarded(&[Spec::Vm(more)], ignore_memory), &o).unwrap();
    assert_eq!(
        p.changes[0].attributes.len(),
        1,
        "{:?}",
        p.changes[0].attributes
    );
    let Some(Spec::Vm(applied)) = &p.changes[0].desired else {
        panic!("a VM")
    };
    assert_eq!((applied.memory_mib, applied.vcpus), (1024, 4));
}

#[test]
fn replace_requested_replaces_an_unchanged_resource() {
    let o = owned(&[vm(1024)], "lab");
    let mut d = desired(&[vm(1024)]);
    d.replace = vec![vm(1024).id()];
    let p = run(&d, &o).unwrap();
    assert_eq!(p.changes[0].action, Action::Replace);
    assert_eq!(
        p.changes[0].reason.as_deref(),
        Some("replacement requested with --replace")
    );
}

#[test]
fn a_running_vm_whose_seed_is_made_again_needs_a_reboot() {
    let Spec::Vm(mut with_seed) = vm(1024) else {
        unreachable!()
    };
    with_seed.seed = Some(("default".into(), "web1-cidata.img".into()));
    let o = owned(
        &[
            Spec::Vm(with_seed.clone()),
            seed("#cloud-config\nruncmd: [a]\n", "aaaa"),
        ],
        "lab",
    );
    let d = desired(&[
        Spec::Vm(with_seed),
        seed("#cloud-config\nruncmd: [b]\n", "bbbb"),
    ]);
    let p = run(&d, &o).unwrap();
    let vm_change = p
        .changes
        .iter()
        .find(|c| c.id == ResourceId::vm("web1"))
        .expect("the VM is in the plan");
    assert_eq!(vm_change.action, Action::Update);
    assert_eq!(vm_change.disruption, Some(Disruption::Reboot));
    // The seed's digest is never shown, only that it changed.
    assert_eq!(
        vm_change.attributes[0].after,
        Some(crate::plan::digests::CHANGED.into())
    );
    assert!(render::human(&p).contains("~ vm/web1: its cloud-init seed volume/default/web1-cidata.img is made again (needs a reboot)"), "{}", render::human(&p));
    assert_eq!(p.unchanged, 0);
}

/// What exists without a mark, adopted by name.
fn adopting(entries: &[&str]) -> crate::plan::Identity {
    crate::plan::Identity {
        adopt: entries.iter().map(|e| e.to_string()).collect(),
        ..crate::plan::Identity::named("lab")
    }
}

#[test]
fn an_unmarked_resource_is_adopted_only_when_asked_with_only_what_differs() {
    let mut o = owned(&[vm(1024)], "lab");
    o.resources.values_mut().for_each(|r| r.owner = None);
    // Not asked: refused, saying it may be adopted.
    let refused = run(&desired(&[vm(1024)]), &o).unwrap_err();
    assert!(refused[0].contains("let the plan adopt it"), "{refused:?}");
    // Asked, by the entry's name: an update that marks it, and nothing else when it matches.
    let p = plan(
        &adopting(&["web1"]),
        &desired(&[vm(1024)]),
        &o,
        &LibvirtRules,
    )
    .unwrap();
    assert_eq!(p.changes.len(), 1);
    let c = &p.changes[0];
    assert!(c.adopt && c.action == Action::Update, "{c:?}");
    assert_eq!(
        c.attributes
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>(),
        ["owner"]
    );
    assert!(
        render::human(&p).contains("<= vm/web1"),
        "{}",
        render::human(&p)
    );
    assert!(
        render::summary(&p).contains("0 to change") && render::summary(&p).contains("1 to adopt")
    );
    // What differs is changed with it, as an update would.
    let p = plan(
        &adopting(&["vm/web1"]),
        &desired(&[vm(2048)]),
        &o,
        &LibvirtRules,
    )
    .unwrap();
    let names: Vec<&str> = p.changes[0]
        .attributes
        .iter()
        .map(|a| a.name.as_str())
        .collect();
    assert_eq!(names, ["owner", "memory_mib"]);
}

#[test]
fn adopting_never_replaces_nor_takes_another_plans_resource() {
    let mut o = owned(&[network("10.0.0.0/24")], "lab");
    o.resources.values_mut().for_each(|r| r.owner = None);
    // The range differs: only making it again would change it, and adopting deletes nothing.
    let refused = plan(
        &adopting(&["labnet"]),
        &desired(&[network("10.0.1.0/24")]),
        &o,
        &LibvirtRules,
    )
    .unwrap_err();
    assert!(
        refused[0].contains("cannot be adopted as the plan declares it: cidr differs"),
        "{refused:?}"
    );
    let other = owned(&[network("10.0.0.0/24")], "other");
    let refused = plan(
        &adopting(&["labnet"]),
        &desired(&[network("10.0.0.0/24")]),
        &other,
        &LibvirtRules,
    )
    .unwrap_err();
    assert!(
        refused[0].contains("belongs to plan `other`"),
        "{refused:?}"
    );
    // A VM kcli's plan `other` made is that plan's, to kcli: adopted only under its name.
    let mut kcli = owned(&[vm(1024)], "lab");
    kcli.resources.values_mut().for_each(|r| r.owner = None);
    kcli.kcli_plans.insert(
        crate::plan::model::spec::ResourceId::vm("web1"),
        "other".into(),
    );
    let refused = plan(
        &adopting(&[crate::plan::ADOPT_ALL]),
        &desired(&[vm(1024)]),
        &kcli,
        &LibvirtRules,
    )
    .unwrap_err();
    assert!(
        refused[0].contains("belongs to kcli's plan `other`")
            && refused[0].contains("--name other"),
        "{refused:?}"
    );
    let same_name = crate::plan::Identity {
        adopt: vec![crate::plan::ADOPT_ALL.into()],
        ..crate::plan::Identity::named("other")
    };
    let p = plan(&same_name, &desired(&[vm(1024)]), &kcli, &LibvirtRules).unwrap();
    assert!(p.changes[0].adopt, "{:?}", p.changes);
}
