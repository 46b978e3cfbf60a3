//! What a build leaves behind: the artifact trees fetched from the container (primary, secondary,
//! reports), then the deterministic layer zip, the secondary zips, the size checks and the manifest.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use super::settings::Settings;
use super::staging::Staging;
use super::summary::Summary;
use crate::artifacts::{self, ExtractSummary, Selection, ZipSummary};
use crate::buildspec::ArtifactSpec;
use crate::diagnostic::Diagnostic;
use crate::engine::{Engine, WorkContainer};
use crate::manifest::{Manifest, Verification, MANIFEST_VERSION};

/// Lambda's limit for a function plus all its layers, unzipped.
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;
/// Above this a zip cannot be uploaded inline (ZipFile); it has to go through S3.
pub const MAX_INLINE_ZIP_BYTES: u64 = 52_428_800;
/// How many packages the size breakdown lists.
const BIGGEST_PACKAGES: usize = 10;

/// The container side of a download: which container, and where the source is in it.
pub struct InContainer<'a> {
    pub engine: &'a Engine,
    pub container: &'a WorkContainer,
    pub src_dir: &'a str,
}

impl InContainer<'_> {
    /// Downloads `base` (relative to the source directory, or absolute) and extracts what
    /// `selection` picks into `dest`.
    async fn download(
        &self,
        base: Option<&str>,
        selection: Selection,
        dest: &Path,
    ) -> anyhow::Result<ExtractSummary> {
        let base = base
            .map(|b| b.trim_end_matches('/'))
            .filter(|b| !b.is_empty() && *b != ".");
        if base.is_some_and(|b| b.contains(['*', '?', '['])) {
            bail!("a glob in base-directory is not supported by local builds yet");
        }
        let root = match base {
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
            let summary = artifacts::extract_tar(&mut reader, &dest, &selection)?;
            // The archive ends before the stream does: what follows may be the error of a
            // `tar -c` that could not read a file, or of a broken download.
            std::io::copy(&mut reader, &mut std::io::sink())
                .context("the artifact download failed")?;
            Ok(summary)
        };
        tokio::task::spawn_blocking(extract)
            .await
            .context("the artifact extraction stopped")?
    }
}

fn selection(spec: &ArtifactSpec) -> anyhow::Result<Selection> {
    Ok(Selection::from_spec(spec)?.with_symlinks(spec.enable_symlinks))
}

/// The primary and secondary artifact trees, staged (see [`Staging`]).
pub struct Collected {
    pub primary: ExtractSummary,
    pub secondary: Vec<String>,
    pub staging: Staging,
}

/// UPLOAD_ARTIFACTS: fetches the primary artifact and every secondary one.
pub async fn collect_artifacts(
    at: &InContainer<'_>,
    settings: &Settings,
    staging: Staging,
) -> anyhow::Result<Collected> {
    let Some(spec) = &settings.buildspec.artifacts else {
        bail!("the buildspec declares no artifacts");
    };
    let base = |s: &ArtifactSpec| s.base_directory.as_ref().map(|b| b.value.clone());
    let primary = at
        .download(
            base(&spec.primary).as_deref(),
            selection(&spec.primary)?,
            &staging.primary(),
        )
        .await?;
    let mut secondary = Vec::new();
    for (id, secondary_spec) in &spec.secondary {
        let dest = staging.secondary(&id.value);
        at.download(
            base(secondary_spec).as_deref(),
            selection(secondary_spec)?,
            &dest,
        )
        .await
        .with_context(|| format!("secondary artifact `{}`", id.value))?;
        secondary.push(id.value.clone());
    }
    Ok(Collected {
        primary,
        secondary,
        staging,
    })
}

/// Copies every report group's files to `<out-dir>/reports/<group>/`; returns what was copied and
/// warnings for groups with no files (a report that found nothing should not fail the build).
pub async fn collect_reports(
    at: &InContainer<'_>,
    settings: &Settings,
) -> (Vec<String>, Vec<String>) {
    let mut copied = Vec::new();
    let mut warnings = Vec::new();
    for report in &settings.buildspec.reports {
        let files: Vec<&str> = report.files.iter().map(|f| f.value.as_str()).collect();
        let group = report.group.value.replace(['/', ':'], "_");
        let dest = settings.out_dir.join("reports").join(&group);
        let _ = std::fs::remove_dir_all(&dest);
        let result = match Selection::new(&files, &[], report.discard_paths) {
            Ok(selection) => {
                let base = report.base_directory.as_ref().map(|b| b.value.as_str());
                at.download(base, selection, &dest).await
            }
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(summary) => copied.push(format!("{} ({} files)", dest.display(), summary.files)),
            Err(e) => warnings.push(format!("report group `{}`: {e:#}", report.group.value)),
        }
    }
    (copied, warnings)
}

