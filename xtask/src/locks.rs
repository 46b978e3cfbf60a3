//! Requirements per cell: one list of what the layer needs (`requirements.in`, beside the locks
//! directory) and, for each cell (a runtime on an architecture), the exact pins resolved for it
//! (`locks/<cell>.txt`), made by `cargo xtask lock` inside that cell's build image. A build
//! installs its cell's lock (`LAYER_LOCK`) and refuses one made for another cell or from an older
//! list: pins that hold for CPython 3.9 on x86_64 do not hold for 3.13 on arm64.

pub mod make;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use crate::layer::Cell;

/// Where locks are looked for when `--locks` is not given (only when it exists).
pub const DEFAULT_DIR: &str = "python-layer/locks";
/// The list the locks are resolved from, in the locks directory's parent.
pub const INPUT_NAME: &str = "requirements.in";
/// A lock is a short text file; anything larger is not one.
pub(crate) const MAX_LOCK_BYTES: u64 = 1 << 20;

/// A project's locks directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locks {
    pub dir: PathBuf,
    /// `dir` relative to the source directory, with `/`: what the build container sees.
    pub relative: String,
}

impl Locks {
    /// `--locks DIR` (which must exist inside the source directory), else [`DEFAULT_DIR`] when
    /// the project has one; `None`: the project keeps no locks.
    pub fn locate(source_dir: &Path, flag: Option<&Path>) -> anyhow::Result<Option<Locks>> {
        let dir = match flag {
            Some(dir) => source_dir.join(dir),
            None => source_dir.join(DEFAULT_DIR),
        };
        if !dir.is_dir() {
            if flag.is_some() {
                bail!("--locks {}: no such directory", dir.display());
            }
            return Ok(None);
        }
        let relative = relative_inside(source_dir, &dir)?;
        Ok(Some(Locks { dir, relative }))
    }

    /// `requirements.in`, beside the locks directory.
    pub fn input(&self) -> PathBuf {
        self.dir.parent().unwrap_or(&self.dir).join(INPUT_NAME)
    }

    /// `<dir>/<cell>.txt`
    pub fn path(&self, cell: &Cell) -> PathBuf {
        self.dir.join(lock_file_name(cell))
    }

    /// The lock's path as the build container sees it (relative to the source directory).
    pub fn relative_path(&self, cell: &Cell) -> String {
        format!("{}/{}", self.relative, lock_file_name(cell))
    }

    /// The lock of `cell`, checked: it exists, names this cell, and was made from today's
    /// `requirements.in`. Returns its path relative to the source directory.
    pub fn checked(&self, cell: &Cell) -> anyhow::Result<String> {
        let path = self.path(cell);
        let shown = format!("{}/{}", self.relative, lock_file_name(cell));
        if !path.exists() {
            bail!(
                "{shown}: no lock for the cell {}: make it with `cargo xtask lock --cells {}`",
                cell.id(),
                cell.id()
            );
        }
        let text = crate::util::read_regular(&path, MAX_LOCK_BYTES)
            .with_context(|| format!("cannot read the lock {shown}"))?;
        let header = Header::parse(&text).map_err(|e| e.at(&shown))?;
        if header.cell != cell.id() {
            bail!(
                "{shown}:{}:1: error: this lock is for the cell {}, not {}: make this cell's own with `cargo xtask lock --cells {}`",
                header.cell_line,
                header.cell,
                cell.id(),
                cell.id()
            );
        }
        let input = self.input();
        let digest = input_digest(&input)?;
        if header.input_sha256 != digest {
            bail!(
                "{shown}:{}:1: error: the lock is older than {}: that list changed since the lock was made; refresh it with `cargo xtask lock --cells {}`",
                header.input_line,
                input.display(),
                cell.id()
            );
        }
        Ok(self.relative_path(cell))
    }
}

fn lock_file_name(cell: &Cell) -> String {
    format!("{}.txt", cell.id())
}

/// `dir` relative to `root`, refusing anything outside it (the build sees only the source).
fn relative_inside(root: &Path, dir: &Path) -> anyhow::Result<String> {
    let root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", root.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    let relative = dir.strip_prefix(&root).map_err(|_| {
        anyhow::anyhow!(
            "the locks directory {} is outside the source directory {}: the build could not read it",
            dir.display(),
            root.display()
        )
    })?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.is_empty() {
        bail!("the locks directory cannot be the source directory itself");
    }
    Ok(parts.join("/"))
}

/// The SHA-256 of `requirements.in`, line endings normalised (a checkout with CRLF is the same
/// list).
pub fn input_digest(input: &Path) -> anyhow::Result<String> {
    let text = crate::util::read_regular(input, MAX_LOCK_BYTES).with_context(|| {
        format!(
            "cannot read {} (the list the locks are made from)",
            input.display()
        )
    })?;
    Ok(crate::util::hex(&Sha256::digest(
        text.replace("\r\n", "\n").as_bytes(),
    )))
}

/// The lines a lock starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub cell: String,
    pub cell_line: usize,
    pub input_sha256: String,
    pub input_line: usize,
    /// uv's `--exclude-newer`: the lock sees packages uploaded before this time.
    pub as_of: Option<String>,
}

/// A header that is not there or not whole, at a line.
#[derive(Debug)]
pub struct HeaderError {
    line: usize,
    message: String,
}

impl HeaderError {
    fn at(self, file: &str) -> anyhow::Error {
        anyhow::anyhow!("{file}:{}:1: error: {}", self.line, self.message)
    }
}

