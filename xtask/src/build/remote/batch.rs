//! A CodeBuild batch build of several cells (`--remote --matrix`): the buildspec override is the
//! buildspec's own text with a `batch: build-list:` appended, one build per cell with its image,
//! environment type (arm64 cells on ARM compute) and cell variables. The batch is started once
//! and followed until every cell's build has started; each build is then followed and staged
//! as a single `--remote` build is, its artifact in a directory named after its own build id.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::bail;
use aws_sdk_codebuild::operation::start_build_batch::StartBuildBatchError;
use aws_sdk_codebuild::types::{ArtifactNamespace, BuildBatch, ProjectArtifacts, SourceType};
use tokio::sync::oneshot;

use super::{key_prefix, no_cache, plaintext, CodeBuildExecutor, MAX_POLL_FAILURES, MAX_QUEUED};
use crate::aws;
use crate::build::prepare::Plan;
use crate::diagnostic::SourceFile;

/// One cell's build in the batch: its identifier in the build list, and its plan.
pub struct BatchCell<'a> {
    pub identifier: String,
    pub plan: &'a Plan,
}

/// A started batch build.
pub struct Batch {
    pub id: String,
    /// Where its builds' artifact zips must be (under this key prefix of the bucket).
    pub artifact_prefix: String,
}

/// What a cell's build in the batch became: its build id, or why it never started.
pub type BuildStarted = Result<String, String>;

/// Build groups of a batch that are not cells: the batch's own source download.
const BATCH_GROUPS: &[&str] = &["DOWNLOAD_SOURCE"];

