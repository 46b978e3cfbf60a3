//! The environment of the build: CodeBuild's own variables, then `env.variables` (literal), then
//! `--env-file`, then `--env` (the command line wins), plus the host's network settings pip needs
//! behind a proxy. AWS credentials are never forwarded unless asked for.

use std::path::Path;

use anyhow::{bail, Context as _};

use crate::buildspec::Buildspec;

/// Host variables forwarded so pip and uv reach their index from behind a corporate proxy.
const NETWORK_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_DEFAULT_TIMEOUT",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_EXTRA_INDEX_URL",
    "UV_INSECURE_HOST",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
];

/// Variables that make the tools in the container trust the host's CA bundle.
pub const CA_VARIABLES: &[&str] = &[
    "PIP_CERT",
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
];

/// The prefix of the driver's own shell variables and functions: no build variable may use it.
pub const RESERVED_PREFIX: &str = "__xt_";

const AWS_CREDENTIAL_VARIABLES: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// An ordered list of `NAME=value`; setting a name again replaces it in place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Variables(pub Vec<(String, String)>);

impl Variables {
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Secret values to hide from every line the build prints: longest first (a secret that contains
/// another is masked whole), each line of a multi-line secret on its own (the log is read line
/// by line), and the password of any `scheme://user:password@host` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masker {
    values: Vec<String>,
}

/// Shorter values are not masked: `***` in place of every `a` or `ok` would hide the log itself.
const MIN_MASKED_CHARS: usize = 4;

impl Masker {
    pub fn new<S: AsRef<str>>(secrets: impl IntoIterator<Item = S>) -> Masker {
        let mut values: Vec<String> = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            let lines = secret
                .lines()
                .map(str::trim)
                .filter(|l| *l != secret.trim());
            for value in std::iter::once(secret).chain(lines) {
                if value.chars().count() >= MIN_MASKED_CHARS && !values.iter().any(|v| v == value) {
                    values.push(value.to_string());
                }
            }
        }
        values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        Masker { values }
    }

    /// `text` with every secret replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let masked = self.values.iter().fold(text.to_string(), |text, secret| {
            text.replace(secret.as_str(), "***")
        });
        mask_url_passwords(&masked)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Whether `value` contains a secret (or is one).
    pub fn reveals(&self, value: &str) -> bool {
        self.mask(value) != value
    }
}

/// `scheme://user:password@host` → `scheme://user:***@host`, wherever it appears.
fn mask_url_passwords(text: &str) -> String {
    if !text.contains("://") || !text.contains('@') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("://") {
        let (before, after) = rest.split_at(start + 3);
        out.push_str(before);
        let authority_end = after
            .find(|c: char| c == '/' || c.is_whitespace() || c == '"' || c == '\'')
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                out.push_str(user);
                out.push_str(":***@");
                out.push_str(host);
            }
            _ => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

/// Parses `KEY=VAL` from the command line.
pub fn parse_assignment(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if super::driver::is_variable_name(name) => {
            Ok((name.to_string(), value.to_string()))
        }
        _ => bail!("`{text}` is not NAME=value with a valid variable name"),
    }
}

/// Reads an env file: `NAME=value` lines, `#` comments and blank lines; values are literal
/// (surrounding single or double quotes are removed, nothing is expanded).
pub fn read_env_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read env file {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) =
            parse_assignment(line).with_context(|| format!("{}:{}:1", path.display(), i + 1))?;
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(&value)
            .to_string();
        out.push((name, unquoted));
    }
    Ok(out)
}

/// What the user asked for, in precedence order (later wins).
pub struct UserVariables<'a> {
    pub buildspec: &'a Buildspec,
    /// parameter-store and secrets-manager values fetched with `--resolve-secrets`.
    pub stores: Vec<(String, String)>,
    pub env_file: Vec<(String, String)>,
    pub cli: Vec<(String, String)>,
}

