//! `cargo xtask build-layer`: runs `buildspec.yml` in the build image with CodeBuild's semantics,
//! then turns the artifact into a verified, deterministic layer zip plus the manifest `deploy`
//! reads.
//!
//! A build moves through typed stages, data flowing one way:
//! settings (flags, template, lint) → inputs (variables, secrets, source, image) →
//! [`prepare`] (pure: a [`prepare::Plan`]) → no-op check → [`execute`] (an executor runs the
//! phases: [`docker`] today) → [`package`] (verify, zip, manifest) → [`summary`] (built once).

mod cache;
mod combine;
mod docker;
pub mod driver;
pub(crate) mod emulation;
mod execute;
pub(crate) mod image;
mod key;
mod log;
mod matrix;
mod package;
mod prepare;
mod remote;
mod remote_cells;
mod secrets;
mod settings;
mod source;
mod staging;
mod summary;
mod variables;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use docker::DockerExecutor;
use execute::{Executor, Outcome};
use log::Log;
use package::Packaged;
pub use prepare::{HostConfig, CONTAINER_CA_DIR};
use prepare::{Inputs, Options, Plan, UserInput};
use settings::Settings;
use source::Source;
use staging::Staging;
use summary::Summary;
use variables::{Invocation, Masker, UserVariables};

use crate::engine::Engine;
use crate::layer::{self, Cell};
use crate::runtime::Runtime;
use crate::verify::{ImportTest, LayerContainer};

/// Build the layer: run the buildspec in the build image exactly as CodeBuild would, then write a
/// deterministic `<out-dir>/<LayerName>.zip` and its manifest.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BuildLayer {
    /// The buildspec [default: buildspec.yml in the source directory].
    #[arg(long)]
    pub buildspec: Option<PathBuf>,
    /// The source directory sent into the container [default: the workspace root].
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// The layer template [default: template.yaml or template.yml in the source directory].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Which of the template's layers to build, when it has several.
    #[arg(long)]
    pub layer_name: Option<String>,
    /// Build image [default: public.ecr.aws/sam/build-<runtime>:latest-<arch>].
    #[arg(long, env = "LAYER_BUILD_IMAGE")]
    pub image: Option<String>,
    /// Target runtime, e.g. python3.12 [default: the template's first CompatibleRuntimes entry,
    /// else the buildspec's runtime-versions, else the image's Python].
    #[arg(long)]
    pub runtime: Option<String>,
    /// Target architecture [default: the template's CompatibleArchitectures, else x86_64].
    #[arg(long, value_parser = ["x86_64", "arm64"])]
    pub arch: Option<String>,
    /// Where the zip, manifest and reports go [default: target/layer in the source directory].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// A variable for the build, NAME=value (repeatable; wins over --env-file and the buildspec).
    #[arg(long = "env", value_name = "NAME=VALUE", value_parser = variables::parse_assignment)]
    pub env: Vec<(String, String)>,
    /// A file of NAME=value lines (wins over the buildspec's env.variables).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Rebuild even when nothing changed.
    #[arg(long)]
    pub force: bool,
    /// Build without the persistent cache volumes of `cache: paths`.
    #[arg(long)]
    pub no_cache: bool,
    /// Print one JSON summary on stdout (the build log goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Do not forward the host's proxy, pip index and CA bundle settings into the container.
    #[arg(long)]
    pub no_host_network_config: bool,
    /// Fetch the buildspec's parameter-store and secrets-manager values with the host's AWS
    /// credentials (default chain; AWS_ENDPOINT_URL honoured) instead of requiring --env values.
    #[arg(long)]
    pub resolve_secrets: bool,
    /// Skip the import smoke test of the verification (the static checks still run).
    #[arg(long)]
    pub no_import_test: bool,
    /// Keep the container's source tree (/codebuild/output) on a disk volume. By default it is in
    /// memory (tmpfs, at most a quarter of the Docker machine's memory) when that machine has 4 GiB
    /// or more.
    #[arg(long)]
    pub scratch_on_disk: bool,
    /// Forward the host's AWS credentials (environment variables) into the container.
    #[arg(long)]
    pub pass_aws_credentials: bool,
    /// Send only the files git tracks into the container (the default when CI is set).
    #[arg(long, conflicts_with = "include_untracked")]
    pub tracked_only: bool,
    /// Send untracked files that git does not ignore too, even when CI is set.
    #[arg(long)]
    pub include_untracked: bool,
    /// Stop the build after this many minutes, as CodeBuild's timeout does [default: the
    /// CodeBuild project's TimeoutInMinutes in codebuild.yml, else 60].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=2160))]
    pub timeout_minutes: Option<u64>,
    /// Put exported variables that hold secrets into --json unmasked (the human summary always
    /// masks them).
    #[arg(long)]
    pub json_unmasked_exports: bool,
    /// Build every cell of the template's CompatibleRuntimes × CompatibleArchitectures: one
    /// verified zip and manifest per cell (<LayerName>-<runtime>-<arch>.zip). --image may name
    /// each cell's image with {runtime}, {python} and {arch}.
    #[arg(long, conflicts_with_all = ["runtime", "arch"])]
    pub matrix: bool,
    /// Build these cells (like --matrix): python3.13-arm64,python3.9-x86_64,…
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["runtime", "arch", "matrix"])]
    pub cells: Vec<String>,
    /// With --matrix/--cells: also combine the cells of each architecture into one layer
    /// (<LayerName>-<arch>.zip) holding each runtime's packages in python/lib/python3.X/site-packages.
    #[arg(long)]
    pub multi_runtime: bool,
    /// How many cells build at once [default: one per two cores].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: Option<u64>,
    /// The directory of per-cell locks (<cell>.txt, see `cargo xtask lock`) [default:
    /// python-layer/locks in the source directory, when it exists].
    #[arg(long)]
    pub locks: Option<PathBuf>,
    /// Run the build in the CodeBuild project instead of the local Docker daemon: the same
    /// source, buildspec, image and variables; the artifact packaged here as a local one is.
    #[arg(long, conflicts_with_all = ["resolve_secrets", "pass_aws_credentials"])]
    pub remote: bool,
    /// With --remote: the CodeBuild project [default: <LayerName>-layer, as codebuild.yml names
    /// it].
    #[arg(long, requires = "remote")]
    pub project: Option<String>,
    /// With --remote: the bucket the source and the artifact go through (the codebuild.yml
    /// stack's ArtifactBucket) [default: s3_bucket in samconfig.toml beside the source].
    #[arg(long, requires = "remote")]
    pub bucket: Option<String>,
    /// The cell this build is (set by --matrix and --cells).
    #[arg(skip)]
    pub cell: Option<String>,
}

