//! Artifacts: the tar stream of the build's artifact root → CodeBuild's artifact selection → safe
//! extraction on the host → a deterministic zip with the hashes Lambda compares.
//!
//! - [`select`] decides, from `files`/`exclude-paths`/`discard-paths`, whether an entry is in the
//!   artifact and where it lands;
//! - [`extract`] streams a tar entry by entry into a directory, applying a [`Selection`];
//! - [`unzip`] does the same for a zip the buildspec made itself (`zip -r layer.zip python/`);
//! - [`tree`] is the one place that writes into the destination (path checks, modes, links);
//! - [`zip`] writes the deterministic zip and its sha256 / `CodeSha256`;
//! - [`digest`] is the layer's content digest, whatever zip holds it.

pub mod digest;
pub mod extract;
pub mod select;
pub mod tree;
pub mod unzip;
pub mod zip;

pub use extract::{extract_tar, extract_tar_within};
pub use select::{Selection, SelectionError};
pub use tree::{ExtractError, ExtractSummary, Limits};
pub use unzip::{unzip, unzip_within};
pub use zip::{write_zip, ZipOptions, ZipSummary};

/// Whether `id` is what CodeBuild accepts as an artifact identifier: letters, digits and `_`
/// (it names a directory and a zip on the host, so nothing else may pass).
pub fn is_identifier(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// [`is_identifier`], as an error naming the identifier.
pub fn check_identifier(id: &str) -> anyhow::Result<()> {
    if is_identifier(id) {
        Ok(())
    } else {
        anyhow::bail!(
            "`{id}` is not a valid artifact identifier: use letters, digits and underscores"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_letters_digits_and_underscores() {
        assert!(is_identifier("docs_2"));
        for bad in ["", "/home/u/.ssh", "../x", "a-b", "a.b", "a b"] {
            assert!(!is_identifier(bad), "{bad}");
        }
    }
}
