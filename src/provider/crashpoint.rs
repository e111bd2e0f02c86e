//! A test hook for crash consistency: with `SITEPLAN_CRASH_AT=N`, the process aborts at the N-th
//! crash point it reaches, as `kill -9` would stop it there: no destructor runs, nothing is
//! flushed. Crash points sit between the backend writes of one change, where a real kill could
//! fall. Tests run `plan apply` with N = 1, 2, … and check that the next apply finishes the job.
//! Without the variable a crash point costs one atomic load.
//!
//! Its sibling, `SITEPLAN_FAIL_ON=ADDRESS[,ADDRESS…]`, makes the changes of those resources fail
//! (`volume/default/web1_0.img`), for tests of what a failure does to the rest of a run.
//! `SITEPLAN_SLOW_CHANGES=MS` makes every change take that much longer, and
//! `SITEPLAN_SLOW_OBSERVE=MS` observing, so that a test can signal or race a run at that step.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

static REACHED: AtomicUsize = AtomicUsize::new(0);

fn target() -> Option<usize> {
    static AT: OnceLock<Option<usize>> = OnceLock::new();
    *AT.get_or_init(|| std::env::var("SITEPLAN_CRASH_AT").ok()?.parse().ok())
}

/// One place where a kill could fall; `what` says which, for the test's log.
pub fn point(what: &str) {
    let Some(at) = target() else { return };
    if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == at {
        // A test hook's last words, naming a place in the code: no plan data, nothing to scrub.
        #[allow(clippy::disallowed_macros)]
        {
            eprintln!("siteplan: crash point {at} ({what}): aborting");
        }
        std::process::abort();
    }
}

/// The injected failure for `address`, if `SITEPLAN_FAIL_ON` names it.
pub fn injected_failure(address: &str) -> Option<String> {
    static FAIL_ON: OnceLock<Vec<String>> = OnceLock::new();
    let fail_on = FAIL_ON.get_or_init(|| {
        std::env::var("SITEPLAN_FAIL_ON")
            .map(|v| v.split(',').map(|a| a.trim().to_string()).collect())
            .unwrap_or_default()
    });
    fail_on
        .iter()
        .any(|a| a == address)
        .then(|| "injected failure (SITEPLAN_FAIL_ON)".to_string())
}

/// How long `SITEPLAN_SLOW_CHANGES` makes each change wait before it starts its work.
pub fn slowdown() -> Option<std::time::Duration> {
    static SLOW: OnceLock<Option<std::time::Duration>> = OnceLock::new();
    *SLOW.get_or_init(|| millis("SITEPLAN_SLOW_CHANGES"))
}

/// How long `SITEPLAN_SLOW_OBSERVE` makes observing wait before it asks the providers.
pub fn observe_slowdown() -> Option<std::time::Duration> {
    static SLOW: OnceLock<Option<std::time::Duration>> = OnceLock::new();
    *SLOW.get_or_init(|| millis("SITEPLAN_SLOW_OBSERVE"))
}

fn millis(var: &str) -> Option<std::time::Duration> {
    std::env::var(var)
        .ok()?
        .parse()
        .ok()
        .map(std::time::Duration::from_millis)
}