impl BuildLayer {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Runtime::new()?;
        if self.matrix || !self.cells.is_empty() {
            return runtime.block_on(self.run_matrix());
        }
        if self.multi_runtime {
            bail!("--multi-runtime combines the cells of --matrix or --cells");
        }
        let json = self.json;
        let summary = runtime.block_on(build(self))?;
        // Containers are removed by now (explicitly or by their guards).
        if json {
            writeln!(std::io::stdout(), "{}", summary.to_json())?;
        } else {
            summary.print();
        }
        Ok(ExitCode::from(summary.exit_code()))
    }
}

impl BuildLayer {
    /// `--matrix` / `--cells`: every cell through the same pipeline, then one table.
    async fn run_matrix(self) -> anyhow::Result<ExitCode> {
        let cells = self.matrix_cells()?;
        let jobs = self.jobs.map_or_else(matrix::default_jobs, |j| j as usize);
        let results = matrix::build(&self, cells, jobs).await;
        let combined = match self.multi_runtime {
            true => matrix::combine_all(&self.out_dir(), self.layer_name().as_deref(), &results),
            false => Vec::new(),
        };
        if self.json {
            let mut json = matrix::to_json(&results);
            if self.multi_runtime {
                json["multi_runtime"] = matrix::combined_json(&combined);
                if combined.iter().any(|c| c.outcome.is_err()) {
                    json["status"] = "FAILED".into();
                }
            }
            writeln!(std::io::stdout(), "{json}")?;
        } else {
            matrix::print(&results);
            matrix::print_combined(&combined);
        }
        let combined_failed = combined.iter().any(|c| c.outcome.is_err());
        let code = matrix::exit_code(&results);
        Ok(ExitCode::from(if code == 0 && combined_failed {
            1
        } else {
            code
        }))
    }

