//! Artifacts: the tar stream of the build's artifact root → CodeBuild's artifact selection → safe
//! extraction on the host → a deterministic zip with the hashes Lambda compares.
//!
//! - [`select`] decides, from `files`/`exclude-paths`/`discard-paths`, whether an entry is in the
//!   artifact and where it lands;
//! - [`extract`] streams a tar entry by entry into a directory, applying a [`Selection`];
//! - [`unzip`] does the same for a zip the buildspec made itself (`zip -r layer.zip python/`);
//! - [`tree`] is the one place that writes into the destination (path checks, modes, links);
//! - [`zip`] writes the deterministic zip and its sha256 / `CodeSha256`.

pub mod extract;
pub mod select;
pub mod tree;
pub mod unzip;
pub mod zip;

pub use extract::extract_tar;
pub use select::{Selection, SelectionError};
pub use tree::{ExtractError, ExtractSummary};
pub use unzip::unzip;
pub use zip::{write_zip, ZipOptions, ZipSummary};
