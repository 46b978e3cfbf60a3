//! The artifacts module end to end: CodeBuild selection over tar streams, hostile archives, the
//! deterministic zip (byte-identical, sorted, fixed timestamp, no extra fields) and unzip.

use std::fs;
use std::io::{Cursor, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine;
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};
use xtask::artifacts::{
    extract_tar, unzip, write_zip, zip::collect_entries, zip::write_zip_entries, ExtractError,
    Selection, ZipOptions,
};

// ---------------------------------------------------------------- tar helpers

struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Tar {
        Tar(tar::Builder::new(Vec::new()))
    }

    /// An entry written field by field, so hostile names get through unchecked.
    fn raw(mut self, kind: EntryType, name: &str, link: &str, mode: u32, data: &[u8]) -> Tar {
        let mut header = Header::new_gnu();
        {
            let gnu = header.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_uid(12345);
        header.set_gid(12345);
        header.set_mtime(1_234_567);
        header.set_cksum();
        self.0.append(&header, data).unwrap();
        self
    }

    fn file(self, name: &str, mode: u32, data: &[u8]) -> Tar {
        self.raw(EntryType::Regular, name, "", mode, data)
    }

    fn dir(self, name: &str) -> Tar {
        self.raw(EntryType::Directory, name, "", 0o755, b"")
    }

    fn symlink(self, name: &str, target: &str) -> Tar {
        self.raw(EntryType::Symlink, name, target, 0o777, b"")
    }

    fn hardlink(self, name: &str, target: &str) -> Tar {
        self.raw(EntryType::Link, name, target, 0o644, b"")
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn sel(files: &[&str], exclude: &[&str], discard: bool) -> Selection {
    Selection::new(files, exclude, discard).unwrap()
}

/// A scratch dir with `out/` as the destination; everything else in it counts as "outside".
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }
    fn extract(
        &self,
        tar: Vec<u8>,
        selection: &Selection,
    ) -> Result<xtask::artifacts::ExtractSummary, ExtractError> {
        extract_tar(Cursor::new(tar), &self.out(), selection)
    }
    /// Names directly in the scratch dir other than `out`.
    fn outside(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "out")
            .collect();
        names.sort();
        names
    }
}

/// Every file below `root` (relative, sorted), with its content.
fn files_below(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let data = if meta.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&path).unwrap().display()).into_bytes()
                } else {
                    fs::read(&path).unwrap()
                };
                out.push((rel, data));
            }
        }
    }
    if root.exists() {
        walk(root, root, &mut out);
    }
    out.sort();
    out
}

