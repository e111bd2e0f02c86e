//! Template parameters and their precedence, lowest first, as kcli orders them:
//!
//! 1. the parameters of the plan a `baseplan` parameter names (and, in turn, of its own);
//! 2. default parameter files beside the plan: `NAME_default.yml` (the plan's name),
//!    `kcli_default.yml`, then `FILE_default.yml` (the file's name);
//! 3. the plan's own `parameters:` block;
//! 4. parameter files (`--paramfile`, else `kcli_parameters.yml` in the current directory);
//! 5. `-P key=value` on the command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::access::FileAccess;
use super::yaml::{self, Node, Value, YamlProblem};
use crate::diagnostics::{Diagnostics, Problem, Span};

/// The file kcli reads in the current directory when no parameter file is given.
pub const DEFAULT_PARAMFILE: &str = "kcli_parameters.yml";

/// How deep `baseplan` may nest: a plan naming itself, or a ring of plans, stops here.
const BASEPLAN_DEPTH: usize = 8;

/// The value that says "this parameter must be given by the user".
pub const REQUIRED: &str = "?required";

/// Parameter overrides from the command line.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub paramfiles: Vec<PathBuf>,
    /// `key=value` strings, in the order given.
    pub sets: Vec<String>,
    /// The plan's name when `--name` gives one; else the file's name without extension.
    pub name: Option<String>,
    /// `--allow-read`: what the plan may read besides its own directory's tree.
    pub allow_read: Vec<PathBuf>,
    /// `--no-kcli-config`: the user's kcli configuration is not read (`SITEPLAN_NO_KCLI_CONFIG`
    /// turns it off too).
    pub no_kcli_config: bool,
}

/// A parameter's value and where it was set.
#[derive(Debug, Clone)]
pub struct Param {
    pub value: serde_json::Value,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// In the plan's `parameters:` block, at this span of the plan source.
    Plan(Span),
    File(PathBuf),
    CommandLine,
}

/// Finds the top-level `parameters:` block in the raw (unrendered) plan, as kcli does: the line
/// `parameters:` and the indented lines after it. Returns the block's text and its byte offset.
pub fn parameters_block(source: &str) -> Option<(usize, &str)> {
    let mut offset = 0;
    let mut start = None;
    for line in source.split_inclusive('\n') {
        let content = line.trim_end();
        match start {
            None => {
                let is_header = content.strip_prefix("parameters:").is_some_and(|rest| {
                    rest.trim().is_empty()
                        || rest.trim_start().starts_with('#')
                        || rest.trim_start().starts_with('{')
                });
                if is_header {
                    start = Some(offset);
                }
            }
            Some(s) => {
                let continues = content.is_empty()
                    || content.starts_with(' ')
                    || content.starts_with('\t')
                    || content.starts_with('#');
                if !continues {
                    return Some((s, &source[s..offset]));
                }
            }
        }
        offset += line.len();
    }
    start.map(|s| (s, &source[s..]))
}

/// Reads the plan's own parameters. Problems point into the plan source.
pub fn plan_parameters(source: &str, d: &mut Diagnostics) -> BTreeMap<String, Param> {
    let Some((offset, block)) = parameters_block(source) else {
        return BTreeMap::new();
    };
    let (root, problems) = match yaml::parse(block) {
        Ok(parsed) => parsed,
        Err(problem) => {
            report_yaml(problem, offset, d);
            return BTreeMap::new();
        }
    };
    for p in problems {
        report_yaml(p, offset, d);
    }
    let Some(node) = root.get("parameters") else {
        return BTreeMap::new();
    };
    match &node.value {
        Value::Map(entries) => params_from(entries, |key| Origin::Plan(key.span.shifted(offset))),
        Value::Null => BTreeMap::new(),
        _ => {
            d.push(
                Problem::error(
                    "plan::bad-parameters",
                    "`parameters` must be a map of names to values",
                )
                .label(
                    node.span.shifted(offset),
                    format!("this is {}", node.kind_name()),
                ),
            );
            BTreeMap::new()
        }
    }
}

