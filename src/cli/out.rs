//! The one place `plan` writes to stdout and stderr, scrubbing secrets on the way: whatever is
//! printed through here cannot show a registered secret. `clippy.toml` forbids `println!`,
//! `eprintln!` and the raw streams everywhere else, so this stays the only way out.
#![allow(clippy::disallowed_macros, clippy::disallowed_methods)]

use std::io::{IsTerminal, Write};

use crate::secrets;

/// Writes to stdout. A closed pipe (`plan graph x | head`) is for the caller to forgive.
pub fn stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(secrets::scrub(text).as_bytes())
        .and_then(|_| out.flush())
}

/// Writes a whole text to stderr.
pub fn stderr(text: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(secrets::scrub(text).as_bytes());
}

/// One line on stderr.
pub fn line(text: &str) {
    stderr(&format!("{text}\n"));
}

/// Whether stderr is a terminal (bars, spinners, colours).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Whether stdin is a terminal (whether `plan` can ask).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// Reads one line of an answer; `None` when stdin ends, or when `given_up` says so first
/// (a signal came while asking: the line being typed is not waited for).
pub fn read_answer(given_up: impl Fn() -> bool) -> Option<String> {
    let _ = std::io::stderr().flush();
    let (send, answered) = std::sync::mpsc::channel();
    // A thread of its own, left blocked on stdin if the answer is given up.
    std::thread::spawn(move || {
        let mut answer = String::new();
        let read = std::io::stdin().read_line(&mut answer).ok().map(|_| answer);
        let _ = send.send(read);
    });
    loop {
        match answered.recv_timeout(std::time::Duration::from_millis(100)) {
            Ok(answer) => return answer,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !given_up() => {}
            Err(_) => return None,
        }
    }
}

/// A guest's console output, byte for byte as the guest writes it (`plan console`): the
/// guest's own screen, shown to whoever attached to it; scrubbing it could cut an escape
/// sequence or a UTF-8 character split across two reads.
pub fn console_bytes(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes).and_then(|_| out.flush())
}

/// A raw stdout for writers that hold no secret by construction (shell completions).
pub fn raw_stdout() -> std::io::Stdout {
    std::io::stdout()
}

/// `say!("…", args)`: a line on stderr, scrubbed.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::out::line(&format!($($arg)*))
    };
}
pub(crate) use say;
