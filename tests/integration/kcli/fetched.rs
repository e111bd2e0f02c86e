//! kcli plans that name what is fetched: plans included by URL, kernels by URL, served from 127.0.0.1.

use super::*;

/// Serves the files under `dir` over HTTP on 127.0.0.1 until dropped; `url` is its root.
struct Served {
    url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn serve_dir(dir: &std::path::Path) -> Served {
    use axum::http::{StatusCode, Uri};
    let dir = std::sync::Arc::new(dir.to_path_buf());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let app = axum::Router::new().fallback(move |uri: Uri| {
                let dir = dir.clone();
                async move {
                    let file = dir.join(uri.path().trim_start_matches('/'));
                    match std::fs::read(file) {
                        Ok(bytes) => (StatusCode::OK, bytes),
                        Err(_) => (StatusCode::NOT_FOUND, Vec::new()),
                    }
                }
            });
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
    });
    Served { url, _stop: stop }
}

#[test]
fn a_plan_included_by_url_is_fetched_with_its_files_and_can_be_pinned() {
    let served = tempfile::tempdir().expect("tempdir");
    let web = served.path().join("labs/web");
    std::fs::create_dir_all(&web).expect("dir");
    write(
        &web,
        "kcli_plan.yml",
        "parameters:\n  greeting: hello\nweb1:\n  memory: {{ memory }}\n  scripts:\n  - setup.sh\n",
    );
    write(&web, "kcli_default.yml", "memory: 1024\n");
    write(
        &web,
        "setup.sh",
        "#!/bin/sh\necho {{ greeting }} from {{ name }}\n",
    );
    write(
        &web,
        "climbs.yml",
        "web2:\n  scripts:\n  - ../../secret.sh\n",
    );
    let server = serve_dir(served.path());

    let work = tempfile::tempdir().expect("tempdir");
    let cache = work.path().join("cache");
    let lab = |name: &str, include: &str| {
        let text =
            format!("net1:\n  type: network\n  cidr: 10.77.0.0/24\nweb:\n  type: plan\n{include}");
        write(work.path(), name, &text);
        work.path().join(name)
    };
    let run = |args: &[&str], file: &std::path::Path| {
        Plan::new(args)
            .arg_path(file)
            .env("SITEPLAN_ALLOW_FETCH", "1")
            .env("XDG_CACHE_HOME", &cache)
            .sandbox(&work.path().join("sandbox"))
            .run()
    };

    // Unpinned: fetched (a directory means its kcli_plan.yml, with its default parameters),
    // and a warning gives the digest to pin.
    let unpinned = lab("lab.yml", &format!("  url: {}/labs/web\n", server.url));
    // Not allowed: nothing is fetched, and the error says how to allow it.
    let refused = Plan::new(&["validate"])
        .arg_path(&unpinned)
        .env("XDG_CACHE_HOME", &cache)
        .run();
    assert_eq!(refused.code(), Some(1), "{}", refused.stderr);
    assert!(
        flat(&refused.stderr).contains("SITEPLAN_ALLOW_FETCH=1"),
        "{}",
        refused.stderr
    );
    let validated = run(&["validate"], &unpinned);
    assert!(validated.ok(), "{}", validated.stderr);
    let said = flat(&validated.stderr);
    assert!(said.contains("without a `sha256` pin"), "{said}");
    let digest = said
        .split("`sha256: ")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .expect("the digest to pin")
        .to_string();
    assert_eq!(digest.len(), 64, "{said}");
    let strict = run(&["validate", "--strict"], &unpinned);
    assert_eq!(strict.code(), Some(1), "--strict wants a pin");

    // Pinned with that digest: no warning, and the lab applies with the fetched script.
    let pinned = lab(
        "pinned.yml",
        &format!("  url: {}/labs/web\n  sha256: {digest}\n", server.url),
    );
    let applied = run(&["apply", "--provider", "sandbox", "--yes"], &pinned);
    assert!(applied.ok(), "{}", applied.stderr);
    assert!(!applied.stderr.contains("sha256"), "{}", applied.stderr);
    let provider = crate::harness::reopen_sandbox(&work.path().join("sandbox"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let seed = runtime
        .block_on(provider.read_volume("default", "web1-cidata.img"))
        .expect("the seed");
    let user_data = read_seed_file(&seed, "user-data").expect("user-data");
    assert!(user_data.contains("echo hello from web1"), "{user_data}");

    // The plan changed upstream: the pin refuses it, and nothing changes.
    write(&web, "kcli_plan.yml", "web1:\n  memory: 4096\n");
    let changed = run(&["apply", "--provider", "sandbox", "--yes"], &pinned);
    assert_eq!(changed.code(), Some(1));
    let said = flat(&changed.stderr);
    assert!(
        said.contains(&format!(
            "but the plan pins {digest}: it changed since it was pinned"
        )),
        "{said}"
    );

    // Not there, not http(s), or naming a file above its own URL: refused, saying why.
    for (name, include, expected) in [
        (
            "gone.yml",
            format!("  url: {}/labs/gone\n", server.url),
            "labs/gone/kcli_plan.yml: http status: 404".to_string(),
        ),
        (
            "local.yml",
            "  url: file:///etc/hostname\n".to_string(),
            "is not an http(s) URL".to_string(),
        ),
        (
            "climbs.yml",
            format!("  url: {}/labs/web/climbs.yml\n", server.url),
            "../../secret.sh: only files under the plan's own URL are fetched".to_string(),
        ),
    ] {
        let file = lab(name, &include);
        let out = run(&["validate"], &file);
        assert_eq!(out.code(), Some(1), "{name}: {}", out.stderr);
        let said = flat(&out.stderr);
        assert!(said.contains(&expected), "{name}: {said}");
    }
}

#[test]
fn a_kernel_given_by_url_is_fetched_into_the_pool_once() {
    let served = tempfile::tempdir().expect("tempdir");
    std::fs::write(served.path().join("vmlinuz"), b"kernel").expect("kernel");
    std::fs::write(served.path().join("initrd.img"), b"initrd").expect("initrd");
    let server = serve_dir(served.path());
    let work = tempfile::tempdir().expect("tempdir");
    let url = &server.url;
    write(
        work.path(),
        "boot.yml",
        &format!(
            "vm1:\n  kernel: {url}/vmlinuz\n  initrd: {url}/initrd.img\n  cmdline: console=ttyS0\n\
             vm2:\n  kernel: {url}/vmlinuz\n"
        ),
    );
    let plan = work.path().join("boot.yml");
    // One image per URL, named after its file; both VMs boot the same kernel.
    let graph = Plan::new(&["graph"]).arg_path(&plan).run();
    assert!(graph.ok(), "{}", graph.stderr);
    assert_eq!(
        graph.stdout.matches("image/vmlinuz\n").count(),
        1,
        "{}",
        graph.stdout
    );
    assert!(graph
        .stdout
        .contains("vm/vm2\n  needs image/vmlinuz (kernel/initrd)"));
    let sandbox = work.path().join("sandbox");
    let applied = Plan::new(&["apply", "--provider", "sandbox", "--yes"])
        .arg_path(&plan)
        .sandbox(&sandbox)
        .run();
    assert!(applied.ok(), "{}", applied.stderr);
    // (The sandbox makes an image's volume without downloading it; the provider suite checks
    // downloads on a real libvirtd.)
    assert!(
        applied.stderr.contains("volume/default/vmlinuz ok"),
        "{}",
        applied.stderr
    );
    assert!(
        applied.stderr.contains("volume/default/initrd.img ok"),
        "{}",
        applied.stderr
    );
    let again = Plan::new(&["diff", "--provider", "sandbox", "--detailed-exitcode"])
        .arg_path(&plan)
        .sandbox(&sandbox)
        .run();
    assert_eq!(again.code(), Some(0), "converged: {}", again.stdout);
}
