//! Why a `qemu+ssh://` connection was refused for the host's key, in words a person can act
//! on. libvirt runs the system's ssh, which checks the key against `known_hosts` and says only
//! "Host key verification failed". This finds out whether the host is unknown or its key
//! changed, and shows the key's fingerprints and the commands that trust it.
//!
//! The host's keys are asked of it with `ssh-keyscan` and `ssh-keygen -F` reads
//! `known_hosts`: the same OpenSSH that libvirt's transport runs, with the same files, so the
//! advice matches what ssh will check next time.

use std::process::Command;

use base64::Engine;
use sha2::{Digest, Sha256};

/// What ssh says when it refuses a host's key.
const REFUSED: &str = "Host key verification failed";

/// Where a `qemu+ssh://` URI connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    pub host: String,
    pub port: Option<u16>,
}

impl SshTarget {
    /// The host and port of an ssh URI (`qemu+ssh://user@host:2222/system?...`).
    pub fn of(uri: &str) -> Option<SshTarget> {
        let (scheme, rest) = uri.split_once("://")?;
        if !scheme.ends_with("+ssh") {
            return None;
        }
        let authority = rest.split(['/', '?']).next()?;
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']')?;
            (host, after.strip_prefix(':'))
        } else {
            match host_port.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (host_port, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        Some(SshTarget {
            host: host.to_string(),
            port: port.and_then(|p| p.parse().ok()).filter(|p| *p != 22),
        })
    }

    /// How `known_hosts` names it: `host`, or `[host]:port` on another port than 22.
    pub fn known_hosts_name(&self) -> String {
        match self.port {
            Some(port) => format!("[{}]:{port}", self.host),
            None => self.host.clone(),
        }
    }

    fn keyscan_command(&self) -> String {
        match self.port {
            Some(port) => format!("ssh-keyscan -p {port} {}", self.host),
            None => format!("ssh-keyscan {}", self.host),
        }
    }
}

/// A host key's type and fingerprint (`ssh-ed25519`, `SHA256:...`), as `ssh-keygen -l` shows.
pub fn fingerprint(line: &str) -> Option<(String, String)> {
    let mut fields = line.split_whitespace();
    // A known_hosts or keyscan line starts with the host; a .pub line with the type.
    let first = fields.next()?;
    let (kind, blob) = if first.starts_with("ssh-") || first.starts_with("ecdsa-") {
        (first, fields.next()?)
    } else {
        (fields.next()?, fields.next()?)
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(bytes));
    Some((kind.to_string(), format!("SHA256:{digest}")))
}

/// An explanation to add to a connection error, when ssh refused the host's key.
pub fn explain(uri: &str, error: &str) -> Option<String> {
    if !error.contains(REFUSED) {
        return None;
    }
    let target = SshTarget::of(uri)?;
    let name = target.known_hosts_name();
    let offered = offered_keys(&target);
    let offered = if offered.is_empty() {
        "(its keys could not be read with ssh-keyscan)".to_string()
    } else {
        offered
            .iter()
            .map(|(kind, print)| format!("{kind} {print}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let trust = format!(
        "compare a fingerprint with what the host itself shows (`ssh-keygen -lf \
         /etc/ssh/ssh_host_ed25519_key.pub` there), then trust it with `mkdir -p ~/.ssh && {} >> \
         ~/.ssh/known_hosts`; or, for a throwaway lab only, set `verify_host_key: false` on \
         the provider in the providers file",
        target.keyscan_command()
    );
    Some(if is_known(&name) {
        format!(
            "the host key of {name} is not the one known_hosts has for it, so ssh refused to \
             connect: someone may be in the middle, or the host was reinstalled. It now \
             offers {offered}. If you know why it changed, remove the old key with \
             `ssh-keygen -R '{name}'`, then {trust}"
        )
    } else {
        format!(
            "the host key of {name} is unknown (not in known_hosts), so ssh refused to \
             connect. It offers {offered}: {trust}"
        )
    })
}

/// The host's keys, as it offers them now.
fn offered_keys(target: &SshTarget) -> Vec<(String, String)> {
    let mut command = Command::new("ssh-keyscan");
    command.args(["-T", "5"]);
    if let Some(port) = target.port {
        command.args(["-p", &port.to_string()]);
    }
    let Ok(out) = command.arg(&target.host).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(fingerprint)
        .collect()
}

/// Whether known_hosts (the user's or the system's) has a key for `name`.
fn is_known(name: &str) -> bool {
    let found = |file: Option<&str>| {
        let mut command = Command::new("ssh-keygen");
        command.args(["-F", name]);
        if let Some(file) = file {
            command.args(["-f", file]);
        }
        command
            .output()
            .map(|o| o.status.success() && !o.stdout.is_empty())
            .unwrap_or(false)
    };
    found(None) || found(Some("/etc/ssh/ssh_known_hosts"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_of_an_ssh_uri() {
        let at = |uri| SshTarget::of(uri);
        assert_eq!(
            at("qemu+ssh://user@127.0.0.1:22022/system?keyfile=/k"),
            Some(SshTarget {
                host: "127.0.0.1".into(),
                port: Some(22022)
            })
        );
        assert_eq!(
            at("qemu+ssh://lab1/system").map(|t| t.known_hosts_name()),
            Some("lab1".into())
        );
        assert_eq!(
            at("qemu+ssh://root@[::1]:2222/system").map(|t| t.known_hosts_name()),
            Some("[::1]:2222".into())
        );
        assert_eq!(
            at("qemu+ssh://root@lab1:22/system").map(|t| t.known_hosts_name()),
            Some("lab1".into())
        );
        assert_eq!(at("qemu:///system"), None);
    }

    #[test]
    fn fingerprints_are_ssh_keygens() {
        // `ssh-keygen -lf` of this key: SHA256:DxiJZzFM6tKDEFgobBjSqBgfxKomD95lFAZl6NyXBoM.
        let key =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDru9zUPctXIEGQiHlkmxvDn5CGs2hGgN5F5tum2+gJa x";
        let expected = (
            "ssh-ed25519".to_string(),
            "SHA256:DxiJZzFM6tKDEFgobBjSqBgfxKomD95lFAZl6NyXBoM".to_string(),
        );
        assert_eq!(fingerprint(key), Some(expected.clone()));
        let scanned = format!("[127.0.0.1]:22022 {}", key.trim_end_matches(" x"));
        assert_eq!(fingerprint(&scanned), Some(expected));
    }
}
