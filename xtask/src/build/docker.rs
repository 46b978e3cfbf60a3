//! The local executor: runs a [`Plan`] in a work container of the build image through the Docker
//! Engine API, as CodeBuild runs a build in its container: the source (and the host's CA bundle)
//! uploaded, the driver run with the build's variables in its environment and its log streamed,
//! then the reports and artifacts fetched. The container is removed whatever happens; on success
//! in the background, while the layer is packaged.

mod cache;
mod collect;
mod mounts;
mod output;

use anyhow::Context as _;

use super::driver;
use super::execute::{Executor, Outcome};
use super::log::Log;
use super::prepare::{Plan, CONTAINER_CA_DIR};
use super::staging::Staging;
use crate::artifacts;
use crate::engine::{ContainerSpec, Engine, Exec, WorkContainer};
use output::{DriverReport, OutputReader};

/// The label naming the layer a work container builds (tests find their containers by it).
pub const LAYER_LABEL: &str = "xtask.layer-tools.layer";

pub struct DockerExecutor<'a> {
    pub engine: &'a Engine,
    pub log: &'a Log,
    /// Volumes made for this build only (a restore-only cache), removed after it.
    pub throwaway: std::sync::Mutex<Vec<String>>,
}

impl<'a> DockerExecutor<'a> {
    pub fn new(engine: &'a Engine, log: &'a Log) -> DockerExecutor<'a> {
        DockerExecutor {
            engine,
            log,
            throwaway: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl Executor for DockerExecutor<'_> {
    async fn execute(
        &self,
        plan: &Plan,
        staging: Staging,
        started: tokio::sync::oneshot::Sender<()>,
    ) -> anyhow::Result<Outcome> {
        let spec = self.container_spec(plan).await?;
        let container = self.engine.start_work_container(&spec).await?;
        let _ = started.send(());
        let result = self.run(plan, &container, staging).await;
        let removal = container.remove_in_background();
        let throwaway =
            std::mem::take(&mut *self.throwaway.lock().unwrap_or_else(|e| e.into_inner()));
        let engine = self.engine.clone();
        let cleanup = tokio::spawn(async move {
            let removed = match removal.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("the container removal stopped: {e}")),
            };
            for volume in throwaway {
                if let Err(e) = engine.remove_volume(&volume).await {
                    return Some(e.to_string());
                }
            }
            removed
        });
        match result {
            Ok(mut outcome) => {
                outcome.cleanup = Some(cleanup);
                Ok(outcome)
            }
            Err(e) => {
                if let Ok(Some(warning)) = cleanup.await {
                    self.log.warning(&warning);
                }
                Err(e)
            }
        }
    }
}

