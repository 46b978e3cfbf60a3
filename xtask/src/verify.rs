//! `cargo xtask verify-layer`: checks a built layer (a directory or a zip) against the runtimes
//! and architectures it claims before it can ship: native files (CPU, glibc, musl), CPython ABI
//! tags, wheel tags, layout, stray bytecode, bloat, a bundled AWS SDK, and an import smoke test
//! in the build image. `build-layer` runs the same checks through [`verify_tree`] and
//! [`import_smoke_test`].
//!
//! Parts: `elf` (ELF facts), `abi` (extension and wheel tags), `checks` (the static checks of a
//! tree) and `import` (the Docker import test).

pub mod abi;
mod checks;
pub mod elf;
mod import;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};

pub use import::{
    import_smoke_test, import_smoke_test_in, modules_from_record, top_level_modules, ImportOutcome,
    ImportTested, LayerContainer, Module, Removal, IMPORT_TIMEOUT_SECS,
};

use crate::diagnostic::{Diagnostic, Severity};
use crate::engine::Engine;
use crate::layer::{self, LayerTarget, Wanted};
use crate::manifest::Verification;
use crate::report::{self, Format};
use crate::runtime::Runtime;

/// What a layer claims to run on: its CompatibleRuntimes and CompatibleArchitectures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub runtimes: Vec<&'static Runtime>,
    /// `x86_64` and/or `arm64`.
    pub architectures: Vec<String>,
}

impl Target {
    /// A target from runtime ids (`python3.9`) and architectures; unknown names are errors.
    pub fn new<R: AsRef<str>, A: AsRef<str>>(
        runtimes: &[R],
        architectures: &[A],
    ) -> anyhow::Result<Target> {
        let architectures: Vec<String> = architectures
            .iter()
            .map(|a| a.as_ref().to_string())
            .collect();
        Ok(Target {
            runtimes: layer::runtimes(runtimes)?,
            architectures: layer::architectures(architectures)?,
        })
    }
}

/// Every static check (no Docker) of the layer tree at `dir` (the directory holding `python/`),
/// sorted by file.
pub fn verify_tree(dir: &Path, target: &Target) -> Vec<Diagnostic> {
    checks::run(dir, target)
}

/// Diagnostics as the manifest records them: one line each, errors and warnings apart.
pub fn to_verification(diagnostics: &[Diagnostic]) -> Verification {
    let line = |d: &Diagnostic| {
        let position = d.position().map(|p| format!("{p}: ")).unwrap_or_default();
        format!("{position}{} {}: {}", d.rule.id, d.rule.name, d.message)
    };
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(line)
        .collect();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(line)
        .collect();
    Verification {
        passed: errors.is_empty(),
        errors,
        warnings,
    }
}

/// Whether, and where, the import smoke test runs.
#[allow(clippy::large_enum_variant)] // one value per build
pub enum ImportTest<'a> {
    Skip,
    /// In a container of `image`; `ready` is one started ahead with the layer's directory
    /// mounted (used when it mounts the tree being tested, else removed).
    Run {
        engine: &'a Engine,
        image: &'a str,
        ready: Option<LayerContainer>,
        /// How many times slower than native the image runs (QEMU emulation): timeouts scale.
        slowdown: u32,
    },
}

/// What the import test found.
#[derive(Debug, Default)]
pub struct ImportResult {
    pub imported: Vec<String>,
    /// One BS310 per module that did not import.
    pub diagnostics: Vec<Diagnostic>,
    /// The test's container, being removed: wait for it before exiting.
    pub removal: Removal,
}

/// Runs the import smoke test on the tree at `dir`, unless skipped (`Ok(None)`). An error means
/// the test itself could not run (Docker, the image), not that a module failed.
pub async fn import_test(test: ImportTest<'_>, dir: &Path) -> anyhow::Result<Option<ImportResult>> {
    let ImportTest::Run {
        engine,
        image,
        ready,
        slowdown,
    } = test
    else {
        return Ok(None);
    };
    let tested = import_smoke_test_in(engine, image, dir, ready, slowdown)
        .await
        .context("the import smoke test could not run (--no-import-test skips it)")?;
    Ok(Some(ImportResult {
        imported: tested.outcome.imported,
        diagnostics: tested.diagnostics,
        removal: tested.removal,
    }))
}

/// A zip of `zipped` bytes of the tree at `dir`, against the inline upload limit (BS312).
pub fn zip_size(zipped: u64, dir: &Path) -> Option<Diagnostic> {
    checks::zip_size(zipped, dir)
}

