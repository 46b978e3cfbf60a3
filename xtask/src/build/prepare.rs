//! The first stage of a build, and a pure one: settings, the source set, the variables and what
//! the image is become a [`Plan`] — the build's environment (CodeBuild's variables, then the
//! user's), the secrets to mask, the driver script, the cache paths, what the container gets from
//! the host, and the build key that makes an unchanged rebuild a no-op. Nothing here talks to
//! Docker or AWS, so every decision in it is tested without them.

use std::path::PathBuf;

use anyhow::bail;

use super::cache::{self, CachePlan};
use super::driver::{self, DriverInputs};
use super::image::ImageFacts;
use super::key;
use super::settings::{source_number, Settings};
use super::source::Packed;
use super::variables::{self, Invocation, Masker, Variables, RESERVED_PREFIX};
use crate::buildspec::Buildspec;
use crate::layer::{Cell, LayerTarget};
use crate::manifest::Manifest;
use crate::runtime::Runtime;

/// Where CodeBuild puts the sources; the build writes its outputs there too.
pub const OUTPUT_ROOT: &str = "/codebuild/output";
/// Where the host's CA bundle is put in the container.
pub const CONTAINER_CA_DIR: &str = "/tmp/xtask-host-ca";
pub const CONTAINER_CA_FILE: &str = "/tmp/xtask-host-ca/ca-bundle.crt";

/// What the user asked of the build's environment and behaviour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `cache: paths` persist between builds.
    pub cache: bool,
    /// The verification imports the layer.
    pub import_test: bool,
    /// The source tree stays on disk even when the Docker machine has memory to spare.
    pub scratch_on_disk: bool,
    /// How long the phases may run (CodeBuild's build timeout; longer when emulated).
    pub timeout: std::time::Duration,
    /// How many times slower than native the build runs (QEMU emulation): the import test's
    /// timeouts scale with it.
    pub slowdown: u32,
    /// `--json` carries exported secrets unmasked.
    pub json_unmasked_exports: bool,
}

/// What the container gets from the host: proxy, index and CA settings, and AWS credentials only
/// when asked for. Read from the host's environment by [`HostConfig::from_env`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub env: Variables,
    /// The host's CA bundle, copied into the container.
    pub ca_bundle: Option<PathBuf>,
    /// Values in `env` that are secrets (AWS credentials).
    pub secrets: Vec<String>,
}

impl HostConfig {
    pub fn from_env(network_config: bool, aws_credentials: bool) -> HostConfig {
        let mut host = HostConfig::default();
        if network_config {
            for (name, value) in variables::host_network_variables() {
                host.env.set(&name, value);
            }
            host.ca_bundle = variables::host_ca_bundle();
            if host.ca_bundle.is_some() {
                for name in variables::CA_VARIABLES {
                    host.env.set(name, CONTAINER_CA_FILE);
                }
            }
        }
        if aws_credentials {
            for (name, value) in variables::host_aws_credentials() {
                host.secrets.push(value.clone());
                host.env.set(&name, value);
            }
        }
        host
    }
}

/// The user's variables (buildspec, stores, env file, command line, merged by precedence) and
/// which of their values are secrets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInput {
    pub variables: Variables,
    /// The names in `variables` given outside the buildspec (they win over the project's).
    pub provided: Vec<String>,
    pub secrets: Vec<String>,
}

impl UserInput {
    /// The user's variables with the project's (`project`) in between: over the buildspec's
    /// values, under those given on the command line, as CodeBuild orders them.
    fn with_project(&self, project: &Variables) -> Variables {
        let mut variables = self.variables.clone();
        for (name, value) in &project.0 {
            if !self.provided.contains(name) {
                variables.set(name, value.clone());
            }
        }
        variables
    }
}

/// Everything [`plan`] turns into a [`Plan`].
pub struct Inputs<'a> {
    pub settings: &'a Settings,
    pub image: &'a ImageFacts,
    /// The runtime the build targets, resolved.
    pub runtime: &'static Runtime,
    /// The cell's lock (relative to the source), checked, when the project keeps locks.
    pub lock: Option<String>,
    pub user: UserInput,
    pub host: HostConfig,
    pub source: Packed,
    pub source_files: usize,
    pub git_revision: Option<String>,
    pub invocation: Invocation,
    pub options: Options,
}

