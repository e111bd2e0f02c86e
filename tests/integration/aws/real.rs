//! One lab's life on real AWS, opt-in: it makes a VPC and a `t3.nano` in the account the
//! environment's credentials name, in `SITEPLAN_TEST_AWS_REGION`, and destroys them, which costs
//! a little. The AMI is the newest named `SITEPLAN_TEST_AWS_AMI` (wildcards allowed), by
//! default Amazon Linux 2023's. Without the region the test says SKIPPED and passes.

use crate::harness::{report, Plan};

#[test]
fn a_lab_lives_on_real_aws_when_asked() {
    let Ok(region) = std::env::var("SITEPLAN_TEST_AWS_REGION") else {
        report(
            "SKIPPED a_lab_lives_on_real_aws_when_asked: SITEPLAN_TEST_AWS_REGION is not set \
             (real AWS is opt-in: it needs an account's credentials, and costs money)",
        );
        return;
    };
    let ami = std::env::var("SITEPLAN_TEST_AWS_AMI")
        .unwrap_or_else(|_| "al2023-ami-2023*-kernel-*-x86_64".into());
    let dir = tempfile::tempdir().expect("tmp");
    let providers = dir.path().join("providers.yml");
    std::fs::write(
        &providers,
        format!("providers:\n  - {{name: aws, type: aws, region: {region}}}\n"),
    )
    .expect("providers file");
    let name = format!("siteplan-test-{}", std::process::id());
    let file = dir.path().join(format!("{name}.yml"));
    std::fs::write(
        &file,
        format!(
            "{name}-net:\n  type: network\n  cidr: 10.77.0.0/24\n\
             {name}-vm:\n  image: '{ami}'\n  flavor: t3.nano\n  nets: [{name}-net]\n  disks: [8]\n"
        ),
    )
    .expect("plan");
    let state = dir.path().join("state");
    let plan = |args: &[&str]| {
        Plan::new(args)
            .providers(&providers, &state)
            .args(&["--provider", "aws"])
            .arg_path(&file)
            .run()
    };
    let applied = plan(&["apply", "--yes", "--wait"]);
    // Whatever happened, what was made goes.
    let destroyed = plan(&["destroy", "--yes"]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(destroyed.ok(), "{}", destroyed.text());
    let after = plan(&["diff", "--detailed-exitcode"]);
    assert!(
        after
            .text()
            .contains("0 to change, 0 to replace, 0 to destroy."),
        "{}",
        after.text()
    );
}
