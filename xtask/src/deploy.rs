//! `cargo xtask deploy`: publishes the layer build-layer made, idempotently. Reads the manifest,
//! checks the zip still matches it and passed verification, compares its CodeSha256 with the
//! layer's latest version, and only when they differ (or `--force`) uploads (inline, or S3 under a
//! content-addressed key) and calls PublishLayerVersion. Never prompts.
//!
//! flags → settings (template, samconfig.toml) → manifest + zip check → latest version → S3 →
//! publish → verify CodeSha256.

mod lambda;
mod s3;
mod settings;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

pub use settings::{SamConfig, Settings};

use crate::manifest::Manifest;
use crate::progress::Progress;

/// The most Lambda accepts as an inline (ZipFile) upload: 50 MiB.
pub const INLINE_LIMIT: u64 = crate::layer::MAX_INLINE_ZIP_BYTES;

/// Publish the layer build-layer made (`<out-dir>/<LayerName>.zip` and its manifest) as a new
/// Lambda layer version, only when its content changed.
#[derive(Debug, Clone, clap::Args)]
pub struct Deploy {
    /// Where build-layer wrote the zip and manifest [default: target/layer in the workspace].
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// The layer's name or ARN [default: the template's LayerName].
    #[arg(long)]
    pub layer_name: Option<String>,
    /// The layer template [default: template.yaml in the workspace].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// SAM's config with deploy defaults [default: samconfig.toml beside the template].
    #[arg(long)]
    pub samconfig: Option<PathBuf>,
    /// The layer version's description, at most 256 characters [default: the template's].
    #[arg(long)]
    pub description: Option<String>,
    /// The layer's license [default: the template's LicenseInfo].
    #[arg(long)]
    pub license_info: Option<String>,
    /// Comma-separated runtimes [default: the template's, else the manifest's].
    #[arg(long, value_delimiter = ',')]
    pub compatible_runtimes: Vec<String>,
    /// Comma-separated architectures [default: the template's, else the build's].
    #[arg(long, value_delimiter = ',', value_parser = ["x86_64", "arm64"])]
    pub compatible_architectures: Vec<String>,
    /// S3 bucket for the zip; required above 50 MB [default: s3_bucket in samconfig.toml].
    #[arg(long)]
    pub bucket: Option<String>,
    /// Key prefix in the bucket: the zip goes to <prefix>/<LayerName>/<sha256>.zip
    /// [default: s3_prefix in samconfig.toml].
    #[arg(long)]
    pub prefix: Option<String>,
    /// AWS profile [default: profile in samconfig.toml, else the SDK's default chain].
    #[arg(long)]
    pub profile: Option<String>,
    /// AWS region [default: region in samconfig.toml, else the SDK's default chain].
    #[arg(long)]
    pub region: Option<String>,
    /// Publish a new version even when the latest one has the same content.
    #[arg(long)]
    pub force: bool,
    /// Print what would be uploaded and published; only read from AWS.
    #[arg(long)]
    pub dry_run: bool,
    /// Print one JSON object on stdout (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Accepted for compatibility: deploy never asks for confirmation.
    #[arg(long)]
    pub yes: bool,
    /// Run build-layer first (a no-op when nothing changed), with the template's directory as the
    /// source and the image from LAYER_BUILD_IMAGE or the default.
    #[arg(long)]
    pub build: bool,
    /// Publish each cell built by `build-layer --matrix`: the template's CompatibleRuntimes ×
    /// CompatibleArchitectures, one layer per cell named <LayerName>-<runtime>-<arch> with dots
    /// as dashes (python-deps-python3-13-arm64), claiming that runtime and architecture only.
    #[arg(long, conflicts_with_all = ["compatible_runtimes", "compatible_architectures"])]
    pub matrix: bool,
    /// Publish these cells (like --matrix): python3.13-arm64,python3.9-x86_64,…
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["compatible_runtimes", "compatible_architectures", "matrix"])]
    pub cells: Vec<String>,
    /// Publish the multi-runtime layers of `build-layer --multi-runtime`: for each of the
    /// template's architectures, <LayerName>-<arch>.zip as the layer <LayerName>-<arch>, with
    /// every runtime it holds.
    #[arg(long, conflicts_with_all = ["compatible_runtimes", "compatible_architectures", "matrix", "cells"])]
    pub multi_runtime: bool,
    /// The cell this deploy publishes (set by --matrix and --cells).
    #[arg(skip)]
    pub cell: Option<String>,
    /// The architecture whose multi-runtime layer this deploy publishes (set by --multi-runtime).
    #[arg(skip)]
    pub combined_arch: Option<String>,
}

