//! The layer's content digest: what makes two builds "the same layer", whatever zip holds it
//! (compression, timestamps, entry order). It covers every file and symlink: its path, its kind
//! (file, executable file, symlink; the only modes a layer zip keeps) and the SHA-256 of its
//! bytes (a link's target). Directories are not in it: a zip may or may not list them.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use super::tree::{relative_entry_path, Limits};

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
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
    /// Set for a file that starts with a `#!` line.
    pub script: Option<Script>,
}

/// What [`content_sha256`] hashes before the [`listing`].
const CONTENT_HEADER: &[u8] = b"lambda-layer-content-v1\n";

/// The digest of `entries`, sorted by name (as the zip writer and [`read_zip`] give them).
pub fn content_sha256(entries: &[Entry]) -> String {
    listing_sha256(&listing(entries))
}

/// The content listing the digest is made of: a line `name \0 kind \0 hex SHA-256` per entry.
/// The zip writer keeps it beside a zip, so a rebuild knows each old entry's content.
pub fn listing(entries: &[Entry]) -> Vec<u8> {
    let mut listing = Vec::with_capacity(entries.len() * 128);
    for entry in entries {
        listing.extend_from_slice(entry.name.as_bytes());
        listing.extend_from_slice(&[0, entry.kind.tag(), 0]);
        listing.extend_from_slice(crate::util::hex(&entry.sha256).as_bytes());
        listing.push(b'\n');
    }
    listing
}

/// The content digest of a [`listing`].
pub fn listing_sha256(listing: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(CONTENT_HEADER);
    hasher.update(listing);
    crate::util::hex(&hasher.finalize())
}

