//! Secrets: values that must never be shown, and how they are hidden where they are.
//!
//! A secret is known by where it comes from or by what it is:
//! - by name: a parameter, a VM key or a nested key named like a secret (`rootpassword`,
//!   `api_token`, kcli's `rhnak`, `*_pass`, `*_pwd`, `*authkey*`...: `is_sensitive_name`), and
//!   any value passed through the template filter `sensitive`;
//! - by structure: private key material (PEM and OpenSSH blocks), and the password of a URL
//!   (`https://user:PASSWORD@host/`), wherever they are written.
//!
//! Hiding happens where the secret is, never by searching every output for the same
//! characters: a root password `debian` must not turn the user `debian` or the host `debian1`
//! into `(sensitive)`, which would break them and tell every reader the password. So:
//! - templates carry secrets as tainted values, and the renderer says which ranges of its output
//!   came from them (`manifest::template::Rendering`): review text shows those ranges as
//!   `(sensitive)` and diagnostics mask them;
//! - fields that are secrets (`rootpassword`) are shown as `(sensitive)` by whatever renders them;
//! - private key blocks are replaced by their structure, in any indentation (`hide_private_keys`).
//!
//! `scrub`, which everything printed, logged or saved passes through, is the last line of defence
//! only: it hides private key blocks, URLs' passwords and the secrets that cannot be mistaken for anything else
//! (`STRONG` characters or more, and the lines of a private key's body).
//!
//! The register is process-wide on purpose: a secret found anywhere must be hidden everywhere,
//! including in places (error messages, progress lines) that never see the plan.

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::RwLock;

/// What a secret shows as.
pub const SENSITIVE: &str = "(sensitive)";

/// Registered values at least this long are hidden in every text `scrub` sees: nobody names a
/// host, an image or a user after such a value by chance. Shorter ones (the lab passwords
/// `debian`, `default`) are hidden only where they are used as secrets.
pub const STRONG: usize = 12;

/// A registered secret shorter than this is not looked for inside longer template values (it
/// still taints a value that is exactly it).
const SHORTEST_INSIDE: usize = 4;

static REGISTER: RwLock<BTreeSet<String>> = RwLock::new(BTreeSet::new());

/// Whether a parameter's or key's name says it holds a secret: `rootpassword`, `api_token`,
/// `pull_secret`, `ssh_private_key`, and the names kcli users give them (`rhnak`, the Red Hat
/// activation key; `admin_pass`, `db_pwd`, `tailscale_authkey`, `aws_access_key_id`,
/// `github_pat`, `registry_auth`...).
pub fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let contains = [
        "password",
        "passwd",
        "passphrase",
        "secret",
        "token",
        "private",
        "credential",
        "apikey",
        "api_key",
        "authkey",
        "auth_key",
        "accesskey",
        "access_key",
        "activationkey",
        "activation_key",
        "licensekey",
        "license_key",
        "pwd",
    ];
    let ends = ["_pass", "_pat", "_auth", "_ak"];
    let exactly = ["rhnak", "pass", "pat", "auth", "pw", "pin", "otp"];
    contains.iter().any(|w| name.contains(w))
        || ends.iter().any(|w| name.ends_with(w))
        || exactly.contains(&name.as_str())
}

/// Knows `value` as a secret from now on (a template value tainted by it is hidden in review;
/// a long one is hidden everywhere).
pub fn register(value: &str) {
    let value = value.trim();
    if value.is_empty() {
        return;
    }
    REGISTER
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(value.to_string());
}

/// Whether `text` is a registered secret, or holds one of some length: what makes a tainted
/// template value a secret (`manifest::template`).
pub fn holds_registered(text: &str) -> bool {
    let register = REGISTER.read().unwrap_or_else(|p| p.into_inner());
    let text = text.trim();
    register.contains(text)
        || register
            .iter()
            .any(|s| s.len() >= SHORTEST_INSIDE && text.contains(s.as_str()))
}

