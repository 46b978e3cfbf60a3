//! UPLOAD_ARTIFACTS for a local build: each artifact's root is downloaded from the work container
//! as a tar stream and extracted safely (see [`crate::artifacts`]) into the staging area, and the
//! report groups' files are copied to `<out-dir>/reports/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::super::execute::Artifacts;
use super::super::prepare::Plan;
use super::super::staging::Staging;
use crate::artifacts::{self, ExtractSummary, Limits, Selection};
use crate::buildspec::{ArtifactSpec, Report};
use crate::engine::{Engine, WorkContainer};

/// Where the files come from: a work container, and its source directory; and how much may still
/// come out of it: one budget ([`Limits`]) for all of a build's artifacts and reports together.
pub struct Source<'a> {
    pub engine: &'a Engine,
    pub container: &'a WorkContainer,
    pub src_dir: &'a str,
    pub budget: std::sync::Mutex<Limits>,
}

impl Source<'_> {
    /// Downloads `base` (relative to the source directory, or absolute) and extracts what
    /// `selection` picks into `dest`, within what is left of the budget.
    async fn download(
        &self,
        base: Option<&str>,
        selection: Selection,
        dest: &Path,
    ) -> anyhow::Result<ExtractSummary> {
        let limits = *self.budget.lock().unwrap_or_else(|e| e.into_inner());
        let base = base
            .map(|b| b.trim_end_matches('/'))
            .filter(|b| !b.is_empty() && *b != ".");
        // A glob base-directory: download where the glob starts, let the selection pick the
        // matching directories.
        let (base, selection) = match base.map(artifacts::select::split_base) {
            Some((dir, Some(glob))) => (Some(dir), selection.with_base_glob(&glob)?),
            Some((dir, None)) => (Some(dir), selection),
            None => (None, selection),
        };
        let base = base.filter(|b| !b.is_empty());
        let root = match base.as_deref() {
            Some(b) if b.starts_with('/') => b.to_string(),
            Some(b) => format!("{}/{b}", self.src_dir),
            None => self.src_dir.to_string(),
        };
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        // `dir/.` makes the daemon send the directory's contents, with entry names relative to it.
        let reader = self
            .engine
            .download(self.container, &format!("{root}/."))
            .await?;
        let dest = dest.to_path_buf();
        let extract = move || -> anyhow::Result<ExtractSummary> {
            let mut reader = reader;
            let summary = artifacts::extract_tar_within(&mut reader, &dest, &selection, &limits)?;
            // The archive ends before the stream does: what follows may be the error of a
            // `tar -c` that could not read a file, or of a broken download.
            std::io::copy(&mut reader, &mut std::io::sink())
                .context("the artifact download failed")?;
            Ok(summary)
        };
        let summary = tokio::task::spawn_blocking(extract)
            .await
            .context("the artifact extraction stopped")??;
        let mut budget = self.budget.lock().unwrap_or_else(|e| e.into_inner());
        budget.max_bytes = budget.max_bytes.saturating_sub(summary.bytes);
        budget.max_entries = budget.max_entries.saturating_sub(summary.files);
        Ok(summary)
    }
}

fn selection(spec: &ArtifactSpec) -> anyhow::Result<Selection> {
    Ok(Selection::from_spec(spec)?.with_symlinks(spec.enable_symlinks))
}

fn base(spec: &ArtifactSpec) -> Option<&str> {
    spec.base_directory.as_ref().map(|b| b.value.as_str())
}

/// Fetches the primary artifact and every secondary one into `staging`.
pub async fn artifacts(
    from: &Source<'_>,
    plan: &Plan,
    staging: Staging,
) -> anyhow::Result<Artifacts> {
    let Some(spec) = &plan.buildspec.artifacts else {
        bail!("the buildspec declares no artifacts");
    };
    let primary = from
        .download(
            base(&spec.primary),
            selection(&spec.primary)?,
            &staging.primary(),
        )
        .await?;
    let mut secondary = Vec::new();
    for (id, secondary_spec) in &spec.secondary {
        let dest = staging.secondary(&id.value)?;
        from.download(base(secondary_spec), selection(secondary_spec)?, &dest)
            .await
            .with_context(|| format!("secondary artifact `{}`", id.value))?;
        secondary.push(id.value.clone());
    }
    Ok(Artifacts {
        primary,
        secondary,
        staging,
        built_by: None,
    })
}

