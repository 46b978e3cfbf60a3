//! The last stage of a build, whichever executor ran it: the staged layer tree becomes a
//! deterministic zip while `verify` judges it (the only judge: static checks, size limits, the
//! import test), then the zips land with their manifest. A layer that fails verification never
//! lands at `<out-dir>/<name>.zip`: its zip is kept as `<name>.zip.rejected` for inspection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;

use super::execute::Artifacts;
use super::log::Log;
use super::prepare::Plan;
use crate::artifacts::zip::Reuse;
use crate::artifacts::{self, ZipOptions, ZipSummary};
use crate::diagnostic::Diagnostic;
use crate::manifest::{Manifest, MANIFEST_VERSION};
use crate::verify::{self, ImportTest, Removal, Target};

/// What packaging wrote.
#[derive(Debug)]
pub struct Packaged {
    /// The layer zip: at its final path when it passed, else the rejected one.
    pub zip: ZipSummary,
    pub manifest: PathBuf,
    /// `(identifier, zip)` of each secondary artifact (only when the layer passed).
    pub secondary: Vec<(String, PathBuf)>,
    /// Everything verification found.
    pub diagnostics: Vec<Diagnostic>,
    pub passed: bool,
}

/// Zips and verifies the layer of `artifacts`, then lands the zips and the manifest.
pub async fn package(
    plan: &Plan,
    artifacts: &Artifacts,
    import_test: ImportTest<'_>,
    log: &Log,
) -> anyhow::Result<Option<Packaged>> {
    let tree = layer_tree(artifacts, log)?;
    let zips = ZipJob::new(plan, &tree, artifacts)?;
    // Ctrl-C drops this future, not the zip writer's thread.
    let _abandon = Abandon(zips.abandoned.clone());
    let zipping = tokio::task::spawn_blocking(move || zips.run());
    let verified = verify_layer(plan, &tree, import_test, log).await;
    let zipped = zipping.await.context("the zip writer stopped");
    // The import test's container went while the zip was being finished.
    let checks = match verified {
        Ok((checks, removal)) => {
            if let Some(warning) = removal.finish().await {
                log.warning(&warning);
            }
            Ok(checks)
        }
        Err(e) => Err(e),
    };
    let zipped = zipped??;
    if zipped.layer.reused_files > 0 {
        log.line(&format!(
            "zip: {} of {} files copied compressed from the previous zip (unchanged)",
            zipped.layer.reused_files, zipped.layer.files
        ));
    }
    let mut diagnostics = match checks {
        Ok(checks) => checks,
        Err(e) => {
            zipped.discard();
            return Err(e);
        }
    };
    diagnostics.extend(verify::zip_size(zipped.layer.zipped_bytes, &tree));
    for diagnostic in diagnostics.iter().filter(|d| d.rule.id == "BS312") {
        log.line(&diagnostic.headline());
    }
    let passed = !diagnostics.iter().any(Diagnostic::is_error);
    land(
        plan,
        zipped,
        diagnostics,
        passed,
        artifacts.built_by.clone(),
    )
    .map(Some)
}

/// The layer's tree: the staged primary artifact, or, when that is a single zip the build made
/// itself, that zip's contents (extracted with the same safety rules, re-zipped deterministically).
fn layer_tree(artifacts: &Artifacts, log: &Log) -> anyhow::Result<PathBuf> {
    let primary = artifacts.staging.primary();
    let entries: Vec<_> = std::fs::read_dir(&primary)?.collect::<Result<_, _>>()?;
    let [entry] = entries.as_slice() else {
        return Ok(primary);
    };
    let path = entry.path();
    let is_zip = entry.file_type()?.is_file() && path.extension().is_some_and(|e| e == "zip");
    if !is_zip {
        return Ok(primary);
    }
    log.line("the artifact is a single zip: using its contents as the layer");
    let unzipped = artifacts.staging.path().join("unzipped");
    artifacts::unzip(&path, &unzipped, false)?;
    Ok(unzipped)
}

/// `verify`'s static checks and, unless skipped, the import test (whose container is still being
/// removed).
async fn verify_layer(
    plan: &Plan,
    tree: &Path,
    import_test: ImportTest<'_>,
    log: &Log,
) -> anyhow::Result<(Vec<Diagnostic>, Removal)> {
    log.container("Verifying the layer");
    let target = Target {
        runtimes: plan.layer.runtimes.clone(),
        architectures: vec![plan.arch.clone()],
    };
    // The static checks run while the import test waits for its container.
    let dir = tree.to_path_buf();
    let static_checks = tokio::task::spawn_blocking(move || verify::verify_tree(&dir, &target));
    let imported = verify::import_test(import_test, tree).await?;
    let (imports, removal) = match imported {
        Some(outcome) => {
            log.line(&format!(
                "import smoke test: {} modules imported, {} failed",
                outcome.imported.len(),
                outcome.diagnostics.len()
            ));
            (outcome.diagnostics, outcome.removal)
        }
        None => (Vec::new(), Removal::default()),
    };
    let mut checks = match static_checks.await {
        Ok(checks) => checks,
        Err(e) => {
            if let Some(warning) = removal.finish().await {
                log.warning(&warning);
            }
            return Err(e).context("the static checks stopped");
        }
    };
    checks.extend(imports);
    for check in &checks {
        log.line(&check.headline());
    }
    Ok((checks, removal))
}

