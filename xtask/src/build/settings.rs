//! What a build is, before anything runs: the buildspec (linted: errors stop the build here), the
//! layer (one resolution for every command, see [`crate::layer`]), the runtime the build targets,
//! the architecture, image, directories and options. Nothing here talks to Docker.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use super::BuildLayer;
use crate::buildspec::{self, Buildspec, PhaseName};
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::layer::{self, Cell, LayerTarget, RuntimeSource, Wanted};
use crate::lint::{self, Options, TemplatePath};
use crate::locks::Locks;
use crate::report;
use crate::runtime::{Date, Runtime};

/// The runtime a build targets, as far as it is known before the image is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeChoice {
    /// `None`: no flag, template or buildspec names one; the image's own Python decides.
    pub runtime: Option<&'static Runtime>,
    /// Where it came from, for messages: `--runtime`, `template.yaml:7:7`, …
    pub from: String,
    /// The buildspec's `runtime-versions` python, when it names an exact version (`3.11`).
    pub requested: Option<String>,
}

/// Everything a build needs to know that flags and files say.
#[derive(Debug)]
pub struct Settings {
    pub source_dir: PathBuf,
    pub buildspec_text: String,
    pub buildspec: Buildspec,
    /// The layer as every command sees it; its runtimes may still be unknown (see `runtime`).
    pub target: LayerTarget,
    pub runtime: RuntimeChoice,
    pub arch: String,
    pub image: String,
    pub out_dir: PathBuf,
    /// CodeBuild's build timeout: the project's TimeoutInMinutes (codebuild.yml beside the
    /// source), else CodeBuild's default.
    pub timeout_minutes: u64,
    /// The project's per-cell locks, when it keeps them (see [`crate::locks`]).
    pub locks: Option<Locks>,
    pub warnings: Vec<Diagnostic>,
}

/// CodeBuild's default build timeout.
const DEFAULT_TIMEOUT_MINUTES: u64 = 60;

impl Settings {
    pub fn resolve(flags: &BuildLayer) -> anyhow::Result<Settings> {
        let source_dir = flags
            .source
            .clone()
            .unwrap_or_else(crate::util::project_root);
        let buildspec_path = flags
            .buildspec
            .clone()
            .unwrap_or_else(|| source_dir.join("buildspec.yml"));
        let file = SourceFile::read(&buildspec_path)
            .with_context(|| format!("cannot read the buildspec {}", buildspec_path.display()))?;
        let buildspec_text = file.text.clone();
        let template_path = layer::find_template(flags.template.as_deref(), &source_dir);
        let template = layer::read_template(template_path.as_deref(), &source_dir)?;
        let (buildspec, warnings) = lint_gate(file, template_path, &source_dir)?;
        let wanted = Wanted {
            layer_name: flags.layer_name.clone(),
            ..Wanted::default()
        };
        let mut target = LayerTarget::resolve(&wanted, template.as_ref())?;
        if let Some(cell) = &flags.cell {
            target = target.for_cell(&Cell::parse(cell)?);
        }
        let runtime = choose_runtime(flags.runtime.as_deref(), &target, &buildspec)?;
        let arch = match &flags.arch {
            Some(arch) => arch.clone(),
            None => target.architectures[0].clone(),
        };
        if !target.architectures.contains(&arch) {
            bail!(
                "--arch {arch} is not one of the layer's CompatibleArchitectures ({})",
                target.architectures.join(", ")
            );
        }
        let image_cell = Cell {
            runtime: runtime.runtime.unwrap_or_else(layer::default_runtime),
            arch: arch.clone(),
        };
        let image = match flags.image.as_deref().filter(|i| !i.is_empty()) {
            Some(image) => image_cell.image(image),
            None => image_cell.runtime.build_image_for(&arch),
        };
        let locks = Locks::locate(&source_dir, flags.locks.as_deref())?;
        let out_dir = flags.out_dir();
        let timeout_minutes = project_timeout(&source_dir).unwrap_or(DEFAULT_TIMEOUT_MINUTES);
        Ok(Settings {
            locks,
            timeout_minutes,
            source_dir,
            buildspec_text,
            buildspec,
            target,
            runtime,
            arch,
            image,
            out_dir,
            warnings,
        })
    }
}

/// The TimeoutInMinutes of the CodeBuild project in `codebuild.yml` (or `.yaml`) in `dir`.
fn project_timeout(dir: &std::path::Path) -> Option<u64> {
    let path = ["codebuild.yml", "codebuild.yaml"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())?;
    let template = crate::template::Template::read(&path).ok()?;
    let timeouts = template.codebuild_timeouts();
    let minutes = timeouts.first()?.ok()?.trim().parse::<u64>().ok()?;
    (5..=2160).contains(&minutes).then_some(minutes)
}

