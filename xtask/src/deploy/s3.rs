//! The S3 side of a deploy: is the bucket there, is the zip already under its content-addressed
//! key, and the upload (one PutObject, or a multipart upload streamed from the file in parts,
//! aborted when anything fails). Retries of transient errors are the SDK's retry config.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::aws::{self, Failure};
use crate::progress::Progress;

/// Files up to this size go up in one PutObject; larger ones in parts of this size.
pub const PART_SIZE: u64 = 16 * 1024 * 1024;

/// The object metadata key holding the zip's hex SHA-256 (multipart checksums are composite).
pub const SHA256_METADATA: &str = "sha256";

/// The zip as S3 should hold it.
#[derive(Debug, Clone)]
pub struct Object<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub size: u64,
    pub sha256_hex: &'a str,
    pub code_sha256: &'a str,
}

impl Object<'_> {
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

/// How the zip got to S3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uploaded {
    pub bytes: u64,
    pub parts: u32,
}

/// Fails with one line when the bucket is missing, elsewhere, or not ours to use.
pub async fn check_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> anyhow::Result<()> {
    match s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(error) => {
            let failure = match aws::classify(&error) {
                // HeadBucket has no body: a 404 is the bucket.
                Failure::NotFound => Failure::NoSuchBucket,
                other => other,
            };
            Err(aws::explain_failure(
                &failure,
                "s3:ListBucket (HeadBucket)",
                &format!("s3://{bucket}"),
            ))
        }
    }
}

/// Whether the object is already there with this content, proven: S3's own SHA-256 checksum of
/// it (whole-object, or the composite of a multipart upload's parts, recomputed here from `zip`)
/// equals ours. Size or metadata alone prove nothing (anyone who can write the key sets them):
/// an object without a checksum is uploaded again.
pub async fn exists(
    s3: &aws_sdk_s3::Client,
    object: &Object<'_>,
    zip: &Path,
) -> anyhow::Result<bool> {
    let head = s3
        .head_object()
        .bucket(object.bucket)
        .key(object.key)
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await;
    let head = match head {
        Ok(head) => head,
        Err(error) => {
            return match aws::classify(&error) {
                Failure::NotFound => Ok(false),
                failure => Err(aws::explain_failure(
                    &failure,
                    "s3:GetObject (HeadObject)",
                    &object.url(),
                )),
            }
        }
    };
    let size = head.content_length().and_then(|n| u64::try_from(n).ok());
    proven_equal(size, head.checksum_sha256(), object, zip)
}

/// Whether an object of `size` whose SHA-256 checksum S3 reports as `checksum` holds `zip`.
fn proven_equal(
    size: Option<u64>,
    checksum: Option<&str>,
    object: &Object<'_>,
    zip: &Path,
) -> anyhow::Result<bool> {
    if size != Some(object.size) {
        return Ok(false);
    }
    Ok(match checksum {
        Some(whole) if !whole.contains('-') => whole == object.code_sha256,
        Some(composite) => composite == composite_checksum(zip)?,
        None => false,
    })
}

/// S3's checksum of a multipart upload of `path` in [`PART_SIZE`] parts: the SHA-256 of the
/// parts' SHA-256 digests, base64, then `-<parts>`.
fn composite_checksum(path: &Path) -> anyhow::Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut digests = Sha256::new();
    let mut parts = 0u32;
    loop {
        let mut part = Sha256::new();
        let copied = std::io::copy(&mut (&mut file).take(PART_SIZE), &mut HashWriter(&mut part))
            .with_context(|| format!("cannot read {}", path.display()))?;
        if copied == 0 {
            break;
        }
        digests.update(part.finalize());
        parts += 1;
    }
    let base64 = base64::engine::general_purpose::STANDARD.encode(digests.finalize());
    Ok(format!("{base64}-{parts}"))
}

/// Feeds what is written into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Uploads the file; multipart above [`PART_SIZE`]. What is sent is hashed as it is read and must
/// be the zip the manifest describes (a file swapped in since is refused, never published).
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    path: &Path,
    object: &Object<'_>,
    progress: &Progress,
) -> anyhow::Result<Uploaded> {
    if object.size <= PART_SIZE {
        let bytes = super::read_verified(path, object.sha256_hex)?;
        progress.update(
            &format!("uploading {}", object.url()),
            Some(0),
            Some(object.size),
        );
        s3.put_object()
            .bucket(object.bucket)
            .key(object.key)
            .metadata(SHA256_METADATA, object.sha256_hex)
            .checksum_sha256(object.code_sha256)
            .content_type("application/zip")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| aws::explain(&e, "s3:PutObject", &object.url()))?;
        progress.update(
            &format!("uploading {}", object.url()),
            Some(object.size),
            Some(object.size),
        );
        progress.finish();
        return Ok(Uploaded {
            bytes: object.size,
            parts: 1,
        });
    }

    let created = s3
        .create_multipart_upload()
        .bucket(object.bucket)
        .key(object.key)
        .metadata(SHA256_METADATA, object.sha256_hex)
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .content_type("application/zip")
        .send()
        .await
        .map_err(|e| aws::explain(&e, "s3:PutObject (CreateMultipartUpload)", &object.url()))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| {
            anyhow::anyhow!(
                "CreateMultipartUpload for {} returned no upload id",
                object.url()
            )
        })?
        .to_string();
    let result = tokio::select! {
        result = upload_parts(s3, path, object, &upload_id, progress) => result,
        _ = tokio::signal::ctrl_c() => Err(anyhow::Error::new(crate::util::Interrupted)),
    };
    progress.finish();
    if result.is_err() {
        // Best effort: the bucket's lifecycle rule cleans up what this cannot.
        if let Err(e) = s3
            .abort_multipart_upload()
            .bucket(object.bucket)
            .key(object.key)
            .upload_id(&upload_id)
            .send()
            .await
        {
            let why = aws::explain(&e, "s3:AbortMultipartUpload", &object.url());
            eprintln!("warning: could not abort the multipart upload {upload_id}: {why}");
        }
    }
    result
}

