//! Crash consistency on EC2, as `crash.rs` checks it on libvirt: `plan apply` and `plan destroy`
//! aborted at every crash point of the AWS backend (`SITEPLAN_CRASH_AT=N`), then run again: the
//! second run must finish the job and leave exactly what an uninterrupted run leaves, with no
//! duplicate and no orphan (a VPC, a gateway, a volume made twice or left behind).

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;

use super::{block_on, Ec2};
use crate::harness::Ran;

/// The states a run goes through: made, changed (a disk more on each VM, more memory: another
/// instance type, made at the restart `--restart` asks for; a security group they join),
/// destroyed.
const STEPS: [(&str, &[&str]); 3] = [
    ("apply", &[]),
    ("apply", &["disks=2", "memory=1024", "group=true"]),
    ("destroy", &["disks=2", "memory=1024", "group=true"]),
];

impl Ec2 {
    fn crash_run(&self, command: &str, params: &[&str], crash_at: Option<usize>) -> Ran {
        let file = crate::harness::root().join("tests/fixtures/crash/aws.yml");
        let mut args = vec![command, "-q", "--provider", "ec2", "--name", "crash"];
        if command != "diff" {
            args.extend(["--yes", "--parallelism", "1"]);
        }
        if command == "apply" {
            args.push("--restart");
        }
        let mut plan = crate::harness::Plan::new(&args)
            .providers(&self.providers, &self.state)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(
                "SITEPLAN_CRASH_AT",
                crash_at.map(|n| n.to_string()).unwrap_or_default(),
            )
            .arg_path(&file);
        for p in params {
            plan = plan.args(&["-P", p]);
        }
        plan.run()
    }

    /// Everything in the region that carries a name: what a duplicate or an orphan shows in.
    fn inventory(&self) -> BTreeSet<String> {
        block_on(async {
            let client = self.client();
            let mut found = BTreeSet::new();
            let named = |tags: &[aws_sdk_ec2::types::Tag]| {
                tags.iter()
                    .find(|t| t.key() == Some("Name"))
                    .and_then(|t| t.value())
                    .map(str::to_string)
            };
            let mut add = |kind: &str, name: Option<String>| {
                if let Some(name) = name {
                    // Duplicates count: a second of one name is an orphan.
                    let mut key = format!("{kind} {name}");
                    while !found.insert(key.clone()) {
                        key.push('+');
                    }
                }
            };
            for v in client.describe_vpcs().send().await.expect("vpcs").vpcs() {
                add("vpc", named(v.tags()));
            }
            for s in client
                .describe_subnets()
                .send()
                .await
                .expect("subnets")
                .subnets()
            {
                add("subnet", named(s.tags()));
            }
            for g in client
                .describe_security_groups()
                .send()
                .await
                .expect("groups")
                .security_groups()
            {
                add("security-group", named(g.tags()));
            }
            for g in client
                .describe_internet_gateways()
                .send()
                .await
                .expect("igws")
                .internet_gateways()
            {
                let attached = g.attachments().iter().filter_map(|a| a.vpc_id()).count();
                add(
                    "internet-gateway",
                    named(g.tags()).map(|n| format!("{n} attached {attached}")),
                );
            }
            for k in client
                .describe_key_pairs()
                .send()
                .await
                .expect("keys")
                .key_pairs()
            {
                add("key-pair", k.key_name().map(str::to_string));
            }
            let live = Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .values("stopping")
                .values("stopped")
                .build();
            for r in client
                .describe_instances()
                .filters(live)
                .send()
                .await
                .expect("instances")
                .reservations()
            {
                for i in r.instances() {
                    let kind = i
                        .instance_type()
                        .map(|t| t.as_str().to_string())
                        .unwrap_or_default();
                    let state = i
                        .state()
                        .and_then(|s| s.name())
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default();
                    add(
                        "instance",
                        named(i.tags()).map(|n| format!("{n} {kind} {state}")),
                    );
                }
            }
            for v in client
                .describe_volumes()
                .send()
                .await
                .expect("volumes")
                .volumes()
            {
                let state = v
                    .state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default();
                // Known by the instance it is a disk of too: a run killed before it named the
                // disks leaves them unnamed (their names are in the instance's mark).
                let of = v
                    .tags()
                    .iter()
                    .find(|t| t.key() == Some("siteplan:disk-of"))
                    .and_then(|t| t.value())
                    .unwrap_or("nothing");
                let size = v.size().unwrap_or_default();
                add("volume", Some(format!("of {of} {size} GiB {state}")));
            }
            found
        })
    }
}