    /// `--matrix` / `--cells` with `--multi-runtime`, quietly (the log on stderr, nothing on
    /// stdout): an error when a cell or a combined layer failed.
    async fn build_multi_runtime(self) -> anyhow::Result<()> {
        let cells = self.matrix_cells()?;
        let jobs = self.jobs.map_or_else(matrix::default_jobs, |j| j as usize);
        let results = matrix::build(&self, cells, jobs).await;
        let combined = matrix::combine_all(&self.out_dir(), self.layer_name().as_deref(), &results);
        if matrix::exit_code(&results) >= 128 {
            return Err(crate::util::Interrupted.into());
        }
        if let Some(failed) = results.iter().find(|r| r.outcome.is_err()) {
            let error = failed.outcome.as_ref().err().cloned().unwrap_or_default();
            bail!(
                "build-layer failed for the cell {}: {error}",
                failed.cell.id()
            );
        }
        if let Some(failed) = results
            .iter()
            .find(|r| matrix::exit_code(std::slice::from_ref(r)) != 0)
        {
            bail!("build-layer failed for the cell {}", failed.cell.id());
        }
        if let Some(Err(e)) = combined.iter().map(|c| &c.outcome).find(|o| o.is_err()) {
            bail!("the multi-runtime layer was not made: {e}");
        }
        Ok(())
    }

    /// `--out-dir`, else `target/layer` in the source directory.
    pub(crate) fn out_dir(&self) -> PathBuf {
        let source = self
            .source
            .clone()
            .unwrap_or_else(crate::util::project_root);
        self.out_dir
            .clone()
            .unwrap_or_else(|| source.join("target").join("layer"))
    }

    /// The layer's name (`--layer-name`, else the template's), when it resolves.
    fn layer_name(&self) -> Option<String> {
        let source = self
            .source
            .clone()
            .unwrap_or_else(crate::util::project_root);
        let template = layer::read_template(self.template.as_deref(), &source).ok()?;
        let wanted = layer::Wanted {
            layer_name: self.layer_name.clone(),
            ..layer::Wanted::default()
        };
        let target = layer::LayerTarget::resolve(&wanted, template.as_ref()).ok()?;
        Some(target.layer_name)
    }

    /// `--cells` as given, else the template's runtimes × architectures.
    fn matrix_cells(&self) -> anyhow::Result<Vec<Cell>> {
        let source = self
            .source
            .clone()
            .unwrap_or_else(crate::util::project_root);
        layer::wanted_cells(
            &self.cells,
            self.template.as_deref(),
            &source,
            self.layer_name.as_deref(),
        )
    }
}

/// `deploy --build --multi-runtime`: the template's cells, then each architecture's
/// multi-runtime layer; an error when any of them failed.
pub async fn build_multi_runtime(flags: BuildLayer) -> anyhow::Result<()> {
    BuildLayer {
        matrix: true,
        multi_runtime: true,
        json: true,
        ..flags
    }
    .build_multi_runtime()
    .await
}

/// One build, stage by stage. With `json` set the log goes to stderr and nothing is printed on
/// stdout (callers inside a tokio runtime, such as `deploy --build`, use it directly). An error
/// is masked like the log: it may quote what a command printed.
pub async fn build(flags: BuildLayer) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let settings = Settings::resolve(&flags)?;
    let (log, user, host, masker) = begin(&flags, &settings).await?;
    let built = match flags.remote {
        true => build_remote(&flags, &settings, user, host, &log, started).await,
        false => build_with(&flags, &settings, user, host, &log, started).await,
    };
    built.map_err(|e| anyhow::anyhow!("{}", masker.mask(&format!("{e:#}"))))
}

/// The build's log (masking its secrets from here on, whoever prints), the user's and the
/// host's inputs, and the masker for its errors.
async fn begin(
    flags: &BuildLayer,
    settings: &Settings,
) -> anyhow::Result<(Log, UserInput, HostConfig, Masker)> {
    let log = Log::new(flags.json).for_cell(flags.cell.as_deref());
    for warning in &settings.warnings {
        log.line(&warning.headline());
    }
    let user = user_input(flags, settings).await?;
    let host = HostConfig::from_env(!flags.no_host_network_config, flags.pass_aws_credentials);
    let masker = Masker::new(user.secrets.iter().chain(&host.secrets));
    Ok((log.masking(masker.clone()), user, host, masker))
}

