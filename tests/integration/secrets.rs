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

/// Every run of 64 hex digits in `text` (what a SHA-256 digest looks like).
fn digests_in(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            if run.len() == 64 {
                found.push(run.clone());
            }
            run.clear();
        }
    }
    found
}

/// The digest of VM `sec0`'s cloud-init seed for the plan in `dir`, as siteplan computes it.
fn seed_digest(dir: &Path) -> String {
    let file = dir.join("site.yml");
    let loaded = siteplan::manifest::load(
        &file,
        &siteplan::manifest::Overrides::default(),
        siteplan::manifest::Options::default(),
    )
    .unwrap_or_else(|_| panic!("{} loads", file.display()));
    let intents = siteplan::plan::intent::intents(&loaded.manifest, "site", dir).expect("intents");
    intents
        .items
        .iter()
        .find_map(|item| match &item.what {
            siteplan::plan::intent::What::Vm(vm) if item.name == "sec0" => {
                vm.cloud_init.as_ref().map(|c| c.sha256.clone())
            }
            _ => None,
        })
        .expect("sec0 has a seed")
}

#[test]
fn no_digest_of_a_seed_appears_and_a_changed_root_password_still_shows() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let lab = tmp.path().join("lab");
    std::fs::create_dir_all(&lab).expect("lab");
    for file in ["site.yml", "admin.sh"] {
        std::fs::copy(
            crate::harness::root()
                .join("tests/fixtures/secrets")
                .join(file),
            lab.join(file),
        )
        .expect("copy");
    }
    let site = lab.join("site.yml");
    let site_arg = site.to_string_lossy().into_owned();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend([site_arg.as_str(), "--provider", "sandbox"]);
        plan(&sandbox, &all)
    };
    let first = seed_digest(&lab);
    let saved = tmp.path().join("saved.plan");
    let saved_arg = saved.to_string_lossy().into_owned();
    let mut outputs = Vec::new();
    for args in [
        vec!["diff"],
        vec!["diff", "--format", "json"],
        vec!["diff", "--format", "markdown"],
        vec!["diff", "--out", saved_arg.as_str()],
        vec!["apply", "--yes", "-v"],
        vec!["status", "-o", "json"],
    ] {
        let (ok, text) = run(&args);
        assert!(ok, "plan {args:?}: {text}");
        outputs.push((format!("plan {args:?}"), text));
    }
    outputs.push((
        "the saved plan".into(),
        std::fs::read_to_string(&saved).expect("saved plan"),
    ));

    // The root password changes: the seed is made again, and the diff says a sensitive value
    // changed.
    let text = std::fs::read_to_string(&site).expect("plan");
    std::fs::write(
        &site,
        text.replace("root-PLANTED-0003", "root-PLANTED-0003-new"),
    )
    .expect("plan");
    let second = seed_digest(&lab);
    assert_ne!(first, second, "the password is part of the seed");
    let (ok, changed) = run(&["diff"]);
    assert!(ok, "{changed}");
    assert!(
        changed.contains("-/+ volume/default/sec0-cidata.img")
            && changed
                .contains("source.generated.sha256: \"(sensitive)\" → \"(sensitive, changed)\"")
            && changed.contains("seed content: \"(sensitive)\" → \"(sensitive, changed)\""),
        "{changed}"
    );
    for args in [
        vec!["diff", "--format", "json"],
        vec!["apply", "--yes", "-v"],
    ] {
        let (ok, text) = run(&args);
        assert!(ok, "plan {args:?}: {text}");
        outputs.push((format!("plan {args:?} (changed password)"), text));
    }
    outputs.push(("the first diff".into(), changed));

    for (what, text) in &outputs {
        assert_hidden(what, text);
        for digest in [&first, &second] {
            assert!(
                !text.contains(&digest[..16]),
                "{what} shows a seed's digest:\n{text}"
            );
        }
        let shown = digests_in(text);
        if what == "the saved plan" {
            // Its own fingerprints (of the plan file, the parameters without secrets, and the
            // live state without digests), and nothing else.
            assert_eq!(shown.len(), 3, "{what}: {shown:?}\n{text}");
        } else {
            assert!(shown.is_empty(), "{what} shows digests {shown:?}:\n{text}");
        }
    }
}

/// Copies the fixture plan `name` (and the key files it reads) into a lab directory of its own.
fn lab_with(tmp: &Path, name: &str) -> std::path::PathBuf {
    let lab = tmp.join("lab");
    std::fs::create_dir_all(lab.join("keys")).expect("lab");
    let fixtures = crate::harness::root().join("tests/fixtures/secrets");
    for file in [name, "keys/id_ed25519"] {
        std::fs::copy(fixtures.join(file), lab.join(file)).expect("copy");
    }
    lab.join(name)
}

