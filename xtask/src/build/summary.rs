//! What a build reports at the end: a human summary on the terminal, or one JSON object.

use serde_json::{json, Value};

use crate::buildspec::PhaseName;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseResult {
    pub phase: PhaseName,
    pub succeeded: bool,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub succeeded: bool,
    /// Nothing changed since the last build: no container was started.
    pub up_to_date: bool,
    pub phases: Vec<PhaseResult>,
    pub zip: Option<String>,
    pub manifest: Option<String>,
    pub sha256: Option<String>,
    pub code_sha256: Option<String>,
    pub zipped_bytes: u64,
    pub unzipped_bytes: u64,
    pub file_count: u64,
    pub exported: Vec<(String, Option<String>)>,
    /// Secondary artifacts: `(identifier, zip path)`.
    pub secondary: Vec<(String, String)>,
    /// Report directories copied to the out-dir.
    pub reports: Vec<String>,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
    pub duration_ms: u64,
    /// Set when the build was interrupted by a signal: 130 (SIGINT) or 143 (SIGTERM).
    pub interrupted: Option<u8>,
}

impl Summary {
    pub fn exit_code(&self) -> u8 {
        match (self.interrupted, self.succeeded) {
            (Some(code), _) => code,
            (None, true) => 0,
            (None, false) => 1,
        }
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
            .exported
            .iter()
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        json!({
            "status": if self.succeeded { "SUCCEEDED" } else { "FAILED" },
            "up_to_date": self.up_to_date,
            "phases": phases,
            "zip": self.zip,
            "manifest": self.manifest,
            "zipped_bytes": self.zipped_bytes,
            "unzipped_bytes": self.unzipped_bytes,
            "file_count": self.file_count,
            "sha256": self.sha256,
            "code_sha256": self.code_sha256,
            "exported_variables": exported,
            "secondary_artifacts": self.secondary.iter().map(|(id, zip)| json!({"identifier": id, "zip": zip})).collect::<Vec<_>>(),
            "reports": self.reports,
            "errors": self.errors,
            "warnings": self.warnings,
            "duration_ms": self.duration_ms,
        })
    }
}
