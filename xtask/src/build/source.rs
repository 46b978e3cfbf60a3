//! The source sent into the build container: in a git checkout the tracked files plus untracked
//! ones git does not ignore (never `.git` or `target/`), elsewhere every file below the source
//! directory. Read once: the same pass builds the tar to upload and hashes every file for the
//! build key.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use sha2::{Digest, Sha256};

/// Directories never sent: VCS internals and build output (the out-dir usually lives there).
const NEVER_SENT: &[&str] = &[".git", "target"];

pub struct Source {
    pub root: PathBuf,
    /// Relative paths, sorted, `/`-separated.
    pub files: Vec<String>,
    /// Those of `files` git does not track (sent because git does not ignore them either).
    pub untracked: Vec<String>,
    /// The checkout's HEAD, when the source is a git checkout.
    pub git_revision: Option<String>,
}

/// Which files of a git checkout are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    Tracked,
    /// Tracked, and untracked ones git does not ignore (what `git add -A` would take).
    TrackedAndUntracked,
}

/// A tar of the source plus the hash of what went into it.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed {
    pub tar: Vec<u8>,
    /// SHA-256 over every file's path, mode and content.
    pub digest: String,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packed")
            .field("tar_bytes", &self.tar.len())
            .field("digest", &self.digest)
            .finish()
    }
}

impl Source {
    pub fn discover(root: &Path, which: Files) -> anyhow::Result<Source> {
        let root = root
            .canonicalize()
            .with_context(|| format!("source directory {} does not exist", root.display()))?;
        if !root.is_dir() {
            bail!("source {} is not a directory", root.display());
        }
        let (listing, git_revision) = match git_files(&root, which) {
            Some(listing) => listing,
            None => (
                Listing {
                    tracked: walk(&root)?,
                    untracked: Vec::new(),
                },
                None,
            ),
        };
        let keep = |files: Vec<String>| -> BTreeSet<String> {
            files
                .into_iter()
                .filter(|f| !is_never_sent(f))
                .filter(|f| root.join(f).symlink_metadata().is_ok()) // tracked but deleted
                .collect()
        };
        let untracked = keep(listing.untracked);
        let mut files = keep(listing.tracked);
        files.extend(untracked.iter().cloned());
        Ok(Source {
            files: files.into_iter().collect(),
            untracked: untracked.into_iter().collect(),
            root,
            git_revision,
        })
    }

    /// Tars the files under `prefix/` (the container's source directory, without leading `/`).
    pub fn pack(&self) -> anyhow::Result<Packed> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.follow_symlinks(false);
        let mut hasher = Sha256::new();
        for rel in &self.files {
            let path = self.root.join(rel);
            let meta = path
                .symlink_metadata()
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
            hasher.update(rel.as_bytes());
            hasher.update([0]);
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path)?;
                hasher.update(target.to_string_lossy().as_bytes());
                builder.append_link(&mut header, rel, &target)?;
            } else if meta.is_file() {
                let mut content = Vec::with_capacity(meta.len() as usize);
                std::fs::File::open(&path)
                    .and_then(|mut f| f.read_to_end(&mut content))
                    .with_context(|| format!("cannot read {}", path.display()))?;
                hasher.update(header.mode().unwrap_or(0o644).to_le_bytes());
                hasher.update(&content);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, rel, content.as_slice())?;
            }
            hasher.update([0]);
        }
        let tar = builder.into_inner()?;
        Ok(Packed {
            tar,
            digest: crate::util::hex(&hasher.finalize()),
        })
    }
}

fn is_never_sent(rel: &str) -> bool {
    rel.split('/')
        .next()
        .is_some_and(|first| NEVER_SENT.contains(&first))
        || rel.split('/').any(|part| part == ".git")
}

/// What git lists, relative to the source root.
struct Listing {
    tracked: Vec<String>,
    untracked: Vec<String>,
}

/// `git ls-files` of the checkout containing `root`, relative to `root`; `None` outside git.
fn git_files(root: &Path, which: Files) -> Option<(Listing, Option<String>)> {
    let sh = xshell::Shell::new().ok()?;
    sh.change_dir(root);
    let inside = xshell::cmd!(sh, "git rev-parse --is-inside-work-tree")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()?;
    if inside.trim() != "true" {
        return None;
    }
    let list = |output: String| -> Vec<String> {
        output
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect()
    };
    let tracked = list(
        xshell::cmd!(sh, "git ls-files -z --cached")
            .quiet()
            .read()
            .ok()?,
    );
    let untracked = match which {
        Files::Tracked => Vec::new(),
        Files::TrackedAndUntracked => list(
            xshell::cmd!(sh, "git ls-files -z --others --exclude-standard")
                .quiet()
                .read()
                .ok()?,
        ),
    };
    let head = xshell::cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read()
        .ok()
        .map(|h| h.trim().to_string());
    Some((Listing { tracked, untracked }, head))
}

/// Every file and symlink below `root`, without descending into the never-sent directories.
fn walk(root: &Path) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel_dir) = pending.pop() {
        let dir = root.join(&rel_dir);
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries {
            let entry = entry?;
            let rel = rel_dir.join(entry.file_name());
            let rel_text = rel.to_string_lossy().replace('\\', "/");
            if is_never_sent(&rel_text) {
                continue;
            }
            if entry.file_type()?.is_dir() {
                pending.push(rel);
            } else {
                files.push(rel_text);
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_directories_skip_target_and_git() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "a.txt",
            "sub/b.txt",
            "target/out.zip",
            ".git/HEAD",
            "sub/.git/x",
        ] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, f).unwrap();
        }
        let files = walk(dir.path()).unwrap();
        let mut files: Vec<_> = files.into_iter().filter(|f| !is_never_sent(f)).collect();
        files.sort();
        assert_eq!(files, ["a.txt", "sub/b.txt"]);
    }

    #[test]
    fn the_digest_follows_content_and_the_tar_lists_every_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), "1").unwrap();
        let source = Source::discover(dir.path(), Files::TrackedAndUntracked).unwrap();
        let first = source.pack().unwrap();
        std::fs::write(dir.path().join("a"), "2").unwrap();
        let second = source.pack().unwrap();
        assert_ne!(first.digest, second.digest);
        let mut archive = tar::Archive::new(first.tar.as_slice());
        let names: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a"]);
    }

    #[test]
    fn a_git_checkout_sends_tracked_and_untracked_but_not_ignored_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let sh = xshell::Shell::new().unwrap();
        sh.change_dir(root);
        xshell::cmd!(sh, "git init -q").run().unwrap();
        for (file, content) in [
            (".gitignore", "*.log\n"),
            ("tracked.txt", "t"),
            ("untracked.txt", "u"),
            ("debug.log", "ignored"),
            ("target/layer/x.zip", "build output"),
        ] {
            let path = root.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        xshell::cmd!(sh, "git add tracked.txt .gitignore")
            .run()
            .unwrap();
        let source = Source::discover(root, Files::TrackedAndUntracked).unwrap();
        assert_eq!(source.files, [".gitignore", "tracked.txt", "untracked.txt"]);
        assert_eq!(source.untracked, ["untracked.txt"]);
        let tracked = Source::discover(root, Files::Tracked).unwrap();
        assert_eq!(tracked.files, [".gitignore", "tracked.txt"]);
    }
}