impl DockerExecutor<'_> {
    /// The work container: the image, the host's network settings, and where it writes (see
    /// `mounts`).
    async fn container_spec(&self, plan: &Plan) -> anyhow::Result<ContainerSpec> {
        let memory_limit = match plan.options.scratch_on_disk {
            true => None,
            false => mounts::memory_limit(self.engine.memory_bytes().await),
        };
        let dirs = &plan.cache.dirs;
        if let Some(note) = &plan.cache.note {
            self.log.warning(note);
        }
        let cache_volumes = match plan.options.cache {
            true => {
                let prepared = cache::prepare(
                    self.engine,
                    &plan.image,
                    &plan.project_id,
                    &plan.cache,
                    self.log,
                )
                .await?;
                *self.throwaway.lock().unwrap_or_else(|e| e.into_inner()) = prepared.throwaway;
                prepared.mounts
            }
            false => cache::cache_volumes(&plan.project_id, dirs),
        };
        // Throwaway cache paths may go in memory: those the image has files in may not.
        let in_image = match (plan.options.cache, memory_limit) {
            (false, Some(_)) => {
                let found = self.engine.paths_in_image(&plan.image, dirs).await?;
                let dirs = dirs.iter().zip(found);
                dirs.filter(|(_, f)| *f).map(|(d, _)| d.clone()).collect()
            }
            _ => Vec::new(),
        };
        let mounts = mounts::plan(cache_volumes, plan.options.cache, memory_limit, |dir| {
            in_image.iter().any(|d| d == dir)
        });
        for (dir, bytes) in &mounts.memory_dirs {
            self.log.line(&format!(
                "{dir} is in memory (tmpfs, up to {:.1} GiB; --scratch-on-disk puts it on a volume)",
                *bytes as f64 / f64::from(1 << 30)
            ));
        }
        Ok(ContainerSpec {
            image: plan.image.clone(),
            env: plan.host.env.0.clone(),
            working_dir: Some(plan.src_dir.clone()),
            volumes: mounts.volumes,
            bind_mounts_ro: Vec::new(),
            scratch_dirs: mounts.scratch_dirs,
            memory_dirs: mounts.memory_dirs,
            labels: vec![(LAYER_LABEL.to_string(), plan.layer.file_stem().to_string())],
            // As in CodeBuild, the build reaches the network (its package index).
            offline: false,
        })
    }

    /// DOWNLOAD_SOURCE, the phases, and UPLOAD_ARTIFACTS, in the running container.
    async fn run(
        &self,
        plan: &Plan,
        container: &WorkContainer,
        staging: Staging,
    ) -> anyhow::Result<Outcome> {
        self.download_source(plan, container).await?;
        let report = self.run_driver(plan, container).await?;
        let phases_succeeded = report.build_succeeded == Some(true);
        if !phases_succeeded && report.saw_no_space && container.transfers_with_tar() {
            self.log.line(
                "hint: the source tree is in memory and bounded; --scratch-on-disk puts it on a volume",
            );
        }
        let from = collect::Source {
            engine: self.engine,
            container,
            src_dir: &plan.src_dir,
            budget: std::sync::Mutex::new(artifacts::Limits::default()),
        };
        // Reports are copied whatever the outcome: a failed build is when they matter most.
        let (reports, warnings) = collect::reports(&from, plan).await;
        let mut outcome = Outcome {
            phases: report.phases,
            phases_succeeded,
            exported: report.exported,
            reports,
            warnings,
            executor: "docker",
            ..Outcome::default()
        };
        if phases_succeeded && plan.buildspec.artifacts.is_none() {
            // As in CodeBuild: a build without artifacts runs its phases and uploads nothing.
            self.log.container("Entering phase UPLOAD_ARTIFACTS");
            self.log
                .container("Phase complete: UPLOAD_ARTIFACTS State: SUCCEEDED (no artifacts)");
        } else if phases_succeeded {
            // As in CodeBuild, an artifact that cannot be uploaded fails the build.
            self.log.container("Entering phase UPLOAD_ARTIFACTS");
            match collect::artifacts(&from, plan, staging).await {
                Ok(artifacts) => outcome.artifacts = Some(artifacts),
                Err(e) => {
                    self.log
                        .container("Phase complete: UPLOAD_ARTIFACTS State: FAILED");
                    outcome.failure = Some(format!("UPLOAD_ARTIFACTS: {e:#}"));
                }
            }
        }
        Ok(outcome)
    }

    /// DOWNLOAD_SOURCE: the source tree and the host's CA bundle, uploaded side by side.
    async fn download_source(&self, plan: &Plan, container: &WorkContainer) -> anyhow::Result<()> {
        self.log.container("Entering phase DOWNLOAD_SOURCE");
        self.log.container(&format!(
            "Uploading the source ({} files) to {}",
            plan.source_files, plan.src_dir
        ));
        let source = async {
            let tar = plan.source.tar.clone();
            self.engine.upload(container, &plan.src_dir, tar).await
        };
        let ca = async {
            let Some(bundle) = &plan.host.ca_bundle else {
                return Ok(());
            };
            let content = std::fs::read(bundle)
                .with_context(|| format!("cannot read {}", bundle.display()))?;
            let tar = crate::engine::tar_of_files(&[("ca-bundle.crt", content)])?;
            let uploaded = self.engine.upload(container, CONTAINER_CA_DIR, tar).await;
            uploaded.map_err(anyhow::Error::from)
        };
        let (source, ca) = tokio::join!(source, ca);
        source?;
        ca?;
        if runtime_versions_requested(plan) {
            self.log.container("Skipping install of runtimes. Runtime version selection is not supported by this build image.");
        }
        Ok(())
    }

    /// The phases: the driver, as the `run-as` user, its variables in its environment.
    async fn run_driver(
        &self,
        plan: &Plan,
        container: &WorkContainer,
    ) -> anyhow::Result<DriverReport> {
        let how = &plan.driver;
        let mut exec = Exec::new([how.interpreter.as_str(), "-c", driver::BOOTSTRAP])
            .stdin(driver::stdin(&how.token, &how.script))
            .working_dir(&plan.src_dir);
        for (name, value) in &plan.variables.0 {
            if driver::is_variable_name(name) {
                exec = exec.env(name, value);
            } else {
                self.log
                    .warning(&format!("`{name}` is not a valid variable name: not set"));
            }
        }
        if let Some(user) = &plan.driver.user {
            // The source was unpacked as root; the run-as user builds in it.
            let chown = Exec::new(["chown", "-R", user.as_str(), plan.src_dir.as_str()]).root();
            self.engine
                .exec_checked(container, &chown)
                .await
                .with_context(|| format!("run-as {user}: cannot hand the source to that user"))?;
            exec = exec.user(user);
        }
        let mut output = OutputReader::new(self.log, &how.token);
        let code = self
            .engine
            .exec(container, &exec, |_, chunk| output.feed(chunk))
            .await?;
        let mut report = output.finish();
        if code != 0 {
            report.build_succeeded = Some(false);
        }
        Ok(report)
    }
}

fn runtime_versions_requested(plan: &Plan) -> bool {
    plan.buildspec
        .phase(crate::buildspec::PhaseName::Install)
        .is_some_and(|install| !install.runtime_versions.is_empty())
}
