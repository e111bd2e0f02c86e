//! `plan console`: the terminal joined to a VM's serial console until Ctrl-] (as in `virsh
//! console`), the guest closes it, or stdin ends. The terminal is raw meanwhile, so keys reach
//! the guest as typed, and is restored however it ends.

use std::io::{IsTerminal, Read};
use std::sync::mpsc;
use std::sync::Arc;

use super::out::{self, say};
use crate::provider::Console;

/// The key that detaches: Ctrl-] (0x1d), as `virsh console` and telnet have it.
pub const ESCAPE: u8 = 0x1d;

/// Why the session ended.
enum End {
    Detached,
    GuestClosed,
    Failed(String),
}

/// Puts a terminal into raw mode, and back when dropped.
struct RawTerminal {
    saved: rustix::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return None;
        }
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

/// Moves bytes both ways until the session ends. `what` names the VM (`vm/web1`).
pub fn attach(console: Arc<dyn Console>, what: &str) -> Result<(), String> {
    say!("Connected to the serial console of {what}. Ctrl-] detaches.");
    let (ended, end) = mpsc::channel();
    let from_guest = {
        let console = console.clone();
        let ended = ended.clone();
        move || {
            let mut buf = [0u8; 4096];
            loop {
                match console.recv(&mut buf) {
                    Ok(0) => break ended.send(End::GuestClosed),
                    Ok(n) => {
                        if out::console_bytes(&buf[..n]).is_err() {
                            break ended.send(End::Detached);
                        }
                    }
                    Err(e) => break ended.send(End::Failed(e.to_string())),
                }
            }
        }
    };
    let to_guest = move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 1024];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break ended.send(End::Detached),
                Ok(n) => n,
            };
            let typed = &buf[..n];
            let (before, detach) = match typed.iter().position(|b| *b == ESCAPE) {
                Some(at) => (&typed[..at], true),
                None => (typed, false),
            };
            if !before.is_empty() {
                if let Err(e) = console.send(before) {
                    break ended.send(End::Failed(e.to_string()));
                }
            }
            if detach {
                break ended.send(End::Detached);
            }
        }
    };
    let raw = RawTerminal::enter();
    // Neither thread is joined: each may stay blocked (on the guest, on stdin) when the other
    // ends the session, and leaving the process ends them.
    std::thread::spawn(from_guest);
    std::thread::spawn(to_guest);
    let end = end.recv().unwrap_or(End::Detached);
    drop(raw);
    match end {
        End::Detached => {
            say!("\r\nDetached from {what}.");
            Ok(())
        }
        End::GuestClosed => {
            say!("\r\nThe console of {what} closed (the VM stopped?).");
            Ok(())
        }
        End::Failed(why) => Err(format!("the console of {what}: {why}")),
    }
}