impl UserVariables<'_> {
    pub fn merged(&self) -> Variables {
        let mut vars = Variables::default();
        for (name, value) in &self.buildspec.env.variables {
            vars.set(&name.value, value.value.clone());
        }
        for (name, value) in self.provided() {
            vars.set(name, value.clone());
        }
        vars
    }

    /// Values given outside the buildspec, in precedence order (later wins).
    fn provided(&self) -> impl DoubleEndedIterator<Item = &(String, String)> {
        self.stores.iter().chain(&self.env_file).chain(&self.cli)
    }

    /// Names given outside the buildspec (`--env`, `--env-file`, the stores): they win over the
    /// project's variables too.
    pub fn provided_names(&self) -> Vec<String> {
        self.provided().map(|(name, _)| name.clone()).collect()
    }

    /// The buildspec's parameter-store and secrets-manager names.
    pub fn secret_names(&self) -> Vec<String> {
        let env = &self.buildspec.env;
        env.parameter_store
            .iter()
            .chain(&env.secrets_manager)
            .map(|(name, _)| name.value.clone())
            .collect()
    }

    /// parameter-store and secrets-manager names that no `--env`/`--env-file` value provides.
    pub fn unresolved_secrets(&self) -> Vec<String> {
        let env = &self.buildspec.env;
        env.parameter_store
            .iter()
            .chain(&env.secrets_manager)
            .map(|(name, _)| name.value.clone())
            .filter(|name| !self.provided().any(|(n, _)| n == name))
            .collect()
    }

    /// Values to mask in logs: those that stand in for parameter-store and secrets-manager.
    pub fn secret_values(&self) -> Vec<String> {
        let env = &self.buildspec.env;
        env.parameter_store
            .iter()
            .chain(&env.secrets_manager)
            .filter_map(|(name, _)| self.provided().rev().find(|(n, _)| n == &name.value))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// The host's proxy and index settings, present ones only.
pub fn host_network_variables() -> Vec<(String, String)> {
    NETWORK_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
        .collect()
}

/// The host's CA bundle: the file pip or requests are told to use, else the system bundle.
pub fn host_ca_bundle() -> Option<std::path::PathBuf> {
    ["PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"]
        .iter()
        .filter_map(std::env::var_os)
        .map(std::path::PathBuf::from)
        .chain([std::path::PathBuf::from(
            "/etc/ssl/certs/ca-certificates.crt",
        )])
        .find(|p| p.is_file())
}

/// The host's AWS credentials and region, for `--pass-aws-credentials`.
pub fn host_aws_credentials() -> Vec<(String, String)> {
    AWS_CREDENTIAL_VARIABLES
        .iter()
        .filter_map(|name| std::env::var(name).ok().map(|v| (name.to_string(), v)))
        .collect()
}

/// The cell's variables (`LAYER_RUNTIME=python3.13`, `LAYER_PYTHON=3.13`, `LAYER_ARCH=arm64`,
/// `LAYER_PYTHON_PLATFORM=aarch64-manylinux_2_34`, `LAYER_LOCK=<its lock>` when the project keeps
/// locks), set as a CodeBuild project's environment is (a batch build's matrix sets the same):
/// they win over the buildspec's `env`, `--env` wins over them.
pub fn cell_variables(cell: &crate::layer::Cell, lock: Option<&str>) -> Variables {
    let mut vars = Variables::default();
    vars.set("LAYER_RUNTIME", cell.runtime.id);
    vars.set("LAYER_PYTHON", cell.runtime.python_version());
    vars.set("LAYER_ARCH", cell.arch.clone());
    vars.set("LAYER_PYTHON_PLATFORM", cell.python_platform());
    if let Some(lock) = lock {
        vars.set("LAYER_LOCK", lock);
    }
    vars
}

/// What identifies one run of a build, decided when it starts (never part of the build key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// `local:<uuid>`, as CodeBuild's local agent names builds.
    pub build_id: String,
    /// Counts per out-dir, as CodeBuild numbers a project's builds.
    pub build_number: u64,
    pub start_ms: u128,
    pub initiator: String,
    /// The host's AWS region, when set.
    pub region: Option<String>,
    /// The secret that marks the driver's own output lines (see `driver`).
    pub token: String,
}

impl Invocation {
    /// This run, now, numbered after the last build recorded in `out_dir` (see
    /// [`Invocation::record`]).
    pub fn now(out_dir: &Path) -> Invocation {
        let user = std::env::var("USER").unwrap_or_else(|_| "local".to_string());
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"]
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .map(|r| r.trim().to_string())
            .find(|r| !r.is_empty());
        Invocation {
            build_id: format!("local:{}", uuid::Uuid::new_v4()),
            build_number: last_build_number(out_dir) + 1,
            start_ms: crate::util::unix_millis(),
            initiator: format!("xtask/{user}"),
            region,
            token: super::driver::new_token(),
        }
    }
}

/// CodeBuild's own variables, as its local agent sets them.
pub fn codebuild_variables(
    invocation: &Invocation,
    image: &str,
    src_dir: &str,
    revision: Option<&str>,
) -> Variables {
    let mut vars = Variables::default();
    vars.set("CODEBUILD_SRC_DIR", src_dir);
    vars.set("CODEBUILD_BUILD_ID", invocation.build_id.clone());
    vars.set(
        "CODEBUILD_BUILD_NUMBER",
        invocation.build_number.to_string(),
    );
    vars.set("CODEBUILD_BUILD_IMAGE", image);
    vars.set("CODEBUILD_BUILD_SUCCEEDING", "1");
    vars.set("CODEBUILD_START_TIME", invocation.start_ms.to_string());
    vars.set("CODEBUILD_INITIATOR", invocation.initiator.clone());
    vars.set("CODEBUILD_LOCAL_BUILD", "true");
    if let Some(revision) = revision {
        vars.set("CODEBUILD_RESOLVED_SOURCE_VERSION", revision);
        vars.set("CODEBUILD_SOURCE_VERSION", revision);
    }
    if let Some(region) = &invocation.region {
        vars.set("AWS_REGION", region.clone());
        vars.set("AWS_DEFAULT_REGION", region.clone());
    }
    vars
}