const CELL_PREFIX: &str = "# cell: ";
const INPUT_PREFIX: &str = "# requirements.in sha256: ";
const AS_OF_PREFIX: &str = "# packages uploaded before: ";

impl Header {
    /// The header of a lock made for `cell` from a list whose digest is `input_sha256`.
    pub fn render(cell: &Cell, input_sha256: &str, python_platform: &str, as_of: &str) -> String {
        format!(
            "# Made by `cargo xtask lock` (uv pip compile in the cell's build image, for {python_platform}); do not edit.\n{CELL_PREFIX}{}\n{INPUT_PREFIX}{input_sha256}\n{AS_OF_PREFIX}{as_of}\n",
            cell.id()
        )
    }

    /// The cell and input digest of a lock, from its leading comment lines.
    pub fn parse(text: &str) -> Result<Header, HeaderError> {
        // An editor's byte-order mark is not part of the first line.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut cell = None;
        let mut input = None;
        let mut as_of = None;
        for (index, line) in text.lines().enumerate() {
            let line_number = index + 1;
            if !line.starts_with('#') {
                break;
            }
            if let Some(value) = line.strip_prefix(CELL_PREFIX) {
                cell = Some((value.trim().to_string(), line_number));
            } else if let Some(value) = line.strip_prefix(INPUT_PREFIX) {
                input = Some((value.trim().to_string(), line_number));
            } else if let Some(value) = line.strip_prefix(AS_OF_PREFIX) {
                as_of = Some(value.trim().to_string());
            }
        }
        let Some((cell, cell_line)) = cell else {
            return Err(HeaderError {
                line: 1,
                message: format!(
                    "not a lock made by `cargo xtask lock`: no `{}` line before the first pin",
                    CELL_PREFIX.trim_end()
                ),
            });
        };
        let Some((input_sha256, input_line)) = input else {
            return Err(HeaderError {
                line: cell_line,
                message: format!(
                    "the lock does not say which list it was made from (no `{}` line)",
                    INPUT_PREFIX.trim_end()
                ),
            });
        };
        Ok(Header {
            cell,
            cell_line,
            input_sha256,
            input_line,
            as_of,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(lock_for: &str, input: &str) -> (tempfile::TempDir, Locks, Cell) {
        let dir = tempfile::tempdir().unwrap();
        let locks = dir.path().join("python-layer/locks");
        std::fs::create_dir_all(&locks).unwrap();
        std::fs::write(dir.path().join("python-layer/requirements.in"), input).unwrap();
        let digest = input_digest(&dir.path().join("python-layer/requirements.in")).unwrap();
        let lock_cell = Cell::parse(lock_for).unwrap();
        let cell = Cell::parse("python3.13-x86_64").unwrap();
        let text = Header::render(
            &lock_cell,
            &digest,
            "x86_64-manylinux_2_34",
            "2026-12-01T00:00:00Z",
        ) + "six==1.17.0\n";
        std::fs::write(locks.join("python3.13-x86_64.txt"), text).unwrap();
        let found = Locks::locate(dir.path(), None).unwrap().unwrap();
        (dir, found, cell)
    }

    #[test]
    fn a_lock_for_its_cell_and_list_is_used() {
        let (_dir, locks, cell) = project("python3.13-x86_64", "six\n");
        assert_eq!(locks.relative, "python-layer/locks");
        assert_eq!(
            locks.checked(&cell).unwrap(),
            "python-layer/locks/python3.13-x86_64.txt"
        );
    }

    #[test]
    fn a_lock_of_another_cell_is_refused_with_its_position() {
        let (_dir, locks, cell) = project("python3.9-x86_64", "six\n");
        let error = locks.checked(&cell).unwrap_err().to_string();
        assert!(
            error.starts_with("python-layer/locks/python3.13-x86_64.txt:2:1: error: this lock is for the cell python3.9-x86_64, not python3.13-x86_64"),
            "{error}"
        );
    }

    #[test]
    fn a_lock_older_than_the_list_is_refused() {
        let (dir, locks, cell) = project("python3.13-x86_64", "six\n");
        std::fs::write(
            dir.path().join("python-layer/requirements.in"),
            "six\nidna\n",
        )
        .unwrap();
        let error = locks.checked(&cell).unwrap_err().to_string();
        assert!(
            error.contains(":3:1: error: the lock is older than"),
            "{error}"
        );
        // Line endings alone do not make it older.
        std::fs::write(dir.path().join("python-layer/requirements.in"), "six\r\n").unwrap();
        assert!(locks.checked(&cell).is_ok());
    }

    #[test]
    fn a_missing_lock_or_header_says_how_to_make_one() {
        let (_dir, locks, _) = project("python3.13-x86_64", "six\n");
        let arm = Cell::parse("python3.13-arm64").unwrap();
        let error = locks.checked(&arm).unwrap_err().to_string();
        assert!(
            error.contains("cargo xtask lock --cells python3.13-arm64"),
            "{error}"
        );
        std::fs::write(locks.path(&arm), "six==1.17.0\n").unwrap();
        let error = locks.checked(&arm).unwrap_err().to_string();
        assert!(error.contains(":1:1: error: not a lock made by"), "{error}");
    }

    #[test]
    fn locks_outside_the_source_are_refused_and_none_is_fine() {
        let source = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        assert_eq!(Locks::locate(source.path(), None).unwrap(), None);
        assert!(Locks::locate(source.path(), Some(outside.path())).is_err());
        assert!(Locks::locate(source.path(), Some(Path::new("nope"))).is_err());
    }
}
