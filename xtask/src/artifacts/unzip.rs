//! Safe extraction of a zip the buildspec made itself (`zip -r layer.zip python/`), with the same
//! rules as the tar extraction (no absolute / `..` paths, links checked, modes normalised), so the
//! deterministic zip can be rewritten from its contents.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::tree::{io_error, relative_entry_path, ExtractError, ExtractSummary, Limits, Tree};

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// The longest symlink target a zip entry may hold.
const MAX_LINK_BYTES: u64 = 4096;

/// Extracts every entry of the zip at `zip_path` into `dest` (created if missing), within the
/// default [`Limits`]. Symlink entries are kept as links with `enable_symlinks`, else stored as
/// copies of their target.
pub fn unzip(
    zip_path: &Path,
    dest: &Path,
    enable_symlinks: bool,
) -> Result<ExtractSummary, ExtractError> {
    unzip_within(zip_path, dest, enable_symlinks, &Limits::default())
}

/// [`unzip`] within `limits`: the sizes the zip declares are checked before anything is inflated
/// (a zip bomb is refused at once), and what is written is counted as it is written (declared
/// sizes can lie).
pub fn unzip_within(
    zip_path: &Path,
    dest: &Path,
    enable_symlinks: bool,
    limits: &Limits,
) -> Result<ExtractSummary, ExtractError> {
    let shown = zip_path.display().to_string();
    let file = File::open(zip_path).map_err(io_error(&shown))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error(&shown))?;
    check_declared(&mut archive, limits, &shown)?;
    let mut tree = Tree::new(dest, enable_symlinks, limits, |path| Some(path.to_string()))?;
    for index in 0..archive.len() {
        tree.count_entry()?;
        let mut entry = archive.by_index(index).map_err(zip_error(&shown))?;
        let name = relative_entry_path(entry.name_raw())?;
        if name.is_empty() {
            continue;
        }
        let mode = entry.unix_mode().unwrap_or(0o644);
        let kind = mode & S_IFMT;
        let raw = entry.name_raw();
        let named_directory = raw.ends_with(b"/");
        if raw.ends_with(b"\\") {
            tree.unsupported(
                &name,
                "name ending in a backslash (a directory to some tools, a file to others)",
            )?;
        } else if named_directory && entry.size() == 0 && (kind == S_IFDIR || kind == 0) {
            tree.directory(&name);
        } else if named_directory || kind == S_IFDIR {
            tree.unsupported(&name, "entry that is both a directory and a file")?;
        } else if kind == S_IFLNK {
            let mut target = String::new();
            let mut bounded = std::io::Read::take(&mut entry, MAX_LINK_BYTES);
            std::io::Read::read_to_string(&mut bounded, &mut target).map_err(io_error(&name))?;
            tree.symlink(&name, &target);
        } else if kind == 0 || kind == S_IFREG {
            tree.file(&name, &mut entry, mode)?;
        } else {
            tree.unsupported(&name, &format!("special file (mode {mode:o})"))?;
        }
    }
    tree.finish()
}

/// The entry count and the declared uncompressed sizes, before anything is inflated.
fn check_declared<R: std::io::Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    limits: &Limits,
    shown: &str,
) -> Result<(), ExtractError> {
    if archive.len() as u64 > limits.max_entries {
        return Err(ExtractError::LimitExceeded {
            what: "archive entries",
            limit: limits.max_entries,
        });
    }
    let mut declared = 0u64;
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(zip_error(shown))?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_bytes {
        return Err(ExtractError::LimitExceeded {
            what: "bytes (as the zip declares them)",
            limit: limits.max_bytes,
        });
    }
    Ok(())
}

fn zip_error(entry: &str) -> impl FnOnce(zip::result::ZipError) -> ExtractError + '_ {
    move |e| ExtractError::Io {
        entry: entry.to_string(),
        source: std::io::Error::other(e),
    }
}