/// `name → (kind, SHA-256)` of a [`listing`]; `None` when any line is not one of its lines (a
/// name with a newline, say), so a line can never be misread.
pub fn parse_listing(listing: &[u8]) -> Option<HashMap<String, (Kind, [u8; 32])>> {
    let mut entries = HashMap::new();
    let Some(body) = listing.strip_suffix(b"\n") else {
        return listing.is_empty().then_some(entries);
    };
    for line in body.split(|&b| b == b'\n') {
        let mut parts = line.split(|&b| b == 0);
        let (Some(name), Some(tag), Some(hex), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let kind = match tag {
            b"f" => Kind::File,
            b"x" => Kind::Executable,
            b"l" => Kind::Symlink,
            _ => return None,
        };
        let name = std::str::from_utf8(name).ok()?.to_string();
        if entries.insert(name, (kind, unhex(hex)?)).is_some() {
            return None;
        }
    }
    Some(entries)
}

/// 64 lower-case hex digits, as [`listing`] writes them.
fn unhex(hex: &[u8]) -> Option<[u8; 32]> {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if hex.len() != 64 || !hex.iter().all(lower_hex) {
        return None;
    }
    let text = std::str::from_utf8(hex).ok()?;
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
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

/// The longest `#!` line kept as a script's interpreter line.
const MAX_SHEBANG_BYTES: usize = 512;

/// A file that starts with a `#!` line: that line, and the SHA-256 of everything after it (so two
/// scripts that differ only in their interpreter can be told apart from two that differ more).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    pub interpreter_line: String,
    pub rest_sha256: [u8; 32],
}

/// A file's SHA-256 and size, and its [`Script`] parts when it is one; reads at most `room + 1`
/// bytes (the caller checks the size against `room`).
fn hash_file(
    reader: &mut impl Read,
    room: u64,
) -> std::io::Result<([u8; 32], u64, Option<Script>)> {
    let mut reader = reader.take(room + 1);
    let mut head = Vec::with_capacity(MAX_SHEBANG_BYTES);
    (&mut reader)
        .take(MAX_SHEBANG_BYTES as u64)
        .read_to_end(&mut head)?;
    let line_end = head
        .starts_with(b"#!")
        .then(|| head.iter().position(|&b| b == b'\n'))
        .flatten();
    let mut whole = Sha256::new();
    whole.update(&head);
    let mut rest = line_end.map(|end| {
        let mut rest = Sha256::new();
        rest.update(&head[end..]);
        rest
    });
    let tail_size = std::io::copy(
        &mut Tee {
            inner: &mut reader,
            hashers: (&mut whole, rest.as_mut()),
        },
        &mut std::io::sink(),
    )?;
    let script = line_end.zip(rest).map(|(end, rest)| Script {
        interpreter_line: String::from_utf8_lossy(&head[..end]).into_owned(),
        rest_sha256: rest.finalize().into(),
    });
    Ok((
        whole.finalize().into(),
        head.len() as u64 + tail_size,
        script,
    ))
}

/// Feeds what it reads to one or two hashers.
struct Tee<'a, R> {
    inner: &'a mut R,
    hashers: (&'a mut Sha256, Option<&'a mut Sha256>),
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hashers.0.update(&buf[..n]);
        if let Some(rest) = self.hashers.1.as_deref_mut() {
            rest.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The entries of a layer zip, sorted by name, each hashed; within the extraction [`Limits`]
/// (entries, declared and actual bytes, links included), so a hostile zip costs bounded time and
/// no memory. Only files, symlinks and empty directories named `…/` are accepted: an entry
/// marked as a directory that holds data or has no trailing `/`, a name ending in `\\` (read as
/// a directory by some tools, as a file by others) and special files are errors, never skipped.
pub fn read_zip(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let limits = Limits::default();
    let shown = path.display();
    let file = File::open(path).with_context(|| format!("cannot read {shown}"))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .with_context(|| format!("{shown} is not a readable zip"))?;
    check_declared(&mut archive, &limits, &shown.to_string())?;
    let mut entries = Vec::with_capacity(archive.len());
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut item = archive
            .by_index(index)
            .with_context(|| format!("cannot read entry {index} of {shown}"))?;
        let raw = item.name_raw().to_vec();
        let name = relative_entry_path(&raw).map_err(|e| anyhow::anyhow!("{shown}: {e}"))?;
        let kind = match entry_kind(&raw, item.unix_mode(), item.size()) {
            Ok(Some(kind)) => kind,
            Ok(None) => continue,
            Err(why) => bail!("{shown}: the entry {name} {why}"),
        };
        let room = match kind {
            Kind::Symlink => MAX_LINK_BYTES.min(limits.max_bytes.saturating_sub(total)),
            _ => limits.max_bytes.saturating_sub(total),
        };
        let (sha256, size, script) = match kind {
            Kind::Symlink => {
                let (sha, size) = hash_reader(&mut (&mut item).take(room + 1))
                    .with_context(|| format!("cannot read {name} in {shown}"))?;
                (sha, size, None)
            }
            _ => hash_file(&mut item, room)
                .with_context(|| format!("cannot read {name} in {shown}"))?,
        };
        if size > room {
            bail!(
                "{shown}: {name} goes over the limit of {} bytes in all",
                limits.max_bytes
            );
        }
        total += size;
        entries.push(Entry {
            name,
            kind,
            size,
            sha256,
            script,
        });
    }
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    if let Some(twice) = entries.windows(2).find(|w| w[0].name == w[1].name) {
        bail!("{shown} holds {} twice", twice[0].name);
    }
    Ok(entries)
}

/// What an entry is: `None` for an empty directory entry (`…/`); an error for anything a layer
/// cannot hold or that tools would read differently.
fn entry_kind(raw: &[u8], mode: Option<u32>, size: u64) -> Result<Option<Kind>, &'static str> {
    let mode = mode.unwrap_or(0o644);
    let named_directory = raw.ends_with(b"/");
    if raw.ends_with(b"\\") {
        return Err("ends in a backslash: some tools read it as a directory, others as a file");
    }
    match (mode & S_IFMT, named_directory) {
        (S_IFDIR, true) | (0, true) if size == 0 => Ok(None),
        (_, true) => Err("is named as a directory but holds data or is not one"),
        (S_IFDIR, false) => Err("is marked as a directory but named as a file"),
        (S_IFLNK, false) => Ok(Some(Kind::Symlink)),
        (0 | S_IFREG, false) if mode & 0o111 != 0 => Ok(Some(Kind::Executable)),
        (0 | S_IFREG, false) => Ok(Some(Kind::File)),
        _ => Err("is a special file (a FIFO, socket or device)"),
    }
}