fn params_from(
    entries: &[(Node, Node)],
    origin: impl Fn(&Node) -> Origin,
) -> BTreeMap<String, Param> {
    entries
        .iter()
        .filter_map(|(key, value)| {
            let param = Param {
                value: value.to_json(),
                origin: origin(key),
            };
            Some((key.key_text()?, param))
        })
        .collect()
}

pub fn report_yaml(problem: YamlProblem, offset: usize, d: &mut Diagnostics) {
    match problem {
        YamlProblem::Syntax { message, span } => d.push(
            Problem::error("plan::yaml", format!("invalid YAML: {message}"))
                .label(span.shifted(offset), message)
                .help("check the indentation and quoting around this line"),
        ),
        YamlProblem::DuplicateKey { key, first, again } => d.push(
            Problem::error("plan::duplicate-key", format!("`{key}` is defined twice"))
                .label(first.shifted(offset), "first defined here")
                .label(again.shifted(offset), "defined again here")
                .help("names and keys must be unique; rename or remove one of them"),
        ),
        YamlProblem::TooLarge { span } => d.push(
            Problem::error("plan::too-large", "the document expands to too many nodes")
                .label(span.shifted(offset), "YAML aliases expand here")
                .help("YAML aliases that nest aliases grow exponentially; write the values out"),
        ),
    }
}

/// Reads a parameter file: a map of names to values, or a map with a `parameters` key.
/// Its problems have no span in the plan, so they name the file and line instead. `access`
/// says where a file the plan names may be read; `None` for one given on the command line.
pub fn file_parameters(
    path: &Path,
    access: Option<&FileAccess>,
    d: &mut Diagnostics,
) -> BTreeMap<String, Param> {
    let read = match access {
        Some(access) => access.read_text(path),
        None => super::access::read_given(path),
    };
    let text = match read {
        Ok(text) => text,
        Err(refused) => {
            let mut p = Problem::error(
                "plan::paramfile",
                format!("parameter file: {}", refused.message),
            );
            if let Some(help) = refused.help {
                p = p.help(help);
            }
            d.push(p);
            return BTreeMap::new();
        }
    };
    let line_of = |span: Span| text[..span.offset.min(text.len())].matches('\n').count() + 1;
    let root = match yaml::parse(&text) {
        Ok((root, problems)) => {
            for p in problems {
                if let YamlProblem::DuplicateKey { key, again, .. } = p {
                    d.push(Problem::error(
                        "plan::paramfile",
                        format!(
                            "{}:{}: `{key}` is defined twice",
                            path.display(),
                            line_of(again)
                        ),
                    ));
                }
            }
            root
        }
        Err(YamlProblem::Syntax { message, span }) => {
            d.push(Problem::error(
                "plan::paramfile",
                format!(
                    "{}:{}: invalid YAML: {message}",
                    path.display(),
                    line_of(span)
                ),
            ));
            return BTreeMap::new();
        }
        Err(_) => {
            d.push(Problem::error(
                "plan::paramfile",
                format!("{}: the document is too large", path.display()),
            ));
            return BTreeMap::new();
        }
    };
    let map: &Node = root.get("parameters").unwrap_or(&root);
    match &map.value {
        Value::Map(entries) => params_from(entries, |_| Origin::File(path.to_path_buf())),
        Value::Null => BTreeMap::new(),
        _ => {
            d.push(Problem::error(
                "plan::paramfile",
                format!(
                    "{}: a parameter file is a map of names to values",
                    path.display()
                ),
            ));
            BTreeMap::new()
        }
    }
}

/// Parses `-P key=value`, typing the value as kcli does: digits are integers, true/false are
/// booleans, `[a,b]` is a list (its items typed the same way), `{...}` is parsed as YAML.
pub fn parse_set(set: &str) -> Result<(String, serde_json::Value), String> {
    let Some((key, value)) = set.split_once('=') else {
        return Err(format!("`-P {set}` is not key=value"));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("`-P {set}` has no parameter name before `=`"));
    }
    Ok((key.to_string(), typed_value(value)))
}

