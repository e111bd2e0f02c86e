//! Ctrl-C, and SIGTERM (how CI and service managers cancel a job), for the commands that
//! change things: the first signal starts nothing more, lets the changes in flight finish and
//! reports, and the run releases its lock on the way out; a second one stops at once (what it
//! leaves, the next run converges, and its lock is taken over as stale).

use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

/// A signal that interrupts a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT: Ctrl-C.
    Interrupt,
    /// SIGTERM.
    Terminate,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "Ctrl-C",
            Signal::Terminate => "SIGTERM",
        }
    }

    /// 128 and the signal's number, as a shell reports a process the signal ended, so that
    /// whoever sent it sees what they expect.
    pub fn exit_status(self) -> u8 {
        match self {
            Signal::Interrupt => 130,
            Signal::Terminate => 143,
        }
    }
}

/// What happens on a second signal (the command line says so and exits).
pub type Again = Arc<dyn Fn(Signal) + Send + Sync>;

/// Whether (and by which signal) the run was interrupted. Cloned handles share one state.
#[derive(Clone, Default)]
pub struct Interruption {
    token: CancellationToken,
    signal: Arc<OnceLock<Signal>>,
    /// Set once listening has started: signals are caught from then on, for the whole process.
    listening: Arc<Mutex<Option<Again>>>,
    started: Arc<OnceLock<()>>,
}

impl std::fmt::Debug for Interruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interruption")
            .field("signal", &self.signal.get())
            .finish()
    }
}

impl Interruption {
    /// A handle that will listen once `listen` is called (inside the runtime); `again` is
    /// what a second signal does.
    pub fn new(again: Again) -> Interruption {
        let this = Interruption::default();
        *this.listening.lock().unwrap_or_else(|p| p.into_inner()) = Some(again);
        this
    }

    /// Starts catching SIGINT and SIGTERM (once; later calls do nothing). From then on they
    /// no longer end the process by themselves: the operation decides what stops.
    pub fn listen(&self) {
        if self.started.set(()).is_err() {
            return;
        }
        let again = self
            .listening
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let this = self.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            loop {
                let got = tokio::select! {
                    Some(()) = int.recv() => Signal::Interrupt,
                    Some(()) = term.recv() => Signal::Terminate,
                    else => return,
                };
                this.interrupt(got, again.as_ref());
            }
        });
    }

    /// What a signal does: the first one cancels, a later one calls `again`.
    fn interrupt(&self, signal: Signal, again: Option<&Again>) {
        if self.signal.set(signal).is_ok() {
            self.token.cancel();
        } else if let Some(again) = again {
            again(signal);
        }
    }

    /// The signal that interrupted the run, if one did.
    pub fn signal(&self) -> Option<Signal> {
        self.signal.get().copied()
    }

    /// Cancelled by the first signal.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Interrupts as a signal would (tests, and callers that stop a run themselves).
    pub fn raise(&self, signal: Signal) {
        self.interrupt(signal, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_signal_cancels_and_a_second_one_calls_again() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let again: Again = Arc::new(move |s| record.lock().unwrap().push(s));
        let run = Interruption::new(again.clone());
        assert_eq!(run.signal(), None);
        run.interrupt(Signal::Terminate, Some(&again));
        assert!(run.token().is_cancelled());
        assert_eq!(run.signal(), Some(Signal::Terminate));
        assert!(seen.lock().unwrap().is_empty());
        run.interrupt(Signal::Interrupt, Some(&again));
        assert_eq!(*seen.lock().unwrap(), [Signal::Interrupt]);
        // The run keeps the first signal's exit status.
        assert_eq!(run.signal().map(Signal::exit_status), Some(143));
    }
}