/// The entry count and the declared uncompressed sizes, before anything is inflated.
fn check_declared<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    limits: &Limits,
    shown: &str,
) -> anyhow::Result<()> {
    if archive.len() as u64 > limits.max_entries {
        bail!("{shown} has more than {} entries", limits.max_entries);
    }
    let mut declared = 0u64;
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index)?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_bytes {
        bail!("{shown} declares more than {} bytes", limits.max_bytes);
    }
    Ok(())
}

/// A zip opened once, its entries found by name (for reading a few of them in full).
pub struct ZipFiles {
    archive: zip::ZipArchive<BufReader<File>>,
    index: std::collections::HashMap<String, usize>,
}

impl ZipFiles {
    pub fn open(path: &Path) -> anyhow::Result<ZipFiles> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut archive = zip::ZipArchive::new(BufReader::new(file))?;
        let mut index = std::collections::HashMap::new();
        for i in 0..archive.len() {
            let item = archive.by_index_raw(i)?;
            if let Ok(name) = relative_entry_path(item.name_raw()) {
                index.insert(name, i);
            }
        }
        Ok(ZipFiles { archive, index })
    }

    /// The entry `name` in full, or `None` when it is missing or longer than `max` bytes.
    pub fn read(&mut self, name: &str, max: u64) -> Option<Vec<u8>> {
        let index = *self.index.get(name)?;
        let item = self.archive.by_index(index).ok()?;
        let mut bytes = Vec::new();
        item.take(max + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= max).then_some(bytes)
    }
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
            script: None,
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

    #[test]
    fn only_files_links_and_empty_directories_named_so_are_entries() {
        assert_eq!(entry_kind(b"python/", Some(S_IFDIR | 0o755), 0), Ok(None));
        assert_eq!(entry_kind(b"python/", None, 0), Ok(None));
        assert_eq!(
            entry_kind(b"python/a.py", Some(S_IFREG | 0o644), 3),
            Ok(Some(Kind::File))
        );
        assert_eq!(
            entry_kind(b"python/a", Some(S_IFREG | 0o755), 3),
            Ok(Some(Kind::Executable))
        );
        assert_eq!(
            entry_kind(b"python/l", Some(S_IFLNK | 0o777), 3),
            Ok(Some(Kind::Symlink))
        );
        // Data hidden in what some tools take for a directory, or a file type a layer cannot hold.
        assert!(entry_kind(b"python/evil.pth", Some(S_IFDIR | 0o755), 12).is_err());
        assert!(entry_kind(b"python/evil/", Some(S_IFREG | 0o644), 12).is_err());
        assert!(entry_kind(b"python/evil\\", Some(S_IFREG | 0o644), 12).is_err());
        assert!(entry_kind(b"python/fifo", Some(0o010_644), 0).is_err());
    }

    #[test]
    fn a_listing_reads_back_as_its_entries_and_nothing_else() {
        let entry = |name: &str, kind, byte| Entry {
            name: name.to_string(),
            kind,
            size: 1,
            sha256: [byte; 32],
            script: None,
        };
        let entries = [
            entry("python/a.py", Kind::File, 1),
            entry("python/bin/t", Kind::Executable, 2),
            entry("python/l", Kind::Symlink, 3),
        ];
        let listing = listing(&entries);
        assert_eq!(listing_sha256(&listing), content_sha256(&entries));
        let parsed = parse_listing(&listing).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed["python/bin/t"], (Kind::Executable, [2; 32]));
        assert_eq!(parse_listing(b""), Some(HashMap::new()));
        // A name with a newline, a cut line, a duplicate, a bad kind or hash: not a listing.
        let newline = self::listing(&[entry("python/a\nb", Kind::File, 1)]);
        let doubled = [listing.clone(), listing.clone()].concat();
        let bad_kind = String::from_utf8(listing.clone())
            .unwrap()
            .replace("\0f\0", "\0q\0");
        for broken in [
            newline,
            listing[..listing.len() - 1].to_vec(),
            doubled,
            bad_kind.into_bytes(),
            b"python/a.py\0f\0xyz\n".to_vec(),
            format!("python/a.py\0f\0+{}\n", "a".repeat(63)).into_bytes(),
            format!("python/a.py\0f\0{}\n", "A".repeat(64)).into_bytes(),
        ] {
            assert_eq!(
                parse_listing(&broken),
                None,
                "{}",
                String::from_utf8_lossy(&broken)
            );
        }
    }
}
