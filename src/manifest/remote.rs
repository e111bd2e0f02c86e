//! Plans included by URL (kcli's `type: plan` with `url:`): fetched over http(s) as kcli fetches
//! them, within bounds, into siteplan's cache, where the rest of the loader reads them as files.
//!
//! kcli reads `github.com/OWNER/REPO/...` as the file's raw text, takes a URL that does not end
//! in `.yml` as a directory holding `kcli_plan.yml`, and fetches the plan's default parameter
//! files, scripts and files from beside it. siteplan does the same, and adds what a plan from a
//! stranger's pull request needs: a `sha256:` pin of the plan's text (without one, a warning
//! gives the digest to pin), a size bound on every file (`access::TEXT_LIMIT`), and one deadline
//! for all the fetching a load does.

use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::access::TEXT_LIMIT;

/// How long all the fetching of one load may take, together.
pub const FETCH_BUDGET: Duration = Duration::from_secs(120);

/// Set to `1` to let plans include plans by URL. Off by default: a plan from a stranger's pull
/// request must not make a CI runner fetch from the runner's own network (what it fetched would
/// show in the errors).
pub const ALLOW_FETCH_ENV: &str = "SITEPLAN_ALLOW_FETCH";

/// Whether fetching plans by URL is allowed (`ALLOW_FETCH_ENV`).
fn fetching_allowed() -> bool {
    std::env::var(ALLOW_FETCH_ENV).is_ok_and(|v| v == "1" || v == "true")
}

/// At most this many files are fetched from beside one included plan.
pub const MAX_FILES_BESIDE: usize = 64;

/// A plan fetched into the cache.
#[derive(Debug)]
pub struct Fetched {
    /// The URL it was fetched from, as kcli reads the plan's `url` (and `file`).
    pub url: String,
    /// Where it lies in the cache: a directory of its own, with what is fetched beside it.
    pub path: PathBuf,
    /// The SHA-256 of its text, hexadecimal.
    pub digest: String,
}

/// The URL kcli fetches for a `type: plan` entry's `url` (and `file`, which siteplan reads as a
/// file under it), or why it cannot be fetched.
pub fn plan_url(url: &str, file: Option<&str>) -> Result<String, String> {
    let mut url = url.trim().to_string();
    if url.starts_with("github.com/") {
        url = format!("https://{url}");
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "`{}` is not an http(s) URL: siteplan fetches included plans over http(s) only",
            shown(&url)
        ));
    }
    if let Some(file) = file {
        url = format!(
            "{}/{}",
            url.trim_end_matches('/'),
            file.trim_start_matches('/')
        );
    } else if !(url.ends_with(".yml") || url.ends_with(".yaml")) {
        url = format!("{}/kcli_plan.yml", url.trim_end_matches('/'));
    }
    Ok(github_raw(&url).unwrap_or(url))
}

/// `https://github.com/OWNER/REPO[/blob|tree/BRANCH]/PATH` as the raw file's URL (branch
/// `main` when none is named), as kcli reads it.
fn github_raw(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://github.com/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let (owner, repo) = (parts.first()?, parts.get(1)?);
    let (branch, path) = match parts.get(2) {
        Some(&"blob" | &"tree" | &"raw") => (*parts.get(3)?, &parts[4.min(parts.len())..]),
        _ => ("main", &parts[2.min(parts.len())..]),
    };
    Some(format!(
        "https://raw.githubusercontent.com/{owner}/{repo}/{branch}/{}",
        path.join("/")
    ))
}

/// Fetches the plan at `url` into the cache, checked against `pin` when given, and the default
/// parameter files kcli reads beside it (`NAME_default.yml` for the plan named `name`,
/// `kcli_default.yml`, `FILE_default.yml`), those that are there.
pub fn fetch_plan(
    url: &str,
    pin: Option<&str>,
    name: &str,
    deadline: Instant,
) -> Result<Fetched, String> {
    let text = get(url, deadline)?;
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    if let Some(pin) = pin {
        if !digest.eq_ignore_ascii_case(pin) {
            return Err(format!(
                "{} has SHA-256 {digest}, but the plan pins {pin}: it changed since it was \
                 pinned (or the pin is wrong)",
                shown(url)
            ));
        }
    }
    let file = file_name(url);
    let url_digest = hex::encode(Sha256::digest(url.as_bytes()));
    // One directory per URL and content: runs that read the same plan write the same files.
    let dir = crate::files::cache_dir().join("plans").join(format!(
        "{}-{}",
        &url_digest[..16],
        &digest[..16]
    ));
    let path = dir.join(&file);
    write(&path, &text)?;
    let stem = file.rsplit_once('.').map_or(file.as_str(), |(s, _)| s);
    let extension = file.rsplit_once('.').map_or("", |(_, e)| e);
    let mut defaults = vec![
        format!("{name}_default.yml"),
        "kcli_default.yml".to_string(),
        format!("{stem}_default.{extension}"),
    ];
    defaults.dedup();
    let base = base_url(url);
    for default in defaults.iter().filter(|d| **d != file) {
        let local = dir.join(default);
        match get(&format!("{base}/{default}"), deadline) {
            Ok(text) => write(&local, &text)?,
            // Not there: kcli goes on without it. Nor is one fetched earlier kept.
            Err(_) => {
                let _ = std::fs::remove_file(&local);
            }
        }
    }
    Ok(Fetched {
        url: url.to_string(),
        path,
        digest,
    })
}