/// What a deploy did, or with `--dry-run` would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Published,
    UpToDate,
    DryRun,
}

/// How the zip reaches Lambda.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upload {
    /// `inline` (ZipFile in the request) or `s3`.
    pub method: &'static str,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// The S3 object already held these bytes: nothing was (or would be) uploaded.
    pub already_in_s3: bool,
    /// Number of multipart parts; 1 for a single PutObject, 0 when nothing was uploaded to S3.
    pub parts: u32,
}

/// The result of a deploy; `--json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub status: Status,
    pub layer_name: String,
    pub region: String,
    /// The published version, or the latest one when up to date.
    pub layer_version_arn: Option<String>,
    pub version: Option<i64>,
    pub code_sha256: String,
    pub code_size: u64,
    pub bytes_uploaded: u64,
    pub upload: Option<Upload>,
    /// The latest version before this deploy.
    pub previous_version: Option<i64>,
    pub previous_code_sha256: Option<String>,
    pub description: Option<String>,
    pub license_info: Option<String>,
    pub compatible_runtimes: Vec<String>,
    pub compatible_architectures: Vec<String>,
    pub manifest: PathBuf,
    pub zip: PathBuf,
}

impl Deploy {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Runtime::new()?;
        if self.matrix || !self.cells.is_empty() || self.multi_runtime {
            return runtime.block_on(self.run_cells());
        }
        let json = self.json;
        let outcome = match runtime.block_on(self.execute()) {
            Ok(outcome) => outcome,
            Err(e) if e.is::<crate::util::Interrupted>() => {
                eprintln!("interrupted: the multipart upload was aborted");
                return Ok(ExitCode::from(130));
            }
            Err(e) => return Err(e),
        };
        let mut out = std::io::stdout();
        if json {
            writeln!(out, "{}", serde_json::to_string(&outcome)?)?;
        } else {
            write!(out, "{}", outcome.human())?;
        }
        Ok(ExitCode::SUCCESS)
    }

    /// `--matrix` / `--cells`: each cell published on its own, then one report; the exit status
    /// is 1 when a cell failed.
    async fn run_cells(self) -> anyhow::Result<ExitCode> {
        let results = match self.execute_cells().await {
            Err(e) if e.is::<crate::util::Interrupted>() => {
                eprintln!("interrupted: nothing was deployed");
                return Ok(ExitCode::from(130));
            }
            results => results?,
        };
        if results.iter().any(|(_, r)| {
            r.as_ref()
                .is_err_and(|e| e.is::<crate::util::Interrupted>())
        }) {
            eprintln!("interrupted: the multipart upload was aborted");
            return Ok(ExitCode::from(130));
        }
        let failed = results.iter().any(|(_, r)| r.is_err());
        let mut out = std::io::stdout();
        if self.json {
            let cells: Vec<serde_json::Value> = results
                .iter()
                .map(|(cell, result)| match result {
                    Ok(outcome) => {
                        let mut value = serde_json::to_value(outcome).unwrap_or_default();
                        value["cell"] = serde_json::json!(cell);
                        value
                    }
                    Err(e) => serde_json::json!({"cell": cell, "error": format!("{e:#}")}),
                })
                .collect();
            writeln!(out, "{}", serde_json::json!({ "cells": cells }))?;
        } else {
            for (cell, result) in &results {
                match result {
                    Ok(outcome) => write!(out, "{cell}: {}", outcome.human())?,
                    Err(e) => writeln!(out, "{cell}: error: {e:#}")?,
                }
            }
        }
        Ok(ExitCode::from(u8::from(failed)))
    }

    /// Each cell of `--matrix` / `--cells` published, one after the other (each is idempotent):
    /// a cell that fails does not stop the others; an interruption stops them all.
    pub async fn execute_cells(&self) -> anyhow::Result<Vec<(String, anyhow::Result<Outcome>)>> {
        let mut units = self.units()?;
        if self.build && self.multi_runtime {
            // The multi-runtime layers need every cell first: one matrix build for them all.
            if let Err(e) = crate::build::build_multi_runtime(self.build_flags()).await {
                if e.is::<crate::util::Interrupted>() {
                    return Err(e);
                }
                let failed =
                    |unit: String| (unit, Err(anyhow::anyhow!("{e:#}: nothing was deployed")));
                return Ok(units.into_iter().map(|(unit, _)| failed(unit)).collect());
            }
            units.iter_mut().for_each(|(_, flags)| flags.build = false);
        }
        let mut results = Vec::new();
        for (unit, flags) in units {
            let outcome = flags.execute().await;
            let interrupted = outcome
                .as_ref()
                .is_err_and(|e| e.is::<crate::util::Interrupted>());
            results.push((unit, outcome));
            if interrupted {
                break;
            }
        }
        Ok(results)
    }

    /// What `--matrix`, `--cells` or `--multi-runtime` publishes: each cell, or each
    /// architecture's multi-runtime layer, with the flags that publish it alone.
    fn units(&self) -> anyhow::Result<Vec<(String, Deploy)>> {
        let root = crate::util::project_root();
        let single = Deploy {
            matrix: false,
            cells: Vec::new(),
            multi_runtime: false,
            ..self.clone()
        };
        if self.multi_runtime {
            let template = crate::layer::read_template(self.template.as_deref(), &root)?;
            let wanted = crate::layer::Wanted {
                layer_name: self.layer_name.clone(),
                ..crate::layer::Wanted::default()
            };
            let target = crate::layer::LayerTarget::resolve(&wanted, template.as_ref())?;
            return Ok(target
                .architectures
                .iter()
                .map(|arch| {
                    let flags = Deploy {
                        combined_arch: Some(arch.clone()),
                        ..single.clone()
                    };
                    (format!("multi-runtime {arch}"), flags)
                })
                .collect());
        }
        let cells = crate::layer::wanted_cells(
            &self.cells,
            self.template.as_deref(),
            &root,
            self.layer_name.as_deref(),
        )?;
        Ok(cells
            .into_iter()
            .map(|cell| {
                let flags = Deploy {
                    cell: Some(cell.id()),
                    ..single.clone()
                };
                (cell.id(), flags)
            })
            .collect())
    }

    /// `--build`: the build's log goes to stderr, so stdout stays the deploy's.
    async fn build_first(&self) -> anyhow::Result<()> {
        let flags = match &self.cell {
            Some(cell) => crate::build::BuildLayer {
                runtime: Some(crate::layer::Cell::parse(cell)?.runtime.id.to_string()),
                arch: Some(crate::layer::Cell::parse(cell)?.arch),
                cell: Some(cell.clone()),
                ..self.build_flags()
            },
            None => self.build_flags(),
        };
        let summary = crate::build::build(flags).await?;
        if !summary.succeeded {
            anyhow::bail!("build-layer failed: nothing was deployed");
        }
        Ok(())
    }

    /// The flags of `build-layer` for `--build`: the template's directory as the source, the
    /// same out-dir, the log on stderr.
    fn build_flags(&self) -> crate::build::BuildLayer {
        let source = self.template.as_ref().and_then(|t| t.parent()).map(|p| {
            match p.as_os_str().is_empty() {
                // `--template template.yaml`: the current directory's project.
                true => PathBuf::from("."),
                false => p.to_path_buf(),
            }
        });
        crate::build::BuildLayer {
            source,
            template: self.template.clone(),
            out_dir: self.out_dir.clone(),
            image: std::env::var("LAYER_BUILD_IMAGE")
                .ok()
                .filter(|i| !i.is_empty()),
            json: true,
            ..crate::build::BuildLayer::default()
        }
    }

    /// The whole deploy; prints nothing on stdout (progress lines go to stderr).
    pub async fn execute(&self) -> anyhow::Result<Outcome> {
        if self.build {
            self.build_first().await?;
        }
        let settings = Settings::resolve(self)?;
        let (manifest_path, manifest) =
            read_manifest(&settings.manifest_candidates, &settings.build_command)?;
        // No build may replace the zip while it is published (build-layer takes the same lock).
        let out_dir = manifest_path.parent().unwrap_or(std::path::Path::new("."));
        let stem = manifest_path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let _lock = crate::build::lock_out_dir(out_dir, &stem)?;
        let zip = manifest.check_zip(&manifest_path)?;
        let (compatible_runtimes, compatible_architectures) = claims(&settings, &manifest)?;
        let key = settings.s3_key(&manifest.sha256);
        let bucket = upload_bucket(&settings, &manifest)?;

        let config =
            crate::aws::sdk_config(settings.profile.as_deref(), settings.region.as_deref()).await;
        let region = crate::aws::require_region_and_credentials(&config).await?;
        let lambda_client = crate::aws::lambda_client(&config);
        let progress = Progress::new(self.json);

        let latest = lambda::latest(&lambda_client, &settings.layer_name).await?;
        let mut outcome = Outcome::before_publishing(
            &settings,
            &manifest,
            region,
            latest.as_ref(),
            (compatible_runtimes, compatible_architectures),
            (manifest_path.clone(), zip.clone()),
        );
        if let Some(latest) =
            latest.filter(|l| l.code_sha256.as_deref() == Some(&manifest.code_sha256))
        {
            if !self.force {
                outcome.status = Status::UpToDate;
                outcome.layer_version_arn = Some(latest.layer_version_arn);
                outcome.version = Some(latest.version);
                return Ok(outcome);
            }
        }

        let s3_client = bucket.as_ref().map(|_| crate::aws::s3_client(&config));
        let object = bucket.as_deref().map(|bucket| s3::Object {
            bucket,
            key: &key,
            size: manifest.zipped_bytes,
            sha256_hex: &manifest.sha256,
            code_sha256: &manifest.code_sha256,
        });
        let staged = match (&s3_client, &object) {
            (Some(client), Some(object)) => Some((client, object)),
            _ => None,
        };
        let mut upload = plan_upload(staged, &zip).await?;
        if self.dry_run {
            outcome.upload = Some(upload);
            return Ok(outcome);
        }
        let (content, bytes_sent) =
            send_content(staged, &zip, &manifest, &progress, &mut upload).await?;
        outcome.bytes_uploaded = bytes_sent;
        outcome.upload = Some(upload);
        let properties = lambda::Properties {
            layer_name: &settings.layer_name,
            description: settings.description.as_deref(),
            license_info: settings.license_info.as_deref(),
            compatible_runtimes: &outcome.compatible_runtimes,
            compatible_architectures: &outcome.compatible_architectures,
        };
        let published = lambda::publish(&lambda_client, &properties, content).await?;
        check_published(&published, &manifest.code_sha256, &zip)?;
        outcome.status = Status::Published;
        outcome.layer_version_arn = Some(published.layer_version_arn);
        outcome.version = Some(published.version);
        outcome.code_size = u64::try_from(published.code_size).unwrap_or_default();
        Ok(outcome)
    }
}

