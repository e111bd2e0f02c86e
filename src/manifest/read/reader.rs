//! `MapReader`, which reads one map's keys and remembers which were asked for, and the value
//! forms every entry shares (sizes, lists, positive numbers).

use super::*;

pub(super) fn positive_u32(n: i64, span: Span, key: &str, d: &mut Diagnostics) -> u32 {
    match u32::try_from(n) {
        Ok(v) if v > 0 => v,
        _ => {
            d.push(
                Problem::error(
                    "plan::bad-number",
                    format!("`{key}` must be a positive integer, not {n}"),
                )
                .label(span, "out of range"),
            );
            1
        }
    }
}

pub(super) fn list<'a>(node: &'a Node, key: &str, d: &mut Diagnostics) -> Option<&'a [Node]> {
    match &node.value {
        Value::Seq(items) => Some(items),
        Value::Null => Some(&[]),
        _ => {
            d.push(
                Problem::error(
                    "plan::not-a-list",
                    format!("`{key}` must be a list, not {}", node.kind_name()),
                )
                .label(node.span, "expected a list")
                .help(format!("write `{key}: [a, b]` or one `- item` per line")),
            );
            None
        }
    }
}

/// The unit a bare number means.
#[derive(Clone, Copy)]
pub enum Unit {
    Mib,
    Gib,
}

/// Parses kcli's size forms: `20` (in the default unit), `1.5`, `512M`, `4G`, `4Gi`, `4GB`, `1T`.
pub fn parse_size(node: &Node, default: Unit, what: &str, d: &mut Diagnostics) -> Option<u64> {
    let default_factor = match default {
        Unit::Mib => 1u64 << 20,
        Unit::Gib => 1u64 << 30,
    };
    let bytes = match &node.value {
        Value::Int(n) => (*n > 0)
            .then(|| (*n as u64).checked_mul(default_factor))
            .flatten(),
        Value::Float(f) if f.is_finite() && *f > 0.0 => Some((f * default_factor as f64) as u64),
        Value::Str(s) => parse_size_text(s, default_factor),
        _ => None,
    };
    match bytes {
        Some(b) if b > 0 => Some(b),
        _ => {
            let default_unit = match default {
                Unit::Mib => "MiB",
                Unit::Gib => "GiB",
            };
            let shown = match &node.value {
                Value::Str(s) => s.clone(),
                Value::Int(n) => n.to_string(),
                Value::Float(f) => f.to_string(),
                _ => node.kind_name().to_string(),
            };
            d.push(
                Problem::error("plan::bad-size", format!("{what} `{shown}` is not a positive size"))
                    .label(node.span, "not a positive size")
                    .help(format!(
                        "write a number ({default_unit}) or a number with a unit, such as 512M, 4G or 1T"
                    )),
            );
            None
        }
    }
}

