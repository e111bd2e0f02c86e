//! The plan's text: its entries as YAML, a header that says where it came from and what it
//! could not say, and every `{{`, `{%` and `{#` found in a live resource escaped, since a plan
//! is a Jinja template (a guest file's content must not become a template).

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use super::{Found, Keys};

/// Where a parameter is used: a placeholder the text swaps for `{{ name }}` once everything
/// found has been escaped, with this run's nonce, so no text found can forge one.
pub(super) fn parameter_use(name: &str) -> Value {
    Value::String(format!("{}{name}{}", marker().0, marker().1))
}

fn marker() -> &'static (String, String) {
    static MARKER: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    MARKER.get_or_init(|| {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        (format!("@@param-{nonce}@"), format!("@{nonce}@@"))
    })
}

/// A parameter name from a VM's name: letters, digits and `_`.
pub(super) fn parameter_name(vm: &str) -> String {
    let name: String = vm
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("vm_{name}")
    } else {
        name
    }
}

pub(super) fn plan_text(
    found: &Found,
    entries: &[(String, Keys)],
    secrets: &BTreeMap<String, String>,
    notes: &[String],
) -> String {
    let mut text = String::new();
    let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    text.push_str(&format!(
        "# Written by `plan generate` from {}: {}, {}, {}, {}.\n",
        one_line(&found.provider),
        count(found.vms.len(), "VM"),
        count(found.networks.len(), "network"),
        count(found.pools.len(), "pool"),
        count(found.images.len(), "image"),
    ));
    text.push_str(
        "# Review it, then take the resources over: `plan diff FILE --adopt-all` shows each as\n\
         # adopted, with nothing to change but siteplan's marks; `plan apply FILE --adopt-all`\n\
         # writes them. Networks and pools it only names are used, never made or deleted.\n",
    );
    if !notes.is_empty() {
        text.push_str("#\n# Not written as found:\n");
        for note in notes {
            text.push_str(&format!("# - {}\n", one_line(note)));
        }
    }
    if !secrets.is_empty() {
        text.push_str(
            "#\n# Secrets are not written: give each `?required` parameter with -P NAME=VALUE.\n",
        );
        let mut parameters = Mapping::new();
        for name in secrets.keys() {
            parameters.insert(
                name.clone().into(),
                crate::manifest::params::REQUIRED.into(),
            );
        }
        let mut top = Mapping::new();
        top.insert("parameters".into(), Value::Mapping(parameters));
        text.push('\n');
        text.push_str(&serde_norway::to_string(&top).unwrap_or_default());
    }
    for (name, keys) in entries {
        let mut map = Mapping::new();
        for (key, value) in keys {
            map.insert((*key).into(), value.clone());
        }
        let mut entry = Mapping::new();
        entry.insert(name.clone().into(), Value::Mapping(map));
        text.push('\n');
        text.push_str(&serde_norway::to_string(&entry).unwrap_or_default());
    }
    let mut text = escape_jinja(&text);
    let (open, close) = marker();
    for name in secrets.keys() {
        // As kcli's plans write it, unquoted: the value is YAML once rendered.
        let used = format!("{{{{ {name} }}}}");
        for quote in ["'", "\"", ""] {
            text = text.replace(&format!("{quote}{open}{name}{close}{quote}"), &used);
        }
    }
    text
}

/// A name or note found live, on one comment line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Text in which Jinja sees no tag: each `{{`, `{%` and `{#` becomes an expression that
/// writes it.
fn escape_jinja(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('{', Some(&next @ ('{' | '%' | '#'))) => {
                chars.next();
                out.push_str(&format!("{{{{ '{{{next}' }}}}"));
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jinja_tags_are_written_as_text() {
        assert_eq!(
            escape_jinja("a {{ b }} {% c %} {# d"),
            "a {{ '{{' }} b }} {{ '{%' }} c %} {{ '{#' }} d"
        );
        assert_eq!(escape_jinja("{{{"), "{{ '{{' }}{");
        assert_eq!(escape_jinja("plain { text }"), "plain { text }");
    }
}