async fn build_with(
    flags: &BuildLayer,
    settings: &Settings,
    user: UserInput,
    host: HostConfig,
    log: &Log,
    started: Instant,
) -> anyhow::Result<Summary> {
    let source = Source::discover(&settings.source_dir, source_files(flags))?;
    warn_untracked(&source, log);
    let engine = Engine::connect().await?;
    let image = image::inspect(&engine, &settings.image, &settings.arch, log).await?;
    image::check_architecture(&settings.image, &image, &settings.arch)?;
    let emulation = check_emulation(&engine, settings, log).await?;
    let runtime = target_runtime(settings, &image, log)?;
    warn_newer_glibc(settings, &image, runtime, log);
    let lock = cell_lock(settings, runtime, &source)?;
    let invocation = Invocation::now(&settings.out_dir);
    let plan = prepare::plan(Inputs {
        settings,
        image: &image,
        runtime,
        lock,
        user,
        host,
        source: source.pack()?,
        source_files: source.files.len(),
        git_revision: source.git_revision.clone(),
        invocation: invocation.clone(),
        options: options(flags, settings, emulation),
    })?;
    if let Some(summary) = up_to_date(&plan, flags, log, started) {
        return Ok(summary);
    }
    let (_lock, plan) = claim(plan)?;
    tokio::select! {
        result = execute_and_package(&plan, &engine, log) => {
            let (outcome, packaged) = result?;
            Ok(Summary::new(&plan, outcome, packaged, started.elapsed()))
        }
        code = interrupted() => {
            stop(&plan, &engine, log, code).await;
            Ok(Summary::interrupted(code, started.elapsed()))
        }
    }
}

/// The summary of a build with nothing to do (the manifest still describes the zip and the
/// plan's key), unless `--force`.
fn up_to_date(plan: &Plan, flags: &BuildLayer, log: &Log, started: Instant) -> Option<Summary> {
    let manifest = plan.up_to_date().filter(|_| !flags.force)?;
    log.line(&format!(
        "up to date: {} (sha256 {})",
        plan.zip_path().display(),
        manifest.sha256
    ));
    Some(Summary::up_to_date(plan, &manifest, started.elapsed()))
}

/// The layer's out-dir lock and the plan numbered as this out-dir's next build: from here on
/// the run counts as a build.
fn claim(plan: Plan) -> anyhow::Result<(std::fs::File, Plan)> {
    let lock = lock_out_dir(&plan.out_dir, &plan.layer.file_stem())?;
    let number = variables::claim_build_number(&plan.out_dir)?;
    Ok((lock, plan.numbered(number)))
}

/// `--remote`: the same stages, with CodeBuild as the executor. No local Docker is needed: the
/// image is CodeBuild's to pull; the import test runs here in the same image when Docker is
/// reachable and has (or can pull) it, and is skipped, said so, otherwise.
async fn build_remote(
    flags: &BuildLayer,
    settings: &Settings,
    user: UserInput,
    host: HostConfig,
    log: &Log,
    started: Instant,
) -> anyhow::Result<Summary> {
    let RemotePlan {
        plan,
        target,
        import_test,
    } = plan_remote(flags, settings, user, host, log).await?;
    if let Some(summary) = up_to_date(&plan, flags, log, started) {
        return Ok(summary);
    }
    let clients = remote::Clients::new(&target).await?;
    let (_lock, plan) = claim(plan)?;
    let executor = remote::CodeBuildExecutor {
        clients: &clients,
        target: &target,
        log,
        running: Default::default(),
    };
    tokio::select! {
        result = execute_remotely_and_package(&plan, &executor, import_test.as_ref(), log) => {
            let (outcome, packaged) = result?;
            Ok(Summary::new(&plan, outcome, packaged, started.elapsed()))
        }
        code = interrupted() => {
            let running = executor.running.lock().ok().and_then(|mut r| r.take());
            if let Some(id) = running {
                log.line(&format!("interrupted: stopping the CodeBuild build {id} (exit {code})"));
                remote::stop(&clients, &id).await;
            }
            package::remove_pending(&plan);
            Ok(Summary::interrupted(code, started.elapsed()))
        }
    }
}

