//! The destination tree that extraction (tar or zip) writes into, and the one place with its safety
//! rules: no absolute or `..` paths, no writing through symlinks, links checked against the root,
//! no device or fifo entries, modes normalised to 0644/0755 (never setuid/setgid, never the
//! archive's owner: files belong to the user running the tool).
//!
//! Symlinks are resolved after the last entry (their target may come later in the stream):
//! - without `enable-symlinks`, CodeBuild zips the link target's content; here a link whose target
//!   (a file, or a directory's files) is in the artifact is stored as a copy of it, and a link that
//!   leaves the root, dangles, or points at files outside the selection is an error;
//! - with `enable-symlinks`, a link is kept as a link if it stays inside the root.
//!
//! Hard links are stored as copies of their (earlier) target.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Why an archive could not be extracted. Every variant names the offending entry.
#[derive(Debug)]
pub enum ExtractError {
    AbsolutePath {
        entry: String,
    },
    ParentComponent {
        entry: String,
    },
    InvalidPath {
        entry: String,
        reason: &'static str,
    },
    /// A link whose target is absolute or climbs out of the destination.
    LinkEscapes {
        entry: String,
        target: String,
    },
    /// A link whose target is not in the archive, or not in the selected files.
    LinkTargetMissing {
        entry: String,
        target: String,
    },
    LinkCycle {
        entry: String,
    },
    UnsupportedEntry {
        entry: String,
        kind: String,
    },
    /// A path component of the entry is a symlink already in the destination.
    WritesThroughSymlink {
        entry: String,
        link: String,
    },
    /// Two different entries land on the same path (e.g. with `discard-paths: yes`).
    Collision {
        path: String,
        first: String,
        second: String,
    },
    NoMatchingArtifactPaths {
        patterns: Vec<String>,
        hint: Option<String>,
    },
    /// More than an extraction may write or read (see [`Limits`]).
    LimitExceeded {
        what: &'static str,
        limit: u64,
    },
    /// Two paths that differ only in case, on a host file system that would merge them.
    CaseCollision {
        first: String,
        second: String,
    },
    Io {
        entry: String,
        source: io::Error,
    },
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::AbsolutePath { entry } => {
                write!(f, "archive entry `{entry}` has an absolute path")
            }
            ExtractError::ParentComponent { entry } => {
                write!(f, "archive entry `{entry}` climbs out of the destination with `..`")
            }
            ExtractError::InvalidPath { entry, reason } => {
                write!(f, "archive entry `{entry}` has an invalid path: {reason}")
            }
            ExtractError::LinkEscapes { entry, target } => write!(
                f,
                "link `{entry}` points to `{target}`, outside the artifact root"
            ),
            ExtractError::LinkTargetMissing { entry, target } => write!(
                f,
                "link `{entry}` points to `{target}`, which is not among the artifact's files: \
                 add it to artifacts.files or set enable-symlinks: yes"
            ),
            ExtractError::LinkCycle { entry } => {
                write!(f, "link `{entry}` points to one of its own parent directories")
            }
            ExtractError::UnsupportedEntry { entry, kind } => write!(
                f,
                "archive entry `{entry}` is a {kind}: only files, directories and links can be artifacts"
            ),
            ExtractError::WritesThroughSymlink { entry, link } => write!(
                f,
                "archive entry `{entry}` would be written through the symlink `{link}`"
            ),
            ExtractError::Collision {
                path,
                first,
                second,
            } => write!(
                f,
                "`{first}` and `{second}` both land at `{path}` (discard-paths keeps only file names)"
            ),
            ExtractError::NoMatchingArtifactPaths { patterns, hint } => {
                write!(
                    f,
                    "no matching artifact paths found for files: [{}]",
                    patterns.join(", ")
                )?;
                if let Some(hint) = hint {
                    write!(f, "; {hint}")?;
                }
                Ok(())
            }
            ExtractError::LimitExceeded { what, limit } => write!(
                f,
                "the artifact is over the extraction limit of {limit} {what}: nothing was kept"
            ),
            ExtractError::CaseCollision { first, second } => write!(
                f,
                "`{first}` and `{second}` differ only in case, and this machine's file system would merge them into one: extract on a case-sensitive file system"
            ),
            ExtractError::Io { entry, source } => {
                write!(f, "cannot extract `{entry}`: {source}")
            }
        }
    }
}