/// Registers the lines of the private key blocks in `text` (the content of a file going into a
/// VM), so that `scrub` finds a key's body even where something printed it without its armour
/// or indented differently.
pub fn register_private_keys(text: &str) {
    for block in private_key_blocks(text) {
        for line in text[block].lines() {
            let line = line.trim().trim_matches('"').trim_end_matches("\\n");
            if line.len() >= STRONG && !line.starts_with("-----") {
                register(line);
            }
        }
    }
}

/// The byte ranges of private key blocks in `text`: from a `-----BEGIN … PRIVATE KEY…-----`
/// line to its `-----END …-----` marker (or the end of the text, when it has none), whatever
/// the indentation or quoting of the lines between (a key re-indented in YAML, or escaped in
/// JSON, is still found).
pub fn private_key_blocks(text: &str) -> Vec<Range<usize>> {
    const BEGIN: &str = "-----BEGIN ";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find(BEGIN) {
        let start = from + found;
        let label_start = start + BEGIN.len();
        let Some(label_len) = text[label_start..].find(DASHES) else {
            break;
        };
        let label = &text[label_start..label_start + label_len];
        let after_begin = label_start + label_len + DASHES.len();
        // A label is one line of capitals ("OPENSSH PRIVATE KEY", "PGP PRIVATE KEY BLOCK").
        let is_label = label.len() <= 64
            && label
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == ' ');
        if !is_label || !label.contains("PRIVATE KEY") {
            from = after_begin;
            continue;
        }
        let end = match text[after_begin..].find("-----END ") {
            Some(at) => {
                let end_label = after_begin + at + "-----END ".len();
                text[end_label..]
                    .find(DASHES)
                    .map_or(text.len(), |n| end_label + n + DASHES.len())
            }
            None => text.len(),
        };
        blocks.push(start..end);
        from = end;
    }
    blocks
}

/// `text` with each private key block replaced by `(sensitive)`.
pub fn hide_private_keys(text: &str) -> String {
    splice(text, &private_key_blocks(text), |_| SENSITIVE.to_string())
}

