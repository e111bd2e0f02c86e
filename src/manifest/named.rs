//! The local files a plan's entries name (scripts, `origin` files, local image URLs), checked
//! where they are named: a file the plan may not read is an error at its line, one that is not
//! there a warning (an error once the guest files are read, and nothing to `plan destroy`).

use std::path::Path;

use super::{access, guestfiles, yaml};
use crate::diagnostics::{Diagnostics, Problem};

/// A script or `origin` file that is not there.
pub const MISSING_FILE: &str = "plan::file-missing";

/// Reports, at the line, each local file the document's entries name (scripts, `origin` files,
/// local image URLs) that the plan may not read (`access`): outside its tree, not a regular
/// file, or the system's. One that does not exist is left to the run that needs it.
pub fn refuse_unreadable(
    root: &yaml::Node,
    path: &Path,
    access: &access::FileAccess,
    d: &mut Diagnostics,
) {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Each with whether it is text (bounded in size), or an image.
    let mut named: Vec<(&str, crate::diagnostics::Span, bool)> = Vec::new();
    fn text(n: &yaml::Node) -> Option<&str> {
        match &n.value {
            yaml::Value::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }
    for (_, entry) in root.as_map().unwrap_or_default() {
        let list = |key: &str| match entry.get(key).map(|n| &n.value) {
            Some(yaml::Value::Seq(items)) => items.as_slice(),
            _ => &[],
        };
        for script in list("scripts") {
            named.extend(text(script).map(|s| (s, script.span, true)));
        }
        for file in list("files") {
            let origin = match &file.value {
                yaml::Value::Map(_) => file.get("origin"),
                _ => Some(file),
            };
            named.extend(origin.and_then(|o| text(o).map(|s| (s, o.span, true))));
        }
        let image = matches!(entry.get("type").and_then(text), Some("image" | "template"));
        if let (true, Some(url)) = (image, entry.get("url")) {
            let local = text(url).and_then(|u| match u.strip_prefix("file://") {
                Some(path) => Some(path),
                None => (!u.contains("://")).then_some(u),
            });
            named.extend(local.map(|u| (u, url.span, false)));
        }
    }
    for (name, span, is_text) in named {
        let located = guestfiles::locate(name, dir);
        let checked = if is_text {
            access.check_text(&located)
        } else {
            access.check(&located)
        };
        let Err(refused) = checked else {
            continue;
        };
        // An image may be named by a path only the provider knows.
        if refused.missing && !is_text {
            continue;
        }
        // A missing script is an error where it would be read (`check_guest_files`), and
        // not to `plan destroy`, which reads none.
        let mut problem = if refused.missing {
            Problem::warning(MISSING_FILE, refused.message).label(span, "no such file")
        } else {
            Problem::error("plan::file-refused", refused.message).label(span, "read from here")
        };
        if let Some(help) = refused.help {
            problem = problem.help(help);
        }
        d.push(problem);
    }
}