/// A remote build's plan, where it runs, and the local engine for its import test (if any).
struct RemotePlan {
    plan: Plan,
    target: remote::RemoteTarget,
    import_test: Option<(Engine, u32)>,
}

/// Everything a remote build decides before it starts: no local Docker is needed for it.
async fn plan_remote(
    flags: &BuildLayer,
    settings: &Settings,
    user: UserInput,
    host: HostConfig,
    log: &Log,
) -> anyhow::Result<RemotePlan> {
    let source = Source::discover(&settings.source_dir, source_files(flags))?;
    warn_untracked(&source, log);
    let target = remote_target(flags, settings).await?;
    let image = image::ImageFacts::remote(&target.project, &settings.image, &settings.arch);
    let runtime = target_runtime(settings, &image, log)?;
    let lock = cell_lock(settings, runtime, &source)?;
    let import_test = match flags.no_import_test {
        true => None,
        false => import_test_here(settings, log).await,
    };
    let mut options = options(flags, settings, emulation::Emulation::Native);
    options.import_test = import_test.is_some();
    let plan = prepare::plan(Inputs {
        settings,
        image: &image,
        runtime,
        lock,
        user,
        host,
        source: source.pack()?,
        source_files: source.files.len(),
        git_revision: source.git_revision.clone(),
        invocation: Invocation::now(&settings.out_dir),
        options,
    })?;
    Ok(RemotePlan {
        plan,
        target,
        import_test,
    })
}

