//! Safe extraction of a zip the buildspec made itself (`zip -r layer.zip python/`), with the same
//! rules as the tar extraction (no absolute / `..` paths, links checked, modes normalised), so the
//! deterministic zip can be rewritten from its contents.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::tree::{io_error, relative_entry_path, ExtractError, ExtractSummary, Tree};

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;

/// Extracts every entry of the zip at `zip_path` into `dest` (created if missing). Symlink entries
/// are kept as links with `enable_symlinks`, else stored as copies of their target.
pub fn unzip(
    zip_path: &Path,
    dest: &Path,
    enable_symlinks: bool,
) -> Result<ExtractSummary, ExtractError> {
    let shown = zip_path.display().to_string();
    let file = File::open(zip_path).map_err(io_error(&shown))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error(&shown))?;
    let mut tree = Tree::new(dest, enable_symlinks, |path| Some(path.to_string()))?;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(zip_error(&shown))?;
        let name = relative_entry_path(entry.name_raw())?;
        if name.is_empty() {
            continue;
        }
        let mode = entry.unix_mode().unwrap_or(0o644);
        let kind = mode & S_IFMT;
        if entry.is_dir() || kind == S_IFDIR {
            tree.directory(&name);
        } else if entry.is_symlink() || kind == S_IFLNK {
            let mut target = String::new();
            std::io::Read::read_to_string(&mut entry, &mut target).map_err(io_error(&name))?;
            tree.symlink(&name, &target);
        } else if kind == 0 || kind == S_IFREG {
            tree.file(&name, &mut entry, mode)?;
        } else {
            tree.unsupported(&name, &format!("special file (mode {mode:o})"))?;
        }
    }
    tree.finish()
}

fn zip_error(entry: &str) -> impl FnOnce(zip::result::ZipError) -> ExtractError + '_ {
    move |e| ExtractError::Io {
        entry: entry.to_string(),
        source: std::io::Error::other(e),
    }
}
