//! Running the real `plan` binary, one way for every test; and the real libvirtd, one test at
//! a time.
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)] // a test's own report, not plan output

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};

/// The repository's root, where `tests/fixtures` and `examples` are.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `plan ARGS`, run from the repository's root with colours off; add what the test needs.
pub struct Plan {
    cmd: std::process::Command,
}

impl Plan {
    pub fn new(args: &[&str]) -> Plan {
        let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin!("plan"));
        // The kcli configuration of whoever runs the tests is not theirs to read.
        cmd.current_dir(root())
            .env("NO_COLOR", "1")
            .env("SITEPLAN_NO_KCLI_CONFIG", "1")
            .args(args);
        Plan { cmd }
    }

    /// Reads the kcli configuration in `home`/.kcli, as a kcli user's `plan` does.
    pub fn kcli_home(mut self, home: &Path) -> Plan {
        self.cmd
            .env_remove("SITEPLAN_NO_KCLI_CONFIG")
            .env("HOME", home);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Plan {
        self.cmd.args(args);
        self
    }

    /// One argument that is a path.
    pub fn arg_path(mut self, path: &Path) -> Plan {
        self.cmd.arg(path);
        self
    }

    /// `-P` for each `key=value`.
    pub fn params(mut self, params: &[&str]) -> Plan {
        for p in params {
            self.cmd.args(["-P", p]);
        }
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) -> Plan {
        self.cmd.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Plan {
        self.cmd.env_remove(key);
        self
    }

    /// A providers file, and where provider ids are remembered (`XDG_STATE_HOME=state`).
    pub fn providers(self, file: &Path, state: &Path) -> Plan {
        self.env("SITEPLAN_PROVIDERS", file)
            .env("XDG_STATE_HOME", state)
    }

    /// The sandbox `plan` uses (`SITEPLAN_SANDBOX_DIR`).
    pub fn sandbox(self, dir: &Path) -> Plan {
        self.env("SITEPLAN_SANDBOX_DIR", dir)
    }

    pub fn current_dir(mut self, dir: &Path) -> Plan {
        self.cmd.current_dir(dir);
        self
    }

    /// Starts it and returns at once, its output thrown away (to kill it meanwhile).
    pub fn spawn(mut self) -> std::process::Child {
        self.cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("plan starts")
    }

    /// Starts it with pipes for stdin, stdout and stderr (to talk to it meanwhile).
    pub fn spawn_piped(mut self) -> std::process::Child {
        self.cmd
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("plan starts")
    }

    pub fn run(mut self) -> Ran {
        let out = self.cmd.output().expect("plan runs");
        Ran {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// What a run of `plan` did.
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// stdout, then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A line for whoever reads the test log, shown even when the test passes: the test harness
/// captures what `eprintln!` prints, not what is written to stderr itself.
pub fn report(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

static LIBVIRTD: Mutex<()> = Mutex::new(());

/// The real libvirtd's URI, held by this test alone until the guard drops (the tests that use
/// it share its networks, pools and names); `None`, saying so, when none is configured
/// (`SITEPLAN_TEST_LIBVIRT_URI`), and the test is skipped.
pub fn libvirtd(test: &str) -> Option<(MutexGuard<'static, ()>, String)> {
    let Some(uri) = std::env::var("SITEPLAN_TEST_LIBVIRT_URI")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        report(&format!(
            "SKIPPED {test}: SITEPLAN_TEST_LIBVIRT_URI is not set \
             (.ci/run starts libvirtd and sets it to qemu:///system)"
        ));
        return None;
    };
    Some((LIBVIRTD.lock().unwrap_or_else(|p| p.into_inner()), uri))
}

/// A libvirt host of its own in namespaces (`.ci/hosts`): its name, its `qemu+ssh://` URI and
/// the local URI of the same daemon (through its socket), for looking at it from the tests.
pub struct TestHost {
    pub name: String,
    pub uri: String,
    pub local: String,
}

/// The namespace hosts `.ci/hosts start` made, from the list it printed (the file
/// `SITEPLAN_TEST_HOSTS` names), with their host keys trusted in known_hosts, held as `libvirtd`
/// holds the machine's (their guests take the same two cores); `None`, saying so, without it.
pub fn hosts(test: &str) -> Option<(MutexGuard<'static, ()>, Vec<TestHost>)> {
    let Some(list) = std::env::var_os("SITEPLAN_TEST_HOSTS").filter(|l| !l.is_empty()) else {
        report(&format!(
            "SKIPPED {test}: SITEPLAN_TEST_HOSTS is not set (.ci/run starts three libvirt hosts \
             in namespaces with .ci/hosts and sets it)"
        ));
        return None;
    };
    let list = PathBuf::from(list);
    let text = std::fs::read_to_string(&list).unwrap_or_else(|e| panic!("{}: {e}", list.display()));
    let hosts: Vec<TestHost> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(TestHost {
                name: words.next()?.into(),
                uri: words.next()?.into(),
                local: words.next()?.into(),
            })
        })
        .collect();
    let held = LIBVIRTD.lock().unwrap_or_else(|p| p.into_inner());
    // ssh, run by libvirt as this user, checks the hosts' keys against known_hosts.
    let known = list.with_file_name("known_hosts");
    let keys =
        std::fs::read_to_string(&known).unwrap_or_else(|e| panic!("{}: {e}", known.display()));
    trust(&keys.lines().collect::<Vec<_>>());
    report(&format!(
        "{test}: {} libvirt hosts in namespaces ({})",
        hosts.len(),
        hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Some((held, hosts))
}

/// Opens a sandbox this process opened before. Another test's `plan` child shares every open
/// file of this process between its fork and its exec, the sandbox's lock included, so the lock
/// of a sandbox just closed here can outlive the close for that moment: wait it out.
pub fn reopen_sandbox(dir: &Path) -> siteplan::provider::sandbox::Sandbox {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match siteplan::provider::sandbox::Sandbox::open(dir) {
            Ok(sandbox) => return sandbox,
            Err(e) if e.to_string().contains("in use") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => panic!("sandbox {}: {e}", dir.display()),
        }
    }
}

/// Drives `plan console` (started with pipes): presses Enter every few seconds until the
/// console shows `until`, within `within`, then Ctrl-] and waits for `plan` to end. What the
/// console showed, and what `plan` said on stderr; panics, saying what it saw, otherwise.
pub fn drive_console(
    mut attached: std::process::Child,
    until: &str,
    within: std::time::Duration,
) -> (String, String) {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let mut stdout = attached.stdout.take().expect("stdout");
    let (seen, screen) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || seen.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut stdin = attached.stdin.take().expect("stdin");
    let deadline = Instant::now() + within;
    let mut shown = Vec::new();
    let mut next_enter = Instant::now();
    while !String::from_utf8_lossy(&shown).contains(until) {
        if Instant::now() >= deadline || attached.try_wait().ok().flatten().is_some() {
            let _ = attached.kill();
            let mut stderr = String::new();
            let _ = attached
                .stderr
                .take()
                .map(|mut e| e.read_to_string(&mut stderr));
            panic!(
                "the console never showed {until:?}; it showed:\n{}\nplan said:\n{stderr}",
                String::from_utf8_lossy(&shown)
            );
        }
        if Instant::now() >= next_enter {
            let _ = stdin.write_all(b"\r");
            next_enter = Instant::now() + Duration::from_secs(5);
        }
        if let Ok(bytes) = screen.recv_timeout(Duration::from_millis(200)) {
            shown.extend(bytes);
        }
    }
    stdin.write_all(&[0x1d]).expect("Ctrl-]");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = attached.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = attached.kill();
            panic!("Ctrl-] did not detach from the console");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    let _ = attached
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert!(status.success(), "plan console failed: {stderr}");
    (String::from_utf8_lossy(&shown).into_owned(), stderr)
}

/// The real libvirtd over ssh (`SITEPLAN_TEST_SSH_URI`, a `qemu+ssh://` URI to the sshd that
/// `.ci/sshd` starts on 127.0.0.1) and the local URI of the same daemon, held as `libvirtd`
/// holds it, with the sshd's host key trusted in known_hosts; `None`, saying so, when no
/// sshd is configured.
pub fn ssh_libvirtd(test: &str) -> Option<(MutexGuard<'static, ()>, String, String)> {
    let Some(ssh) = std::env::var("SITEPLAN_TEST_SSH_URI")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        report(&format!(
            "SKIPPED {test}: SITEPLAN_TEST_SSH_URI is not set \
             (.ci/run starts an sshd on 127.0.0.1 with .ci/sshd and sets it)"
        ));
        return None;
    };
    let (held, local) = libvirtd(test)?;
    report(&format!("{test}: remote libvirt over ssh at {ssh}"));
    trust_test_host(Some(&test_host_key()));
    Some((held, ssh, local))
}

/// The test sshd's host key line (`ssh-ed25519 AAAA…`).
pub fn test_host_key() -> String {
    let path = std::env::var("SITEPLAN_TEST_SSH_HOST_KEY")
        .unwrap_or_else(|_| "/tmp/siteplan-sshd/host_ed25519.pub".into());
    let line = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// How known_hosts names the test sshd: `[127.0.0.1]:PORT`.
pub fn test_host_name() -> String {
    let uri = std::env::var("SITEPLAN_TEST_SSH_URI").unwrap_or_default();
    siteplan::provider::libvirt::hostkey::SshTarget::of(&uri)
        .map(|target| target.known_hosts_name())
        .unwrap_or_default()
}

/// Makes known_hosts hold `key` for the test sshd, or nothing for it: what ssh, run by
/// libvirt as this user, checks.
pub fn trust_test_host(key: Option<&str>) {
    let name = test_host_name();
    match key {
        Some(key) => trust(&[&format!("{name} {key}")]),
        None => {
            let _ = std::process::Command::new("ssh-keygen")
                .args(["-R", &name])
                .output();
        }
    }
}

/// Makes known_hosts hold these lines (`NAME TYPE KEY`), and no other key for their names.
fn trust(lines: &[&str]) {
    for name in lines.iter().filter_map(|l| l.split_whitespace().next()) {
        let _ = std::process::Command::new("ssh-keygen")
            .args(["-R", name])
            .output();
    }
    let home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    let _ = std::fs::create_dir_all(home.join(".ssh"));
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join(".ssh/known_hosts"))
        .expect("known_hosts");
    for line in lines {
        writeln!(file, "{line}").expect("known_hosts written");
    }
}

/// A plan file in a temporary directory, run on a sandbox (and a state directory) of its own
/// there.
pub struct SandboxLab {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
}

impl SandboxLab {
    /// Writes `text` as the plan file `name`.
    pub fn new(name: &str, text: &str) -> SandboxLab {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join(name);
        std::fs::write(&file, text).expect("plan");
        SandboxLab { dir, file }
    }

    pub fn sandbox(&self) -> PathBuf {
        self.dir.path().join("sandbox")
    }

    /// `plan ARGS FILE --provider sandbox EXTRA`, not run yet.
    pub fn command(&self, args: &[&str], extra: &[&str]) -> Plan {
        Plan::new(args)
            .sandbox(&self.sandbox())
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .args(&[&self.file.to_string_lossy(), "--provider", "sandbox"])
            .args(extra)
    }

    pub fn plan(&self, args: &[&str], extra: &[&str]) -> Ran {
        self.command(args, extra).run()
    }
}