#[test]
fn kcli_secret_names_and_keys_of_several_lines_never_show_and_no_name_is_hidden() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sandbox = tmp.path().join("sandbox");
    let site = lab_with(tmp.path(), "kcli-names.yml");
    let site_arg = site.to_string_lossy().into_owned();
    let saved = tmp.path().join("saved.plan");
    let saved_arg = saved.to_string_lossy().into_owned();
    let mut outputs = Vec::new();
    for args in [
        vec!["validate"],
        vec!["render"],
        vec!["diff"],
        vec!["diff", "--format", "json"],
        vec!["diff", "--format", "markdown"],
        vec!["diff", "--out", saved_arg.as_str()],
        vec!["apply", "--yes", "-v"],
        vec!["status", "-o", "json"],
        vec!["output", "--format", "ssh-config", "--user", "debian"],
        vec!["output", "--format", "ansible", "--user", "debian"],
        vec!["output", "--format", "hosts"],
        vec!["output", "--format", "json", "--user", "debian"],
        vec!["info"],
    ] {
        let mut all = args.clone();
        all.push(site_arg.as_str());
        if args[0] == "info" {
            all.push("debian1");
        }
        if args[0] != "validate" && args[0] != "render" {
            all.extend(["--provider", "sandbox"]);
        }
        let (ok, text) = plan(&sandbox, &all);
        assert!(ok, "plan {args:?}: {text}");
        assert!(
            !text.contains("PLANTED"),
            "plan {args:?} shows a secret:\n{text}"
        );
        outputs.push(text);
    }
    let file = std::fs::read_to_string(&saved).expect("saved plan");
    assert!(!file.contains("PLANTED"), "the saved plan:\n{file}");
    // The sandbox's state holds the pool's ledger, whose marks keep the seed's review text.
    let state = std::fs::read_to_string(sandbox.join("state.json")).expect("state");
    assert!(
        state.contains("siteplan-ledger.json"),
        "the pool has a ledger"
    );
    assert!(
        !state.contains("PLANTED"),
        "the sandbox's state shows a secret"
    );

    // Each secret is hidden where it is, and only there.
    let diff = &outputs[2];
    for shown in [
        "echo debian:(sensitive) | chpasswd",
        "useradd -m debian",
        "apt-get install -y debian-keyring",
        "--activationkey (sensitive) --org 1234",
        "https://x:(sensitive)@github.com/org/repo",
        "hostname: debian1",
        "password: (sensitive)",
        "content: Welcome to debian1, user debian",
        "pool:     \"debian\"",
        "+ vm/debian1",
    ] {
        assert!(diff.contains(shown), "the diff lacks {shown:?}:\n{diff}");
    }
    let rendered = &outputs[1];
    assert!(
        rendered.contains("rootpassword: (sensitive)\n"),
        "{rendered}"
    );
    assert!(rendered.contains("  pool: debian\n"), "{rendered}");
    for (i, text) in outputs.iter().enumerate().skip(7) {
        assert!(
            !text.contains(secrets_shown_as()),
            "output {i} hides a name:\n{text}"
        );
    }
    assert!(outputs[8].contains("Host debian1") && outputs[8].contains("User debian"));
}

/// What a hidden secret shows as.
fn secrets_shown_as() -> &'static str {
    siteplan::secrets::SENSITIVE
}

/// An image behind a login (`https://user:password@host/...`): the password is a secret by
/// where it is, short or long, in every output and in the marks; the rest of the URL shows.
#[test]
fn a_password_in_an_image_url_never_shows() {
    let lab = crate::harness::SandboxLab::new(
        "login.yml",
        "img:\n  type: image\n  url: https://alice:pw-LOGIN-7@images.example.org/debian.qcow2\n\
         vm1:\n  image: img\n  memory: 256\n  cloudinit: false\n  nets: []\n",
    );
    let saved = lab.dir.path().join("reviewed.plan");
    for format in ["human", "json", "markdown"] {
        let diff = lab.plan(
            &[
                "diff",
                "--format",
                format,
                "--out",
                &saved.to_string_lossy(),
            ],
            &[],
        );
        assert!(diff.ok(), "{}", diff.text());
        assert!(
            !diff.text().contains("pw-LOGIN-7"),
            "{format}:\n{}",
            diff.text()
        );
        assert!(
            diff.stdout.contains("images.example.org/debian.qcow2"),
            "{format}:\n{}",
            diff.stdout
        );
        let kept = std::fs::read_to_string(&saved).expect("the saved plan");
        assert!(!kept.contains("pw-LOGIN-7"), "the saved plan:\n{kept}");
        let _ = std::fs::remove_file(&saved);
    }
    // Applied (the sandbox downloads nothing): the marks keep the URL without its password,
    // and the plan, password and all, matches them.
    let applied = lab.plan(&["apply", "--yes"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    assert!(!applied.text().contains("pw-LOGIN-7"), "{}", applied.text());
    let mut files = vec![lab.sandbox()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(
                std::fs::read_dir(&path)
                    .expect("a directory")
                    .flatten()
                    .map(|e| e.path()),
            );
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("pw-LOGIN-7"),
                "{} holds the password",
                path.display()
            );
        }
    }
    let again = lab.plan(&["diff", "--detailed-exitcode"], &[]);
    assert_eq!(again.code(), Some(0), "{}", again.text());
    let rendered = Plan::new(&["render", &lab.file.to_string_lossy()]).run();
    assert!(rendered.ok(), "{}", rendered.text());
    assert!(
        rendered.stdout.contains("images.example.org"),
        "{}",
        rendered.stdout
    );
    assert!(
        !rendered.text().contains("pw-LOGIN-7"),
        "{}",
        rendered.text()
    );
}
