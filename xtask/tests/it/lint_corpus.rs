//! The buildspec corpus in `test_data/buildspecs/`: every file in `valid/` lints without errors
//! (and with exactly the warnings it declares), every file in `invalid/` with exactly the
//! diagnostics it declares.
//!
//! A corpus file declares what it expects in comment lines at its top:
//!
//! - `# shape: <what it represents>` (required in `valid/`, the first line);
//! - `# expect: BS101 12:5 "did you mean"`: one diagnostic, as its rule id and position: `line:col`
//!   in the buildspec, `path:line:col` in another file (relative to the buildspec's directory), or
//!   `-` for none; then, optionally, a quoted text its message or help contains;
//! - `# template: ../templates/x.yaml` and `# codebuild: ../templates/y.yaml`: the layer template
//!   and the CodeBuild template for the cross-checks (relative to the buildspec's directory);
//! - `# cross-checks: on|off`: off by default in `valid/` (`--no-cross-checks`), on in `invalid/`;
//!   the cross-checks' source root is the buildspec's directory.
//!
//! The date is fixed (2026-11-26), so deprecation warnings do not change with the calendar.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use xtask::buildspec;
use xtask::diagnostic::{Diagnostic, Severity, SourceFile};
use xtask::lint::{self, Options, TemplatePath};
use xtask::rules;
use xtask::runtime::Date;

const TODAY: Date = Date::new(2026, 11, 26);

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data/buildspecs")
}

/// The `.yml`/`.yaml` files of a corpus directory, sorted; fails when there are none.
fn corpus_files(kind: &str) -> Vec<PathBuf> {
    let dir = corpus().join(kind);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} has no buildspecs", dir.display());
    files
}

/// Where a diagnostic points.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    /// `line:col` in the buildspec itself.
    Here(usize, usize),
    /// `line:col` in another file (a template), by its path as the linter was given it.
    Other(String, usize, usize),
    Nowhere,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::Here(line, col) => write!(f, "{line}:{col}"),
            Place::Other(path, line, col) => write!(f, "{path}:{line}:{col}"),
            Place::Nowhere => f.write_str("-"),
        }
    }
}

#[derive(Debug)]
struct Expectation {
    rule: String,
    place: Place,
    /// A text the message or the help contains.
    text: Option<String>,
}

/// What a corpus file's header says.
#[derive(Debug, Default)]
struct Header {
    shape: Option<String>,
    expect: Vec<Expectation>,
    template: Option<String>,
    codebuild: Option<String>,
    cross_checks: Option<bool>,
}

fn parse_header(path: &Path, text: &str) -> Header {
    let dir = path.parent().expect("a corpus file is in a directory");
    let mut header = Header::default();
    for line in text
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with('#'))
    {
        let line = line.trim_start_matches('#').trim();
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            "shape" => header.shape = Some(value.to_string()),
            "template" => header.template = Some(value.to_string()),
            "codebuild" => header.codebuild = Some(value.to_string()),
            "cross-checks" => {
                header.cross_checks = Some(match value {
                    "on" => true,
                    "off" => false,
                    other => panic!(
                        "{}: `# cross-checks: {other}`: use on or off",
                        path.display()
                    ),
                })
            }
            "expect" => header.expect.push(parse_expectation(path, dir, value)),
            _ => {}
        }
    }
    header
}

/// `BS101 12:5 "text"`, `BS201 ../templates/t.yaml:15:11`, `BS209 -`.
fn parse_expectation(path: &Path, dir: &Path, spec: &str) -> Expectation {
    let bad = |why: &str| -> ! { panic!("{}: bad `# expect: {spec}`: {why}", path.display()) };
    let (spec, text) = match spec.split_once('"') {
        Some((before, quoted)) => {
            let text = quoted
                .strip_suffix('"')
                .unwrap_or_else(|| bad("unterminated quote"));
            (before.trim(), Some(text.to_string()))
        }
        None => (spec, None),
    };
    let mut parts = spec.split_whitespace();
    let rule = parts
        .next()
        .unwrap_or_else(|| bad("no rule id"))
        .to_string();
    let position = parts.next().unwrap_or_else(|| bad("no position"));
    if parts.next().is_some() {
        bad("text after the position must be quoted");
    }
    if !rules::ALL.iter().any(|r| r.id == rule) {
        bad("unknown rule id");
    }
    let place = if position == "-" {
        Place::Nowhere
    } else {
        let mut fields = position.rsplitn(3, ':');
        let col = fields
            .next()
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| bad("no column"));
        let line = fields
            .next()
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| bad("no line"));
        match fields.next() {
            None => Place::Here(line, col),
            Some(file) => Place::Other(dir.join(file).display().to_string(), line, col),
        }
    };
    Expectation { rule, place, text }
}

