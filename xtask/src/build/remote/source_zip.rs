//! The source set a local build sends (a tar), as the zip CodeBuild's S3 source needs: the same
//! files, modes and links, in the same order, with one fixed timestamp, so the same source always
//! gives the same bytes and the same content-addressed key.

use std::io::{Cursor, Read as _, Write as _};

use anyhow::Context as _;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;

/// A source zip, in memory (the source tar it comes from is bounded and in memory too).
pub struct SourceZip {
    pub bytes: Vec<u8>,
    pub sha256_hex: String,
    /// What S3 reports as the object's SHA-256 checksum.
    pub sha256_base64: String,
}

/// The zip of the files and links in `tar`.
pub fn from_tar(tar: &[u8]) -> anyhow::Result<SourceZip> {
    let mut archive = tar::Archive::new(tar);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for entry in archive.entries().context("the source tar")? {
        let mut entry = entry.context("the source tar")?;
        let name = entry
            .path()
            .context("a source path")?
            .to_string_lossy()
            .to_string();
        let mode = entry.header().mode().unwrap_or(0o644);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default());
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let permissions = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
                zip.start_file(name.as_str(), options.unix_permissions(permissions))?;
                let mut content = Vec::new();
                entry.read_to_end(&mut content)?;
                zip.write_all(&content)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                zip.add_symlink(name.as_str(), target, options.unix_permissions(0o777))?;
            }
            _ => {}
        }
    }
    let bytes = zip.finish().context("the source zip")?.into_inner();
    let digest = Sha256::digest(&bytes);
    Ok(SourceZip {
        sha256_hex: crate::util::hex(&digest),
        sha256_base64: base64::engine::general_purpose::STANDARD.encode(digest),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str, u32)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, content, mode) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(*mode);
            header.set_cksum();
            builder
                .append_data(&mut header, name, content.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn the_same_source_gives_the_same_zip_with_its_files_and_modes() {
        let tar = tar_of(&[
            ("buildspec.yml", "version: 0.2", 0o644),
            ("run.sh", "x", 0o755),
        ]);
        let a = from_tar(&tar).unwrap();
        let b = from_tar(&tar).unwrap();
        assert_eq!(a.bytes, b.bytes);
        let mut archive = zip::ZipArchive::new(Cursor::new(a.bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        let script = archive.by_name("run.sh").unwrap();
        assert_eq!(script.unix_mode().map(|m| m & 0o777), Some(0o755));
    }
}