impl Outcome {
    /// What a deploy knows before it sends anything: a dry run's outcome.
    fn before_publishing(
        settings: &Settings,
        manifest: &Manifest,
        region: String,
        latest: Option<&lambda::Latest>,
        (compatible_runtimes, compatible_architectures): (Vec<String>, Vec<String>),
        (manifest_path, zip): (PathBuf, PathBuf),
    ) -> Outcome {
        Outcome {
            status: Status::DryRun,
            layer_name: settings.layer_name.clone(),
            region,
            layer_version_arn: None,
            version: None,
            code_sha256: manifest.code_sha256.clone(),
            code_size: manifest.zipped_bytes,
            bytes_uploaded: 0,
            upload: None,
            previous_version: latest.map(|l| l.version),
            previous_code_sha256: latest.and_then(|l| l.code_sha256.clone()),
            description: settings.description.clone(),
            license_info: settings.license_info.clone(),
            compatible_runtimes,
            compatible_architectures,
            manifest: manifest_path,
            zip,
        }
    }
}

/// The zip on its way to Lambda, and the bytes sent: uploaded to S3 unless it is there already
/// (the parts recorded in `upload`), or read once, checked, to go inline.
async fn send_content<'a>(
    staged: Option<(&aws_sdk_s3::Client, &s3::Object<'a>)>,
    zip: &std::path::Path,
    manifest: &Manifest,
    progress: &Progress,
    upload: &mut Upload,
) -> anyhow::Result<(lambda::Content<'a>, u64)> {
    let Some((client, object)) = staged else {
        let bytes = read_verified(zip, &manifest.sha256)?;
        let sent = bytes.len() as u64;
        return Ok((lambda::Content::Inline(bytes), sent));
    };
    let mut sent = 0;
    if !upload.already_in_s3 {
        let uploaded = s3::upload(client, zip, object, progress).await?;
        sent = uploaded.bytes;
        upload.parts = uploaded.parts;
    }
    let content = lambda::Content::S3 {
        bucket: object.bucket,
        key: object.key,
    };
    Ok((content, sent))
}

