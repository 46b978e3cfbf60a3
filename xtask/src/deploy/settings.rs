//! What a deploy is: the layer (resolved as every command resolves it, see [`crate::layer`]),
//! bucket, prefix, profile and region, each from its flag, else `samconfig.toml`
//! (`[default.deploy.parameters]`), else the template, else the manifest; validated locally
//! before any AWS call.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Deploy;
use crate::layer::{self, short_name, Cell, LayerTarget, Wanted};

/// The deploy defaults SAM users already have in `samconfig.toml`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SamConfig {
    pub region: Option<String>,
    pub s3_bucket: Option<String>,
    pub s3_prefix: Option<String>,
    pub profile: Option<String>,
}

impl SamConfig {
    /// Reads `[default.deploy.parameters]`; a missing file is no defaults, a broken one an error.
    pub fn read(path: &Path) -> anyhow::Result<SamConfig> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SamConfig::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Self::parse(&text).with_context(|| format!("{} is not valid TOML", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<SamConfig> {
        let table: toml::Table = toml::from_str(text)?;
        let parameters = table
            .get("default")
            .and_then(|v| v.get("deploy"))
            .and_then(|v| v.get("parameters"));
        let get = |key: &str| {
            parameters
                .and_then(|p| p.get(key))
                .and_then(toml::Value::as_str)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Ok(SamConfig {
            region: get("region"),
            s3_bucket: get("s3_bucket"),
            s3_prefix: get("s3_prefix"),
            profile: get("profile"),
        })
    }
}

/// Everything a deploy needs to know before it reads the manifest or talks to AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The name (or ARN) the layer is published under.
    pub layer_name: String,
    /// Manifests to look for, in order: `<out-dir>/<name>.json`.
    pub manifest_candidates: Vec<PathBuf>,
    /// The build-layer command that makes what is published (for "nothing built yet").
    pub build_command: String,
    pub description: Option<String>,
    pub license_info: Option<String>,
    /// Empty: take the manifest's.
    pub compatible_runtimes: Vec<String>,
    /// Empty: take the manifest's architecture.
    pub compatible_architectures: Vec<String>,
    pub bucket: Option<String>,
    pub prefix: String,
    pub profile: Option<String>,
    pub region: Option<String>,
}

impl Settings {
    pub fn resolve(flags: &Deploy) -> anyhow::Result<Settings> {
        let root = crate::util::project_root();
        let template_path = layer::find_template(flags.template.as_deref(), &root);
        let template = layer::read_template(template_path.as_deref(), &root)?;
        let samconfig_path = flags.samconfig.clone().unwrap_or_else(|| {
            let dir = template_path.as_deref().and_then(Path::parent);
            dir.unwrap_or(&root).join("samconfig.toml")
        });
        let sam = SamConfig::read(&samconfig_path)?;
        let wanted = Wanted {
            layer_name: flags.layer_name.clone(),
            runtimes: flags.compatible_runtimes.clone(),
            architectures: flags.compatible_architectures.clone(),
            description: flags.description.clone(),
            license_info: flags.license_info.clone(),
        };
        let cell = flags.cell.as_deref().map(Cell::parse).transpose()?;
        let as_cell = |target: LayerTarget| match &cell {
            Some(cell) => target.for_cell(cell),
            None => target,
        };
        let target = as_cell(LayerTarget::resolve(&wanted, template.as_ref())?);
        let mut layer_name = match &cell {
            Some(cell) => cell_layer_name(cell, &target)?,
            None => target.layer_name.clone(),
        };
        let mut target = target;
        let mut built_stems = Vec::new();
        if let Some(arch) = &flags.combined_arch {
            // The multi-runtime layer of one architecture: every runtime its manifest names.
            layer_name = combined_layer_name(arch, &target)?;
            // Built under that name (build-layer --layer-name), or under the template's.
            built_stems.push(format!("{}-{arch}", target.short_name()));
            if let Ok(built) = LayerTarget::resolve(&Wanted::default(), template.as_ref()) {
                let stem = format!("{}-{arch}", built.short_name());
                if !built_stems.contains(&stem) {
                    built_stems.push(stem);
                }
            }
            target.runtimes.clear();
            target.architectures = vec![arch.clone()];
            target.architectures_given = true;
        }
        let out_dir = flags
            .out_dir
            .clone()
            .unwrap_or_else(|| root.join("target").join("layer"));
        let mut manifest_candidates = match built_stems.is_empty() {
            false => built_stems
                .iter()
                .map(|stem| out_dir.join(format!("{stem}.json")))
                .collect(),
            true => vec![target.manifest_path(&out_dir)],
        };
        // Built under the template's name, published under another (`--layer-name`).
        if flags.layer_name.is_some() && built_stems.is_empty() {
            let built = LayerTarget::resolve(&Wanted::default(), template.as_ref());
            if let Ok(built) = built {
                let path = as_cell(built).manifest_path(&out_dir);
                if !manifest_candidates.contains(&path) {
                    manifest_candidates.push(path);
                }
            }
        }
        let prefix = flags
            .prefix
            .clone()
            .or(sam.s3_prefix)
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        let build_command = match (&flags.combined_arch, &cell) {
            (Some(_), _) => "cargo xtask build-layer --matrix --multi-runtime".to_string(),
            (None, Some(cell)) => format!("cargo xtask build-layer --cells {}", cell.id()),
            (None, None) => "cargo xtask build-layer".to_string(),
        };
        Ok(Settings {
            layer_name,
            manifest_candidates,
            build_command,
            description: target.description.clone(),
            license_info: target.license_info.clone(),
            compatible_runtimes: target.runtime_ids(),
            compatible_architectures: match target.architectures_given {
                true => target.architectures.clone(),
                false => Vec::new(),
            },
            bucket: flags.bucket.clone().or(sam.s3_bucket),
            prefix,
            profile: flags.profile.clone().or(sam.profile),
            region: flags.region.clone().or(sam.region),
        })
    }

    /// The content-addressed S3 key: `<prefix>/<LayerName>/<sha256>.zip`.
    pub fn s3_key(&self, sha256_hex: &str) -> String {
        let name = short_name(&self.layer_name);
        if self.prefix.is_empty() {
            format!("{name}/{sha256_hex}.zip")
        } else {
            format!("{}/{name}/{sha256_hex}.zip", self.prefix)
        }
    }
}

/// The name an architecture's multi-runtime layer is published under: `<name>-arm64`.
fn combined_layer_name(arch: &str, target: &LayerTarget) -> anyhow::Result<String> {
    if target.layer_name.starts_with("arn:") {
        anyhow::bail!("--layer-name is an ARN, but each architecture's multi-runtime layer is published under a name of its own (<name>-<arch>): give a name");
    }
    let name = format!("{}-{arch}", target.short_name());
    layer::validate_layer_name(&name)?;
    Ok(name)
}

/// The name a cell's layer is published under: `<name>-python3-13-arm64`.
fn cell_layer_name(cell: &Cell, target: &LayerTarget) -> anyhow::Result<String> {
    if target.layer_name.starts_with("arn:") {
        anyhow::bail!("--layer-name is an ARN, but each cell is published under a name of its own (<name>-<runtime>-<arch>): give a name");
    }
    let name = cell.layer_name(target.short_name());
    layer::validate_layer_name(&name)?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samconfig_deploy_parameters() {
        let sam = SamConfig::parse(
            "version = 0.1\n[default.deploy.parameters]\nregion = \"eu-west-1\"\ns3_bucket = \"b\"\ns3_prefix = \"p\"\nprofile = \"dev\"\n",
        )
        .unwrap();
        assert_eq!(sam.region.as_deref(), Some("eu-west-1"));
        assert_eq!(sam.s3_bucket.as_deref(), Some("b"));
        assert_eq!(sam.s3_prefix.as_deref(), Some("p"));
        assert_eq!(sam.profile.as_deref(), Some("dev"));
        assert_eq!(SamConfig::parse("").unwrap(), SamConfig::default());
        assert!(SamConfig::parse("[default").is_err());
    }
}
