//! What a build is: the buildspec, the layer's properties from the template, runtime,
//! architecture, image and directories, each from its flag, else the template, else the default.

use std::path::PathBuf;

use anyhow::{bail, Context as _};

use super::BuildLayer;
use crate::buildspec::{self, Buildspec};
use crate::diagnostic::{Diagnostic, SourceFile};
use crate::lint::{self, Options, TemplatePath};
use crate::report;
use crate::runtime::{Date, Runtime, ARCHITECTURES};
use crate::template::Template;

pub struct Settings {
    pub source_dir: PathBuf,
    pub buildspec_path: PathBuf,
    pub buildspec_text: String,
    pub buildspec: Buildspec,
    pub layer_name: String,
    pub runtime: &'static Runtime,
    /// Every runtime the layer claims (the template's CompatibleRuntimes, else the build's).
    pub compatible_runtimes: Vec<String>,
    pub arch: String,
    pub image: String,
    pub out_dir: PathBuf,
    pub warnings: Vec<Diagnostic>,
}

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
        let template_path = flags
            .template
            .clone()
            .unwrap_or_else(|| source_dir.join("template.yaml"));
        let template = if flags.template.is_some() || template_path.exists() {
            Some(Template::read(&template_path).map_err(|d| anyhow::anyhow!("{}", d.message))?)
        } else {
            None
        };

        let parsed = buildspec::parse(file);
        let options = Options {
            cross_checks: true,
            template: if template.is_some() {
                TemplatePath::Explicit(template_path)
            } else {
                TemplatePath::None
            },
            codebuild: TemplatePath::None,
            source_root: source_dir.clone(),
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
            bail!("{} is not a buildspec", buildspec_path.display());
        };
        if let Some(phase) = buildspec.phases.iter().find(|p| p.run_as.is_some()) {
            bail!(
                "{}: run-as in phase {} is not supported by local builds yet (all phases share one shell); use the top-level run-as",
                buildspec_path.display(),
                phase.name.key()
            );
        }
        if buildspec.artifacts.is_none() {
            bail!("{} declares no artifacts: there is no layer to package (add `artifacts: base-directory: layer, files: ['python/**/*']`)", buildspec_path.display());
        }

        let layer = template
            .as_ref()
            .and_then(|t| t.layers().into_iter().next());
        let layer_name = layer
            .as_ref()
            .and_then(|l| l.layer_name.as_ref())
            .and_then(|n| n.ok().map(str::to_string))
            .unwrap_or_else(|| "layer".to_string());
        let declared: Vec<String> = layer
            .as_ref()
            .map(|l| {
                l.compatible_runtimes
                    .iter()
                    .filter_map(|r| r.ok().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let runtime_id = flags
            .runtime
            .clone()
            .or_else(|| declared.first().cloned())
            .unwrap_or_else(|| "python3.9".to_string());
        let Some(runtime) = Runtime::find(&runtime_id) else {
            let known: Vec<_> = crate::runtime::RUNTIMES.iter().map(|r| r.id).collect();
            bail!(
                "unknown runtime `{runtime_id}` (supported: {})",
                known.join(", ")
            );
        };
        let arch = flags
            .arch
            .clone()
            .or_else(|| {
                layer
                    .as_ref()
                    .and_then(|l| l.compatible_architectures.first())
                    .and_then(|a| a.ok().map(str::to_string))
            })
            .unwrap_or_else(|| "x86_64".to_string());
        if !ARCHITECTURES.contains(&arch.as_str()) {
            bail!("unknown architecture `{arch}` (use x86_64 or arm64)");
        }
        let image = flags
            .image
            .clone()
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| format!("{}:latest-{arch}", runtime.build_image()));
        let out_dir = flags
            .out_dir
            .clone()
            .unwrap_or_else(|| source_dir.join("target").join("layer"));
        let compatible_runtimes = if declared.is_empty() {
            vec![runtime.id.to_string()]
        } else {
            declared
        };
        Ok(Settings {
            source_dir,
            buildspec_path,
            buildspec_text,
            buildspec,
            layer_name,
            runtime,
            compatible_runtimes,
            arch,
            image,
            out_dir,
            warnings,
        })
    }

    pub fn zip_path(&self) -> PathBuf {
        self.out_dir.join(format!("{}.zip", self.layer_name))
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.out_dir.join(format!("{}.json", self.layer_name))
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
