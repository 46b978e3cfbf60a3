//! `cargo xtask compare A B`: are two builds the same layer? Each side is a manifest (its zip is
//! checked against it) or a zip. Identical means the same content digest: the same paths, kinds
//! and bytes (see `artifacts::digest`), whatever zip holds them. Otherwise it lists what differs,
//! grouped by the causes two honest builds differ by (another package version, another
//! interpreter path in scripts, bytecode, installer metadata), so "another build image" is not
//! mistaken for "another build".

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;

use crate::artifacts::digest::{self, Entry};
use crate::manifest::Manifest;

/// Compare two layers (manifests or zips): exit 0 when identical, 1 when they differ.
#[derive(Debug, Clone, Args)]
pub struct Compare {
    /// A manifest (`<LayerName>.json`) or a layer zip.
    pub a: PathBuf,
    /// The other one.
    pub b: PathBuf,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    pub json: bool,
}

/// One side: its zip, its entries and digest.
#[derive(Debug, Serialize)]
pub struct Side {
    pub zip: PathBuf,
    pub content_sha256: String,
    pub files: usize,
    #[serde(skip)]
    entries: Vec<Entry>,
}

/// How one path differs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    /// `only in a`, `only in b`, `content` or `kind`.
    pub how: &'static str,
    pub detail: String,
}

/// A known reason for some of the differences.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Cause {
    pub cause: &'static str,
    pub explanation: String,
    pub paths: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub identical: bool,
    pub a: Side,
    pub b: Side,
    /// Known causes; each difference is in at most one.
    pub causes: Vec<Cause>,
    /// Differences no known cause explains.
    pub unexplained: Vec<Difference>,
    pub differences: usize,
}

impl Compare {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let comparison = compare(&self.a, &self.b)?;
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", serde_json::to_string(&comparison)?)?;
        } else {
            write!(out, "{}", comparison.human())?;
        }
        Ok(ExitCode::from(u8::from(!comparison.identical)))
    }
}

/// Reads both sides and compares them.
pub fn compare(a: &Path, b: &Path) -> anyhow::Result<Comparison> {
    let (a, b) = (side(a)?, side(b)?);
    let differences = differences(&a.entries, &b.entries);
    let (causes, unexplained) = explain(&differences, &a, &b);
    Ok(Comparison {
        identical: a.content_sha256 == b.content_sha256,
        differences: differences.len(),
        a,
        b,
        causes,
        unexplained,
    })
}

/// A manifest (its zip, checked against it) or a zip.
fn side(path: &Path) -> anyhow::Result<Side> {
    let is_manifest = path.extension().is_some_and(|e| e == "json");
    let (zip, recorded) = match is_manifest {
        true => {
            let manifest = Manifest::read(path)?;
            (manifest.check_zip(path)?, manifest.content_sha256)
        }
        false => (path.to_path_buf(), None),
    };
    let entries = digest::read_zip(&zip)?;
    let content_sha256 = digest::content_sha256(&entries);
    if recorded.as_ref().is_some_and(|r| *r != content_sha256) {
        anyhow::bail!(
            "{} records another content digest than its zip's: the manifest was edited",
            path.display()
        );
    }
    Ok(Side {
        zip,
        content_sha256,
        files: entries.len(),
        entries,
    })
}

/// Every path that is not the same on both sides, in path order.
fn differences(a: &[Entry], b: &[Entry]) -> Vec<Difference> {
    let a: BTreeMap<&str, &Entry> = a.iter().map(|e| (e.name.as_str(), e)).collect();
    let b: BTreeMap<&str, &Entry> = b.iter().map(|e| (e.name.as_str(), e)).collect();
    let paths: BTreeSet<&str> = a.keys().chain(b.keys()).copied().collect();
    let mut out = Vec::new();
    for path in paths {
        let difference = |how, detail| Difference {
            path: path.to_string(),
            how,
            detail,
        };
        match (a.get(path), b.get(path)) {
            (Some(x), None) => out.push(difference("only in a", format!("{} bytes", x.size))),
            (None, Some(y)) => out.push(difference("only in b", format!("{} bytes", y.size))),
            (Some(x), Some(y)) if x.kind != y.kind => out.push(difference(
                "kind",
                format!("{} → {}", x.kind.describe(), y.kind.describe()),
            )),
            (Some(x), Some(y)) if x.sha256 != y.sha256 => out.push(difference(
                "content",
                format!("{} → {} bytes", x.size, y.size),
            )),
            _ => {}
        }
    }
    out
}

