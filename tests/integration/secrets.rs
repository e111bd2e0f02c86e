//! A plan with planted secrets (a root password, a parameter named like a token, a value passed
//! through the `sensitive` filter, a private key in a file, a VM's own key named like a password
//! that its script uses): no command, output format, log or
//! error message may show any of them, while a change to one still shows as a change.

use std::path::Path;

use crate::harness::Plan;

const PLANTED: [&str; 5] = [
    "tok-PLANTED-api-0001",
    "pass-PLANTED-notaname-0002",
    "root-PLANTED-0003",
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ-PLANTED-0004",
    "adm-PLANTED-vmkey-0005",
];

fn plan(sandbox: &Path, args: &[&str]) -> (bool, String) {
    let out = Plan::new(args).sandbox(sandbox).run();
    (out.ok(), out.text())
}

fn assert_hidden(what: &str, text: &str) {
    for secret in PLANTED {
        assert!(!text.contains(secret), "{what} shows {secret}:\n{text}");
    }
    // Fragments too: the key's body, the token without its prefix.
    assert!(
        !text.contains("PLANTED"),
        "{what} shows part of a secret:\n{text}"
    );
}

#[test]
fn planted_secrets_appear_in_no_output() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let site = "tests/fixtures/secrets/site.yml";
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        let mut args = extra.to_vec();
        args.extend([site, "--provider", "sandbox"]);
        args
    };
    let mut seen = Vec::new();
    for args in [
        vec!["validate", site],
        vec!["render", site],
        vec!["graph", site],
        with(&["diff"]),
        with(&["diff", "--format", "markdown"]),
        with(&["diff", "--format", "json"]),
        with(&["diff", "-v"]),
        with(&["apply", "--yes", "-v"]),
        with(&["apply", "--yes", "-v", "--wait", "--wait-timeout", "2"]),
        with(&["diff", "-P", "api_token=tok-PLANTED-api-0001-changed"]),
        // An error on the line that uses the token.
        vec!["validate", "-P", "broken=true", site],
    ] {
        let (ok, text) = plan(&sandbox, &args);
        assert_hidden(&format!("plan {args:?}"), &text);
        seen.push((args, ok, text));
    }
    // The commands did run and did say things.
    let rendered = &seen[1].2;
    assert!(
        rendered.contains("Authorization: Bearer (sensitive)"),
        "{rendered}"
    );
    assert!(rendered.contains("rootpassword: (sensitive)"), "{rendered}");
    let diff = &seen[3].2;
    assert!(diff.contains("password: (sensitive)"), "{diff}");
    assert!(diff.contains("echo (sensitive) > /etc/db.pass"), "{diff}");
    assert!(seen[7].1, "apply succeeded: {}", seen[7].2);
    // A changed secret still shows as a change of the seed.
    let changed = &seen[9].2;
    assert!(
        changed.contains("-/+ volume/default/sec0-cidata.img"),
        "{changed}"
    );
    let broken = &seen[10];
    assert!(!broken.1, "the broken plan fails: {}", broken.2);
    assert!(broken.2.contains("memory"), "{}", broken.2);
    // A saved plan keeps no secret, and asks for the ones given with -P again.
    let saved = tmp.path().join("saved.plan");
    let saved_arg = saved.to_string_lossy().into_owned();
    let token = ["-P", "api_token=tok-PLANTED-api-0001"];
    let mut args = with(&["diff", "-P", "memory=300"]);
    args.extend_from_slice(&token);
    args.extend(["--out", saved_arg.as_str()]);
    let (ok, text) = plan(&sandbox, &args);
    assert!(ok, "{text}");
    assert_hidden("plan diff --out", &text);
    let file = std::fs::read_to_string(&saved).expect("saved plan");
    assert_hidden("the saved plan", &file);
    assert!(
        file.contains("\"sensitive_params\": [\n    \"api_token\""),
        "{file}"
    );
    let (ok, text) = plan(&sandbox, &["apply", saved_arg.as_str()]);
    assert!(!ok && text.contains("give it again with -P"), "{text}");
    let (ok, text) = plan(&sandbox, &["apply", saved_arg.as_str(), token[0], token[1]]);
    assert!(ok, "{text}");
    assert_hidden("plan apply PLANFILE", &text);

    // What the sandbox saved on disk holds no secret either (the seed image itself excepted:
    // the guest needs its password).
    let state = std::fs::read_to_string(sandbox.join("state.json")).expect("state");
    assert_hidden("the sandbox state", &state);
}
