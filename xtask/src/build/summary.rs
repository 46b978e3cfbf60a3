//! What a build reports at the end, built once from the stages' results: the only place that
//! decides whether a build succeeded. Printed as human lines, or as one JSON object.

use std::io::Write as _;
use std::time::Duration;

use serde_json::{json, Value};

use super::execute::{Outcome, PhaseResult};
use super::package::Packaged;
use super::prepare::Plan;
use crate::manifest::Manifest;

/// The layer a build packaged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layer {
    /// Where the zip is: its final path, or the rejected one when verification failed.
    pub zip: String,
    pub manifest: String,
    pub sha256: String,
    pub code_sha256: String,
    pub zipped_bytes: u64,
    pub unzipped_bytes: u64,
    pub file_count: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub succeeded: bool,
    /// Nothing changed since the last build: no container was started.
    pub up_to_date: bool,
    pub phases: Vec<PhaseResult>,
    /// The packaged layer; `None` when nothing was packaged.
    pub layer: Option<Layer>,
    /// Exported variables, secrets masked.
    pub exported: Vec<(String, Option<String>)>,
    /// The same unmasked, only when `--json-unmasked-exports` asked for them in the JSON.
    exported_unmasked: Option<Vec<(String, Option<String>)>>,
    /// Secondary artifacts: `(identifier, zip path)`.
    pub secondary: Vec<(String, String)>,
    /// Report directories copied to the out-dir.
    pub reports: Vec<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub duration_ms: u64,
    /// Set when the build was interrupted by a signal: 130 (SIGINT) or 143 (SIGTERM).
    pub interrupted: Option<u8>,
    /// The buildspec declares no artifacts: there is no layer, and nothing to deploy.
    pub no_artifacts: bool,
}

impl Summary {
    /// The summary of a build that ran: it succeeded when its phases did and its layer passed
    /// verification.
    pub fn new(
        plan: &Plan,
        outcome: Outcome,
        packaged: Option<Packaged>,
        took: Duration,
    ) -> Summary {
        let exported_unmasked = plan
            .options
            .json_unmasked_exports
            .then(|| outcome.exported.clone());
        let mut summary = Summary {
            phases: outcome.phases,
            exported: outcome
                .exported
                .into_iter()
                .map(|(name, value)| (name, value.map(|v| plan.masker.mask(&v))))
                .collect(),
            exported_unmasked,
            no_artifacts: plan.buildspec.artifacts.is_none(),
            reports: outcome.reports,
            warnings: outcome.warnings,
            duration_ms: millis(took),
            ..Summary::default()
        };
        summary.errors.extend(outcome.failure);
        let passed = match packaged {
            Some(packaged) => summary.add_layer(packaged),
            None => outcome.phases_succeeded && summary.errors.is_empty(),
        };
        summary.succeeded = outcome.phases_succeeded && passed;
        summary
    }

    /// Records the packaged layer and its verification; returns whether it passed.
    fn add_layer(&mut self, packaged: Packaged) -> bool {
        let verification = crate::verify::to_verification(&packaged.diagnostics);
        self.warnings.extend(verification.warnings);
        self.errors.extend(verification.errors);
        self.secondary = packaged
            .secondary
            .into_iter()
            .map(|(id, zip)| (id, zip.display().to_string()))
            .collect();
        let zip = packaged.zip;
        self.layer = Some(Layer {
            zip: zip.path.display().to_string(),
            manifest: packaged.manifest.display().to_string(),
            sha256: zip.sha256_hex,
            code_sha256: zip.code_sha256,
            zipped_bytes: zip.zipped_bytes,
            unzipped_bytes: zip.unzipped_bytes,
            file_count: zip.files,
        });
        packaged.passed
    }

    /// The summary of a build that did not need to run.
    pub fn up_to_date(plan: &Plan, manifest: &Manifest, took: Duration) -> Summary {
        Summary {
            succeeded: true,
            up_to_date: true,
            layer: Some(Layer {
                zip: plan.zip_path().display().to_string(),
                manifest: plan.manifest_path().display().to_string(),
                sha256: manifest.sha256.clone(),
                code_sha256: manifest.code_sha256.clone(),
                zipped_bytes: manifest.zipped_bytes,
                unzipped_bytes: manifest.unzipped_bytes,
                file_count: manifest.file_count,
            }),
            warnings: manifest.verification.warnings.clone(),
            duration_ms: millis(took),
            ..Summary::default()
        }
    }

