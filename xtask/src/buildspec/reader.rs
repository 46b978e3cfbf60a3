//! Typed reads from the positioned YAML tree that record a diagnostic instead of failing:
//! one bad value must not hide the next one.

use std::sync::Arc;

use crate::diagnostic::{did_you_mean, Diagnostic, Location, Severity, SourceFile};
use crate::rules::{self, Rule};
use crate::yaml::{Entry, Node, Span, Value};

/// A value with the source range it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Span,
}

impl<T> Spanned<T> {
    pub fn new(value: T, span: Span) -> Self {
        Spanned { value, span }
    }
}

pub struct Reader {
    pub file: Arc<SourceFile>,
    pub diagnostics: Vec<Diagnostic>,
}

impl Reader {
    pub fn new(file: Arc<SourceFile>) -> Self {
        Reader {
            file,
            diagnostics: Vec::new(),
        }
    }

    pub fn loc(&self, span: Span) -> Location {
        self.file.at(span)
    }

    pub fn report(&mut self, rule: &'static Rule, span: Span, message: impl Into<String>) {
        let diagnostic = Diagnostic::new(rule, message).at(self.loc(span));
        self.diagnostics.push(diagnostic);
    }

    pub fn report_with_help(
        &mut self,
        rule: &'static Rule,
        span: Span,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let diagnostic = Diagnostic::new(rule, message).at(self.loc(span)).help(help);
        self.diagnostics.push(diagnostic);
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        let message = format!("{what} must be {expected}, found {}", node.kind());
        self.report(&rules::WRONG_TYPE, node.span, message);
    }

