//! The one problem type every stage reports with: a rule, a severity, a message and, where a file
//! is involved, the exact place in it. Rendering lives in `report`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use crate::rules::Rule;
use crate::yaml::{Pos, Span};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Note,
    Warning,
    Error,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

/// A file the diagnostics point into, with the text the snippets are cut from.
#[derive(Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// As the user named it (relative paths stay relative: SARIF and editors want that).
    pub path: String,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(SourceFile {
            path: path.into(),
            text: text.into(),
        })
    }

    pub fn read(path: &Path) -> std::io::Result<Arc<Self>> {
        let text = std::fs::read_to_string(path)?;
        Ok(Self::new(path.display().to_string(), text))
    }

    /// The position of a byte offset (clamped to the text, moved back to a char boundary).
    pub fn pos_at(&self, offset: usize) -> Pos {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Pos {
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
            offset,
        }
    }

    /// The span of `len` bytes starting at `offset`.
    pub fn span_at(&self, offset: usize, len: usize) -> Span {
        Span {
            start: self.pos_at(offset),
            end: self.pos_at(offset + len),
        }
    }

    /// A location covering `span` of this file.
    pub fn at(self: &Arc<Self>, span: Span) -> Location {
        Location {
            file: Arc::clone(self),
            span,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub file: Arc<SourceFile>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub rule: &'static Rule,
    pub severity: Severity,
    pub message: String,
    pub location: Option<Location>,
    pub help: Option<String>,
}

impl Diagnostic {
    /// A diagnostic at the rule's default severity.
    pub fn new(rule: &'static Rule, message: impl Into<String>) -> Self {
        Diagnostic {
            rule,
            severity: rule.severity,
            message: message.into(),
            location: None,
            help: None,
        }
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col: severity[ID]: message`, the one-line form for logs and editors.
    pub fn headline(&self) -> String {
        let position = self
            .position()
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        format!(
            "{position}{}[{}]: {}",
            self.severity, self.rule.id, self.message
        )
    }

    /// `file:line:col`, or just the file, or nothing.
    pub fn position(&self) -> Option<String> {
        let loc = self.location.as_ref()?;
        let start = loc.span.start;
        Some(format!("{}:{}:{}", loc.file.path, start.line, start.col))
    }
}

/// Sorts by file, then position, so output is stable and reads top to bottom.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by_key(|d| {
        let loc = d.location.as_ref();
        (
            loc.map(|l| l.file.path.clone()),
            loc.map(|l| l.span.start.offset),
            d.rule.id,
        )
    });
}

/// Spelling suggestion for an unknown name: the closest known one, if it is close enough.
pub fn did_you_mean<'a>(unknown: &str, known: &[&'a str]) -> Option<&'a str> {
    let unknown_lower = unknown.to_ascii_lowercase().replace('_', "-");
    known
        .iter()
        .map(|k| {
            let candidate = k.to_ascii_lowercase().replace('_', "-");
            (strsim::jaro_winkler(&unknown_lower, &candidate), *k)
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggestions_catch_typos_and_separator_mixups() {
        let phases = ["install", "pre_build", "build", "post_build"];
        assert_eq!(did_you_mean("prebuild", &phases), Some("pre_build"));
        assert_eq!(did_you_mean("post-build", &phases), Some("post_build"));
        assert_eq!(did_you_mean("instal", &phases), Some("install"));
        assert_eq!(did_you_mean("zzz", &phases), None);
    }
}
