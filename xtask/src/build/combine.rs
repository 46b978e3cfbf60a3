//! `--multi-runtime`: one layer per architecture holding every built cell's packages, each runtime's
//! in `python/lib/python3.X/site-packages` (Lambda puts the running version's directory on
//! `sys.path`), when they fit in one layer. Each cell was built and verified on its own, its import
//! test in its own image; the combined tree is verified again (statically, against every runtime
//! it claims), zipped deterministically and gets a manifest of its own, which `deploy` publishes
//! with all its runtimes.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use super::staging::Staging;
use crate::artifacts::{unzip, zip as layer_zip};
use crate::diagnostic::Diagnostic;
use crate::layer::{short_name, MAX_UNZIPPED_BYTES};
use crate::manifest::{Manifest, MANIFEST_VERSION};
use crate::runtime::Runtime;
use crate::verify::{self, Target};

/// One built cell to combine: its runtime, its manifest and zip.
pub struct BuiltCell {
    pub runtime: &'static Runtime,
    pub manifest: Manifest,
    pub zip: PathBuf,
}

/// A combined layer, written.
#[derive(Debug)]
pub struct Combined {
    pub zip: PathBuf,
    pub manifest: Manifest,
}

/// Combines `cells` (one architecture, different runtimes) into `<out_dir>/<LayerName>-<arch>.zip`
/// with its manifest; an error when they overlap, exceed Lambda's limits or fail verification.
pub fn combine(
    out_dir: &Path,
    layer_name: &str,
    arch: &str,
    cells: &[BuiltCell],
) -> anyhow::Result<Combined> {
    if cells.len() < 2 {
        bail!("a multi-runtime layer needs at least two runtimes built for {arch}");
    }
    let stem = format!("{}-{arch}", short_name(layer_name));
    let _lock = super::lock_out_dir(out_dir, &stem)?;
    let staging = Staging::create(out_dir)?;
    let tree = staging.primary();
    let mut unzipped = 0u64;
    for cell in cells {
        unzipped += cell.manifest.unzipped_bytes;
        if unzipped > MAX_UNZIPPED_BYTES {
            bail!("the {arch} cells' layers add up to more than Lambda's {MAX_UNZIPPED_BYTES} bytes unzipped: publish them per cell (deploy --cells)");
        }
        place(&staging, &tree, cell)?;
    }
    let target = Target {
        runtimes: cells.iter().map(|c| c.runtime).collect(),
        architectures: vec![arch.to_string()],
    };
    let mut diagnostics = verify::verify_tree(&tree, &target);
    let errors: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.is_error()).collect();
    if let Some(first) = errors.first() {
        bail!(
            "the combined {arch} layer fails verification ({} error(s)), first: {}",
            errors.len(),
            first.headline()
        );
    }
    let zip_path = out_dir.join(format!("{stem}.zip"));
    let summary = layer_zip::write_zip(&tree, &zip_path, &layer_zip::ZipOptions::from_env()?)?;
    diagnostics.extend(verify::zip_size(summary.zipped_bytes, &tree));
    let manifest = combined_manifest(layer_name, arch, cells, &summary, &diagnostics);
    manifest.write(&out_dir.join(format!("{stem}.json")))?;
    Ok(Combined {
        zip: zip_path,
        manifest,
    })
}

/// Unzips one cell and moves its `python/` into its version's site-packages in `tree`. Anything
/// outside `python/` (shared libraries in `lib/`, say) would be one copy for every runtime: not
/// combined.
fn place(staging: &Staging, tree: &Path, cell: &BuiltCell) -> anyhow::Result<()> {
    let id = cell.runtime.id;
    let dir = staging.path().join(format!("cell-{id}"));
    unzip::unzip(&cell.zip, &dir, true)
        .map_err(|e| anyhow::anyhow!("cannot read the {id} layer {}: {e}", cell.zip.display()))?;
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name();
        if name != "python" {
            bail!(
                "the {id} layer has {} outside python/: only python/ can be combined per runtime; publish per cell",
                name.to_string_lossy()
            );
        }
    }
    let python = dir.join("python");
    if !python.is_dir() {
        bail!("the {id} layer has no python/ directory: nothing to combine");
    }
    let versioned = python
        .join("lib")
        .join(format!("python{}", cell.runtime.python_version()));
    let site = tree
        .join("python/lib")
        .join(format!("python{}", cell.runtime.python_version()))
        .join("site-packages");
    std::fs::create_dir_all(&site)?;
    for entry in std::fs::read_dir(&python)? {
        let entry = entry?;
        if entry.file_name() == "lib" && python.join("lib").is_dir() {
            move_lib(&python.join("lib"), &versioned, &site, id)?;
            continue;
        }
        std::fs::rename(entry.path(), site.join(entry.file_name()))
            .with_context(|| format!("cannot move {}", entry.path().display()))?;
    }
    Ok(())
}

/// `python/lib` of a cell: its own `python3.X/site-packages` merges into the site-packages; any
/// other content is a package named `lib` and moves like one.
fn move_lib(lib: &Path, versioned: &Path, site: &Path, id: &str) -> anyhow::Result<()> {
    let only_versioned = std::fs::read_dir(lib)?
        .flatten()
        .all(|e| e.file_name().to_string_lossy().starts_with("python3"));
    if !only_versioned {
        return std::fs::rename(lib, site.join("lib")).context("cannot move python/lib");
    }
    let own = versioned.join("site-packages");
    for entry in std::fs::read_dir(lib)?.flatten() {
        if entry.path() != *versioned {
            bail!(
                "the {id} layer has {}: packages for another Python version",
                entry.path().display()
            );
        }
    }
    if own.is_dir() {
        for entry in std::fs::read_dir(&own)?.flatten() {
            let to = site.join(entry.file_name());
            if to.exists() {
                bail!(
                    "the {id} layer has {} both in python/ and in its site-packages",
                    entry.file_name().to_string_lossy()
                );
            }
            std::fs::rename(entry.path(), to)?;
        }
    }
    Ok(())
}

fn combined_manifest(
    layer_name: &str,
    arch: &str,
    cells: &[BuiltCell],
    zip: &layer_zip::ZipSummary,
    diagnostics: &[Diagnostic],
) -> Manifest {
    let join = |f: &dyn Fn(&Manifest) -> &str| {
        cells
            .iter()
            .map(|c| f(&c.manifest))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut key = Sha256::new();
    for cell in cells {
        key.update(cell.manifest.build_key.as_bytes());
        key.update([0]);
    }
    Manifest {
        manifest_version: MANIFEST_VERSION,
        layer_name: layer_name.to_string(),
        zip: zip
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default(),
        sha256: zip.sha256_hex.clone(),
        code_sha256: zip.code_sha256.clone(),
        zipped_bytes: zip.zipped_bytes,
        unzipped_bytes: zip.unzipped_bytes,
        file_count: zip.files,
        compatible_runtimes: cells.iter().map(|c| c.runtime.id.to_string()).collect(),
        architecture: arch.to_string(),
        image: join(&|m| m.image.as_str()),
        image_id: join(&|m| m.image_id.as_str()),
        build_key: crate::util::hex(&key.finalize()),
        git_revision: cells[0].manifest.git_revision.clone(),
        built_at: crate::util::UtcTime::now().rfc3339(),
        verification: verify::to_verification(diagnostics),
    }
}