/// Counts a run as a build of `out_dir` (a no-op check is not a build) and returns its number:
/// the next one, taken under a lock and written whole, so cells built side by side get numbers
/// of their own and a reader never sees a half-written counter.
pub fn claim_build_number(out_dir: &Path) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    let lock_path = out_dir.join(BUILD_NUMBER_LOCK);
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    lock.lock()
        .with_context(|| format!("cannot lock {}", lock_path.display()))?;
    let number = last_build_number(out_dir) + 1;
    let temp = tempfile::NamedTempFile::new_in(out_dir)?;
    std::fs::write(temp.path(), number.to_string())?;
    temp.persist(out_dir.join(BUILD_NUMBER_FILE))
        .map_err(|e| e.error)
        .context("cannot write the build number")?;
    Ok(number)
}

/// A per-out-dir counter, as CodeBuild numbers a project's builds.
const BUILD_NUMBER_FILE: &str = ".build-number";
const BUILD_NUMBER_LOCK: &str = ".build-number.lock";

fn last_build_number(out_dir: &Path) -> u64 {
    std::fs::read_to_string(out_dir.join(BUILD_NUMBER_FILE))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Buildspec {
        crate::buildspec::parse(crate::diagnostic::SourceFile::new("b.yml", text))
            .buildspec
            .unwrap()
    }

    #[test]
    fn command_line_beats_env_file_beats_buildspec() {
        let b = spec("version: 0.2\nenv:\n  variables:\n    A: spec\n    B: spec\n    C: $PATH:/x\nphases:\n  build:\n    commands: [x]\n");
        let user = UserVariables {
            buildspec: &b,
            stores: vec![],
            env_file: vec![("B".into(), "file".into()), ("D".into(), "file".into())],
            cli: vec![("D".into(), "cli".into())],
        };
        let vars = user.merged();
        assert_eq!(vars.get("A"), Some("spec"));
        assert_eq!(vars.get("B"), Some("file"));
        assert_eq!(vars.get("C"), Some("$PATH:/x"));
        assert_eq!(vars.get("D"), Some("cli"));
    }

    #[test]
    fn secrets_must_be_provided_and_are_masked() {
        let b = spec("version: 0.2\nenv:\n  parameter-store:\n    DB: /db/pass\n  secrets-manager:\n    TOKEN: tok:token\nphases:\n  build:\n    commands: [x]\n");
        let user = UserVariables {
            buildspec: &b,
            stores: vec![],
            env_file: vec![],
            cli: vec![("DB".into(), "hunter22".into())],
        };
        assert_eq!(user.unresolved_secrets(), ["TOKEN"]);
        let masker = Masker::new(user.secret_values());
        assert_eq!(masker.mask("pw=hunter22!"), "pw=***!");
    }

    #[test]
    fn masking_is_longest_first_line_by_line_and_covers_url_passwords() {
        let pem = "-----BEGIN KEY-----\nMIIEabcdefgh\n-----END KEY-----";
        let masker = Masker::new(["abcd", "abcdefgh", pem, "ab"]);
        assert_eq!(masker.mask("x abcdefgh y"), "x *** y");
        assert_eq!(masker.mask("MIIEabcdefgh"), "***");
        assert_eq!(masker.mask("ab"), "ab");
        assert_eq!(
            masker.mask("pip from https://bob:s3cr3t@pypi.example/simple and http://host/x@y"),
            "pip from https://bob:***@pypi.example/simple and http://host/x@y"
        );
        assert!(masker.reveals("token abcd"));
        assert!(!masker.reveals("nothing here"));
    }

    #[test]
    fn env_files_are_literal_and_report_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "# c\nA=1\nexport B='two words'\nC=\"$HOME\"\n").unwrap();
        let vars = read_env_file(&path).unwrap();
        assert_eq!(
            vars,
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "$HOME".into())
            ]
        );
        std::fs::write(&path, "A=1\nnot a var\n").unwrap();
        let err = format!("{:#}", read_env_file(&path).unwrap_err());
        assert!(err.contains(":2:1"), "{err}");
    }
}