/// Runs `step` killed at crash point 1, 2, … until a run gets through without reaching its
/// crash point; after each kill, the same command again must finish and leave `expected`.
fn kill_at_every_point(
    ec2: &Ec2,
    step: usize,
    prepare: &dyn Fn(),
    expected: &BTreeSet<String>,
) -> usize {
    let (command, params) = STEPS[step];
    for n in 1.. {
        prepare();
        let killed = ec2.crash_run(command, params, Some(n));
        if killed.status.success() {
            assert!(!killed.text().contains("crash point"), "{}", killed.text());
            return n - 1;
        }
        assert!(
            killed.text().contains(&format!("crash point {n} ")),
            "{command} {params:?} at {n} failed without crashing:\n{}",
            killed.text()
        );
        let again = ec2.crash_run(command, params, None);
        assert!(
            again.status.success(),
            "after a kill at point {n} of {command} {params:?}, the next run failed:\n{}\nkilled run:\n{}",
            again.text(),
            killed.text()
        );
        let diff = ec2.crash_run("diff", params, None);
        let settled = if command == "destroy" {
            diff.text()
                .contains("0 to change, 0 to replace, 0 to destroy.")
        } else {
            diff.text().contains("No changes")
                || diff
                    .text()
                    .contains("Plan: 0 to add, 0 to change, 0 to replace, 0 to destroy.")
        };
        assert!(
            settled,
            "after a kill at point {n} of {command} {params:?} and a second run, not settled:\n{}",
            diff.text()
        );
        assert_eq!(
            &ec2.inventory(),
            expected,
            "after a kill at point {n} of {command} {params:?} and a second run"
        );
    }
    unreachable!()
}

#[test]
fn ec2_runs_killed_at_every_point_are_finished_by_the_next_run() {
    let Some(ec2) = Ec2::start(
        "ec2_runs_killed_at_every_point_are_finished_by_the_next_run",
        "ca-central-1",
    ) else {
        return;
    };
    // The account's own: its default VPC, subnets and security group.
    let before = ec2.inventory();
    let reset = || {
        for step in [2, 0] {
            let out = ec2.crash_run("destroy", STEPS[step].1, None);
            assert!(out.status.success(), "{}", out.text());
        }
    };
    let mut expected = Vec::new();
    reset();
    for (command, params) in STEPS {
        let out = ec2.crash_run(command, params, None);
        assert!(out.status.success(), "{command} {params:?}: {}", out.text());
        expected.push(ec2.inventory());
    }
    assert_eq!(expected[2], before, "destroy left what the plan made");
    let prepare_change = || {
        reset();
        let out = ec2.crash_run("apply", STEPS[0].1, None);
        assert!(out.status.success(), "{}", out.text());
    };
    let prepare_destroy = || {
        prepare_change();
        let out = ec2.crash_run("apply", STEPS[1].1, None);
        assert!(out.status.success(), "{}", out.text());
    };
    let points = kill_at_every_point(&ec2, 0, &reset, &expected[0]);
    crate::harness::report(&format!(
        "ec2 apply from nothing: killed at each of {points} crash points"
    ));
    assert!(points >= 8, "only {points} crash points were reached");
    let points = kill_at_every_point(&ec2, 1, &prepare_change, &expected[1]);
    crate::harness::report(&format!(
        "ec2 apply of a change: killed at each of {points} crash points"
    ));
    assert!(points >= 4, "only {points} crash points were reached");
    let points = kill_at_every_point(&ec2, 2, &prepare_destroy, &expected[2]);
    crate::harness::report(&format!(
        "ec2 destroy: killed at each of {points} crash points"
    ));
    assert!(points >= 4, "only {points} crash points were reached");
}
