//! Fetching image bytes from http(s) or a local file, checked against a SHA-256 digest.
//!
//! The whole image is fetched and checked before any provider is touched, so a bad download
//! never leaves a half-written volume behind.

use std::io::Read;

use sha2::{Digest, Sha256};

/// Images larger than this are refused rather than held in memory.
const MAX_IMAGE_BYTES: u64 = 64 * 1024 * 1024 * 1024;

pub fn fetch(url: &str, sha256: Option<&str>) -> Result<Vec<u8>, String> {
    let bytes = if let Some(path) = url
        .strip_prefix("file://")
        .or_else(|| url.starts_with('/').then_some(url))
    {
        let real = crate::manifest::access::regular_file(std::path::Path::new(path))
            .map_err(|refused| format!("image: {refused}"))?;
        std::fs::read(real).map_err(|e| format!("cannot read image {path}: {e}"))?
    } else if url.starts_with("http://") || url.starts_with("https://") {
        download(url)?
    } else {
        return Err(format!(
            "cannot fetch `{url}`: use http(s)://, file:// or an absolute path"
        ));
    };
    if let Some(expected) = sha256 {
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(format!(
                "{url}: SHA-256 is {actual}, but the plan expects {expected}"
            ));
        }
    }
    Ok(bytes)
}

fn download(url: &str) -> Result<Vec<u8>, String> {
    let mut response = ureq::get(url)
        .call()
        .map_err(|e| format!("cannot download {url}: {e}"))?;
    let length = response.body().content_length();
    // indicatif draws only on a terminal: in a log the bar is silent.
    let bar = indicatif::ProgressBar::new(length.unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(crate::secrets::scrub(url.rsplit('/').next().unwrap_or(url)));
    let mut reader = response
        .body_mut()
        .with_config()
        .limit(MAX_IMAGE_BYTES)
        .reader();
    let mut bytes = Vec::with_capacity(length.unwrap_or(0).min(1 << 30) as usize);
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("download of {url} failed: {e}"))?;
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buf[..n]);
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(bytes)
}

/// Whether bytes are a qcow2 image (its magic number), else raw.
pub fn is_qcow2(bytes: &[u8]) -> bool {
    bytes.starts_with(b"QFI\xfb")
}

/// The virtual size in a qcow2 header (bytes 24..32, big-endian).
pub fn qcow2_virtual_size(bytes: &[u8]) -> Option<u64> {
    let field: [u8; 8] = bytes.get(24..32)?.try_into().ok()?;
    Some(u64::from_be_bytes(field))
}
