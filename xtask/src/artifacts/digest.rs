//! The layer's content digest: what makes two builds "the same layer", whatever zip holds it
//! (compression, timestamps, entry order). It covers every file and symlink: its path, its kind
//! (file, executable file, symlink; the only modes a layer zip keeps) and the SHA-256 of its
//! bytes (a link's target). Directories are not in it: a zip may or may not list them.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use super::tree::{relative_entry_path, Limits};

const S_IFMT: u32 = 0o170_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFDIR: u32 = 0o040_000;

/// The longest symlink target read from a zip.
const MAX_LINK_BYTES: u64 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    File,
    Executable,
    Symlink,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Kind::File => b'f',
            Kind::Executable => b'x',
            Kind::Symlink => b'l',
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Executable => "executable",
            Kind::Symlink => "symlink",
        }
    }
}

/// One file or symlink of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path in the layer (`python/six.py`).
    pub name: String,
    pub kind: Kind,
    /// Bytes of content (a link: of its target).
    pub size: u64,
    pub sha256: [u8; 32],
}

/// The digest of `entries`, sorted by name (as the zip writer and [`read_zip`] give them).
pub fn content_sha256(entries: &[Entry]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"lambda-layer-content-v1\n");
    for entry in entries {
        hasher.update(entry.name.as_bytes());
        hasher.update([0, entry.kind.tag(), 0]);
        hasher.update(crate::util::hex(&entry.sha256).as_bytes());
        hasher.update(b"\n");
    }
    crate::util::hex(&hasher.finalize())
}

/// SHA-256 of everything `reader` yields, and how many bytes that was.
pub fn hash_reader(reader: &mut impl Read) -> std::io::Result<([u8; 32], u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((hasher.finalize().into(), total))
}

/// The entries of a layer zip, sorted by name, each hashed; within the extraction [`Limits`]
/// (entries, declared and actual bytes), so a hostile zip costs bounded time and no memory.
pub fn read_zip(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let limits = Limits::default();
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("cannot read {shown}"))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("{shown} is not a readable zip"))?;
    if archive.len() as u64 > limits.max_entries {
        bail!("{shown} has more than {} entries", limits.max_entries);
    }
    let mut entries = Vec::with_capacity(archive.len());
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut item = archive
            .by_index(index)
            .with_context(|| format!("cannot read entry {index} of {shown}"))?;
        let name =
            relative_entry_path(item.name_raw()).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        let mode = item.unix_mode().unwrap_or(0o644);
        if name.is_empty() || item.is_dir() || mode & S_IFMT == S_IFDIR {
            continue;
        }
        let kind = match mode & S_IFMT {
            S_IFLNK => Kind::Symlink,
            _ if mode & 0o111 != 0 => Kind::Executable,
            _ => Kind::File,
        };
        let room = match kind {
            Kind::Symlink => MAX_LINK_BYTES,
            _ => limits.max_bytes.saturating_sub(total),
        };
        let (sha256, size) = hash_reader(&mut (&mut item).take(room + 1))
            .with_context(|| format!("cannot read {name} in {shown}"))?;
        if size > room {
            bail!("{shown}: {name} is over the limit of {room} bytes");
        }
        total += size;
        entries.push(Entry {
            name,
            kind,
            size,
            sha256,
        });
    }
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    if let Some(twice) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        bail!("{shown} holds {} twice", twice[0].name);
    }
    Ok(entries)
}

/// The first `max` bytes of the entry `name` of the zip at `path`.
pub fn read_entry(path: &Path, name: &str, max: u64) -> anyhow::Result<Vec<u8>> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))?;
    for index in 0..archive.len() {
        let item = archive.by_index(index)?;
        if relative_entry_path(item.name_raw()).ok().as_deref() == Some(name) {
            let mut bytes = Vec::new();
            item.take(max).read_to_end(&mut bytes)?;
            return Ok(bytes);
        }
    }
    bail!("{} has no entry {name}", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, kind: Kind, content: &[u8]) -> Entry {
        Entry {
            name: name.into(),
            kind,
            size: content.len() as u64,
            sha256: Sha256::digest(content).into(),
        }
    }

    #[test]
    fn the_digest_covers_paths_kinds_and_bytes() {
        let base = vec![
            entry("python/a.py", Kind::File, b"a"),
            entry("python/b", Kind::Symlink, b"a.py"),
        ];
        let digest = content_sha256(&base);
        assert_eq!(digest, content_sha256(&base.clone()));
        let mut renamed = base.clone();
        renamed[0].name = "python/c.py".into();
        let mut executable = base.clone();
        executable[0].kind = Kind::Executable;
        let mut edited = base.clone();
        edited[0] = entry("python/a.py", Kind::File, b"b");
        for other in [renamed, executable, edited, base[..1].to_vec()] {
            assert_ne!(content_sha256(&other), digest);
        }
    }
}
