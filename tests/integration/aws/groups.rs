//! kcli's security groups on EC2: `type: securitygroup` entries and VMs' `securitygroups`, made,
//! changed in place, set back when they drift, let go of before they are deleted, and another
//! tool's group used and left alone.

use aws_sdk_ec2::types::{Filter, IpPermission, IpRange};

use super::{block_on, Ec2, AMI_NAME};

/// A plan with the network `gnet`, the groups `groups` and the VM `gvm` in `vm_groups`.
fn plan(groups: &str, vm_groups: &str) -> String {
    format!(
        "gnet:\n  type: network\n  cidr: 10.30.0.0/24\n{groups}\
         gvm:\n  image: {AMI_NAME}\n  nets: [gnet]\n  securitygroups: {vm_groups}\n"
    )
}

const WEB: &str = "web:\n  type: securitygroup\n  network: gnet\n  ports:\n  - 80\n  - '443'\n  \
                   - {from: 8000, to: 8100}\n  - {from: 53, protocol: udp}\n";
const SSH: &str =
    "ssh:\n  type: securitygroup\n  network: gnet\n  ports: [2222]\n  cidr: 192.0.2.0/24\n";

impl Ec2 {
    /// The groups an instance is in, by group name.
    fn groups_of(&self, name: &str) -> Vec<String> {
        let (id, ..) = self.instance(name).expect("instance");
        block_on(async {
            let out = self
                .client()
                .describe_instances()
                .instance_ids(id)
                .send()
                .await
                .expect("describe");
            let mut names: Vec<String> = out
                .reservations()
                .iter()
                .flat_map(|r| r.instances())
                .flat_map(|i| i.security_groups())
                .filter_map(|g| g.group_name().map(str::to_string))
                .collect();
            names.sort();
            names
        })
    }

    /// A group's id and its ingress rules (`tcp 80-80 0.0.0.0/0`), by its group name.
    fn group(&self, group_name: &str) -> Option<(String, Vec<String>)> {
        block_on(async {
            let out = self
                .client()
                .describe_security_groups()
                .filters(
                    Filter::builder()
                        .name("group-name")
                        .values(group_name)
                        .build(),
                )
                .send()
                .await
                .expect("describe groups");
            out.security_groups().first().map(|g| {
                let mut rules: Vec<String> = g
                    .ip_permissions()
                    .iter()
                    .flat_map(|p| {
                        p.ip_ranges().iter().map(move |r| {
                            format!(
                                "{} {}-{} {}",
                                p.ip_protocol().unwrap_or_default(),
                                p.from_port().unwrap_or_default(),
                                p.to_port().unwrap_or_default(),
                                r.cidr_ip().unwrap_or_default()
                            )
                        })
                    })
                    .collect();
                rules.sort();
                (g.group_id().unwrap_or_default().to_string(), rules)
            })
        })
    }
}