/// What one corpus file produced.
struct Run {
    path: PathBuf,
    diagnostics: Vec<Diagnostic>,
}

impl Run {
    fn place(&self, d: &Diagnostic) -> Place {
        match &d.location {
            None => Place::Nowhere,
            Some(loc) if Path::new(&loc.file.path) == self.path => {
                Place::Here(loc.span.start.line, loc.span.start.col)
            }
            Some(loc) => Place::Other(
                loc.file.path.clone(),
                loc.span.start.line,
                loc.span.start.col,
            ),
        }
    }

    fn keys(&self) -> Vec<(String, Place)> {
        let mut keys: Vec<_> = self
            .diagnostics
            .iter()
            .map(|d| (d.rule.id.to_string(), self.place(d)))
            .collect();
        keys.sort();
        keys
    }

    /// Every diagnostic, one per line, as `BS101 12:5 error: message (help)`.
    fn describe(&self) -> String {
        if self.diagnostics.is_empty() {
            return "    (no diagnostics)\n".to_string();
        }
        self.diagnostics
            .iter()
            .map(|d| {
                let help = d
                    .help
                    .as_deref()
                    .map(|h| format!(" (help: {h})"))
                    .unwrap_or_default();
                format!(
                    "    {} {} {}: {}{help}\n",
                    d.rule.id,
                    self.place(d),
                    d.severity,
                    d.message
                )
            })
            .collect()
    }
}

fn lint_file(path: &Path, header: &Header, cross_checks: bool) -> Run {
    let dir = path.parent().expect("a corpus file is in a directory");
    let template = |rel: &Option<String>| match rel {
        Some(rel) => TemplatePath::Explicit(dir.join(rel)),
        None => TemplatePath::None,
    };
    let options = Options {
        cross_checks,
        template: template(&header.template),
        codebuild: template(&header.codebuild),
        source_root: dir.to_path_buf(),
        today: TODAY,
    };
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let parsed = buildspec::parse(SourceFile::new(path.display().to_string(), text));
    Run {
        path: path.to_path_buf(),
        diagnostics: lint::lint(&parsed, &options),
    }
}

