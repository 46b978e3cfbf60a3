//! A deterministic zip of a directory, with the hashes Lambda reports (`CodeSha256`).
//!
//! The same tree always gives the same bytes, whatever the files' mtimes, owners or non-execute
//! permission bits, and whatever the number of compression threads:
//! - entries sorted by path (bytes, `/` separators); files and symlinks only — no directory
//!   entries (Lambda and pip-built zips do not need them, and empty directories carry nothing);
//! - one fixed timestamp: `SOURCE_DATE_EPOCH` (UTC) if set and not before 1980, else 1980-01-01
//!   00:00:00; DOS time has 2-second resolution, so odd seconds are rounded down;
//! - unix permissions 0644, or 0755 if any execute bit is set; symlinks 0777;
//! - deflate level 5, no extra fields (no extended timestamp, no alignment padding);
//! - written to a temporary file next to the destination and renamed into place, so a failure
//!   never leaves a partial file at the final path.
//!
//! With [`ZipOptions::reuse`] (an earlier zip by this same writer, see [`WRITER`], and the
//! content listing written with it, see [`Reuse`]), a file whose name, mode and SHA-256 are
//! those of an entry of that zip is not compressed again: its compressed bytes are copied as
//! they are. Deflate is deterministic for the same writer, so the result is the zip a full
//! compression makes, byte for byte (a test holds this).
//!
//! Files are compressed into memory by worker threads, which take them in order from a shared
//! queue (a big file is read in chunks, so only its compressed form is held); the writer appends
//! each entry in order as soon as it is ready. At most [`WINDOW_BYTES`] of finished entries wait
//! for the writer (plus what the workers are compressing). Every file is compressed the same way
//! whatever the number of threads, so the output does not depend on it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zip::write::{PreparedZipFile, SimpleFileOptions, ZipFileBuilder};
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::digest;

/// Compressed bytes of finished entries that may wait for the writer: a worker does not start
/// a new file while this much is waiting. 4 MiB keeps a cold build's peak memory near 62 MB in
/// `scripts/bench.sh` (6 MiB: about 1 MB more; 12 MiB was 67 MB) for a zip 4 % slower than with
/// 6 MiB (measured on the seed layer, 2 cores).
const WINDOW_BYTES: u64 = 4 << 20;
/// 1980-01-01T00:00:00Z, the earliest DOS timestamp.
const DOS_EPOCH: i64 = 315_532_800;

/// What this writer's output depends on besides the tree: bumped whenever the bytes it writes
/// for the same tree change (another zip or deflate crate version, level, header), so that
/// [`ZipOptions::reuse`] never mixes compressed bytes of two writers. The golden test below
/// fails when the bytes change; a tidy test fails when Cargo.lock's versions of these crates
/// are not the ones named here.
pub const WRITER: &str = "xtask-zip/1 (zip 9.8.2, flate2 1.1.11, zlib-rs 0.6.8, deflate level 5)";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipOptions {
    /// Seconds since the Unix epoch for every entry's timestamp (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: Option<i64>,
    /// Compression threads (at least 1).
    pub threads: usize,
    /// A zip by this writer ([`WRITER`]) whose entries may be copied for unchanged files instead
    /// of compressed again. A missing or unreadable one is ignored; one that cannot be copied
    /// from (or changes meanwhile) makes the zip be written again without it.
    pub reuse: Option<Reuse>,
}

/// An earlier zip by this writer and what each of its files holds: the content listing
/// ([`digest::listing`]) written beside it, checked against the content digest that zip's
/// manifest records; the zip itself is checked against the SHA-256 the manifest records when it
/// is opened. A new file with an entry's name, kind and SHA-256 gets that entry's compressed
/// bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reuse {
    pub zip: PathBuf,
    /// Hex SHA-256 and size the zip must have.
    zip_sha256: String,
    zip_bytes: u64,
    listed: Arc<HashMap<String, (digest::Kind, [u8; 32])>>,
}

/// The most a content listing may hold (the seed layer's: 250 KB).
const MAX_LISTING_BYTES: u64 = 64 << 20;

