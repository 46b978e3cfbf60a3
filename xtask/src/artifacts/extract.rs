//! Safe extraction of the artifact root's tar stream (Docker's archive API, or the container's own
//! `tar`, which the build can replace) into a host directory, entry by entry, keeping only what
//! the [`Selection`] puts in the artifact, within [`Limits`].
//!
//! Entry paths are relative to the artifact root; a leading `./` is accepted. Every entry path is
//! checked (absolute and `..` paths are errors even when not selected: Docker never sends them);
//! links, devices and fifos are only checked when they would be in the artifact (see
//! [`super::tree`] for the link rules). Directory entries create nothing: empty directories are
//! dropped, as in CodeBuild's zips.
//!
//! The stream is read raw: GNU long names and PAX records are applied here, each read only up to
//! [`MAX_HEADER_BYTES`], so no header can make the reader allocate without bound.

use std::io::Read;
use std::path::Path;

use tar::EntryType;

use super::select::Selection;
use super::tree::{io_error, relative_entry_path, ExtractError, ExtractSummary, Limits, Tree};

/// The most a GNU long name, long link name or PAX header may hold.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Extracts the selected files of the tar stream `reader` into `dest` (created if missing), within
/// the default [`Limits`].
pub fn extract_tar(
    reader: impl Read,
    dest: &Path,
    selection: &Selection,
) -> Result<ExtractSummary, ExtractError> {
    extract_tar_within(reader, dest, selection, &Limits::default())
}

/// [`extract_tar`] within `limits`. Fails with [`ExtractError::NoMatchingArtifactPaths`] when
/// nothing was selected, like CodeBuild's UPLOAD_ARTIFACTS phase.
pub fn extract_tar_within(
    reader: impl Read,
    dest: &Path,
    selection: &Selection,
    limits: &Limits,
) -> Result<ExtractSummary, ExtractError> {
    let mut archive = tar::Archive::new(reader);
    let mut tree = Tree::new(dest, selection.enable_symlinks(), limits, |path| {
        selection.place(path)
    })?;
    let mut headers = Headers::default();
    let entries = archive.entries().map_err(io_error("<tar stream>"))?;
    for entry in entries.raw(true) {
        let mut entry = entry.map_err(io_error("<tar stream>"))?;
        tree.count_entry()?;
        let kind = entry.header().entry_type();
        if headers.take(kind, &mut entry)? {
            continue;
        }
        let (path, link) = headers.names(&entry);
        let name = relative_entry_path(&path)?;
        if name.is_empty() {
            continue;
        }
        add(&mut tree, kind, &name, &link, &mut entry)?;
    }
    let directories = tree.directories.clone();
    let summary = tree.finish()?;
    if summary.files == 0 {
        let hint = directories.iter().find_map(|dir| {
            selection.directory_hint(dir).map(|pattern| {
                format!("`{pattern}` is a directory; select its files with `{dir}/**/*`")
            })
        });
        return Err(ExtractError::NoMatchingArtifactPaths {
            patterns: selection.files().to_vec(),
            hint,
        });
    }
    Ok(summary)
}

/// One entry of the stream into the tree.
fn add(
    tree: &mut Tree,
    kind: EntryType,
    name: &str,
    link: &[u8],
    entry: &mut tar::Entry<impl Read>,
) -> Result<(), ExtractError> {
    match kind {
        EntryType::Regular | EntryType::Continuous => {
            let mode = entry.header().mode().unwrap_or(0o644);
            tree.file(name, entry, mode)
        }
        EntryType::Directory => {
            tree.directory(name);
            Ok(())
        }
        EntryType::Symlink => {
            let target = std::str::from_utf8(link).map_err(|_| ExtractError::InvalidPath {
                entry: name.to_string(),
                reason: "link target is not UTF-8",
            })?;
            tree.symlink(name, target);
            Ok(())
        }
        EntryType::Link => tree.hardlink(name, link),
        EntryType::Char => tree.unsupported(name, "character device"),
        EntryType::Block => tree.unsupported(name, "block device"),
        EntryType::Fifo => tree.unsupported(name, "fifo"),
        EntryType::GNUSparse => tree.unsupported(name, "sparse file"),
        other => tree.unsupported(name, &format!("tar entry of type {other:?}")),
    }
}

/// The long names and PAX records that describe the next entry.
#[derive(Default)]
struct Headers {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax: Option<Vec<u8>>,
}

impl Headers {
    /// Reads `entry` when it is a header for the next one (bounded); `true` when it was.
    fn take(&mut self, kind: EntryType, entry: &mut impl Read) -> Result<bool, ExtractError> {
        let mut ignored = None;
        let slot = match kind {
            EntryType::GNULongName => &mut self.long_name,
            EntryType::GNULongLink => &mut self.long_link,
            EntryType::XHeader => &mut self.pax,
            // Global PAX records (comments, charset) change no path: read past them, bounded.
            EntryType::XGlobalHeader => &mut ignored,
            _ => return Ok(false),
        };
        let mut bytes = Vec::new();
        entry
            .take(MAX_HEADER_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error("<tar header>"))?;
        if bytes.len() as u64 > MAX_HEADER_BYTES {
            return Err(ExtractError::LimitExceeded {
                what: "bytes in one tar header (long name or PAX record)",
                limit: MAX_HEADER_BYTES,
            });
        }
        *slot = Some(bytes);
        Ok(true)
    }

    /// The entry's path and link target: PAX records first, then GNU long names, then the
    /// header's own fields. Clears what was pending.
    fn names(&mut self, entry: &tar::Entry<impl Read>) -> (Vec<u8>, Vec<u8>) {
        let pax = self.pax.take().unwrap_or_default();
        let record = |key: &str| {
            tar::PaxExtensions::new(&pax)
                .flatten()
                .find(|e| e.key() == Ok(key))
                .map(|e| e.value_bytes().to_vec())
        };
        let trim_nul = |mut bytes: Vec<u8>| {
            while bytes.last() == Some(&0) {
                bytes.pop();
            }
            bytes
        };
        let path = record("path")
            .or(self.long_name.take().map(trim_nul))
            .unwrap_or_else(|| entry.path_bytes().into_owned());
        let link = record("linkpath")
            .or(self.long_link.take().map(trim_nul))
            .or_else(|| entry.link_name_bytes().map(|b| b.into_owned()))
            .unwrap_or_default();
        self.long_name = None;
        self.long_link = None;
        (path, link)
    }
}