    /// The summary of a build stopped by a signal (`code` 130 or 143).
    pub fn interrupted(code: u8, took: Duration) -> Summary {
        Summary {
            interrupted: Some(code),
            duration_ms: millis(took),
            ..Summary::default()
        }
    }

    pub fn exit_code(&self) -> u8 {
        match (self.interrupted, self.succeeded) {
            (Some(code), _) => code,
            (None, true) => 0,
            (None, false) => 1,
        }
    }

    /// CodeBuild's build statuses: a build stopped by a signal is STOPPED.
    fn status(&self) -> &'static str {
        match (self.interrupted, self.succeeded) {
            (Some(_), _) => "STOPPED",
            (None, true) => "SUCCEEDED",
            (None, false) => "FAILED",
        }
    }

    /// The human summary, on stdout.
    pub fn print(&self) {
        let mut out = std::io::stdout().lock();
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        for error in &self.errors {
            let _ = writeln!(out, "error: {error}");
        }
        for report in &self.reports {
            let _ = writeln!(out, "reports: {report}");
        }
        for (id, zip) in &self.secondary {
            let _ = writeln!(out, "secondary artifact {id}: {zip}");
        }
        for (name, value) in &self.exported {
            let _ = writeln!(out, "exported {name}={}", value.as_deref().unwrap_or(""));
        }
        let _ = match (&self.layer, self.succeeded) {
            (Some(layer), true) => writeln!(
                out,
                "build {}: {} ({} bytes, {} files, {} bytes unzipped, sha256 {})",
                self.status(),
                layer.zip,
                layer.zipped_bytes,
                layer.file_count,
                layer.unzipped_bytes,
                layer.sha256
            ),
            (Some(layer), false) => writeln!(
                out,
                "build {}: no layer zip written (the rejected zip is kept for inspection: {})",
                self.status(),
                layer.zip
            ),
            (None, _) if self.no_artifacts => writeln!(
                out,
                "build {}: no layer packaged (the buildspec declares no artifacts; nothing to deploy)",
                self.status()
            ),
            (None, _) => writeln!(out, "build {}: no layer zip written", self.status()),
        };
        let _ = out.flush();
    }

    pub fn to_json(&self) -> Value {
        let phases: Vec<Value> = self
            .phases
            .iter()
            .map(|p| {
                json!({
                    "phase": p.phase.log_name(),
                    "status": if p.succeeded { "SUCCEEDED" } else { "FAILED" },
                    "duration_ms": p.duration_ms,
                })
            })
            .collect();
        let exported: serde_json::Map<String, Value> = self
            .exported_unmasked
            .as_ref()
            .unwrap_or(&self.exported)
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        let passed_layer = self.layer.as_ref().filter(|_| self.succeeded);
        let layer = self.layer.clone().unwrap_or_default();
        json!({
            "status": self.status(),
            "interrupted": self.interrupted,
            "up_to_date": self.up_to_date,
            "layer_packaged": passed_layer.is_some(),
            "no_artifacts": self.no_artifacts,
            "phases": phases,
            "zip": passed_layer.map(|l| &l.zip),
            "rejected_zip": self.layer.as_ref().filter(|_| !self.succeeded).map(|l| &l.zip),
            "manifest": self.layer.as_ref().map(|l| &l.manifest),
            "zipped_bytes": layer.zipped_bytes,
            "unzipped_bytes": layer.unzipped_bytes,
            "file_count": layer.file_count,
            "sha256": self.layer.as_ref().map(|l| &l.sha256),
            "code_sha256": self.layer.as_ref().map(|l| &l.code_sha256),
            "exported_variables": exported,
            "secondary_artifacts": self.secondary.iter().map(|(id, zip)| json!({"identifier": id, "zip": zip})).collect::<Vec<_>>(),
            "reports": self.reports,
            "errors": self.errors,
            "warnings": self.warnings,
            "duration_ms": self.duration_ms,
        })
    }
}

fn millis(took: Duration) -> u64 {
    u64::try_from(took.as_millis()).unwrap_or(u64::MAX)
}