/// The project and bucket of `--remote`: the flags, else samconfig.toml's bucket, else the
/// outputs of the stack `deploy-stack` made from codebuild.yml (`<LayerName>-codebuild`), else
/// the project name codebuild.yml gives (`<LayerName>-layer`).
async fn remote_target(
    flags: &BuildLayer,
    settings: &Settings,
) -> anyhow::Result<remote::RemoteTarget> {
    let sam = crate::deploy::SamConfig::read(&settings.source_dir.join("samconfig.toml"))?;
    let layer = settings.target.short_name();
    let mut project = flags.project.clone();
    let mut bucket = flags.bucket.clone().or(sam.s3_bucket);
    if project.is_none() || bucket.is_none() {
        let stack = format!("{layer}-codebuild");
        let outputs =
            crate::stack::stack_outputs(&stack, sam.profile.as_deref(), sam.region.as_deref())
                .await
                .unwrap_or_default();
        let output = |key: &str| {
            outputs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        project = project.or_else(|| output("ProjectName"));
        bucket = bucket.or_else(|| output("ArtifactBucketName"));
    }
    let Some(bucket) = bucket else {
        bail!("--remote needs a bucket for the source and the artifact: pass --bucket, set s3_bucket in samconfig.toml, or create the CodeBuild stack with `cargo xtask deploy-stack` (its ArtifactBucketName output is used)");
    };
    Ok(remote::RemoteTarget {
        project: project.unwrap_or_else(|| format!("{layer}-layer")),
        bucket,
        profile: sam.profile,
        region: sam.region,
    })
}

/// The local Docker daemon and the build image's slowdown here, when the import test of a remote
/// build can run on this machine; `None`, said so, when it cannot.
async fn import_test_here(settings: &Settings, log: &Log) -> Option<(Engine, u32)> {
    let skipped = |why: String| {
        log.line(&format!(
            "import test: skipped for this remote build ({why}); the static checks run"
        ));
        None
    };
    let engine = match Engine::connect().await {
        Ok(engine) => engine,
        Err(e) => return skipped(format!("no Docker here: {e}")),
    };
    if let Err(e) = image::inspect(&engine, &settings.image, &settings.arch, log).await {
        return skipped(format!("the build image is not available here: {e:#}"));
    }
    match check_emulation(&engine, settings, log).await {
        Ok(emulation) => Some((engine, emulation.slowdown())),
        Err(e) => skipped(format!("{e:#}")),
    }
}

async fn execute_remotely_and_package(
    plan: &Plan,
    executor: &remote::CodeBuildExecutor<'_>,
    import_test: Option<&(Engine, u32)>,
    log: &Log,
) -> anyhow::Result<(Outcome, Option<Packaged>)> {
    let staging = Staging::create(&plan.out_dir)?;
    let (started, _) = tokio::sync::oneshot::channel();
    let outcome = executor.execute(plan, staging, started).await?;
    package_remote(plan, outcome, import_test, log).await
}

/// A remote build's artifact packaged as a local one is, the import test run here when it can.
async fn package_remote(
    plan: &Plan,
    mut outcome: Outcome,
    import_test: Option<&(Engine, u32)>,
    log: &Log,
) -> anyhow::Result<(Outcome, Option<Packaged>)> {
    let import_test = match import_test {
        Some((engine, slowdown)) => ImportTest::Run {
            engine,
            image: &plan.image,
            ready: None,
            slowdown: *slowdown,
        },
        None => ImportTest::Skip,
    };
    let packaged = match &outcome.artifacts {
        Some(artifacts) => package::package(plan, artifacts, import_test, log).await,
        None => Ok(None),
    };
    let packaged = packaged.unwrap_or_else(|e| {
        outcome.failure = Some(format!("packaging the layer: {e:#}"));
        None
    });
    Ok((outcome, packaged))
}

/// Whether the daemon runs the build's architecture natively; an emulated build is said so (it
/// is slower: its timeouts scale), one that cannot run at all is an error saying how to enable it.
async fn check_emulation(
    engine: &Engine,
    settings: &Settings,
    log: &Log,
) -> anyhow::Result<emulation::Emulation> {
    let daemon = engine.daemon_architecture().await.unwrap_or_default();
    let emulation = emulation::check(&settings.arch, &daemon, engine.is_local())?;
    if emulation == emulation::Emulation::Emulated {
        log.line(&format!(
            "{} build on this {daemon} Docker machine: emulated by QEMU, several times slower; timeouts ×{}",
            settings.arch,
            emulation.slowdown()
        ));
    }
    Ok(emulation)
}

/// The cell's lock, checked, when the project keeps locks: it must be this cell's, made from
/// today's requirements.in, and sent to the build with the source.
fn cell_lock(
    settings: &Settings,
    runtime: &'static Runtime,
    source: &Source,
) -> anyhow::Result<Option<String>> {
    let Some(locks) = &settings.locks else {
        return Ok(None);
    };
    let cell = Cell {
        runtime,
        arch: settings.arch.clone(),
    };
    let lock = locks.checked(&cell)?;
    if !source.files.iter().any(|f| f.as_str() == lock) {
        bail!("{lock} is not part of the source the build gets (is it tracked by git? `git add {lock}`)");
    }
    Ok(Some(lock))
}

/// An image that is not Lambda's OS, with a newer glibc than the runtime's, lets pip and uv choose
/// wheels Lambda cannot load: say so before the build (verification will catch them after).
fn warn_newer_glibc(settings: &Settings, image: &image::ImageFacts, runtime: &Runtime, log: &Log) {
    let Some(glibc) = image.glibc.filter(|g| *g > runtime.glibc) else {
        return;
    };
    // The buildspec asks the installer for the runtime's platform (see cell_variables).
    if settings.buildspec_text.contains("$LAYER_PYTHON_PLATFORM")
        || settings.buildspec_text.contains("${LAYER_PYTHON_PLATFORM")
    {
        return;
    }
    log.warning(&format!(
        "the image {} has glibc {}.{}, newer than {}'s ({}, glibc {}.{}): pip and uv may install wheels Lambda cannot load; build in {} or ask the installer for manylinux2014 wheels (pip --platform manylinux2014_{}, uv --python-platform {}-manylinux2014)",
        settings.image,
        glibc.0,
        glibc.1,
        runtime.id,
        runtime.os,
        runtime.glibc.0,
        runtime.glibc.1,
        runtime.build_image_for(&settings.arch),
        if settings.arch == "arm64" { "aarch64" } else { "x86_64" },
        if settings.arch == "arm64" { "aarch64" } else { "x86_64" },
    ));
}

/// Which files go into the container: with `--tracked-only` (the default in CI) only what git
/// tracks; else untracked files that git does not ignore too.
fn source_files(flags: &BuildLayer) -> source::Files {
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    match flags.tracked_only || (ci && !flags.include_untracked) {
        true => source::Files::Tracked,
        false => source::Files::TrackedAndUntracked,
    }
}

/// Untracked files go into the build too (as `git add` would take them): name them, since a fresh
/// `.env` or key file is easy to miss.
fn warn_untracked(source: &Source, log: &Log) {
    const SHOWN: usize = 10;
    if source.untracked.is_empty() {
        return;
    }
    let mut names: Vec<&str> = source
        .untracked
        .iter()
        .take(SHOWN)
        .map(String::as_str)
        .collect();
    if source.untracked.len() > SHOWN {
        names.push("…");
    }
    log.warning(&format!(
        "{} untracked file(s) go into the build: {} (--tracked-only sends only what git tracks)",
        source.untracked.len(),
        names.join(", ")
    ));
}

/// After a signal: the work future (and its containers' guards) has been dropped; remove the
/// containers explicitly too, since the process exits right after, and the zips that wait for a
/// manifest that will not come.
async fn stop(plan: &Plan, engine: &Engine, log: &Log, code: u8) {
    log.line(&format!(
        "interrupted: removing the build container (exit {code})"
    ));
    if let Err(e) = engine.remove_session_containers().await {
        log.warning(&e.to_string());
    }
    package::remove_pending(plan);
}

/// The executor runs the phases while the import test's container starts beside it; then the
/// layer is packaged, and the executor's clean-up awaited.
async fn execute_and_package(
    plan: &Plan,
    engine: &Engine,
    log: &Log,
) -> anyhow::Result<(Outcome, Option<Packaged>)> {
    let staging = Staging::create(&plan.out_dir)?;
    let primary = staging.primary();
    let (started_tx, started) = tokio::sync::oneshot::channel();
    // Started once the build container is up (both at once delays the build); never if the
    // build does not get that far.
    let import_container = async {
        let layer_expected = plan.buildspec.artifacts.is_some();
        match (plan.options.import_test && layer_expected, started.await) {
            (true, Ok(())) => LayerContainer::mount(engine, &plan.image, &primary).await,
            _ => None,
        }
    };
    let executor = DockerExecutor::new(engine, log);
    let (ready, outcome) = tokio::join!(
        import_container,
        executor.execute(plan, staging, started_tx)
    );
    let mut outcome = outcome?;
    let import_test = match plan.options.import_test {
        true => ImportTest::Run {
            engine,
            image: &plan.image,
            ready,
            slowdown: plan.options.slowdown,
        },
        false => ImportTest::Skip,
    };
    let packaged = match &outcome.artifacts {
        Some(artifacts) => package::package(plan, artifacts, import_test, log).await,
        None => Ok(None),
    };
    if let Some(warning) = outcome.finish_cleanup().await {
        log.warning(&warning);
    }
    // A layer that cannot be packaged (over a limit, a hostile link) fails the build.
    let packaged = packaged.unwrap_or_else(|e| {
        outcome.failure = Some(format!("packaging the layer: {e:#}"));
        None
    });
    Ok((outcome, packaged))
}

fn options(flags: &BuildLayer, settings: &Settings, emulation: emulation::Emulation) -> Options {
    let minutes = flags.timeout_minutes.unwrap_or(settings.timeout_minutes);
    Options {
        cache: !flags.no_cache,
        import_test: !flags.no_import_test,
        scratch_on_disk: flags.scratch_on_disk,
        timeout: Duration::from_secs(60 * minutes) * emulation.slowdown(),
        slowdown: emulation.slowdown(),
        json_unmasked_exports: flags.json_unmasked_exports,
    }
}

/// The runtime the build targets: the one settings chose, which the image's Python must be, or
/// else the image's Python, or else the default (with a warning).
fn target_runtime(
    settings: &Settings,
    image: &image::ImageFacts,
    log: &Log,
) -> anyhow::Result<&'static Runtime> {
    let image_runtime = image
        .python
        .and_then(|(major, minor)| Runtime::for_python_version(&format!("{major}.{minor}")));
    match (settings.runtime.runtime, image.python) {
        (Some(chosen), Some((major, minor))) if chosen.python != (major, minor) => {
            let asked = match &settings.runtime.requested {
                Some(version) => format!("; runtime-versions asks for python {version}"),
                None => String::new(),
            };
            bail!(
                "the build targets {} ({}{asked}) but the image {} has Python {major}.{minor}: SAM build images cannot switch runtimes (CodeBuild's curated images would install it); use --image {} or --runtime python{major}.{minor}",
                chosen.id,
                settings.runtime.from,
                settings.image,
                chosen.build_image_for(&settings.arch),
            )
        }
        (Some(chosen), _) => Ok(chosen),
        (None, _) if image_runtime.is_some() => {
            let runtime = image_runtime.unwrap_or_else(crate::layer::default_runtime);
            log.line(&format!("target runtime: {} (the image's Python; --runtime or the template's CompatibleRuntimes name it explicitly)", runtime.id));
            Ok(runtime)
        }
        (None, _) => {
            let runtime = crate::layer::default_runtime();
            log.warning(&format!("no runtime given (--runtime, the template's CompatibleRuntimes, the buildspec's runtime-versions) and the image has no Lambda Python: building for {}", runtime.id));
            Ok(runtime)
        }
    }
}