/// The zips to write: owned, so they can be written on a blocking thread while the layer is
/// verified.
pub struct ZipJob {
    options: artifacts::ZipOptions,
    /// `(tree, zip)` of the layer.
    layer: (PathBuf, PathBuf),
    /// `(id, tree, zip)` of each secondary artifact.
    secondary: Vec<(String, PathBuf, PathBuf)>,
}

/// What a [`ZipJob`] wrote.
pub struct Zipped {
    pub layer: ZipSummary,
    pub secondary: Vec<(String, ZipSummary)>,
}

impl ZipJob {
    /// Writes every zip next to its final path ([`pending`]); [`Finish::record`] moves them into
    /// place with the manifest, so a zip never sits beside a manifest that does not describe it.
    pub fn run(self) -> anyhow::Result<Zipped> {
        let (tree, path) = &self.layer;
        let layer = artifacts::write_zip(tree, &pending(path), &self.options)?;
        let secondary = self
            .secondary
            .into_iter()
            .map(|(id, tree, path)| {
                artifacts::write_zip(&tree, &pending(&path), &self.options).map(|zip| (id, zip))
            })
            .collect::<Result<_, _>>()?;
        Ok(Zipped { layer, secondary })
    }
}

/// Where a zip waits for its manifest.
fn pending(zip: &Path) -> PathBuf {
    let mut name = zip.file_name().unwrap_or_default().to_os_string();
    name.push(".pending");
    zip.with_file_name(name)
}

impl Zipped {
    /// Moves the zips to their final paths.
    fn land(&mut self) -> anyhow::Result<()> {
        let zips =
            std::iter::once(&mut self.layer).chain(self.secondary.iter_mut().map(|(_, zip)| zip));
        for zip in zips {
            let Some(name) = zip.path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(final_name) = name.strip_suffix(".pending") else {
                continue;
            };
            let final_path = zip.path.with_file_name(final_name);
            std::fs::rename(&zip.path, &final_path)
                .with_context(|| format!("cannot move the zip to {}", final_path.display()))?;
            zip.path = final_path;
        }
        Ok(())
    }

    /// Removes the zips that never got their manifest.
    pub fn discard(self) {
        let _ = std::fs::remove_file(&self.layer.path);
        for (_, zip) in self.secondary {
            let _ = std::fs::remove_file(&zip.path);
        }
    }
}

/// The layer zip, the secondary zips, the size checks and the manifest: only after a successful
/// build.
pub struct Finish<'a> {
    pub settings: &'a Settings,
    pub build_key: &'a str,
    pub image_id: &'a str,
    pub git_revision: Option<String>,
}

impl Finish<'_> {
    /// What [`ZipJob::run`] writes for `tree` (the layer) and the staged secondary trees.
    pub fn zip_job(&self, tree: &Path, collected: &Collected) -> anyhow::Result<ZipJob> {
        let staging = &collected.staging;
        let secondary = collected
            .secondary
            .iter()
            .map(|id| {
                let path = self.settings.out_dir.join(format!("{id}.zip"));
                (id.clone(), staging.secondary(id), path)
            })
            .collect();
        Ok(ZipJob {
            options: artifacts::ZipOptions::from_env()?,
            layer: (tree.to_path_buf(), self.settings.zip_path()),
            secondary,
        })
    }

    /// Records the zips, the size checks and the verification `checks` in the manifest and the
    /// summary.
    pub fn record(
        &self,
        zipped: Zipped,
        contents: &ExtractSummary,
        checks: Vec<Diagnostic>,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        let settings = self.settings;
        let mut zipped = zipped;
        zipped.land()?;
        let Zipped {
            layer: zip,
            secondary,
        } = zipped;
        summary.secondary.extend(
            secondary
                .into_iter()
                .map(|(id, zip)| (id, zip.path.display().to_string())),
        );
        let zip_path = settings.zip_path();

        let mut verification = verify_sizes(zip.unzipped_bytes, zip.zipped_bytes, contents);
        let checked = crate::verify::to_verification(&checks);
        verification.errors.extend(checked.errors);
        verification.warnings.extend(checked.warnings);
        verification.passed = verification.errors.is_empty();
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            layer_name: settings.layer_name.clone(),
            zip: zip_path
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            sha256: zip.sha256_hex.clone(),
            code_sha256: zip.code_sha256.clone(),
            zipped_bytes: zip.zipped_bytes,
            unzipped_bytes: zip.unzipped_bytes,
            file_count: zip.files,
            compatible_runtimes: settings.compatible_runtimes.clone(),
            architecture: settings.arch.clone(),
            image: settings.image.clone(),
            image_id: self.image_id.to_string(),
            build_key: self.build_key.to_string(),
            git_revision: self.git_revision.clone(),
            built_at: crate::util::UtcTime::now().rfc3339(),
            verification: verification.clone(),
        };
        manifest.write(&settings.manifest_path())?;
        summary.zip = Some(zip_path.display().to_string());
        summary.manifest = Some(settings.manifest_path().display().to_string());
        summary.sha256 = Some(zip.sha256_hex);
        summary.code_sha256 = Some(zip.code_sha256);
        summary.zipped_bytes = zip.zipped_bytes;
        summary.unzipped_bytes = zip.unzipped_bytes;
        summary.file_count = zip.files;
        summary.warnings.extend(verification.warnings);
        if !verification.errors.is_empty() {
            // A layer Lambda would refuse or that would crash is not a successful build; the zip
            // stays for inspection and the manifest records the failure, so deploy refuses it.
            summary.errors.extend(verification.errors);
            summary.succeeded = false;
        }
        Ok(())
    }
}

