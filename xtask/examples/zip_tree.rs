//! Benchmark helper (scripts/bench.sh): runs the tool's deterministic zip writer alone on a tree.
//!
//!     cargo run --example zip_tree -- DIR DEST.zip [THREADS [PREVIOUS.zip]]
//!
//! Writes DEST.zip and its content listing beside it, as a build does. With PREVIOUS.zip (a zip
//! this helper wrote), the unchanged files' compressed bytes are copied from it, as in a rebuild.
//! Prints one JSON line: seconds, files, unzipped and zipped bytes, files copied.
use std::path::{Path, PathBuf};
use std::time::Instant;

use xtask::artifacts::zip::{hash_file, listing_path, Reuse};
use xtask::artifacts::{digest, write_zip, ZipOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(dest)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: zip_tree DIR DEST.zip [THREADS [PREVIOUS.zip]]");
    };
    let threads = match args.next() {
        Some(t) => t.to_string_lossy().parse()?,
        None => 2,
    };
    let reuse = match args.next() {
        Some(previous) => Some(previous_zip(Path::new(&previous))?),
        None => None,
    };
    let options = ZipOptions {
        source_date_epoch: None,
        threads,
        reuse,
    };
    let started = Instant::now();
    let summary = write_zip(&PathBuf::from(dir), &PathBuf::from(&dest), &options)?;
    let seconds = started.elapsed().as_secs_f64();
    std::fs::write(listing_path(Path::new(&dest)), &summary.listing)?;
    println!(
        "{{\"seconds\": {seconds:.3}, \"threads\": {threads}, \"files\": {}, \"unzipped_bytes\": {}, \"zipped_bytes\": {}, \"reused_files\": {}}}",
        summary.files, summary.unzipped_bytes, summary.zipped_bytes, summary.reused_files
    );
    Ok(())
}

/// A zip this helper wrote, with the listing beside it taken as it is (a build checks both
/// against the manifest instead).
fn previous_zip(zip: &Path) -> anyhow::Result<Reuse> {
    let listing = std::fs::read(listing_path(zip))?;
    let (zip_sha256, _, zip_bytes) = hash_file(zip)?;
    Reuse::load(
        zip,
        (&zip_sha256, zip_bytes),
        &digest::listing_sha256(&listing),
    )
    .ok_or_else(|| anyhow::anyhow!("{} has no usable content listing", zip.display()))
}
