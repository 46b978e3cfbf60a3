//! The CodeBuild executor (`build-layer --remote`): the same build, run by the CodeBuild project
//! instead of the local Docker daemon. It uploads the exact source set a local build sends (a
//! zip, content-addressed in the artifact bucket), starts the build with the buildspec, image and
//! variables as overrides, follows its CloudWatch log and phases until it completes (Ctrl-C stops
//! it), and stages the artifact CodeBuild uploaded: `package` takes it from there, as for a local
//! build.

mod source_zip;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_codebuild::types::{
    ArtifactNamespace, ArtifactPackaging, ArtifactsType, Build, EnvironmentType,
    EnvironmentVariable, EnvironmentVariableType, ProjectArtifacts, SourceType, StatusType,
};

use super::execute::{Artifacts, Executor, Outcome, PhaseResult};
use super::log::Log;
use super::prepare::Plan;
use super::staging::Staging;
use crate::aws::{self, Failure};
use crate::buildspec::PhaseName;
use crate::manifest::RemoteBuild;

/// Where a remote build runs: the CodeBuild project and the bucket its sources and artifacts go
/// through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTarget {
    pub project: String,
    pub bucket: String,
    pub profile: Option<String>,
    pub region: Option<String>,
}

/// How long a build may wait in CodeBuild's queue before the tool gives up on it.
const MAX_QUEUED: Duration = Duration::from_secs(30 * 60);
/// The most a downloaded artifact zip may hold (Lambda's unzipped limit, twice).
const MAX_ARTIFACT_BYTES: u64 = 2 * crate::layer::MAX_UNZIPPED_BYTES;

/// The clients a remote build uses.
pub struct Clients {
    codebuild: aws_sdk_codebuild::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    s3: aws_sdk_s3::Client,
}

impl Clients {
    pub async fn new(target: &RemoteTarget) -> anyhow::Result<Clients> {
        let config = aws::sdk_config(target.profile.as_deref(), target.region.as_deref()).await;
        aws::require_region_and_credentials(&config).await?;
        Ok(Clients {
            codebuild: aws_sdk_codebuild::Client::new(&config),
            logs: aws_sdk_cloudwatchlogs::Client::new(&config),
            s3: aws::s3_client(&config),
        })
    }
}

/// Runs a plan's build in CodeBuild.
pub struct CodeBuildExecutor<'a> {
    pub clients: &'a Clients,
    pub target: &'a RemoteTarget,
    pub log: &'a Log,
    /// The id of the build once started, for [`stop`] after a signal.
    pub running: Arc<Mutex<Option<String>>>,
}

impl Executor for CodeBuildExecutor<'_> {
    async fn execute(
        &self,
        plan: &Plan,
        staging: Staging,
        started: tokio::sync::oneshot::Sender<()>,
    ) -> anyhow::Result<Outcome> {
        let source_key = self.upload_source(plan).await?;
        let artifact_key = format!("{}/builds/{}.zip", key_prefix(plan), uuid::Uuid::new_v4());
        let build = self.start(plan, &source_key, &artifact_key).await?;
        let id = build.id().unwrap_or_default().to_string();
        if let Ok(mut running) = self.running.lock() {
            *running = Some(id.clone());
        }
        let _ = started.send(());
        self.log.line(&format!(
            "started {} in the CodeBuild project {}",
            build.arn().unwrap_or(&id),
            self.target.project
        ));
        let build = self.follow(&id, plan.options.timeout).await?;
        if let Ok(mut running) = self.running.lock() {
            *running = None;
        }
        self.outcome(plan, &build, &artifact_key, staging).await
    }
}