/// Fetches `relative` (a script or file the fetched plan names) from beside its URL into the
/// plan's cache directory. A path that climbs out of the plan's directory is not fetched.
pub fn fetch_beside(fetched: &Fetched, relative: &str, deadline: Instant) -> Result<(), String> {
    let path = Path::new(relative);
    let plain = path
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(format!(
            "{relative}: only files under the plan's own URL are fetched"
        ));
    }
    let dir = fetched.path.parent().unwrap_or(Path::new("."));
    let text = get(&format!("{}/{relative}", base_url(&fetched.url)), deadline)?;
    write(&dir.join(path), &text)
}

/// `url` as messages show it: without the credentials it may carry (`user:token@`, a query).
pub fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("(sensitive)@{host}"),
        None => authority.to_string(),
    };
    let path = match path.split_once('?') {
        Some((path, _)) => format!("{path}?(sensitive)"),
        None => path.to_string(),
    };
    match scheme {
        "" => format!("{host}{path}"),
        scheme => format!("{scheme}://{host}{path}"),
    }
}

/// The URL's directory.
fn base_url(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(base, _)| base)
}

/// The URL's last path segment, a plain file name.
fn file_name(url: &str) -> String {
    let last = url.rsplit('/').next().unwrap_or_default();
    let clean: String = last
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    match clean.trim_start_matches('.') {
        "" => "kcli_plan.yml".to_string(),
        name => name.to_string(),
    }
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    crate::files::write_atomic(path, text.as_bytes())
        .map_err(|e| format!("cannot keep {} in the cache: {e}", path.display()))
}

/// The text at `url`: at most `TEXT_LIMIT` bytes of UTF-8, before `deadline`.
fn get(url: &str, deadline: Instant) -> Result<String, String> {
    if !fetching_allowed() {
        return Err(format!(
            "{} is not fetched: plans are fetched by URL only where the user allows it \
             ({ALLOW_FETCH_ENV}=1)",
            shown(url)
        ));
    }
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!(
            "cannot fetch {}: fetching included plans took longer than {} s in all",
            shown(url),
            FETCH_BUDGET.as_secs()
        ));
    }
    refuse_link_local(url)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(left))
        .build()
        .into();
    let mut response = agent
        .get(url)
        .call()
        .map_err(|e| format!("cannot fetch {}: {e}", shown(url)))?;
    response
        .body_mut()
        .with_config()
        .limit(TEXT_LIMIT)
        .read_to_string()
        .map_err(|e| format!("cannot read {}: {e}", shown(url)))
}

/// Refuses a URL whose host is link-local: where clouds answer for an instance's metadata and
/// credentials, which a plan from a pull request must not have fetched (its errors would show
/// the text).
fn refuse_link_local(url: &str) -> Result<(), String> {
    use std::net::{IpAddr, ToSocketAddrs};
    let authority = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let with_port = match host_port.rsplit_once(':') {
        Some((_, port))
            if port.bytes().all(|b| b.is_ascii_digit()) && !host_port.ends_with(']') =>
        {
            host_port.to_string()
        }
        _ => format!("{host_port}:80"),
    };
    let link_local = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    // Unresolvable: the request itself says so.
    let addresses = with_port.to_socket_addrs().map(|a| a.collect::<Vec<_>>());
    if addresses.is_ok_and(|a| a.iter().any(|a| link_local(a.ip()))) {
        return Err(format!(
            "{} is on a link-local address (where clouds serve instance metadata): not fetched",
            shown(url)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_read_as_kcli_reads_them() {
        let cases = [
            (
                "https://github.com/karmab/kcli-plans/blob/master/ovirt/upstream.yml",
                None,
                "https://raw.githubusercontent.com/karmab/kcli-plans/master/ovirt/upstream.yml",
            ),
            (
                "github.com/karmab/kcli/samples/plan_of_plans",
                Some("plan1.yml"),
                "https://raw.githubusercontent.com/karmab/kcli/main/samples/plan_of_plans/plan1.yml",
            ),
            (
                "https://example.com/labs/ocp",
                None,
                "https://example.com/labs/ocp/kcli_plan.yml",
            ),
            (
                "http://127.0.0.1:8080/a.yaml",
                None,
                "http://127.0.0.1:8080/a.yaml",
            ),
        ];
        for (url, file, expected) in cases {
            assert_eq!(plan_url(url, file).as_deref(), Ok(expected), "{url}");
        }
        for refused in ["file:///etc/passwd", "/srv/plan.yml", "ftp://host/p.yml"] {
            assert!(plan_url(refused, None).is_err(), "{refused}");
        }
    }

    #[test]
    fn link_local_addresses_are_not_fetched() {
        for url in [
            "http://169.254.169.254/latest/meta-data/kcli_plan.yml",
            "http://[fe80::1]:8080/p.yml",
        ] {
            let refused = refuse_link_local(url).expect_err(url);
            assert!(refused.contains("link-local"), "{refused}");
        }
    }

    #[test]
    fn a_url_is_shown_without_its_credentials() {
        assert_eq!(
            shown("https://me:s3cret@example.com/labs/kcli_plan.yml?token=abc"),
            "https://(sensitive)@example.com/labs/kcli_plan.yml?(sensitive)"
        );
        assert_eq!(
            shown("http://127.0.0.1:8080/a.yml"),
            "http://127.0.0.1:8080/a.yml"
        );
    }

    #[test]
    fn a_fetched_file_keeps_a_plain_name() {
        assert_eq!(file_name("https://h/x/lab.yml?token=1"), "lab.yml");
        assert_eq!(file_name("https://h/x/..%2f..yml"), "2f..yml");
        assert_eq!(file_name("https://h/x/"), "kcli_plan.yml");
    }
}