/// Check a built layer before it ships: native files against the runtimes' glibc and the
/// architectures, CPython ABI and wheel tags, layout, size limits, and an import of every
/// top-level module in the build image with only the layer on sys.path. Exits 1 when there are
/// errors.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyLayer {
    /// The layer: a directory holding python/, or a zip [default: target/layer/<LayerName>.zip].
    pub layer: Option<PathBuf>,
    /// A runtime the layer is for, e.g. python3.12 (repeatable) [default: the template's
    /// CompatibleRuntimes, else python3.9].
    #[arg(long = "runtime")]
    pub runtimes: Vec<String>,
    /// An architecture the layer is for (repeatable) [default: the template's
    /// CompatibleArchitectures, else x86_64].
    #[arg(long = "arch", value_parser = ["x86_64", "arm64"])]
    pub architectures: Vec<String>,
    /// The layer template [default: template.yaml in the workspace root, when present].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Which of the template's layers, when it has several.
    #[arg(long)]
    pub layer_name: Option<String>,
    /// The image for the import test [default: the first runtime's SAM build image].
    #[arg(long, env = "LAYER_BUILD_IMAGE")]
    pub image: Option<String>,
    /// Skip the import smoke test (no Docker needed).
    #[arg(long)]
    pub no_import_test: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

impl VerifyLayer {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let root = crate::util::project_root();
        let template = layer::read_template(self.template.as_deref(), &root)?;
        let wanted = Wanted {
            layer_name: self.layer_name.clone(),
            runtimes: self.runtimes.clone(),
            architectures: self.architectures.clone(),
            ..Wanted::default()
        };
        let mut resolved = LayerTarget::resolve(&wanted, template.as_ref())?;
        if resolved.runtimes.is_empty() {
            eprintln!(
                "warning: no runtime given (--runtime, or the template's CompatibleRuntimes): checking for {}",
                layer::DEFAULT_RUNTIME
            );
            resolved.runtimes = vec![layer::default_runtime()];
        }
        let target = Target {
            runtimes: resolved.runtimes.clone(),
            architectures: resolved.architectures.clone(),
        };
        let layer_path = match &self.layer {
            Some(path) => path.clone(),
            None => resolved.zip_path(&root.join("target").join("layer")),
        };
        let unzipped;
        let (dir, zipped) = if layer_path.is_dir() {
            (layer_path.clone(), None)
        } else if layer_path.is_file() {
            unzipped = tempfile::tempdir().context("cannot create a temporary directory")?;
            crate::artifacts::unzip(&layer_path, unzipped.path(), true)
                .with_context(|| format!("cannot unzip {}", layer_path.display()))?;
            let size = std::fs::metadata(&layer_path).map(|m| m.len()).ok();
            (unzipped.path().to_path_buf(), size)
        } else {
            bail!(
                "{} does not exist (give a layer directory or zip, or build one with `cargo xtask build-layer`)",
                layer_path.display()
            );
        };

        let mut diagnostics = verify_tree(&dir, &target);
        diagnostics.extend(zipped.and_then(|bytes| zip_size(bytes, &dir)));
        if !self.no_import_test {
            let image = self
                .image
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| target.runtimes[0].build_image_for(&target.architectures[0]));
            let tokio = tokio::runtime::Runtime::new()?;
            let result = tokio.block_on(async {
                let engine = Engine::connect().await?;
                engine
                    .ensure_image(&image, None, |_| {})
                    .await
                    .with_context(|| format!("cannot get the image {image}"))?;
                let test = ImportTest::Run {
                    engine: &engine,
                    image: &image,
                    ready: None,
                    slowdown: 1,
                };
                let Some(result) = import_test(test, &dir).await? else {
                    return anyhow::Ok(Vec::new());
                };
                if let Some(warning) = result.removal.finish().await {
                    eprintln!("warning: {warning}");
                }
                anyhow::Ok(result.diagnostics)
            });
            diagnostics.extend(result?);
        }
        crate::diagnostic::sort(&mut diagnostics);

        let color = self.format == Format::Human
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none();
        let text = report::render(self.format, &diagnostics, color);
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(ExitCode::from(u8::from(
            diagnostics.iter().any(Diagnostic::is_error),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_refuse_unknown_names() {
        let target = Target::new(&["python3.9", "python3.9", "python3.12"], &["arm64"]).unwrap();
        assert_eq!(target.runtimes.len(), 2);
        assert!(Target::new(&["python2.7"], &["x86_64"]).is_err());
        assert!(Target::new(&["python3.9"], &["x86"]).is_err());
    }
}
