//! Whether a guest is ready: cloud-init has finished, and how, read through the QEMU guest agent
//! (never over the network). cloud-init writes `/run/cloud-init/result.json` when its last stage
//! ends, after the VM's `cmds` and scripts have run; its `errors` list what failed, and
//! `/var/log/cloud-init-output.log` says what those commands printed. A plan's own test (kcli's
//! `waitcommand`) runs in the guest through the agent too, until it succeeds.

use super::LibvirtProvider;
use crate::provider::ProviderError;
use async_trait::async_trait;
use base64::Engine;
use serde_json::{json, Value};
use virt::domain::Domain;

use crate::provider::capability;
use crate::provider::{Readiness, ReadinessQuery};

const RESULT: &str = "/run/cloud-init/result.json";
const OUTPUT_LOG: &str = "/var/log/cloud-init-output.log";
/// How much of the log's end is read for a failure, and how many of its lines are said.
const LOG_TAIL_BYTES: i64 = 8192;
const LOG_TAIL_LINES: usize = 15;
/// A result file is small; more than this is not one.
const MOST_READ: usize = 1 << 20;
/// Each agent command's wait: an agent that does not answer at once is not up yet.
const AGENT_SECONDS: i32 = 5;

/// How a running domain's guest is: ready, failed (with what cloud-init said and its output's
/// last lines), or not yet (and why).
pub fn of(domain: &Domain, query: &ReadinessQuery) -> Readiness {
    let agent = Agent(domain);
    if query.cloud_init {
        let finished = cloud_init(&agent);
        if finished != Readiness::Ready {
            return finished;
        }
    }
    match &query.command {
        Some(command) => agent.succeeds(command),
        None => Readiness::Ready,
    }
}

fn cloud_init(agent: &Agent) -> Readiness {
    let text = match agent.read(RESULT, None) {
        Ok(Some(text)) => text,
        Ok(None) => return Readiness::Pending("cloud-init has not finished".into()),
        Err(e) => return Readiness::Pending(format!("its guest agent does not answer yet ({e})")),
    };
    let Ok(result) = serde_json::from_str::<Value>(&text) else {
        return Readiness::Pending("cloud-init is writing its result".into());
    };
    let errors: Vec<String> = result
        .pointer("/v1/errors")
        .and_then(Value::as_array)
        .map(|errors| {
            errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if errors.is_empty() {
        return Readiness::Ready;
    }
    let log = agent
        .read(OUTPUT_LOG, Some(LOG_TAIL_BYTES))
        .ok()
        .flatten()
        .unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    Readiness::Failed {
        errors,
        log: lines[lines.len().saturating_sub(LOG_TAIL_LINES)..]
            .iter()
            .map(|l| l.to_string())
            .collect(),
    }
}

struct Agent<'a>(&'a Domain);

impl Agent<'_> {
    fn command(&self, command: Value) -> Result<Value, String> {
        let answer = self
            .0
            .qemu_agent_command(&command.to_string(), AGENT_SECONDS, 0)
            .map_err(|e| e.message().to_string())?;
        let answer: Value = serde_json::from_str(&answer).map_err(|e| e.to_string())?;
        Ok(answer.get("return").cloned().unwrap_or(Value::Null))
    }

    /// Whether `command` succeeds in the guest now (kcli's `waitcommand`, run by `sh -c`):
    /// ready when it exits 0; not yet otherwise, or while it runs past the agent's wait.
    fn succeeds(&self, command: &str) -> Readiness {
        let started = self.command(json!({
            "execute": "guest-exec",
            "arguments": {"path": "/bin/sh", "arg": ["-c", command], "capture-output": true},
        }));
        let pid = match started
            .as_ref()
            .ok()
            .and_then(|r| r.get("pid"))
            .and_then(Value::as_i64)
        {
            Some(pid) => pid,
            None => {
                let why = started.err().unwrap_or_else(|| "no process".into());
                return Readiness::Pending(format!("its waitcommand cannot run yet ({why})"));
            }
        };
        for _ in 0..(AGENT_SECONDS * 2) {
            let status = self.command(json!({
                "execute": "guest-exec-status",
                "arguments": {"pid": pid},
            }));
            if let Ok(status) = status {
                if status.get("exited").and_then(Value::as_bool) == Some(true) {
                    return match status.get("exitcode").and_then(Value::as_i64) {
                        Some(0) => Readiness::Ready,
                        code => Readiness::Pending(format!(
                            "its waitcommand has not succeeded yet (exit {})",
                            code.map_or("unknown".into(), |c| c.to_string())
                        )),
                    };
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        Readiness::Pending("its waitcommand is still running".into())
    }

    /// The text of a guest's file (its last `tail` bytes, when given); `None` when it is not
    /// there.
    fn read(&self, path: &str, tail: Option<i64>) -> Result<Option<String>, String> {
        let handle = match self.command(json!({
            "execute": "guest-file-open",
            "arguments": {"path": path, "mode": "r"},
        })) {
            Ok(handle) => handle,
            Err(e) if e.contains("No such file") => return Ok(None),
            Err(e) => return Err(e),
        };
        let read = self.read_open(&handle, tail);
        let _ =
            self.command(json!({"execute": "guest-file-close", "arguments": {"handle": handle}}));
        read.map(Some)
    }

    fn read_open(&self, handle: &Value, tail: Option<i64>) -> Result<String, String> {
        if let Some(tail) = tail {
            // A file shorter than the tail cannot be sought before its start: read it whole.
            let _ = self.command(json!({
                "execute": "guest-file-seek",
                "arguments": {"handle": handle, "offset": -tail, "whence": "end"},
            }));
        }
        let mut bytes = Vec::new();
        loop {
            let chunk = self.command(json!({
                "execute": "guest-file-read",
                "arguments": {"handle": handle, "count": 65536},
            }))?;
            let data = chunk.get("buf-b64").and_then(Value::as_str).unwrap_or("");
            bytes.extend(
                base64::engine::general_purpose::STANDARD
                    .decode(data)
                    .map_err(|e| e.to_string())?,
            );
            let eof = chunk.get("eof").and_then(Value::as_bool).unwrap_or(true);
            if eof || data.is_empty() || bytes.len() > MOST_READ {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[async_trait]
impl capability::GuestReadiness for LibvirtProvider {
    /// The test driver has no guests, so no agents; a real hypervisor's do answer.
    fn hears_guest_agents(&self) -> bool {
        !self.inner.test_driver
    }

    /// Through each guest's agent; the test driver's guests, which run nothing, are ready
    /// once running.
    async fn readiness(
        &self,
        vms: &[crate::provider::ReadinessQuery],
    ) -> Result<std::collections::BTreeMap<String, crate::provider::Readiness>, ProviderError> {
        let vms = vms.to_vec();
        self.blocking(move |inner| {
            let mut found = std::collections::BTreeMap::new();
            for query in vms {
                let Ok(domain) = inner.conn.lookup_domain_by_name(&query.vm) else {
                    continue;
                };
                if !domain.is_active().unwrap_or(false) {
                    continue;
                }
                let ready = if inner.test_driver {
                    crate::provider::Readiness::Ready
                } else {
                    of(&domain, &query)
                };
                found.insert(query.vm, ready);
            }
            Ok(found)
        })
        .await
    }
}
