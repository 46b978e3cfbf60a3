//! What a deploy is: the layer's name and properties, bucket, prefix, profile and region, each
//! from its flag, else `samconfig.toml` (`[default.deploy.parameters]`), else `template.yaml`,
//! else the manifest; validated locally before any AWS call.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::Deploy;
use crate::template::{Resolved, Template};

/// Lambda's limit on a layer version's description.
pub const MAX_DESCRIPTION_CHARS: usize = 256;

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
        let template_path = flags
            .template
            .clone()
            .unwrap_or_else(|| root.join("template.yaml"));
        let template = if flags.template.is_some() || template_path.exists() {
            Some(Template::read(&template_path).map_err(|d| anyhow::anyhow!("{}", d.message))?)
        } else {
            None
        };
        let samconfig_path = flags.samconfig.clone().unwrap_or_else(|| {
            template_path
                .parent()
                .unwrap_or(Path::new("."))
                .join("samconfig.toml")
        });
        let sam = SamConfig::read(&samconfig_path)?;

        let layers = template.as_ref().map(|t| t.layers()).unwrap_or_default();
        let layer = match layers.as_slice() {
            [] => None,
            [only] => Some(only),
            several => {
                let wanted = flags.layer_name.as_deref();
                let found = several
                    .iter()
                    .find(|l| l.layer_name.as_ref().and_then(Resolved::ok) == wanted);
                Some(found.ok_or_else(|| {
                    anyhow::anyhow!(
                        "{} has {} layers: pass --layer-name with one of their LayerName values",
                        template_path.display(),
                        several.len()
                    )
                })?)
            }
        };
        let where_ = template_path.display().to_string();
        let one =
            |value: Option<&Resolved>, key: &str, flag: &str| -> anyhow::Result<Option<String>> {
                match value.map(|r| &r.value) {
                    None => Ok(None),
                    Some(Ok(v)) => Ok(Some(v.clone())),
                    Some(Err(why)) => anyhow::bail!(
                        "{where_}:{}: {key} cannot be resolved ({why}): pass {flag}",
                        value.map_or(0, |r| r.span.start.line)
                    ),
                }
            };
        let list = |values: &[Resolved], key: &str, flag: &str| -> anyhow::Result<Vec<String>> {
            values
                .iter()
                .map(|r| one(Some(r), key, flag).map(Option::unwrap_or_default))
                .collect()
        };

        let template_name = match layer {
            Some(l) => one(l.layer_name.as_ref(), "LayerName", "--layer-name").or_else(|e| {
                if flags.layer_name.is_some() {
                    Ok(None)
                } else {
                    Err(e)
                }
            })?,
            None => None,
        };
        let layer_name = flags
            .layer_name
            .clone()
            .or_else(|| template_name.clone())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no layer name: pass --layer-name, or a --template with a LayerName ({} has none)",
                    template_path.display()
                )
            })?;
        validate_layer_name(&layer_name)?;

        let description = match &flags.description {
            Some(d) => Some(d.clone()),
            None => match layer {
                Some(l) => one(l.description.as_ref(), "Description", "--description")?,
                None => None,
            },
        };
        if let Some(d) = &description {
            let chars = d.chars().count();
            if chars > MAX_DESCRIPTION_CHARS {
                anyhow::bail!(
                    "the layer description is {chars} characters, Lambda allows at most \
                     {MAX_DESCRIPTION_CHARS}: shorten it in the template or pass --description"
                );
            }
        }
        let license_info = match &flags.license_info {
            Some(l) => Some(l.clone()),
            None => match layer {
                Some(l) => one(l.license_info.as_ref(), "LicenseInfo", "--license-info")?,
                None => None,
            },
        };
        let compatible_runtimes = if flags.compatible_runtimes.is_empty() {
            match layer {
                Some(l) => list(
                    &l.compatible_runtimes,
                    "CompatibleRuntimes",
                    "--compatible-runtimes",
                )?,
                None => Vec::new(),
            }
        } else {
            flags.compatible_runtimes.clone()
        };
        let compatible_architectures = if flags.compatible_architectures.is_empty() {
            match layer {
                Some(l) => list(
                    &l.compatible_architectures,
                    "CompatibleArchitectures",
                    "--compatible-architectures",
                )?,
                None => Vec::new(),
            }
        } else {
            flags.compatible_architectures.clone()
        };

        let out_dir = flags
            .out_dir
            .clone()
            .unwrap_or_else(|| root.join("target").join("layer"));
        let mut manifest_candidates =
            vec![out_dir.join(format!("{}.json", short_name(&layer_name)))];
        if let Some(name) = template_name.filter(|n| *n != short_name(&layer_name)) {
            manifest_candidates.push(out_dir.join(format!("{name}.json")));
        }

        let prefix = flags
            .prefix
            .clone()
            .or(sam.s3_prefix)
            .unwrap_or_default()
            .trim_matches('/')
            .to_string();
        Ok(Settings {
            layer_name,
            manifest_candidates,
            description,
            license_info,
            compatible_runtimes,
            compatible_architectures,
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

/// The layer's name without the ARN around it.
pub fn short_name(layer_name: &str) -> &str {
    if layer_name.starts_with("arn:") {
        layer_name.rsplit(':').next().unwrap_or(layer_name)
    } else {
        layer_name
    }
}

/// Lambda's rule: 1–140 of `[a-zA-Z0-9-_]`, or a layer ARN
/// (`arn:<partition>:lambda:<region>:<account>:layer:<name>`).
pub fn validate_layer_name(name: &str) -> anyhow::Result<()> {
    let plain = |n: &str| {
        (1..=140).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let valid = if name.starts_with("arn:") {
        let parts: Vec<&str> = name.split(':').collect();
        matches!(
            parts.as_slice(),
            ["arn", partition, "lambda", region, account, "layer", n]
                if partition.starts_with("aws")
                    && !region.is_empty()
                    && account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && plain(n)
        )
    } else {
        plain(name)
    };
    if valid {
        Ok(())
    } else {
        anyhow::bail!(
            "invalid layer name {name:?}: use 1-140 letters, digits, hyphens or underscores, or a \
             layer ARN (arn:aws:lambda:<region>:<account>:layer:<name>)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names() {
        assert!(validate_layer_name("python-deps_2").is_ok());
        assert!(validate_layer_name(&"a".repeat(140)).is_ok());
        assert!(validate_layer_name(&"a".repeat(141)).is_err());
        assert!(validate_layer_name("").is_err());
        assert!(validate_layer_name("has space").is_err());
        assert!(validate_layer_name("arn:aws:lambda:us-east-1:123456789012:layer:deps").is_ok());
        assert!(validate_layer_name("arn:aws:lambda:us-east-1:123:layer:deps").is_err());
        assert_eq!(
            short_name("arn:aws:lambda:us-east-1:123456789012:layer:deps"),
            "deps"
        );
    }

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
