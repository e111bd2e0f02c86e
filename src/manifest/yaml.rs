//! A YAML document tree in which every node knows where it came from.
//!
//! serde-based YAML crates forget positions, and errors that point at a line are the point of
//! validation, so the plan is parsed from yaml-rust2's event stream into this tree instead.
//! Scalars are resolved the way PyYAML (and so kcli) resolves them: YAML 1.1 booleans such as
//! `yes`/`no`, octal `0644`, and `~` for null.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::diagnostics::Span;

/// Beyond this many nodes a document is refused: aliases can otherwise expand exponentially.
const MAX_NODES: usize = 2_000_000;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

impl Node {
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The key text of a scalar, as a map key is compared.
    pub fn key_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null => Some(String::new()),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// Where the values of keys named like secrets (`rootpassword: x`, `admin_pwd: y`, at any
    /// depth) are in the text: what `plan render` and diagnostics hide. Sorted.
    pub fn secret_spans(&self) -> Vec<std::ops::Range<usize>> {
        fn walk(node: &Node, secret: bool, out: &mut Vec<std::ops::Range<usize>>) {
            match &node.value {
                Value::Seq(items) => items.iter().for_each(|n| walk(n, secret, out)),
                Value::Map(entries) => {
                    for (k, v) in entries {
                        let named = k
                            .key_text()
                            .is_some_and(|k| crate::secrets::is_sensitive_name(&k));
                        walk(v, secret || named, out);
                    }
                }
                Value::Str(_) | Value::Int(_) | Value::Float(_) if secret => {
                    out.push(node.span.range());
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(self, false, &mut out);
        out.sort_by_key(|r| r.start);
        out.dedup();
        out
    }

    /// A copy whose every span is `span`: a node from another file, pointed at a place in this one.
    pub fn respanned(&self, span: Span) -> Node {
        let value = match &self.value {
            Value::Seq(items) => Value::Seq(items.iter().map(|n| n.respanned(span)).collect()),
            Value::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.respanned(span), v.respanned(span)))
                    .collect(),
            ),
            scalar => scalar.clone(),
        };
        Node { value, span }
    }

    /// A map node without `key`; any other node as it is.
    pub fn without(mut self, key: &str) -> Node {
        if let Value::Map(entries) = &mut self.value {
            entries.retain(|(k, _)| k.key_text().as_deref() != Some(key));
        }
        self
    }

    /// The value of `key` in a map node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.key_text().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    pub fn kind_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }

    /// The node as plain JSON, for template parameters.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::Int(i) => (*i).into(),
            Value::Float(f) => serde_json::Number::from_f64(*f)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::Str(s) => s.clone().into(),
            Value::Seq(items) => items.iter().map(Node::to_json).collect(),
            Value::Map(entries) => entries
                .iter()
                .map(|(k, v)| (k.key_text().unwrap_or_default(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }
}

/// A problem found while reading YAML: a syntax error, or a key repeated in one map.
#[derive(Debug, Clone, PartialEq)]
pub enum YamlProblem {
    Syntax {
        message: String,
        span: Span,
    },
    DuplicateKey {
        key: String,
        first: Span,
        again: Span,
    },
    TooLarge {
        span: Span,
    },
}

/// Parses one YAML document. An empty document is `Null`.
/// Duplicate keys do not stop parsing: they are returned beside the tree (the first wins).
pub fn parse(text: &str) -> Result<(Node, Vec<YamlProblem>), YamlProblem> {
    let mut builder = Builder::new(text);
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        let offset = builder.offset(*e.marker());
        return Err(YamlProblem::Syntax {
            message: e.info().to_string(),
            span: Span::new(offset.min(text.len()), 0),
        });
    }
    if builder.too_large {
        return Err(YamlProblem::TooLarge {
            span: Span::new(0, 0),
        });
    }
    let root = builder.root.take().unwrap_or(Node {
        value: Value::Null,
        span: Span::new(0, 0),
    });
    Ok((root, builder.problems))
}

enum Open {
    Seq {
        anchor: usize,
        start: usize,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        start: usize,
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        /// Key text to the span of its first occurrence, to find duplicates in constant time.
        seen: HashMap<String, Span>,
    },
}

struct Builder<'a> {
    text: &'a str,
    line_starts: Vec<usize>,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    problems: Vec<YamlProblem>,
    nodes: usize,
    too_large: bool,
    documents: usize,
}

impl<'a> Builder<'a> {
    fn new(text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Builder {
            text,
            line_starts,
            stack: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            problems: Vec::new(),
            nodes: 0,
            too_large: false,
            documents: 0,
        }
    }

    /// The byte offset of a marker. yaml-rust2 counts characters, so go through line and column.
    fn offset(&self, m: Marker) -> usize {
        let line = m.line().saturating_sub(1);
        let Some(&start) = self.line_starts.get(line) else {
            return self.text.len();
        };
        let rest = &self.text[start..];
        let line_text = rest.split('\n').next().unwrap_or("");
        let within = line_text
            .char_indices()
            .nth(m.col())
            .map(|(i, _)| i)
            .unwrap_or(line_text.len());
        start + within
    }

