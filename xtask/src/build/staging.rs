//! Where a build's artifact trees wait between the download and the zip: in memory (`/dev/shm`)
//! when it has room, else in the out-dir. Thousands of small files are written, read twice and
//! deleted within seconds; on the benchmark machine's VM disk that took 2.0 s for the seed layer,
//! against 0.3 s in memory. The directory is removed when the [`Staging`] is dropped, so an
//! error or Ctrl-C leaves nothing behind.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

const MEMORY_DIR: &str = "/dev/shm";
/// Room `/dev/shm` must have: a layer at Lambda's unzipped limit (250 MB) twice over (a single
/// zip artifact is unzipped next to itself), with a wide margin. Docker gives containers 64 MB.
const MIN_FREE_MEMORY_BYTES: u64 = 1 << 30;

#[derive(Debug)]
pub struct Staging {
    dir: tempfile::TempDir,
    /// Held (locked) while the build runs: another build's clean-up skips a locked directory,
    /// whatever PID namespace either runs in.
    _lock: std::fs::File,
}

/// In every staging directory: the lock its build holds, and the out-dir it belongs to.
const LOCK_FILE: &str = ".lock";
const OWNER_FILE: &str = ".owner";

impl Staging {
    /// A new staging directory, with an empty [`Staging::primary`] in it (so the import test's
    /// container can mount it before the build has produced anything).
    pub fn create(out_dir: &Path) -> anyhow::Result<Staging> {
        // Left by builds that were killed (a running build, another cell's, holds its lock).
        remove_abandoned(Path::new(MEMORY_DIR), MEMORY_PREFIX);
        remove_abandoned(out_dir, DISK_PREFIX);
        let dir = match in_memory() {
            Some(dir) => dir,
            None => tempfile::Builder::new()
                .prefix(DISK_PREFIX)
                .tempdir_in(out_dir)
                .with_context(|| {
                    format!("cannot create a staging directory in {}", out_dir.display())
                })?,
        };
        let lock = std::fs::File::create(dir.path().join(LOCK_FILE))
            .context("cannot create the staging directory's lock")?;
        // Blocking: another build's clean-up may hold it for a moment (see `remove_abandoned`).
        lock.lock()
            .map_err(|e| anyhow::anyhow!("cannot lock the staging directory: {e}"))?;
        // Written once the lock is held: a free lock beside it means the build is gone.
        std::fs::write(dir.path().join(OWNER_FILE), out_dir.display().to_string())
            .context("cannot write in the staging directory")?;
        let staging = Staging { dir, _lock: lock };
        std::fs::create_dir(staging.primary())
            .with_context(|| format!("cannot create {}", staging.primary().display()))?;
        Ok(staging)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where the primary artifact's tree goes.
    pub fn primary(&self) -> PathBuf {
        self.path().join("primary")
    }

    /// Where the tree of the secondary artifact `id` goes. The identifier becomes a path, so
    /// it must be what CodeBuild accepts (letters, digits, `_`): anything else is refused here
    /// too, whatever checked it before.
    pub fn secondary(&self, id: &str) -> anyhow::Result<PathBuf> {
        crate::artifacts::check_identifier(id)?;
        Ok(self.path().join("secondary").join(id))
    }
}

fn in_memory() -> Option<tempfile::TempDir> {
    let stats = rustix::fs::statvfs(MEMORY_DIR).ok()?;
    let free = stats.f_bavail.saturating_mul(stats.f_frsize);
    if free < MIN_FREE_MEMORY_BYTES {
        return None;
    }
    tempfile::Builder::new()
        .prefix(MEMORY_PREFIX)
        .tempdir_in(MEMORY_DIR)
        .ok()
}

/// In-memory staging directories are named after the process that made them.
const MEMORY_PREFIX: &str = "xtask-staging-";
/// Staging directories in the out-dir.
const DISK_PREFIX: &str = ".staging-";

/// Removes the staging directories in `dir` (named `prefix…`) whose build is gone (killed before
/// it could clean up; memory is not given back on its own). A directory whose lock is held belongs
/// to a build that still runs (in this PID namespace or another), and is left alone.
fn remove_abandoned(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || !entry.path().is_dir() {
            continue;
        }
        let owned = entry.path().join(OWNER_FILE).exists();
        let abandoned = match std::fs::File::open(entry.path().join(LOCK_FILE)) {
            // Its build held the lock when it wrote the owner: free now, the build is gone.
            Ok(lock) if owned => lock.try_lock().is_ok(),
            // Not (or not yet) locked: a build that is creating it, or one from before locks.
            _ => older_than_a_day(&entry.path()),
        };
        if abandoned {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn older_than_a_day(path: &Path) -> bool {
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok());
    age.is_some_and(|age| age > std::time::Duration::from_secs(24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_whose_lock_is_free_are_removed() {
        let shm = tempfile::tempdir().expect("tempdir");
        let live = shm.path().join(format!("{MEMORY_PREFIX}live"));
        let gone = shm.path().join(format!("{MEMORY_PREFIX}gone"));
        let fresh = shm.path().join(format!("{MEMORY_PREFIX}fresh"));
        let other = shm.path().join("something-else");
        for dir in [&live, &gone, &fresh, &other] {
            std::fs::create_dir(dir).expect("mkdir");
        }
        let held = std::fs::File::create(live.join(LOCK_FILE)).expect("lock file");
        held.try_lock().expect("lock");
        std::fs::File::create(gone.join(LOCK_FILE)).expect("lock file");
        std::fs::write(gone.join(OWNER_FILE), "out").expect("owner");
        // Being created: its lock file is there, not yet locked by its build.
        std::fs::File::create(fresh.join(LOCK_FILE)).expect("lock file");
        remove_abandoned(shm.path(), MEMORY_PREFIX);
        assert!(live.exists() && fresh.exists() && other.exists());
        assert!(!gone.exists());
    }

    #[test]
    fn a_staging_directory_is_removed_when_dropped() {
        let out = tempfile::tempdir().expect("tempdir");
        let staging = Staging::create(out.path()).expect("staging");
        let path = staging.path().to_path_buf();
        assert!(staging.primary().is_dir());
        std::fs::write(path.join("f"), "x").expect("write");
        drop(staging);
        assert!(!path.exists());
    }
}