impl Reuse {
    /// `zip` (to be `zip_bytes` bytes of SHA-256 `zip_sha256`) and its listing
    /// ([`listing_path`]), when the listing's digest is `content_sha256`: all as the zip's
    /// manifest records them.
    pub fn load(
        zip: &Path,
        (zip_sha256, zip_bytes): (&str, u64),
        content_sha256: &str,
    ) -> Option<Reuse> {
        let listing = crate::util::read_regular(&listing_path(zip), MAX_LISTING_BYTES).ok()?;
        if digest::listing_sha256(listing.as_bytes()) != content_sha256 {
            return None;
        }
        Some(Reuse {
            zip: zip.to_path_buf(),
            zip_sha256: zip_sha256.to_string(),
            zip_bytes,
            listed: Arc::new(digest::parse_listing(listing.as_bytes())?),
        })
    }
}

/// Where the content listing of the zip at `zip` is kept: `.<zip's name>.content` beside it.
pub fn listing_path(zip: &Path) -> PathBuf {
    let name = zip.file_name().unwrap_or_default().to_string_lossy();
    zip.with_file_name(format!(".{name}.content"))
}

impl Default for ZipOptions {
    fn default() -> Self {
        ZipOptions {
            source_date_epoch: None,
            threads: 2,
            reuse: None,
        }
    }
}

impl ZipOptions {
    /// The defaults, with `SOURCE_DATE_EPOCH` from the environment.
    pub fn from_env() -> Result<ZipOptions> {
        let value = std::env::var("SOURCE_DATE_EPOCH").ok();
        Ok(ZipOptions {
            source_date_epoch: parse_source_date_epoch(value.as_deref())?,
            ..ZipOptions::default()
        })
    }
}

/// Parses `SOURCE_DATE_EPOCH` (unset or empty: none).
pub fn parse_source_date_epoch(value: Option<&str>) -> Result<Option<i64>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse::<i64>().map(Some).map_err(|_| {
            anyhow!("SOURCE_DATE_EPOCH must be a number of seconds since 1970, not `{text}`")
        }),
    }
}

/// The DOS timestamp every entry gets.
pub fn zip_timestamp(source_date_epoch: Option<i64>) -> Result<DateTime> {
    let Some(epoch) = source_date_epoch.filter(|e| *e >= DOS_EPOCH) else {
        return Ok(DateTime::default());
    };
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    let date = crate::runtime::Date::from_unix_days(days);
    let (year, month, day) = (
        u16::try_from(date.year).unwrap_or(u16::MAX),
        date.month,
        date.day,
    );
    let (hour, minute, second) = (secs / 3600, secs % 3600 / 60, secs % 60 / 2 * 2);
    DateTime::from_date_and_time(
        year,
        month as u8,
        day as u8,
        hour as u8,
        minute as u8,
        second as u8,
    )
    .map_err(|_| anyhow!("SOURCE_DATE_EPOCH={epoch} is after 2107, the last year a zip can store"))
}

/// One file or symlink to put in the zip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipEntry {
    /// The path inside the zip (`python/x.py`).
    pub name: String,
    /// Where it is read from.
    pub path: PathBuf,
    pub kind: ZipEntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ZipEntryKind {
    File { executable: bool, size: u64 },
    Symlink { target: String },
}

/// What was written, and the hashes Lambda and S3 compare.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ZipSummary {
    pub path: PathBuf,
    /// Hex SHA-256 of the zip's bytes.
    pub sha256_hex: String,
    /// Base64 of the raw SHA-256 digest: Lambda's `CodeSha256`.
    pub code_sha256: String,
    pub zipped_bytes: u64,
    pub files: u64,
    pub unzipped_bytes: u64,
    /// The layer's content digest (see [`super::digest`]), hex.
    pub content_sha256: String,
    /// What the digest is made of ([`digest::listing`]): kept beside the zip ([`Reuse`]).
    #[serde(skip)]
    pub listing: Vec<u8>,
    /// Files whose compressed bytes came from [`ZipOptions::reuse`].
    #[serde(skip)]
    pub reused_files: u64,
}

/// Zips the files and symlinks below `dir` into `dest`.
pub fn write_zip(dir: &Path, dest: &Path, options: &ZipOptions) -> Result<ZipSummary> {
    let entries = collect_entries(dir)?;
    write_zip_entries(&entries, dest, options)
}

