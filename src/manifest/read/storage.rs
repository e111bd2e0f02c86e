//! Pools, images and shared disks.

use super::*;

pub(super) fn read_pool(r: &mut MapReader, d: &mut Diagnostics) -> Pool {
    if let Some(kind) = r.string("pooltype", d) {
        if kind.value != "dir" {
            d.push(
                Problem::error(
                    "plan::unsupported-pool",
                    format!("pool type `{}` is not supported", kind.value),
                )
                .label(kind.span, "siteplan creates dir pools only")
                .help("remove `pooltype` or set it to dir"),
            );
        }
    }
    let path = match r.string("path", d) {
        Some(p) if is_system_directory(&p.value) => {
            d.push(
                Problem::error(
                    "plan::system-pool-path",
                    format!("pool path `{}` is a system directory", p.value),
                )
                .label(
                    p.span,
                    "volumes would be written among the host's own files",
                )
                .help("use a directory of its own, such as /var/lib/libvirt/images/lab"),
            );
            String::new()
        }
        Some(p) if p.value.starts_with('/') => p.value,
        Some(p) => {
            d.push(
                Problem::error(
                    "plan::relative-path",
                    format!("pool path `{}` is relative", p.value),
                )
                .label(p.span, "libvirt needs an absolute path")
                .help("write the full path, such as /var/lib/libvirt/images"),
            );
            String::new()
        }
        None => {
            if r.peek("path").is_none() {
                d.push(
                    Problem::error("plan::missing-path", format!("{} has no `path`", r.what))
                        .label(r.span, "where should its volumes live?")
                        .help("add `path: /var/lib/libvirt/images` (a directory on the host)"),
                );
            }
            String::new()
        }
    };
    Pool { path }
}

pub(super) fn read_image(r: &mut MapReader, d: &mut Diagnostics) -> Image {
    let url = r.string("url", d).and_then(|u| {
        // `./` and `../` paths are relative to the plan file.
        let ok = ["http://", "https://", "file://", "/", "./", "../"]
            .iter()
            .any(|p| u.value.starts_with(p));
        if ok {
            Some(u.value)
        } else {
            d.push(
                Problem::error(
                    "plan::bad-url",
                    format!("cannot fetch an image from `{}`", u.value),
                )
                .label(u.span, "not an http(s) URL or a path")
                .help(
                    "use http://, https://, file://, an absolute path, or a path relative to \
                     the plan that starts with ./ or ../",
                ),
            );
            None
        }
    });
    let pool = r
        .reference("pool", d)
        .unwrap_or_else(|| r.default_ref("default"));
    let size_bytes = r.size("size", Unit::Gib, d);
    let sha256 = r.string("sha256", d).and_then(|s| {
        let hex = s.value.trim_start_matches("sha256:").to_ascii_lowercase();
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Some(hex)
        } else {
            d.push(
                Problem::error("plan::bad-checksum", "not a SHA-256 digest")
                    .label(s.span, "expected 64 hexadecimal digits"),
            );
            None
        }
    });
    Image {
        url,
        pool,
        size_bytes,
        sha256,
    }
}

pub(super) fn read_shared_disk(r: &mut MapReader, d: &mut Diagnostics) -> SharedDisk {
    SharedDisk {
        size_bytes: r.size("size", Unit::Gib, d).unwrap_or(10 * GIB),
        pool: r
            .reference("pool", d)
            .unwrap_or_else(|| r.default_ref("default")),
        thin: r.bool("thin", true, d),
        image: r.reference("image", d),
        vms: r.refs("vms", d),
    }
}

/// `/` and the directories a Linux system keeps its own files in, where no pool belongs.
pub(super) fn is_system_directory(path: &str) -> bool {
    const SYSTEM: [&str; 17] = [
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/proc", "/root", "/run",
        "/sbin", "/sys", "/tmp", "/usr", "/var", "/var/lib",
    ];
    let trimmed = path.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    SYSTEM.contains(&trimmed)
}
