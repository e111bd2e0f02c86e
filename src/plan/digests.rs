//! Digests of generated content (a cloud-init seed, a Secret's data) are how the planner sees
//! that a password changed without holding the password. They are never shown: a digest of a
//! weak password can be guessed offline from a pull-request comment. Once a plan is made, each
//! one in what it shows (attributes, drift, what waits for a restart) is replaced by
//! `(sensitive)`, and a changed one by `(sensitive, changed)`, so that the change is still seen.

use serde_json::Value;

use super::{AttributeChange, Plan};
use crate::secrets::SENSITIVE;

/// What a changed digest is shown as.
pub const CHANGED: &str = "(sensitive, changed)";

/// Replaces every digest of generated content in what `plan` shows.
pub fn hide(plan: &mut Plan) {
    for change in &mut plan.changes {
        for attribute in change
            .attributes
            .iter_mut()
            .chain(change.drift.iter_mut())
            .chain(change.pending_restart.iter_mut())
        {
            hide_in(attribute);
        }
    }
}

fn hide_in(attribute: &mut AttributeChange) {
    // An attribute that is a digest itself: a VM's `seed` (a seed made again) and
    // `seed_sha256`, a KubeVirt Secret's `content.sha256`, an EC2 instance's `user_data.sha256`
    // (object fields are named by their path).
    if attribute.name == "seed" || is_digest("", &attribute.name) {
        // One that is new (a create, or a mark that recorded none) is not a change of it.
        let changed = attribute.before.as_ref().is_some_and(|b| !b.is_null())
            && attribute.before != attribute.after;
        for (value, after) in [(&mut attribute.before, false), (&mut attribute.after, true)] {
            if let Some(value) = value.as_mut().filter(|v| v.is_string()) {
                *value = shown(after && changed);
            }
        }
        return;
    }
    let mut before = Vec::new();
    if let Some(value) = &mut attribute.before {
        take(value, "", "", &mut before);
    }
    let Some(value) = &mut attribute.after else {
        return;
    };
    let mut after = Vec::new();
    take(value, "", "", &mut after);
    for (pointer, digest) in after {
        let was = before.iter().find(|(p, _)| *p == pointer).map(|(_, d)| d);
        if was.is_some_and(|was| *was != digest) {
            if let Some(field) = value.pointer_mut(&pointer) {
                *field = shown(true);
            }
        }
    }
}

/// Replaces every digest of generated content under `value` by `(sensitive)`.
pub fn blank(value: &mut Value) {
    take(value, "", "", &mut Vec::new());
}

fn shown(changed: bool) -> Value {
    Value::from(if changed { CHANGED } else { SENSITIVE })
}

/// Whether the field `key` (under `parent`) holds a digest of generated content: a volume's
/// `source.generated.sha256`, a KubeVirt Secret's `content.sha256`, a VM's `seed_sha256`.
/// A digest of generated content: a generated volume's `sha256`, and any field named as the
/// digest of something (`seed_sha256`, a KubeVirt Secret's `content.sha256`, an EC2 instance's
/// `user_data.sha256`). A fetched image's `sha256` is the user's checksum, shown as it is.
fn is_digest(parent: &str, key: &str) -> bool {
    (parent == "generated" && key == "sha256")
        || key.ends_with(".sha256")
        || key.ends_with("_sha256")
}

/// Replaces each digest under `value` by `(sensitive)`, collecting each with its JSON
/// pointer.
fn take(value: &mut Value, pointer: &str, parent: &str, found: &mut Vec<(String, Value)>) {
    let Value::Object(map) = value else { return };
    for (key, field) in map.iter_mut() {
        let here = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
        if is_digest(parent, key) && field.is_string() {
            found.push((here, std::mem::replace(field, shown(false))));
        } else {
            take(field, &here, key, found);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::Disruption;
    use serde_json::json;

    fn source(digest: &str) -> Value {
        json!({"generated": {"sha256": digest, "review": "#cloud-config"}})
    }

    fn attribute(name: &str, before: Option<Value>, after: Option<Value>) -> AttributeChange {
        AttributeChange {
            name: name.into(),
            before,
            after,
            disruption: Disruption::Replace,
        }
    }

    #[test]
    fn digests_are_hidden_and_a_changed_one_says_so() {
        let mut changed = attribute("source", Some(source("aaaa")), Some(source("bbbb")));
        hide_in(&mut changed);
        assert_eq!(changed.before, Some(source(SENSITIVE)));
        assert_eq!(changed.after, Some(source(CHANGED)));

        let mut created = attribute("source", None, Some(source("bbbb")));
        hide_in(&mut created);
        assert_eq!(created.after, Some(source(SENSITIVE)));

        let mut seed = attribute("seed", Some(json!("aaaa")), Some(json!("bbbb")));
        hide_in(&mut seed);
        assert_eq!(
            (seed.before, seed.after),
            (Some(json!(SENSITIVE)), Some(json!(CHANGED)))
        );

        let fields = |d: &str| json!({"content.sha256": d, "metadata/name": "x"});
        let mut secret = attribute("fields", Some(fields("aaaa")), Some(fields("aaaa")));
        hide_in(&mut secret);
        assert_eq!(secret.after, Some(fields(SENSITIVE)));

        // An EC2 instance's user data, by digest: a field of its own.
        let mut user_data = attribute("user_data.sha256", None, Some(json!("cccc")));
        hide_in(&mut user_data);
        assert_eq!(user_data.after, Some(json!(SENSITIVE)));
    }
}