/// The layer's tree: the staged primary artifact, or, when that is a single zip the build made
/// itself, that zip's contents (extracted with the same safety rules, re-zipped deterministically).
pub fn layer_tree(collected: &Collected, json: bool) -> anyhow::Result<(PathBuf, ExtractSummary)> {
    let primary_dir = collected.staging.primary();
    match single_zip_contents(&primary_dir)? {
        Some(found) => {
            super::log::log(
                json,
                "the artifact is a single zip: using its contents as the layer",
            );
            Ok(found)
        }
        None => Ok((primary_dir, collected.primary.clone())),
    }
}

/// Lambda's size limits, with the biggest packages named when the layer is too big.
pub fn verify_sizes(unzipped: u64, zipped: u64, contents: &ExtractSummary) -> Verification {
    let mut verification = Verification::default();
    let breakdown = || {
        let biggest: Vec<String> = contents
            .biggest(BIGGEST_PACKAGES)
            .iter()
            .map(|(name, bytes)| format!("{name} {:.1} MB", *bytes as f64 / 1e6))
            .collect();
        format!("biggest packages: {}", biggest.join(", "))
    };
    if unzipped > MAX_UNZIPPED_BYTES {
        verification.errors.push(format!(
            "the layer is {unzipped} bytes unzipped, over Lambda's limit of {MAX_UNZIPPED_BYTES} bytes for a function and all its layers; {}",
            breakdown()
        ));
    }
    if zipped > MAX_INLINE_ZIP_BYTES {
        verification.warnings.push(format!(
            "the zip is {zipped} bytes, over {MAX_INLINE_ZIP_BYTES}: it cannot be uploaded inline and will go through S3; {}",
            breakdown()
        ));
    }
    verification.passed = verification.errors.is_empty();
    verification
}

/// When the artifact is exactly one zip file, the build zipped the layer itself: its contents are
/// the layer (extracted with the same safety rules, then re-zipped deterministically).
fn single_zip_contents(dir: &Path) -> anyhow::Result<Option<(PathBuf, ExtractSummary)>> {
    let entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    let [entry] = entries.as_slice() else {
        return Ok(None);
    };
    let path = entry.path();
    if !(path.is_file() && path.extension().is_some_and(|e| e == "zip")) {
        return Ok(None);
    }
    let unzipped = dir.with_file_name("unzipped");
    let contents = artifacts::unzip(&path, &unzipped, false)?;
    Ok(Some((unzipped, contents)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_fail_and_warn_with_a_breakdown() {
        let mut contents = ExtractSummary::default();
        contents.packages.insert("python/numpy".into(), 90_000_000);
        contents
            .packages
            .insert("python/pandas".into(), 200_000_000);
        let v = verify_sizes(290_000_000, 60_000_000, &contents);
        assert!(!v.passed);
        assert!(v.errors[0].contains("262144000"), "{}", v.errors[0]);
        assert!(
            v.errors[0].contains("python/pandas 200.0 MB, python/numpy 90.0 MB"),
            "{}",
            v.errors[0]
        );
        assert_eq!(v.warnings.len(), 1);
        let ok = verify_sizes(1_000, 500, &contents);
        assert!(ok.passed && ok.errors.is_empty() && ok.warnings.is_empty());
    }
}
