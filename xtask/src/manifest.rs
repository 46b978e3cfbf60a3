//! The build manifest: the one contract between `build-layer` (writes it beside the zip) and
//! `deploy` (reads it). Plain, versioned JSON.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// Bumped when a field changes meaning; readers refuse versions they do not know.
pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    pub layer_name: String,
    /// The zip's file name, relative to the manifest's directory.
    pub zip: String,
    /// Lower-case hex SHA-256 of the zip bytes.
    pub sha256: String,
    /// Base64 of the raw SHA-256 digest: what Lambda reports as CodeSha256.
    pub code_sha256: String,
    /// The layer's content digest (paths, kinds and bytes; see `artifacts::digest`): equal for
    /// the same layer whatever zip holds it. Absent in manifests written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
    pub zipped_bytes: u64,
    pub unzipped_bytes: u64,
    pub file_count: u64,
    pub compatible_runtimes: Vec<String>,
    pub architecture: String,
    pub image: String,
    pub image_id: String,
    /// Hash of everything that determines the build's output (see `build::key`).
    pub build_key: String,
    /// The source's git HEAD, when the source is a git checkout.
    pub git_revision: Option<String>,
    /// When the build finished, RFC 3339 UTC.
    pub built_at: String,
    /// Problems found after the build (size limits); deploy refuses a layer with any error.
    pub verification: Verification,
    /// Where the build ran when it ran remotely (`build-layer --remote`); absent for a local one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_by: Option<RemoteBuild>,
    /// The zip writer that made the zip (`artifacts::zip::WRITER`): a rebuild copies this zip's
    /// compressed entries only when it is the same one. Absent in manifests written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip_writer: Option<String>,
}

/// A build CodeBuild ran: its project, its ARN and the image it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBuild {
    pub project: String,
    pub build_arn: String,
    pub image: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub passed: bool,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

impl Manifest {
    /// The zip this manifest describes: the file `zip` names, beside the manifest. A name that is
    /// not a plain file name (a path, `..`) names nothing.
    pub fn zip_beside(&self, manifest_path: &Path) -> Option<PathBuf> {
        let plain = !self.zip.is_empty()
            && !self.zip.contains(['/', '\\'])
            && self.zip != "."
            && self.zip != "..";
        plain.then(|| {
            manifest_path
                .parent()
                .unwrap_or(Path::new("."))
                .join(&self.zip)
        })
    }

    /// The zip beside the manifest, checked to be the bytes it describes (size and SHA-256):
    /// the one answer to "is this still the built layer" for build's no-op check and deploy.
    pub fn check_zip(&self, manifest_path: &Path) -> anyhow::Result<PathBuf> {
        let Some(zip) = self.zip_beside(manifest_path).filter(|z| z.is_file()) else {
            anyhow::bail!(
                "the layer zip {} named by {} is missing: run `cargo xtask build-layer`",
                self.zip,
                manifest_path.display()
            );
        };
        let (sha256, code_sha256, size) = crate::artifacts::zip::hash_file(&zip)?;
        if sha256 != self.sha256 || size != self.zipped_bytes {
            anyhow::bail!(
                "the layer zip {} no longer matches its manifest (stale build output): run \
                 `cargo xtask build-layer`",
                zip.display()
            );
        }
        if code_sha256 != self.code_sha256 {
            anyhow::bail!(
                "the build manifest {} is corrupt (its code_sha256 does not match its sha256): \
                 rebuild with `cargo xtask build-layer --force`",
                manifest_path.display()
            );
        }
        Ok(zip)
    }

    /// Whether [`Manifest::check_zip`] passes.
    pub fn describes_zip_beside(&self, manifest_path: &Path) -> bool {
        self.check_zip(manifest_path).is_ok()
    }

    pub fn read(path: &Path) -> anyhow::Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the build manifest {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text).with_context(|| {
            format!(
                "the build manifest {} is corrupt (rebuild with `cargo xtask build-layer --force`)",
                path.display()
            )
        })?;
        if manifest.manifest_version != MANIFEST_VERSION {
            anyhow::bail!(
                "the build manifest {} has version {}, this tool reads version {MANIFEST_VERSION}",
                path.display(),
                manifest.manifest_version
            );
        }
        Ok(manifest)
    }

    /// Writes through a temporary file and a rename, so readers never see half a manifest.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let mut json = serde_json::to_vec_pretty(self)?;
        json.push(b'\n');
        crate::util::write_build_output(path, &json)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            manifest_version: MANIFEST_VERSION,
            layer_name: "python-deps".into(),
            zip: "python-deps.zip".into(),
            sha256: "00".repeat(32),
            code_sha256: "AAAA".into(),
            content_sha256: Some("11".repeat(32)),
            zip_writer: None,
            zipped_bytes: 1,
            unzipped_bytes: 2,
            file_count: 3,
            compatible_runtimes: vec!["python3.9".into()],
            architecture: "x86_64".into(),
            image: "img".into(),
            image_id: "sha256:1".into(),
            build_key: "k".into(),
            git_revision: None,
            built_at: "2026-11-26T00:00:00Z".into(),
            verification: Verification {
                passed: true,
                ..Default::default()
            },
            built_by: None,
        }
    }

    #[test]
    fn round_trips_and_refuses_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        sample().write(&path).unwrap();
        assert_eq!(Manifest::read(&path).unwrap(), sample());
        std::fs::write(&path, "{ not json").unwrap();
        let err = Manifest::read(&path).unwrap_err();
        assert!(format!("{err:#}").contains("corrupt"), "{err:#}");
    }
}