async fn upload_parts(
    s3: &aws_sdk_s3::Client,
    path: &Path,
    object: &Object<'_>,
    upload_id: &str,
    progress: &Progress,
) -> anyhow::Result<Uploaded> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let parts_total = object.size.div_ceil(PART_SIZE);
    let mut completed = Vec::new();
    let mut sent = 0u64;
    let mut whole = Sha256::new();
    for part_number in 1.. {
        let mut buffer = Vec::with_capacity(usize::try_from(PART_SIZE).unwrap_or(16 << 20));
        (&mut file)
            .take(PART_SIZE)
            .read_to_end(&mut buffer)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if buffer.is_empty() {
            break;
        }
        let length = buffer.len() as u64;
        whole.update(&buffer);
        let checksum = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&buffer));
        progress.update(
            &format!(
                "uploading {} (part {part_number}/{parts_total})",
                object.url()
            ),
            Some(sent),
            Some(object.size),
        );
        let part = s3
            .upload_part()
            .bucket(object.bucket)
            .key(object.key)
            .upload_id(upload_id)
            .part_number(part_number)
            .checksum_sha256(&checksum)
            .body(ByteStream::from(buffer))
            .send()
            .await
            .map_err(|e| aws::explain(&e, "s3:PutObject (UploadPart)", &object.url()))?;
        sent += length;
        completed.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(part.e_tag().map(str::to_string))
                .checksum_sha256(part.checksum_sha256().unwrap_or(&checksum))
                .build(),
        );
    }
    let streamed = crate::util::hex(&whole.finalize());
    if sent != object.size || streamed != object.sha256_hex {
        anyhow::bail!(
            "{} changed while it was uploaded ({sent} bytes with SHA-256 {streamed}; the manifest says {} bytes, {}): the upload was abandoned; rebuild with `cargo xtask build-layer`",
            path.display(),
            object.size,
            object.sha256_hex
        );
    }
    let parts = u32::try_from(completed.len()).unwrap_or(u32::MAX);
    s3.complete_multipart_upload()
        .bucket(object.bucket)
        .key(object.key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(completed))
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws::explain(&e, "s3:PutObject (CompleteMultipartUpload)", &object.url()))?;
    Ok(Uploaded { bytes: sent, parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_matching_checksum_proves_an_object_holds_the_zip() {
        let dir = tempfile::tempdir().unwrap();
        let zip = dir.path().join("layer.zip");
        let content = vec![7u8; (PART_SIZE + 10) as usize];
        std::fs::write(&zip, &content).unwrap();
        let sha = Sha256::digest(&content);
        let code_sha256 = base64::engine::general_purpose::STANDARD.encode(sha);
        let hex = crate::util::hex(&sha);
        let object = Object {
            bucket: "b",
            key: "k",
            size: content.len() as u64,
            sha256_hex: &hex,
            code_sha256: &code_sha256,
        };
        let size = Some(object.size);
        assert!(proven_equal(size, Some(&code_sha256), &object, &zip).unwrap());
        assert!(!proven_equal(size, Some("AAAA"), &object, &zip).unwrap());
        // Size and metadata prove nothing: without S3's checksum the zip is uploaded again.
        assert!(!proven_equal(size, None, &object, &zip).unwrap());
        assert!(!proven_equal(Some(1), Some(&code_sha256), &object, &zip).unwrap());
        // A multipart upload's composite checksum, recomputed from the parts.
        let parts = [
            &content[..PART_SIZE as usize],
            &content[PART_SIZE as usize..],
        ];
        let mut digests = Sha256::new();
        for part in parts {
            digests.update(Sha256::digest(part));
        }
        let composite = format!(
            "{}-2",
            base64::engine::general_purpose::STANDARD.encode(digests.finalize())
        );
        assert!(proven_equal(size, Some(&composite), &object, &zip).unwrap());
        assert!(!proven_equal(size, Some("AAAA-2"), &object, &zip).unwrap());
    }
}