/// The files and symlinks below `dir`, sorted by their name in the zip. Directories themselves
/// are not entries; any other file type is an error.
pub fn collect_entries(dir: &Path) -> Result<Vec<ZipEntry>> {
    let mut entries = Vec::new();
    walk(dir, "", &mut entries)?;
    entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
    Ok(entries)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<ZipEntry>) -> Result<()> {
    let read = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for item in read {
        let item = item.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = item.path();
        let file_name = item.file_name();
        let Some(file_name) = file_name.to_str() else {
            bail!(
                "{} has a name that is not UTF-8: zip entry names must be",
                path.display()
            );
        };
        if file_name.ends_with('\\') {
            bail!(
                "{} has a name that ends in a backslash: zip tools read such an entry as a directory",
                path.display()
            );
        }
        let name = if prefix.is_empty() {
            file_name.to_string()
        } else {
            format!("{prefix}/{file_name}")
        };
        let meta = fs::symlink_metadata(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file_type = meta.file_type();
        if file_type.is_dir() {
            walk(&path, &name, out)?;
        } else if file_type.is_file() {
            out.push(ZipEntry {
                name,
                path,
                kind: ZipEntryKind::File {
                    executable: meta.permissions().mode() & 0o111 != 0,
                    size: meta.len(),
                },
            });
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path)
                .with_context(|| format!("cannot read the link {}", path.display()))?;
            let Some(target) = target.to_str() else {
                bail!("the link {} has a target that is not UTF-8", path.display());
            };
            out.push(ZipEntry {
                name,
                path,
                kind: ZipEntryKind::Symlink {
                    target: target.to_string(),
                },
            });
        } else {
            bail!(
                "{} is not a file, directory or symlink: it cannot go in a zip",
                path.display()
            );
        }
    }
    Ok(())
}

fn file_options(timestamp: DateTime, mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        // zlib-rs level 5: 10 % faster than 6 on the seed layer for a 0.3 % bigger zip (2.4 %
        // over Info-ZIP's level 6; level 4 would be 4.4 % over).
        .compression_level(Some(5))
        .last_modified_time(timestamp)
        .unix_permissions(mode)
}

/// Writes `entries` (in the given order) as a zip at `dest`, atomically.
pub fn write_zip_entries(
    entries: &[ZipEntry],
    dest: &Path,
    options: &ZipOptions,
) -> Result<ZipSummary> {
    let timestamp = zip_timestamp(options.source_date_epoch)?;
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = tempfile::NamedTempFile::new_in(&parent)
        .with_context(|| format!("cannot create a temporary file in {}", parent.display()))?;
    let file = temp
        .as_file()
        .try_clone()
        .context("cannot reopen the temporary zip")?;
    let mut zip = ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let reuse = options.reuse.as_ref();
    let written = match append_entries(&mut zip, entries, timestamp, options.threads, reuse) {
        // Whatever went wrong with the previous zip, compressing everything does not need it.
        Err(_) if reuse.is_some() => {
            let without = ZipOptions {
                reuse: None,
                ..options.clone()
            };
            return write_zip_entries(entries, dest, &without);
        }
        written => written?,
    };
    let writer = zip.finish().context("cannot finish the zip")?;
    let file = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .context("cannot write the zip")?;
    file.sync_all().context("cannot write the zip")?;
    drop(file);
    fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o644))
        .context("cannot set the zip's permissions")?;
    let (sha256_hex, code_sha256, zipped_bytes) = hash_file(temp.path())?;
    let listing = digest::listing(&written.content);
    temp.persist(dest)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot move the zip into place at {}", dest.display()))?;
    Ok(ZipSummary {
        path: dest.to_path_buf(),
        sha256_hex,
        code_sha256,
        zipped_bytes,
        files: written.content.len() as u64,
        unzipped_bytes: written.unzipped_bytes,
        content_sha256: digest::listing_sha256(&listing),
        listing,
        reused_files: written.reused,
    })
}

/// An earlier zip whose compressed entries may be copied (see [`ZipOptions::reuse`]): opened
/// and parsed once; the workers and the writer each get a clone reading the same open file.
#[derive(Clone)]
struct Previous {
    archive: ZipArchive<SharedFile>,
    /// Name → index, for the plain files this writer writes (not a link, not ZIP64, no extra
    /// field or comment).
    files: Arc<HashMap<String, usize>>,
    /// What each entry holds (see [`Reuse`]).
    listed: Arc<HashMap<String, (digest::Kind, [u8; 32])>>,
    /// The file's size and modification time when it was opened (see [`Previous::unchanged`]).
    opened: (u64, Option<std::time::SystemTime>),
}

