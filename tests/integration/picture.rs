//! The lab's picture, drawn by the real binary on a sandbox lab with a pending change:
//! `plan graph --view topology` (from the live lab, the plan alone, plan against plan),
//! `plan status -o`, the Mermaid diagram of the pull-request report and the diff's JSON; and
//! the HTML page opened in a real browser (Debian's headless Chromium, with no network), whose
//! screenshot is kept in `target/picture/`.

#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::SandboxLab;

const LAB: &str = include_str!("../../examples/lab.yml");

/// examples/lab.yml with a change: web2 gets more memory (at its next restart), web1's second
/// disk grows (live), and web3 is new.
fn changed() -> String {
    let grown = LAB
        .replacen("  memory: 2048\n", "  memory: 4096\n", 1)
        .replacen("    - size: 5\n", "    - size: 8\n", 1);
    assert_ne!(
        grown, LAB,
        "examples/lab.yml changed: this test's edits no longer apply"
    );
    grown
        + "\nweb3:\n  image: debian12\n  pool: labpool\n  numcpus: 2\n  memory: 2048\n  \
           nets:\n    - labnet\n"
}

/// The example applied to a sandbox of its own, then changed in its file.
fn lab_with_a_change() -> SandboxLab {
    let lab = SandboxLab::new("lab.yml", LAB);
    let applied = lab.plan(&["apply", "--yes"], &[]);
    assert!(applied.ok(), "{}", applied.text());
    std::fs::write(&lab.file, changed()).expect("the changed plan");
    lab
}

fn picture(lab: &SandboxLab, extra: &[&str]) -> Value {
    let mut args = vec!["--view", "topology", "--format", "json"];
    args.extend_from_slice(extra);
    let drawn = lab.plan(&["graph"], &args);
    assert!(drawn.ok(), "{}", drawn.text());
    serde_json::from_str(&drawn.stdout).expect("the picture's JSON")
}

fn node<'a>(picture: &'a Value, address: &str) -> &'a Value {
    picture["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["address"] == address))
        .unwrap_or_else(|| panic!("no {address} in {picture:#}"))
}

