//! Renders diagnostics in one place: human text with source snippets (miette), JSON, and SARIF
//! 2.1.0 (what GitHub code scanning ingests).

use std::fmt;

use clap::ValueEnum;
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde_json::{json, Value};

use crate::diagnostic::{Diagnostic, Severity};
use crate::rules;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Readable text with source snippets.
    #[default]
    Human,
    /// One JSON object with every diagnostic.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning and other SARIF viewers.
    Sarif,
}

pub fn render(format: Format, diagnostics: &[Diagnostic], color: bool) -> String {
    match format {
        Format::Human => human(diagnostics, color),
        Format::Json => pretty(&json_report(diagnostics)),
        Format::Sarif => pretty(&sarif(diagnostics)),
    }
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    (errors, warnings)
}

/// `file:line:col: severity[ID] message`, then the snippet, then a summary line.
pub fn human(diagnostics: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.headline());
        out.push('\n');
        let mut snippet = String::new();
        // Files without text (an unreadable file, a path inside a layer) get no snippet frame.
        let source = d
            .location
            .as_ref()
            .filter(|l| !l.file.text.is_empty())
            .map(|l| NamedSource::new(&l.file.path, l.file.text.clone()));
        if handler
            .render_report(&mut snippet, &Snippet(d, source))
            .is_ok()
        {
            out.push_str(&snippet);
        }
        out.push('\n');
    }
    let (errors, warnings) = counts(diagnostics);
    out.push_str(&format!("{errors} error(s), {warnings} warning(s)\n"));
    out
}

/// A diagnostic seen through miette, for its snippet renderer.
struct Snippet<'a>(&'a Diagnostic, Option<NamedSource<String>>);

impl fmt::Debug for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

impl fmt::Display for Snippet<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0.rule.name, self.0.rule.id)
    }
}

impl std::error::Error for Snippet<'_> {}

impl miette::Diagnostic for Snippet<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.0.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.0
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.1.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.1.as_ref()?;
        let loc = self.0.location.as_ref()?;
        let text_len = loc.file.text.len();
        let start = loc.span.start.offset.min(text_len);
        // Point at a whole token, but never past the end of the file or across lines.
        let line_end = loc.file.text[start..]
            .find('\n')
            .map_or(text_len, |i| start + i);
        let end = loc.span.end.offset.clamp(start, line_end);
        let span = SourceSpan::from((start, end - start));
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            Some("here".into()),
            span,
        ))))
    }
}

fn json_report(diagnostics: &[Diagnostic]) -> Value {
    let (errors, warnings) = counts(diagnostics);
    let items: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let mut item = json!({
                "rule": d.rule.id,
                "name": d.rule.name,
                "severity": d.severity.to_string(),
                "message": d.message,
                "help": d.help,
            });
            if let Some(loc) = &d.location {
                item["file"] = json!(loc.file.path);
                item["line"] = json!(loc.span.start.line);
                item["column"] = json!(loc.span.start.col);
                item["end_line"] = json!(loc.span.end.line);
                item["end_column"] = json!(loc.span.end.col);
            }
            item
        })
        .collect();
    json!({
        "diagnostics": items,
        "summary": { "errors": errors, "warnings": warnings },
    })
}

fn sarif_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

/// A relative URI with forward slashes, as code scanning resolves it against the repository root.
fn sarif_uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    path.strip_prefix("./").unwrap_or(&path).to_string()
}

fn sarif(diagnostics: &[Diagnostic]) -> Value {
    let rule_index = |id: &str| rules::ALL.iter().position(|r| r.id == id);
    let rules_json: Vec<Value> = rules::ALL
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": { "text": r.summary },
                "defaultConfiguration": { "level": sarif_level(r.severity) },
            })
        })
        .collect();
    let results: Vec<Value> = diagnostics
        .iter()
        .map(|d| {
            let mut message = d.message.clone();
            if let Some(help) = &d.help {
                message.push_str(&format!(" ({help})"));
            }
            let mut result = json!({
                "ruleId": d.rule.id,
                "ruleIndex": rule_index(d.rule.id),
                "level": sarif_level(d.severity),
                "message": { "text": message },
            });
            if let Some(loc) = &d.location {
                let (start, end) = (loc.span.start, loc.span.end);
                let mut region = json!({ "startLine": start.line, "startColumn": start.col });
                if end.line >= start.line && end.offset > start.offset {
                    region["endLine"] = json!(end.line);
                    region["endColumn"] = json!(end.col);
                }
                result["locations"] = json!([{
                    "physicalLocation": {
                        "artifactLocation": { "uri": sarif_uri(&loc.file.path), "uriBaseId": "%SRCROOT%" },
                        "region": region,
                    }
                }]);
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "lint-buildspec",
                "fullName": "cargo xtask lint-buildspec (CodeBuild buildspec 0.2 linter)",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules_json,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}
