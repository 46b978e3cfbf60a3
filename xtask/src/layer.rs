//! The layer a command works on, resolved the same way for every command: which template, which
//! of its layers, the layer's name (checked as Lambda checks it), runtimes, architectures,
//! description and license; each from its flag, else the template, else the one default. Also
//! Lambda's size limits, so every command judges a layer by the same numbers.

use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::runtime::{Runtime, ARCHITECTURES, RUNTIMES};
use crate::template::{Layer, Resolved, Template};

/// The name a layer gets when no flag and no template names it.
pub const DEFAULT_LAYER_NAME: &str = "layer";
/// The runtime of last resort (the original layer's; deprecated by Lambda on 2025-12-15).
pub const DEFAULT_RUNTIME: &str = "python3.9";
pub const DEFAULT_ARCH: &str = "x86_64";
/// Lambda's limit for a function plus all its layers, unzipped.
pub const MAX_UNZIPPED_BYTES: u64 = 262_144_000;
/// Above this a zip cannot be uploaded inline (ZipFile); it has to go through S3.
pub const MAX_INLINE_ZIP_BYTES: u64 = 52_428_800;
/// Lambda's limit on a layer version's description.
pub const MAX_DESCRIPTION_CHARS: usize = 256;
/// The names a layer template is found by, in a directory.
pub const TEMPLATE_NAMES: [&str; 2] = ["template.yaml", "template.yml"];

/// [`DEFAULT_RUNTIME`] from the runtime table.
pub fn default_runtime() -> &'static Runtime {
    Runtime::find(DEFAULT_RUNTIME).unwrap_or(&RUNTIMES[0])
}

/// The template to read: `explicit` when given (it must exist), else the first of
/// [`TEMPLATE_NAMES`] in `dir`, else none.
pub fn find_template(explicit: Option<&Path>, dir: &Path) -> Option<PathBuf> {
    match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => TEMPLATE_NAMES
            .iter()
            .map(|name| dir.join(name))
            .find(|path| path.exists()),
    }
}

/// [`find_template`], read; an unreadable or invalid template is an error with its position.
pub fn read_template(explicit: Option<&Path>, dir: &Path) -> anyhow::Result<Option<Template>> {
    let Some(path) = find_template(explicit, dir) else {
        return Ok(None);
    };
    match Template::read(&path) {
        Ok(template) => Ok(Some(template)),
        Err(diagnostic) => bail!("{}", diagnostic.headline()),
    }
}

/// `cells` as given on the command line, else every runtime × architecture of the template (in
/// `source_dir`, or `template`); an error when neither names a runtime.
pub fn wanted_cells(
    cells: &[String],
    template: Option<&Path>,
    source_dir: &Path,
    layer_name: Option<&str>,
) -> anyhow::Result<Vec<Cell>> {
    if !cells.is_empty() {
        let mut parsed: Vec<Cell> = Vec::new();
        for text in cells {
            let cell = Cell::parse(text)?;
            if !parsed.contains(&cell) {
                parsed.push(cell);
            }
        }
        return Ok(parsed);
    }
    let template = read_template(template, source_dir)?;
    let wanted = Wanted {
        layer_name: layer_name.map(str::to_string),
        ..Wanted::default()
    };
    let target = LayerTarget::resolve(&wanted, template.as_ref())?;
    if target.runtimes.is_empty() {
        bail!("no template names the layer's CompatibleRuntimes: list them there, or name the cells with --cells python3.13-x86_64,…");
    }
    Ok(Cell::all_of(&target))
}

/// What the command line says about the layer; empty fields defer to the template.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub layer_name: Option<String>,
    pub runtimes: Vec<String>,
    pub architectures: Vec<String>,
    pub description: Option<String>,
    pub license_info: Option<String>,
}

/// Where the runtimes came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSource {
    Flag,
    /// `file:line` of the template's CompatibleRuntimes.
    Template(String),
    /// None was given: the caller asks the image, or falls back to [`DEFAULT_RUNTIME`].
    Unknown,
}