/// The differences between what a file declares and what it got, or `None`.
fn compare(run: &Run, header: &Header) -> Option<String> {
    let mut expected: Vec<(String, Place)> = header
        .expect
        .iter()
        .map(|e| (e.rule.clone(), e.place.clone()))
        .collect();
    expected.sort();
    let actual = run.keys();
    let mut problems = String::new();
    if expected != actual {
        let show = |keys: &[(String, Place)]| -> String {
            keys.iter()
                .map(|(rule, place)| format!("{rule} {place}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        problems.push_str(&format!(
            "  expected: [{}]\n  actual:   [{}]\n",
            show(&expected),
            show(&actual)
        ));
    }
    for e in header.expect.iter().filter(|e| e.text.is_some()) {
        let text = e.text.as_deref().unwrap_or_default();
        let found = run.diagnostics.iter().any(|d| {
            d.rule.id == e.rule
                && run.place(d) == e.place
                && (d.message.contains(text) || d.help.as_deref().is_some_and(|h| h.contains(text)))
        });
        if !found {
            problems.push_str(&format!(
                "  no {} at {} says \"{text}\" (in its message or help)\n",
                e.rule, e.place
            ));
        }
    }
    (!problems.is_empty()).then_some(problems)
}

fn fail_if_any(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} corpus file(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn valid_buildspecs_have_no_errors_and_exactly_the_declared_warnings() {
    let mut failures = Vec::new();
    for path in corpus_files("valid") {
        let text = std::fs::read_to_string(&path).expect("readable corpus file");
        let header = parse_header(&path, &text);
        let name = path.display();
        if !text.starts_with("# shape: ") || header.shape.as_deref().is_none_or(str::is_empty) {
            failures.push(format!(
                "{name}: the first line must be `# shape: <what it represents>`\n"
            ));
        }
        // As `--no-cross-checks`: no errors, whatever the file declares.
        let alone = lint_file(&path, &header, false);
        if alone.diagnostics.iter().any(Diagnostic::is_error) {
            failures.push(format!(
                "{name}: errors with --no-cross-checks:\n{}",
                alone.describe()
            ));
            continue;
        }
        let run = match header.cross_checks {
            Some(true) => lint_file(&path, &header, true),
            _ => alone,
        };
        if run.diagnostics.iter().any(Diagnostic::is_error) {
            failures.push(format!(
                "{name}: errors with the cross-checks:\n{}",
                run.describe()
            ));
        } else if let Some(problems) = compare(&run, &header) {
            failures.push(format!(
                "{name}:\n{problems}  diagnostics:\n{}",
                run.describe()
            ));
        }
    }
    fail_if_any(failures);
}

#[test]
fn invalid_buildspecs_have_exactly_the_declared_diagnostics() {
    let mut failures = Vec::new();
    for path in corpus_files("invalid") {
        let text = std::fs::read_to_string(&path).expect("readable corpus file");
        let header = parse_header(&path, &text);
        let name = path.display();
        if header.expect.is_empty() {
            failures.push(format!("{name}: declares no `# expect:` line\n"));
            continue;
        }
        let run = lint_file(&path, &header, header.cross_checks.unwrap_or(true));
        if let Some(problems) = compare(&run, &header) {
            failures.push(format!(
                "{name}:\n{problems}  diagnostics:\n{}",
                run.describe()
            ));
        }
    }
    fail_if_any(failures);
}

/// Every lint rule (BS0xx–BS2xx: the ones that fire from a buildspec and its templates) has a
/// corpus file that shows it; BS001 (the file cannot be read) is the CLI's, tested in `lint_cli`.
/// The layer rules (BS3xx) are verify-layer's, tested in `verify`.
#[test]
fn the_corpus_covers_every_rule() {
    let mut covered = BTreeSet::new();
    for kind in ["valid", "invalid"] {
        for path in corpus_files(kind) {
            let text = std::fs::read_to_string(&path).expect("readable corpus file");
            covered.extend(
                parse_header(&path, &text)
                    .expect
                    .into_iter()
                    .map(|e| e.rule),
            );
        }
    }
    let missing: Vec<&str> = rules::ALL
        .iter()
        .map(|r| r.id)
        .filter(|id| !id.starts_with("BS3"))
        .filter(|id| *id != rules::UNREADABLE_FILE.id && !covered.contains(*id))
        .collect();
    assert!(missing.is_empty(), "no corpus file expects {missing:?}");
}

/// The invalid corpus holds one class of problem per file: its name starts with the rule id
/// (`bs107-bad-shell.yml`) and every error it expects is of that rule.
#[test]
fn invalid_files_are_named_after_their_rule() {
    let mut failures = Vec::new();
    for path in corpus_files("invalid") {
        let text = std::fs::read_to_string(&path).expect("readable corpus file");
        let header = parse_header(&path, &text);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_ascii_uppercase();
        let errors: BTreeSet<&str> = header
            .expect
            .iter()
            .filter(|e| {
                rules::ALL
                    .iter()
                    .any(|r| r.id == e.rule && r.severity == Severity::Error)
            })
            .map(|e| e.rule.as_str())
            .collect();
        let named = name.split('-').next().unwrap_or_default();
        if !header.expect.iter().any(|e| e.rule == named) || errors.iter().any(|id| *id != named) {
            failures.push(format!(
                "{}: expects {errors:?} but is named {named}",
                path.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