/// How the driver runs: `<interpreter> -c BOOTSTRAP` as `user` (root when `None`), with the
/// token and the script on stdin (see `driver`).
#[derive(Clone, PartialEq, Eq)]
pub struct Driver {
    pub interpreter: String,
    pub script: String,
    pub user: Option<String>,
    pub token: String,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("interpreter", &self.interpreter)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// A build, decided: what the executor runs and what `package` needs to know.
#[derive(Debug)]
pub struct Plan {
    pub layer: LayerTarget,
    pub runtime: &'static Runtime,
    pub arch: String,
    pub image: String,
    pub image_id: String,
    pub buildspec: Buildspec,
    /// The buildspec as written (what a remote build sends).
    pub buildspec_text: String,
    /// The names in `variables` given outside the buildspec: the cell's, `--env`, `--env-file`.
    pub provided: Vec<String>,
    pub out_dir: PathBuf,
    /// Where the source is in the container (`CODEBUILD_SRC_DIR`).
    pub src_dir: String,
    /// The build's variables: CodeBuild's, then the user's. The driver gets them in its
    /// environment, never in its command line.
    pub variables: Variables,
    pub masker: Masker,
    pub driver: Driver,
    pub host: HostConfig,
    /// `cache:`: the directories, the evaluated key.
    pub cache: CachePlan,
    /// A hash of the project directory, naming its cache volumes.
    pub project_id: String,
    pub source: Packed,
    pub source_files: usize,
    pub git_revision: Option<String>,
    pub options: Options,
    pub build_key: String,
}

/// Turns the inputs into the plan; refuses what cannot run (a Windows shell, a variable in the
/// driver's reserved namespace).
pub fn plan(inputs: Inputs) -> anyhow::Result<Plan> {
    let settings = inputs.settings;
    let shell = settings.buildspec.shell();
    let interpreter = driver::interpreter(&shell)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "Windows shells (powershell.exe, cmd.exe) cannot run in a Linux build image"
            )
        })?
        .to_string();
    refuse_reserved(&inputs.user.variables)?;
    let cell = Cell {
        runtime: inputs.runtime,
        arch: settings.arch.clone(),
    };
    let cell_variables = variables::cell_variables(&cell, inputs.lock.as_deref());
    let user_variables = inputs.user.with_project(&cell_variables);
    let mut provided = inputs.user.provided.clone();
    provided.extend(cell_variables.0.iter().map(|(name, _)| name.clone()));
    let src_dir = format!(
        "{OUTPUT_ROOT}/src{}/src",
        source_number(settings.target.short_name())
    );
    let mut variables = variables::codebuild_variables(
        &inputs.invocation,
        &settings.image,
        &src_dir,
        inputs.git_revision.as_deref(),
    );
    for (name, value) in &user_variables.0 {
        variables.set(name, value.clone());
    }
    let masker = Masker::new(inputs.user.secrets.iter().chain(&inputs.host.secrets));
    let script = driver::driver_script(
        &settings.buildspec,
        &DriverInputs {
            src_dir: src_dir.clone(),
            shell: interpreter.clone(),
        },
    );
    let mut layer = settings.target.clone();
    if layer.runtimes.is_empty() {
        layer.runtimes = vec![inputs.runtime];
    }
    let build_key = key::build_key(&key::KeyInputs {
        image_id: &inputs.image.id,
        buildspec_text: &settings.buildspec_text,
        source_digest: &inputs.source.digest,
        variables: &user_variables.0,
        secrets: &inputs.user.secrets,
        runtime: inputs.runtime.id,
        compatible_runtimes: &layer.runtime_ids(),
        arch: &settings.arch,
        layer_name: &layer.layer_name,
        cache_enabled: inputs.options.cache,
        import_test: inputs.options.import_test,
    });
    Ok(Plan {
        runtime: inputs.runtime,
        arch: settings.arch.clone(),
        image: settings.image.clone(),
        image_id: inputs.image.id.clone(),
        buildspec: settings.buildspec.clone(),
        buildspec_text: settings.buildspec_text.clone(),
        provided,
        out_dir: settings.out_dir.clone(),
        cache: cache_plan(
            &settings.buildspec,
            &src_dir,
            &variables,
            &inputs.source,
            &masker,
        ),
        project_id: project_id(&settings.source_dir, inputs.runtime.id, &settings.arch),
        src_dir,
        variables,
        masker,
        driver: Driver {
            interpreter,
            script,
            user: driver::driver_user(&settings.buildspec).map(str::to_string),
            token: inputs.invocation.token.clone(),
        },
        host: inputs.host,
        source: inputs.source,
        source_files: inputs.source_files,
        git_revision: inputs.git_revision,
        options: inputs.options,
        build_key,
        layer,
    })
}