/// The zips to write: owned, so they can be written on a blocking thread while the layer is
/// verified. Each goes next to its final path ([`pending`]) until [`land`] moves it.
struct ZipJob {
    options: ZipOptions,
    /// The layer's manifest, whose zip's unchanged files may be copied (not with `--no-cache`).
    previous: Option<PathBuf>,
    /// `(tree, zip)` of the layer.
    layer: (PathBuf, PathBuf),
    /// `(id, tree, zip)` of each secondary artifact.
    secondary: Vec<(String, PathBuf, PathBuf)>,
    /// Set once nobody waits for the zips any more (see [`Abandon`]).
    abandoned: Arc<AtomicBool>,
}

/// Marks a [`ZipJob`] abandoned when dropped: an interrupted build drops packaging while the job
/// runs on, and the zips it then finishes would be left after the interrupted build removed the
/// pending ones ([`remove_pending`]), so the job removes them itself.
struct Abandon(Arc<AtomicBool>);

impl Drop for Abandon {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// What a [`ZipJob`] wrote, at the pending paths.
struct Zipped {
    layer: ZipSummary,
    secondary: Vec<(String, ZipSummary)>,
}

impl ZipJob {
    fn new(plan: &Plan, tree: &Path, artifacts: &Artifacts) -> anyhow::Result<ZipJob> {
        let secondary = artifacts
            .secondary
            .iter()
            .map(|id| {
                artifacts::check_identifier(id)?;
                let zip = secondary_zip(plan, id);
                if zip == plan.zip_path() {
                    anyhow::bail!("the secondary artifact {id} would be written over the layer's zip {}: rename one of them", zip.display());
                }
                Ok((id.clone(), artifacts.staging.secondary(id)?, zip))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(ZipJob {
            options: ZipOptions::from_env()?,
            previous: plan.options.cache.then(|| plan.manifest_path()),
            layer: (tree.to_path_buf(), plan.zip_path()),
            secondary,
            abandoned: Arc::default(),
        })
    }

    fn run(self) -> anyhow::Result<Zipped> {
        let (tree, path) = &self.layer;
        let layer_options = ZipOptions {
            // Here, on the blocking thread: reading the old zip's listing hashes it.
            reuse: self.previous.as_deref().and_then(reusable_zip),
            ..self.options.clone()
        };
        let layer = artifacts::write_zip(tree, &pending(path), &layer_options)?;
        let mut secondary = Vec::new();
        for (id, tree, path) in self.secondary {
            match artifacts::write_zip(&tree, &pending(&path), &self.options) {
                Ok(zip) => secondary.push((id, zip)),
                Err(e) => {
                    Zipped { layer, secondary }.discard();
                    return Err(e);
                }
            }
        }
        let zipped = Zipped { layer, secondary };
        // Checked after the zips were written: when it was not set yet, the build's own clean-up
        // comes later and removes them.
        if self.abandoned.load(Ordering::SeqCst) {
            zipped.discard();
            anyhow::bail!("the build was interrupted: its zips are removed");
        }
        Ok(zipped)
    }
}

/// The layer's last zip, when this zip writer made it (its manifest says so), it is still the
/// zip its manifest describes and its content listing is the one the manifest's digest covers:
/// its unchanged files are copied rather than compressed again (the bytes are those of a full
/// compression).
fn reusable_zip(manifest_path: &Path) -> Option<Reuse> {
    let manifest = Manifest::read(manifest_path).ok()?;
    if manifest.zip_writer.as_deref() != Some(artifacts::zip::WRITER) {
        return None;
    }
    let zip = manifest.zip_beside(manifest_path)?;
    // The zip's bytes are checked against the manifest when the zip writer opens it.
    let zip_hash = (manifest.sha256.as_str(), manifest.zipped_bytes);
    Reuse::load(&zip, zip_hash, manifest.content_sha256.as_deref()?)
}

impl Zipped {
    /// Removes the zips that never got their manifest.
    fn discard(self) {
        let _ = std::fs::remove_file(&self.layer.path);
        for (_, zip) in self.secondary {
            let _ = std::fs::remove_file(&zip.path);
        }
    }
}

/// Where the secondary artifact `id` is zipped: `<id>.zip`, and for a cell of a matrix
/// `<LayerName>-<cell>-<id>.zip` (the cells share the out-dir).
fn secondary_zip(plan: &Plan, id: &str) -> PathBuf {
    match plan.layer.cell {
        Some(_) => plan
            .out_dir
            .join(format!("{}-{id}.zip", plan.layer.file_stem())),
        None => plan.out_dir.join(format!("{id}.zip")),
    }
}

/// Where a zip waits for its manifest.
fn pending(zip: &Path) -> PathBuf {
    with_suffix(zip, ".pending")
}

/// Where the zip of a layer that failed verification is kept.
pub fn rejected(zip: &Path) -> PathBuf {
    with_suffix(zip, ".rejected")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Moves the zips into place and writes the manifest; a layer that failed keeps only its
/// rejected zip and a manifest that says so (any older zip of the layer is removed: it is not
/// what the sources build any more).
fn land(
    plan: &Plan,
    zipped: Zipped,
    diagnostics: Vec<Diagnostic>,
    passed: bool,
    built_by: Option<crate::manifest::RemoteBuild>,
) -> anyhow::Result<Packaged> {
    let final_zip = plan.zip_path();
    let layer_zip = if passed {
        final_zip.clone()
    } else {
        rejected(&final_zip)
    };
    let mut layer = zipped.layer;
    rename(&layer.path, &layer_zip)?;
    layer.path = layer_zip;
    let mut secondary = Vec::new();
    for (id, zip) in zipped.secondary {
        let final_path = secondary_zip(plan, &id);
        if passed {
            rename(&zip.path, &final_path)?;
            secondary.push((id, final_path));
        } else {
            let _ = std::fs::remove_file(&zip.path);
        }
    }
    // The listing goes with whichever zip landed: a rebuild after a rejected build copies from
    // the rejected zip (its manifest names it).
    keep_listing(&layer.path, &layer.listing);
    if !passed {
        let _ = std::fs::remove_file(&final_zip);
        let _ = std::fs::remove_file(artifacts::zip::listing_path(&final_zip));
    } else {
        let _ = std::fs::remove_file(artifacts::zip::listing_path(&rejected(&final_zip)));
    }
    let mut manifest = manifest(plan, &layer, &diagnostics);
    manifest.built_by = built_by;
    manifest.write(&plan.manifest_path())?;
    Ok(Packaged {
        zip: layer,
        manifest: plan.manifest_path(),
        secondary,
        diagnostics,
        passed,
    })
}

/// Writes the zip's content listing beside it, for the next build to copy from the zip. Only a
/// cache: when it cannot be written, the next build compresses everything.
fn keep_listing(zip: &Path, listing: &[u8]) {
    let path = artifacts::zip::listing_path(zip);
    if crate::util::write_build_output(&path, listing).is_err() {
        let _ = std::fs::remove_file(&path);
    }
}

/// Removes the zips an interrupted build left waiting for their manifest.
pub fn remove_pending(plan: &Plan) {
    let zips = std::iter::once(plan.zip_path()).chain(
        plan.buildspec
            .artifacts
            .iter()
            .flat_map(|a| &a.secondary)
            .filter(|(id, _)| artifacts::is_identifier(&id.value))
            .map(|(id, _)| secondary_zip(plan, &id.value)),
    );
    for zip in zips {
        let _ = std::fs::remove_file(pending(&zip));
    }
}

fn rename(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::rename(from, to).with_context(|| format!("cannot move the zip to {}", to.display()))
}

fn manifest(plan: &Plan, zip: &ZipSummary, diagnostics: &[Diagnostic]) -> Manifest {
    Manifest {
        manifest_version: MANIFEST_VERSION,
        layer_name: plan.layer.layer_name.clone(),
        zip: zip
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        sha256: zip.sha256_hex.clone(),
        code_sha256: zip.code_sha256.clone(),
        content_sha256: Some(zip.content_sha256.clone()),
        zip_writer: Some(crate::artifacts::zip::WRITER.to_string()),
        zipped_bytes: zip.zipped_bytes,
        unzipped_bytes: zip.unzipped_bytes,
        file_count: zip.files,
        compatible_runtimes: plan.layer.runtime_ids(),
        architecture: plan.arch.clone(),
        image: plan.image.clone(),
        image_id: plan.image_id.clone(),
        build_key: plan.build_key.clone(),
        git_revision: plan.git_revision.clone(),
        built_at: crate::util::UtcTime::now().rfc3339(),
        verification: verify::to_verification(diagnostics),
        built_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(dir: &Path) -> ZipJob {
        let tree = dir.join("tree");
        std::fs::create_dir_all(tree.join("python")).unwrap();
        std::fs::write(tree.join("python/m.py"), "X = 1\n").unwrap();
        ZipJob {
            options: ZipOptions::default(),
            previous: None,
            layer: (tree, dir.join("layer.zip")),
            secondary: Vec::new(),
            abandoned: Arc::default(),
        }
    }

    #[test]
    fn an_abandoned_zip_job_leaves_no_zip_behind() {
        let dir = tempfile::tempdir().unwrap();
        let pending = pending(&dir.path().join("layer.zip"));
        let finished = job(dir.path()).run().unwrap();
        assert_eq!(finished.layer.path, pending);
        assert!(pending.exists());
        std::fs::remove_file(&pending).unwrap();

        let abandoned = job(dir.path());
        drop(Abandon(abandoned.abandoned.clone()));
        assert!(abandoned.run().is_err());
        assert!(!pending.exists(), "an interrupted build's zip was left");
    }
}
