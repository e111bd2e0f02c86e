//! A kcli client of type `aws` (`~/.kcli/config.yml`) is a provider: a kcli plan's VM that
//! names it goes to EC2 with the client's own keys, which are never shown.

use super::{Ec2, AMI_NAME};
use crate::harness::Plan;

#[test]
fn a_kcli_aws_client_takes_a_vm_to_ec2_with_its_own_keys() {
    let Some(ec2) = Ec2::start(
        "a_kcli_aws_client_takes_a_vm_to_ec2_with_its_own_keys",
        "eu-north-1",
    ) else {
        return;
    };
    let home = tempfile::tempdir().expect("home");
    std::fs::create_dir(home.path().join(".kcli")).expect("mkdir");
    std::fs::write(
        home.path().join(".kcli/config.yml"),
        format!(
            "cloud:\n  type: aws\n  access_key_id: AKIDKCLITEST\n  \
             access_key_secret: kcli-secret-value-42\n  region: {}\n  keypair: mine\n",
            ec2.region
        ),
    )
    .expect("kcli config");
    let file = ec2.write(
        "kcli_plan.yml",
        &format!("kvm1:\n  client: cloud\n  image: {AMI_NAME}\n"),
    );
    // No key in the environment or in ~/.aws: only the client's can sign.
    let run = |args: &[&str]| {
        Plan::new(args)
            .providers(&ec2.providers, &ec2.state)
            .kcli_home(home.path())
            .env("AWS_ENDPOINT_URL_EC2", &ec2.endpoint)
            .env("AWS_CONFIG_FILE", home.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                home.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .arg_path(&file)
            .run()
    };
    let out = run(&["apply", "--yes", "-v"]);
    assert!(out.ok(), "{}", out.text());
    assert!(ec2.instance("kvm1").is_some(), "{}", out.text());
    assert!(
        !out.text().contains("kcli-secret-value-42"),
        "{}",
        out.text()
    );
    let out = run(&["diff", "--detailed-exitcode"]);
    assert_eq!(out.code(), Some(0), "{}", out.text());
    let out = run(&["destroy", "--yes"]);
    assert!(out.ok(), "{}", out.text());
    assert!(ec2.instance("kvm1").is_none());
}