impl Previous {
    /// The zip of `reuse`, when it can be read and is still the zip its listing describes (its
    /// entries are copied unread).
    fn open(reuse: Option<&Reuse>) -> Option<Previous> {
        let reuse = reuse?;
        let file = crate::util::open_regular(&reuse.zip).ok()?;
        let opened = stamp(&file)?;
        let (sha256, read) = digest::hash_reader(&mut (&file).take(reuse.zip_bytes + 1)).ok()?;
        if read != reuse.zip_bytes || crate::util::hex(&sha256) != reuse.zip_sha256 {
            return None;
        }
        let mut archive = ZipArchive::new(SharedFile::new(file)).ok()?;
        let mut files = HashMap::new();
        for index in 0..archive.len() {
            let Ok(entry) = archive.by_index_raw(index) else {
                continue;
            };
            let plain = entry.is_file()
                && !entry.is_symlink()
                && entry.compression() == CompressionMethod::Deflated
                && entry.compressed_size() < u64::from(u32::MAX)
                && entry.size() < u64::from(u32::MAX)
                && entry.extra_data().is_none_or(|extra| extra.is_empty())
                && entry.comment().is_empty();
            if let (true, Ok(name)) = (plain, entry.name()) {
                files.insert(name.to_string(), index);
            }
        }
        Some(Previous {
            archive,
            files: Arc::new(files),
            listed: reuse.listed.clone(),
            opened,
        })
    }

    /// The index of `entry`'s old twin: the same name, size and mode, and the SHA-256 its
    /// listing gives; with the file's SHA-256.
    fn twin(&mut self, entry: &ZipEntry, mode: u32) -> Option<(usize, [u8; 32])> {
        let ZipEntryKind::File { size, executable } = entry.kind else {
            return None;
        };
        let index = *self.files.get(&entry.name)?;
        let (kind, listed) = self.listed.get(&entry.name)?;
        let wanted = match executable {
            true => digest::Kind::Executable,
            false => digest::Kind::File,
        };
        let old = self.archive.by_index_raw(index).ok()?;
        let same_entry = *kind == wanted
            && old.size() == size
            && old.unix_mode().map(|m| m & 0o777) == Some(mode);
        if !same_entry {
            return None;
        }
        drop(old);
        let new = File::open(&entry.path).ok()?;
        let (sha256, read) = digest::hash_reader(&mut new.take(size + 1)).ok()?;
        (read == size && sha256 == *listed).then_some((index, sha256))
    }

    /// Whether the file is still as it was when opened: a zip cut short or rewritten while it
    /// was copied from would make the copies wrong.
    fn unchanged(&self) -> bool {
        stamp(&self.archive.clone().into_inner().file) == Some(self.opened)
    }
}

fn stamp(file: &File) -> Option<(u64, Option<std::time::SystemTime>)> {
    let meta = file.metadata().ok()?;
    Some((meta.len(), meta.modified().ok()))
}

/// One open file read at positions (`pread`): its clones share it, each with its own offset.
#[derive(Clone)]
struct SharedFile {
    file: Arc<File>,
    position: u64,
}

impl SharedFile {
    fn new(file: File) -> SharedFile {
        SharedFile {
            file: Arc::new(file),
            position: 0,
        }
    }
}

impl Read for SharedFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt as _;
        let n = self.file.read_at(buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let (base, offset) = match to {
            io::SeekFrom::Start(n) => (0, i128::from(n)),
            io::SeekFrom::End(n) => (self.file.metadata()?.len(), i128::from(n)),
            io::SeekFrom::Current(n) => (self.position, i128::from(n)),
        };
        self.position = u64::try_from(i128::from(base) + offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a seek before the start"))?;
        Ok(self.position)
    }
}

/// The work queue shared by the compression threads and the writer.
struct Queue {
    state: Mutex<QueueState>,
    /// Signalled when an entry is finished or the queue is aborted (the writer waits on it).
    finished: Condvar,
    /// Signalled when the window has room or the queue is aborted (workers wait on it).
    room: Condvar,
}