/// The buildspec's variables, then the stores' (fetched with --resolve-secrets), the env file and
/// --env; and which values are secrets.
async fn user_input(flags: &BuildLayer, settings: &Settings) -> anyhow::Result<UserInput> {
    let env_file = match &flags.env_file {
        Some(path) => variables::read_env_file(path)?,
        None => Vec::new(),
    };
    let mut user = UserVariables {
        buildspec: &settings.buildspec,
        env_file,
        cli: flags.env.clone(),
        stores: Vec::new(),
    };
    let missing = user.unresolved_secrets();
    if flags.remote {
        // CodeBuild resolves the buildspec's secrets itself; a value given here would go to
        // StartBuild in plain text (and win over CodeBuild's own).
        let declared = user.secret_names();
        if let Some(name) = user.provided_names().iter().find(|n| declared.contains(n)) {
            bail!("{name} is a secret of the buildspec (parameter-store / secrets-manager): with --remote CodeBuild fetches it itself, and a value given here would be sent to StartBuild in plain text: drop it from --env/--env-file");
        }
    } else if !missing.is_empty() && flags.resolve_secrets {
        let mut wanted = settings.buildspec.env.clone();
        wanted
            .parameter_store
            .retain(|(name, _)| missing.contains(&name.value));
        wanted
            .secrets_manager
            .retain(|(name, _)| missing.contains(&name.value));
        user.stores = secrets::resolve(&wanted).await?;
    } else if !missing.is_empty() {
        bail!(
            "the buildspec reads {} from Parameter Store / Secrets Manager: pass --resolve-secrets to fetch them with your AWS credentials, or each value with --env NAME=value or --env-file FILE",
            missing.join(", ")
        );
    }
    Ok(UserInput {
        variables: user.merged(),
        provided: user.provided_names(),
        secrets: user.secret_values(),
    })
}

/// One build of a layer (`stem`: its files' name, one per cell) at a time: a second one fails at
/// once instead of racing on the zip; the cells of a matrix build side by side.
pub fn lock_out_dir(out_dir: &Path, stem: &str) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create the out-dir {}", out_dir.display()))?;
    let path = out_dir.join(format!(".lock-{stem}"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("the out-dir {} is not writable", out_dir.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "another build of this layer is running (lock: {})",
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Resolves with the shell's exit code for the first SIGINT (130) or SIGTERM (143).
pub(crate) async fn interrupted() -> u8 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return wait_ctrl_c().await,
        };
        tokio::select! {
            code = wait_ctrl_c() => code,
            _ = term.recv() => 143,
        }
    }
    #[cfg(not(unix))]
    {
        wait_ctrl_c().await
    }
}

async fn wait_ctrl_c() -> u8 {
    match tokio::signal::ctrl_c().await {
        Ok(()) => 130,
        // No signal handling available: never resolve, let the build finish.
        Err(_) => std::future::pending().await,
    }
}
