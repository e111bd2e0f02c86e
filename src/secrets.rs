//! Secrets: values that must never be shown. They are registered as the plan is read (root
//! passwords, parameters named like passwords or tokens, values the template passes through the
//! `sensitive` filter, private keys in files), and every place that prints, logs or saves text
//! passes it through `scrub`, which replaces each with `(sensitive)`. A changed secret still
//! shows as a change: seeds are compared by digest.
//!
//! The register is process-wide on purpose: a secret found anywhere must be hidden everywhere,
//! including in places (error messages, progress lines) that never see the plan.

use std::collections::BTreeSet;
use std::sync::RwLock;

/// What a secret shows as.
pub const SENSITIVE: &str = "(sensitive)";

/// Shorter values are not secrets worth hiding, and hiding them would mangle ordinary text.
const SHORTEST: usize = 4;

static REGISTER: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Whether a parameter's name says it holds a secret (`rootpassword`, `api_token`,
/// `pull_secret`, `ssh_private_key`...).
pub fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "private",
        "credential",
        "apikey",
        "api_key",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Hides `value` from now on.
pub fn register(value: &str) {
    let value = value.trim();
    if value.chars().count() < SHORTEST {
        return;
    }
    REGISTER
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(value.to_string());
}

/// Registers the private key blocks in `text` (the content of a file going into a VM).
pub fn register_private_keys(text: &str) {
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let Some(end) = block
            .find("PRIVATE KEY-----\n")
            .or_else(|| block.find("PRIVATE KEY-----"))
        else {
            break;
        };
        // The END line of this block.
        let after_begin = &block[end + "PRIVATE KEY-----".len()..];
        let Some(end_line) = after_begin.find("-----END ") else {
            break;
        };
        let tail = &after_begin[end_line..];
        let close = tail
            .find("KEY-----")
            .map_or(tail.len(), |i| i + "KEY-----".len());
        let key_len = end + "PRIVATE KEY-----".len() + end_line + close;
        register(&block[..key_len]);
        // The base64 body alone too, in case it is printed without its armour.
        let body = &after_begin[..end_line];
        register(body.trim());
        rest = &block[key_len..];
    }
}

/// `text` with every registered secret replaced by `(sensitive)`.
pub fn scrub(text: &str) -> String {
    let register = REGISTER.read().unwrap_or_else(|p| p.into_inner());
    // Longest first, so a secret that contains another is hidden whole.
    let mut secrets: Vec<&String> = register
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .collect();
    if secrets.is_empty() {
        return text.to_string();
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_string();
    for secret in secrets {
        out = out.replace(secret.as_str(), SENSITIVE);
    }
    out
}

/// `text` with every registered secret overwritten by `*` of the same length, so that byte
/// offsets into it (diagnostic spans) still hold.
pub fn mask(text: &str) -> String {
    let register = REGISTER.read().unwrap_or_else(|p| p.into_inner());
    let mut out = text.to_string();
    for secret in register.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), &"*".repeat(secret.len()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_say_secret() {
        for name in [
            "rootpassword",
            "API_TOKEN",
            "pull_secret",
            "ssh_private_key",
            "db_passwd",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in ["keys", "image", "memory", "pubkey"] {
            assert!(!is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn scrubbed_and_masked() {
        register("hunter2-unit-test");
        register("abc"); // too short to hide
        assert_eq!(scrub("pw=hunter2-unit-test abc"), "pw=(sensitive) abc");
        assert_eq!(
            mask("pw=hunter2-unit-test!"),
            format!("pw={}!", "*".repeat(17))
        );
    }

    #[test]
    fn private_keys_in_files() {
        let file = "x\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA-unit\n-----END OPENSSH PRIVATE KEY-----\ny\n";
        register_private_keys(file);
        let shown = scrub(file);
        assert!(!shown.contains("b3BlbnNzaC1rZXktdjEAAAA-unit"), "{shown}");
        assert!(
            shown.starts_with("x\n") && shown.ends_with("y\n"),
            "{shown}"
        );
    }
}
