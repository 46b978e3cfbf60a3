//! Safe extraction of the artifact root's tar stream (Docker's archive API) into a host directory,
//! entry by entry, keeping only what the [`Selection`] puts in the artifact.
//!
//! Entry paths are relative to the artifact root; a leading `./` is accepted. Every entry path is
//! checked (absolute and `..` paths are errors even when not selected: Docker never sends them);
//! links, devices and fifos are only checked when they would be in the artifact (see
//! [`super::tree`] for the link rules). Directory entries create nothing: empty directories are
//! dropped, as in CodeBuild's zips.

use std::io::Read;
use std::path::Path;

use tar::EntryType;

use super::select::Selection;
use super::tree::{io_error, relative_entry_path, ExtractError, ExtractSummary, Tree};

/// Extracts the selected files of the tar stream `reader` into `dest` (created if missing).
///
/// Fails with [`ExtractError::NoMatchingArtifactPaths`] when nothing was selected, like CodeBuild's
/// UPLOAD_ARTIFACTS phase.
pub fn extract_tar(
    reader: impl Read,
    dest: &Path,
    selection: &Selection,
) -> Result<ExtractSummary, ExtractError> {
    let mut archive = tar::Archive::new(reader);
    let mut tree = Tree::new(dest, selection.enable_symlinks(), |path| {
        selection.place(path)
    })?;
    for entry in archive.entries().map_err(io_error("<tar stream>"))? {
        let mut entry = entry.map_err(io_error("<tar stream>"))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            continue;
        }
        let name = relative_entry_path(&entry.path_bytes())?;
        if name.is_empty() {
            continue;
        }
        match kind {
            EntryType::Regular | EntryType::Continuous => {
                let mode = entry.header().mode().unwrap_or(0o644);
                tree.file(&name, &mut entry, mode)?;
            }
            EntryType::Directory => tree.directory(&name),
            EntryType::Symlink => {
                let target = entry.link_name_bytes().unwrap_or_default();
                let target =
                    std::str::from_utf8(&target).map_err(|_| ExtractError::InvalidPath {
                        entry: name.clone(),
                        reason: "link target is not UTF-8",
                    })?;
                tree.symlink(&name, target);
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                tree.hardlink(&name, &target)?;
            }
            EntryType::Char => tree.unsupported(&name, "character device")?,
            EntryType::Block => tree.unsupported(&name, "block device")?,
            EntryType::Fifo => tree.unsupported(&name, "fifo")?,
            EntryType::GNUSparse => tree.unsupported(&name, "sparse file")?,
            other => tree.unsupported(&name, &format!("tar entry of type {other:?}"))?,
        }
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
