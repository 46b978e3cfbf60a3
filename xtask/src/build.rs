//! `cargo xtask build-layer`: runs `buildspec.yml` in the build image through the Docker Engine
//! API with CodeBuild's semantics, then turns the artifact into a deterministic layer zip plus the
//! manifest `deploy` reads.
//!
//! parse + lint → settings → source → (no-op check) → container → driver → artifact → zip.

mod cache;
mod container;
mod key;
mod log;
mod mounts;
mod outputs;
mod run;
mod secrets;
mod settings;
mod source;
mod staging;
pub mod summary;
mod variables;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

pub use settings::Settings;

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
    /// The layer template [default: template.yaml in the source directory].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Build image [default: public.ecr.aws/sam/build-<runtime>:latest-<arch>].
    #[arg(long, env = "LAYER_BUILD_IMAGE")]
    pub image: Option<String>,
    /// Target runtime, e.g. python3.12 [default: the template's first CompatibleRuntimes entry].
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
}

impl BuildLayer {
    /// The build, for callers already inside a tokio runtime (deploy --build). With `json` set the
    /// log goes to stderr and nothing is printed on stdout.
    pub async fn build(self) -> anyhow::Result<summary::Summary> {
        run::build(self).await
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Runtime::new()?;
        let json = self.json;
        let outcome = runtime.block_on(run::build(self));
        // Containers are removed by now (explicitly or by their guards); exit codes follow the
        // shell's conventions for signals.
        match outcome {
            Ok(summary) => {
                if json {
                    let mut out = std::io::stdout();
                    writeln!(out, "{}", summary.to_json())?;
                }
                Ok(ExitCode::from(summary.exit_code()))
            }
            Err(e) => Err(e),
        }
    }
}