fn typed_value(value: &str) -> serde_json::Value {
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = trimmed.parse::<i64>() {
            return n.into();
        }
    }
    match trimmed.to_ascii_lowercase().as_str() {
        "true" | "yes" => return true.into(),
        "false" | "no" => return false.into(),
        "none" | "null" => return serde_json::Value::Null,
        _ => {}
    }
    if let Some(inner) = trimmed.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        if inner.trim().is_empty() {
            return serde_json::Value::Array(Vec::new());
        }
        return inner
            .split(',')
            .map(|item| typed_value(item.trim().trim_matches(['"', '\''])))
            .collect();
    }
    if trimmed.starts_with('{') && trimmed.ends_with('}') {
        if let Ok((node, problems)) = yaml::parse(trimmed) {
            if problems.is_empty() {
                return node.to_json();
            }
        }
    }
    serde_json::Value::String(value.to_string())
}

/// The parameter files kcli reads beside `plan_path` for a plan named `name`, lowest first.
fn default_files(plan_path: &Path, name: &str) -> Vec<PathBuf> {
    let dir = plan_path.parent().unwrap_or(Path::new("."));
    let stem = plan_path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let extension = plan_path
        .extension()
        .map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    let mut files = vec![
        dir.join(format!("{name}_default.yml")),
        dir.join("kcli_default.yml"),
        dir.join(format!("{stem}_default{extension}")),
    ];
    files.dedup();
    files.retain(|f| f.is_file() && f != plan_path);
    files
}

/// The parameters a plan file has before the command line: its base plan's, its default
/// files', then its own block. `read` collects the files read besides the plan.
fn plan_file_parameters(
    source: &str,
    plan_path: &Path,
    name: &str,
    access: &FileAccess,
    depth: usize,
    read: &mut Vec<PathBuf>,
    d: &mut Diagnostics,
) -> BTreeMap<String, Param> {
    let mut params = BTreeMap::new();
    for file in default_files(plan_path, name) {
        params.extend(file_parameters(&file, Some(access), d));
        read.push(file);
    }
    params.extend(plan_parameters(source, d));
    let Some(base) = params
        .get("baseplan")
        .map(|p| (p.value.clone(), p.origin.clone()))
    else {
        return params;
    };
    let (serde_json::Value::String(file), origin) = base else {
        d.push(Problem::error(
            "plan::baseplan",
            "`baseplan` names a plan file: it must be a string",
        ));
        return params;
    };
    let base_path = plan_path.parent().unwrap_or(Path::new(".")).join(&file);
    let mut problem = |message: String, help: Option<String>| {
        let mut p =
            Problem::error("plan::baseplan", message).help(help.unwrap_or_else(|| {
                "`baseplan` is a path relative to this plan's directory".into()
            }));
        if let Origin::Plan(span) = origin {
            p = p.label(span, "the base plan");
        }
        d.push(p);
    };
    if depth >= BASEPLAN_DEPTH {
        problem(
            format!(
                "`baseplan` nests more than {BASEPLAN_DEPTH} plans deep at {}: do the plans name each other?",
                base_path.display()
            ),
            None,
        );
        return params;
    }
    let text = match access.read_text(&base_path) {
        Ok(text) => text,
        Err(refused) => {
            problem(format!("base plan: {}", refused.message), refused.help);
            return params;
        }
    };
    read.push(base_path.clone());
    // The base plan's problems point into another file: name it instead.
    let mut base_problems = Diagnostics::default();
    let inherited = plan_file_parameters(
        &text,
        &base_path,
        name,
        access,
        depth + 1,
        read,
        &mut base_problems,
    );
    for p in base_problems.into_sorted() {
        let mut p = Problem {
            labels: Vec::new(),
            ..p
        };
        p.message = format!("{} (in base plan {})", p.message, base_path.display());
        d.push(p);
    }
    for (key, mut param) in inherited {
        if key == "baseplan" || params.contains_key(&key) {
            continue;
        }
        if let Origin::Plan(_) = param.origin {
            param.origin = Origin::File(base_path.clone());
        }
        params.insert(key, param);
    }
    params
}