impl Plan {
    pub fn zip_path(&self) -> PathBuf {
        self.layer.zip_path(&self.out_dir)
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.layer.manifest_path(&self.out_dir)
    }

    /// The manifest of a previous build with this plan's key, when its zip is still intact.
    pub fn up_to_date(&self) -> Option<Manifest> {
        let manifest = Manifest::read(&self.manifest_path()).ok()?;
        (manifest.build_key == self.build_key && manifest.verification.passed)
            .then_some(manifest)
            .filter(|m| m.describes_zip_beside(&self.manifest_path()))
    }
}

/// A variable whose name the driver uses for its own state would change how the build runs.
fn refuse_reserved(variables: &Variables) -> anyhow::Result<()> {
    if let Some((name, _)) = variables
        .0
        .iter()
        .find(|(name, _)| name.starts_with(RESERVED_PREFIX))
    {
        bail!(
            "the variable {name} starts with {RESERVED_PREFIX}, which the local build's driver keeps for itself: rename it"
        );
    }
    Ok(())
}

/// The cache plan; a key that would hold a secret is not used (volume labels are not secret).
fn cache_plan(
    buildspec: &Buildspec,
    src_dir: &str,
    variables: &Variables,
    source: &Packed,
    masker: &Masker,
) -> CachePlan {
    let mut plan = cache::plan(buildspec, src_dir, variables, &source.tar);
    let secret = |k: &String| masker.reveals(k);
    if plan.key.as_ref().is_some_and(secret) || plan.fallback_keys.iter().any(secret) {
        plan.key = None;
        plan.fallback_keys.clear();
        plan.note = Some("the cache key holds a secret: the unkeyed cache is used".to_string());
    }
    plan
}

/// A hash of the source directory and the cell: caches belong to a project, hold binaries (uv
/// itself, compiled wheels) that only run on one architecture, and may hold what one Python
/// version made (a cached venv or `--target` directory): cells built side by side must not
/// share them.
fn project_id(source_dir: &std::path::Path, runtime: &str, arch: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(source_dir.to_string_lossy().as_bytes());
    hasher.update([0]);
    hasher.update(runtime.as_bytes());
    hasher.update([0]);
    hasher.update(arch.as_bytes());
    crate::util::hex(&hasher.finalize())
}

