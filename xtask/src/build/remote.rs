//! The CodeBuild executor (`build-layer --remote`): the same build, run by the CodeBuild project
//! instead of the local Docker daemon. It uploads the exact source set a local build sends (a
//! zip, content-addressed in the artifact bucket), starts the build with the buildspec, image and
//! variables as overrides, follows its CloudWatch log and phases until it completes (Ctrl-C stops
//! it), and stages the artifact CodeBuild uploaded: `package` takes it from there, as for a local
//! build.

pub mod batch;
mod logs;
mod source_zip;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_codebuild::types::{
    ArtifactNamespace, ArtifactPackaging, ArtifactsType, Build, CacheType, EnvironmentType,
    EnvironmentVariable, EnvironmentVariableType, ProjectArtifacts, ProjectCache, SourceType,
    StatusType,
};

use super::execute::{Artifacts, Executor, Outcome, PhaseResult};
use super::log::Log;
use super::prepare::Plan;
use super::staging::Staging;
use crate::aws::{self, Failure};
use crate::buildspec::PhaseName;
use crate::manifest::RemoteBuild;
use logs::LogCursor;

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
        let _ = started.send(());
        self.log.line(&format!(
            "started {} in the CodeBuild project {}",
            build.arn().unwrap_or(&id),
            self.target.project
        ));
        self.follow_and_stage(plan, staging, &id, ArtifactAt::Key(artifact_key))
            .await
    }
}

/// Where a build's artifact zip is in the bucket.
pub enum ArtifactAt {
    /// The key the artifacts override named.
    Key(String),
    /// Where the build reports it put it (a batch's builds), which must be under this prefix.
    ReportedUnder(String),
}

impl CodeBuildExecutor<'_> {
    /// Follows the started build `id` to its end and stages its artifact. Whatever goes wrong
    /// on the way (the network, a bound), the build does not run on: it is stopped.
    pub async fn follow_and_stage(
        &self,
        plan: &Plan,
        staging: Staging,
        id: &str,
        artifact: ArtifactAt,
    ) -> anyhow::Result<Outcome> {
        if let Ok(mut running) = self.running.lock() {
            *running = Some(id.to_string());
        }
        let outcome = match self.follow(id, plan.options.timeout).await {
            Ok(Followed::Completed(build)) => self.outcome(plan, &build, &artifact, staging).await,
            Ok(Followed::GaveUp(reason)) => {
                stop(self.clients, id).await;
                self.log.container(&reason);
                Ok(Outcome {
                    failure: Some(reason),
                    executor: "codebuild",
                    ..Outcome::default()
                })
            }
            Err(e) => {
                stop(self.clients, id).await;
                Err(e.context(format!("following the CodeBuild build {id} (stopped)")))
            }
        };
        if let Ok(mut running) = self.running.lock() {
            *running = None;
        }
        outcome
    }
}

/// The phases and status CodeBuild reports for a completed build: a failed phase fails it as a
/// local one; STOPPED, TIMED_OUT, FAULT or a FAILED upload are failures that say where.
fn ended(build: &Build, plan: &Plan) -> Outcome {
    let phases = phases(build);
    let status = build.build_status().cloned();
    let phases_succeeded = phases.iter().all(|p| p.succeeded)
        && !matches!(
            status,
            Some(StatusType::Stopped | StatusType::TimedOut | StatusType::Fault)
        );
    let failure = match status {
        Some(StatusType::Succeeded) => None,
        Some(StatusType::Failed) if !phases_succeeded => None,
        other => {
            let status = other.map_or("UNKNOWN".to_string(), |s| s.as_str().to_string());
            let place = failed_phase(build).unwrap_or_default();
            Some(format!("the CodeBuild build ended {status}{place}"))
        }
    };
    Outcome {
        phases,
        phases_succeeded,
        failure,
        executor: "codebuild",
        exported: exported(build, plan),
        ..Outcome::default()
    }
}

/// How following a build ended.
enum Followed {
    Completed(Box<Build>),
    /// It waited in the queue, or ran, longer than allowed: stopped, a failure of the build.
    GaveUp(String),
}