/// Merges every source of parameters in precedence order and checks `?required` ones.
/// `name` is the plan's name. Returns the parameters and the files read besides the plan.
pub fn resolve(
    plan_source: &str,
    plan_path: &Path,
    name: &str,
    overrides: &Overrides,
    access: &FileAccess,
    d: &mut Diagnostics,
) -> (BTreeMap<String, Param>, Vec<PathBuf>) {
    let mut read = Vec::new();
    let mut params = plan_file_parameters(plan_source, plan_path, name, access, 0, &mut read, d);
    let paramfiles: Vec<PathBuf> = if overrides.paramfiles.is_empty() {
        let here = PathBuf::from(DEFAULT_PARAMFILE);
        if here.is_file() {
            vec![here]
        } else {
            Vec::new()
        }
    } else {
        overrides.paramfiles.clone()
    };
    for file in &paramfiles {
        params.extend(file_parameters(file, None, d));
        read.push(file.clone());
    }
    for set in &overrides.sets {
        match parse_set(set) {
            Ok((key, value)) => {
                params.insert(
                    key,
                    Param {
                        value,
                        origin: Origin::CommandLine,
                    },
                );
            }
            Err(message) => d.push(
                Problem::error("plan::bad-override", message)
                    .help("write `-P name=value`, for example `-P memory=4096`"),
            ),
        }
    }
    for (name, param) in &params {
        if param.value.as_str() != Some(REQUIRED) {
            continue;
        }
        let mut problem = Problem::error(
            "plan::required-parameter",
            format!("parameter `{name}` is required but has no value"),
        )
        .help(format!(
            "give it with `-P {name}=VALUE`, or in a parameter file (--paramfile or {DEFAULT_PARAMFILE})"
        ));
        match &param.origin {
            Origin::Plan(span) => problem = problem.label(*span, "declared `?required` here"),
            Origin::File(path) => problem
                .message
                .push_str(&format!(" (set to ?required in {})", path.display())),
            Origin::CommandLine => {}
        }
        d.push(problem);
    }
    for (name, param) in &params {
        if !param.value.is_null() {
            continue;
        }
        let mut problem = Problem::warning(
            "plan::parameter-without-value",
            format!("parameter `{name}` has no value: where a template uses it, it writes `None`, as kcli does"),
        )
        .help(format!(
            "give it a value, here or with `-P {name}=VALUE`; write `{name}: ''` for an empty string"
        ));
        if let Origin::Plan(span) = &param.origin {
            problem = problem.label(*span, "no value");
        }
        d.push(problem);
    }
    for (name, param) in &params {
        if crate::secrets::is_sensitive_name(name) {
            register_leaves(&param.value);
        }
    }
    (params, read)
}

/// Registers every scalar in a sensitive parameter's value as a secret.
pub(crate) fn register_leaves(value: &serde_json::Value) {
    match value {
        serde_json::Value::String(s) => crate::secrets::register(s),
        serde_json::Value::Number(n) => crate::secrets::register(&n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(register_leaves),
        serde_json::Value::Object(map) => map.values().for_each(register_leaves),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_command_line_values_as_kcli_does() {
        assert_eq!(parse_set("n=3").unwrap().1, json!(3));
        assert_eq!(parse_set("b=True").unwrap().1, json!(true));
        assert_eq!(parse_set("l=[a,b,3]").unwrap().1, json!(["a", "b", 3]));
        assert_eq!(parse_set("s=4G").unwrap().1, json!("4G"));
        assert_eq!(parse_set("m={a: 1}").unwrap().1, json!({"a": 1}));
        assert_eq!(parse_set("e=").unwrap().1, json!(""));
        assert!(parse_set("novalue").is_err());
        assert!(parse_set("=x").is_err());
    }

    #[test]
    fn finds_the_parameters_block_before_templating() {
        let source = "parameters:\n  n: 2\n  # comment\n\n  image: centos\n{% for i in range(n) %}\nvm{{ i }}: {}\n{% endfor %}\n";
        let (offset, block) = parameters_block(source).unwrap();
        assert_eq!(offset, 0);
        assert!(block.ends_with("image: centos\n"));
        let mut d = Diagnostics::default();
        let params = plan_parameters(source, &mut d);
        assert_eq!(params["n"].value, json!(2));
        assert!(d.is_empty());
    }
}
