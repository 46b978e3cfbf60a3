//! The static checks of a layer tree (no Docker): ELF architecture, glibc and musl, extension and
//! wheel ABI tags, layout, stray bytecode, tests/docs bloat and a bundled AWS SDK.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use super::abi::{self, ExtensionAbi};
use super::elf;
use super::Target;
use crate::artifacts::tree::package_key;
use crate::diagnostic::{Diagnostic, Severity, SourceFile};
use crate::layer::{MAX_INLINE_ZIP_BYTES, MAX_UNZIPPED_BYTES};
use crate::rules::{self, Rule};
use crate::runtime::Runtime;
use crate::yaml::Span;

/// Directory names whose contents no import needs; reported when they add up to this many bytes.
const BLOAT_DIRS: &[&str] = &["tests", "test", "docs", "doc", "examples"];
const BLOAT_MIN_BYTES: u64 = 100_000;
/// Top-level entries Lambda uses besides `python/`: `/opt/bin` is on PATH, `/opt/lib` on
/// LD_LIBRARY_PATH (AWS Lambda developer guide, "Layer paths for each Lambda runtime").
const OTHER_USED_ROOTS: &[&str] = &["bin", "lib"];
/// Packages every Python runtime already provides (the AWS SDK for Python).
const RUNTIME_SDK: &[&str] = &["boto3", "botocore"];

/// One file of the tree, by its `/`-separated path relative to the layer root.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub rel: String,
    pub size: u64,
    pub is_symlink: bool,
}

/// Every file and symlink under `dir`, sorted by path; unreadable directories become diagnostics.
pub(crate) fn walk(dir: &Path) -> (Vec<Entry>, Vec<Diagnostic>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let read = match std::fs::read_dir(&path) {
            Ok(read) => read,
            Err(e) => {
                problems.push(unreadable(&rel, &e));
                continue;
            }
        };
        for child in read {
            let child = match child {
                Ok(child) => child,
                Err(e) => {
                    problems.push(unreadable(&rel, &e));
                    continue;
                }
            };
            let name = child.file_name().to_string_lossy().to_string();
            let child_rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = match std::fs::symlink_metadata(child.path()) {
                Ok(meta) => meta,
                Err(e) => {
                    problems.push(unreadable(&child_rel, &e));
                    continue;
                }
            };
            if meta.is_dir() {
                stack.push((child.path(), child_rel));
            } else {
                entries.push(Entry {
                    rel: child_rel,
                    size: meta.len(),
                    is_symlink: meta.file_type().is_symlink(),
                });
            }
        }
    }
    entries.sort_by(|a, b| a.rel.cmp(&b.rel));
    (entries, problems)
}

fn unreadable(rel: &str, error: &std::io::Error) -> Diagnostic {
    let shown = if rel.is_empty() { "." } else { rel };
    diagnostic(
        &rules::UNREADABLE_FILE,
        shown,
        format!("cannot read {shown}: {error}"),
    )
}

/// A diagnostic pointing at a file of the layer (by its path in the zip).
pub(crate) fn diagnostic(rule: &'static Rule, rel: &str, message: String) -> Diagnostic {
    let file = SourceFile::new(rel, "");
    Diagnostic::new(rule, message).at(file.at(Span::default()))
}

/// The Python version a `python/lib/python3.X/…` path is for.
pub(crate) fn versioned_dir(rel: &str) -> Option<(u32, u32)> {
    let rest = rel.strip_prefix("python/lib/python")?;
    let version = rest.split('/').next()?;
    let (major, minor) = version.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The package roots a path can sit in: `python` or `python/lib/python3.X/site-packages`.
pub(crate) fn package_root(rel: &str) -> Option<String> {
    if let Some((major, minor)) = versioned_dir(rel) {
        let root = format!("python/lib/python{major}.{minor}/site-packages");
        return rel.starts_with(&format!("{root}/")).then_some(root);
    }
    rel.starts_with("python/").then(|| "python".to_string())
}

/// The target runtimes that put `rel` on their `sys.path`: all of them for `python/…`, only the
/// matching version for `python/lib/python3.X/…`, none for anything else.
pub(crate) fn visible_runtimes(rel: &str, target: &Target) -> Vec<&'static Runtime> {
    match versioned_dir(rel) {
        Some(version) => target
            .runtimes
            .iter()
            .copied()
            .filter(|r| r.python == version)
            .collect(),
        None if rel.starts_with("python/") => target.runtimes.clone(),
        None => Vec::new(),
    }
}

fn ids(runtimes: &[&Runtime]) -> String {
    runtimes.iter().map(|r| r.id).collect::<Vec<_>>().join(", ")
}