/// Lambda's CodeSha256 of the published version must be the zip's: otherwise the bytes changed on
/// the way, and the version must not be used.
fn check_published(
    published: &lambda::Published,
    code_sha256: &str,
    zip: &std::path::Path,
) -> anyhow::Result<()> {
    if published.code_sha256.as_deref() == Some(code_sha256) {
        return Ok(());
    }
    anyhow::bail!(
        "CODESHA256 MISMATCH: Lambda published {} with CodeSha256 {} but the local zip's is {code_sha256}: \
         the bytes changed between {} and Lambda; do not use this version",
        published.layer_version_arn,
        published.code_sha256.as_deref().unwrap_or("(none)"),
        zip.display()
    )
}

/// The runtimes and architectures the layer version claims: the flags' or template's, else the
/// manifest's; the zip's architecture must be among them.
fn claims(settings: &Settings, manifest: &Manifest) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let runtimes = match settings.compatible_runtimes.is_empty() {
        true => manifest.compatible_runtimes.clone(),
        false => settings.compatible_runtimes.clone(),
    };
    let architectures = match settings.compatible_architectures.is_empty() {
        true => vec![manifest.architecture.clone()],
        false => settings.compatible_architectures.clone(),
    };
    if !architectures.contains(&manifest.architecture) {
        anyhow::bail!(
            "the zip was built for {} but the layer would claim {}: rebuild with \
             `cargo xtask build-layer --arch ...` or fix CompatibleArchitectures",
            manifest.architecture,
            architectures.join(", ")
        );
    }
    Ok((runtimes, architectures))
}

