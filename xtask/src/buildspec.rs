//! The CodeBuild buildspec (version 0.2): its typed model, read from YAML with source positions.
//!
//! One reader serves `lint-buildspec` and `build-layer`: the schema diagnostics come out of the same
//! pass that builds the model, so an invalid buildspec fails the build with the lint's messages.

mod reader;

use std::sync::Arc;

use regex::Regex;

use crate::diagnostic::{Diagnostic, Severity, SourceFile};
use crate::rules;
use crate::yaml::{self, Node, Span};

use reader::Reader;
pub use reader::Spanned;

const TOP_LEVEL_KEYS: &[&str] = &[
    "version",
    "run-as",
    "env",
    "proxy",
    "batch",
    "phases",
    "reports",
    "artifacts",
    "cache",
];
const ENV_KEYS: &[&str] = &[
    "shell",
    "variables",
    "parameter-store",
    "secrets-manager",
    "exported-variables",
    "git-credential-helper",
];
const PHASE_KEYS: &[&str] = &[
    "run-as",
    "on-failure",
    "runtime-versions",
    "commands",
    "finally",
];
const ARTIFACT_KEYS: &[&str] = &[
    "files",
    "name",
    "discard-paths",
    "base-directory",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
];
const CACHE_KEYS: &[&str] = &["key", "fallback-keys", "action", "paths"];
const REPORT_KEYS: &[&str] = &["files", "base-directory", "discard-paths", "file-format"];
const REPORT_FORMATS: &[&str] = &[
    "JUNITXML",
    "CUCUMBERJSON",
    "NUNITXML",
    "NUNIT3XML",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
    "CLOVERXML",
    "COBERTURAXML",
    "JACOCOXML",
    "SIMPLECOV",
];
const SHELLS: &[&str] = &["bash", "/bin/sh", "powershell.exe", "cmd.exe"];
const RUNTIMES: &[&str] = &[
    "android", "dotnet", "golang", "java", "nodejs", "php", "python", "ruby",
];
const BATCH_KEYS: &[&str] = &[
    "fast-fail",
    "build-list",
    "build-matrix",
    "build-graph",
    "build-fanout",
];
const BATCH_BUILD_KEYS: &[&str] = &[
    "identifier",
    "buildspec",
    "env",
    "ignore-failure",
    "debug-session",
    "depend-on",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PhaseName {
    Install,
    PreBuild,
    Build,
    PostBuild,
}

impl PhaseName {
    pub const ALL: [PhaseName; 4] = [
        PhaseName::Install,
        PhaseName::PreBuild,
        PhaseName::Build,
        PhaseName::PostBuild,
    ];
    const KEYS: [&'static str; 4] = ["install", "pre_build", "build", "post_build"];

    /// The key in the buildspec (`pre_build`).
    pub fn key(self) -> &'static str {
        Self::KEYS[self as usize]
    }

    /// The name in CodeBuild's logs (`PRE_BUILD`).
    pub fn log_name(self) -> String {
        self.key().to_ascii_uppercase()
    }

    fn from_key(key: &str) -> Option<Self> {
        Self::KEYS
            .iter()
            .position(|k| *k == key)
            .map(|i| Self::ALL[i])
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnFailure {
    Abort,
    Continue,
    /// Re-run the phase up to `count` times while the failure output matches `pattern`.
    Retry {
        count: u32,
        pattern: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shell {
    Bash,
    Sh,
    /// Any other program, run as given (`/bin/bash`, `zsh`): not documented, yet it runs.
    Other(String),
    /// Windows shells: valid buildspec, not runnable in a Linux layer build.
    Windows(String),
}

pub type NamedValues = Vec<(Spanned<String>, Spanned<String>)>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Env {
    pub shell: Option<Spanned<Shell>>,
    pub variables: NamedValues,
    pub parameter_store: NamedValues,
    pub secrets_manager: NamedValues,
    pub exported_variables: Vec<Spanned<String>>,
    pub git_credential_helper: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    pub name: PhaseName,
    /// The phase's key in the file.
    pub span: Span,
    pub run_as: Option<Spanned<String>>,
    pub on_failure: Option<Spanned<OnFailure>>,
    /// Runtime name (`python`) → requested version (`3.9`, `3.x`, `latest`, `$VAR`).
    pub runtime_versions: NamedValues,
    pub commands: Vec<Spanned<String>>,
    pub finally: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArtifactSpec {
    pub files: Vec<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub base_directory: Option<Spanned<String>>,
    pub discard_paths: bool,
    pub exclude_paths: Vec<Spanned<String>>,
    pub enable_symlinks: bool,
    pub s3_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Artifacts {
    /// The `artifacts:` key itself.
    pub span: Span,
    pub primary: ArtifactSpec,
    pub secondary: Vec<(Spanned<String>, ArtifactSpec)>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cache {
    pub paths: Vec<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub fallback_keys: Vec<Spanned<String>>,
    pub action: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub group: Spanned<String>,
    pub files: Vec<Spanned<String>>,
    pub base_directory: Option<Spanned<String>>,
    pub discard_paths: bool,
    pub file_format: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Buildspec {
    pub version: Spanned<String>,
    pub run_as: Option<Spanned<String>>,
    pub env: Env,
    /// Present phases, in execution order.
    pub phases: Vec<Phase>,
    pub artifacts: Option<Artifacts>,
    pub cache: Option<Cache>,
    pub reports: Vec<Report>,
}

impl Buildspec {
    pub fn phase(&self, name: PhaseName) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }

    /// Every command with the phase it belongs to, in execution order (commands, then finally).
    pub fn all_commands(&self) -> impl Iterator<Item = (&Phase, &Spanned<String>)> {
        self.phases
            .iter()
            .flat_map(|p| p.commands.iter().chain(&p.finally).map(move |c| (p, c)))
    }

    /// The shell commands run in: CodeBuild's Linux default is POSIX `sh`.
    pub fn shell(&self) -> Shell {
        self.env
            .shell
            .as_ref()
            .map_or(Shell::Sh, |s| s.value.clone())
    }
}

/// What reading a buildspec produced: the model when the file had the shape of one, and every
/// problem found on the way.
#[derive(Debug)]
pub struct Parsed {
    pub file: Arc<SourceFile>,
    pub buildspec: Option<Buildspec>,
    pub diagnostics: Vec<Diagnostic>,
    /// The tree, for checks that need more than the model (none of it is typed away).
    pub root: Option<Node>,
}

impl Parsed {
    /// The file could not be parsed as YAML at all (exit code 2 territory).
    pub fn is_unparseable(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.rule.id == rules::YAML_SYNTAX.id)
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Reads a buildspec from its text.
pub fn parse(file: Arc<SourceFile>) -> Parsed {
    let mut r = Reader::new(Arc::clone(&file));
    let documents = match yaml::parse(&file.text) {
        Ok(docs) => docs,
        Err(e) => {
            let span = Span {
                start: e.pos,
                end: e.pos,
            };
            r.report(
                &rules::YAML_SYNTAX,
                span,
                format!("invalid YAML: {}", e.message),
            );
            return finish(r, None, None);
        }
    };
    let mut documents = documents.into_iter();
    let Some(root) = documents.next() else {
        let message = "the buildspec is empty";
        r.report(&rules::NOT_A_MAPPING, Span::default(), message);
        return finish(r, None, None);
    };
    for extra in documents {
        let message = "a second YAML document: CodeBuild reads a buildspec as one document";
        r.report(&rules::MULTIPLE_DOCUMENTS, extra.span, message);
    }
    if root.as_map().is_none() {
        let message = format!("the buildspec must be a mapping, found {}", root.kind());
        r.report(&rules::NOT_A_MAPPING, root.span, message);
        return finish(r, None, Some(root));
    }
    let buildspec = read_buildspec(&mut r, &root);
    finish(r, buildspec, Some(root))
}

fn finish(r: Reader, buildspec: Option<Buildspec>, root: Option<Node>) -> Parsed {
    let mut diagnostics = r.diagnostics;
    crate::diagnostic::sort(&mut diagnostics);
    Parsed {
        file: r.file,
        buildspec,
        diagnostics,
        root,
    }
}

fn read_buildspec(r: &mut Reader, root: &Node) -> Option<Buildspec> {
    r.mapping(root, "the buildspec", TOP_LEVEL_KEYS);
    let version = read_version(r, root)?;
    let has_batch = root.get("batch").is_some();
    if !has_batch {
        r.require(root, "the buildspec", &["phases"]);
    }
    let buildspec = Buildspec {
        version,
        run_as: root.get("run-as").and_then(|n| r.string(n, "run-as")),
        env: root.get("env").map(|n| read_env(r, n)).unwrap_or_default(),
        phases: root
            .get("phases")
            .map(|n| read_phases(r, n))
            .unwrap_or_default(),
        artifacts: root.get("artifacts").map(|n| read_artifacts(r, root, n)),
        cache: root.get("cache").map(|n| read_cache(r, n)),
        reports: root
            .get("reports")
            .map(|n| read_reports(r, n))
            .unwrap_or_default(),
    };
    if let Some(proxy) = root.get("proxy") {
        for entry in r.mapping(proxy, "proxy", &["upload-artifacts", "logs"]) {
            r.boolean(&entry.value, "a proxy setting");
        }
    }
    if let Some(batch) = root.get("batch") {
        read_batch(r, batch);
    }
    Some(buildspec)
}

fn read_version(r: &mut Reader, root: &Node) -> Option<Spanned<String>> {
    let Some(node) = root.get("version") else {
        r.report_with_help(
            &rules::MISSING_KEY,
            root.span,
            "the buildspec has no `version`",
            "add `version: 0.2` as the first line",
        );
        return None;
    };
    let version = r.string(node, "version")?;
    match version.value.as_str() {
        "0.2" => {}
        "0.1" => r.report_with_help(
            &rules::LEGACY_VERSION,
            node.span,
            "version 0.1 runs each command in a separate shell: `cd` and variables do not carry over",
            "use `version: 0.2`",
        ),
        other => r.report_with_help(
            &rules::UNSUPPORTED_VERSION,
            node.span,
            format!("unsupported buildspec version `{other}`"),
            "CodeBuild supports `version: 0.2`",
        ),
    }
    Some(version)
}

fn read_env(r: &mut Reader, node: &Node) -> Env {
    r.mapping(node, "env", ENV_KEYS);
    let mut env = Env::default();
    if let Some(n) = node.get("shell") {
        env.shell = read_shell(r, n);
    }
    if let Some(n) = node.get("variables") {
        env.variables = r.string_map(n, "env.variables");
        for (name, _) in &env.variables {
            if name.value.starts_with("CODEBUILD_") {
                let message = format!(
                    "`{}`: names starting with CODEBUILD_ are reserved",
                    name.value
                );
                r.report(&rules::RESERVED_VARIABLE, name.span, message);
            }
        }
    }
    if let Some(n) = node.get("parameter-store") {
        env.parameter_store = r.string_map(n, "env.parameter-store");
    }
    if let Some(n) = node.get("secrets-manager") {
        env.secrets_manager = r.string_map(n, "env.secrets-manager");
    }
    if let Some(n) = node.get("exported-variables") {
        env.exported_variables = r.string_list(n, "env.exported-variables");
        for name in &env.exported_variables {
            if name.value.starts_with("AWS_") {
                let message = format!(
                    "`{}` cannot be exported: AWS_ variables are reserved",
                    name.value
                );
                r.report(&rules::NOT_EXPORTABLE, name.span, message);
            }
        }
    }
    if let Some(n) = node.get("git-credential-helper") {
        env.git_credential_helper = r.boolean(n, "env.git-credential-helper").unwrap_or(false);
    }
    env
}

fn read_shell(r: &mut Reader, node: &Node) -> Option<Spanned<Shell>> {
    let text = r.string(node, "env.shell")?;
    let shell = match text.value.as_str() {
        "bash" => Shell::Bash,
        "/bin/sh" => Shell::Sh,
        "powershell.exe" | "cmd.exe" => Shell::Windows(text.value.clone()),
        other => {
            // CodeBuild runs a shell as given: real buildspecs name `/bin/bash`, `/usr/bin/env
            // bash`… and they work when the image has it.
            let help = match crate::diagnostic::did_you_mean(other, SHELLS) {
                Some(s) => {
                    format!("the documented values are bash and /bin/sh; did you mean `{s}`?")
                }
                None => "the documented values on Linux are `bash` and `/bin/sh`".to_string(),
            };
            let message = format!(
                "shell `{other}` is not one CodeBuild documents: it runs if the image has it"
            );
            let diagnostic = Diagnostic::new(&rules::INVALID_VALUE, message)
                .at(r.loc(node.span))
                .severity(Severity::Warning)
                .help(help);
            r.diagnostics.push(diagnostic);
            Shell::Other(other.to_string())
        }
    };
    Some(Spanned::new(shell, text.span))
}

fn read_phases(r: &mut Reader, node: &Node) -> Vec<Phase> {
    let entries = r.mapping(node, "phases", &PhaseName::KEYS);
    let mut phases: Vec<Phase> = Vec::new();
    for entry in entries {
        let Some(name) = entry.key.as_str().and_then(PhaseName::from_key) else {
            continue;
        };
        if phases.iter().any(|p| p.name == name) {
            continue; // duplicate, already reported
        }
        if let Some(phase) = read_phase(r, name, entry) {
            phases.push(phase);
        }
    }
    phases.sort_by_key(|p| p.name);
    phases
}

fn read_phase(r: &mut Reader, name: PhaseName, entry: &yaml::Entry) -> Option<Phase> {
    let what = format!("phase {}", name.key());
    let node = &entry.value;
    if node.as_map().is_none() {
        let message = format!(
            "{what} must be a mapping with `commands`, found {}",
            node.kind()
        );
        r.report(&rules::WRONG_TYPE, node.span, message);
        return None;
    }
    r.mapping(node, &what, PHASE_KEYS);
    if name != PhaseName::Install && node.get("commands").is_none() {
        // Documented as required, yet phases with only `finally` run (nothing else runs).
        let message = format!("{what} has no `commands`: only its finally (if any) runs");
        let diagnostic = Diagnostic::new(&rules::MISSING_KEY, message)
            .at(r.loc(node.span))
            .severity(Severity::Warning)
            .help("the documented form lists the phase's commands under `commands:`");
        r.diagnostics.push(diagnostic);
    }
    let mut phase = Phase {
        name,
        span: entry.key.span,
        run_as: node.get("run-as").and_then(|n| r.string(n, "run-as")),
        on_failure: node.get("on-failure").and_then(|n| read_on_failure(r, n)),
        runtime_versions: Vec::new(),
        commands: Vec::new(),
        finally: Vec::new(),
    };
    let runtime_versions = node.as_map().and_then(|m| {
        m.iter()
            .find(|e| e.key.as_str() == Some("runtime-versions"))
    });
    if let Some(entry) = runtime_versions {
        phase.runtime_versions = read_runtime_versions(r, name, entry.key.span, &entry.value);
    }
    if let Some(n) = node.get("commands") {
        phase.commands = r.commands(n, &format!("{what} commands"));
    }
    if let Some(n) = node.get("finally") {
        phase.finally = r.commands(n, &format!("{what} finally"));
    }
    Some(phase)
}

fn read_runtime_versions(
    r: &mut Reader,
    phase: PhaseName,
    key_span: Span,
    node: &Node,
) -> Vec<(Spanned<String>, Spanned<String>)> {
    if phase != PhaseName::Install {
        r.report_with_help(
            &rules::MISPLACED_RUNTIME_VERSIONS,
            key_span,
            format!(
                "runtime-versions in phase {}: only the install phase may select runtimes",
                phase.key()
            ),
            "move it under phases.install",
        );
    }
    let entries = r.mapping(node, "runtime-versions", &[]);
    let mut versions = Vec::new();
    for entry in entries {
        let Some(runtime) = r.string(&entry.key, "a runtime name") else {
            continue;
        };
        if !RUNTIMES.contains(&runtime.value.as_str()) {
            let help = crate::diagnostic::did_you_mean(&runtime.value, RUNTIMES).map_or_else(
                || format!("known runtimes: {}", RUNTIMES.join(", ")),
                |s| format!("did you mean `{s}`?"),
            );
            // Which runtimes exist depends on the image (older standard images had docker,
            // golang, android…; images without runtime selection skip the block).
            let message = format!(
                "runtime `{}` is not one the current CodeBuild images document",
                runtime.value
            );
            let diagnostic = Diagnostic::new(&rules::INVALID_VALUE, message)
                .at(r.loc(runtime.span))
                .severity(Severity::Warning)
                .help(help);
            r.diagnostics.push(diagnostic);
        }
        let Some(version) = r.string(&entry.value, &format!("the {} version", runtime.value))
        else {
            continue;
        };
        check_float_version(r, &entry.value, &version);
        versions.push((runtime, version));
    }
    versions
}

/// `python: 3.10` unquoted is the float 3.1 to YAML 1.1 readers such as CodeBuild's.
fn check_float_version(r: &mut Reader, node: &Node, version: &Spanned<String>) {
    let plain = matches!(&node.value, yaml::Value::Scalar(s) if s.plain);
    let text = &version.value;
    let Some((whole, fraction)) = text.split_once('.') else {
        return;
    };
    let numeric = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let significant = fraction.trim_end_matches('0');
    // `3.10` reads as 3.1; `8.0` stays 8.0, so only a dropped zero after other digits matters.
    if plain
        && numeric(whole)
        && numeric(fraction)
        && !significant.is_empty()
        && significant != fraction
    {
        r.report_with_help(
            &rules::FLOAT_VERSION,
            version.span,
            format!(
                "unquoted `{text}` is the number {whole}.{significant} to YAML, not version {text}"
            ),
            format!("quote it: \"{text}\""),
        );
    }
}

fn read_on_failure(r: &mut Reader, node: &Node) -> Option<Spanned<OnFailure>> {
    let text = r.string(node, "on-failure")?;
    match parse_on_failure(&text.value) {
        Ok(value) => Some(Spanned::new(value, text.span)),
        Err(problem) => {
            r.report_with_help(
                &rules::INVALID_VALUE,
                node.span,
                format!("invalid on-failure `{}`: {problem}", text.value),
                "use ABORT, CONTINUE, RETRY, RETRY-<count>, RETRY-<regex> or RETRY-<count>-<regex>",
            );
            None
        }
    }
}

/// Retries CodeBuild allows when RETRY gives no count.
const DEFAULT_RETRIES: u32 = 3;
const MAX_RETRIES: u32 = 100;

pub fn parse_on_failure(text: &str) -> Result<OnFailure, String> {
    match text {
        "ABORT" => return Ok(OnFailure::Abort),
        "CONTINUE" => return Ok(OnFailure::Continue),
        "RETRY" => {
            return Ok(OnFailure::Retry {
                count: DEFAULT_RETRIES,
                pattern: ".*".into(),
            })
        }
        _ => {}
    }
    let Some(rest) = text.strip_prefix("RETRY-") else {
        return Err("not a known value".into());
    };
    let digits_end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (count, pattern) = match (&rest[..digits_end], &rest[digits_end..]) {
        ("", pattern) => (DEFAULT_RETRIES, pattern),
        (digits, "") => (parse_count(digits)?, ".*"),
        (digits, tail) => match tail.strip_prefix('-') {
            Some(pattern) => (parse_count(digits)?, pattern),
            // `RETRY-5xx`: digits that are the start of a pattern.
            None => (DEFAULT_RETRIES, rest),
        },
    };
    if pattern.is_empty() {
        return Err("empty retry pattern".into());
    }
    Regex::new(pattern).map_err(|e| format!("bad regular expression: {e}"))?;
    Ok(OnFailure::Retry {
        count,
        pattern: pattern.to_string(),
    })
}

fn parse_count(digits: &str) -> Result<u32, String> {
    match digits.parse::<u32>() {
        Ok(n) if n <= MAX_RETRIES => Ok(n),
        _ => Err(format!("retry count must be 0 to {MAX_RETRIES}")),
    }
}

fn read_artifacts(r: &mut Reader, root: &Node, node: &Node) -> Artifacts {
    let span = root
        .as_map()
        .and_then(|m| m.iter().find(|e| e.key.as_str() == Some("artifacts")))
        .map_or(node.span, |e| e.key.span);
    let primary = read_artifact_spec(r, node, "artifacts", ARTIFACT_KEYS);
    let mut secondary = Vec::new();
    if let Some(n) = node.get("secondary-artifacts") {
        for entry in r.mapping(n, "artifacts.secondary-artifacts", &[]) {
            let Some(id) = r.string(&entry.key, "an artifact identifier") else {
                continue;
            };
            if !crate::artifacts::is_identifier(&id.value) {
                r.report_with_help(
                    &rules::INVALID_IDENTIFIER,
                    id.span,
                    format!("`{}` is not an artifact identifier", id.value),
                    "CodeBuild's artifact identifiers are letters, digits and underscores (they name the artifact's directory and zip)",
                );
            }
            let what = format!("secondary artifact `{}`", id.value);
            let keys = &ARTIFACT_KEYS[..ARTIFACT_KEYS.len() - 1];
            let spec = read_artifact_spec(r, &entry.value, &what, keys);
            secondary.push((id, spec));
        }
    }
    Artifacts {
        span,
        primary,
        secondary,
    }
}

fn read_artifact_spec(r: &mut Reader, node: &Node, what: &str, keys: &[&str]) -> ArtifactSpec {
    r.mapping(node, what, keys);
    r.require(node, what, &["files"]);
    let string = |r: &mut Reader, key: &str| {
        node.get(key)
            .and_then(|n| r.string(n, &format!("{what}.{key}")))
    };
    let boolean = |r: &mut Reader, key: &str| {
        node.get(key)
            .and_then(|n| r.boolean(n, &format!("{what}.{key}")))
            .unwrap_or(false)
    };
    let list = |r: &mut Reader, key: &str| {
        node.get(key)
            .map(|n| r.string_list(n, &format!("{what}.{key}")))
            .unwrap_or_default()
    };
    ArtifactSpec {
        files: list(r, "files"),
        name: string(r, "name"),
        base_directory: string(r, "base-directory"),
        discard_paths: boolean(r, "discard-paths"),
        exclude_paths: list(r, "exclude-paths"),
        enable_symlinks: boolean(r, "enable-symlinks"),
        s3_prefix: string(r, "s3-prefix"),
    }
}

fn read_cache(r: &mut Reader, node: &Node) -> Cache {
    r.mapping(node, "cache", CACHE_KEYS);
    let cache = Cache {
        paths: node
            .get("paths")
            .map(|n| r.string_list(n, "cache.paths"))
            .unwrap_or_default(),
        key: node.get("key").and_then(|n| r.string(n, "cache.key")),
        fallback_keys: node
            .get("fallback-keys")
            .map(|n| r.string_list(n, "cache.fallback-keys"))
            .unwrap_or_default(),
        action: node.get("action").and_then(|n| r.string(n, "cache.action")),
    };
    if let (Some(action), Some(n)) = (&cache.action, node.get("action")) {
        if !matches!(action.value.as_str(), "restore" | "save") {
            let message = format!("unknown cache action `{}`", action.value);
            let diagnostic = Diagnostic::new(&rules::INVALID_VALUE, message)
                .at(r.loc(n.span))
                .severity(Severity::Warning)
                .help("the documented values are `restore` and `save`");
            r.diagnostics.push(diagnostic);
        }
    }
    if node.as_map().is_some() && node.get("paths").is_none() {
        let diagnostic = Diagnostic::new(
            &rules::MISSING_KEY,
            "cache has no `paths`: nothing will be cached",
        )
        .at(r.loc(node.span))
        .severity(Severity::Warning);
        r.diagnostics.push(diagnostic);
    }
    cache
}

fn read_reports(r: &mut Reader, node: &Node) -> Vec<Report> {
    let mut reports = Vec::new();
    for entry in r.mapping(node, "reports", &[]) {
        let Some(group) = r.string(&entry.key, "a report group name") else {
            continue;
        };
        let what = format!("report group `{}`", group.value);
        let n = &entry.value;
        r.mapping(n, &what, REPORT_KEYS);
        r.require(n, &what, &["files"]);
        let file_format = n
            .get("file-format")
            .and_then(|f| r.string(f, "file-format"));
        if let Some(format) = &file_format {
            // The documentation: the file format "is not case sensitive" (AWS's own repositories
            // write JunitXml).
            let known = REPORT_FORMATS
                .iter()
                .any(|f| f.eq_ignore_ascii_case(&format.value));
            if !known {
                let help = crate::diagnostic::did_you_mean(&format.value, REPORT_FORMATS)
                    .map_or_else(
                        || format!("one of: {}", REPORT_FORMATS.join(", ")),
                        |s| format!("did you mean `{s}`?"),
                    );
                // The report group refuses it when the report is uploaded; the build goes on.
                let message = format!("unknown report file-format `{}`", format.value);
                let diagnostic = Diagnostic::new(&rules::INVALID_VALUE, message)
                    .at(r.loc(format.span))
                    .severity(Severity::Warning)
                    .help(help);
                r.diagnostics.push(diagnostic);
            }
        }
        reports.push(Report {
            files: n
                .get("files")
                .map(|f| r.string_list(f, "files"))
                .unwrap_or_default(),
            base_directory: n
                .get("base-directory")
                .and_then(|f| r.string(f, "base-directory")),
            discard_paths: n
                .get("discard-paths")
                .and_then(|f| r.boolean(f, "discard-paths"))
                .unwrap_or(false),
            file_format,
            group,
        });
    }
    reports
}

fn read_batch(r: &mut Reader, node: &Node) {
    let entries = r.mapping(node, "batch", BATCH_KEYS);
    let kinds: Vec<_> = entries
        .iter()
        .filter(|e| {
            matches!(
                e.key.as_str(),
                Some("build-list" | "build-matrix" | "build-graph" | "build-fanout")
            )
        })
        .collect();
    for extra in kinds.iter().skip(1) {
        let message =
            "a batch uses exactly one of build-list, build-matrix, build-graph and build-fanout";
        r.report(&rules::BATCH_CONFLICT, extra.key.span, message);
    }
    if let Some(n) = node.get("fast-fail") {
        r.boolean(n, "batch.fast-fail");
    }
    for key in ["build-list", "build-graph"] {
        let Some(list) = node.get(key) else { continue };
        let Some(items) = list.as_seq() else {
            let message = format!(
                "batch.{key} must be a list of builds, found {}",
                list.kind()
            );
            r.report(&rules::WRONG_TYPE, list.span, message);
            continue;
        };
        for item in items {
            let what = format!("a build in batch.{key}");
            r.mapping(item, &what, BATCH_BUILD_KEYS);
            r.require(item, &what, &["identifier"]);
        }
    }
    if let Some(matrix) = node.get("build-matrix") {
        r.mapping(matrix, "batch.build-matrix", &["static", "dynamic"]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Parsed {
        parse(SourceFile::new("buildspec.yml", text))
    }

    #[test]
    fn on_failure_forms() {
        assert_eq!(parse_on_failure("ABORT"), Ok(OnFailure::Abort));
        assert_eq!(parse_on_failure("CONTINUE"), Ok(OnFailure::Continue));
        let retry = |count: u32, pattern: &str| OnFailure::Retry {
            count,
            pattern: pattern.into(),
        };
        assert_eq!(parse_on_failure("RETRY"), Ok(retry(3, ".*")));
        assert_eq!(parse_on_failure("RETRY-5"), Ok(retry(5, ".*")));
        assert_eq!(
            parse_on_failure("RETRY-timeout.*"),
            Ok(retry(3, "timeout.*"))
        );
        assert_eq!(
            parse_on_failure("RETRY-2-Connection reset"),
            Ok(retry(2, "Connection reset"))
        );
        assert_eq!(parse_on_failure("RETRY-5xx"), Ok(retry(3, "5xx")));
        assert!(parse_on_failure("RETRY-101").is_err());
        assert!(parse_on_failure("RETRY-2-(").is_err());
        assert!(parse_on_failure("retry").is_err());
        assert!(parse_on_failure("ABORT ").is_err());
    }

    #[test]
    fn model_of_a_typical_buildspec() {
        let parsed = parse_text(
            "version: 0.2\nenv:\n  shell: bash\n  variables:\n    A: '1'\nphases:\n  install:\n    runtime-versions:\n      python: 3.9\n  build:\n    on-failure: CONTINUE\n    commands:\n      - echo one\n      - |\n        echo two\n        echo three\n    finally:\n      - echo done\nartifacts:\n  base-directory: layer\n  files:\n    - 'python/**/*'\ncache:\n  paths:\n    - /root/.cache/pip/**/*\n",
        );
        assert!(parsed.diagnostics.is_empty(), "{:?}", parsed.diagnostics);
        let spec = parsed.buildspec.unwrap();
        assert_eq!(spec.shell(), Shell::Bash);
        assert_eq!(spec.phases.len(), 2);
        let build = spec.phase(PhaseName::Build).unwrap();
        assert_eq!(build.commands.len(), 2);
        assert_eq!(build.commands[1].value, "echo two\necho three\n");
        assert_eq!(
            build.on_failure.as_ref().unwrap().value,
            OnFailure::Continue
        );
        let install = spec.phase(PhaseName::Install).unwrap();
        assert_eq!(install.runtime_versions[0].1.value, "3.9");
        let artifacts = spec.artifacts.unwrap();
        assert_eq!(artifacts.primary.base_directory.unwrap().value, "layer");
        assert_eq!(spec.cache.unwrap().paths.len(), 1);
    }

    #[test]
    fn phases_come_out_in_execution_order() {
        let parsed = parse_text(
            "version: 0.2\nphases:\n  post_build:\n    commands: [c]\n  build:\n    commands: [b]\n  install:\n    commands: [a]\n",
        );
        let names: Vec<_> = parsed
            .buildspec
            .unwrap()
            .phases
            .iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(
            names,
            [PhaseName::Install, PhaseName::Build, PhaseName::PostBuild]
        );
    }
}
