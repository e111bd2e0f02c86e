//! A plan reads nothing outside its directory's tree unless the user allows it, never a device,
//! a FIFO or /proc, and no file over the size limit: a pull request that edits a plan cannot
//! post the CI runner's files or environment in the review comment. Each case drives the binary.

use std::path::Path;

use crate::harness::{Plan, Ran};

const OUTSIDE: &str = "OUTSIDE-THE-TREE-0201";

fn run(dir: &Path, args: &[&str], extra: &[&str]) -> Ran {
    Plan::new(args)
        .sandbox(&dir.join("sandbox"))
        .env("HOME", dir.join("home"))
        .arg_path(&dir.join("lab/site.yml"))
        .args(&["--provider", "sandbox"])
        .args(extra)
        .run()
}

/// A lab directory, files outside it that hold `OUTSIDE`, and a plan that names `entries`.
fn lab(entries: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    for sub in ["lab", "other", "home"] {
        std::fs::create_dir_all(dir.join(sub)).expect("dir");
    }
    std::fs::write(dir.join("other/x.sh"), format!("echo {OUTSIDE}\n")).expect("file");
    std::fs::write(dir.join("home/.token"), format!("{OUTSIDE}\n")).expect("file");
    std::fs::write(
        dir.join("other/inc.yml"),
        format!("o1:\n  memory: 256\n  cmds: ['echo {OUTSIDE}']\n"),
    )
    .expect("file");
    std::os::unix::fs::symlink(dir.join("other/x.sh"), dir.join("lab/link.sh")).expect("link");
    std::fs::write(dir.join("lab/in.sh"), "echo inside\n").expect("file");
    std::fs::write(dir.join("lab/site.yml"), entries).expect("plan");
    tmp
}

#[test]
fn files_outside_the_plan_are_refused_at_their_line_and_never_shown() {
    let tmp = lab(
        "v1:\n  memory: 256\n  scripts:\n    - in.sh\n    - ../other/x.sh\n    - link.sh\n  files:\n    - path: /etc/a\n      origin: /proc/self/environ\n    - path: /etc/b\n      origin: ~/.token\n    - path: /etc/c\n      origin: /etc/shadow\ninc:\n  type: plan\n  file: ../other/inc.yml\n",
    );
    let dir = tmp.path();
    let validated = Plan::new(&["validate"])
        .env("HOME", dir.join("home"))
        .arg_path(&dir.join("lab/site.yml"))
        .run();
    assert_eq!(validated.code(), Some(1), "{}", validated.text());
    let said = validated.stderr.clone();
    for (line, what) in [
        ("site.yml:5:7", "../other/x.sh"),
        ("site.yml:6:7", "link.sh"),
        ("site.yml:9:15", "/proc"),
        ("site.yml:11:15", ".token"),
        ("site.yml:13:15", "/etc/shadow"),
        ("site.yml:14:1", "plan `inc`"),
    ] {
        assert!(
            said.contains(line),
            "no problem at {line} ({what}):\n{said}"
        );
    }
    assert!(said.contains("has 6 errors"), "{said}");
    assert!(said.contains("--allow-read"), "{said}");
    for args in [
        vec!["diff", "--format", "markdown"],
        vec!["diff", "--format", "json"],
        vec!["apply", "--yes"],
    ] {
        let refused = run(dir, &args, &[]);
        assert_eq!(refused.code(), Some(1), "plan {args:?}: {}", refused.text());
        assert!(
            !refused.text().contains(OUTSIDE),
            "plan {args:?}: {}",
            refused.text()
        );
    }
    assert!(
        !dir.join("sandbox/state.json").exists()
            || !std::fs::read_to_string(dir.join("sandbox/state.json"))
                .expect("state")
                .contains("v1"),
        "nothing was made"
    );
}

#[test]
fn what_the_user_allows_is_read_and_the_system_still_is_not() {
    let tmp = lab("v1:\n  memory: 256\n  scripts:\n    - ../other/x.sh\n  files:\n    - path: /etc/b\n      origin: ~/.token\n");
    let dir = tmp.path();
    let other = dir.join("other").display().to_string();
    let home = dir.join("home").display().to_string();
    let allowed = run(
        dir,
        &["diff", "--format", "markdown"],
        &["--allow-read", &other, "--allow-read", &home],
    );
    assert!(allowed.ok(), "{}", allowed.text());
    assert!(
        allowed.stdout.contains(OUTSIDE),
        "the allowed files are read:\n{}",
        allowed.stdout
    );
    let by_setting = Plan::new(&["diff"])
        .sandbox(&dir.join("sandbox"))
        .env("HOME", dir.join("home"))
        .env("SITEPLAN_ALLOW_READ", format!("{other}:{home}"))
        .arg_path(&dir.join("lab/site.yml"))
        .args(&["--provider", "sandbox"])
        .run();
    assert!(by_setting.ok(), "{}", by_setting.text());

    // Allowing everything still reads no system file, no FIFO, and nothing too large.
    let fifo = dir.join("lab/fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    std::fs::write(dir.join("lab/big.txt"), vec![b'a'; 5 * 1024 * 1024]).expect("big");
    std::fs::write(
        dir.join("lab/site.yml"),
        "v1:\n  memory: 256\n  files:\n    - path: /etc/a\n      origin: /proc/self/environ\n    - path: /etc/b\n      origin: fifo\n    - path: /etc/c\n      origin: /dev/zero\n    - path: /etc/d\n      origin: big.txt\nimg:\n  type: image\n  url: /dev/zero\n",
    )
    .expect("plan");
    let started = std::time::Instant::now();
    let refused = run(dir, &["diff"], &["--allow-read", "/"]);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "it did not hang"
    );
    assert_eq!(refused.code(), Some(1), "{}", refused.text());
    let said = refused.stderr.clone();
    for needed in [
        "is under /proc",
        "is a FIFO",
        "/dev/zero is under /dev",
        "larger than 4 MiB",
    ] {
        assert!(said.contains(needed), "{needed:?}:\n{said}");
    }
    // A parameter file named on the command line may be anywhere, but not in /proc.
    let paramfile = run(dir, &["diff"], &["--paramfile", "/proc/self/environ"]);
    assert_eq!(paramfile.code(), Some(1));
    assert!(
        paramfile.stderr.contains("is under /proc"),
        "{}",
        paramfile.stderr
    );
}
