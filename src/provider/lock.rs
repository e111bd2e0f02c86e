//! The plan lock as providers keep it: who holds a plan, written into an object on the
//! provider itself (so every operator of that provider sees it), whose creation is atomic.
//! How a run takes, renews and gives it back is `ops::lock`; each backend only creates, reads,
//! renews and deletes its lock object.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// How long a lock lasts without being renewed. A run renews its locks every quarter of it;
/// a lock from another host that has not been renewed for this long is taken over.
pub const LOCK_TTL: Duration = Duration::from_secs(120);

/// Who holds a plan's lock, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub plan: String,
    pub host: String,
    pub pid: u32,
    /// When the process started (clock ticks since boot, from `/proc`), so that a pid the
    /// system gave to another process since is not taken for the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_start: Option<u64>,
    /// What it runs: `plan apply site.yml` (never its parameters: they may hold secrets).
    pub command: String,
    /// RFC 3339.
    pub since: String,
    /// When the holder last said it still runs (RFC 3339).
    pub renewed: String,
    pub ttl_seconds: u64,
    /// This run, among all runs: what a release checks before deleting.
    pub run: String,
    /// What the run handles while it carries no mark, noted before: a libvirt pool between its
    /// definition and its ledger (which marks it), or between its ledger's deletion and its
    /// own. Only these, left unmarked by a run that died, are taken over by the next one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unmarked: Vec<String>,
}

impl LockHolder {
    /// The holder for this process, now.
    pub fn this_process(plan: &str, command: &str) -> LockHolder {
        let now = rfc3339(SystemTime::now());
        let pid = std::process::id();
        LockHolder {
            plan: plan.to_string(),
            host: this_host(),
            pid,
            process_start: process_start(pid),
            command: command.to_string(),
            since: now.clone(),
            renewed: now,
            ttl_seconds: LOCK_TTL.as_secs(),
            run: uuid::Uuid::new_v4().to_string(),
            unmarked: Vec::new(),
        }
    }

    /// Why the lock no longer holds, if it does not: its process on this host is gone, or
    /// (from another host) it has not been renewed in time.
    pub fn stale(&self, now: SystemTime) -> Option<String> {
        if self.host == this_host() {
            if process_runs(self.pid, self.process_start) {
                return None;
            }
            return Some(format!(
                "its process ({} on {}) no longer runs",
                self.pid, self.host
            ));
        }
        let renewed = humantime::parse_rfc3339(&self.renewed).ok()?;
        let ttl = Duration::from_secs(self.ttl_seconds);
        match now.duration_since(renewed) {
            Ok(since) if since > ttl => Some(format!(
                "it was last renewed at {}, more than {} s ago",
                self.renewed, self.ttl_seconds
            )),
            _ => None,
        }
    }

    /// The holder, for a message: `plan apply site.yml` (pid 4242 on lab1, since ...).
    pub fn describe(&self) -> String {
        format!(
            "`{}` (pid {} on {}, since {})",
            self.command, self.pid, self.host, self.since
        )
    }

    /// The same holder, renewed now.
    pub fn renewed_now(&self) -> LockHolder {
        LockHolder {
            renewed: rfc3339(SystemTime::now()),
            ..self.clone()
        }
    }
}

/// A lock object found on a provider: its holder, and what names exactly that object (a
/// libvirt UUID, a Kubernetes uid), so that taking over a stale lock deletes that one and not
/// a newer one made meanwhile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLock {
    pub holder: LockHolder,
    pub token: String,
}

/// What creating a lock object gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAttempt {
    /// Made: the token names it.
    Taken(String),
    /// One exists already.
    Held(FoundLock),
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}

/// This machine's name.
pub fn this_host() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Process `pid`'s state letter and when it started, in clock ticks since boot (fields 3 and
/// 22 of `/proc/PID/stat`).
fn process_stat(pid: u32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.nth(18)?.parse().ok()?))
}

fn process_start(pid: u32) -> Option<u64> {
    process_stat(pid).map(|(_, start)| start)
}

/// Whether process `pid` runs, and is the one that started at `start` (when known). A zombie
/// (killed, not yet reaped by its parent) runs no more.
fn process_runs(pid: u32, start: Option<u64>) -> bool {
    let Some(id) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    let exists = match rustix::process::test_kill_process(id) {
        Ok(()) => true,
        // It exists, and belongs to someone else.
        Err(e) => e == rustix::io::Errno::PERM,
    };
    if !exists {
        return false;
    }
    match process_stat(pid) {
        Some((state, started)) => !matches!(state, 'Z' | 'X') && start.is_none_or(|s| s == started),
        // No /proc to ask: the signal said it exists.
        None => start.is_none(),
    }
}

/// A name for the lock object that any backend accepts: the plan's name where it is made of
/// letters, digits, `-`, `_` and `.`, and otherwise those characters and a digest of the name.
pub fn object_name(plan: &str) -> String {
    let clean: String = plan
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '-',
        })
        .collect();
    if clean == plan && !plan.is_empty() {
        return format!("siteplan-lock-{plan}");
    }
    let digest = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(plan.as_bytes())[..4]);
    format!("siteplan-lock-{clean}-{digest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_of_this_process_holds_and_one_of_a_dead_process_is_stale() {
        let mine = LockHolder::this_process("lab", "plan apply lab.yml");
        assert_eq!(mine.stale(SystemTime::now()), None);
        assert!(mine.process_start.is_some());
        // The same pid, started at another time: the system reused it.
        let reused = LockHolder {
            process_start: mine.process_start.map(|s| s + 1),
            ..mine.clone()
        };
        assert!(reused.stale(SystemTime::now()).is_some());
        let gone = LockHolder {
            pid: u32::MAX - 1,
            ..mine.clone()
        };
        let why = gone.stale(SystemTime::now()).unwrap();
        assert!(why.contains("no longer runs"), "{why}");
    }

    #[test]
    fn a_lock_from_another_host_is_stale_only_once_expired() {
        let theirs = LockHolder {
            host: "elsewhere.invalid".into(),
            pid: 1,
            ..LockHolder::this_process("lab", "plan apply lab.yml")
        };
        let now = SystemTime::now();
        assert_eq!(theirs.stale(now), None);
        let later = now + LOCK_TTL + Duration::from_secs(5);
        assert!(theirs.stale(later).unwrap().contains("last renewed"));
    }

    #[test]
    fn lock_names_are_safe_for_every_backend() {
        assert_eq!(object_name("lab"), "siteplan-lock-lab");
        let odd = object_name("my lab/1");
        assert!(odd.starts_with("siteplan-lock-my-lab-1-"), "{odd}");
        assert_ne!(object_name("my lab/1"), object_name("my-lab-1"));
    }
}