/// Copies every report group's files to `<out-dir>/reports/<group>/`; returns what was copied and
/// warnings for groups with no files (a report that found nothing should not fail the build).
pub async fn reports(from: &Source<'_>, plan: &Plan) -> (Vec<String>, Vec<String>) {
    let mut copied = Vec::new();
    let mut warnings = Vec::new();
    let reports_dir = plan.out_dir.join("reports");
    for report in &plan.buildspec.reports {
        match report_into(from, report, &reports_dir).await {
            Ok((dest, summary)) => {
                copied.push(format!("{} ({} files)", dest.display(), summary.files))
            }
            Err(e) => warnings.push(format!("report group `{}`: {e:#}", report.group.value)),
        }
    }
    (copied, warnings)
}

async fn report_into(
    from: &Source<'_>,
    report: &Report,
    reports_dir: &Path,
) -> anyhow::Result<(PathBuf, ExtractSummary)> {
    let dest = reports_dir.join(report_dir_name(&report.group.value));
    // The name is one plain component (see report_dir_name): what is removed is below the
    // reports directory, never the out-dir or above.
    if dest.parent() != Some(reports_dir) {
        bail!(
            "report group `{}` has no safe directory name",
            report.group.value
        );
    }
    match std::fs::symlink_metadata(&dest) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&dest)?,
        Ok(_) => std::fs::remove_file(&dest)?,
        Err(_) => {}
    }
    let files: Vec<&str> = report.files.iter().map(|f| f.value.as_str()).collect();
    let selection = Selection::new(&files, &[], report.discard_paths)?;
    let base = report.base_directory.as_ref().map(|b| b.value.as_str());
    match from.download(base, selection, &dest).await {
        Ok(summary) => Ok((dest, summary)),
        Err(e) => {
            // Nothing half-copied stays behind.
            let _ = std::fs::remove_dir_all(&dest);
            Err(e)
        }
    }
}

/// A directory name for a report group (a name or an ARN): letters, digits, `.`, `-` and `_`
/// kept, anything else `_`; a name that had to change, or is only dots, gets a short hash of the
/// original, so two groups never share a directory and none is `.` or `..`.
pub fn report_dir_name(group: &str) -> String {
    use sha2::{Digest, Sha256};
    let safe: String = group
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
            _ => '_',
        })
        .take(100)
        .collect();
    if safe == group && !group.is_empty() && !group.chars().all(|c| c == '.') {
        return safe;
    }
    let hash = crate::util::hex(&Sha256::digest(group.as_bytes()));
    let stem = safe.trim_matches('.');
    let stem = if stem.is_empty() { "group" } else { stem };
    format!("{stem}-{}", &hash[..12])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_groups_get_safe_distinct_directory_names() {
        assert_eq!(report_dir_name("unit-tests"), "unit-tests");
        for evil in ["..", ".", "", "../../etc", "a/b", "/abs"] {
            let name = report_dir_name(evil);
            assert!(!name.contains('/') && name != "." && name != ".." && !name.is_empty());
            assert!(
                Path::new("reports").join(&name).parent() == Some(Path::new("reports")),
                "{evil} -> {name}"
            );
        }
        assert_ne!(report_dir_name("a/b"), report_dir_name("a_b"));
        assert_ne!(report_dir_name("a:b"), report_dir_name("a/b"));
        let arn = "arn:aws:codebuild:us-east-1:123456789012:report-group/unit";
        assert!(report_dir_name(arn).starts_with("arn_aws_codebuild"));
    }
}