/// `text` with each of `ranges` (sorted, not overlapping) replaced by what `with` makes of it.
pub fn splice(text: &str, ranges: &[Range<usize>], with: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for range in ranges {
        let (start, end) = (range.start.max(at), range.end.min(text.len()));
        if start >= end || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            continue;
        }
        out.push_str(&text[at..start]);
        out.push_str(&with(&text[start..end]));
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// The registered secrets `scrub` hides everywhere, longest first (so that a secret that
/// contains another is hidden whole).
fn strong_in(text: &str) -> Vec<String> {
    let register = REGISTER.read().unwrap_or_else(|p| p.into_inner());
    let mut found: Vec<String> = register
        .iter()
        .filter(|s| s.len() >= STRONG && text.contains(s.as_str()))
        .cloned()
        .collect();
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

/// The password of each URL in `text` that carries one (`https://user:PASSWORD@host/...`, as
/// an image behind a login is fetched), by its range: a secret by structure, whatever its
/// length.
pub fn url_passwords(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices("://") {
        let start = at + 3;
        let authority_len = text[start..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`')
            })
            .unwrap_or(text.len() - start);
        let authority = &text[start..start + authority_len];
        let Some(userinfo_len) = authority.rfind('@') else {
            continue;
        };
        if let Some(colon) = authority[..userinfo_len].find(':') {
            if colon + 1 < userinfo_len {
                found.push(start + colon + 1..start + userinfo_len);
            }
        }
    }
    found
}

/// `text` with each URL's password replaced by `(sensitive)`.
pub fn hide_url_passwords(text: &str) -> String {
    splice(text, &url_passwords(text), |_| SENSITIVE.to_string())
}

/// `text` with private key blocks, URLs' passwords and every strong registered secret replaced
/// by `(sensitive)`: the last line of defence for everything printed, logged or saved.
pub fn scrub(text: &str) -> String {
    let mut out = hide_private_keys(text);
    out = hide_url_passwords(&out);
    for secret in strong_in(&out) {
        out = out.replace(&secret, SENSITIVE);
    }
    out
}

/// `text` (a source that diagnostics point into) with `ranges` known to hold secrets, private
/// key blocks and strong registered secrets overwritten by `*`, byte for byte and keeping line
/// breaks, so that every span into it still holds.
pub fn mask(text: &str, ranges: &[Range<usize>]) -> String {
    let stars = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c == '\n' {
                    "\n".to_string()
                } else {
                    "*".repeat(c.len_utf8())
                }
            })
            .collect()
    };
    let mut all: Vec<Range<usize>> = ranges.to_vec();
    all.extend(private_key_blocks(text));
    all.extend(url_passwords(text));
    for secret in strong_in(text) {
        all.extend(text.match_indices(&secret).map(|(i, s)| i..i + s.len()));
    }
    splice(text, &merged(all), stars)
}

/// `ranges` sorted, with those that overlap or touch made one (what `splice` takes).
pub fn merged(mut ranges: Vec<Range<usize>>) -> Vec<Range<usize>> {
    ranges.sort_by_key(|r| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    merged
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
            "rhnak",
            "admin_pass",
            "db_pwd",
            "tailscale_authkey",
            "aws_access_key_id",
            "aws_secret_access_key",
            "github_pat",
            "registry_auth",
            "rhn_activation_key",
            "vpn_passphrase",
        ] {
            assert!(is_sensitive_name(name), "{name}");
        }
        for name in [
            "keys", "image", "memory", "pubkey", "pool", "passes", "path", "pattern", "author",
            "user", "domain",
        ] {
            assert!(!is_sensitive_name(name), "{name}");
        }
    }

    #[test]
    fn only_strong_secrets_are_scrubbed_from_any_text() {
        register("hunter2-unit-test-long");
        register("debian");
        assert_eq!(
            scrub("pw=hunter2-unit-test-long user=debian"),
            "pw=(sensitive) user=debian"
        );
        assert!(holds_registered("debian"));
        assert!(holds_registered("x debian y"));
        assert!(!holds_registered("redhat"));
    }

    #[test]
    fn private_keys_are_found_in_any_indentation_and_quoting() {
        let key = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAA-unit-body\nAAAA-second-line-of-it\n-----END OPENSSH PRIVATE KEY-----";
        let yaml = format!(
            "x:\n  content: |\n    {}\ny: 1\n",
            key.replace('\n', "\n    ")
        );
        let shown = hide_private_keys(&yaml);
        assert_eq!(shown, "x:\n  content: |\n    (sensitive)\ny: 1\n");
        let json = serde_json::to_string(&yaml).unwrap();
        assert!(!hide_private_keys(&json).contains("unit-body"));
        register_private_keys(key);
        // A body line alone, somewhere else.
        assert_eq!(
            scrub("  b3BlbnNzaC1rZXktdjEAAAA-unit-body"),
            "  (sensitive)"
        );
        // A public key is no secret.
        assert_eq!(
            hide_private_keys("-----BEGIN PUBLIC KEY-----\nabc\n"),
            "-----BEGIN PUBLIC KEY-----\nabc\n"
        );
    }

    #[test]
    fn masking_keeps_every_offset() {
        let text = "a: secret-value\nb: 2\n";
        let secret = std::ops::Range { start: 3, end: 15 };
        let masked = mask(text, std::slice::from_ref(&secret));
        assert_eq!(masked, "a: ************\nb: 2\n");
        assert_eq!(masked.len(), text.len());
    }

    #[test]
    fn a_urls_password_is_hidden_and_the_rest_of_it_is_not() {
        let text = "url: https://alice:pw@images.example.org/debian.qcow2 and \
                    \"http://bob:s%40cret@10.0.0.1:8080/x\" but not https://carol@host/ \
                    nor user:pass@host nor https://host/a:b@c";
        assert_eq!(
            scrub(text),
            "url: https://alice:(sensitive)@images.example.org/debian.qcow2 and \
             \"http://bob:(sensitive)@10.0.0.1:8080/x\" but not https://carol@host/ \
             nor user:pass@host nor https://host/a:b@c"
        );
        let masked = mask("u: https://a:pw@h/x", &[]);
        assert_eq!(masked, "u: https://a:**@h/x");
    }
}