/// The lint's errors stop a build before anything runs (printed as `lint-buildspec` prints them);
/// its warnings go along.
fn lint_gate(
    file: std::sync::Arc<SourceFile>,
    template: Option<PathBuf>,
    source_dir: &std::path::Path,
) -> anyhow::Result<(Buildspec, Vec<Diagnostic>)> {
    let path = file.path.clone();
    let parsed = buildspec::parse(file);
    let options = Options {
        cross_checks: true,
        template: template.map_or(TemplatePath::None, TemplatePath::Explicit),
        codebuild: TemplatePath::None,
        source_root: source_dir.to_path_buf(),
        today: Date::today(),
    };
    let diagnostics = lint::lint(&parsed, &options);
    let (errors, warnings): (Vec<_>, Vec<_>) =
        diagnostics.into_iter().partition(Diagnostic::is_error);
    if !errors.is_empty() {
        eprint!("{}", report::human(&errors, false));
        bail!("the buildspec has errors (above); nothing was built");
    }
    let Some(buildspec) = parsed.buildspec else {
        bail!("{path} is not a buildspec");
    };
    Ok((buildspec, warnings))
}

/// The runtime the build targets, in order: `--runtime`, the template's CompatibleRuntimes (the
/// first), the buildspec's `runtime-versions` python; else the image decides. Two sources that
/// are both given and disagree are an error naming both.
fn choose_runtime(
    flag: Option<&str>,
    target: &LayerTarget,
    buildspec: &Buildspec,
) -> anyhow::Result<RuntimeChoice> {
    let requested = requested_python(buildspec)?;
    let (runtime, from) = match (flag, &target.runtimes_from) {
        (Some(id), _) => {
            let runtime = layer::runtimes(&[id])?[0];
            if !target.runtimes.is_empty() && !target.runtimes.contains(&runtime) {
                bail!(
                    "--runtime {id} is not one of the layer's CompatibleRuntimes ({}, {})",
                    target.runtime_ids().join(", "),
                    template_position(target)
                );
            }
            (Some(runtime), "--runtime".to_string())
        }
        (None, RuntimeSource::Template(at)) => (target.runtimes.first().copied(), at.clone()),
        (None, _) => match &requested {
            Some((runtime, at)) => (Some(*runtime), at.clone()),
            None => (None, String::new()),
        },
    };
    if let (Some(chosen), Some((asked, at))) = (runtime, &requested) {
        if chosen != *asked {
            bail!(
                "the build targets {} ({from}) but the buildspec's runtime-versions asks for {} ({at})",
                chosen.id,
                asked.id
            );
        }
    }
    Ok(RuntimeChoice {
        runtime,
        from,
        requested: requested.map(|(r, _)| r.python_version()),
    })
}

/// `runtime-versions: python: 3.X` (exact versions only: `3.x`, `latest` and variables are the
/// image's business), with where it is written.
fn requested_python(buildspec: &Buildspec) -> anyhow::Result<Option<(&'static Runtime, String)>> {
    let Some(install) = buildspec.phase(PhaseName::Install) else {
        return Ok(None);
    };
    let Some((_, version)) = install
        .runtime_versions
        .iter()
        .find(|(name, _)| name.value == "python")
    else {
        return Ok(None);
    };
    let exact = version.value.split('.').count() == 2
        && version.value.split('.').all(|p| p.parse::<u32>().is_ok());
    if !exact {
        return Ok(None);
    }
    let at = format!("runtime-versions at line {}", version.span.start.line);
    match Runtime::for_python_version(&version.value) {
        Some(runtime) => Ok(Some((runtime, at))),
        None => bail!(
            "the buildspec's runtime-versions asks for python {} ({at}), which no Lambda runtime is",
            version.value
        ),
    }
}

fn template_position(target: &LayerTarget) -> String {
    match &target.runtimes_from {
        RuntimeSource::Template(at) => at.clone(),
        _ => "the template".to_string(),
    }
}

/// A stable 9-digit number per layer: CodeBuild's `/codebuild/output/src<N>/src` is random, but a
/// fixed N keeps paths that leak into built files identical between builds and machines.
pub fn source_number(layer_name: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(layer_name.as_bytes());
    let n = u64::from_le_bytes([
        digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7],
    ]);
    100_000_000 + n % 900_000_000
}