fn names(root: &Path) -> Vec<String> {
    files_below(root).into_iter().map(|(n, _)| n).collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn layer_tar() -> Vec<u8> {
    Tar::new()
        .dir("./")
        .dir("./python/")
        .file("./python/x.py", 0o644, b"print('x')\n")
        .dir("./python/pkg/")
        .file("./python/pkg/mod.so", 0o700, b"\x7fELF...")
        .file("./python/pkg/__init__.py", 0o600, b"")
        .dir("./python/pkg/sub/")
        .file("./python/pkg/sub/deep.py", 0o644, b"deep = 1\n")
        .file("./README.md", 0o644, b"# readme\n")
        .file("./buildspec.yml", 0o644, b"version: 0.2\n")
        .bytes()
}

// ---------------------------------------------------------------- selection over tars

#[test]
fn double_star_extracts_everything_with_normalised_modes_and_owner() {
    let s = Scratch::new();
    let summary = s.extract(layer_tar(), &sel(&["**/*"], &[], false)).unwrap();
    assert_eq!(
        names(&s.out()),
        [
            "README.md",
            "buildspec.yml",
            "python/pkg/__init__.py",
            "python/pkg/mod.so",
            "python/pkg/sub/deep.py",
            "python/x.py"
        ]
    );
    assert_eq!(summary.files, 6);
    assert_eq!(summary.bytes, 11 + 7 + 9 + 9 + 13);
    assert_eq!(mode(&s.out().join("python/pkg/mod.so")), 0o755);
    assert_eq!(mode(&s.out().join("python/pkg/__init__.py")), 0o644);
    assert_eq!(mode(&s.out().join("python/x.py")), 0o644);
    // Owned by whoever runs the tool, not by the archive's uid 12345.
    let me = fs::metadata(s.dir.path()).unwrap().uid();
    assert_eq!(fs::metadata(s.out().join("python/x.py")).unwrap().uid(), me);
    assert_eq!(summary.biggest(1), vec![("python/pkg", 7 + 9)]);
}

#[test]
fn extracted_files_carry_their_content_s_crc_as_mtime() {
    let s = Scratch::new();
    s.extract(layer_tar(), &sel(&["**/*"], &[], false)).unwrap();
    for (name, content) in [
        ("python/x.py", &b"print('x')\n"[..]),
        ("python/pkg/sub/deep.py", b"deep = 1\n"),
    ] {
        let modified = fs::metadata(s.out().join(name))
            .unwrap()
            .modified()
            .unwrap();
        let seconds = modified
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert_eq!(seconds, u64::from(crc32fast::hash(content)), "{name}");
    }
}

#[test]
fn dir_double_star_selects_only_below_dir() {
    let s = Scratch::new();
    let summary = s
        .extract(layer_tar(), &sel(&["python/**/*"], &[], false))
        .unwrap();
    assert_eq!(
        names(&s.out()),
        [
            "python/pkg/__init__.py",
            "python/pkg/mod.so",
            "python/pkg/sub/deep.py",
            "python/x.py"
        ]
    );
    assert_eq!(summary.files, 4);
}

#[test]
fn dir_star_selects_direct_children_only() {
    let s = Scratch::new();
    s.extract(layer_tar(), &sel(&["python/pkg/*"], &[], false))
        .unwrap();
    assert_eq!(
        names(&s.out()),
        ["python/pkg/__init__.py", "python/pkg/mod.so"]
    );
}

#[test]
fn exclude_paths_drop_files() {
    let s = Scratch::new();
    s.extract(
        layer_tar(),
        &sel(
            &["**/*"],
            &["*.md", "buildspec.yml", "python/pkg/sub/**/*"],
            false,
        ),
    )
    .unwrap();
    assert_eq!(
        names(&s.out()),
        ["python/pkg/__init__.py", "python/pkg/mod.so", "python/x.py"]
    );
}

#[test]
fn discard_paths_flattens() {
    let s = Scratch::new();
    s.extract(layer_tar(), &sel(&["python/pkg/**/*"], &[], true))
        .unwrap();
    assert_eq!(names(&s.out()), ["__init__.py", "deep.py", "mod.so"]);
}

#[test]
fn discard_paths_collision_is_an_error_naming_both_files() {
    let tar = Tar::new()
        .file("a/x.py", 0o644, b"1")
        .file("b/x.py", 0o644, b"2")
        .bytes();
    let err = Scratch::new()
        .extract(tar, &sel(&["**/*"], &[], true))
        .unwrap_err();
    assert!(matches!(err, ExtractError::Collision { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("a/x.py") && text.contains("b/x.py") && text.contains("`x.py`"),
        "{text}"
    );
}

#[test]
fn a_directory_name_as_pattern_matches_nothing_with_a_hint() {
    let err = Scratch::new()
        .extract(layer_tar(), &sel(&["python"], &[], false))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ExtractError::NoMatchingArtifactPaths { .. }),
        "{text}"
    );
    assert!(text.contains("no matching artifact paths found"), "{text}");
    assert!(text.contains("python/**/*"), "{text}");
}

#[test]
fn empty_directories_are_dropped() {
    let tar = Tar::new()
        .dir("python/")
        .dir("python/empty/")
        .file("python/a.py", 0o644, b"a")
        .bytes();
    let s = Scratch::new();
    s.extract(tar, &sel(&["**/*"], &[], false)).unwrap();
    assert!(!s.out().join("python/empty").exists());
}

// ---------------------------------------------------------------- hostile tars

fn assert_rejected(tar: Vec<u8>, selection: &Selection, entry: &str) -> ExtractError {
    let s = Scratch::new();
    let err = s.extract(tar, selection).unwrap_err();
    assert!(
        err.to_string().contains(entry),
        "the message should name `{entry}`: {err}"
    );
    assert!(s.outside().is_empty(), "written outside: {:?}", s.outside());
    err
}

#[test]
fn parent_components_are_rejected() {
    let tar = Tar::new().file("python/../../evil", 0o644, b"x").bytes();
    let err = assert_rejected(tar, &Selection::everything(), "python/../../evil");
    assert!(matches!(err, ExtractError::ParentComponent { .. }), "{err}");
    let tar = Tar::new().file("../evil", 0o644, b"x").bytes();
    assert_rejected(tar, &Selection::everything(), "../evil");
}

#[test]
fn absolute_paths_are_rejected() {
    let s = Scratch::new();
    let target = s.dir.path().join("abs-evil");
    let name = target.to_str().unwrap();
    let tar = Tar::new().file(name, 0o644, b"x").bytes();
    let err = s.extract(tar, &Selection::everything()).unwrap_err();
    assert!(matches!(err, ExtractError::AbsolutePath { .. }), "{err}");
    assert!(err.to_string().contains(name), "{err}");
    assert!(!target.exists());
}

#[test]
fn symlink_to_etc_passwd_is_rejected_with_or_without_enable_symlinks() {
    for enable in [false, true] {
        let tar = Tar::new()
            .file("python/a.py", 0o644, b"a")
            .symlink("python/passwd", "/etc/passwd")
            .bytes();
        let selection = sel(&["**/*"], &[], false).with_symlinks(enable);
        let s = Scratch::new();
        let err = s.extract(tar, &selection).unwrap_err();
        assert!(matches!(err, ExtractError::LinkEscapes { .. }), "{err}");
        assert!(err.to_string().contains("python/passwd"), "{err}");
        assert!(fs::symlink_metadata(s.out().join("python/passwd")).is_err());
    }
}

#[test]
fn relative_symlink_escaping_the_root_is_rejected() {
    let tar = Tar::new().symlink("python/up", "../../outside").bytes();
    let err = assert_rejected(
        tar,
        &sel(&["**/*"], &[], false).with_symlinks(true),
        "python/up",
    );
    assert!(matches!(err, ExtractError::LinkEscapes { .. }), "{err}");
}

#[test]
fn writing_through_a_symlinked_directory_cannot_escape() {
    let s = Scratch::new();
    let outside = s.dir.path().join("victim");
    fs::create_dir(&outside).unwrap();
    let tar = Tar::new()
        .symlink("python", outside.to_str().unwrap())
        .file("python/evil.py", 0o644, b"x")
        .bytes();
    let err = s
        .extract(tar, &sel(&["**/*"], &[], false).with_symlinks(true))
        .unwrap_err();
    assert!(matches!(err, ExtractError::LinkEscapes { .. }), "{err}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn escaping_hardlink_is_rejected() {
    let tar = Tar::new()
        .hardlink("python/passwd", "../../etc/passwd")
        .bytes();
    let err = assert_rejected(tar, &Selection::everything(), "python/passwd");
    assert!(matches!(err, ExtractError::LinkEscapes { .. }), "{err}");
    let tar = Tar::new().hardlink("python/passwd", "/etc/passwd").bytes();
    assert_rejected(tar, &Selection::everything(), "python/passwd");
}

#[test]
fn device_entries_are_rejected_when_selected() {
    let tar = Tar::new()
        .raw(EntryType::Char, "python/null", "", 0o666, b"")
        .bytes();
    let err = assert_rejected(tar, &Selection::everything(), "python/null");
    assert!(err.to_string().contains("character device"), "{err}");
    let tar = Tar::new()
        .raw(EntryType::Block, "python/sda", "", 0o666, b"")
        .bytes();
    assert_rejected(tar, &Selection::everything(), "python/sda");
    // Outside the selection a fifo is no concern.
    let tar = Tar::new()
        .raw(EntryType::Fifo, "tmp/pipe", "", 0o666, b"")
        .file("python/a.py", 0o644, b"a")
        .bytes();
    Scratch::new()
        .extract(tar, &sel(&["python/**/*"], &[], false))
        .unwrap();
}

#[test]
fn setuid_and_setgid_bits_are_dropped() {
    let tar = Tar::new()
        .file("python/bin/tool", 0o4755, b"#!/bin/sh\n")
        .file("python/data", 0o2664, b"d")
        .file("python/secret", 0o600, b"s")
        .bytes();
    let s = Scratch::new();
    s.extract(tar, &Selection::everything()).unwrap();
    assert_eq!(mode(&s.out().join("python/bin/tool")), 0o755);
    assert_eq!(mode(&s.out().join("python/data")), 0o644);
    assert_eq!(mode(&s.out().join("python/secret")), 0o644);
}

// ---------------------------------------------------------------- links inside the tree

#[test]
fn symlinks_store_their_targets_content_unless_enabled() {
    // The link comes before its target, as it can in a tar.
    let tar = Tar::new()
        .symlink("python/lib/libz.so", "libz.so.1")
        .file("python/lib/libz.so.1", 0o755, b"ELF")
        .symlink("python/alias", "pkg")
        .file("python/pkg/a.py", 0o644, b"a")
        .hardlink("python/copy.py", "python/pkg/a.py")
        .bytes();
    let s = Scratch::new();
    let summary = s.extract(tar.clone(), &Selection::everything()).unwrap();
    assert_eq!(
        files_below(&s.out()),
        [
            ("python/alias/a.py".to_string(), b"a".to_vec()),
            ("python/copy.py".to_string(), b"a".to_vec()),
            ("python/lib/libz.so".to_string(), b"ELF".to_vec()),
            ("python/lib/libz.so.1".to_string(), b"ELF".to_vec()),
            ("python/pkg/a.py".to_string(), b"a".to_vec()),
        ]
    );
    assert_eq!(summary.files, 5);
    assert_eq!(mode(&s.out().join("python/lib/libz.so")), 0o755);

    let s = Scratch::new();
    s.extract(tar, &Selection::everything().with_symlinks(true))
        .unwrap();
    assert_eq!(
        fs::read_link(s.out().join("python/lib/libz.so")).unwrap(),
        Path::new("libz.so.1")
    );
    assert_eq!(
        fs::read_link(s.out().join("python/alias")).unwrap(),
        Path::new("pkg")
    );
}

#[test]
fn unselected_links_are_not_checked() {
    let tar = Tar::new()
        .symlink(".venv/bin/python", "/usr/bin/python3")
        .file("python/a.py", 0o644, b"a")
        .bytes();
    let s = Scratch::new();
    s.extract(tar, &sel(&["python/**/*"], &[], false)).unwrap();
    assert_eq!(names(&s.out()), ["python/a.py"]);
}

#[test]
fn link_to_an_unselected_file_is_an_error() {
    let tar = Tar::new()
        .file("vendor/a.py", 0o644, b"a")
        .symlink("python/a.py", "../vendor/a.py")
        .bytes();
    let err = Scratch::new()
        .extract(tar, &sel(&["python/**/*"], &[], false))
        .unwrap_err();
    assert!(
        matches!(err, ExtractError::LinkTargetMissing { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("enable-symlinks"), "{err}");
}

// ---------------------------------------------------------------- deterministic zip

fn sample_tree(root: &Path) {
    fs::create_dir_all(root.join("python/pkg/sub")).unwrap();
    fs::create_dir_all(root.join("python/empty")).unwrap();
    fs::write(root.join("python/x.py"), b"print('x')\n").unwrap();
    fs::write(root.join("python/pkg/__init__.py"), b"").unwrap();
    fs::write(root.join("python/pkg/mod.so"), vec![7u8; 100_000]).unwrap();
    fs::set_permissions(
        root.join("python/pkg/mod.so"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    fs::write(
        root.join("python/pkg/sub/deep.py"),
        b"deep = 1\n".repeat(1000),
    )
    .unwrap();
    fs::write(root.join("python/a.txt"), b"a").unwrap();
}

fn zip_of(tree: &Path, options: &ZipOptions) -> (Vec<u8>, xtask::artifacts::ZipSummary) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("layer.zip");
    let summary = write_zip(tree, &dest, options).unwrap();
    (fs::read(&dest).unwrap(), summary)
}

#[test]
fn zip_is_byte_identical_after_touching_mtimes_and_permissions() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let (first, first_summary) = zip_of(tree.path(), &ZipOptions::default());

    let old = SystemTime::now() - Duration::from_secs(86_400 * 400);
    for name in ["python/x.py", "python/pkg/sub/deep.py"] {
        let file = fs::OpenOptions::new()
            .write(true)
            .open(tree.path().join(name))
            .unwrap();
        file.set_modified(old).unwrap();
    }
    fs::set_permissions(
        tree.path().join("python/x.py"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    fs::set_permissions(
        tree.path().join("python/pkg/mod.so"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let (second, second_summary) = zip_of(tree.path(), &ZipOptions::default());
    assert!(
        first == second,
        "the zip changed after touching mtimes and permissions"
    );
    assert_eq!(first_summary.code_sha256, second_summary.code_sha256);

    let one_thread = ZipOptions {
        threads: 1,
        ..ZipOptions::default()
    };
    let (third, _) = zip_of(tree.path(), &one_thread);
    assert!(first == third, "the zip depends on the number of threads");
}

#[test]
fn zip_entries_are_sorted_files_with_fixed_time_and_modes() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let (bytes, summary) = zip_of(tree.path(), &ZipOptions::default());
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut names = Vec::new();
    let mut unzipped = 0;
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).unwrap();
        assert!(!file.is_dir(), "{}", file.name().unwrap());
        assert_eq!(
            file.last_modified().unwrap(),
            zip::DateTime::default(),
            "{}",
            file.name().unwrap()
        );
        assert_eq!(file.compression(), zip::CompressionMethod::Deflated);
        let expected = if file.name().unwrap() == "python/pkg/mod.so" {
            0o100755
        } else {
            0o100644
        };
        assert_eq!(file.unix_mode(), Some(expected), "{}", file.name().unwrap());
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        unzipped += content.len() as u64;
        names.push(file.name().unwrap().to_string());
    }
    assert_eq!(
        names,
        [
            "python/a.txt",
            "python/pkg/__init__.py",
            "python/pkg/mod.so",
            "python/pkg/sub/deep.py",
            "python/x.py"
        ]
    );
    assert_eq!(summary.files, 5);
    assert_eq!(summary.unzipped_bytes, unzipped);
}

#[test]
fn zip_has_no_extra_fields() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let (bytes, _) = zip_of(tree.path(), &ZipOptions::default());
    let u16_at = |at: usize| u16::from_le_bytes([bytes[at], bytes[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let eocd = bytes.len() - 22;
    assert_eq!(
        &bytes[eocd..eocd + 4],
        b"PK\x05\x06",
        "no comment, no zip64"
    );
    let entries = u16_at(eocd + 10);
    let mut at = u32_at(eocd + 16);
    assert_eq!(entries, 5);
    for _ in 0..entries {
        assert_eq!(&bytes[at..at + 4], b"PK\x01\x02");
        assert_eq!(bytes[at + 5], 3, "made by unix");
        let (name_len, extra_len, comment_len) =
            (u16_at(at + 28), u16_at(at + 30), u16_at(at + 32));
        let name = String::from_utf8_lossy(&bytes[at + 46..at + 46 + name_len]).into_owned();
        assert_eq!(extra_len, 0, "central extra field on {name}");
        assert_eq!(comment_len, 0);
        let local = u32_at(at + 42);
        assert_eq!(&bytes[local..local + 4], b"PK\x03\x04");
        assert_eq!(u16_at(local + 28), 0, "local extra field on {name}");
        // DOS time 00:00:00, date 1980-01-01.
        assert_eq!(
            (u16_at(local + 10), u16_at(local + 12)),
            (0, (1 << 5) | 1),
            "{name}"
        );
        at += 46 + name_len + extra_len + comment_len;
    }
}

#[test]
fn code_sha256_is_base64_of_the_raw_digest() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let (bytes, summary) = zip_of(tree.path(), &ZipOptions::default());
    let digest = Sha256::digest(&bytes);
    assert_eq!(
        summary.code_sha256,
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(summary.sha256_hex, hex);
    assert_eq!(summary.zipped_bytes, bytes.len() as u64);
}

#[test]
fn python_zipfile_lists_the_layer_layout() {
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir_all(tree.path().join("python")).unwrap();
    fs::write(tree.path().join("python/x.py"), b"x = 1\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("layer.zip");
    write_zip(tree.path(), &dest, &ZipOptions::default()).unwrap();

    let mut archive = zip::ZipArchive::new(fs::File::open(&dest).unwrap()).unwrap();
    assert_eq!(archive.len(), 1);
    assert_eq!(archive.by_index(0).unwrap().name().unwrap(), "python/x.py");

    let Ok(output) = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-l"])
        .arg(&dest)
        .output()
    else {
        eprintln!("python3 not found: skipping the python check");
        return;
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = String::from_utf8_lossy(&output.stdout);
    assert!(listing.contains("python/x.py"), "{listing}");
    assert!(listing.contains("1980-01-01 00:00:00"), "{listing}");
    let test = std::process::Command::new("python3")
        .args(["-m", "zipfile", "-t"])
        .arg(&dest)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}",
        String::from_utf8_lossy(&test.stderr)
    );
}

#[test]
fn source_date_epoch_sets_the_timestamp() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let (default_bytes, default_summary) = zip_of(tree.path(), &ZipOptions::default());
    let options = ZipOptions {
        source_date_epoch: Some(1_700_000_001),
        ..ZipOptions::default()
    };
    let (bytes, summary) = zip_of(tree.path(), &options);
    assert_ne!(summary.code_sha256, default_summary.code_sha256);
    assert_eq!(bytes.len(), default_bytes.len());
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let time = archive.by_index(0).unwrap().last_modified().unwrap();
    assert_eq!(
        (
            time.year(),
            time.month(),
            time.day(),
            time.hour(),
            time.minute(),
            time.second()
        ),
        (2023, 11, 14, 22, 13, 20)
    );
    // Before 1980: the default.
    let early = ZipOptions {
        source_date_epoch: Some(1000),
        ..ZipOptions::default()
    };
    assert_eq!(zip_of(tree.path(), &early).0, default_bytes);
}

#[test]
fn a_failure_mid_write_leaves_the_final_path_untouched() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let entries = collect_entries(tree.path()).unwrap();
    // A file vanishes after it was listed: the write fails part-way through.
    fs::remove_file(tree.path().join("python/pkg/sub/deep.py")).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("layer.zip");
    let err = write_zip_entries(&entries, &dest, &ZipOptions::default()).unwrap_err();
    assert!(format!("{err:#}").contains("deep.py"), "{err:#}");
    assert!(!dest.exists());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a temporary file was left"
    );

    fs::write(&dest, b"previous layer").unwrap();
    write_zip_entries(&entries, &dest, &ZipOptions::default()).unwrap_err();
    assert_eq!(fs::read(&dest).unwrap(), b"previous layer");
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn big_files_are_compressed_in_chunks_and_still_deterministic() {
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir_all(tree.path().join("python")).unwrap();
    let big: Vec<u8> = (0..40u32 << 20)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect();
    fs::write(tree.path().join("python/big.so"), &big).unwrap();
    fs::write(tree.path().join("python/small.py"), b"s").unwrap();
    let (first, summary) = zip_of(tree.path(), &ZipOptions::default());
    let (second, _) = zip_of(
        tree.path(),
        &ZipOptions {
            threads: 1,
            ..ZipOptions::default()
        },
    );
    assert!(first == second);
    assert_eq!(summary.unzipped_bytes, big.len() as u64 + 1);
    let mut archive = zip::ZipArchive::new(Cursor::new(first)).unwrap();
    let mut content = Vec::new();
    archive
        .by_name("python/big.so")
        .unwrap()
        .read_to_end(&mut content)
        .unwrap();
    assert!(content == big);
}

#[test]
fn a_full_window_of_waiting_entries_neither_stalls_nor_reorders() {
    // Incompressible files worth more than the 16 MiB window of finished entries, behind a
    // slow first file, so workers must wait for room while the writer catches up.
    let tree = tempfile::tempdir().unwrap();
    fs::create_dir_all(tree.path().join("python")).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..6 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    fs::write(tree.path().join("python/a_first.bin"), &noise).unwrap();
    for i in 0..6 {
        let file = tree.path().join(format!("python/b{i}.bin"));
        fs::write(file, &noise[i << 10..(3 << 20) + (i << 10)]).unwrap();
    }
    for i in 0..50 {
        fs::write(
            tree.path().join(format!("python/c{i:02}.py")),
            format!("x = {i}\n"),
        )
        .unwrap();
    }
    let (default_bytes, summary) = zip_of(tree.path(), &ZipOptions::default());
    assert_eq!(summary.files, 57);
    let (three_threads, _) = zip_of(
        tree.path(),
        &ZipOptions {
            threads: 3,
            ..ZipOptions::default()
        },
    );
    assert!(three_threads == default_bytes, "3 threads changed the zip");
    let mut archive = zip::ZipArchive::new(Cursor::new(default_bytes)).unwrap();
    let names: Vec<String> = (0..archive.len())
        .map(|i| archive.by_index(i).unwrap().name().unwrap().to_string())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}

#[test]
fn symlinks_are_zipped_as_links_when_kept() {
    let tar = Tar::new()
        .file("python/lib/libz.so.1", 0o755, b"ELF")
        .symlink("python/lib/libz.so", "libz.so.1")
        .bytes();
    let s = Scratch::new();
    s.extract(tar, &Selection::everything().with_symlinks(true))
        .unwrap();
    let (bytes, summary) = zip_of(&s.out(), &ZipOptions::default());
    assert_eq!(summary.files, 2);
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut link = archive.by_name("python/lib/libz.so").unwrap();
    assert!(link.is_symlink());
    let mut target = String::new();
    link.read_to_string(&mut target).unwrap();
    assert_eq!(target, "libz.so.1");
}

// ---------------------------------------------------------------- unzip

fn write_raw_zip(path: &Path, entries: &[(&str, u32, &[u8])]) {
    let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
    for (name, mode, data) in entries {
        let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
        if mode & 0o170000 == 0o120000 {
            zip.add_symlink(*name, std::str::from_utf8(data).unwrap(), options)
                .unwrap();
        } else {
            zip.start_file(*name, options).unwrap();
            zip.write_all(data).unwrap();
        }
    }
    zip.finish().unwrap();
}

#[test]
fn unzip_then_rezip_gives_the_same_zip_as_the_tree() {
    let tree = tempfile::tempdir().unwrap();
    sample_tree(tree.path());
    let scratch = tempfile::tempdir().unwrap();
    // What `zip -r layer.zip python/` makes: mtimes, directory entries, odd modes.
    let user_zip = scratch.path().join("user.zip");
    write_raw_zip(
        &user_zip,
        &[
            ("python/x.py", 0o600, b"print('x')\n"),
            ("python/pkg/mod.so", 0o4755, &[7u8; 100_000]),
            ("python/pkg/__init__.py", 0o644, b""),
            ("python/pkg/sub/deep.py", 0o644, &b"deep = 1\n".repeat(1000)),
            ("python/a.txt", 0o664, b"a"),
        ],
    );
    let out = scratch.path().join("out");
    let summary = unzip(&user_zip, &out, false).unwrap();
    assert_eq!(summary.files, 5);
    assert_eq!(mode(&out.join("python/pkg/mod.so")), 0o755);
    assert_eq!(mode(&out.join("python/x.py")), 0o644);
    assert_eq!(
        zip_of(&out, &ZipOptions::default()).0,
        zip_of(tree.path(), &ZipOptions::default()).0
    );
}

#[test]
fn unzip_rejects_hostile_entries() {
    let cases: [(&str, u32, &[u8], &str); 3] = [
        ("../evil", 0o644, b"x", "../evil"),
        ("/tmp/abs-evil", 0o644, b"x", "/tmp/abs-evil"),
        ("python/passwd", 0o120777, b"/etc/passwd", "python/passwd"),
    ];
    for (name, mode, data, named) in cases {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("user.zip");
        write_raw_zip(&path, &[(name, mode, data)]);
        let out = scratch.path().join("out");
        let err = unzip(&path, &out, true).unwrap_err();
        assert!(err.to_string().contains(named), "{name}: {err}");
        assert_eq!(
            fs::read_dir(scratch.path()).unwrap().count(),
            2,
            "{name}: wrote outside"
        );
        assert!(files_below(&out).is_empty(), "{name}");
    }
    assert!(!Path::new("/tmp/abs-evil").exists());
}