impl CodeBuildExecutor<'_> {
    /// The source set as a zip at `<LayerName>/remote/sources/<sha256>.zip`, uploaded unless an
    /// object with that SHA-256 checksum is already there.
    async fn upload_source(&self, plan: &Plan) -> anyhow::Result<String> {
        let zip = source_zip::from_tar(&plan.source.tar)?;
        let key = format!("{}/sources/{}.zip", key_prefix(plan), zip.sha256_hex);
        let bucket = &self.target.bucket;
        let head = self
            .clients
            .s3
            .head_object()
            .bucket(bucket)
            .key(&key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await;
        match head {
            Ok(head) if head.checksum_sha256() == Some(zip.sha256_base64.as_str()) => {
                self.log
                    .line(&format!("source s3://{bucket}/{key}: already there"));
                return Ok(key);
            }
            Ok(_) => {}
            Err(e) => match aws::classify(&e) {
                Failure::NotFound => {}
                failure => {
                    let url = format!("s3://{bucket}/{key}");
                    return Err(aws::explain_failure(
                        &failure,
                        "s3:GetObject (HeadObject)",
                        &url,
                    ));
                }
            },
        }
        let size = zip.bytes.len();
        self.clients
            .s3
            .put_object()
            .bucket(bucket)
            .key(&key)
            .checksum_sha256(&zip.sha256_base64)
            .body(zip.bytes.into())
            .send()
            .await
            .map_err(|e| aws::explain(&e, "s3:PutObject", &format!("s3://{bucket}/{key}")))?;
        self.log.line(&format!(
            "source s3://{bucket}/{key}: uploaded ({size} bytes)"
        ));
        Ok(key)
    }

    /// StartBuild with the plan as overrides: the buildspec's text, the image, the variables
    /// given outside the buildspec, the timeout, the environment type of the architecture, and
    /// an artifact zip at `artifact_key` in the bucket.
    async fn start(
        &self,
        plan: &Plan,
        source_key: &str,
        artifact_key: &str,
    ) -> anyhow::Result<Build> {
        let (path, name) = artifact_key.rsplit_once('/').unwrap_or(("", artifact_key));
        let artifacts = ProjectArtifacts::builder()
            .r#type(ArtifactsType::S3)
            .location(&self.target.bucket)
            .path(path)
            .name(name)
            .packaging(ArtifactPackaging::Zip)
            .namespace_type(ArtifactNamespace::None)
            .build()
            .context("the artifacts override")?;
        let environment_type = match plan.arch.as_str() {
            "arm64" => EnvironmentType::ArmContainer,
            _ => EnvironmentType::LinuxContainer,
        };
        let minutes = (plan.options.timeout.as_secs() / 60).clamp(5, 2160);
        let started = self
            .clients
            .codebuild
            .start_build()
            .project_name(&self.target.project)
            .source_type_override(SourceType::S3)
            .source_location_override(format!("{}/{source_key}", self.target.bucket))
            .buildspec_override(&plan.buildspec_text)
            .image_override(&plan.image)
            .environment_type_override(environment_type)
            .set_environment_variables_override(Some(variables(plan)?))
            .artifacts_override(artifacts)
            .timeout_in_minutes_override(minutes as i32)
            .send()
            .await
            .map_err(|e| {
                let project = &self.target.project;
                aws::explain(
                    &e,
                    "codebuild:StartBuild",
                    &format!("the CodeBuild project {project}"),
                )
            })?;
        started
            .build_value
            .ok_or_else(|| anyhow::anyhow!("StartBuild returned no build"))
    }

    /// Polls the build (with backoff) and prints its log as it arrives, until it completes.
    async fn follow(&self, id: &str, timeout: Duration) -> anyhow::Result<Build> {
        let started = Instant::now();
        let mut log = LogCursor::default();
        let mut delay = Duration::from_millis(500);
        loop {
            let build = self.describe(id).await?;
            if let Some(logs) = build.logs() {
                log.drain(&self.clients.logs, logs, self.log).await;
            }
            if build.build_complete() {
                return Ok(build);
            }
            let queued = matches!(build.current_phase(), Some("SUBMITTED" | "QUEUED"));
            if queued && started.elapsed() > MAX_QUEUED {
                stop(self.clients, id).await;
                bail!("the build {id} waited in CodeBuild's queue for more than {} minutes: stopped (a concurrent-build quota, or no capacity for the compute type)", MAX_QUEUED.as_secs() / 60);
            }
            if started.elapsed() > timeout + MAX_QUEUED {
                stop(self.clients, id).await;
                bail!("the build {id} did not complete within its timeout: stopped");
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
    }

    async fn describe(&self, id: &str) -> anyhow::Result<Build> {
        let builds = self
            .clients
            .codebuild
            .batch_get_builds()
            .ids(id)
            .send()
            .await
            .map_err(|e| aws::explain(&e, "codebuild:BatchGetBuilds", id))?;
        builds
            .builds
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("CodeBuild does not know the build {id}"))
    }

    /// The phases CodeBuild reports, and the artifact it uploaded, staged.
    async fn outcome(
        &self,
        plan: &Plan,
        build: &Build,
        artifact_key: &str,
        staging: Staging,
    ) -> anyhow::Result<Outcome> {
        let phases = phases(build);
        let status = build.build_status().cloned();
        let phases_succeeded = phases.iter().all(|p| p.succeeded)
            && !matches!(
                status,
                Some(StatusType::Stopped | StatusType::TimedOut | StatusType::Fault)
            );
        let mut outcome = Outcome {
            phases,
            phases_succeeded,
            executor: "codebuild",
            exported: exported(build),
            ..Outcome::default()
        };
        match status {
            Some(StatusType::Succeeded) => {}
            Some(StatusType::Failed) if !phases_succeeded => return Ok(outcome),
            other => {
                let status = other.map_or("UNKNOWN".to_string(), |s| s.as_str().to_string());
                outcome.failure = Some(format!("the CodeBuild build ended {status}"));
                return Ok(outcome);
            }
        }
        if plan.buildspec.artifacts.is_none() {
            return Ok(outcome);
        }
        let zip = staging.path().join("artifact.zip");
        self.download(artifact_key, &zip).await?;
        let symlinks = plan
            .buildspec
            .artifacts
            .as_ref()
            .is_some_and(|a| a.primary.enable_symlinks);
        let primary = crate::artifacts::unzip(&zip, &staging.primary(), symlinks).map_err(|e| {
            anyhow::anyhow!("the artifact of {}: {e}", build.id().unwrap_or_default())
        })?;
        std::fs::remove_file(&zip).ok();
        outcome.artifacts = Some(Artifacts {
            primary,
            secondary: Vec::new(),
            staging,
            built_by: Some(RemoteBuild {
                project: self.target.project.clone(),
                build_arn: build.arn().unwrap_or_default().to_string(),
                image: build
                    .environment()
                    .map(|e| e.image().to_string())
                    .unwrap_or_default(),
            }),
        });
        Ok(outcome)
    }

    /// The artifact zip, streamed to `to` within [`MAX_ARTIFACT_BYTES`].
    async fn download(&self, key: &str, to: &Path) -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let bucket = &self.target.bucket;
        let url = format!("s3://{bucket}/{key}");
        let object = self
            .clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| aws::explain(&e, "s3:GetObject", &url))?;
        let mut body = object.body;
        let mut file = tokio::fs::File::create(to).await?;
        let mut written = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .with_context(|| format!("reading {url}"))?
        {
            written += chunk.len() as u64;
            if written > MAX_ARTIFACT_BYTES {
                bail!("the artifact {url} is over {MAX_ARTIFACT_BYTES} bytes");
            }
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        Ok(())
    }
}

