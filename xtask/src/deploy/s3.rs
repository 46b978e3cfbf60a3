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

/// Whether the object is already there with this content: same size, and the same SHA-256 where
/// S3 knows one (our metadata, or a whole-object ChecksumSHA256).
pub async fn exists(s3: &aws_sdk_s3::Client, object: &Object<'_>) -> anyhow::Result<bool> {
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
    let same_size = head.content_length().and_then(|n| u64::try_from(n).ok()) == Some(object.size);
    let metadata_agrees = head
        .metadata()
        .and_then(|m| m.get(SHA256_METADATA))
        .is_none_or(|hex| hex.eq_ignore_ascii_case(object.sha256_hex));
    let checksum_agrees = head
        .checksum_sha256()
        .filter(|c| !c.contains('-'))
        .is_none_or(|c| c == object.code_sha256);
    Ok(same_size && metadata_agrees && checksum_agrees)
}

/// Uploads the file; multipart above [`PART_SIZE`].
pub async fn upload(
    s3: &aws_sdk_s3::Client,
    path: &Path,
    object: &Object<'_>,
    progress: &Progress,
) -> anyhow::Result<Uploaded> {
    if object.size <= PART_SIZE {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
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
    let result = upload_parts(s3, path, object, &upload_id, progress).await;
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
    if sent != object.size {
        anyhow::bail!(
            "{} changed while it was uploaded ({sent} bytes read, {} expected): rebuild with `cargo xtask build-layer`",
            path.display(),
            object.size
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