/// The bucket the zip goes through, if any: required over Lambda's inline limit.
fn upload_bucket(settings: &Settings, manifest: &Manifest) -> anyhow::Result<Option<String>> {
    match (&settings.bucket, manifest.zipped_bytes > INLINE_LIMIT) {
        (Some(bucket), _) => Ok(Some(bucket.clone())),
        (None, false) => Ok(None),
        (None, true) => anyhow::bail!(
            "the zip is {} bytes, over Lambda's {INLINE_LIMIT}-byte limit for direct upload: \
             pass --bucket (or set s3_bucket in samconfig.toml)",
            manifest.zipped_bytes
        ),
    }
}

/// How the zip would reach Lambda: inline, or through S3 (the bucket checked, the object
/// already there or the number of parts an upload takes).
async fn plan_upload(
    staged: Option<(&aws_sdk_s3::Client, &s3::Object<'_>)>,
    zip: &std::path::Path,
) -> anyhow::Result<Upload> {
    let Some((client, object)) = staged else {
        return Ok(Upload {
            method: "inline",
            bucket: None,
            key: None,
            already_in_s3: false,
            parts: 0,
        });
    };
    s3::check_bucket(client, object.bucket).await?;
    let already_in_s3 = s3::exists(client, object, zip).await?;
    let parts = match already_in_s3 {
        true => 0,
        false => u32::try_from(object.size.div_ceil(s3::PART_SIZE).max(1)).unwrap_or(u32::MAX),
    };
    Ok(Upload {
        method: "s3",
        bucket: Some(object.bucket.to_string()),
        key: Some(object.key.to_string()),
        already_in_s3,
        parts,
    })
}

/// The zip's bytes, read once and checked against the manifest's SHA-256: these bytes, and no
/// later read of the file, are what gets published.
fn read_verified(zip: &std::path::Path, sha256_hex: &str) -> anyhow::Result<Vec<u8>> {
    use sha2::Digest as _;
    let bytes =
        std::fs::read(zip).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", zip.display()))?;
    let actual = crate::util::hex(&sha2::Sha256::digest(&bytes));
    if actual != sha256_hex {
        anyhow::bail!(
            "{} changed since it was checked (SHA-256 {actual}, the manifest says {sha256_hex}): nothing was published; rebuild with `cargo xtask build-layer`",
            zip.display()
        );
    }
    Ok(bytes)
}

/// The first manifest that exists among `candidates`, read and checked.
fn read_manifest(candidates: &[PathBuf], build: &str) -> anyhow::Result<(PathBuf, Manifest)> {
    let Some(path) = candidates.iter().find(|p| p.exists()) else {
        let tried: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!(
            "no build manifest at {}: run `{build}` first",
            tried.join(" or ")
        );
    };
    let manifest = Manifest::read(path)?;
    if !manifest.verification.passed {
        let errors = if manifest.verification.errors.is_empty() {
            "no details recorded".to_string()
        } else {
            manifest.verification.errors.join("; ")
        };
        anyhow::bail!(
            "refusing to publish: {} records that the layer failed verification ({errors}); fix it \
             and rebuild with `cargo xtask build-layer`",
            path.display()
        );
    }
    Ok((path.clone(), manifest))
}

impl Outcome {
    /// The human report: the first line says what happened.
    pub fn human(&self) -> String {
        let mut text = String::new();
        let arn = self.layer_version_arn.as_deref().unwrap_or_default();
        match self.status {
            Status::UpToDate => {
                text.push_str(&format!("up to date: {arn}\n"));
                return text;
            }
            Status::Published => text.push_str(&format!("published {arn}\n")),
            Status::DryRun => text.push_str(&format!(
                "dry run: would publish a new version of {} in {}\n",
                self.layer_name, self.region
            )),
        }
        if let Some(upload) = &self.upload {
            let line = match (upload.method, upload.already_in_s3) {
                ("inline", _) => format!("  content: inline ZipFile, {} bytes", self.code_size),
                (_, true) => format!(
                    "  content: s3://{}/{} (already there, not uploaded)",
                    upload.bucket.as_deref().unwrap_or_default(),
                    upload.key.as_deref().unwrap_or_default()
                ),
                (_, false) => format!(
                    "  content: s3://{}/{} ({} bytes, {})",
                    upload.bucket.as_deref().unwrap_or_default(),
                    upload.key.as_deref().unwrap_or_default(),
                    self.code_size,
                    if upload.parts > 1 {
                        format!("multipart, {} parts", upload.parts)
                    } else {
                        "one PutObject".to_string()
                    }
                ),
            };
            text.push_str(&line);
            text.push('\n');
        }
        if let Some(version) = self.version {
            text.push_str(&format!("  version: {version}\n"));
        }
        text.push_str(&format!("  CodeSha256: {}\n", self.code_sha256));
        text.push_str(&format!("  CodeSize: {}\n", self.code_size));
        if self.status == Status::Published {
            text.push_str(&format!("  bytes uploaded: {}\n", self.bytes_uploaded));
        }
        match (self.previous_version, &self.previous_code_sha256) {
            (Some(v), Some(sha)) => {
                text.push_str(&format!("  previous version: {v} (CodeSha256 {sha})\n"))
            }
            (Some(v), None) => text.push_str(&format!("  previous version: {v}\n")),
            _ => text.push_str("  previous version: none\n"),
        }
        text.push_str(&format!(
            "  runtimes: {}; architectures: {}\n",
            self.compatible_runtimes.join(", "),
            self.compatible_architectures.join(", ")
        ));
        text
    }
}