/// Sorts the differences into known causes and the rest.
fn explain(differences: &[Difference], a: &Side, b: &Side) -> (Vec<Cause>, Vec<Difference>) {
    let mut causes = Vec::new();
    let mut explained = BTreeSet::new();
    let versions = version_changes(&a.entries, &b.entries);
    if !versions.is_empty() {
        let packages: BTreeSet<&str> = versions.iter().map(|(p, _, _)| p.as_str()).collect();
        let paths = differences
            .iter()
            .filter(|d| packages.contains(owner_of(&d.path).as_str()))
            .map(|d| d.path.clone())
            .collect::<Vec<_>>();
        let list = versions
            .iter()
            .map(|(p, x, y)| format!("{p} {x} → {y}"))
            .collect::<Vec<_>>()
            .join(", ");
        explained.extend(paths.iter().cloned());
        causes.push(Cause {
            cause: "package versions",
            explanation: format!("other releases were installed ({list}): the index changed between the builds, or the locks differ; pin with a lock and --exclude-newer"),
            paths,
        });
    }
    let rest: Vec<&Difference> = differences
        .iter()
        .filter(|d| !explained.contains(&d.path))
        .collect();
    let shebangs: Vec<String> = rest
        .iter()
        .filter(|d| d.how == "content" && shebang_only(&a.zip, &b.zip, &d.path))
        .map(|d| d.path.clone())
        .collect();
    let records: Vec<String> = rest
        .iter()
        .filter(|d| d.how == "content" && d.path.ends_with(".dist-info/RECORD"))
        .filter(|d| record_differs_only_in(&a.zip, &b.zip, &d.path, &shebangs))
        .map(|d| d.path.clone())
        .collect();
    if !shebangs.is_empty() {
        let mut paths = shebangs.clone();
        paths.extend(records);
        explained.extend(paths.iter().cloned());
        causes.push(Cause {
            cause: "interpreter path",
            explanation: "scripts name another interpreter in their `#!` line (and RECORD hashes them): another build image or Python location, not another build".into(),
            paths,
        });
    }
    for (cause, explanation, matches) in SIMPLE_CAUSES {
        let paths: Vec<String> = rest
            .iter()
            .filter(|d| !explained.contains(&d.path) && matches(&d.path))
            .map(|d| d.path.clone())
            .collect();
        if !paths.is_empty() {
            explained.extend(paths.iter().cloned());
            causes.push(Cause {
                cause,
                explanation: explanation.to_string(),
                paths,
            });
        }
    }
    let unexplained = differences
        .iter()
        .filter(|d| !explained.contains(&d.path))
        .cloned()
        .collect();
    (causes, unexplained)
}

type Matcher = fn(&str) -> bool;

const SIMPLE_CAUSES: [(&str, &str, Matcher); 2] = [
    (
        "bytecode",
        "compiled bytecode embeds source paths and timestamps: a layer should carry none (verify warns)",
        |p| p.ends_with(".pyc"),
    ),
    (
        "installer metadata",
        "another installer (pip, uv) or source URL recorded in the package metadata",
        |p| {
            p.ends_with(".dist-info/INSTALLER")
                || p.ends_with(".dist-info/direct_url.json")
                || p.ends_with(".dist-info/REQUESTED")
        },
    ),
];

/// `(package, version in a, version in b)` for every distribution whose version differs,
/// from the `*.dist-info` directory names.
fn version_changes(a: &[Entry], b: &[Entry]) -> Vec<(String, String, String)> {
    let (a, b) = (dist_versions(a), dist_versions(b));
    a.iter()
        .filter_map(|(name, x)| {
            let y = b.get(name)?;
            (x != y).then(|| (name.clone(), x.clone(), y.clone()))
        })
        .collect()
}

/// Distribution name (normalised) → version, from `<name>-<version>.dist-info/METADATA`.
fn dist_versions(entries: &[Entry]) -> BTreeMap<String, String> {
    entries
        .iter()
        .filter_map(|e| e.name.strip_suffix(".dist-info/METADATA"))
        .filter_map(|dir| dir.rsplit('/').next()?.rsplit_once('-'))
        .map(|(name, version)| (normalise(name), version.to_string()))
        .collect()
}

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

/// The distribution a path most likely belongs to: its dist-info's name, else its top-level
/// package directory (`pandas/core/x.py` → `pandas`), normalised.
fn owner_of(path: &str) -> String {
    let inside = path
        .split_once("/site-packages/")
        .map_or_else(|| path.strip_prefix("python/").unwrap_or(path), |(_, p)| p);
    let top = inside.split('/').next().unwrap_or_default();
    let top = top
        .strip_suffix(".dist-info")
        .and_then(|d| d.rsplit_once('-').map(|(n, _)| n))
        .unwrap_or(top);
    let top = top.strip_suffix(".libs").unwrap_or(top);
    normalise(top.strip_suffix(".py").unwrap_or(top))
}

