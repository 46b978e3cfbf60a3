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
    LayerContainer, Module, IMPORT_TIMEOUT_SECS,
};

use crate::diagnostic::{Diagnostic, Severity};
use crate::engine::Engine;
use crate::manifest::Verification;
use crate::report::{self, Format};
use crate::runtime::{Runtime, ARCHITECTURES, RUNTIMES};
use crate::template::Template;

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
        let mut target = Target {
            runtimes: Vec::new(),
            architectures: Vec::new(),
        };
        for id in runtimes {
            let id = id.as_ref();
            let Some(runtime) = Runtime::find(id) else {
                let known: Vec<_> = RUNTIMES.iter().map(|r| r.id).collect();
                bail!("unknown runtime `{id}` (supported: {})", known.join(", "));
            };
            if !target.runtimes.contains(&runtime) {
                target.runtimes.push(runtime);
            }
        }
        for arch in architectures {
            let arch = arch.as_ref();
            if !ARCHITECTURES.contains(&arch) {
                bail!("unknown architecture `{arch}` (use x86_64 or arm64)");
            }
            if !target.architectures.iter().any(|a| a == arch) {
                target.architectures.push(arch.to_string());
            }
        }
        Ok(target)
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

/// Check a built layer before it ships: native files against the runtimes' glibc and the
/// architectures, CPython ABI and wheel tags, layout, and an import of every top-level module in
/// the build image with only the layer on sys.path. Exits 1 when there are errors.
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
        let template = self.read_template()?;
        let layer = template
            .as_ref()
            .and_then(|t| t.layers().into_iter().next());
        let declared = |list: Option<Vec<String>>| list.unwrap_or_default();
        let runtimes = if self.runtimes.is_empty() {
            let from_template = declared(layer.as_ref().map(|l| {
                l.compatible_runtimes
                    .iter()
                    .filter_map(|r| r.ok().map(str::to_string))
                    .collect()
            }));
            if from_template.is_empty() {
                vec!["python3.9".to_string()]
            } else {
                from_template
            }
        } else {
            self.runtimes.clone()
        };
        let architectures = if self.architectures.is_empty() {
            let from_template = declared(layer.as_ref().map(|l| {
                l.compatible_architectures
                    .iter()
                    .filter_map(|a| a.ok().map(str::to_string))
                    .collect()
            }));
            if from_template.is_empty() {
                vec!["x86_64".to_string()]
            } else {
                from_template
            }
        } else {
            self.architectures.clone()
        };
        let target = Target::new(&runtimes, &architectures)?;
        let layer_path = match &self.layer {
            Some(path) => path.clone(),
            None => {
                let name = layer
                    .as_ref()
                    .and_then(|l| l.layer_name.as_ref())
                    .and_then(|n| n.ok().map(str::to_string))
                    .unwrap_or_else(|| "layer".to_string());
                crate::util::project_root()
                    .join("target")
                    .join("layer")
                    .join(format!("{name}.zip"))
            }
        };

        let unzipped;
        let dir = if layer_path.is_dir() {
            layer_path.clone()
        } else if layer_path.is_file() {
            unzipped = tempfile::tempdir().context("cannot create a temporary directory")?;
            crate::artifacts::unzip(&layer_path, unzipped.path(), true)
                .with_context(|| format!("cannot unzip {}", layer_path.display()))?;
            unzipped.path().to_path_buf()
        } else {
            bail!(
                "{} does not exist (give a layer directory or zip, or build one with `cargo xtask build-layer`)",
                layer_path.display()
            );
        };

        let mut diagnostics = verify_tree(&dir, &target);
        if !self.no_import_test {
            let image = self
                .image
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| {
                    let arch = target
                        .architectures
                        .first()
                        .map_or("x86_64", |a| a.as_str());
                    target
                        .runtimes
                        .first()
                        .map_or_else(String::new, |r| r.build_image_for(arch))
                });
            let tokio = tokio::runtime::Runtime::new()?;
            let result = tokio.block_on(async {
                let engine = Engine::connect().await?;
                engine
                    .ensure_image(&image, |_| {})
                    .await
                    .with_context(|| format!("cannot get the image {image}"))?;
                import_smoke_test(&engine, &image, &dir).await
            });
            let (_, found) = result.context(
                "the import smoke test could not run (pass --no-import-test to skip it)",
            )?;
            diagnostics.extend(found);
        }

        let color = self.format == Format::Human
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none();
        let text = report::render(self.format, &diagnostics, color);
        std::io::stdout().write_all(text.as_bytes())?;
        Ok(ExitCode::from(u8::from(
            diagnostics.iter().any(Diagnostic::is_error),
        )))
    }

    fn read_template(&self) -> anyhow::Result<Option<Template>> {
        let path = match &self.template {
            Some(path) => path.clone(),
            None => {
                let beside = crate::util::project_root().join("template.yaml");
                if !beside.exists() {
                    return Ok(None);
                }
                beside
            }
        };
        Template::read(&path)
            .map(Some)
            .map_err(|d| anyhow::anyhow!("{}", d.message))
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