impl Plan {
    /// The variables given outside the buildspec, with their values (a remote build sends them
    /// as overrides; CodeBuild sets its own).
    pub fn provided_variables(&self) -> Vec<(String, String)> {
        self.variables
            .0
            .iter()
            .filter(|(name, _)| self.provided.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect()
    }

    /// The plan with the build number it was given when it started (see
    /// `variables::claim_build_number`): outside the build key, like the whole invocation.
    pub fn numbered(mut self, number: u64) -> Plan {
        self.variables
            .set("CODEBUILD_BUILD_NUMBER", number.to_string());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::image::ImageFacts;
    use crate::diagnostic::SourceFile;

    fn settings(buildspec: &str) -> Settings {
        let parsed = crate::buildspec::parse(SourceFile::new("buildspec.yml", buildspec));
        Settings {
            source_dir: PathBuf::from("/project"),
            buildspec_text: buildspec.to_string(),
            buildspec: parsed.buildspec.expect("a buildspec"),
            target: LayerTarget::resolve(&crate::layer::Wanted::default(), None).unwrap(),
            runtime: super::super::settings::RuntimeChoice {
                runtime: None,
                from: String::new(),
                requested: None,
            },
            arch: "x86_64".into(),
            image: "img".into(),
            out_dir: PathBuf::from("/project/target/layer"),
            timeout_minutes: 60,
            locks: None,
            warnings: Vec::new(),
        }
    }

    fn inputs<'a>(settings: &'a Settings, image: &'a ImageFacts, user: UserInput) -> Inputs<'a> {
        Inputs {
            settings,
            image,
            runtime: crate::layer::default_runtime(),
            lock: None,
            user,
            host: HostConfig::default(),
            source: Packed {
                tar: Vec::new(),
                digest: "d".into(),
            },
            source_files: 0,
            git_revision: Some("abc".into()),
            invocation: Invocation {
                build_id: "local:1".into(),
                build_number: 7,
                start_ms: 1,
                initiator: "xtask/me".into(),
                region: Some("eu-west-1".into()),
                token: "t0k3n".into(),
            },
            options: Options::default(),
        }
    }

    const SPEC: &str = "version: 0.2\nrun-as: builder\ncache:\n  paths:\n    - /root/.cache/uv/**/*\n    - 'node_modules/**/*'\n    - '/root/.cache/uv/*'\nphases:\n  build:\n    commands: [x]\n";

    fn user(vars: &[(&str, &str)], secrets: &[&str]) -> UserInput {
        let mut variables = Variables::default();
        for (n, v) in vars {
            variables.set(n, *v);
        }
        UserInput {
            provided: variables.0.iter().map(|(n, _)| n.clone()).collect(),
            variables,
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn user_variables_win_over_codebuilds_and_secrets_are_masked() {
        let settings = settings(SPEC);
        let image = ImageFacts::default();
        let plan = plan(inputs(
            &settings,
            &image,
            user(
                &[("AWS_REGION", "us-west-2"), ("TOKEN", "hunter22")],
                &["hunter22"],
            ),
        ))
        .unwrap();
        assert_eq!(plan.variables.get("AWS_REGION"), Some("us-west-2"));
        assert_eq!(plan.variables.get("AWS_DEFAULT_REGION"), Some("eu-west-1"));
        assert_eq!(plan.variables.get("CODEBUILD_BUILD_NUMBER"), Some("7"));
        assert_eq!(
            plan.variables.get("CODEBUILD_SRC_DIR"),
            Some(plan.src_dir.as_str())
        );
        assert_eq!(
            plan.variables.get("CODEBUILD_RESOLVED_SOURCE_VERSION"),
            Some("abc")
        );
        assert_eq!(plan.masker.mask("t=hunter22"), "t=***");
        // The driver script carries no variable values: they go in its environment.
        assert!(!plan.driver.script.contains("hunter22"));
        assert_eq!(plan.driver.user.as_deref(), Some("builder"));
        assert_eq!(plan.layer.runtime_ids(), ["python3.9"]);
    }

    #[test]
    fn cache_paths_become_absolute_directories_once_each() {
        let settings = settings(SPEC);
        let image = ImageFacts::default();
        let plan = plan(inputs(&settings, &image, UserInput::default())).unwrap();
        assert_eq!(
            plan.cache.dirs,
            [
                "/root/.cache/uv".to_string(),
                format!("{}/node_modules", plan.src_dir)
            ]
        );
    }

    #[test]
    fn the_key_follows_variables_but_not_secret_values_or_the_invocation() {
        let settings = settings(SPEC);
        let image = ImageFacts::default();
        let key = |vars: &[(&str, &str)], secrets: &[&str]| {
            plan(inputs(&settings, &image, user(vars, secrets)))
                .unwrap()
                .build_key
        };
        let base = key(&[("A", "1"), ("S", "one")], &["one"]);
        assert_eq!(base, key(&[("A", "1"), ("S", "two")], &["two"]));
        assert_ne!(base, key(&[("A", "2"), ("S", "one")], &["one"]));
        let mut other = inputs(
            &settings,
            &image,
            user(&[("A", "1"), ("S", "one")], &["one"]),
        );
        other.invocation.build_number = 8;
        assert_eq!(base, plan(other).unwrap().build_key);
    }

    #[test]
    fn the_drivers_namespace_is_reserved() {
        let settings = settings(SPEC);
        let image = ImageFacts::default();
        let err = plan(inputs(&settings, &image, user(&[("__xt_stop", "1")], &[]))).unwrap_err();
        assert!(err.to_string().contains("__xt_stop"), "{err}");
    }
}