pub(super) fn parse_size_text(text: &str, default_factor: u64) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let factor = match unit {
        "" => default_factor,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    let bytes = number * factor as f64;
    (bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Reads the keys of one map, remembering which were asked for.
///
/// A VM that uses a profile reads through two layers: its own keys, then the profile's.
pub struct MapReader<'a> {
    pub(super) layers: Vec<&'a [(Node, Node)]>,
    pub(super) used: Vec<String>,
    /// What the map is, for messages: "vm `web1`".
    pub what: String,
    /// Where the map's name is: defaults point here.
    pub span: Span,
    /// Every key asked for, present or not (for checking the schema against the reader).
    pub asked: Vec<&'static str>,
    /// The map's keys are template variables (a VM's, and its NICs', disks' and files'), so a
    /// key nobody reads is kept for the templates rather than ignored.
    pub(super) variables: bool,
    /// Names older kcli plans used for keys now spelt otherwise (`template` for `image`): said
    /// as such when left unread.
    pub(super) older_names: &'static [(&'static str, &'static str)],
    /// How many layers, from the first, give template variables: the map's own and its
    /// profile's, not the kcli configuration's defaults.
    pub(super) variable_layers: usize,
}

impl<'a> MapReader<'a> {
    pub fn new(node: &'a Node, what: String, span: Span) -> Self {
        MapReader {
            layers: vec![node.as_map().unwrap_or(&[])],
            used: Vec::new(),
            what,
            span,
            asked: Vec::new(),
            variables: false,
            older_names: &[],
            variable_layers: 1,
        }
    }

    /// Every key of the variable layers with its value, the first layer winning: what kcli
    /// gives a VM's script and file templates besides the plan's parameters.
    pub(super) fn variables(&self) -> BTreeMap<String, serde_json::Value> {
        let mut vars = BTreeMap::new();
        for layer in self.layers.iter().take(self.variable_layers).rev() {
            for (key, value) in layer.iter() {
                if let Some(name) = key.key_text() {
                    vars.insert(name, value.to_json());
                }
            }
        }
        vars
    }

    /// Says that the map's keys are template variables (see `variables`).
    pub(super) fn with_variables(mut self) -> Self {
        self.variables = true;
        self
    }

    /// Says which of the map's keys older kcli plans used for others (see `older_names`).
    pub(super) fn with_older_names(
        mut self,
        older: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.older_names = older;
        self
    }

    pub(super) fn add_layer(&mut self, node: &'a Node) {
        self.layers.push(node.as_map().unwrap_or(&[]));
        self.variable_layers = self.layers.len();
    }

    /// A layer of defaults from outside the plan: read, but not a template variable.
    pub(super) fn add_default_layer(&mut self, node: &'a Node) {
        self.layers.push(node.as_map().unwrap_or(&[]));
    }

    pub(super) fn default_ref(&self, name: &str) -> Ref {
        Ref {
            name: name.to_string(),
            span: self.span,
        }
    }

    /// The value of `key` from the first layer that has it, without marking it used.
    pub(super) fn peek(&self, key: &str) -> Option<&'a Node> {
        self.layers.iter().find_map(|layer| {
            layer
                .iter()
                .find(|(k, _)| k.key_text().as_deref() == Some(key))
                .map(|(_, v)| v)
        })
    }

    /// The value of `key`, marking it used. `None` written out is no value: it is what an
    /// empty kcli parameter renders as (a warning says so where the parameter is declared).
    pub fn take(&mut self, key: &'static str) -> Option<&'a Node> {
        self.asked.push(key);
        self.used.push(key.to_string());
        self.peek(key)
            .filter(|node| !matches!(&node.value, Value::Str(s) if s == "None"))
    }

    pub(super) fn type_error(&self, key: &str, node: &Node, expected: &str, d: &mut Diagnostics) {
        d.push(
            Problem::error(
                "plan::wrong-type",
                format!(
                    "`{key}` of {} must be {expected}, not {}",
                    self.what,
                    node.kind_name()
                ),
            )
            .label(node.span, format!("expected {expected}")),
        );
    }

    pub(super) fn bool(&mut self, key: &'static str, default: bool, d: &mut Diagnostics) -> bool {
        match self.take(key) {
            None => default,
            Some(node) => match node.value {
                Value::Bool(b) => b,
                Value::Null => default,
                _ => {
                    self.type_error(key, node, "true or false", d);
                    default
                }
            },
        }
    }

    pub(super) fn int(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<(i64, Span)> {
        let node = self.take(key)?;
        match &node.value {
            Value::Int(i) => Some((*i, node.span)),
            Value::Null => None,
            Value::Str(s) if s.parse::<i64>().is_ok() => s.parse().ok().map(|i| (i, node.span)),
            _ => {
                self.type_error(key, node, "an integer", d);
                None
            }
        }
    }

    pub(super) fn size(
        &mut self,
        key: &'static str,
        unit: Unit,
        d: &mut Diagnostics,
    ) -> Option<u64> {
        self.size_at(key, unit, d).map(|(bytes, _)| bytes)
    }

    /// The size, and where it is written.
    pub(super) fn size_at(
        &mut self,
        key: &'static str,
        unit: Unit,
        d: &mut Diagnostics,
    ) -> Option<(u64, Span)> {
        let node = self.take(key)?;
        if node.value == Value::Null {
            return None;
        }
        parse_size(node, unit, key, d).map(|bytes| (bytes, node.span))
    }

    pub(super) fn string(
        &mut self,
        key: &'static str,
        d: &mut Diagnostics,
    ) -> Option<Located<String>> {
        let node = self.take(key)?;
        let value = match &node.value {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => return None,
            _ => {
                self.type_error(key, node, "a string", d);
                return None;
            }
        };
        Some(Located {
            value,
            span: node.span,
        })
    }

    pub(super) fn reference(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Ref> {
        self.string(key, d).and_then(|s| {
            if s.value.is_empty() {
                None
            } else {
                Some(Ref {
                    name: s.value,
                    span: s.span,
                })
            }
        })
    }

    pub(super) fn choice(
        &mut self,
        key: &'static str,
        allowed: &[&str],
        d: &mut Diagnostics,
    ) -> Option<String> {
        let s = self.string(key, d)?;
        if allowed.contains(&s.value.as_str()) {
            return Some(s.value);
        }
        let hint = match did_you_mean(&s.value, allowed.iter().copied()) {
            Some(m) => format!("did you mean `{m}`?"),
            None => format!("choose one of: {}", allowed.join(", ")),
        };
        d.push(
            Problem::error(
                "plan::bad-value",
                format!("`{}` is not a valid `{key}` for {}", s.value, self.what),
            )
            .label(s.span, "not one of the allowed values")
            .help(hint),
        );
        None
    }

    pub(super) fn ip(&mut self, key: &'static str, d: &mut Diagnostics) -> Option<Located<IpAddr>> {
        let s = self.string(key, d)?;
        match s.value.parse::<IpAddr>() {
            Ok(ip) => Some(Located {
                value: ip,
                span: s.span,
            }),
            Err(_) => {
                d.push(
                    Problem::error(
                        "plan::bad-ip",
                        format!("`{}` is not an IP address", s.value),
                    )
                    .label(s.span, format!("`{key}` must be an IPv4 or IPv6 address")),
                );
                None
            }
        }
    }

    pub(super) fn strings(&mut self, key: &'static str, d: &mut Diagnostics) -> Vec<String> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        let Some(items) = list(node, key, d) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match &item.value {
                Value::Str(s) => Some(s.clone()),
                Value::Int(i) => Some(i.to_string()),
                Value::Float(f) => Some(f.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => {
                    d.push(
                        Problem::error(
                            "plan::wrong-type",
                            format!("items of `{key}` must be strings"),
                        )
                        .label(item.span, format!("this is {}", item.kind_name())),
                    );
                    None
                }
            })
            .collect()
    }

    /// A list of names, or a single name.
    pub(super) fn refs(&mut self, key: &'static str, d: &mut Diagnostics) -> Vec<Ref> {
        let Some(node) = self.take(key) else {
            return Vec::new();
        };
        if let Value::Str(name) = &node.value {
            return vec![Ref {
                name: name.clone(),
                span: node.span,
            }];
        }
        let Some(items) = list(node, key, d) else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|item| match item.key_text() {
                Some(name) if !name.is_empty() => Some(Ref {
                    name,
                    span: item.span,
                }),
                _ => {
                    d.push(
                        Problem::error(
                            "plan::wrong-type",
                            format!("items of `{key}` must be names"),
                        )
                        .label(item.span, "not a name"),
                    );
                    None
                }
            })
            .collect()
    }

    /// Reports the keys of the first layer that nobody asked for. None is an error unless
    /// `--strict`: in kcli a key it does not know is a variable for the VM's script and file
    /// templates, and kcli ignores whatever else it does not read.
    pub fn finish(self, unimplemented: &[&str], d: &mut Diagnostics) {
        let Some(own) = self.layers.first() else {
            return;
        };
        for (key, _) in own.iter() {
            let Some(name) = key.key_text() else {
                d.push(
                    Problem::error("plan::bad-key", "keys must be plain strings")
                        .label(key.span, "not a key"),
                );
                continue;
            };
            if self.used.contains(&name) {
                continue;
            }
            if unimplemented.contains(&name.as_str()) {
                let ignored = if self.variables {
                    "ignores it except as a template variable"
                } else {
                    "ignores it"
                };
                d.push(
                    Problem::warning(
                        "plan::unimplemented-key",
                        format!(
                            "`{name}` is a kcli key that siteplan does not implement yet; {} {ignored}",
                            self.what
                        ),
                    )
                    .label(key.span, "ignored")
                    .help("remove it, or keep it for kcli; `--strict` makes this an error"),
                );
                continue;
            }
            if let Some((_, now)) = self.older_names.iter().find(|(old, _)| *old == name) {
                d.push(
                    Problem::warning(
                        "plan::older-key",
                        format!(
                            "`{name}` is what older kcli plans called `{now}`: {} takes nothing from it, as current kcli takes nothing (it stays a template variable)",
                            self.what
                        ),
                    )
                    .label(key.span, format!("write `{now}`"))
                    .help(format!("rename it to `{now}`; `--strict` makes this an error")),
                );
                continue;
            }
            let vocabulary = self.asked.iter().chain(unimplemented).copied();
            let close = did_you_mean(&name, vocabulary).map(|s| format!("did you mean `{s}`? "));
            let (message, label) = if self.variables {
                (
                    format!(
                        "`{name}` is not a siteplan or kcli key: {} keeps it only as a template variable",
                        self.what
                    ),
                    "a template variable",
                )
            } else {
                (
                    format!("`{name}` is not a key of {}: it is ignored", self.what),
                    "ignored",
                )
            };
            d.push(
                Problem::warning("plan::unknown-key", message)
                    .label(key.span, label)
                    .help(format!(
                        "{}`--strict` makes this an error",
                        close.unwrap_or_default()
                    )),
            );
        }
    }
}