#[test]
fn security_groups_are_made_changed_set_back_and_let_go_of() {
    let Some(ec2) = Ec2::start(
        "security_groups_are_made_changed_set_back_and_let_go_of",
        "ap-south-1",
    ) else {
        return;
    };
    let file = ec2.write("groups.yml", &plan(WEB, "[web]"));
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    // The group (named after the plan and the entry), with ICMP from anywhere, as kcli makes it.
    let (_, rules) = ec2.group("groups-web").expect("the group");
    assert_eq!(
        rules,
        [
            "icmp -1--1 0.0.0.0/0",
            "tcp 443-443 0.0.0.0/0",
            "tcp 80-80 0.0.0.0/0",
            "tcp 8000-8100 0.0.0.0/0",
            "udp 53-53 0.0.0.0/0",
        ],
    );
    // The VM is in its network's group and in `web`.
    assert_eq!(ec2.groups_of("gvm"), ["groups-gnet", "groups-web"]);
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(0), "{}", out.text());

    // Another group, with a source of its own, and the VM in both: all in place.
    std::fs::write(&file, plan(&format!("{WEB}{SSH}"), "[ssh, web]")).expect("plan");
    let out = ec2.plan(&["diff", "--provider", "ec2"], Some(&file));
    assert!(
        out.stdout.contains("+ security-group/ssh")
            && out.stdout.contains("~ instance/gvm (live)")
            && out
                .stdout
                .contains("security_groups: [\"web\"] → [\"ssh\",\"web\"]"),
        "{}",
        out.text()
    );
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    assert_eq!(
        ec2.groups_of("gvm"),
        ["groups-gnet", "groups-ssh", "groups-web"]
    );
    let (ssh, rules) = ec2.group("groups-ssh").expect("ssh");
    assert_eq!(
        rules,
        ["icmp -1--1 192.0.2.0/24", "tcp 2222-2222 192.0.2.0/24"]
    );

    // Drift made with the API: a rule added behind siteplan's back is shown, and taken away.
    block_on(async {
        ec2.client()
            .authorize_security_group_ingress()
            .group_id(&ssh)
            .ip_permissions(
                IpPermission::builder()
                    .ip_protocol("tcp")
                    .from_port(3306)
                    .to_port(3306)
                    .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
                    .build(),
            )
            .send()
            .await
            .expect("a rule behind siteplan's back");
    });
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(2), "{}", out.text());
    assert!(
        out.stdout.contains("~ security-group/ssh (live)") && out.stdout.contains("tcp/3306"),
        "{}",
        out.text()
    );
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    assert_eq!(ec2.group("groups-ssh").expect("ssh").1.len(), 2);

    // A group another tool made in the network's VPC, named by the VM: used, not owned.
    let vpc = block_on(async {
        let out = ec2
            .client()
            .describe_vpcs()
            .filters(Filter::builder().name("tag:Name").values("gnet").build())
            .send()
            .await
            .expect("vpcs");
        out.vpcs()[0].vpc_id().unwrap_or_default().to_string()
    });
    block_on(async {
        ec2.client()
            .create_security_group()
            .group_name("theirs")
            .description("another tool's")
            .vpc_id(vpc)
            .send()
            .await
            .expect("their group");
    });

    // The VM leaves `ssh`, which goes, and joins `theirs`: it lets go before `ssh` is deleted
    // (EC2 refuses to delete a group an instance is in).
    std::fs::write(&file, plan(WEB, "[theirs, web]")).expect("plan");
    let out = ec2.apply(&file);
    assert!(out.ok(), "{}", out.text());
    let text = out.text();
    let let_go = text
        .find("instance/gvm security groups set")
        .expect("the VM's groups set");
    let deleting = text
        .find("deleting security-group/ssh")
        .expect("ssh deleted");
    assert!(let_go < deleting, "{}", out.text());
    assert_eq!(
        ec2.groups_of("gvm"),
        ["groups-gnet", "groups-web", "theirs"]
    );
    assert!(ec2.group("groups-ssh").is_none());
    let out = ec2.diff(&file);
    assert_eq!(out.code(), Some(0), "{}", out.text());

    // Destroy takes the plan's groups and leaves theirs.
    let out = ec2.plan(&["destroy", "--yes", "--provider", "ec2"], Some(&file));
    assert!(out.ok(), "{}", out.text());
    assert!(ec2.group("groups-web").is_none());
    assert!(ec2.group("theirs").is_some());
}

#[test]
fn security_groups_are_refused_where_they_cannot_be() {
    let Some(ec2) = Ec2::start(
        "security_groups_are_refused_where_they_cannot_be",
        "ap-south-2",
    ) else {
        return;
    };
    // On the sandbox, which has none: refused by capability, naming each entry.
    let file = ec2.write("nogroups.yml", &plan(WEB, "[web]"));
    let out = ec2.plan(&["apply", "--yes", "--provider", "play"], Some(&file));
    assert!(!out.ok(), "{}", out.text());
    assert!(
        out.text()
            .contains("securitygroup/web: provider `play` has no security groups")
            && out
                .text()
                .contains("vm/gvm: provider `play` has no security groups"),
        "{}",
        out.text()
    );
    // A group of another network, pointed at.
    let file = ec2.write(
        "elsewhere.yml",
        &plan(
            "web:\n  type: securitygroup\n  network: default\n  ports: [80]\n",
            "[web]",
        ),
    );
    let out = ec2.plan(&["diff", "--provider", "ec2"], Some(&file));
    assert!(
        !out.ok()
            && out
                .text()
                .contains("vm `gvm` is on network `gnet`, but security group `web` belongs to network `default`"),
        "{}",
        out.text()
    );
    // A network where a group is expected; the own group of a network the plan does not
    // declare; a group that exists nowhere.
    let file = ec2.write("own.yml", &plan("", "[gnet]"));
    let out = ec2.plan(&["diff", "--provider", "ec2"], Some(&file));
    assert!(
        !out.ok()
            && out
                .text()
                .contains("`gnet` is a network, but a securitygroup is expected here"),
        "{}",
        out.text()
    );
    let file = ec2.write(
        "theirs.yml",
        &format!("gvm:\n  image: {AMI_NAME}\n  nets: [theirnet]\n  securitygroups: [theirnet]\n"),
    );
    let out = ec2.plan(&["diff", "--provider", "ec2"], Some(&file));
    assert!(
        !out.ok() && out.text().contains("its network's own group"),
        "{}",
        out.text()
    );
    let file = ec2.write("nowhere.yml", &plan("", "[nowhere]"));
    let out = ec2.plan(&["diff", "--provider", "ec2"], Some(&file));
    assert!(
        !out.ok() && out.text().contains("security-group/nowhere"),
        "{}",
        out.text()
    );
    assert!(ec2.instances().is_empty(), "nothing was made");
}
