//! Tunnels: one host's end of a plan network that spans hosts (see `TunnelSpec`).
//!
//! libvirt's API makes no VXLAN device, so a tunnel is made by commands on the host (`ip`,
//! `bridge`, from iproute2), run over the ssh the `qemu+ssh://` URI already uses, or here when
//! the URI is this machine's. What the tunnel is, and whose, is kept on the host in a network
//! hook of libvirt's (`/etc/libvirt/hooks/network.d/siteplan-tunnel-NETWORK`): a script that
//! makes the tunnel again each time the network starts (libvirt makes a network's bridge anew
//! on every start, which drops its ports), holding the tunnel's mark in a comment. libvirt
//! runs hooks only of the kinds it found when it started; until it restarts, a restarted
//! network is joined again by the next `plan apply`, whose diff shows the tunnel detached.
//!
//! The sandbox keeps its tunnels in its directory instead (`HostLinks`).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;

use super::hostkey::SshTarget;
use super::{check_owner, Inner};
use crate::plan::model::spec::{ResourceId, ResourceKind, Spec, TunnelSpec};
use crate::provider::{LiveResource, Observed, Owner, OwnerMark, ProviderError, Scope};

/// Where a host keeps its tunnels' definitions: libvirt's network hooks.
const HOOK_DIR: &str = "/etc/libvirt/hooks/network.d";
/// The VXLAN port (IANA's).
pub const VXLAN_PORT: u16 = 4789;
/// How long one round of commands on a host may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// One tunnel found on a host: its mark, and its device as the host has it (none when the
/// device is gone, as after the host restarted without the hook running).
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub mark: OwnerMark,
    pub device: Option<Device>,
}

/// A VXLAN device as the host has it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Device {
    pub vni: u32,
    pub local: String,
    /// The bridge it is a port of, if any.
    pub master: Option<String>,
    /// Where it floods to (its all-zero forwarding entries), sorted.
    pub peers: Vec<String>,
}

/// Whether the host's libvirt runs the tunnel's hook when the network starts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookRuns {
    Yes,
    /// libvirt found no network hook when it started: it runs this one once it restarts.
    AfterRestart,
    /// The host did not say (no daemon's pid file, or no `ps`).
    Unknown,
}

/// What makes and finds tunnels on one host.
pub trait HostLinks: Send + Sync {
    /// Makes the tunnel as `spec` says (or mends it: what is there already is kept), and keeps
    /// its definition, with `mark`, on the host; whether libvirt there will run it.
    fn up(&self, spec: &TunnelSpec, mark: &OwnerMark) -> Result<HookRuns, String>;
    /// Removes the tunnel's device, the bridge it made, and its definition.
    fn down(&self, spec: &TunnelSpec) -> Result<(), String>;
    /// Every tunnel of siteplan's on the host.
    fn probe(&self) -> Result<Vec<Found>, String>;
}

/// The tunnel as observed: the device's own facts where it is there, else the mark's with no
/// bridge and no peers, which the diff shows as a tunnel to mend.
pub fn live(found: &Found) -> Option<LiveResource> {
    let Spec::Tunnel(recorded) = &found.mark.spec else {
        return None;
    };
    let spec = match &found.device {
        Some(device) => TunnelSpec {
            bridge: device.master.clone().unwrap_or_default(),
            vni: device.vni,
            local: device.local.clone(),
            peers: device.peers.clone(),
            ..recorded.clone()
        },
        None => TunnelSpec {
            bridge: String::new(),
            peers: Vec::new(),
            ..recorded.clone()
        },
    };
    Some(LiveResource {
        spec: Spec::Tunnel(spec),
        owner: Some(found.mark.clone()),
        active: found.device.is_some(),
        empty: None,
        pending_restart: Vec::new(),
        paused: false,
    })
}

/// A Linux interface name siteplan will put in a command: at most 15 bytes, of letters,
/// digits, `-`, `_` and `.`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check(spec: &TunnelSpec) -> Result<(), String> {
    for name in [&spec.bridge, &spec.device] {
        if !valid_ifname(name) {
            return Err(format!(
                "`{name}` cannot name a Linux interface (at most 15 letters, digits, `-`, `_` or \
                 `.`)"
            ));
        }
    }
    for address in std::iter::once(&spec.local).chain(&spec.peers) {
        if address.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("`{address}` is not an IP address"));
        }
    }
    if !valid_ifname(&spec.network) {
        return Err(format!(
            "network `{}`: a network that spans hosts needs a name that can name a file and an \
             interface (letters, digits, `-`, `_`, `.`; at most 15)",
            spec.network
        ));
    }
    Ok(())
}