/// Stops a started build (after Ctrl-C, or when it waited too long); a failure is only said.
pub async fn stop(clients: &Clients, id: &str) {
    if let Err(e) = clients.codebuild.stop_build().id(id).send().await {
        eprintln!(
            "warning: StopBuild {id}: {}",
            aws::explain(&e, "codebuild:StopBuild", id)
        );
    }
}

/// `<LayerName>/remote`: where a layer's remote sources and artifacts live in the bucket.
fn key_prefix(plan: &Plan) -> String {
    format!("{}/remote", plan.layer.file_stem())
}

/// The variables given outside the buildspec (cell, `--env`, `--env-file`), as PLAINTEXT
/// overrides; CodeBuild sets its own, and resolves the buildspec's `parameter-store` and
/// `secrets-manager` itself.
fn variables(plan: &Plan) -> anyhow::Result<Vec<EnvironmentVariable>> {
    plan.provided_variables()
        .into_iter()
        .map(|(name, value)| {
            EnvironmentVariable::builder()
                .name(name)
                .value(value)
                .r#type(EnvironmentVariableType::Plaintext)
                .build()
                .context("an environment variable override")
        })
        .collect()
}

/// The buildspec's phases, as CodeBuild reports them.
fn phases(build: &Build) -> Vec<PhaseResult> {
    build
        .phases()
        .iter()
        .filter_map(|phase| {
            let name = match phase.phase_type()?.as_str() {
                "INSTALL" => PhaseName::Install,
                "PRE_BUILD" => PhaseName::PreBuild,
                "BUILD" => PhaseName::Build,
                "POST_BUILD" => PhaseName::PostBuild,
                _ => return None,
            };
            let seconds = phase.duration_in_seconds().unwrap_or(0).max(0) as u64;
            Some(PhaseResult {
                phase: name,
                succeeded: phase.phase_status() == Some(&StatusType::Succeeded),
                duration_ms: seconds * 1000,
            })
        })
        .collect()
}

fn exported(build: &Build) -> Vec<(String, Option<String>)> {
    build
        .exported_environment_variables()
        .iter()
        .filter_map(|v| Some((v.name()?.to_string(), v.value().map(str::to_string))))
        .collect()
}

/// Where the build's log has been read up to.
#[derive(Default)]
struct LogCursor {
    token: Option<String>,
}

impl LogCursor {
    /// Prints the log events that arrived since the last call. A stream that does not exist yet
    /// (the build has not started) or cannot be read is tried again at the next poll.
    async fn drain(
        &mut self,
        logs: &aws_sdk_cloudwatchlogs::Client,
        config: &aws_sdk_codebuild::types::LogsLocation,
        log: &Log,
    ) {
        let (Some(group), Some(stream)) = (config.group_name(), config.stream_name()) else {
            return;
        };
        loop {
            let page = logs
                .get_log_events()
                .log_group_name(group)
                .log_stream_name(stream)
                .start_from_head(true)
                .set_next_token(self.token.clone())
                .send()
                .await;
            let Ok(page) = page else {
                return;
            };
            for event in page.events() {
                for line in event.message().unwrap_or_default().lines() {
                    log.line(line);
                }
            }
            let next = page.next_forward_token().map(str::to_string);
            if next.is_none() || next == self.token {
                return;
            }
            self.token = next;
        }
    }
}