impl std::error::Error for ExtractError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExtractError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub(crate) fn io_error(entry: &str) -> impl FnOnce(io::Error) -> ExtractError + '_ {
    move |source| ExtractError::Io {
        entry: entry.to_string(),
        source,
    }
}

/// What an extraction wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExtractSummary {
    /// Files (and kept symlinks) written.
    pub files: u64,
    /// Their total size: the layer's unzipped size.
    pub bytes: u64,
    /// Bytes per package: the first two path components (`python/numpy`), or up to the component
    /// after `site-packages` (`python/lib/python3.12/site-packages/numpy`).
    pub packages: BTreeMap<String, u64>,
}

impl ExtractSummary {
    /// The `n` biggest packages, biggest first (ties by name).
    pub fn biggest(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self
            .packages
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }

    fn add(&mut self, path: &str, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
        *self.packages.entry(package_key(path)).or_default() += bytes;
    }
}

/// The package a file belongs to, for the size report.
pub fn package_key(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    let end = match parts.iter().position(|p| *p == "site-packages") {
        Some(i) => i + 2,
        None => 2,
    };
    parts[..end.min(parts.len())].join("/")
}

/// 0755 if any execute bit is set, else 0644.
pub fn normalised_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// An archive entry's path as a clean relative path (`/`-separated, no `.`); `""` for the root.
pub fn relative_entry_path(raw: &[u8]) -> Result<String, ExtractError> {
    let lossy = || String::from_utf8_lossy(raw).into_owned();
    let text = std::str::from_utf8(raw).map_err(|_| ExtractError::InvalidPath {
        entry: lossy(),
        reason: "not UTF-8",
    })?;
    if text.contains('\0') {
        return Err(ExtractError::InvalidPath {
            entry: lossy(),
            reason: "contains a NUL byte",
        });
    }
    if text.starts_with('/') || text.starts_with('\\') {
        return Err(ExtractError::AbsolutePath {
            entry: text.to_string(),
        });
    }
    let mut parts = Vec::new();
    for part in text.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(ExtractError::ParentComponent {
                    entry: text.to_string(),
                })
            }
            _ => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

/// A symlink target resolved lexically against the link's directory; `None` if it is absolute
/// or climbs above the root.
pub fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') || target.is_empty() {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

/// How much one extraction may write and read: a build's output is untrusted, and a sparse
/// file, a hard-link or symlink fan-out, or a zip bomb must not fill the disk (or `/dev/shm`,
/// which is memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes written (files and kept links, copies of linked files included).
    pub max_bytes: u64,
    /// Entries read from the archive, selected or not.
    pub max_entries: u64,
}

impl Default for Limits {
    /// Lambda's unzipped limit with as much again as margin (so a layer slightly too big is
    /// still judged by `verify`, with its biggest packages named), and half a million entries.
    fn default() -> Limits {
        Limits {
            max_bytes: 2 * crate::layer::MAX_UNZIPPED_BYTES,
            max_entries: 500_000,
        }
    }
}

struct Symlink {
    source: String,
    target: String,
}

/// A writer that keeps the CRC-32 of what went through it.
struct Crc32Writer<W> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> Write for Crc32Writer<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.crc.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Whether following `target` from the link at `link` stays inside the root, resolving every
/// component through the tree's own links (`links`: path → target) as the file system would,
/// `..` after a link included.
pub fn stays_inside(link: &str, target: &str, links: &BTreeMap<String, String>) -> bool {
    let mut hops = 0;
    let mut here: Vec<&str> = link.split('/').collect();
    here.pop();
    let mut pending: std::collections::VecDeque<&str> = target.split('/').collect();
    if target.is_empty() || target.starts_with('/') {
        return false;
    }
    while let Some(part) = pending.pop_front() {
        match part {
            "" | "." => {}
            ".." => {
                if here.pop().is_none() {
                    return false;
                }
            }
            name => {
                here.push(name);
                let Some(next) = links.get(&here.join("/")) else {
                    continue;
                };
                hops += 1;
                if hops > 40 || next.is_empty() || next.starts_with('/') {
                    return false;
                }
                here.pop();
                for part in next.split('/').rev() {
                    pending.push_front(part);
                }
            }
        }
    }
    true
}

/// Whether the file system at `dir` treats `A` and `a` as one name (macOS and Windows by
/// default): there, two entries that differ only in case would silently become one file.
fn case_insensitive(dir: &Path) -> bool {
    let upper = dir.join(".XTASK-CASE-PROBE");
    if fs::write(&upper, b"").is_err() {
        return false;
    }
    let folded = fs::symlink_metadata(dir.join(".xtask-case-probe")).is_ok();
    let _ = fs::remove_file(&upper);
    folded
}