/// The most of a file read to explain a difference.
const MAX_EXPLAINED_BYTES: u64 = 1 << 20;

/// Whether the two versions of `path` differ in their first line only, both a `#!` line.
fn shebang_only(a: &Path, b: &Path, path: &str) -> bool {
    let (Ok(x), Ok(y)) = (
        digest::read_entry(a, path, MAX_EXPLAINED_BYTES),
        digest::read_entry(b, path, MAX_EXPLAINED_BYTES),
    ) else {
        return false;
    };
    let split = |bytes: &[u8]| {
        let end = bytes
            .iter()
            .position(|&c| c == b'\n')
            .unwrap_or(bytes.len());
        (bytes[..end].to_vec(), bytes[end..].to_vec())
    };
    let ((x_first, x_rest), (y_first, y_rest)) = (split(&x), split(&y));
    x_first.starts_with(b"#!") && y_first.starts_with(b"#!") && x_rest == y_rest
}

/// Whether the RECORD lines that differ all name one of `allowed` (paths in the layer).
fn record_differs_only_in(a: &Path, b: &Path, record: &str, allowed: &[String]) -> bool {
    let (Ok(x), Ok(y)) = (
        digest::read_entry(a, record, MAX_EXPLAINED_BYTES),
        digest::read_entry(b, record, MAX_EXPLAINED_BYTES),
    ) else {
        return false;
    };
    let lines = |bytes: &[u8]| -> BTreeSet<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (x, y) = (lines(&x), lines(&y));
    let root = record
        .rsplit_once('/')
        .and_then(|(dist_info, _)| dist_info.rsplit_once('/'))
        .map_or("", |(root, _)| root);
    x.symmetric_difference(&y).all(|line| {
        let listed = line.split(',').next().unwrap_or_default();
        // `pip install --target` records scripts as `../../bin/x` and then moves them to
        // `<target>/bin/x`: match on what is left after the `..`s too.
        let tail = listed.trim_start_matches("../");
        allowed.contains(&join_relative(root, listed))
            || allowed.iter().any(|a| a.ends_with(&format!("/{tail}")))
    })
}

/// `root/relative` with `..` resolved (RECORD paths are relative to the site directory).
fn join_relative(root: &str, relative: &str) -> String {
    let mut parts: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
    for part in relative.split('/') {
        match part {
            ".." => {
                parts.pop();
            }
            "" | "." => {}
            part => parts.push(part),
        }
    }
    parts.join("/")
}

impl Comparison {
    /// The report: the first line says whether they are identical.
    pub fn human(&self) -> String {
        let mut text = String::new();
        let line = |text: &mut String, s: String| {
            text.push_str(&s);
            text.push('\n');
        };
        if self.identical {
            line(
                &mut text,
                format!(
                    "identical: content sha256 {} ({} files)",
                    self.a.content_sha256, self.a.files
                ),
            );
            return text;
        }
        line(
            &mut text,
            match self.differences {
                1 => "different: 1 path differs".to_string(),
                n => format!("different: {n} paths differ"),
            },
        );
        for (label, side) in [("a", &self.a), ("b", &self.b)] {
            line(
                &mut text,
                format!(
                    "  {label}: {} (content sha256 {}, {} files)",
                    side.zip.display(),
                    side.content_sha256,
                    side.files
                ),
            );
        }
        for cause in &self.causes {
            line(
                &mut text,
                format!(
                    "cause: {}: {} ({} paths)",
                    cause.cause,
                    cause.explanation,
                    cause.paths.len()
                ),
            );
            for path in cause.paths.iter().take(SHOWN) {
                line(&mut text, format!("    {path}"));
            }
            more(&mut text, cause.paths.len());
        }
        if !self.unexplained.is_empty() {
            line(
                &mut text,
                format!("unexplained: {} paths", self.unexplained.len()),
            );
            for d in self.unexplained.iter().take(SHOWN) {
                line(
                    &mut text,
                    format!("    {:<9}  {}  ({})", d.how, d.path, d.detail),
                );
            }
            more(&mut text, self.unexplained.len());
        }
        text
    }
}

/// Paths shown per group in the report (`--json` has them all).
const SHOWN: usize = 20;