/// The layer, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerTarget {
    /// The template it came from, when there is one.
    pub template: Option<PathBuf>,
    /// The name (or layer ARN) it is published under, valid for Lambda.
    pub layer_name: String,
    /// Empty when [`RuntimeSource::Unknown`].
    pub runtimes: Vec<&'static Runtime>,
    pub runtimes_from: RuntimeSource,
    /// Never empty.
    pub architectures: Vec<String>,
    /// Whether a flag or the template named them (else they are the default).
    pub architectures_given: bool,
    pub description: Option<String>,
    pub license_info: Option<String>,
    /// Set when one cell of a matrix is built: its files are named after the cell too.
    pub cell: Option<Cell>,
}

/// One runtime on one architecture: what one build targets (`python3.13-arm64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub runtime: &'static Runtime,
    pub arch: String,
}

impl Cell {
    /// `python3.13-arm64`
    pub fn id(&self) -> String {
        format!("{}-{}", self.runtime.id, self.arch)
    }

    /// `python3.13-arm64` or `python3.13/arm64`.
    pub fn parse(text: &str) -> anyhow::Result<Cell> {
        let text = text.trim();
        let split = text
            .rsplit_once('/')
            .or_else(|| text.rsplit_once('-'))
            .filter(|(_, arch)| ARCHITECTURES.contains(arch));
        let Some((runtime, arch)) = split else {
            bail!("`{text}` is not a cell: write it as <runtime>-<arch>, e.g. python3.13-arm64");
        };
        Ok(Cell {
            runtime: runtimes(&[runtime])?[0],
            arch: arch.to_string(),
        })
    }

    /// Every runtime × architecture of `target`.
    pub fn all_of(target: &LayerTarget) -> Vec<Cell> {
        let mut cells = Vec::new();
        for runtime in &target.runtimes {
            for arch in &target.architectures {
                cells.push(Cell {
                    runtime,
                    arch: arch.clone(),
                });
            }
        }
        cells
    }

    /// `image` with `{runtime}` (`python3.13`), `{python}` (`3.13`) and `{arch}` filled in: one
    /// setting names the image of every cell (`layer-tools/build-python{python}-standin:latest-{arch}`).
    pub fn image(&self, image: &str) -> String {
        image
            .replace("{runtime}", self.runtime.id)
            .replace("{python}", &self.runtime.python_version())
            .replace("{arch}", &self.arch)
    }

    /// The platform uv resolves and installs wheels for (`--python-platform`): the newest manylinux
    /// uv names that is not newer than the runtime's glibc (2.26 → `manylinux_2_17`, 2.34 →
    /// `manylinux_2_34`), on the cell's machine.
    pub fn python_platform(&self) -> String {
        const UV_MANYLINUX_MINORS: [u32; 12] = [40, 39, 38, 37, 36, 35, 34, 33, 32, 31, 28, 17];
        let machine = if self.arch == "arm64" {
            "aarch64"
        } else {
            "x86_64"
        };
        let (major, minor) = self.runtime.glibc;
        let minor = UV_MANYLINUX_MINORS
            .into_iter()
            .find(|m| *m <= minor)
            .unwrap_or(17);
        format!("{machine}-manylinux_{major}_{minor}")
    }

    /// The name a cell's layer is published under: `<name>-python3-13-arm64` (dots are not
    /// allowed in a layer name).
    pub fn layer_name(&self, name: &str) -> String {
        format!("{}-{}", short_name(name), self.id().replace('.', "-"))
    }
}

