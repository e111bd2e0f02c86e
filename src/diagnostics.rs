//! Problems found in a plan, collected rather than thrown, and rendered with miette.
//!
//! Every check appends to a `Diagnostics` list and carries on, so a user sees every mistake in
//! one run. A problem points into the text that was parsed: the plan after templating.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

/// A byte range in the rendered plan text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub offset: usize,
    pub len: usize,
}

impl Span {
    pub fn new(offset: usize, len: usize) -> Self {
        Span { offset, len }
    }

    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }

    pub fn shifted(self, by: usize) -> Self {
        Span::new(self.offset + by, self.len)
    }
}

impl From<Span> for SourceSpan {
    fn from(span: Span) -> Self {
        SourceSpan::new(span.offset.into(), span.len)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem: what is wrong, where, and what to do about it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub severity: Severity,
    /// A stable code such as `plan::unknown-key`, for tests and for searching docs.
    pub code: &'static str,
    pub message: String,
    pub labels: Vec<(Span, String)>,
    pub help: Option<String>,
    /// The text the labels point into when it is not the plan's: a script or file a VM ships.
    pub source: Option<Box<SourceText>>,
}

impl Problem {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Error,
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            source: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(code, message)
        }
    }

    pub fn label(mut self, span: Span, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
        self
    }

    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.help = Some(text.into());
        self
    }

    /// Says that the labels point into `source`, not into the plan.
    pub fn in_source(mut self, source: SourceText) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The first labelled position, which orders problems by where they are in the file.
    pub fn offset(&self) -> usize {
        self.labels.first().map_or(0, |(s, _)| s.offset)
    }
}

/// Problems found so far, in the order found.
#[derive(Debug, Default)]
pub struct Diagnostics {
    problems: Vec<Problem>,
}

impl Diagnostics {
    /// Adds a problem, unless the same one was already found at the same place: a profile's
    /// keys are read once for the profile and again for each VM that uses it.
    pub fn push(&mut self, problem: Problem) {
        let seen = self.problems.iter().any(|p| {
            p.code == problem.code
                && !p.labels.is_empty()
                && p.source.as_ref().map(|s| &s.name) == problem.source.as_ref().map(|s| &s.name)
                && p.labels
                    .iter()
                    .map(|l| l.0)
                    .eq(problem.labels.iter().map(|l| l.0))
        });
        if !seen {
            self.problems.push(problem);
        }
    }

    pub fn has_errors(&self) -> bool {
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Turns every warning into an error (`--strict`).
    pub fn escalate_warnings(&mut self) {
        for p in &mut self.problems {
            p.severity = Severity::Error;
        }
    }

    /// The problems sorted by position, errors and warnings interleaved as they appear.
    pub fn into_sorted(mut self) -> Vec<Problem> {
        self.problems.sort_by_key(|p| p.offset());
        self.problems
    }
}

/// The text problems point into, and what to call it.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub name: String,
    pub text: Arc<String>,
    /// Byte ranges of `text` that hold secrets (written there by the template), masked
    /// wherever the text is shown.
    pub secrets: Arc<Vec<std::ops::Range<usize>>>,
}

impl SourceText {
    /// A text without secrets written into it by a template.
    pub fn new(name: impl Into<String>, text: String) -> SourceText {
        SourceText {
            name: name.into(),
            text: Arc::new(text),
            secrets: Arc::default(),
        }
    }

    /// The text as diagnostics may show it: secrets masked, byte for byte (`secrets::mask`).
    pub fn masked(&self) -> Arc<String> {
        Arc::new(crate::secrets::mask(&self.text, &self.secrets))
    }
}

/// Lines longer than this are not drawn under a label (miette cannot pad that far).
const LONGEST_DRAWN_LINE: usize = 10_000;

/// The line of `text` that byte `offset` is on.
fn line_around(text: &str, offset: usize) -> &str {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    &text[start..end]
}

/// The 1-based line and column (in characters) of byte `offset` of `text`.
fn line_and_column(text: &str, mut offset: usize) -> (usize, usize) {
    offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, text[start..offset].chars().count() + 1)
}

/// A problem bound to its source text, ready for miette to render.
#[derive(Debug)]
pub struct Rendered {
    problem: Problem,
    source: NamedSource<Arc<String>>,
}

impl Rendered {
    /// The problem, bound to its own source if it has one, else to `source`; the secrets in
    /// either are masked. A label on a line too long to draw (a plan written as one line of
    /// JSON) is said as its line and column instead.
    pub fn new(mut problem: Problem, source: &SourceText) -> Self {
        let source = problem.source.as_deref().unwrap_or(source);
        let text = source.masked();
        if problem
            .labels
            .iter()
            .any(|(span, _)| line_around(&text, span.offset).len() > LONGEST_DRAWN_LINE)
        {
            let places: Vec<String> = problem
                .labels
                .iter()
                .map(|(span, label)| {
                    let (line, column) = line_and_column(&text, span.offset);
                    format!("{}:{line}:{column}: {label}", source.name)
                })
                .collect();
            problem.message = format!("{} (at {})", problem.message, places.join("; "));
            problem.labels.clear();
        }
        let source = NamedSource::new(source.name.clone(), text);
        Rendered { problem, source }
    }
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problem.message)
    }
}

impl std::error::Error for Rendered {}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.problem.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.problem.severity {
            Severity::Warning => miette::Severity::Warning,
            Severity::Error => miette::Severity::Error,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        if self.problem.labels.is_empty() {
            None
        } else {
            Some(&self.source)
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let len = self.source.inner().len();
        Some(Box::new(self.problem.labels.iter().map(
            move |(span, text)| {
                // Clamp so a span can never point past the text, whatever produced it.
                let offset = span.offset.min(len);
                let span = Span::new(offset, span.len.min(len - offset));
                LabeledSpan::new_with_span(Some(text.clone()), span)
            },
        )))
    }
}

/// Suggests the closest of `candidates` to a misspelt `word`, if any is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}