/// The build-list identifier of a cell: `python3.13-arm64` → `python3_13_arm64` (CodeBuild
/// allows letters, digits and underscores).
pub fn identifier(cell: &str) -> String {
    cell.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The variables every cell has with the same value (sent as the batch's overrides); each
/// cell's own values go into its entry of the build list.
fn common_variables(cells: &[BatchCell<'_>]) -> Vec<(String, String)> {
    let Some(first) = cells.first() else {
        return Vec::new();
    };
    first
        .plan
        .provided_variables()
        .into_iter()
        .filter(|variable| {
            cells
                .iter()
                .all(|c| c.plan.provided_variables().contains(variable))
        })
        .collect()
}

/// One build of the batch's build list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    pub identifier: String,
    pub arm: bool,
    pub image: String,
    /// The cell's own variables (those every cell shares go as the batch's overrides).
    pub variables: Vec<(String, String)>,
}

impl BatchEntry {
    fn of(cell: &BatchCell<'_>, common: &[(String, String)]) -> BatchEntry {
        BatchEntry {
            identifier: cell.identifier.clone(),
            arm: cell.plan.arch == "arm64",
            image: cell.plan.image.clone(),
            variables: cell
                .plan
                .provided_variables()
                .into_iter()
                .filter(|v| !common.contains(v))
                .collect(),
        }
    }

    /// The entry as YAML under `build-list:`, every value double-quoted.
    fn yaml(&self) -> String {
        let q = quoted;
        let kind = if self.arm {
            "ARM_CONTAINER"
        } else {
            "LINUX_CONTAINER"
        };
        let mut out = format!("    - identifier: {}\n", self.identifier);
        out += &format!(
            "      env:\n        type: {kind}\n        image: {}\n",
            q(&self.image)
        );
        if !self.variables.is_empty() {
            out += "        variables:\n";
            for (name, value) in &self.variables {
                out += &format!("          {}: {}\n", q(name), q(value));
            }
        }
        out
    }
}

/// `text` as a double-quoted scalar that YAML 1.1 and 1.2 read back the same: a JSON string
/// with every control character, NEL, the line and paragraph separators and the BOM escaped
/// (JSON leaves some of them raw, and YAML 1.1 folds them as line breaks).
fn quoted(text: &str) -> String {
    let json = serde_json::Value::from(text).to_string();
    json.chars()
        .map(|c| match c {
            c if c.is_control() && c != '\n' => format!("\\u{:04x}", c as u32),
            '\u{2028}' | '\u{2029}' | '\u{feff}' => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// The buildspec's text with the batch appended: the phases, env and artifacts every build runs
/// are the ones written, byte for byte. Refused when the buildspec has a `batch` of its own, or
/// when the result does not read back as the same buildspec plus exactly these builds.
pub fn buildspec_with_batch(text: &str, entries: &[BatchEntry]) -> anyhow::Result<String> {
    let read = |text: &str| crate::buildspec::parse(SourceFile::new("buildspec", text));
    let original = read(text);
    if original
        .root
        .as_ref()
        .and_then(|r| r.get("batch"))
        .is_some()
    {
        bail!("--remote --matrix runs the cells as a batch build of its own: remove the buildspec's `batch` section (CodeBuild would run that batch instead)");
    }
    let mut out = text.trim_end().to_string();
    out += "\n\n# Added by `cargo xtask build-layer --remote --matrix`: one build per cell.\n";
    out += "batch:\n  fast-fail: false\n  build-list:\n";
    for entry in entries {
        out += &entry.yaml();
    }
    let added = read(&out);
    if original.buildspec.is_none()
        || added.buildspec != original.buildspec
        || added.has_errors() != original.has_errors()
        || read_back(&added).as_deref() != Some(entries)
    {
        bail!("cannot append a batch section to this buildspec: --remote --matrix needs it written as a block mapping (key: value lines), not a flow mapping or several documents");
    }
    Ok(out)
}

/// The build list as it reads back from the appended text.
fn read_back(added: &crate::buildspec::Parsed) -> Option<Vec<BatchEntry>> {
    let list = added
        .root
        .as_ref()?
        .get("batch")?
        .get("build-list")?
        .as_seq()?;
    list.iter()
        .map(|item| {
            let env = item.get("env")?;
            let variables = match env.get("variables") {
                Some(map) => map
                    .as_map()?
                    .iter()
                    .map(|e| Some((e.key.as_str()?.to_string(), e.value.as_str()?.to_string())))
                    .collect::<Option<Vec<_>>>()?,
                None => Vec::new(),
            };
            Some(BatchEntry {
                identifier: item.get("identifier")?.as_str()?.to_string(),
                arm: env.get("type")?.as_str()? == "ARM_CONTAINER",
                image: env.get("image")?.as_str()?.to_string(),
                variables,
            })
        })
        .collect()
}

impl CodeBuildExecutor<'_> {
    /// StartBuildBatch for `cells` (which share one source): the source uploaded once, the
    /// buildspec with its batch, the common variables, the artifacts under one prefix.
    pub async fn start_batch(&self, cells: &[BatchCell<'_>]) -> anyhow::Result<Batch> {
        let Some(first) = cells.first() else {
            bail!("no cell to build");
        };
        if cells
            .iter()
            .any(|c| c.plan.source.tar != first.plan.source.tar)
        {
            bail!("the cells' sources differ: a batch build has one source");
        }
        let common = common_variables(cells);
        let entries: Vec<BatchEntry> = cells.iter().map(|c| BatchEntry::of(c, &common)).collect();
        let buildspec = buildspec_with_batch(&first.plan.buildspec_text, &entries)?;
        let source_key = self.upload_source(first.plan).await?;
        let artifact_prefix = format!(
            "{}/batches/{}/",
            key_prefix(first.plan),
            uuid::Uuid::new_v4()
        );
        let (artifacts, secondary) = self.batch_artifacts(first.plan, &artifact_prefix)?;
        let mut request = self
            .clients
            .codebuild
            .start_build_batch()
            .project_name(&self.target.project)
            .source_type_override(SourceType::S3)
            .source_location_override(format!("{}/{source_key}", self.target.bucket))
            .buildspec_override(buildspec)
            .set_environment_variables_override(Some(plaintext(&common)?))
            .artifacts_override(artifacts)
            .set_secondary_artifacts_override(Some(secondary))
            .build_timeout_in_minutes_override(self.timeout_minutes(first.plan))
            .queued_timeout_in_minutes_override((MAX_QUEUED.as_secs() / 60) as i32);
        if !first.plan.options.cache {
            request = request.cache_override(no_cache()?);
        }
        let project = &self.target.project;
        let started = request.send().await.map_err(|e| refused(&e, project))?;
        let batch = started
            .build_batch
            .ok_or_else(|| anyhow::anyhow!("StartBuildBatch returned no batch"))?;
        let id = batch.id().unwrap_or_default().to_string();
        // For a signal from here on: the batch to stop.
        if let Ok(mut running) = self.running.lock() {
            *running = Some(id.clone());
        }
        self.log.line(&format!(
            "started the batch {} in the CodeBuild project {project}: {} builds ({})",
            batch.arn().unwrap_or(&id),
            cells.len(),
            cells
                .iter()
                .map(|c| c.identifier.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        Ok(Batch {
            id,
            artifact_prefix,
        })
    }

    /// The batch's artifacts overrides under `prefix`, namespace BUILD_ID (each build's zips in a
    /// directory named after its own id): the primary `layer.zip`, each secondary
    /// `secondary-<id>.zip` (never the primary's name: an identifier holds no `-`).
    fn batch_artifacts(
        &self,
        plan: &Plan,
        prefix: &str,
    ) -> anyhow::Result<(ProjectArtifacts, Vec<ProjectArtifacts>)> {
        let path = prefix.trim_end_matches('/');
        let primary = self.artifacts_override(path, "layer.zip", ArtifactNamespace::BuildId)?;
        let name_of = |id: &str| format!("secondary-{id}.zip");
        let secondary =
            self.secondary_overrides(plan, path, name_of, ArtifactNamespace::BuildId)?;
        Ok((primary, secondary))
    }

    /// Polls the batch (with backoff) and hands each cell its build id as soon as CodeBuild
    /// reports it; a cell whose build never started gets why. Bounded by `timeout` plus the
    /// queue's bound. When it gives up before any cell started, the batch is stopped; once some
    /// have, their builds run on (each followed on its own) and only the waiting cells fail.
    pub async fn dispatch_batch(
        &self,
        batch: &Batch,
        mut waiting: HashMap<String, oneshot::Sender<BuildStarted>>,
        timeout: Duration,
    ) {
        let cells = waiting.len();
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        let mut failures = 0;
        let mut unknown = Vec::new();
        while !waiting.is_empty() {
            let described = match self.describe_batch(&batch.id).await {
                Ok(described) => described,
                Err(_) if failures < MAX_POLL_FAILURES => {
                    failures += 1;
                    tokio::time::sleep(delay * (1 << failures)).await;
                    continue;
                }
                Err(e) => {
                    let why = format!("following the batch failed: {e:#}");
                    return self.give_up(batch, waiting, cells, &why).await;
                }
            };
            failures = 0;
            for (identifier, id) in started_builds(&described) {
                if let Some(cell) = waiting.remove(&identifier) {
                    // A cell that gave up before its build started cannot follow it.
                    if cell.send(Ok(id.clone())).is_err() {
                        super::stop(self.clients, &id).await;
                    }
                } else if !BATCH_GROUPS.contains(&identifier.as_str())
                    && !unknown.contains(&identifier)
                {
                    self.log.warning(&format!("the batch runs a build that is no cell of it: {identifier} ({id}), not followed"));
                    unknown.push(identifier);
                }
            }
            if described.complete() {
                let status = described
                    .build_batch_status()
                    .map_or("UNKNOWN", |s| s.as_str());
                let why = format!(
                    "the batch build ended {status} before this cell's build started{}",
                    batch_failure(&described)
                );
                return tell_all(waiting, &why);
            }
            if started.elapsed() > timeout + MAX_QUEUED {
                let why = "the batch did not start this cell's build in time";
                return self.give_up(batch, waiting, cells, why).await;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 3 / 2).min(Duration::from_secs(5));
        }
    }

    /// The waiting cells fail with `why`; the batch is stopped when none of its cells started.
    async fn give_up(
        &self,
        batch: &Batch,
        waiting: HashMap<String, oneshot::Sender<BuildStarted>>,
        cells: usize,
        why: &str,
    ) {
        if waiting.len() == cells {
            stop_batch(self, &batch.id).await;
            return tell_all(waiting, &format!("{why}: the batch was stopped"));
        }
        tell_all(waiting, why);
    }

    async fn describe_batch(&self, id: &str) -> anyhow::Result<BuildBatch> {
        let batches = self
            .clients
            .codebuild
            .batch_get_build_batches()
            .ids(id)
            .send()
            .await
            .map_err(|e| aws::explain(&e, "codebuild:BatchGetBuildBatches", id))?;
        batches
            .build_batches
            .unwrap_or_default()
            .into_iter()
            .next()
            .ok_or_else(|| anyhow::anyhow!("CodeBuild does not know the batch build {id}"))
    }
}

/// StartBuildBatch's refusal as one line: CodeBuild's own message, and what usually causes it.
fn refused(
    e: &aws_sdk_codebuild::error::SdkError<StartBuildBatchError>,
    project: &str,
) -> anyhow::Error {
    match e.as_service_error() {
        Some(StartBuildBatchError::InvalidInputException(refused)) => anyhow::anyhow!(
            "CodeBuild refused the batch build of {project}: {} (batch builds need the project's BuildBatchConfig, which codebuild.yml sets: `cargo xtask deploy-stack`)",
            refused.message().unwrap_or("invalid input")
        ),
        _ if format!("{e:?}").contains("AccountLimitExceeded") => anyhow::anyhow!(
            "CodeBuild refused to start a batch build of {project}: the project's concurrent build limit or the account's build quota is reached"
        ),
        _ => aws::explain(e, "codebuild:StartBuildBatch", &format!("the CodeBuild project {project}")),
    }
}

fn tell_all(waiting: HashMap<String, oneshot::Sender<BuildStarted>>, why: &str) {
    for (_, cell) in waiting {
        let _ = cell.send(Err(why.to_string()));
    }
}

/// Each build group's identifier and the id of its current build, once it has one.
fn started_builds(batch: &BuildBatch) -> Vec<(String, String)> {
    batch
        .build_groups()
        .iter()
        .filter_map(|group| {
            let arn = group.current_build_summary()?.arn()?;
            // A build's ARN ends in build/<project>:<uuid>; its id is that last part.
            let id = arn.rsplit_once(":build/").map_or(arn, |(_, id)| id);
            Some((group.identifier()?.to_string(), id.to_string()))
        })
        .collect()
}

/// ` (its phase DOWNLOAD_BATCHSPEC FAILED: <CodeBuild's message>)` for the batch's phase that
/// did not succeed, when one did not.
fn batch_failure(batch: &BuildBatch) -> String {
    let failed = batch
        .phases()
        .iter()
        .find(|p| p.phase_status().is_some_and(|s| s.as_str() != "SUCCEEDED"));
    let Some(phase) = failed else {
        return String::new();
    };
    let message: Vec<&str> = phase
        .contexts()
        .iter()
        .filter_map(|c| c.message())
        .collect();
    format!(
        " (its phase {} {}: {})",
        phase.phase_type().map_or("?", |t| t.as_str()),
        phase.phase_status().map_or("?", |s| s.as_str()),
        message.join("; ")
    )
}

/// Stops a batch (after Ctrl-C, or when following it failed); a failure is only said.
pub async fn stop_batch(executor: &CodeBuildExecutor<'_>, id: &str) {
    let stopped = executor
        .clients
        .codebuild
        .stop_build_batch()
        .id(id)
        .send()
        .await;
    if let Err(e) = stopped {
        executor.log.warning(&format!(
            "StopBuildBatch {id}: {:#}",
            aws::explain(&e, "codebuild:StopBuildBatch", id)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(identifier: &str, arm: bool, variables: &[(&str, &str)]) -> BatchEntry {
        BatchEntry {
            identifier: identifier.to_string(),
            arm,
            image: "public.ecr.aws/sam/build-python3.13:latest-arm64".to_string(),
            variables: variables
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    const SPEC: &str = "version: 0.2\nenv:\n  variables:\n    LAYER_PYTHON: \"3.9\"\nphases:\n  build:\n    commands:\n      - echo hi # a comment\nartifacts:\n  files: ['**/*']\n";

    #[test]
    fn identifiers_are_letters_digits_and_underscores() {
        assert_eq!(identifier("python3.13-arm64"), "python3_13_arm64");
    }

    #[test]
    fn the_batch_is_appended_and_every_value_reads_back() {
        let tricky = "a: b # c\n\"d\" 'e' \\ ${X} *star &anchor \u{85}\u{2028}\u{7f}\u{feff}";
        let entries = [
            entry("python3_9_x86_64", false, &[("LAYER_PYTHON", "3.9")]),
            entry(
                "python3_13_arm64",
                true,
                &[("LAYER_PYTHON", "3.13"), ("ODD", tricky)],
            ),
        ];
        let text = buildspec_with_batch(SPEC, &entries).expect("appended");
        assert!(text.starts_with(SPEC.trim_end()), "{text}");
        let root = crate::yaml::parse(&text).expect("yaml").remove(0);
        let list = root
            .get("batch")
            .and_then(|b| b.get("build-list"))
            .and_then(|l| l.as_seq())
            .expect("list");
        assert_eq!(list.len(), 2);
        let env = list[1].get("env").expect("env");
        assert_eq!(
            env.get("type").and_then(|t| t.as_str()),
            Some("ARM_CONTAINER")
        );
        let odd = env
            .get("variables")
            .and_then(|v| v.get("ODD"))
            .and_then(|v| v.as_str());
        assert_eq!(odd, Some(tricky));
        let first = list[0]
            .get("env")
            .and_then(|e| e.get("type"))
            .and_then(|t| t.as_str());
        assert_eq!(first, Some("LINUX_CONTAINER"));
    }

    #[test]
    fn a_buildspec_with_its_own_batch_is_refused() {
        let spec = format!("{SPEC}batch:\n  build-list:\n    - identifier: a\n");
        let error = buildspec_with_batch(&spec, &[entry("b", false, &[])]).unwrap_err();
        assert!(
            error.to_string().contains("remove the buildspec's `batch`"),
            "{error}"
        );
    }

    #[test]
    fn a_flow_mapping_or_a_second_document_is_refused() {
        let flow = "{version: 0.2, phases: {build: {commands: [echo hi]}}}\n";
        let two = format!("{SPEC}---\nversion: 0.2\n");
        for spec in [flow, two.as_str()] {
            let error = buildspec_with_batch(spec, &[entry("b", false, &[])]).unwrap_err();
            assert!(
                error.to_string().contains("block mapping"),
                "{spec}: {error}"
            );
        }
    }
}