/// Consecutive BatchGetBuilds failures (throttling, the network) tolerated while following.
const MAX_POLL_FAILURES: u32 = 5;

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
                // Without s3:ListBucket a missing key answers 403: PutObject tells the truth.
                Failure::NotFound | Failure::AccessDenied => {}
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
        let artifacts = self.artifacts_override(path, name, ArtifactNamespace::None)?;
        let secondary_name = |id: &str| secondary_key(name, id);
        let secondary =
            self.secondary_overrides(plan, path, secondary_name, ArtifactNamespace::None)?;
        let environment_type = match plan.arch.as_str() {
            "arm64" => EnvironmentType::ArmContainer,
            _ => EnvironmentType::LinuxContainer,
        };
        let minutes = self.timeout_minutes(plan);
        let mut request = self
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
            .set_secondary_artifacts_override(Some(secondary))
            .timeout_in_minutes_override(minutes)
            .queued_timeout_in_minutes_override((MAX_QUEUED.as_secs() / 60) as i32);
        if !plan.options.cache {
            request = request.cache_override(no_cache()?);
        }
        let project = &self.target.project;
        let started = request.send().await.map_err(|e| {
            if format!("{e:?}").contains("AccountLimitExceeded") {
                return anyhow::anyhow!("CodeBuild refused to start a build of {project}: another build of it is running or queued (its concurrent build limit), or the account's build quota is reached");
            }
            aws::explain(&e, "codebuild:StartBuild", &format!("the CodeBuild project {project}"))
        })?;
        started
            .build_value
            .ok_or_else(|| anyhow::anyhow!("StartBuild returned no build"))
    }

    /// An artifacts override: one zip `name` at `path` in the bucket (under the build's id with
    /// `namespace` BUILD_ID).
    fn artifacts_override(
        &self,
        path: &str,
        name: &str,
        namespace: ArtifactNamespace,
    ) -> anyhow::Result<ProjectArtifacts> {
        ProjectArtifacts::builder()
            .r#type(ArtifactsType::S3)
            .location(&self.target.bucket)
            .path(path)
            .name(name)
            .packaging(ArtifactPackaging::Zip)
            .namespace_type(namespace)
            .build()
            .context("the artifacts override")
    }

    /// One override per secondary artifact of the buildspec, a zip `name_of(id)` at `path`.
    fn secondary_overrides(
        &self,
        plan: &Plan,
        path: &str,
        name_of: impl Fn(&str) -> String,
        namespace: ArtifactNamespace,
    ) -> anyhow::Result<Vec<ProjectArtifacts>> {
        let Some(spec) = &plan.buildspec.artifacts else {
            return Ok(Vec::new());
        };
        spec.secondary
            .iter()
            .map(|(id, _)| {
                let mut one =
                    self.artifacts_override(path, &name_of(&id.value), namespace.clone())?;
                one.artifact_identifier = Some(id.value.clone());
                Ok(one)
            })
            .collect()
    }

    /// The plan's timeout in CodeBuild's bounds (5 to 2160 minutes), said when it had to move.
    fn timeout_minutes(&self, plan: &Plan) -> i32 {
        let asked = plan.options.timeout.as_secs() / 60;
        let minutes = asked.clamp(5, 2160);
        if minutes != asked {
            self.log.warning(&format!(
                "CodeBuild's build timeout is 5 to 2160 minutes: {minutes}, not {asked}"
            ));
        }
        minutes as i32
    }

    /// Polls the build (with backoff) and prints its log as it arrives, until it completes, or
    /// waits in the queue or runs longer than allowed.
    async fn follow(&self, id: &str, timeout: Duration) -> anyhow::Result<Followed> {
        let started = Instant::now();
        let mut log = LogCursor::default();
        let mut delay = Duration::from_millis(500);
        let mut failures = 0;
        loop {
            let build = match self.describe(id).await {
                Ok(build) => build,
                Err(_) if failures < MAX_POLL_FAILURES => {
                    failures += 1;
                    tokio::time::sleep(delay * (1 << failures)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            failures = 0;
            if let Some(logs) = build.logs() {
                log.drain(&self.clients.logs, logs, self.log).await;
            }
            if build.build_complete() {
                if let Some(logs) = build.logs() {
                    log.drain_the_rest(&self.clients.logs, logs, self.log).await;
                }
                return Ok(Followed::Completed(Box::new(build)));
            }
            let queued = matches!(build.current_phase(), Some("SUBMITTED" | "QUEUED"));
            if queued && started.elapsed() > MAX_QUEUED {
                let minutes = MAX_QUEUED.as_secs() / 60;
                return Ok(Followed::GaveUp(format!("the build waited in CodeBuild's queue for more than {minutes} minutes: stopped (a concurrent-build quota, or no capacity for the compute type)")));
            }
            if started.elapsed() > timeout + MAX_QUEUED {
                let minutes = timeout.as_secs() / 60;
                return Ok(Followed::GaveUp(format!(
                    "the build did not complete within its {minutes} minutes (TIMED_OUT): stopped"
                )));
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
        artifact: &ArtifactAt,
        staging: Staging,
    ) -> anyhow::Result<Outcome> {
        let mut outcome = ended(build, plan);
        let succeeded = build.build_status() == Some(&StatusType::Succeeded);
        let Some(spec) = plan.buildspec.artifacts.as_ref().filter(|_| succeeded) else {
            return Ok(outcome);
        };
        let fetched = self.fetch_all(plan, build, artifact, spec, &staging).await;
        if fetched.is_err() {
            self.remove_all(build, artifact, spec).await;
        }
        let (primary, secondary) = fetched?;
        outcome.artifacts = Some(Artifacts {
            primary,
            secondary,
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

    /// The primary artifact into the staging area, then each secondary one.
    async fn fetch_all(
        &self,
        plan: &Plan,
        build: &Build,
        artifact: &ArtifactAt,
        spec: &crate::buildspec::Artifacts,
        staging: &Staging,
    ) -> anyhow::Result<(crate::artifacts::ExtractSummary, Vec<String>)> {
        let symlinks = spec.primary.enable_symlinks;
        let primary = self
            .fetch(plan, build, artifact, None, &staging.primary(), symlinks)
            .await?;
        let mut secondary = Vec::new();
        for (id, secondary_spec) in &spec.secondary {
            let dest = staging.secondary(&id.value)?;
            let symlinks = secondary_spec.enable_symlinks;
            self.fetch(plan, build, artifact, Some(&id.value), &dest, symlinks)
                .await?;
            secondary.push(id.value.clone());
        }
        Ok((primary, secondary))
    }

    /// After a failed fetch: what was not fetched is not left in the bucket either.
    async fn remove_all(
        &self,
        build: &Build,
        artifact: &ArtifactAt,
        spec: &crate::buildspec::Artifacts,
    ) {
        let secondary = spec.secondary.iter().map(|(id, _)| Some(id.value.as_str()));
        for identifier in std::iter::once(None).chain(secondary) {
            if let Ok(key) = artifact_key(&self.target.bucket, build, artifact, identifier) {
                self.remove_artifact(&key).await;
            }
        }
    }

    /// One artifact zip of the build (the primary, or the secondary `identifier`): downloaded to
    /// the out-dir's disk (not the staging area, which may be memory), removed from the bucket,
    /// unpacked into `dest` within the usual bounds.
    async fn fetch(
        &self,
        plan: &Plan,
        build: &Build,
        artifact: &ArtifactAt,
        identifier: Option<&str>,
        dest: &Path,
        symlinks: bool,
    ) -> anyhow::Result<crate::artifacts::ExtractSummary> {
        let zip = tempfile::Builder::new()
            .prefix(".artifact-")
            .suffix(".zip")
            .tempfile_in(&plan.out_dir)
            .context("cannot create the artifact's download file")?
            .into_temp_path();
        let key = artifact_key(&self.target.bucket, build, artifact, identifier)?;
        self.download(&key, &zip).await?;
        self.remove_artifact(&key).await;
        let what = identifier.map_or("the artifact".to_string(), |id| {
            format!("the secondary artifact {id}")
        });
        crate::artifacts::unzip(&zip, dest, symlinks)
            .map_err(|e| anyhow::anyhow!("{what} of {}: {e}", build.id().unwrap_or_default()))
    }

    /// The artifact, once downloaded, is not kept in the bucket (a failure is only said).
    async fn remove_artifact(&self, key: &str) {
        let bucket = &self.target.bucket;
        let removed = self
            .clients
            .s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await;
        if let Err(e) = removed {
            let url = format!("s3://{bucket}/{key}");
            self.log
                .warning(&format!("{:#}", aws::explain(&e, "s3:DeleteObject", &url)));
        }
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

/// The key of the build's artifact zip: the one asked for, or the one the build reports, when
/// it is a zip in the bucket under the expected prefix (nothing else is downloaded).
fn artifact_key(
    bucket: &str,
    build: &Build,
    artifact: &ArtifactAt,
    identifier: Option<&str>,
) -> anyhow::Result<String> {
    let prefix = match (artifact, identifier) {
        (ArtifactAt::Key(key), None) => return Ok(key.clone()),
        (ArtifactAt::Key(key), Some(id)) => return Ok(secondary_key(key, id)),
        (ArtifactAt::ReportedUnder(prefix), _) => prefix,
    };
    let reported = match identifier {
        None => build.artifacts(),
        Some(id) => build
            .secondary_artifacts()
            .iter()
            .find(|a| a.artifact_identifier() == Some(id)),
    };
    let location = reported.and_then(|a| a.location()).unwrap_or_default();
    // arn:<partition>:s3:::<bucket>/<key>
    let key = location
        .strip_prefix("arn:")
        .and_then(|rest| rest.split_once(":s3:::"))
        .filter(|(partition, _)| {
            partition
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '-')
        })
        .and_then(|(_, rest)| rest.strip_prefix(bucket))
        .and_then(|rest| rest.strip_prefix('/'))
        .filter(|key| key.starts_with(prefix.as_str()) && key.ends_with(".zip"))
        // Each build of a batch writes under its own id (namespace BUILD_ID): never another's.
        .filter(|key| key.split('/').any(|part| part == build_uuid(build)))
        .filter(|key| !key.split('/').any(|part| part == ".." || part.is_empty()));
    match key {
        Some(key) => Ok(key.to_string()),
        None => bail!(
            "the build {} reports its artifact at {location:?}, not a zip under s3://{bucket}/{prefix} in a directory named after the build",
            build.id().unwrap_or_default()
        ),
    }
}

/// Where the secondary artifact `id` of a build whose primary zip is at `key` goes:
/// `…/<uuid>.zip` → `…/<uuid>-<id>.zip`.
fn secondary_key(key: &str, id: &str) -> String {
    format!("{}-{id}.zip", key.trim_end_matches(".zip"))
}

/// The UUID part of a build's id (`<project>:<uuid>`), which names its artifact's directory.
fn build_uuid(build: &Build) -> &str {
    let id = build.id().unwrap_or_default();
    id.rsplit_once(':').map_or(id, |(_, uuid)| uuid)
}

/// A cache override that turns the project's cache off (`--no-cache`).
fn no_cache() -> anyhow::Result<ProjectCache> {
    ProjectCache::builder()
        .r#type(CacheType::NoCache)
        .build()
        .context("the cache override")
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
    plaintext(&plan.provided_variables())
}

/// `variables` as PLAINTEXT environment variable overrides.
fn plaintext(variables: &[(String, String)]) -> anyhow::Result<Vec<EnvironmentVariable>> {
    variables
        .iter()
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

/// ` in DOWNLOAD_SOURCE: <CodeBuild's message>` for the phase that failed, when one did.
fn failed_phase(build: &Build) -> Option<String> {
    let phase = build.phases().iter().find(|p| {
        matches!(
            p.phase_status(),
            Some(StatusType::Failed | StatusType::Fault | StatusType::TimedOut)
        )
    })?;
    let name = phase.phase_type()?.as_str();
    let message = phase
        .contexts()
        .iter()
        .filter_map(|c| c.message())
        .collect::<Vec<_>>()
        .join("; ");
    Some(format!(" in {name}: {message}"))
}

/// The exported variables CodeBuild reports; a buildspec secret's value (CodeBuild fetched it,
/// this machine never knew it to mask it) is replaced by `***`.
fn exported(build: &Build, plan: &Plan) -> Vec<(String, Option<String>)> {
    let env = &plan.buildspec.env;
    let secret = |name: &str| {
        env.parameter_store
            .iter()
            .chain(&env.secrets_manager)
            .any(|(n, _)| n.value == name)
    };
    build
        .exported_environment_variables()
        .iter()
        .filter_map(|v| {
            let name = v.name()?.to_string();
            let value = match secret(&name) {
                true => v.value().map(|_| "***".to_string()),
                false => v.value().map(str::to_string),
            };
            Some((name, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_codebuild::types::BuildArtifacts;

    fn build(id: &str, location: &str) -> Build {
        Build::builder()
            .id(id)
            .artifacts(BuildArtifacts::builder().location(location).build())
            .build()
    }

    #[test]
    fn a_secondary_artifact_is_fetched_from_where_its_build_reports_it() {
        let prefix = ArtifactAt::ReportedUnder("p/".to_string());
        let docs = BuildArtifacts::builder()
            .artifact_identifier("docs")
            .location("arn:aws:s3:::bkt/p/1111-aaaa/docs.zip")
            .build();
        let built = Build::builder()
            .id("proj:1111-aaaa")
            .secondary_artifacts(docs)
            .build();
        let key = artifact_key("bkt", &built, &prefix, Some("docs")).expect("docs");
        assert_eq!(key, "p/1111-aaaa/docs.zip");
        assert!(artifact_key("bkt", &built, &prefix, Some("other")).is_err());
        let single = ArtifactAt::Key("l/remote/builds/u.zip".to_string());
        let key = artifact_key("bkt", &built, &single, Some("docs")).expect("derived");
        assert_eq!(key, "l/remote/builds/u-docs.zip");
    }

    #[test]
    fn only_a_zip_of_this_build_under_the_prefix_is_fetched() {
        let prefix = ArtifactAt::ReportedUnder("layer/remote/batches/b1/".to_string());
        let id = "proj:1111-aaaa";
        let good = "arn:aws:s3:::bkt/layer/remote/batches/b1/1111-aaaa/layer.zip";
        assert_eq!(
            artifact_key("bkt", &build(id, good), &prefix, None).expect("accepted"),
            "layer/remote/batches/b1/1111-aaaa/layer.zip"
        );
        let china = "arn:aws-cn:s3:::bkt/layer/remote/batches/b1/1111-aaaa/layer.zip";
        assert!(artifact_key("bkt", &build(id, china), &prefix, None).is_ok());
        for bad in [
            // another build's directory, another bucket, a bucket with the name as prefix
            "arn:aws:s3:::bkt/layer/remote/batches/b1/2222-bbbb/layer.zip",
            "arn:aws:s3:::other/layer/remote/batches/b1/1111-aaaa/layer.zip",
            "arn:aws:s3:::bktx/layer/remote/batches/b1/1111-aaaa/layer.zip",
            // outside the prefix, not a zip, a climb, an empty segment, not an S3 ARN
            "arn:aws:s3:::bkt/elsewhere/1111-aaaa/layer.zip",
            "arn:aws:s3:::bkt/layer/remote/batches/b1/1111-aaaa/layer",
            "arn:aws:s3:::bkt/layer/remote/batches/b1/1111-aaaa/../x.zip",
            "arn:aws:s3:::bkt/layer/remote/batches/b1//1111-aaaa/layer.zip",
            "arn:aws:s3:Bad::bkt/layer/remote/batches/b1/1111-aaaa/layer.zip",
            "s3://bkt/layer/remote/batches/b1/1111-aaaa/layer.zip",
            "",
        ] {
            assert!(
                artifact_key("bkt", &build(id, bad), &prefix, None).is_err(),
                "accepted {bad}"
            );
        }
    }
}