    fn scalar_len(&self, start: usize, value: &str, style: TScalarStyle) -> usize {
        let rest = &self.text[start.min(self.text.len())..];
        match style {
            TScalarStyle::Plain => {
                if value.contains('\n') || value.is_empty() {
                    rest.find('\n')
                        .unwrap_or(rest.len())
                        .min(value.len().max(1))
                } else {
                    value.len()
                }
            }
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                let quote = if style == TScalarStyle::SingleQuoted {
                    '\''
                } else {
                    '"'
                };
                let mut escaped = false;
                for (i, c) in rest.char_indices().skip(1) {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' && quote == '"' {
                        escaped = true;
                    } else if c == quote {
                        if quote == '\'' && rest[i + 1..].starts_with('\'') {
                            escaped = true;
                            continue;
                        }
                        return i + 1;
                    }
                }
                rest.len()
            }
            TScalarStyle::Literal | TScalarStyle::Folded => 1,
        }
    }

    fn push(&mut self, node: Node, anchor: usize) {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            self.too_large = true;
            return;
        }
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map {
                entries,
                pending_key,
                seen,
                ..
            }) => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => match key.key_text() {
                    Some(text) => match seen.get(&text) {
                        Some(&first) => self.problems.push(YamlProblem::DuplicateKey {
                            key: text,
                            first,
                            again: key.span,
                        }),
                        None => {
                            seen.insert(text, key.span);
                            entries.push((key, node));
                        }
                    },
                    None => entries.push((key, node)),
                },
            },
        }
    }

    fn count_nodes(node: &Node) -> usize {
        match &node.value {
            Value::Seq(items) => 1 + items.iter().map(Self::count_nodes).sum::<usize>(),
            Value::Map(entries) => {
                1 + entries
                    .iter()
                    .map(|(k, v)| Self::count_nodes(k) + Self::count_nodes(v))
                    .sum::<usize>()
            }
            _ => 1,
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.too_large {
            return;
        }
        let at = self.offset(mark);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
            }
            Event::Scalar(value, style, anchor, tag) => {
                let len = self.scalar_len(at, &value, style);
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == TScalarStyle::Plain && !forced_string {
                    resolve_plain(value)
                } else {
                    Value::Str(value)
                };
                self.push(
                    Node {
                        value,
                        span: Span::new(at, len),
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => self.stack.push(Open::Seq {
                anchor,
                start: at,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => self.stack.push(Open::Map {
                anchor,
                start: at,
                entries: Vec::new(),
                pending_key: None,
                seen: HashMap::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, start, anchor) = match self.stack.pop() {
                    Some(Open::Seq {
                        anchor,
                        start,
                        items,
                    }) => (Value::Seq(items), start, anchor),
                    Some(Open::Map {
                        anchor,
                        start,
                        entries,
                        ..
                    }) => (Value::Map(entries), start, anchor),
                    None => return,
                };
                let end = at.max(start);
                // A block collection's end marker sits at the next token; trim trailing blank space.
                let trimmed = self.text[start..end].trim_end().len();
                let span = Span::new(start, trimmed.max(1).min(self.text.len() - start));
                self.push(Node { value, span }, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut node) => {
                    self.nodes += Self::count_nodes(&node);
                    node.span = Span::new(at, 1);
                    self.push(node, 0);
                }
                None => self.problems.push(YamlProblem::Syntax {
                    message: "alias to an unknown anchor".into(),
                    span: Span::new(at, 1),
                }),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

/// Resolves a plain scalar as YAML 1.1 (PyYAML) does.
fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => {
            return Value::Bool(true)
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            return Value::Bool(false)
        }
        _ => {}
    }
    if let Some(i) = parse_int(&text) {
        return Value::Int(i);
    }
    if let Some(f) = parse_float(&text) {
        return Value::Float(f);
    }
    Value::Str(text)
}

fn parse_int(text: &str) -> Option<i64> {
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return None;
    }
    let magnitude = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(oct) = digits.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()?
    } else if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let looks_numeric = text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
        && text.bytes().any(|b| b.is_ascii_digit())
        && text.contains('.');
    if looks_numeric {
        text.parse().ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        parse(text).unwrap().0.value
    }

    #[test]
    fn resolves_scalars_as_pyyaml_does() {
        assert_eq!(value("yes"), Value::Bool(true));
        assert_eq!(value("Off"), Value::Bool(false));
        assert_eq!(value("0644"), Value::Int(0o644));
        assert_eq!(value("4096"), Value::Int(4096));
        assert_eq!(value("4G"), Value::Str("4G".into()));
        assert_eq!(value("'yes'"), Value::Str("yes".into()));
        assert_eq!(value("1.5"), Value::Float(1.5));
        assert_eq!(value("192.168.1.1"), Value::Str("192.168.1.1".into()));
        assert_eq!(value("~"), Value::Null);
        assert_eq!(value("!!str 12"), Value::Str("12".into()));
    }

    #[test]
    fn spans_are_byte_offsets_of_the_source() {
        let text = "# é comment\nvm1:\n  memory: \"4G\"\n  numcpus: 2\n";
        let (root, problems) = parse(text).unwrap();
        assert!(problems.is_empty());
        let vm = root.get("vm1").unwrap();
        let memory = vm.get("memory").unwrap();
        assert_eq!(&text[memory.span.range()], "\"4G\"");
        let cpus = vm.get("numcpus").unwrap();
        assert_eq!(&text[cpus.span.range()], "2");
    }

    #[test]
    fn reports_duplicate_keys_and_keeps_the_first() {
        let (root, problems) = parse("a: 1\nb: 2\na: 3\n").unwrap();
        assert_eq!(root.get("a").unwrap().value, Value::Int(1));
        assert!(matches!(&problems[..], [YamlProblem::DuplicateKey { key, .. }] if key == "a"));
    }

    #[test]
    fn expands_aliases() {
        let (root, _) = parse("base: &b {x: 1}\nother: *b\n").unwrap();
        assert_eq!(
            root.get("other").unwrap().get("x").unwrap().value,
            Value::Int(1)
        );
    }

    #[test]
    fn refuses_alias_bombs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        assert!(matches!(parse(&text), Err(YamlProblem::TooLarge { .. })));
    }

    #[test]
    fn syntax_errors_carry_a_position() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(matches!(err, YamlProblem::Syntax { .. }));
    }
}