impl LayerTarget {
    /// Flags, else the template's layer (the one named by `--layer-name` when it has several),
    /// else the defaults. Values the template states but that cannot be resolved locally are
    /// errors naming the flag that replaces them.
    pub fn resolve(wanted: &Wanted, template: Option<&Template>) -> anyhow::Result<LayerTarget> {
        let layer = match template {
            Some(t) => pick_layer(t, wanted.layer_name.as_deref())?,
            None => None,
        };
        let value = |key: &str, flag: &str, get: fn(&Layer) -> Option<&Resolved>| {
            layer
                .as_ref()
                .and_then(get)
                .map(|r| known(template, r, key, flag))
                .transpose()
        };
        let layer_name = match &wanted.layer_name {
            Some(name) => name.clone(),
            None => value("LayerName", "--layer-name", |l| l.layer_name.as_ref())?
                .unwrap_or_else(|| DEFAULT_LAYER_NAME.to_string()),
        };
        validate_layer_name(&layer_name)?;
        let description = match &wanted.description {
            Some(d) => Some(d.clone()),
            None => value("Description", "--description", |l| l.description.as_ref())?,
        };
        if let Some(d) = &description {
            validate_description(d)?;
        }
        let license_info = match &wanted.license_info {
            Some(l) => Some(l.clone()),
            None => value("LicenseInfo", "--license-info", |l| l.license_info.as_ref())?,
        };
        let (runtime_ids, runtimes_from) = match (&wanted.runtimes, &layer) {
            (flags, _) if !flags.is_empty() => (flags.clone(), RuntimeSource::Flag),
            (_, Some(l)) if !l.compatible_runtimes.is_empty() => {
                let ids = list(
                    template,
                    &l.compatible_runtimes,
                    "CompatibleRuntimes",
                    "--runtime",
                )?;
                let at = position(template, l.runtimes_span.unwrap_or(l.span));
                (ids, RuntimeSource::Template(at))
            }
            _ => (Vec::new(), RuntimeSource::Unknown),
        };
        let architectures_given = !wanted.architectures.is_empty()
            || layer
                .as_ref()
                .is_some_and(|l| !l.compatible_architectures.is_empty());
        let arch_ids = match (&wanted.architectures, &layer) {
            (flags, _) if !flags.is_empty() => flags.clone(),
            (_, Some(l)) if !l.compatible_architectures.is_empty() => list(
                template,
                &l.compatible_architectures,
                "CompatibleArchitectures",
                "--arch",
            )?,
            _ => vec![DEFAULT_ARCH.to_string()],
        };
        Ok(LayerTarget {
            template: template.map(|t| PathBuf::from(&t.file.path)),
            layer_name,
            runtimes: runtimes(&runtime_ids)?,
            runtimes_from,
            architectures: architectures(arch_ids)?,
            architectures_given,
            description,
            license_info,
            cell: None,
        })
    }

    /// The layer's name without the ARN around it.
    pub fn short_name(&self) -> &str {
        short_name(&self.layer_name)
    }

    /// The name files are named after: the layer's name without the ARN around it (only
    /// letters, digits, `-` and `_`, so it is safe in a path), and the cell when one is built.
    pub fn file_stem(&self) -> String {
        match &self.cell {
            Some(cell) => format!("{}-{}", short_name(&self.layer_name), cell.id()),
            None => short_name(&self.layer_name).to_string(),
        }
    }

    /// This layer as one cell of a matrix: it claims that runtime and architecture only.
    pub fn for_cell(&self, cell: &Cell) -> LayerTarget {
        LayerTarget {
            runtimes: vec![cell.runtime],
            runtimes_from: RuntimeSource::Flag,
            architectures: vec![cell.arch.clone()],
            architectures_given: true,
            cell: Some(cell.clone()),
            ..self.clone()
        }
    }

    /// `<out_dir>/<name>.zip`
    pub fn zip_path(&self, out_dir: &Path) -> PathBuf {
        out_dir.join(format!("{}.zip", self.file_stem()))
    }

    /// `<out_dir>/<name>.json`: the manifest beside the zip.
    pub fn manifest_path(&self, out_dir: &Path) -> PathBuf {
        out_dir.join(format!("{}.json", self.file_stem()))
    }

    pub fn runtime_ids(&self) -> Vec<String> {
        self.runtimes.iter().map(|r| r.id.to_string()).collect()
    }
}

