//! `cargo xtask lint-buildspec`: the buildspec schema (from `buildspec`) plus cross-file checks
//! against the layer template, the CodeBuild template and the source tree.

mod commands;
mod deviations;
mod layout;
mod runtimes;
mod secrets;
mod shell;
mod syntax;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::buildspec::{self, Buildspec, Parsed, Spanned};
use crate::diagnostic::{self, Diagnostic, Location, Severity, SourceFile};
use crate::report::{self, Format};
use crate::rules;
use crate::runtime::Date;
use crate::template::{Layer, Template};
use crate::yaml::Span;

/// Check a CodeBuild buildspec (version 0.2) and its consistency with the project's templates.
///
/// Exit status: 0 clean or warnings only, 1 errors, 2 the buildspec could not be read or parsed.
#[derive(Debug, clap::Args)]
pub struct LintBuildspec {
    /// The buildspec to check.
    #[arg(default_value = "buildspec.yml")]
    pub path: PathBuf,
    /// SAM/CloudFormation template with the layer [default: template.yaml beside the buildspec].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// CloudFormation template with the CodeBuild project [default: codebuild.yml beside the buildspec].
    #[arg(long)]
    pub codebuild: Option<PathBuf>,
    /// Source root the commands run in [default: the buildspec's directory].
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Check the buildspec alone: no template, image, file or command checks.
    #[arg(long)]
    pub no_cross_checks: bool,
}

impl LintBuildspec {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let (diagnostics, unparseable) = match SourceFile::read(&self.path) {
            Ok(file) => {
                let parsed = buildspec::parse(file);
                let unparseable = parsed.is_unparseable();
                (lint(&parsed, &self.options()), unparseable)
            }
            Err(e) => {
                let message = format!("cannot read {}: {e}", self.path.display());
                let unread = SourceFile::new(self.path.display().to_string(), "");
                let diagnostic = Diagnostic::new(&rules::UNREADABLE_FILE, message)
                    .at(unread.at(Span::default()));
                (vec![diagnostic], true)
            }
        };
        let color = self.format == Format::Human
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none();
        let text = report::render(self.format, &diagnostics, color);
        std::io::stdout().write_all(text.as_bytes())?;
        let code = if unparseable {
            2
        } else if diagnostics.iter().any(Diagnostic::is_error) {
            1
        } else {
            0
        };
        Ok(ExitCode::from(code))
    }

    fn options(&self) -> Options {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let beside = |names: &[&str]| names.iter().map(|n| dir.join(n)).find(|p| p.exists());
        Options {
            cross_checks: !self.no_cross_checks,
            template: match &self.template {
                Some(p) => TemplatePath::Explicit(p.clone()),
                None => crate::layer::find_template(None, &dir)
                    .map_or(TemplatePath::None, TemplatePath::Found),
            },
            codebuild: match &self.codebuild {
                Some(p) => TemplatePath::Explicit(p.clone()),
                None => beside(&["codebuild.yml", "codebuild.yaml"])
                    .map_or(TemplatePath::None, TemplatePath::Found),
            },
            source_root: self.source.clone().unwrap_or(dir),
            today: Date::today(),
        }
    }
}

/// Where a template comes from: named by the user (must exist), found beside the buildspec, or none.
#[derive(Debug, Clone)]
pub enum TemplatePath {
    Explicit(PathBuf),
    Found(PathBuf),
    None,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub cross_checks: bool,
    pub template: TemplatePath,
    pub codebuild: TemplatePath,
    pub source_root: PathBuf,
    pub today: Date,
}

/// Everything a cross-check may look at.
pub struct Context<'a> {
    pub parsed: &'a Parsed,
    pub source_root: PathBuf,
    pub template: Option<Template>,
    pub codebuild: Option<Template>,
    pub today: Date,
}

impl Context<'_> {
    pub fn buildspec(&self) -> Option<&Buildspec> {
        self.parsed.buildspec.as_ref()
    }

    pub fn layers(&self) -> Vec<Layer> {
        self.template
            .as_ref()
            .map(Template::layers)
            .unwrap_or_default()
    }

    /// The location of `needle` inside a command, or of the whole command.
    pub fn locate(&self, command: &Spanned<String>, needle: &str) -> Location {
        locate(&self.parsed.file, command, needle)
    }
}