struct QueueState {
    /// The next file (an index into the list of files) a worker may take.
    next: usize,
    /// Finished entries not yet appended, by file index.
    done: Vec<Option<Compressed>>,
    /// Compressed bytes in `done`.
    waiting_bytes: u64,
    /// The first error, if any; once set, everyone stops.
    error: Option<anyhow::Error>,
    aborted: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn abort(&self, error: Option<anyhow::Error>) {
        let mut state = self.lock();
        if state.error.is_none() {
            state.error = error;
        }
        state.aborted = true;
        drop(state);
        self.finished.notify_all();
        self.room.notify_all();
    }
}

impl Queue {
    /// The file `index` once a worker has finished it (it leaves the window).
    fn take(&self, index: usize) -> Result<Compressed> {
        let mut state = self.lock();
        let prepared = loop {
            if let Some(error) = state.error.take() {
                return Err(error);
            }
            if let Some(prepared) = state.done[index].take() {
                state.waiting_bytes -= prepared.held_bytes();
                break prepared;
            }
            if state.aborted {
                bail!("the zip was abandoned");
            }
            state = self
                .finished
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        };
        drop(state);
        self.room.notify_all();
        Ok(prepared)
    }
}

/// Aborts the queue if a worker panics, so the writer does not wait for its entry forever.
struct AbortOnPanic<'a>(&'a Queue);

impl Drop for AbortOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.abort(Some(anyhow!("a compression thread panicked")));
        }
    }
}

/// A file compressed into memory, or found unchanged in the previous zip; and the SHA-256 of
/// what was read.
struct Compressed {
    data: Data,
    sha256: [u8; 32],
}

enum Data {
    Prepared(PreparedZipFile),
    /// The previous zip's entry at this index (checked with this mode), copied as it is.
    Reused {
        index: usize,
        size: u64,
        mode: u32,
    },
}

impl Compressed {
    /// Bytes held in memory until the writer takes it.
    fn held_bytes(&self) -> u64 {
        match &self.data {
            Data::Prepared(file) => file.compressed_size(),
            Data::Reused { .. } => 0,
        }
    }

    fn uncompressed_size(&self) -> u64 {
        match &self.data {
            Data::Prepared(file) => file.uncompressed_size(),
            Data::Reused { size, .. } => *size,
        }
    }
}

/// What went into the zip.
struct Written {
    unzipped_bytes: u64,
    /// Every entry, in the zip's order, for the content digest.
    content: Vec<digest::Entry>,
    reused: u64,
}

/// Compresses the files of `entries` on `threads` worker threads, in order, and appends every
/// entry to `zip` in order as soon as it is ready.
fn append_entries<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    entries: &[ZipEntry],
    timestamp: DateTime,
    threads: usize,
    reuse: Option<&Reuse>,
) -> Result<Written> {
    let files: Vec<&ZipEntry> = entries
        .iter()
        .filter(|e| matches!(e.kind, ZipEntryKind::File { .. }))
        .collect();
    let queue = Queue {
        state: Mutex::new(QueueState {
            next: 0,
            done: std::iter::repeat_with(|| None).take(files.len()).collect(),
            waiting_bytes: 0,
            error: None,
            aborted: false,
        }),
        finished: Condvar::new(),
        room: Condvar::new(),
    };
    let threads = threads.clamp(1, files.len().max(1));
    let previous = Previous::open(reuse);
    let written = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let previous = previous.clone();
                scope.spawn(|| compress_worker(&queue, &files, timestamp, previous))
            })
            .collect();
        let result = write_in_order(zip, entries, timestamp, &queue, previous.clone());
        // Stop the workers whatever happened: they may be waiting for room in the window.
        queue.abort(None);
        let mut panicked = false;
        for worker in workers {
            panicked |= worker.join().is_err();
        }
        match result {
            Ok(_) if panicked => Err(anyhow!("a compression thread panicked")),
            other => other,
        }
    })?;
    if written.reused > 0 && !previous.is_some_and(|p| p.unchanged()) {
        bail!("the previous zip changed while its entries were copied");
    }
    Ok(written)
}