fn more(text: &mut String, total: usize) {
    if total > SHOWN {
        text.push_str(&format!(
            "    … and {} more (--json lists them all)\n",
            total - SHOWN
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::zip::{write_zip, ZipOptions};

    /// A layer zip of `files` (`path`, content; `*` in front: executable) written at `epoch`.
    fn layer(dir: &Path, name: &str, files: &[(&str, &str)], epoch: i64) -> PathBuf {
        let tree = tempfile::tempdir().unwrap();
        for (path, content) in files {
            let (path, executable) = match path.strip_prefix('*') {
                Some(path) => (path, true),
                None => (*path, false),
            };
            let path = tree.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, content).unwrap();
            if executable {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        let zip = dir.join(name);
        let options = ZipOptions {
            source_date_epoch: Some(epoch),
            threads: 1,
        };
        write_zip(tree.path(), &zip, &options).unwrap();
        zip
    }

    const BASE: [(&str, &str); 5] = [
        ("python/six.py", "six"),
        ("python/six-1.17.0.dist-info/METADATA", "Name: six"),
        ("*python/bin/f2py", "#!/var/lang/bin/python3.9\nmain()\n"),
        (
            "python/numpy-2.0.2.dist-info/RECORD",
            "numpy/__init__.py,sha256=a,1\n../../bin/f2py,sha256=old,30\n",
        ),
        ("python/numpy-2.0.2.dist-info/METADATA", "Name: numpy"),
    ];

    #[test]
    fn the_same_files_in_another_zip_are_identical() {
        let dir = tempfile::tempdir().unwrap();
        let a = layer(dir.path(), "a.zip", &BASE, 315_532_800);
        let b = layer(dir.path(), "b.zip", &BASE, 1_700_000_000);
        assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let comparison = compare(&a, &b).unwrap();
        assert!(comparison.identical, "{}", comparison.human());
        assert!(comparison.human().starts_with("identical: content sha256 "));
    }

    #[test]
    fn differences_are_grouped_by_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = BASE.to_vec();
        // Another image: the script's interpreter, and RECORD's hash of the script.
        files[2] = ("*python/bin/f2py", "#!/usr/bin/python3.9\nmain()\n");
        files[3].1 = "numpy/__init__.py,sha256=a,1\n../../bin/f2py,sha256=new,26\n";
        // Another release of six; a stray bytecode file; an edited module; a mode change.
        files[1] = ("python/six-1.16.0.dist-info/METADATA", "Name: six");
        files.push(("python/__pycache__/x.cpython-39.pyc", "bytecode"));
        files.push(("python/mine.py", "edited"));
        files.push(("python/tool.py", "x"));
        let mut a_files = BASE.to_vec();
        a_files.push(("python/mine.py", "original"));
        a_files.push(("*python/tool.py", "x"));
        let a = layer(dir.path(), "a.zip", &a_files, 315_532_800);
        let b = layer(dir.path(), "b.zip", &files, 315_532_800);
        let comparison = compare(&a, &b).unwrap();
        assert!(!comparison.identical);
        let cause = |name: &str| {
            comparison
                .causes
                .iter()
                .find(|c| c.cause == name)
                .unwrap_or_else(|| panic!("no {name}: {}", comparison.human()))
                .paths
                .clone()
        };
        assert_eq!(
            cause("package versions"),
            [
                "python/six-1.16.0.dist-info/METADATA",
                "python/six-1.17.0.dist-info/METADATA",
            ]
        );
        assert_eq!(
            cause("interpreter path"),
            ["python/bin/f2py", "python/numpy-2.0.2.dist-info/RECORD"]
        );
        assert_eq!(cause("bytecode"), ["python/__pycache__/x.cpython-39.pyc"]);
        let unexplained: Vec<(&str, &str)> = comparison
            .unexplained
            .iter()
            .map(|d| (d.path.as_str(), d.how))
            .collect();
        assert_eq!(
            unexplained,
            [("python/mine.py", "content"), ("python/tool.py", "kind")]
        );
        let human = comparison.human();
        assert!(human.starts_with("different: "), "{human}");
        assert!(human.contains("six 1.17.0 → 1.16.0"), "{human}");
    }

    #[test]
    fn paths_belong_to_their_distribution() {
        assert_eq!(owner_of("python/pandas/core/x.py"), "pandas");
        assert_eq!(owner_of("python/numpy.libs/libx.so"), "numpy");
        assert_eq!(
            owner_of("python/python_dateutil-2.9.0.dist-info/RECORD"),
            "python_dateutil"
        );
        assert_eq!(
            owner_of("python/lib/python3.13/site-packages/six.py"),
            "six"
        );
    }

    #[test]
    fn record_paths_resolve_against_the_site_directory() {
        assert_eq!(
            join_relative("python", "../python/bin/f2py"),
            "python/bin/f2py"
        );
        assert_eq!(join_relative("python", "bin/f2py"), "python/bin/f2py");
    }
}