/// The template's layer: its only one, or the one whose LayerName is `wanted`.
fn pick_layer(template: &Template, wanted: Option<&str>) -> anyhow::Result<Option<Layer>> {
    let mut layers = template.layers();
    if layers.len() <= 1 {
        return Ok(layers.pop());
    }
    let named = |l: &Layer| l.layer_name.as_ref().and_then(Resolved::ok) == wanted;
    match layers.iter().position(named) {
        Some(i) if wanted.is_some() => Ok(Some(layers.swap_remove(i))),
        _ => bail!(
            "{} has {} layers: pass --layer-name with one of their LayerName values",
            template.file.path,
            layers.len()
        ),
    }
}

/// A template value that must be known locally.
fn known(
    template: Option<&Template>,
    value: &Resolved,
    key: &str,
    flag: &str,
) -> anyhow::Result<String> {
    match &value.value {
        Ok(v) => Ok(v.clone()),
        Err(why) => bail!(
            "{}: {key} cannot be resolved ({why}): pass {flag}",
            position(template, value.span)
        ),
    }
}

fn list(
    template: Option<&Template>,
    values: &[Resolved],
    key: &str,
    flag: &str,
) -> anyhow::Result<Vec<String>> {
    values
        .iter()
        .map(|v| known(template, v, key, flag))
        .collect()
}

fn position(template: Option<&Template>, span: crate::yaml::Span) -> String {
    let file = template.map_or("template", |t| t.file.path.as_str());
    format!("{file}:{}:{}", span.start.line, span.start.col)
}

/// Runtime ids, each one Lambda knows, without repeats.
pub fn runtimes<S: AsRef<str>>(ids: &[S]) -> anyhow::Result<Vec<&'static Runtime>> {
    let mut found: Vec<&'static Runtime> = Vec::new();
    for id in ids {
        let id = id.as_ref();
        let Some(runtime) = Runtime::find(id) else {
            let known: Vec<_> = RUNTIMES.iter().map(|r| r.id).collect();
            bail!("unknown runtime `{id}` (supported: {})", known.join(", "));
        };
        if !found.contains(&runtime) {
            found.push(runtime);
        }
    }
    Ok(found)
}

/// Architectures Lambda knows, without repeats.
pub fn architectures(architectures: Vec<String>) -> anyhow::Result<Vec<String>> {
    let mut found: Vec<String> = Vec::new();
    for arch in architectures {
        if !ARCHITECTURES.contains(&arch.as_str()) {
            bail!("unknown architecture `{arch}` (use x86_64 or arm64)");
        }
        if !found.contains(&arch) {
            found.push(arch);
        }
    }
    Ok(found)
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
/// (`arn:<partition>:lambda:<region>:<account>:layer:<name>`). Every command checks a name with
/// this before it uses it (as a file name, or in a request).
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
        bail!(
            "invalid layer name {name:?}: use 1-140 letters, digits, hyphens or underscores, or a \
             layer ARN (arn:aws:lambda:<region>:<account>:layer:<name>)"
        )
    }
}