fn compress_worker(
    queue: &Queue,
    files: &[&ZipEntry],
    timestamp: DateTime,
    mut previous: Option<Previous>,
) {
    let _guard = AbortOnPanic(queue);
    loop {
        let index = {
            let mut state = queue.lock();
            loop {
                if state.aborted || state.next >= files.len() {
                    return;
                }
                if state.waiting_bytes < WINDOW_BYTES {
                    break;
                }
                state = queue
                    .room
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.next += 1;
            state.next - 1
        };
        match compress_one(files[index], timestamp, previous.as_mut()) {
            Ok(prepared) => {
                let mut state = queue.lock();
                state.waiting_bytes += prepared.held_bytes();
                state.done[index] = Some(prepared);
                drop(state);
                queue.finished.notify_all();
            }
            Err(error) => {
                queue.abort(Some(error));
                return;
            }
        }
    }
}

/// The writer: appends every entry in order, taking each file from the queue once it is ready.
fn write_in_order<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    entries: &[ZipEntry],
    timestamp: DateTime,
    queue: &Queue,
    mut previous: Option<Previous>,
) -> Result<Written> {
    let mut reused = 0;
    let mut unzipped_bytes = 0u64;
    let mut content = Vec::with_capacity(entries.len());
    let mut file_index = 0;
    for entry in entries {
        match &entry.kind {
            ZipEntryKind::Symlink { target } => {
                zip.add_symlink(entry.name.as_str(), target, file_options(timestamp, 0o777))
                    .with_context(|| format!("cannot add the link {}", entry.name))?;
                unzipped_bytes += target.len() as u64;
                content.push(digest::Entry {
                    name: entry.name.clone(),
                    kind: digest::Kind::Symlink,
                    size: target.len() as u64,
                    sha256: Sha256::digest(target.as_bytes()).into(),
                    script: None,
                });
            }
            ZipEntryKind::File { executable, .. } => {
                let prepared = queue.take(file_index)?;
                file_index += 1;
                let size = prepared.uncompressed_size();
                unzipped_bytes += size;
                content.push(digest::Entry {
                    name: entry.name.clone(),
                    kind: match executable {
                        true => digest::Kind::Executable,
                        false => digest::Kind::File,
                    },
                    size,
                    sha256: prepared.sha256,
                    script: None,
                });
                let added = match prepared.data {
                    Data::Prepared(file) => zip.add_prepared_file(file),
                    Data::Reused { index, mode, .. } => {
                        reused += 1;
                        copy_entry(zip, previous.as_mut(), index, timestamp, mode)
                    }
                };
                added.with_context(|| format!("cannot add {}", entry.name))?;
            }
        }
    }
    Ok(Written {
        unzipped_bytes,
        content,
        reused,
    })
}

/// The previous zip's entry `index`, its compressed bytes copied as they are.
fn copy_entry<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    previous: Option<&mut Previous>,
    index: usize,
    timestamp: DateTime,
    mode: u32,
) -> zip::result::ZipResult<()> {
    let previous = previous.ok_or(zip::result::ZipError::FileNotFound)?;
    let old = previous.archive.by_index_raw(index)?;
    zip.raw_copy_file_touch(old, timestamp, Some(mode))
}

/// Compresses one file into memory, reading it in chunks: only the compressed data is held.
fn compress_one(
    entry: &ZipEntry,
    timestamp: DateTime,
    previous: Option<&mut Previous>,
) -> Result<Compressed> {
    let (executable, size) = match entry.kind {
        ZipEntryKind::File { executable, size } => (executable, size),
        ZipEntryKind::Symlink { .. } => (false, 0),
    };
    let mode = if executable { 0o755 } else { 0o644 };
    if let Some((index, sha256)) = previous.and_then(|p| p.twin(entry, mode)) {
        return Ok(Compressed {
            data: Data::Reused { index, size, mode },
            sha256,
        });
    }
    let options = file_options(timestamp, mode).large_file(size >= u64::from(u32::MAX));
    let mut builder = ZipFileBuilder::new(entry.name.as_str(), options)
        .with_context(|| format!("cannot add {}", entry.name))?;
    let input =
        File::open(&entry.path).with_context(|| format!("cannot read {}", entry.path.display()))?;
    let mut input = Hashing {
        inner: input,
        hasher: Sha256::new(),
    };
    io::copy(&mut input, &mut builder)
        .with_context(|| format!("cannot compress {}", entry.path.display()))?;
    let file = builder
        .finish()
        .with_context(|| format!("cannot compress {}", entry.path.display()))?;
    Ok(Compressed {
        data: Data::Prepared(file),
        sha256: input.hasher.finalize().into(),
    })
}