/// The location of `needle` inside `command` in `file`, or of the whole command.
fn locate(file: &std::sync::Arc<SourceFile>, command: &Spanned<String>, needle: &str) -> Location {
    let range = command.span.start.offset..command.span.end.offset.min(file.text.len());
    let found = file
        .text
        .get(range.clone())
        .filter(|_| !needle.is_empty())
        .and_then(|source| source.find(needle));
    match found {
        Some(i) => file.at(file.span_at(range.start + i, needle.len())),
        None => file.at(command.span),
    }
}

/// Each command as the shell will parse it (BS211): a syntax error fails it at run time.
fn shell_syntax(parsed: &Parsed, out: &mut Vec<Diagnostic>) {
    let Some(spec) = &parsed.buildspec else {
        return;
    };
    if matches!(spec.shell(), buildspec::Shell::Windows(_)) || looks_like_powershell(spec) {
        return;
    }
    for (_, command) in spec.all_commands() {
        let Some(problem) = syntax::check(&command.value) else {
            continue;
        };
        // Where it opens: the rest of that line of the command, found in the file.
        let rest = &command.value[problem.offset.min(command.value.len())..];
        let needle: String = rest
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(40)
            .collect();
        let message = format!("{}: the shell refuses this command", problem.message);
        out.push(
            Diagnostic::new(&rules::SHELL_SYNTAX, message)
                .at(locate(&parsed.file, command, needle.trim_end()))
                .help("CodeBuild fails the command with a syntax error at run time: close what it opens (quote multi-line commands with `|` in YAML)"),
        );
    }
}

/// Commands written for PowerShell (`$env:`, `Verb-Noun` cmdlets): without `env.shell`, a Windows
/// image runs them in PowerShell, so POSIX shell rules do not apply.
pub fn looks_like_powershell(spec: &Buildspec) -> bool {
    static CMDLET: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let cmdlet = CMDLET.get_or_init(|| {
        regex::Regex::new(r"\$env:|\b(Write|Get|Set|New|Remove|Invoke|Copy|Test|Start|Stop|Expand|Compress|Out|Select|Where|ForEach|Import|Install|Add)-[A-Z][A-Za-z]+").ok()
    });
    let Some(cmdlet) = cmdlet else {
        return false;
    };
    spec.all_commands().any(|(_, c)| cmdlet.is_match(&c.value))
}

/// All diagnostics for a parsed buildspec: its own, then the cross-checks (sorted by position).
pub fn lint(parsed: &Parsed, options: &Options) -> Vec<Diagnostic> {
    let mut out = parsed.diagnostics.clone();
    shell_syntax(parsed, &mut out);
    if options.cross_checks && parsed.buildspec.is_some() {
        let template = load_template(&options.template, &mut out);
        let codebuild = load_template(&options.codebuild, &mut out);
        if let Some(t) = &template {
            if t.layers().is_empty() {
                let message = format!(
                    "{} has no AWS::Serverless::LayerVersion or AWS::Lambda::LayerVersion resource",
                    t.file.path
                );
                out.push(
                    Diagnostic::new(&rules::TEMPLATE_PROBLEM, message)
                        .at(t.file.at(Span::default())),
                );
            }
        }
        let cx = Context {
            parsed,
            source_root: options.source_root.clone(),
            template,
            codebuild,
            today: options.today,
        };
        runtimes::check(&cx, &mut out);
        layout::check(&cx, &mut out);
        commands::check(&cx, &mut out);
        secrets::check(&cx, &mut out);
        deviations::check(&cx, &mut out);
    }
    diagnostic::sort(&mut out);
    out
}

fn load_template(path: &TemplatePath, out: &mut Vec<Diagnostic>) -> Option<Template> {
    let (path, explicit) = match path {
        TemplatePath::Explicit(p) => (p, true),
        TemplatePath::Found(p) => (p, false),
        TemplatePath::None => return None,
    };
    match Template::read(path) {
        Ok(t) => Some(t),
        Err(d) => {
            out.push(if explicit {
                d.severity(Severity::Error)
            } else {
                d
            });
            None
        }
    }
}
