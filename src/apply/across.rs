//! Ordering across providers: a `depends_on` between entries that go to different providers
//! makes a change on one wait for the other's, while each provider's part is applied by its own
//! executor. A board counts, per entry, the changes still to finish in every part; a change that
//! must come after an entry waits until that entry's count is zero, and is skipped, naming the
//! cause, when one of them failed.

use std::collections::HashMap;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::plan::model::spec::ResourceId;

/// How the changes of one entry stand, in every part.
#[derive(Debug, Clone, Default)]
struct Standing {
    remaining: usize,
    /// The first of its changes that failed (or was skipped or interrupted).
    failed: Option<ResourceId>,
}

/// Every entry that others wait for, across the parts of a run.
#[derive(Debug, Default)]
pub struct Board {
    entries: HashMap<String, watch::Sender<Standing>>,
}

/// Why a change that waited for another entry does not run.
pub enum NotReady {
    /// A change of that entry did not succeed: this one.
    Failed(ResourceId),
    Interrupted,
}

impl Board {
    /// A board for `entries`, each with the number of changes it has in the run.
    pub fn new(entries: impl IntoIterator<Item = (String, usize)>) -> Board {
        Board {
            entries: entries
                .into_iter()
                .map(|(entry, remaining)| {
                    let standing = Standing {
                        remaining,
                        failed: None,
                    };
                    (entry, watch::Sender::new(standing))
                })
                .collect(),
        }
    }

    /// One of `entry`'s changes (`id`) finished, well or not.
    pub fn finished(&self, entry: &str, id: &ResourceId, ok: bool) {
        if let Some(sender) = self.entries.get(entry) {
            sender.send_modify(|s| {
                s.remaining = s.remaining.saturating_sub(1);
                if !ok && s.failed.is_none() {
                    s.failed = Some(id.clone());
                }
            });
        }
    }

    /// Waits until every change of `entry` succeeded (at once when it has none in the run).
    pub async fn wait(&self, entry: &str, stop: &CancellationToken) -> Result<(), NotReady> {
        let Some(sender) = self.entries.get(entry) else {
            return Ok(());
        };
        let mut receiver = sender.subscribe();
        let ready = receiver.wait_for(|s| s.remaining == 0 || s.failed.is_some());
        let standing = tokio::select! {
            standing = ready => standing.map(|s| s.clone()),
            () = stop.cancelled() => return Err(NotReady::Interrupted),
        };
        match standing {
            Ok(Standing {
                failed: Some(id), ..
            }) => Err(NotReady::Failed(id)),
            Ok(_) => Ok(()),
            // The board outlives every waiter; a closed one has nothing left to wait for.
            Err(_) => Ok(()),
        }
    }
}

/// What one part's executor does for ordering across providers: the entry each of its
/// changes belongs to (reported to the board when it finishes), and the entries each must
/// wait for first.
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub board: std::sync::Arc<Board>,
    pub entry_of: Vec<Option<String>>,
    pub waits: Vec<Vec<String>>,
}

impl Links {
    /// Reports change `i`'s end to the board.
    pub fn finished(&self, i: usize, id: &ResourceId, ok: bool) {
        if let Some(Some(entry)) = self.entry_of.get(i) {
            self.board.finished(entry, id, ok);
        }
    }
}