    /// The entries of a mapping, after reporting unknown and duplicate keys. `known` are the keys
    /// CodeBuild accepts here; an empty `known` accepts any key (user-named maps).
    pub fn mapping<'n>(&mut self, node: &'n Node, what: &str, known: &[&str]) -> &'n [Entry] {
        let Some(entries) = node.as_map() else {
            self.wrong_type(node, what, "a mapping");
            return &[];
        };
        for (i, entry) in entries.iter().enumerate() {
            let Some(key) = entry.key.as_str() else {
                self.wrong_type(&entry.key, &format!("a key in {what}"), "a string");
                continue;
            };
            if let Some(first) = entries[..i].iter().find(|e| e.key.as_str() == Some(key)) {
                let line = first.key.span.start.line;
                let message = format!("duplicate key `{key}` in {what} (first defined on line {line}); only one of them takes effect");
                self.report(&rules::DUPLICATE_KEY, entry.key.span, message);
            }
            if !known.is_empty() && !known.contains(&key) {
                self.unknown_key(entry, what, known);
            }
        }
        entries
    }

    /// An unknown phase makes CodeBuild refuse the buildspec (an error); any other unknown key
    /// it ignores, so it is a warning (a typo still loses what the key was meant to do).
    fn unknown_key(&mut self, entry: &Entry, what: &str, known: &[&str]) {
        let key = entry.key.as_str().unwrap_or_default();
        let (message, severity) = match what {
            "phases" => (
                format!("unknown key `{key}` in phases: CodeBuild has no such phase"),
                Severity::Error,
            ),
            _ => (
                format!("unknown key `{key}` in {what}: CodeBuild ignores it"),
                Severity::Warning,
            ),
        };
        let help = match did_you_mean(key, known) {
            Some(suggestion) => format!("did you mean `{suggestion}`?"),
            None => format!("expected one of: {}", known.join(", ")),
        };
        let diagnostic = Diagnostic::new(&rules::UNKNOWN_KEY, message)
            .at(self.loc(entry.key.span))
            .severity(severity)
            .help(help);
        self.diagnostics.push(diagnostic);
    }

    /// Reports the keys in `required` that are absent from `node` (a mapping).
    pub fn require(&mut self, node: &Node, what: &str, required: &[&str]) {
        if node.as_map().is_none() {
            return;
        }
        for key in required {
            if node.get(key).is_none() {
                let message = format!("{what} is missing the required key `{key}`");
                self.report(&rules::MISSING_KEY, node.span, message);
            }
        }
    }

    /// Any scalar, as its text (YAML numbers and booleans keep their spelling).
    pub fn string(&mut self, node: &Node, what: &str) -> Option<Spanned<String>> {
        match (&node.value, node.is_null()) {
            (Value::Scalar(s), false) => Some(Spanned::new(s.text.clone(), node.span)),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    /// CodeBuild's booleans: `yes`/`no` as in its docs, and `true`/`false`.
    pub fn boolean(&mut self, node: &Node, what: &str) -> Option<bool> {
        let text = self.string(node, what)?.value;
        match text.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" => Some(true),
            "no" | "false" | "off" => Some(false),
            _ => {
                let message = format!("{what} must be `yes` or `no`, found `{text}`");
                self.report(&rules::INVALID_VALUE, node.span, message);
                None
            }
        }
    }

    /// A list of strings; a single string is accepted as a list of one (CodeBuild does, and
    /// `files: '**/*'` is common).
    pub fn string_list(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        match &node.value {
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| self.string(item, &format!("an entry of {what}")))
                .collect(),
            Value::Scalar(_) if !node.is_null() => {
                self.single_string_warning(node, what);
                self.string(node, what).into_iter().collect()
            }
            Value::Scalar(_) => {
                self.empty_warning(node, what);
                Vec::new()
            }
            _ => {
                self.wrong_type(node, what, "a list of strings");
                Vec::new()
            }
        }
    }

    /// An empty list (`commands:` with nothing, or `[]`): real buildspecs have them (every entry
    /// commented out) and CodeBuild runs them; nothing runs there.
    fn empty_warning(&mut self, node: &Node, what: &str) {
        let message = format!("{what} is empty: nothing runs (or is listed) here");
        let diagnostic = Diagnostic::new(&rules::EMPTY_COMMANDS, message)
            .at(self.loc(node.span))
            .severity(Severity::Warning)
            .help("add an entry or remove the key");
        self.diagnostics.push(diagnostic);
    }

    /// A single string where a list is expected: read as a one-item list (as CodeBuild does), with
    /// a warning everywhere it happens.
    fn single_string_warning(&mut self, node: &Node, what: &str) {
        let message = format!("{what} should be a list, found a single string");
        let diagnostic = Diagnostic::new(&rules::WRONG_TYPE, message)
            .at(self.loc(node.span))
            .severity(Severity::Warning)
            .help("write it as a list item: `- <value>`");
        self.diagnostics.push(diagnostic);
    }

    /// A list of shell commands. Each must be a string: an unquoted `echo a: b` is a mapping to
    /// YAML, the most common way a buildspec breaks.
    pub fn commands(&mut self, node: &Node, what: &str) -> Vec<Spanned<String>> {
        let items = match &node.value {
            Value::Seq(items) => items.as_slice(),
            Value::Scalar(_) if !node.is_null() => {
                self.single_string_warning(node, what);
                return self.string(node, what).into_iter().collect();
            }
            Value::Scalar(_) => {
                self.empty_warning(node, what);
                return Vec::new();
            }
            _ => {
                self.wrong_type(node, what, "a list of commands");
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.empty_warning(node, what);
        }
        let mut commands = Vec::new();
        for item in items {
            match &item.value {
                Value::Scalar(s) if !item.is_null() => {
                    commands.push(Spanned::new(s.text.clone(), item.span));
                }
                _ => {
                    let message = format!("a command in {what} is {}, not a string", item.kind());
                    let help = if item.as_map().is_some() {
                        "YAML reads `key: value` as a mapping: quote the whole command, e.g. - 'echo \"a: b\"'"
                    } else {
                        "write the command as a string"
                    };
                    self.report_with_help(&rules::NON_STRING_COMMAND, item.span, message, help);
                }
            }
        }
        commands
    }

    /// A mapping of user-chosen names to string values (variables, parameter-store, ...).
    pub fn string_map(
        &mut self,
        node: &Node,
        what: &str,
    ) -> Vec<(Spanned<String>, Spanned<String>)> {
        let entries = self.mapping(node, what, &[]);
        entries
            .iter()
            .filter_map(|e| {
                let key = self.string(&e.key, &format!("a name in {what}"))?;
                let value = self.string(&e.value, &format!("`{}` in {what}", key.value))?;
                Some((key, value))
            })
            .collect()
    }
}