fn validate_description(description: &str) -> anyhow::Result<()> {
    let chars = description.chars().count();
    if chars > MAX_DESCRIPTION_CHARS {
        bail!(
            "the layer description is {chars} characters, Lambda allows at most \
             {MAX_DESCRIPTION_CHARS}: shorten it in the template or pass --description"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostic::SourceFile;

    fn template(text: &str) -> Template {
        Template::parse(SourceFile::new("template.yaml", text)).unwrap()
    }

    const TWO: &str = "Resources:\n  A:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: a\n      CompatibleRuntimes: [python3.12]\n  B:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: b\n      CompatibleArchitectures: [arm64]\n";

    #[test]
    fn the_default_runtime_is_in_the_table() {
        assert_eq!(default_runtime().id, DEFAULT_RUNTIME);
    }

    #[test]
    fn layer_names() {
        assert!(validate_layer_name("python-deps_2").is_ok());
        assert!(validate_layer_name(&"a".repeat(140)).is_ok());
        assert!(validate_layer_name(&"a".repeat(141)).is_err());
        assert!(validate_layer_name("").is_err());
        assert!(validate_layer_name("has space").is_err());
        assert!(validate_layer_name("../../x").is_err());
        assert!(validate_layer_name("arn:aws:lambda:us-east-1:123456789012:layer:deps").is_ok());
        assert!(validate_layer_name("arn:aws:lambda:us-east-1:123:layer:deps").is_err());
        assert_eq!(
            short_name("arn:aws:lambda:us-east-1:123456789012:layer:deps"),
            "deps"
        );
    }

    #[test]
    fn flags_beat_the_template_which_beats_the_defaults() {
        let none = LayerTarget::resolve(&Wanted::default(), None).unwrap();
        assert_eq!(none.layer_name, DEFAULT_LAYER_NAME);
        assert_eq!(none.runtimes_from, RuntimeSource::Unknown);
        assert_eq!(none.architectures, [DEFAULT_ARCH]);

        let t = template(TWO);
        let b = Wanted {
            layer_name: Some("b".into()),
            ..Wanted::default()
        };
        let target = LayerTarget::resolve(&b, Some(&t)).unwrap();
        assert_eq!(target.architectures, ["arm64"]);
        assert!(target.runtimes.is_empty());
        let a = Wanted {
            layer_name: Some("a".into()),
            runtimes: vec!["python3.13".into()],
            ..Wanted::default()
        };
        let target = LayerTarget::resolve(&a, Some(&t)).unwrap();
        assert_eq!(target.runtime_ids(), ["python3.13"]);
        assert_eq!(target.runtimes_from, RuntimeSource::Flag);
    }

    #[test]
    fn several_layers_need_a_name_and_bad_names_are_refused() {
        let t = template(TWO);
        let err = LayerTarget::resolve(&Wanted::default(), Some(&t)).unwrap_err();
        assert!(err.to_string().contains("--layer-name"), "{err}");
        let evil = template("Resources:\n  L:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: ../../x\n");
        let err = LayerTarget::resolve(&Wanted::default(), Some(&evil)).unwrap_err();
        assert!(err.to_string().contains("invalid layer name"), "{err}");
        let unresolved = template("Resources:\n  L:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: !Sub '${AWS::StackName}-x'\n");
        let err = LayerTarget::resolve(&Wanted::default(), Some(&unresolved)).unwrap_err();
        assert!(
            err.to_string().contains("template.yaml:5:")
                && err.to_string().contains("--layer-name"),
            "{err}"
        );
    }

    #[test]
    fn cells_parse_name_files_and_fill_image_templates() {
        let cell = Cell::parse("python3.13-arm64").unwrap();
        assert_eq!(cell.id(), "python3.13-arm64");
        assert_eq!(
            Cell::parse("python3.12/x86_64").unwrap().id(),
            "python3.12-x86_64"
        );
        assert!(Cell::parse("python3.13").is_err());
        assert!(Cell::parse("python2.7-x86_64").is_err());
        assert_eq!(
            cell.image("layer-tools/build-python{python}-standin:latest-{arch}"),
            "layer-tools/build-python3.13-standin:latest-arm64"
        );
        assert_eq!(cell.layer_name("deps"), "deps-python3-13-arm64");
        assert_eq!(cell.python_platform(), "aarch64-manylinux_2_34");
        let al2 = Cell::parse("python3.9-x86_64").unwrap();
        assert_eq!(al2.python_platform(), "x86_64-manylinux_2_17");
        assert!(validate_layer_name(&cell.layer_name("deps")).is_ok());
        let target = LayerTarget::resolve(&Wanted::default(), None).unwrap();
        assert_eq!(target.for_cell(&cell).file_stem(), "layer-python3.13-arm64");
    }

    #[test]
    fn templates_are_found_by_either_name() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(find_template(None, dir.path()), None);
        std::fs::write(dir.path().join("template.yml"), "Resources: {}\n").unwrap();
        assert_eq!(
            find_template(None, dir.path()),
            Some(dir.path().join("template.yml"))
        );
        let explicit = dir.path().join("other.yaml");
        assert_eq!(find_template(Some(&explicit), dir.path()), Some(explicit));
    }
}