/// A reader that hashes what passes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// SHA-256 of a file: (hex, base64 of the raw digest = `CodeSha256`, size in bytes).
pub fn hash_file(path: &Path) -> Result<(String, String, u64)> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    let digest = hasher.finalize();
    let hex = digest.iter().map(|b| format!("{b:02x}")).collect();
    let code_sha256 = base64::engine::general_purpose::STANDARD.encode(digest);
    Ok((hex, code_sha256, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(zip_timestamp(None).unwrap(), DateTime::default());
        assert_eq!(zip_timestamp(Some(0)).unwrap(), DateTime::default());
        assert_eq!(zip_timestamp(Some(-5)).unwrap(), DateTime::default());
        // 2023-11-14T22:13:20Z; 20 s stays 20.
        let t = zip_timestamp(Some(1_700_000_000)).unwrap();
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
        // Odd seconds round down: 2000-02-29T23:59:59Z.
        let t = zip_timestamp(Some(951_868_799)).unwrap();
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2000, 2, 29, 23, 59, 58)
        );
        assert!(zip_timestamp(Some(5_000_000_000)).is_err());
    }

    /// A small tree of every kind of entry: text, pseudo-random bytes, an executable, an empty
    /// file, a UTF-8 name, a link.
    fn tree(dir: &Path) {
        let mut noise = Vec::new();
        let mut x: u32 = 12345;
        for _ in 0..300_000 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            noise.push((x >> 16) as u8);
        }
        let files: [(&str, &[u8]); 5] = [
            ("python/a.py", &b"print('a')\n".repeat(2000)),
            ("python/pkg/noise.bin", &noise),
            ("python/bin/tool", b"#!/bin/sh\necho tool\n"),
            ("python/empty", b""),
            ("python/\u{fc}ber.py", b"X = 1\n"),
        ];
        for (name, content) in files {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, content).unwrap();
        }
        fs::set_permissions(
            dir.join("python/bin/tool"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::os::unix::fs::symlink("a.py", dir.join("python/link.py")).unwrap();
    }

    fn options(reuse: Option<&ZipSummary>) -> ZipOptions {
        ZipOptions {
            source_date_epoch: Some(1_700_000_000),
            threads: 2,
            reuse: reuse.map(|zip| Reuse {
                zip: zip.path.clone(),
                zip_sha256: zip.sha256_hex.clone(),
                zip_bytes: zip.zipped_bytes,
                listed: Arc::new(digest::parse_listing(&zip.listing).unwrap()),
            }),
        }
    }

    #[test]
    fn the_writer_writes_the_bytes_it_always_wrote() {
        // When this changes, the zip of every layer changes: bump WRITER and say why.
        let tmp = tempfile::tempdir().unwrap();
        tree(&tmp.path().join("t"));
        let zip = write_zip(
            &tmp.path().join("t"),
            &tmp.path().join("z.zip"),
            &options(None),
        )
        .unwrap();
        assert_eq!(zip.sha256_hex, GOLDEN_SHA256, "{WRITER}");
    }

    const GOLDEN_SHA256: &str = "f3a2f8b13bef33b4508fb912749bc06f9beaee479d049ef202719084f0d08397";

    #[test]
    fn reusing_an_earlier_zip_gives_the_bytes_of_a_full_compression() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        tree(&t);
        let first = write_zip(&t, &tmp.path().join("first.zip"), &options(None)).unwrap();
        let again = write_zip(&t, &tmp.path().join("again.zip"), &options(Some(&first))).unwrap();
        assert_eq!(
            fs::read(&first.path).unwrap(),
            fs::read(&again.path).unwrap()
        );
        assert_eq!(again.reused_files, 5);

        // One file changed, one made executable, one added, one removed.
        fs::write(t.join("python/a.py"), b"print('b')\n".repeat(2000)).unwrap();
        fs::set_permissions(t.join("python/empty"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(t.join("python/new.py"), b"N = 2\n").unwrap();
        fs::remove_file(t.join("python/\u{fc}ber.py")).unwrap();
        let full = write_zip(&t, &tmp.path().join("full.zip"), &options(None)).unwrap();
        let reused = write_zip(&t, &tmp.path().join("inc.zip"), &options(Some(&first))).unwrap();
        assert_eq!(
            fs::read(&full.path).unwrap(),
            fs::read(&reused.path).unwrap()
        );
        assert_eq!(full.content_sha256, reused.content_sha256);
        assert_eq!((full.reused_files, reused.reused_files), (0, 2));
    }

    #[test]
    fn a_damaged_or_foreign_earlier_zip_is_never_copied_from() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        tree(&t);
        let first = write_zip(&t, &tmp.path().join("first.zip"), &options(None)).unwrap();
        let full = fs::read(&first.path).unwrap();
        // A byte of noise.bin's compressed data flipped: not the zip the listing describes.
        let mut damaged = full.clone();
        let at = full
            .windows(20)
            .position(|w| w == b"python/pkg/noise.bin")
            .unwrap()
            + 200;
        damaged[at] ^= 0xff;
        fs::write(&first.path, &damaged).unwrap();
        let zip = write_zip(&t, &tmp.path().join("z.zip"), &options(Some(&first))).unwrap();
        assert_eq!(
            (fs::read(&zip.path).unwrap(), zip.reused_files),
            (full.clone(), 0)
        );
        // Not a zip at all, or missing: everything compressed.
        fs::write(&first.path, b"not a zip").unwrap();
        let zip = write_zip(&t, &tmp.path().join("y.zip"), &options(Some(&first))).unwrap();
        assert_eq!(
            (fs::read(&zip.path).unwrap(), zip.reused_files),
            (full.clone(), 0)
        );
        fs::remove_file(&first.path).unwrap();
        let zip = write_zip(&t, &tmp.path().join("x.zip"), &options(Some(&first))).unwrap();
        assert_eq!((fs::read(&zip.path).unwrap(), zip.reused_files), (full, 0));
    }

    #[test]
    fn a_file_is_copied_only_when_the_listing_gives_its_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        tree(&t);
        let first = write_zip(&t, &tmp.path().join("first.zip"), &options(None)).unwrap();
        // A listing that gives a.py another hash (as a listing of another zip would): a.py is
        // compressed, the others copied.
        let mut listing = digest::parse_listing(&first.listing).unwrap();
        listing.get_mut("python/a.py").unwrap().1[0] ^= 1;
        let mut reuse = options(Some(&first));
        if let Some(reuse) = reuse.reuse.as_mut() {
            reuse.listed = Arc::new(listing);
        }
        let zip = write_zip(&t, &tmp.path().join("z.zip"), &reuse).unwrap();
        assert_eq!(fs::read(&zip.path).unwrap(), fs::read(&first.path).unwrap());
        assert_eq!(zip.reused_files, 4);
    }

    #[test]
    fn a_listing_is_loaded_only_with_the_digest_it_was_written_with() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path().join("t");
        tree(&t);
        let first = write_zip(&t, &tmp.path().join("first.zip"), &options(None)).unwrap();
        let (zip, sha) = (&first.path, (first.sha256_hex.as_str(), first.zipped_bytes));
        assert_eq!(
            Reuse::load(zip, sha, &first.content_sha256),
            None,
            "no listing yet"
        );
        fs::write(listing_path(zip), &first.listing).unwrap();
        let loaded = Reuse::load(zip, sha, &first.content_sha256).expect("loads");
        assert_eq!(loaded, options(Some(&first)).reuse.unwrap());
        let other = "0".repeat(64);
        assert_eq!(Reuse::load(zip, sha, &other), None);
        let mut edited = first.listing.clone();
        edited[0] ^= 1;
        fs::write(listing_path(zip), &edited).unwrap();
        assert_eq!(Reuse::load(zip, sha, &first.content_sha256), None);
        assert_eq!(listing_path(zip), tmp.path().join(".first.zip.content"));
    }

    #[test]
    fn source_date_epoch_parsing() {
        assert_eq!(parse_source_date_epoch(None).unwrap(), None);
        assert_eq!(parse_source_date_epoch(Some("")).unwrap(), None);
        assert_eq!(parse_source_date_epoch(Some(" 42 ")).unwrap(), Some(42));
        let err = parse_source_date_epoch(Some("yesterday")).unwrap_err();
        assert!(err.to_string().contains("SOURCE_DATE_EPOCH"), "{err}");
    }
}
