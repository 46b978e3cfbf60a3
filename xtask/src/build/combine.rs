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

/// One built cell to combine: its runtime and its manifest.
pub struct BuiltCell {
    pub runtime: &'static Runtime,
    pub manifest_path: PathBuf,
}

/// A cell's manifest and zip, read (and the zip checked) while its lock is held.
struct Loaded {
    runtime: &'static Runtime,
    manifest: Manifest,
    zip: PathBuf,
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
    remove_previous(out_dir, &stem)?;
    // No build may replace a cell's zip while it is read (builds take the same locks).
    let mut cell_locks = Vec::new();
    let mut loaded = Vec::new();
    for cell in cells {
        let cell_stem = cell.manifest_path.file_stem().unwrap_or_default();
        cell_locks.push(super::lock_out_dir(out_dir, &cell_stem.to_string_lossy())?);
        let manifest = Manifest::read(&cell.manifest_path)?;
        let zip = manifest.check_zip(&cell.manifest_path)?;
        loaded.push(Loaded {
            runtime: cell.runtime,
            manifest,
            zip,
        });
    }
    let staging = Staging::create(out_dir)?;
    let tree = staging.primary();
    let mut unzipped = 0u64;
    for cell in &loaded {
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
    let manifest = combined_manifest(layer_name, arch, &loaded, &summary, &diagnostics);
    manifest.write(&out_dir.join(format!("{stem}.json")))?;
    Ok(Combined {
        zip: zip_path,
        manifest,
    })
}

/// A multi-runtime layer that cannot be made leaves none behind: removes the previous one of
/// `layer_name` for `arch`, if any (deploy would publish it).
pub fn remove_stale(out_dir: &Path, layer_name: &str, arch: &str) -> anyhow::Result<()> {
    crate::layer::validate_layer_name(layer_name)?;
    let stem = format!("{}-{arch}", short_name(layer_name));
    let _lock = super::lock_out_dir(out_dir, &stem)?;
    remove_previous(out_dir, &stem)
}

fn remove_previous(out_dir: &Path, stem: &str) -> anyhow::Result<()> {
    for extension in ["json", "zip"] {
        let path = out_dir.join(format!("{stem}.{extension}"));
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// Unzips one cell and moves what its runtime sees (`python/*` and
/// `python/lib/python3.X/site-packages/*`) into that version's site-packages in `tree`. Anything
/// else is refused rather than dropped or moved where it would mean something else: content
/// outside `python/` (a `lib/` of shared libraries would be one copy for every runtime), another
/// version's directory, files beside `site-packages`, a name in both places, and symlinks (a
/// relative link moved one level deeper would point elsewhere).
fn place(staging: &Staging, tree: &Path, cell: &Loaded) -> anyhow::Result<()> {
    let id = cell.runtime.id;
    let dir = staging.path().join(format!("cell-{id}"));
    unzip::unzip(&cell.zip, &dir, true)
        .map_err(|e| anyhow::anyhow!("cannot read the {id} layer {}: {e}", cell.zip.display()))?;
    let refuse = |what: String| -> anyhow::Result<()> {
        bail!("the {id} layer {what}: it cannot be combined with other runtimes; publish it per cell (deploy --cells)")
    };
    let link = layer_zip::collect_entries(&dir)?
        .into_iter()
        .find(|e| matches!(e.kind, layer_zip::ZipEntryKind::Symlink { .. }));
    if let Some(link) = link {
        refuse(format!("has the symlink {}", link.name))?;
    }
    for name in names(&dir)? {
        if name != "python" {
            refuse(format!("has {name} outside python/"))?;
        }
    }
    let version = format!("python{}", cell.runtime.python_version());
    let site = tree.join("python/lib").join(&version).join("site-packages");
    std::fs::create_dir_all(&site)?;
    let python = dir.join("python");
    for name in names(&python)? {
        let path = python.join(&name);
        match name.as_str() {
            "lib" if path.is_dir() => place_lib(&path, &version, &site, &refuse, id)?,
            _ => move_new(&path, &site.join(&name), id)?,
        }
    }
    Ok(())
}

/// `python/lib` of a cell: its own `python3.X/site-packages` merges into the site-packages; other
/// content is a package named `lib` (Lambda has `python/` on `sys.path`) and moves like one.
fn place_lib(
    lib: &Path,
    version: &str,
    site: &Path,
    refuse: &dyn Fn(String) -> anyhow::Result<()>,
    id: &str,
) -> anyhow::Result<()> {
    for name in names(lib)? {
        let path = lib.join(&name);
        if name == version {
            for inner in names(&path)? {
                if inner != "site-packages" {
                    refuse(format!(
                        "has python/lib/{version}/{inner}, which Lambda does not read"
                    ))?;
                }
            }
            let own = path.join("site-packages");
            for package in names(&own)? {
                move_new(&own.join(&package), &site.join(&package), id)?;
            }
        } else if name.starts_with("python3.") {
            refuse(format!(
                "has python/lib/{name}: packages for another Python version"
            ))?;
        } else {
            std::fs::create_dir_all(site.join("lib"))?;
            move_new(&path, &site.join("lib").join(&name), id)?;
        }
    }
    Ok(())
}

/// The names in `dir` (none when it does not exist), sorted.
fn names(dir: &Path) -> anyhow::Result<Vec<String>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    let listing =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in listing {
        names.push(entry?.file_name().to_string_lossy().to_string());
    }
    names.sort();
    Ok(names)
}

/// Moves `from` to `to`, which must not exist: one name in two places of a cell is refused.
fn move_new(from: &Path, to: &Path, id: &str) -> anyhow::Result<()> {
    if to.symlink_metadata().is_ok() {
        let name = to.file_name().unwrap_or_default().to_string_lossy();
        bail!("the {id} layer has {name} both in python/ and in its site-packages: Python would import only one of them");
    }
    std::fs::rename(from, to).with_context(|| format!("cannot move {}", from.display()))
}

fn combined_manifest(
    layer_name: &str,
    arch: &str,
    cells: &[Loaded],
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
        content_sha256: Some(zip.content_sha256.clone()),
        zip_writer: Some(layer_zip::WRITER.to_string()),
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
        built_by: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Verification;

    /// A built cell of `runtime` holding `files` (`path`, content; a content starting with `->`
    /// is a symlink to the rest), zipped and with its manifest in `out`.
    fn cell(out: &Path, runtime: &str, files: &[(&str, &str)]) -> BuiltCell {
        let tree = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let path = tree.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            match content.strip_prefix("->") {
                Some(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
                None => std::fs::write(&path, content).unwrap(),
            }
        }
        let stem = format!("layer-{runtime}-x86_64");
        let zip = out.join(format!("{stem}.zip"));
        let summary = layer_zip::write_zip(tree.path(), &zip, &Default::default()).unwrap();
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            layer_name: "layer".into(),
            zip: format!("{stem}.zip"),
            sha256: summary.sha256_hex,
            code_sha256: summary.code_sha256,
            content_sha256: Some(summary.content_sha256),
            zip_writer: None,
            zipped_bytes: summary.zipped_bytes,
            unzipped_bytes: summary.unzipped_bytes,
            file_count: summary.files,
            compatible_runtimes: vec![runtime.into()],
            architecture: "x86_64".into(),
            image: "img".into(),
            image_id: "sha256:1".into(),
            build_key: runtime.into(),
            git_revision: None,
            built_at: "2026-12-02T00:00:00Z".into(),
            verification: Verification {
                passed: true,
                ..Default::default()
            },
            built_by: None,
        };
        let manifest_path = out.join(format!("{stem}.json"));
        manifest.write(&manifest_path).unwrap();
        BuiltCell {
            runtime: Runtime::find(runtime).unwrap(),
            manifest_path,
        }
    }

    fn names(zip: &Path) -> Vec<String> {
        let mut names: Vec<String> = crate::artifacts::digest::read_zip(zip)
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn each_runtime_gets_what_it_saw_in_its_own_site_packages() {
        let out = tempfile::tempdir().unwrap();
        let cells = [
            cell(
                out.path(),
                "python3.9",
                &[
                    ("python/six.py", "a"),
                    ("python/lib/README.txt", "a package named lib"),
                    ("python/lib/python3.9/site-packages/pkg/__init__.py", ""),
                ],
            ),
            cell(out.path(), "python3.13", &[("python/six.py", "b")]),
        ];
        let combined = combine(out.path(), "layer", "x86_64", &cells).unwrap();
        assert_eq!(
            names(&combined.zip),
            [
                "python/lib/python3.13/site-packages/six.py",
                "python/lib/python3.9/site-packages/lib/README.txt",
                "python/lib/python3.9/site-packages/pkg/__init__.py",
                "python/lib/python3.9/site-packages/six.py",
            ]
        );
        assert_eq!(
            combined.manifest.compatible_runtimes,
            ["python3.9", "python3.13"]
        );
    }

    #[test]
    fn what_would_change_meaning_is_refused_and_no_older_layer_stays() {
        let out = tempfile::tempdir().unwrap();
        let other = cell(out.path(), "python3.13", &[("python/six.py", "b")]);
        let good = cell(out.path(), "python3.9", &[("python/six.py", "a")]);
        let combined = combine(out.path(), "layer", "x86_64", &[good, other]).unwrap();
        assert!(combined.zip.exists());
        for (files, expected) in [
            (
                vec![
                    ("python/foo.py", "top"),
                    ("python/lib/python3.9/site-packages/foo.py", "site"),
                ],
                "foo.py both in python/ and in its site-packages",
            ),
            (
                vec![("python/alias", "->six.py"), ("python/six.py", "a")],
                "has the symlink python/alias",
            ),
            (
                vec![("python/lib/python3.9/extra.pth", "x")],
                "has python/lib/python3.9/extra.pth, which Lambda does not read",
            ),
            (
                vec![("python/lib/python3.12/site-packages/x.py", "x")],
                "packages for another Python version",
            ),
            (vec![("bin/tool", "x")], "has bin outside python/"),
        ] {
            let other = cell(out.path(), "python3.13", &[("python/six.py", "b")]);
            let bad = cell(out.path(), "python3.9", &files);
            let error = combine(out.path(), "layer", "x86_64", &[bad, other]).unwrap_err();
            let error = format!("{error:#}");
            assert!(error.contains(expected), "{error}");
            assert!(
                !combined.zip.exists(),
                "the older combined zip is still there"
            );
            assert!(!out.path().join("layer-x86_64.json").exists());
        }
    }
}