#[test]
fn the_picture_draws_the_change_on_the_live_lab() {
    let lab = lab_with_a_change();
    let live = picture(&lab, &[]);
    assert_eq!(live["drawn_from"], "live");
    assert_eq!(live["places"], serde_json::json!(["sandbox"]));
    assert_eq!(node(&live, "vm/web1")["mark"], "unchanged");
    assert_eq!(node(&live, "vm/web1")["state"], "running");
    assert_eq!(node(&live, "vm/web2")["mark"], "waits_restart");
    assert!(
        node(&live, "vm/web2")["why"]
            .as_str()
            .is_some_and(|w| w.contains("memory 2048 MiB → 4096 MiB")),
        "{live:#}"
    );
    assert_eq!(
        node(&live, "volume/labpool/web1_1.img")["mark"],
        "updated_live"
    );
    assert_eq!(node(&live, "vm/web3")["mark"], "added");
    assert_eq!(node(&live, "network/labnet")["state"], "active");
    let links = live["links"].as_array().expect("links");
    assert!(links.contains(&serde_json::json!({
        "from": "sandbox:network/labnet", "to": "sandbox:vm/web3"
    })));

    // `plan status` draws the same lab, with the VMs' addresses.
    let status = lab.plan(&["status"], &["-o", "mermaid"]);
    assert_eq!(status.code(), Some(2), "{}", status.text());
    insta::assert_snapshot!("lab_status_mermaid", status.stdout);
    assert!(status.stdout.contains("192.168.150.11 (static)"));

    // The pull-request report carries it, and the diff's JSON what a tool needs to draw it.
    let markdown = lab.plan(&["diff"], &["--format", "markdown"]);
    assert!(markdown.stdout.contains("```mermaid\nflowchart TB\n"));
    assert!(markdown
        .stdout
        .contains("3 + added, 1 ~ updated live, 1 ~ waits for a restart"));
    let json = lab.plan(&["diff"], &["--format", "json"]);
    let document: Value = serde_json::from_str(&json.stdout).expect("the diff's JSON");
    // (The diff asks for no VM's address: only the marks are the same as the status's.)
    let marks = |picture: &Value| -> Vec<(String, String)> {
        picture["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| (n["key"].to_string(), n["mark"].to_string()))
            .collect()
    };
    assert_eq!(marks(&document["topology"]), marks(&live));

    // An SVG, and an HTML page that asks for nothing from elsewhere.
    let svg = lab.plan(&["graph"], &["--view", "topology"]);
    assert!(svg
        .stdout
        .starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    let page = lab.plan(&["status"], &["-o", "html"]);
    assert!(page.stdout.contains("Content-Security-Policy"));
}

#[test]
fn without_a_provider_it_draws_the_plan_alone_or_against_an_older_one() {
    let lab = lab_with_a_change();
    let alone = picture(&lab, &["--plan-only"]);
    assert_eq!(alone["drawn_from"], "plan");
    for n in alone["nodes"].as_array().expect("nodes") {
        assert_eq!(n["mark"], "unchanged", "{n}");
        assert!(n.get("state").is_none(), "{n}");
    }
    let old = lab.dir.path().join("old.yml");
    std::fs::write(&old, LAB).expect("the old version");
    let against = picture(&lab, &["--against", &old.to_string_lossy()]);
    assert_eq!(against["drawn_from"], "plans");
    assert_eq!(node(&against, "vm/web3")["mark"], "added");
    assert_eq!(node(&against, "vm/web2")["mark"], "waits_restart");
    // The dependency graph is still there, and asks for its own formats.
    let deps = lab.plan(&["graph"], &["--format", "dot"]);
    assert!(deps.stdout.starts_with("digraph"), "{}", deps.text());
    let wrong = lab.plan(&["graph"], &["--format", "svg"]);
    assert_eq!(wrong.code(), Some(1));
    assert!(
        wrong.stderr.contains("add `--view topology`"),
        "{}",
        wrong.text()
    );
}

/// Debian's headless Chromium (`chromium-headless-shell`, which `make test` installs), or its
/// full browser.
fn browser() -> Option<PathBuf> {
    ["chromium-headless-shell", "chromium"]
        .iter()
        .flat_map(|name| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(move |dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .find(|path| path.is_file())
}

/// Runs the browser headless on `page` with no network (every name resolves to nothing, every
/// request goes to a proxy that is not there) and `what` (`--dump-dom`, `--screenshot=FILE`);
/// its standard output and its log.
fn open(browser: &Path, page: &Path, profile: &Path, what: &str) -> (String, String) {
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--proxy-server=127.0.0.1:9",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1600,1000",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("the browser runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_page_opens_in_a_browser_and_shows_every_vm_and_network() {
    let test = "the_page_opens_in_a_browser_and_shows_every_vm_and_network";
    let Some(browser) = browser() else {
        assert!(
            std::env::var("CI").is_err(),
            "{test}: CI must have a browser (make test installs chromium-headless-shell)"
        );
        crate::harness::report(&format!(
            "SKIPPED {test}: no chromium-headless-shell or chromium (make test installs it)"
        ));
        return;
    };
    let lab = lab_with_a_change();
    let page = lab.dir.path().join("lab.html");
    let drawn = lab.plan(
        &["graph"],
        &[
            "--view",
            "topology",
            "--format",
            "html",
            "-o",
            &page.to_string_lossy(),
        ],
    );
    assert!(drawn.ok(), "{}", drawn.text());
    let live = picture(&lab, &[]);

    let profile = lab.dir.path().join("browser");
    let (dom, log) = open(&browser, &page, &profile, "--dump-dom");
    // It loaded without an error: no console message, nothing refused, nothing fetched.
    for bad in ["CONSOLE", "Refused to", "net::ERR_", "Uncaught"] {
        assert!(!log.contains(bad), "the page said `{bad}`:\n{log}");
    }
    for n in live["nodes"].as_array().expect("nodes") {
        if matches!(n["shape"].as_str(), Some("vm" | "network")) {
            let id = format!(
                "id=\"{}\"",
                siteplan::picture::svg::element_id(n["key"].as_str().unwrap_or_default(),)
            );
            assert!(dom.contains(&id), "{} is not on the page", n["key"]);
        }
    }

    // The screenshot shows each mark's colour (each is the fill of a box on the page).
    let shots = crate::harness::root().join("target/picture");
    std::fs::create_dir_all(&shots).expect("target/picture");
    let shot = shots.join("lab-with-a-change.png");
    let _ = std::fs::remove_file(&shot);
    open(
        &browser,
        &page,
        &profile,
        &format!("--screenshot={}", shot.display()),
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("the screenshot"),
    ));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("its size")];
    let frame = reader.next_frame(&mut pixels).expect("its pixels");
    let step = frame.color_type.samples();
    let colours: std::collections::BTreeSet<[u8; 3]> = pixels[..frame.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    for mark in ["added", "updated_live", "waits_restart"] {
        let (fill, _) = siteplan::picture::Mark::ALL
            .iter()
            .find(|m| m.as_str() == mark)
            .expect("a mark")
            .colours();
        let rgb = [1, 3, 5].map(|i| u8::from_str_radix(&fill[i..i + 2], 16).unwrap_or(0));
        assert!(
            colours.contains(&rgb),
            "no {mark} ({fill}) in {}",
            shot.display()
        );
    }
    crate::harness::report(&format!("{test}: the screenshot is {}", shot.display()));
}

#[test]
fn a_kubevirt_lab_is_drawn_from_its_objects() {
    let tmp = tempfile::tempdir().expect("tmp");
    let providers = tmp.path().join("providers.yml");
    // Planned as KubeVirt plans, with no cluster asked (`--plan-only`).
    std::fs::write(
        &providers,
        "providers:\n  - {name: kv, type: kubevirt, kubeconfig: /nonexistent, namespace: lab}\n",
    )
    .expect("providers file");
    let drawn = crate::harness::Plan::new(&["graph"])
        .env("SITEPLAN_PROVIDERS", &providers)
        .args(&["examples/kubevirt-lab.yml", "--provider", "kv"])
        .args(&["--view", "topology", "--plan-only", "--format", "json"])
        .run();
    assert!(drawn.ok(), "{}", drawn.text());
    let picture: Value = serde_json::from_str(&drawn.stdout).expect("JSON");
    assert_eq!(picture["places"], serde_json::json!(["kv"]));
    let shape = |address: &str| node(&picture, address)["shape"].clone();
    assert_eq!(shape("virtualmachine/node1"), "vm");
    assert_eq!(shape("networkattachmentdefinition/kvnet"), "network");
    let links = picture["links"].as_array().expect("links");
    assert!(
        links.contains(&serde_json::json!({
            "from": "kv:networkattachmentdefinition/kvnet", "to": "kv:virtualmachine/node1"
        })),
        "{picture:#}"
    );
}