/// Says (`HOOKS yes|after-restart|unknown`) whether the host's libvirt daemon runs network
/// hooks: it does when one was there before it started (it looks only then). Asked before the
/// tunnel's own hook is written, which would look newer than the daemon.
const HOOKS_ACTIVE: &str = r#"started=''
for f in /run/libvirt/virtnetworkd.pid /run/libvirt/libvirtd.pid; do
  [ -r "$f" ] || continue
  age=$(ps -o etimes= -p "$(cat "$f")" 2>/dev/null | tr -d ' ')
  if [ -n "$age" ]; then started=$(( $(date +%s) - age )); break; fi
done
if [ -z "$started" ]; then echo 'HOOKS unknown'; else
  runs=after-restart
  for f in /etc/libvirt/hooks/network /etc/libvirt/hooks/network.d/*; do
    if [ -f "$f" ] && [ -x "$f" ] && [ "$(stat -c %Y "$f")" -lt "$started" ]; then runs=yes; fi
  done
  echo "HOOKS $runs"
fi
"#;

/// Reads `HOOKS_ACTIVE`'s answer.
fn hook_runs(out: &str) -> HookRuns {
    match out.lines().find_map(|l| l.strip_prefix("HOOKS ")) {
        Some("yes") => HookRuns::Yes,
        Some("after-restart") => HookRuns::AfterRestart,
        _ => HookRuns::Unknown,
    }
}

fn hook_path(network: &str) -> String {
    format!("{HOOK_DIR}/siteplan-tunnel-{network}")
}

/// The commands that make (or mend) the tunnel: each step only where it is missing, so that
/// they run again safely, at every network start.
fn up_commands(spec: &TunnelSpec) -> String {
    let (bridge, device) = (&spec.bridge, &spec.device);
    let mut s = String::new();
    if spec.makes_bridge {
        s += &format!(
            "ip link show dev {bridge} >/dev/null 2>&1 || ip link add {bridge} type bridge\n\
             ip link set {bridge} up\n"
        );
    }
    s += &format!(
        "ip link show dev {device} >/dev/null 2>&1 || ip link add {device} type vxlan id {vni} \
         local {local} dstport {VXLAN_PORT}\n\
         if ip link show dev {bridge} >/dev/null 2>&1; then ip link set {device} master \
         {bridge}; fi\n\
         ip link set {device} up\n",
        vni = spec.vni,
        local = spec.local,
    );
    let peers = spec.peers.join(" ");
    s += &format!(
        "for peer in {peers}; do bridge fdb append 00:00:00:00:00:00 dev {device} dst \"$peer\" \
         2>/dev/null || true; done\n\
         bridge fdb show dev {device} | while read -r mac word dst _; do\n  \
         [ \"$mac\" = 00:00:00:00:00:00 ] && [ \"$word\" = dst ] || continue\n  \
         case \" {peers} \" in *\" $dst \"*) ;; *) bridge fdb del 00:00:00:00:00:00 dev {device} \
         dst \"$dst\" ;; esac\n\
         done\n"
    );
    s
}

/// The hook file: the tunnel's definition on the host, which libvirt runs as the network
/// starts. It never fails: a hook that fails stops the network from starting.
fn hook_file(spec: &TunnelSpec, mark: &OwnerMark) -> Result<String, String> {
    let mark = serde_json::to_string(mark).map_err(|e| e.to_string())?;
    Ok(format!(
        "#!/bin/sh\n\
         # A tunnel of siteplan's: joins network {network} on this host to its other hosts.\n\
         # libvirt runs it as the network starts; `plan destroy` removes it.\n\
         # siteplan-device: {device}\n\
         # siteplan-mark: {mark}\n\
         [ \"$1\" = {network} ] || exit 0\n\
         case \"$2\" in start|started) ;; *) exit 0 ;; esac\n\
         {up}\
         exit 0\n",
        network = spec.network,
        device = spec.device,
        up = up_commands(spec),
    ))
}

/// What runs the commands: ssh to the host, this machine, or nothing (with why).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runner {
    Ssh { args: Vec<String> },
    Local,
    Unreachable(String),
}

impl Runner {
    /// How commands reach the host of the libvirt URI `uri`.
    pub fn of(uri: &str) -> Runner {
        let query = uri.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query
                .split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .map(str::to_string)
        };
        if let Some(target) = SshTarget::of(uri) {
            let authority = uri
                .split_once("://")
                .map_or("", |(_, rest)| rest)
                .split(['/', '?'])
                .next()
                .unwrap_or_default();
            let user = authority.rsplit_once('@').map(|(user, _)| user.to_string());
            let mut args = vec![
                "-o".to_string(),
                "BatchMode=yes".to_string(),
                "-o".to_string(),
                "ConnectTimeout=10".to_string(),
            ];
            if let Some(port) = target.port {
                args.extend(["-p".to_string(), port.to_string()]);
            }
            if let Some(key) = param("keyfile") {
                args.extend(["-i".to_string(), key]);
            }
            if let Some(known) = param("known_hosts") {
                args.extend(["-o".to_string(), format!("UserKnownHostsFile={known}")]);
            }
            if param("no_verify").as_deref() == Some("1") {
                args.extend([
                    "-o".to_string(),
                    "StrictHostKeyChecking=no".to_string(),
                    "-o".to_string(),
                    "UserKnownHostsFile=/dev/null".to_string(),
                ]);
            }
            if let Some(user) = &user {
                args.extend(["-l".to_string(), user.clone()]);
            }
            // A run asks a host several times (probe, make, probe again): one connection,
            // kept a little while for the next, instead of a handshake each time.
            if let Some(dir) = control_dir() {
                args.extend([
                    "-o".to_string(),
                    "ControlMaster=auto".to_string(),
                    "-o".to_string(),
                    format!("ControlPath={}/%C", dir.display()),
                    "-o".to_string(),
                    "ControlPersist=30".to_string(),
                ]);
            }
            args.push(target.host.clone());
            args.push("--".to_string());
            // Root runs them; anyone else through sudo, without a password.
            args.push(match user.as_deref() {
                Some("root") => "sh -s".to_string(),
                _ => "if [ \"$(id -u)\" = 0 ]; then sh -s; else sudo -n sh -s; fi".to_string(),
            });
            return Runner::Ssh { args };
        }
        let local = uri.starts_with("qemu:///") || uri.starts_with("qemu+unix:///");
        if local && param("socket").is_none() {
            return Runner::Local;
        }
        Runner::Unreachable(format!(
            "{uri} is reached through a socket, and siteplan cannot run commands on the host \
             behind it: give the host as qemu+ssh://"
        ))
    }

    /// Runs `script` with `sh` on the host, as root; its standard output.
    fn run(&self, script: &str) -> Result<String, String> {
        let mut command = match self {
            Runner::Unreachable(why) => return Err(why.clone()),
            Runner::Ssh { args } => {
                let mut c = Command::new("ssh");
                c.args(args);
                c
            }
            Runner::Local if rustix::process::geteuid().is_root() => {
                let mut c = Command::new("sh");
                c.arg("-s");
                c
            }
            Runner::Local => {
                let mut c = Command::new("sudo");
                c.args(["-n", "sh", "-s"]);
                c
            }
        };
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {:?}: {e}", command.get_program()))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(format!("set -e\n{script}").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let (done, output) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(child.wait_with_output());
        });
        let output = output
            .recv_timeout(COMMAND_TIMEOUT)
            .map_err(|_| {
                format!(
                    "the host did not finish its commands within {} s",
                    COMMAND_TIMEOUT.as_secs()
                )
            })?
            .map_err(|e| e.to_string())?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!(
                "commands on the host failed ({}): {}",
                output.status,
                stderr.trim()
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Where ssh keeps its shared connections: a directory of the user's own (`0700`), short
/// enough for a socket's path; none (no sharing) if it cannot be made.
fn control_dir() -> Option<std::path::PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = crate::files::state_dir().join("ssh");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .ok()?;
    let private = std::fs::metadata(&dir)
        .ok()
        .is_some_and(|m| m.permissions().mode() & 0o077 == 0);
    // A socket's path holds at most 108 bytes; %C is 40.
    (private && dir.as_os_str().len() < 60).then_some(dir)
}

/// Tunnels made by commands on the host (`Runner`).
pub struct Shell(pub Runner);

impl HostLinks for Shell {
    fn up(&self, spec: &TunnelSpec, mark: &OwnerMark) -> Result<HookRuns, String> {
        check(spec)?;
        let file = hook_file(spec, mark)?;
        let encoded = base64::engine::general_purpose::STANDARD.encode(file);
        let path = hook_path(&spec.network);
        let out = self.0.run(&format!(
            "{hooks}\
             mkdir -p {HOOK_DIR}\n\
             printf %s '{encoded}' | base64 -d > {path}.new\n\
             chmod 0755 {path}.new\n\
             mv {path}.new {path}\n\
             {up}",
            hooks = HOOKS_ACTIVE,
            up = up_commands(spec),
        ))?;
        Ok(hook_runs(&out))
    }

    fn down(&self, spec: &TunnelSpec) -> Result<(), String> {
        check(spec)?;
        let gone = |name: &str| {
            format!("if ip link show dev {name} >/dev/null 2>&1; then ip link del {name}; fi\n")
        };
        let mut script = gone(&spec.device);
        if spec.makes_bridge {
            script += &gone(&spec.bridge);
        }
        script += &format!("rm -f {}\n", hook_path(&spec.network));
        self.0.run(&script)?;
        Ok(())
    }

    fn probe(&self) -> Result<Vec<Found>, String> {
        let out = self.0.run(&format!(
            "for f in {HOOK_DIR}/siteplan-tunnel-*; do\n  \
             [ -f \"$f\" ] || continue\n  \
             d=$(sed -n 's/^# siteplan-device: //p' \"$f\")\n  \
             echo \"T $d\"\n  \
             sed -n 's/^# siteplan-mark: /M /p' \"$f\"\n  \
             if ip link show dev \"$d\" >/dev/null 2>&1; then\n    \
             echo \"L $(ip -j -d link show dev \"$d\")\"\n    \
             echo \"F $(bridge -j fdb show dev \"$d\")\"\n  \
             fi\n\
             done\n"
        ))?;
        Ok(parse_probe(&out))
    }
}

/// Reads what `probe`'s commands print: per tunnel a `T device` line, its `M mark`, and, when
/// the device is there, `L` (`ip -j -d link`) and `F` (`bridge -j fdb`).
fn parse_probe(out: &str) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for line in out.lines() {
        let Some((tag, rest)) = line.split_once(' ') else {
            continue;
        };
        match tag {
            "M" => {
                if let Ok(mark) = serde_json::from_str::<OwnerMark>(rest) {
                    if matches!(mark.spec, Spec::Tunnel(_)) {
                        found.push(Found { mark, device: None });
                    }
                }
            }
            "L" => {
                let Some(last) = found.last_mut() else {
                    continue;
                };
                let Ok(serde_json::Value::Array(links)) = serde_json::from_str(rest) else {
                    continue;
                };
                let Some(link) = links.first() else { continue };
                let data = &link["linkinfo"]["info_data"];
                last.device = Some(Device {
                    vni: data["id"].as_u64().unwrap_or_default() as u32,
                    local: data["local"].as_str().unwrap_or_default().to_string(),
                    master: link["master"].as_str().map(str::to_string),
                    peers: Vec::new(),
                });
            }
            "F" => {
                let Some(device) = found.last_mut().and_then(|f| f.device.as_mut()) else {
                    continue;
                };
                let Ok(serde_json::Value::Array(entries)) = serde_json::from_str(rest) else {
                    continue;
                };
                let mut peers: Vec<String> = entries
                    .iter()
                    .filter(|e| e["mac"].as_str() == Some("00:00:00:00:00:00"))
                    .filter_map(|e| e["dst"].as_str().map(str::to_string))
                    .collect();
                peers.sort();
                peers.dedup();
                device.peers = peers;
            }
            _ => {}
        }
    }
    found
}

impl Inner {
    /// What makes this host's tunnels: the backend's own (the sandbox's), else commands on the
    /// host.
    fn links(&self) -> Box<dyn HostLinks> {
        match self.hook.as_ref().and_then(|h| h.links()) {
            Some(links) => links,
            None => Box::new(Shell(Runner::of(&self.uri))),
        }
    }

    /// The tunnels of `observed` (networks already in it) that `wanted` asks for. Hosts are
    /// asked only where a tunnel may be: the scope names one (then `probed` may hold the
    /// answer, asked alongside the rest), or a network of the plan there was placed by a group.
    pub(super) fn observe_tunnels(
        &self,
        scope: &Scope,
        observed: &mut Observed,
        probed: Option<Result<Vec<Found>, String>>,
    ) -> Result<(), ProviderError> {
        let named = names_a_tunnel(scope);
        let grouped = observed.resources.values().any(|r| {
            r.spec.id().kind == ResourceKind::NETWORK
                && r.owner
                    .as_ref()
                    .is_some_and(|m| m.plan == scope.plan && m.group.is_some())
        });
        if !named && !grouped {
            return Ok(());
        }
        let found = match probed.unwrap_or_else(|| self.links().probe()) {
            Ok(found) => found,
            // No tunnel can have been made where no command reaches.
            Err(_) if !named && matches!(Runner::of(&self.uri), Runner::Unreachable(_)) => {
                return Ok(())
            }
            Err(why) => {
                return Err(ProviderError::Connection(format!(
                    "{}: cannot read its tunnels: {why}",
                    self.uri
                )))
            }
        };
        for found in found {
            let Some(live) = live(&found) else { continue };
            let id = live.spec.id();
            if super::observe::wanted(scope, &id, live.owner.as_ref()) {
                observed.resources.insert(id, live);
            }
        }
        Ok(())
    }

    /// Asks the host for its tunnels (for `observe_tunnels`).
    pub(super) fn probe_tunnels(&self) -> Result<Vec<Found>, String> {
        self.links().probe()
    }

    /// The tunnel of `network` on this host, as found, with its mark.
    fn found_tunnel(&self, network: &str) -> Result<Option<Found>, ProviderError> {
        let id = ResourceId::tunnel(network);
        Ok(self
            .links()
            .probe()
            .map_err(|why| ProviderError::backend(&id, why))?
            .into_iter()
            .find(|f| matches!(&f.mark.spec, Spec::Tunnel(t) if t.network == network)))
    }

    pub(super) fn create_tunnel(
        &self,
        spec: &TunnelSpec,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        if let Some(found) = self.found_tunnel(&spec.network)? {
            if found.mark.plan != mark.plan {
                return Err(ProviderError::backend(
                    id,
                    format!(
                        "plan `{}` has a tunnel for a network of this name on the host",
                        found.mark.plan
                    ),
                ));
            }
        }
        let runs = self
            .links()
            .up(spec, mark)
            .map_err(|why| ProviderError::backend(id, why))?;
        Ok(summary(spec, runs))
    }

    pub(super) fn update_tunnel(
        &self,
        want: &TunnelSpec,
        have: &TunnelSpec,
        mark: &OwnerMark,
        id: &ResourceId,
    ) -> Result<String, ProviderError> {
        let links = self.links();
        if want.device != have.device || want.vni != have.vni || want.local != have.local {
            links
                .down(have)
                .map_err(|why| ProviderError::backend(id, why))?;
        }
        let runs = links
            .up(want, mark)
            .map_err(|why| ProviderError::backend(id, why))?;
        Ok(summary(want, runs))
    }

    pub(super) fn delete_tunnel(
        &self,
        id: &ResourceId,
        owner: &Owner,
    ) -> Result<String, ProviderError> {
        let Some(found) = self.found_tunnel(&id.name)? else {
            return Err(ProviderError::NotFound(id.clone()));
        };
        check_owner(id, Some(&found.mark), owner)?;
        let Spec::Tunnel(spec) = &found.mark.spec else {
            return Err(ProviderError::NotFound(id.clone()));
        };
        self.links()
            .down(spec)
            .map_err(|why| ProviderError::backend(id, why))?;
        Ok(format!("{} no longer joins {}", spec.device, spec.bridge))
    }
}

/// Whether observing `scope` asks for a tunnel by name.
pub(super) fn names_a_tunnel(scope: &Scope) -> bool {
    scope.ids.iter().any(|id| id.kind == ResourceKind::TUNNEL)
}

/// What a made tunnel does; on the network's home (whose bridge libvirt makes anew at each
/// start), whether libvirt joins it again by itself.
fn summary(spec: &TunnelSpec, runs: HookRuns) -> String {
    let joins = format!(
        "{} joins {} to {} (VXLAN {})",
        spec.device,
        spec.bridge,
        spec.peers.join(", "),
        spec.vni
    );
    if spec.makes_bridge || runs != HookRuns::AfterRestart {
        return joins;
    }
    format!(
        "{joins}; libvirt here joins it again when the network restarts only once libvirt \
         itself has restarted (it looks for hooks as it starts): until then, the next apply does"
    )
}

/// A tunnel for the tests.
#[cfg(test)]
fn tests_spec() -> TunnelSpec {
    TunnelSpec {
        network: "lab".into(),
        bridge: "lab".into(),
        device: "spx1a2b3c4d".into(),
        vni: 4242,
        local: "10.0.0.1".into(),
        peers: vec!["10.0.0.2".into(), "10.0.0.3".into()],
        makes_bridge: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TunnelSpec {
        tests_spec()
    }

    #[test]
    fn a_uri_says_how_commands_reach_its_host() {
        let Runner::Ssh { args } =
            Runner::of("qemu+ssh://root@10.0.0.2:2222/system?keyfile=/k&no_verify=1")
        else {
            panic!("ssh")
        };
        let line = args.join(" ");
        assert!(line.contains("-p 2222"), "{line}");
        assert!(line.contains("-i /k"), "{line}");
        assert!(line.contains("StrictHostKeyChecking=no"), "{line}");
        assert!(line.contains("-l root"), "{line}");
        assert!(line.ends_with(" 10.0.0.2 -- sh -s"), "{line}");
        assert_eq!(Runner::of("qemu:///system"), Runner::Local);
        assert!(matches!(
            Runner::of("qemu:///system?socket=/run/x/libvirt-sock"),
            Runner::Unreachable(_)
        ));
    }

    #[test]
    fn names_that_are_not_interface_names_never_reach_a_command() {
        let mut bad = spec();
        bad.bridge = "x; rm -rf /".into();
        assert!(check(&bad).is_err());
        let mut bad = spec();
        bad.peers = vec!["$(reboot)".into()];
        assert!(check(&bad).is_err());
        assert!(check(&spec()).is_ok());
    }

    /// The mark of the tunnel `spec()`, made by plan `p`.
    fn mark(group: Option<&str>) -> OwnerMark {
        OwnerMark {
            plan: "p".into(),
            spec: Spec::Tunnel(spec()),
            prevent_destroy: false,
            created: None,
            applied_from: None,
            group: group.map(str::to_string),
        }
    }

    #[test]
    fn the_probe_reads_marks_devices_and_peers() {
        let mark = mark(Some("g"));
        let out = format!(
            "T spx1a2b3c4d\nM {}\nL [{{\"ifname\":\"spx1a2b3c4d\",\"master\":\"lab\",\"linkinfo\":\
             {{\"info_kind\":\"vxlan\",\"info_data\":{{\"id\":4242,\"local\":\"10.0.0.1\"}}}}}}]\n\
             F [{{\"mac\":\"00:00:00:00:00:00\",\"dst\":\"10.0.0.3\"}},{{\"mac\":\"52:54:00:00:00:01\",\
             \"dst\":\"10.0.0.2\"}},{{\"mac\":\"00:00:00:00:00:00\",\"dst\":\"10.0.0.2\"}}]\n\
             T spxgone\nM {}\n",
            serde_json::to_string(&mark).unwrap(),
            serde_json::to_string(&mark).unwrap()
        );
        let found = parse_probe(&out);
        assert_eq!(found.len(), 2);
        assert_eq!(
            found[0].device,
            Some(Device {
                vni: 4242,
                local: "10.0.0.1".into(),
                master: Some("lab".into()),
                peers: vec!["10.0.0.2".into(), "10.0.0.3".into()],
            })
        );
        assert_eq!(live(&found[0]).unwrap().spec, Spec::Tunnel(spec()));
        assert_eq!(found[1].device, None);
        let Spec::Tunnel(detached) = live(&found[1]).unwrap().spec else {
            panic!()
        };
        assert_eq!(detached.bridge, "");
    }

    #[test]
    fn the_hook_runs_only_for_its_network_as_it_starts() {
        let file = hook_file(&spec(), &mark(None)).unwrap();
        assert!(file.starts_with("#!/bin/sh\n"));
        assert!(file.contains("[ \"$1\" = lab ] || exit 0"));
        assert!(file.contains("ip link add lab type bridge"));
        assert!(file.contains("type vxlan id 4242 local 10.0.0.1 dstport 4789"));
    }

    #[test]
    fn only_a_home_whose_libvirt_has_not_seen_a_hook_says_so() {
        let home = TunnelSpec {
            makes_bridge: false,
            ..spec()
        };
        let said = "HOOKS after-restart\n";
        assert_eq!(hook_runs(said), HookRuns::AfterRestart);
        assert_eq!(hook_runs("HOOKS yes\n"), HookRuns::Yes);
        assert_eq!(hook_runs(""), HookRuns::Unknown);
        assert!(summary(&home, hook_runs(said)).contains("once libvirt itself has restarted"));
        assert!(!summary(&home, HookRuns::Yes).contains("restarted"));
        // A member's bridge is the tunnel's own: a network restart leaves it.
        assert!(!summary(&spec(), HookRuns::AfterRestart).contains("restarted"));
    }
}