/// Where a source path lands in the destination, or `None` when it is not selected.
type Place<'a> = Box<dyn Fn(&str) -> Option<String> + 'a>;

/// The destination directory being filled, entry by entry.
pub(crate) struct Tree<'a> {
    root: PathBuf,
    enable_symlinks: bool,
    place: Place<'a>,
    /// Source path → destination path of every regular file written.
    written: BTreeMap<String, String>,
    /// Destination path → source path, to find collisions.
    landed: BTreeMap<String, String>,
    /// Every regular file in the archive, selected or not.
    all_files: BTreeSet<String>,
    /// Every directory entry in the archive.
    pub(crate) directories: BTreeSet<String>,
    symlinks: BTreeMap<String, Symlink>,
    created_dirs: HashSet<PathBuf>,
    summary: ExtractSummary,
    limits: Limits,
    entries: u64,
    /// Lower-cased destination paths, on a case-insensitive host file system.
    folded: Option<BTreeMap<String, String>>,
}

impl<'a> Tree<'a> {
    pub(crate) fn new(
        root: &Path,
        enable_symlinks: bool,
        limits: &Limits,
        place: impl Fn(&str) -> Option<String> + 'a,
    ) -> Result<Tree<'a>, ExtractError> {
        fs::create_dir_all(root).map_err(io_error(""))?;
        let folded = case_insensitive(root).then(BTreeMap::new);
        Ok(Tree {
            limits: *limits,
            entries: 0,
            folded,
            root: root.to_path_buf(),
            enable_symlinks,
            place: Box::new(place),
            written: BTreeMap::new(),
            landed: BTreeMap::new(),
            all_files: BTreeSet::new(),
            directories: BTreeSet::new(),
            symlinks: BTreeMap::new(),
            created_dirs: HashSet::new(),
            summary: ExtractSummary::default(),
        })
    }

    /// Counts one more entry of the archive against [`Limits::max_entries`].
    pub(crate) fn count_entry(&mut self) -> Result<(), ExtractError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(ExtractError::LimitExceeded {
                what: "archive entries",
                limit: self.limits.max_entries,
            });
        }
        Ok(())
    }

    /// Counts `bytes` more written against [`Limits::max_bytes`].
    fn check_room(&self, bytes: u64) -> Result<(), ExtractError> {
        if self.summary.bytes.saturating_add(bytes) > self.limits.max_bytes {
            return Err(self.too_many_bytes());
        }
        Ok(())
    }

    fn too_many_bytes(&self) -> ExtractError {
        ExtractError::LimitExceeded {
            what: "bytes",
            limit: self.limits.max_bytes,
        }
    }

    pub(crate) fn directory(&mut self, source: &str) {
        if !source.is_empty() {
            self.directories.insert(source.to_string());
        }
    }

    /// A regular file; written if the selection places it.
    pub(crate) fn file(
        &mut self,
        source: &str,
        content: &mut dyn Read,
        mode: u32,
    ) -> Result<(), ExtractError> {
        self.all_files.insert(source.to_string());
        let Some(dest) = (self.place)(source) else {
            return Ok(());
        };
        let bytes = self.write(source, &dest, content, mode)?;
        self.written.insert(source.to_string(), dest.clone());
        self.summary.add(&dest, bytes);
        Ok(())
    }

    /// A symlink; resolved in [`Tree::finish`].
    pub(crate) fn symlink(&mut self, source: &str, target: &str) {
        self.symlinks.insert(
            source.to_string(),
            Symlink {
                source: source.to_string(),
                target: target.to_string(),
            },
        );
    }

    /// A hard link to an earlier entry (`target` relative to the archive root): stored as a copy.
    pub(crate) fn hardlink(&mut self, source: &str, target: &[u8]) -> Result<(), ExtractError> {
        let Some(dest) = (self.place)(source) else {
            return Ok(());
        };
        let target_text = String::from_utf8_lossy(target).into_owned();
        let target = match relative_entry_path(target) {
            Ok(t) if !t.is_empty() => t,
            _ => {
                return Err(ExtractError::LinkEscapes {
                    entry: source.to_string(),
                    target: target_text,
                })
            }
        };
        let Some(from) = self.written.get(&target).cloned() else {
            return Err(ExtractError::LinkTargetMissing {
                entry: source.to_string(),
                target,
            });
        };
        self.all_files.insert(source.to_string());
        self.copy(source, &from, &dest)?;
        self.written.insert(source.to_string(), dest);
        Ok(())
    }

    /// A device, fifo or other entry: an error only if it would be in the artifact.
    pub(crate) fn unsupported(&mut self, source: &str, kind: &str) -> Result<(), ExtractError> {
        if (self.place)(source).is_some() {
            return Err(ExtractError::UnsupportedEntry {
                entry: source.to_string(),
                kind: kind.to_string(),
            });
        }
        Ok(())
    }

    /// Resolves the symlinks and returns what was written.
    pub(crate) fn finish(mut self) -> Result<ExtractSummary, ExtractError> {
        let links: Vec<(String, String)> = self
            .symlinks
            .values()
            .map(|l| (l.source.clone(), l.target.clone()))
            .collect();
        // Kept links as they will be in the tree: destination path → target.
        let kept: BTreeMap<String, String> = match self.enable_symlinks {
            true => links
                .iter()
                .filter_map(|(source, target)| Some(((self.place)(source)?, target.clone())))
                .collect(),
            false => BTreeMap::new(),
        };
        for (source, target) in links {
            if self.enable_symlinks {
                self.keep_symlink(&source, &target, &kept)?;
            } else {
                self.materialise(&source, &target)?;
            }
        }
        Ok(self.summary)
    }

    fn keep_symlink(
        &mut self,
        source: &str,
        target: &str,
        kept: &BTreeMap<String, String>,
    ) -> Result<(), ExtractError> {
        let Some(dest) = (self.place)(source) else {
            return Ok(());
        };
        // Where it leads in the tree as it will be, through the other kept links: a target that
        // stays inside lexically may still climb out through a link and `..`.
        if !stays_inside(&dest, target, kept) {
            return Err(ExtractError::LinkEscapes {
                entry: source.to_string(),
                target: target.to_string(),
            });
        }
        self.check_room(target.len() as u64)?;
        self.claim(source, &dest)?;
        let path = self.prepare(source, &dest)?;
        std::os::unix::fs::symlink(target, &path).map_err(io_error(source))?;
        self.summary.add(&dest, target.len() as u64);
        Ok(())
    }

    /// Follows `path` through the archive's symlinks (also symlinked parent directories).
    fn canonical(&self, entry: &str, mut path: String) -> Result<String, ExtractError> {
        let mut hops = 0;
        'restart: loop {
            let parts: Vec<&str> = path.split('/').collect();
            for i in 1..=parts.len() {
                let prefix = parts[..i].join("/");
                if let Some(link) = self.symlinks.get(&prefix) {
                    hops += 1;
                    if hops > 40 {
                        return Err(ExtractError::LinkCycle {
                            entry: entry.to_string(),
                        });
                    }
                    let resolved = resolve_link(&prefix, &link.target).ok_or_else(|| {
                        ExtractError::LinkEscapes {
                            entry: entry.to_string(),
                            target: link.target.clone(),
                        }
                    })?;
                    let rest = &parts[i..];
                    path = std::iter::once(resolved.as_str())
                        .chain(rest.iter().copied())
                        .filter(|p| !p.is_empty())
                        .collect::<Vec<_>>()
                        .join("/");
                    continue 'restart;
                }
            }
            return Ok(path);
        }
    }

    /// Stores the content a followed link shows. A link is only checked when its own path is in
    /// the artifact: `.venv/bin/python -> /usr/bin/python3` outside `files` is no error.
    fn materialise(&mut self, source: &str, target: &str) -> Result<(), ExtractError> {
        let placed = (self.place)(source);
        let resolved = match resolve_link(source, target).map(|l| self.canonical(source, l)) {
            Some(Ok(resolved)) => resolved,
            Some(Err(e)) => return if placed.is_some() { Err(e) } else { Ok(()) },
            None if placed.is_some() => {
                return Err(ExtractError::LinkEscapes {
                    entry: source.to_string(),
                    target: target.to_string(),
                })
            }
            None => return Ok(()),
        };
        if self.all_files.contains(&resolved) {
            // A link to a file.
            if let Some(dest) = placed {
                let Some(from) = self.written.get(&resolved).cloned() else {
                    return Err(ExtractError::LinkTargetMissing {
                        entry: source.to_string(),
                        target: resolved,
                    });
                };
                self.copy(source, &from, &dest)?;
            }
            return Ok(());
        }
        // A link to a directory: its files appear under the link's path.
        let prefix = if resolved.is_empty() {
            String::new()
        } else {
            format!("{resolved}/")
        };
        let cycle = resolved.is_empty() || source.starts_with(&prefix);
        let inside: Vec<String> = self
            .all_files
            .range(prefix.clone()..)
            .take_while(|f| f.starts_with(&prefix))
            .cloned()
            .collect();
        if inside.is_empty() && placed.is_some() && !self.directories.contains(&resolved) {
            return Err(ExtractError::LinkTargetMissing {
                entry: source.to_string(),
                target: resolved,
            });
        }
        for file in inside {
            let seen_as = format!("{source}/{}", &file[prefix.len()..]);
            let Some(dest) = (self.place)(&seen_as) else {
                continue;
            };
            if cycle {
                return Err(ExtractError::LinkCycle {
                    entry: source.to_string(),
                });
            }
            let Some(from) = self.written.get(&file).cloned() else {
                return Err(ExtractError::LinkTargetMissing {
                    entry: seen_as,
                    target: file,
                });
            };
            self.copy(&seen_as, &from, &dest)?;
        }
        Ok(())
    }

    /// Records that `source` lands at `dest`; two different sources at one place is an error.
    fn claim(&mut self, source: &str, dest: &str) -> Result<(), ExtractError> {
        if let Some(first) = self.landed.get(dest) {
            if first != source {
                return Err(ExtractError::Collision {
                    path: dest.to_string(),
                    first: first.clone(),
                    second: source.to_string(),
                });
            }
        }
        if let Some(folded) = &mut self.folded {
            // Every prefix: `python/Crypto/x` and `python/crypto/y` collide in the directory.
            let mut prefix = String::new();
            for part in dest.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                let lower = prefix.to_lowercase();
                match folded.get(&lower) {
                    Some(seen) if *seen != prefix => {
                        return Err(ExtractError::CaseCollision {
                            first: seen.clone(),
                            second: prefix,
                        })
                    }
                    Some(_) => {}
                    None => {
                        folded.insert(lower, prefix.clone());
                    }
                }
            }
        }
        self.landed.insert(dest.to_string(), source.to_string());
        Ok(())
    }

    /// Creates the parent directories of `dest` (never through a symlink) and clears the path.
    fn prepare(&mut self, source: &str, dest: &str) -> Result<PathBuf, ExtractError> {
        let mut dir = self.root.clone();
        let parts: Vec<&str> = dest.split('/').collect();
        let (name, parents) = parts
            .split_last()
            .ok_or_else(|| ExtractError::InvalidPath {
                entry: source.to_string(),
                reason: "empty path",
            })?;
        for (i, part) in parents.iter().enumerate() {
            dir.push(part);
            if self.created_dirs.contains(&dir) {
                continue;
            }
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(ExtractError::WritesThroughSymlink {
                        entry: source.to_string(),
                        link: parts[..=i].join("/"),
                    })
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    return Err(ExtractError::Io {
                        entry: source.to_string(),
                        source: io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("`{}` is a file, not a directory", parts[..=i].join("/")),
                        ),
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).map_err(io_error(source))?;
                    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                        .map_err(io_error(source))?;
                }
                Err(e) => return Err(io_error(source)(e)),
            }
            self.created_dirs.insert(dir.clone());
        }
        let path = dir.join(name);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => {
                return Err(ExtractError::Io {
                    entry: source.to_string(),
                    source: io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("`{dest}` is a directory"),
                    ),
                })
            }
            Ok(_) => fs::remove_file(&path).map_err(io_error(source))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(source)(e)),
        }
        Ok(path)
    }

    fn write(
        &mut self,
        source: &str,
        dest: &str,
        content: &mut dyn Read,
        mode: u32,
    ) -> Result<u64, ExtractError> {
        self.claim(source, dest)?;
        let path = self.prepare(source, dest)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(source))?;
        // Large writes: one syscall per 256 KiB rather than per 8 KiB read (3x faster on a layer).
        let room = self.limits.max_bytes.saturating_sub(self.summary.bytes);
        let (bytes, crc) = {
            let mut out = Crc32Writer {
                inner: io::BufWriter::with_capacity(256 * 1024, &mut file),
                crc: crc32fast::Hasher::new(),
            };
            let bytes =
                io::copy(&mut content.take(room + 1), &mut out).map_err(io_error(source))?;
            out.inner.flush().map_err(io_error(source))?;
            (bytes, out.crc.clone().finalize())
        };
        if bytes > room {
            return Err(self.too_many_bytes());
        }
        file.set_permissions(fs::Permissions::from_mode(normalised_mode(mode)))
            .map_err(io_error(source))?;
        // The modification time says what the content is (its CRC-32): Python's bytecode cache
        // checks a source's mtime and size, so the import test can reuse bytecode compiled in an
        // earlier build for a file that did not change, and never for one that did. The zip's
        // timestamps are fixed whatever this is.
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(crc));
        file.set_modified(mtime).map_err(io_error(source))?;
        Ok(bytes)
    }

    /// Copies the already written `from` (destination path) to `dest`.
    fn copy(&mut self, source: &str, from: &str, dest: &str) -> Result<(), ExtractError> {
        let from_path = self.root.join(from);
        let mode = fs::metadata(&from_path)
            .map_err(io_error(source))?
            .permissions()
            .mode();
        let mut input = fs::File::open(&from_path).map_err(io_error(source))?;
        let bytes = self.write(source, dest, &mut input, mode)?;
        self.summary.add(dest, bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalised_or_rejected() {
        assert_eq!(
            relative_entry_path(b"./python/x.py").unwrap(),
            "python/x.py"
        );
        assert_eq!(relative_entry_path(b"python//x.py").unwrap(), "python/x.py");
        assert_eq!(relative_entry_path(b"./").unwrap(), "");
        assert!(matches!(
            relative_entry_path(b"/etc/passwd"),
            Err(ExtractError::AbsolutePath { .. })
        ));
        assert!(matches!(
            relative_entry_path(b"a/../../evil"),
            Err(ExtractError::ParentComponent { .. })
        ));
        assert!(matches!(
            relative_entry_path(b"a\xff"),
            Err(ExtractError::InvalidPath { .. })
        ));
    }

    #[test]
    fn kept_links_are_followed_through_other_links() {
        let links: BTreeMap<String, String> = [
            ("python/deep".to_string(), "a/b/c".to_string()),
            ("python/up".to_string(), "..".to_string()),
            ("python/loop".to_string(), "loop".to_string()),
        ]
        .into();
        assert!(stays_inside("python/deep", "a/b/c", &links));
        assert!(stays_inside("python/ok", "deep/..", &links));
        // Lexically `up/../..` from python/ is the root; physically `up` is the root already,
        // and `..` from there leaves it.
        assert_eq!(resolve_link("python/v", "up/../..").as_deref(), Some(""));
        assert!(!stays_inside("python/v", "up/../..", &links));
        assert!(!stays_inside("python/y", "loop", &links));
        assert!(!stays_inside("python/z", "/etc/passwd", &links));
        assert!(!stays_inside("python/z", "../..", &links));
    }

    #[test]
    fn links_resolve_lexically() {
        assert_eq!(
            resolve_link("lib/libz.so", "libz.so.1").as_deref(),
            Some("lib/libz.so.1")
        );
        assert_eq!(resolve_link("a/b/c", "../d").as_deref(), Some("a/d"));
        assert_eq!(resolve_link("a/b", "../..").as_deref(), None);
        assert_eq!(resolve_link("a", "/etc/passwd"), None);
        assert_eq!(resolve_link("a/b", "..").as_deref(), Some(""));
    }

    #[test]
    fn modes_and_packages() {
        assert_eq!(normalised_mode(0o4755), 0o755);
        assert_eq!(normalised_mode(0o600), 0o644);
        assert_eq!(normalised_mode(0o2710), 0o755);
        assert_eq!(package_key("python/numpy/core/a.so"), "python/numpy");
        assert_eq!(package_key("python/six.py"), "python/six.py");
        assert_eq!(package_key("top"), "top");
        assert_eq!(
            package_key("python/lib/python3.12/site-packages/numpy/a.so"),
            "python/lib/python3.12/site-packages/numpy"
        );
    }

    #[test]
    fn biggest_sorts_by_size() {
        let mut s = ExtractSummary::default();
        s.add("python/a/x", 10);
        s.add("python/b/x", 30);
        s.add("python/a/y", 5);
        assert_eq!(s.biggest(1), vec![("python/b", 30)]);
        assert_eq!(s.files, 3);
        assert_eq!(s.bytes, 45);
    }
}