/// `512 B`, `150.0 kB`, `12.3 MB`.
fn megabytes(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

/// Every static check of the tree at `dir`.
pub fn run(dir: &Path, target: &Target) -> Vec<Diagnostic> {
    let (entries, mut diagnostics) = walk(dir);
    for entry in entries.iter().filter(|e| !e.is_symlink) {
        native(dir, entry, target, &mut diagnostics);
        if entry.rel.ends_with(".dist-info/WHEEL") {
            wheel(dir, entry, target, &mut diagnostics);
        }
    }
    layout(&entries, target, &mut diagnostics);
    unzipped_size(&entries, &mut diagnostics);
    pycache(&entries, target, &mut diagnostics);
    bloat(&entries, &mut diagnostics);
    runtime_sdk(&entries, &mut diagnostics);
    crate::diagnostic::sort(&mut diagnostics);
    diagnostics
}

/// The most a metadata file (`WHEEL`, `RECORD`, `top_level.txt`) is read of.
pub(crate) const METADATA_MAX_BYTES: u64 = 16 << 20;
/// How many packages a size message names.
const BIGGEST_PACKAGES: usize = 10;

/// The layer's unzipped size against Lambda's limit (for a function and all its layers).
fn unzipped_size(entries: &[Entry], out: &mut Vec<Diagnostic>) {
    let total: u64 = entries.iter().map(|e| e.size).sum();
    if total <= MAX_UNZIPPED_BYTES {
        return;
    }
    let message = format!(
        "the layer is {total} bytes unzipped, over Lambda's limit of {MAX_UNZIPPED_BYTES} bytes for a function and all its layers; {}",
        biggest_packages(entries)
    );
    out.push(
        diagnostic(&rules::LAYER_TOO_LARGE, ".", message)
            .help("drop what the functions do not import (tests, docs, boto3), or split the layer"),
    );
}

/// A zip of `zipped` bytes of the tree at `dir`: over the inline upload limit it goes through S3.
pub fn zip_size(zipped: u64, dir: &Path) -> Option<Diagnostic> {
    if zipped <= MAX_INLINE_ZIP_BYTES {
        return None;
    }
    let (entries, _) = walk(dir);
    let message = format!(
        "the zip is {zipped} bytes, over {MAX_INLINE_ZIP_BYTES}: it cannot be uploaded inline and will go through S3; {}",
        biggest_packages(&entries)
    );
    Some(diagnostic(&rules::OVER_INLINE_LIMIT, ".", message).help("deploy with --bucket"))
}

/// `biggest packages: python/numpy 36.1 MB, …`
fn biggest_packages(entries: &[Entry]) -> String {
    let mut packages: BTreeMap<String, u64> = BTreeMap::new();
    for entry in entries {
        *packages.entry(package_key(&entry.rel)).or_default() += entry.size;
    }
    let mut biggest: Vec<(String, u64)> = packages.into_iter().collect();
    biggest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let named: Vec<String> = biggest
        .iter()
        .take(BIGGEST_PACKAGES)
        .map(|(name, bytes)| format!("{name} {:.1} MB", *bytes as f64 / 1e6))
        .collect();
    format!("biggest packages: {}", named.join(", "))
}

/// ELF machine, glibc and musl of one file, and its extension module tag.
fn native(dir: &Path, entry: &Entry, target: &Target, out: &mut Vec<Diagnostic>) {
    let visible = visible_runtimes(&entry.rel, target);
    extension_tag(entry, &visible, out);
    let facts = match elf_facts(&dir.join(&entry.rel)) {
        Ok(Some(facts)) => facts,
        Ok(None) => return,
        Err(e) => return out.push(unreadable(&entry.rel, &e)),
    };
    elf_architecture(entry, &facts, target, out);
    // A native file outside python/ (e.g. /opt/lib) is loaded by every runtime of the layer.
    let loaders = if visible.is_empty() {
        target.runtimes.clone()
    } else {
        visible
    };
    elf_glibc(entry, &facts, &loaders, out);
    if let Some(musl) = &facts.musl {
        let message = format!("{} is linked against musl libc ({musl})", entry.rel);
        out.push(diagnostic(&rules::MUSL_LINKED, &entry.rel, message).help(MUSL_HELP));
    }
}

/// An extension module's file name tag (`.cpython-313-x86_64-linux-gnu.so`) against the
/// runtimes that see it, and a musl platform in it.
fn extension_tag(entry: &Entry, visible: &[&'static Runtime], out: &mut Vec<Diagnostic>) {
    let name = entry.rel.rsplit('/').next().unwrap_or(&entry.rel);
    let Some(tag) = abi::extension_abi(name) else {
        return;
    };
    let misfits: Vec<&Runtime> = visible.iter().copied().filter(|r| !tag.fits(r)).collect();
    if !misfits.is_empty() {
        let fits: Vec<&str> = crate::runtime::RUNTIMES
            .iter()
            .filter(|r| tag.fits(r))
            .map(|r| r.id)
            .collect();
        let message = format!(
            "{} is an extension module for {}: it does not load on {}",
            entry.rel,
            tag.describe(),
            ids(&misfits)
        );
        out.push(
            diagnostic(&rules::ABI_MISMATCH, &entry.rel, message).help(format!(
                "claim only {} in CompatibleRuntimes, or build one layer per Python version in that version's image",
                fits.join(", ")
            )),
        );
    }
    if let ExtensionAbi::CPython { platform, .. } = &tag {
        if platform.ends_with("-musl") {
            let message = format!("{} is built for musl libc ({platform})", entry.rel);
            out.push(diagnostic(&rules::MUSL_LINKED, &entry.rel, message).help(MUSL_HELP));
        }
    }
}

/// The ELF facts of a file, `None` when it is not an ELF file (or not one `object` can read).
fn elf_facts(path: &Path) -> std::io::Result<Option<elf::ElfFacts>> {
    let mut magic = [0u8; 4];
    let is_elf = crate::util::open_regular(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && elf::is_elf(&magic);
    if !is_elf {
        return Ok(None);
    }
    let file = crate::util::open_regular(path)?;
    Ok(elf::inspect(&object::ReadCache::new(file)).ok())
}

/// The file's machine must be every architecture the layer is for.
fn elf_architecture(
    entry: &Entry,
    facts: &elf::ElfFacts,
    target: &Target,
    out: &mut Vec<Diagnostic>,
) {
    let arch = facts.lambda_architecture();
    // A layer for both architectures can hold no single-architecture native file.
    let misfits: Vec<&str> = target
        .architectures
        .iter()
        .map(String::as_str)
        .filter(|t| arch != Some(*t))
        .collect();
    if misfits.is_empty() {
        return;
    }
    let message = format!(
        "{} is built for {}, but the layer is for {}",
        entry.rel,
        elf::machine_name(facts.machine),
        misfits.join(", ")
    );
    let help = match (arch, target.architectures.len()) {
        (Some(_), 2) => "a layer for both architectures must be pure Python: publish one layer per architecture".to_string(),
        (Some(_), _) => format!("build in the {0} image (`--arch {0}`) or install wheels for {0} (`pip install --platform manylinux2014_{1} --only-binary=:all:`)", misfits[0], if misfits[0] == "arm64" { "aarch64" } else { "x86_64" }),
        (None, _) => "Lambda runs only on x86_64 and arm64: remove the file or rebuild it".to_string(),
    };
    out.push(diagnostic(&rules::ELF_ARCHITECTURE, &entry.rel, message).help(help));
}

/// The newest glibc symbol version the file needs, against the runtimes that load it.
fn elf_glibc(
    entry: &Entry,
    facts: &elf::ElfFacts,
    loaders: &[&'static Runtime],
    out: &mut Vec<Diagnostic>,
) {
    let Some(needed) = facts.max_glibc else {
        return;
    };
    let too_old: Vec<&Runtime> = loaders
        .iter()
        .copied()
        .filter(|r| needed > r.glibc)
        .collect();
    let Some(first) = too_old.first() else {
        return;
    };
    let message = format!(
        "{} needs glibc {}.{}, but {} {} glibc {}.{}",
        entry.rel,
        needed.0,
        needed.1,
        ids(&too_old),
        if too_old.len() == 1 { "has" } else { "have" },
        first.glibc.0,
        first.glibc.1
    );
    out.push(diagnostic(&rules::GLIBC_TOO_NEW, &entry.rel, message).help(format!(
        "the usual cause is a build image that is not Lambda's OS (its glibc is newer, so pip or uv chose a wheel for it): build in the runtime's own image ({}), or ask the installer for manylinux2014 wheels (`pip install --platform manylinux2014_x86_64 --only-binary=:all:`, `uv pip install --python-platform x86_64-manylinux2014`)",
        first.build_image()
    )));
}

const MUSL_HELP: &str = "Lambda runs on glibc (Amazon Linux): install manylinux wheels, not musllinux ones, and do not build in an Alpine image";

/// The `Tag:` lines of one installed wheel against every runtime and architecture that sees it.
fn wheel(dir: &Path, entry: &Entry, target: &Target, out: &mut Vec<Diagnostic>) {
    let Ok(text) = crate::util::read_regular(&dir.join(&entry.rel), METADATA_MAX_BYTES) else {
        return;
    };
    let tags = abi::wheel_tags(&text);
    if tags.is_empty() {
        return;
    }
    let mut misfits = Vec::new();
    for runtime in visible_runtimes(&entry.rel, target) {
        for arch in &target.architectures {
            if !tags.iter().any(|tag| abi::tag_fits(tag, runtime, arch)) {
                misfits.push(format!("{}/{arch}", runtime.id));
            }
        }
    }
    if misfits.is_empty() {
        return;
    }
    let dist = entry
        .rel
        .rsplit('/')
        .nth(1)
        .and_then(|d| d.strip_suffix(".dist-info"))
        .unwrap_or(&entry.rel);
    let message = format!(
        "{dist} was installed from a wheel tagged {} that does not fit {}",
        tags.join(", "),
        misfits.join(", ")
    );
    out.push(
        diagnostic(&rules::WHEEL_TAG_MISMATCH, &entry.rel, message).help(
            "install with the runtime's pip in its build image, or pass pip `--python-version`, `--platform` and `--only-binary=:all:` for each target",
        ),
    );
}

/// Where the packages are: every runtime must see some, and nothing should sit where Lambda
/// never looks.
fn layout(entries: &[Entry], target: &Target, out: &mut Vec<Diagnostic>) {
    let mut stray: BTreeMap<String, u64> = BTreeMap::new();
    let mut versioned: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut seen_by: Vec<&Runtime> = Vec::new();
    for entry in entries {
        let top = entry.rel.split('/').next().unwrap_or_default();
        if top != "python" {
            if !(OTHER_USED_ROOTS.contains(&top) && entry.rel.contains('/')) {
                *stray.entry(top.to_string()).or_default() += entry.size;
            }
            continue;
        }
        if let Some(version) = versioned_dir(&entry.rel) {
            *versioned.entry(version).or_default() += 1;
        }
        for runtime in visible_runtimes(&entry.rel, target) {
            if !seen_by.contains(&runtime) {
                seen_by.push(runtime);
            }
        }
    }
    for (name, bytes) in &stray {
        let message = format!(
            "{name} ({}) is at the layer root, where Lambda does not look: only python/ is on sys.path (and bin/, lib/ on PATH and LD_LIBRARY_PATH)",
            megabytes(*bytes)
        );
        out.push(
            diagnostic(&rules::LAYER_TREE_LAYOUT, name, message)
                .severity(Severity::Warning)
                .help("install packages with `pip install -t python/` and leave everything else out of the artifact"),
        );
    }
    for (version, files) in &versioned {
        if target.runtimes.iter().any(|r| r.python == *version) {
            continue;
        }
        let dir = format!("python/lib/python{}.{}", version.0, version.1);
        let message = format!(
            "{dir} ({files} files) is only on sys.path for Python {}.{}, which the layer does not target ({})",
            version.0,
            version.1,
            ids(&target.runtimes)
        );
        out.push(
            diagnostic(&rules::LAYER_TREE_LAYOUT, &dir, message)
                .help("install into python/ (every version sees it) or into the site-packages of the targeted version"),
        );
    }
    let blind: Vec<&Runtime> = target
        .runtimes
        .iter()
        .copied()
        .filter(|r| !seen_by.contains(r))
        .collect();
    if !blind.is_empty() {
        let message = format!(
            "{} would find no packages in this layer: nothing under python/{}",
            ids(&blind),
            if blind.len() == 1 {
                format!(
                    " or python/lib/python{}/site-packages",
                    blind[0].python_version()
                )
            } else {
                String::new()
            }
        );
        out.push(
            diagnostic(&rules::LAYER_TREE_LAYOUT, "python", message)
                .help("the artifact's base-directory must contain python/ (`pip install -t layer/python`)"),
        );
    }
}

/// `__pycache__/*.cpython-3Y.pyc` for versions none of the runtimes that see them run.
fn pycache(entries: &[Entry], target: &Target, out: &mut Vec<Diagnostic>) {
    // tag → (files, bytes, first file)
    let mut stale: BTreeMap<String, (u64, u64, String)> = BTreeMap::new();
    for entry in entries {
        if !entry.rel.contains("__pycache__/") || !entry.rel.ends_with(".pyc") {
            continue;
        }
        let name = entry.rel.rsplit('/').next().unwrap_or_default();
        let Some(tag) = name.split('.').find(|part| part.starts_with("cpython-")) else {
            continue;
        };
        let visible = visible_runtimes(&entry.rel, target);
        if visible.is_empty() {
            continue;
        }
        let used = visible
            .iter()
            .any(|r| tag == format!("cpython-{}{}", r.python.0, r.python.1));
        if !used {
            let slot = stale
                .entry(tag.to_string())
                .or_insert_with(|| (0, 0, entry.rel.clone()));
            slot.0 += 1;
            slot.1 += entry.size;
        }
    }
    for (tag, (files, bytes, first)) in stale {
        let message = format!(
            "{files} bytecode files ({}) are compiled for {tag}, which no runtime of the layer ({}) uses, e.g. {first}",
            megabytes(bytes),
            ids(&target.runtimes)
        );
        out.push(
            diagnostic(&rules::PYCACHE_MISMATCH, &first, message)
                .help("install and compile with the target runtime's Python, or leave __pycache__ out of the artifact"),
        );
    }
}

/// Test, documentation and example directories, biggest first, when they add up.
fn bloat(entries: &[Entry], out: &mut Vec<Diagnostic>) {
    let mut dirs: BTreeMap<String, u64> = BTreeMap::new();
    for entry in entries {
        let parts: Vec<&str> = entry.rel.split('/').collect();
        // The outermost such directory below a package root, never a .dist-info's contents.
        let Some(index) = parts[..parts.len().saturating_sub(1)]
            .iter()
            .position(|p| BLOAT_DIRS.contains(p))
        else {
            continue;
        };
        if index == 0 || parts[..index].iter().any(|p| p.ends_with(".dist-info")) {
            continue;
        }
        *dirs.entry(parts[..=index].join("/")).or_default() += entry.size;
    }
    let total: u64 = dirs.values().sum();
    if total < BLOAT_MIN_BYTES {
        return;
    }
    let mut biggest: Vec<(&String, &u64)> = dirs.iter().collect();
    biggest.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let listed: Vec<String> = biggest
        .iter()
        .take(5)
        .map(|(dir, bytes)| format!("{dir} {}", megabytes(**bytes)))
        .collect();
    let first = biggest.first().map_or("python", |(dir, _)| dir.as_str());
    let message = format!(
        "{} test/doc/example directories take {}: {}{}",
        dirs.len(),
        megabytes(total),
        listed.join(", "),
        if dirs.len() > 5 { ", …" } else { "" }
    );
    out.push(
        diagnostic(&rules::BLOAT, first, message).help(
            "exclude them from the artifact (`exclude-paths`) or delete them after pip install",
        ),
    );
}

/// `boto3`/`botocore` packages in the layer: they replace the runtime's (patched, tested) copy.
fn runtime_sdk(entries: &[Entry], out: &mut Vec<Diagnostic>) {
    let mut found: BTreeMap<String, u64> = BTreeMap::new();
    for entry in entries {
        let Some(root) = package_root(&entry.rel) else {
            continue;
        };
        let inside = &entry.rel[root.len() + 1..];
        let top = inside.split('/').next().unwrap_or_default();
        if RUNTIME_SDK.contains(&top) && inside.contains('/') {
            *found.entry(format!("{root}/{top}")).or_default() += entry.size;
        }
    }
    for (dir, bytes) in found {
        let name = dir.rsplit('/').next().unwrap_or(&dir);
        let message = format!(
            "{dir} ({}) shadows the {name} the Lambda runtime provides",
            megabytes(bytes)
        );
        out.push(diagnostic(&rules::SHADOWS_RUNTIME_SDK, &dir, message).help(
            "leave it out unless you need a newer version than the runtime's (then pin it and keep it up to date)",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_the_runtimes_that_see_them() {
        let target = Target {
            runtimes: vec![
                Runtime::find("python3.9").unwrap(),
                Runtime::find("python3.12").unwrap(),
            ],
            architectures: vec!["x86_64".into()],
        };
        let ids = |rel: &str| -> Vec<&str> {
            visible_runtimes(rel, &target)
                .iter()
                .map(|r| r.id)
                .collect()
        };
        assert_eq!(ids("python/six.py"), ["python3.9", "python3.12"]);
        assert_eq!(
            ids("python/lib/python3.12/site-packages/six.py"),
            ["python3.12"]
        );
        assert!(ids("python/lib/python3.11/site-packages/six.py").is_empty());
        assert!(ids("six.py").is_empty());
        assert_eq!(
            package_root("python/lib/python3.12/site-packages/a/b.py").as_deref(),
            Some("python/lib/python3.12/site-packages")
        );
        assert_eq!(package_root("python/a/b.py").as_deref(), Some("python"));
        assert_eq!(package_root("lib/a.so"), None);
    }
}
