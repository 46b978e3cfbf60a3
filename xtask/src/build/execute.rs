//! The seam between a build's plan and whatever runs it. An [`Executor`] takes the [`Plan`] and
//! hands back an [`Outcome`]: how each phase went, the exported variables and the artifact trees,
//! staged on this machine. The local Docker executor (`super::docker`) is one; a remote one
//! (CodeBuild) plugs in the same way. `prepare` before it and `package` after it do not know
//! which one ran.

use super::prepare::Plan;
use super::staging::Staging;
use crate::artifacts::ExtractSummary;
use crate::buildspec::PhaseName;

/// How one phase went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseResult {
    pub phase: PhaseName,
    pub succeeded: bool,
    pub duration_ms: u64,
}

/// The artifact trees of a build whose phases succeeded, staged (see [`Staging`]).
#[derive(Debug)]
pub struct Artifacts {
    /// What was extracted into [`Staging::primary`].
    pub primary: ExtractSummary,
    /// Identifiers of the secondary artifacts, each in [`Staging::secondary`].
    pub secondary: Vec<String>,
    pub staging: Staging,
    /// Where the build ran, when not here (recorded in the manifest).
    pub built_by: Option<crate::manifest::RemoteBuild>,
}

/// What running the phases produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub phases: Vec<PhaseResult>,
    /// Whether the build's phases succeeded (CodeBuild's build status before UPLOAD_ARTIFACTS).
    pub phases_succeeded: bool,
    /// `env.exported-variables` at the end of the build; `None` for one that was unset.
    pub exported: Vec<(String, Option<String>)>,
    /// The artifact trees; `None` when the phases failed or the buildspec declares none.
    pub artifacts: Option<Artifacts>,
    /// Why the build failed besides its phases: an artifact that could not be uploaded, a timeout.
    pub failure: Option<String>,
    /// Report directories copied to the out-dir.
    pub reports: Vec<String>,
    pub warnings: Vec<String>,
    /// Where the build ran, for the manifest (`docker`, later `codebuild`).
    pub executor: &'static str,
    /// Work left for after packaging (removing a container), with a warning when it fails.
    pub cleanup: Option<tokio::task::JoinHandle<Option<String>>>,
}

impl Outcome {
    /// A build stopped by its timeout, as CodeBuild's TIMED_OUT.
    pub fn timed_out(timeout: std::time::Duration, log: &super::log::Log) -> Outcome {
        let minutes = timeout.as_secs() / 60;
        log.container(&format!("Build timed out after {minutes} minutes"));
        Outcome {
            failure: Some(format!(
                "the build timed out after {minutes} minutes (TIMED_OUT; --timeout-minutes sets the limit)"
            )),
            executor: "docker",
            ..Outcome::default()
        }
    }

    /// Waits for the executor's clean-up and returns its warning, if any.
    pub async fn finish_cleanup(&mut self) -> Option<String> {
        let cleanup = self.cleanup.take()?;
        match cleanup.await {
            Ok(warning) => warning,
            Err(e) => Some(format!("the clean-up stopped: {e}")),
        }
    }
}

/// Runs a build's phases somewhere and stages its artifacts on this machine.
pub(crate) trait Executor {
    /// Runs `plan`. `started` is sent once the phases are about to run (what runs beside the
    /// build, the import test's container, waits for it). Errors are failures of the executor
    /// itself (Docker unreachable, an upload that broke), not of the build.
    async fn execute(
        &self,
        plan: &Plan,
        staging: Staging,
        started: tokio::sync::oneshot::Sender<()>,
    ) -> anyhow::Result<Outcome>;
}
