//! Benchmark helper (scripts/bench.sh): runs the tool's deterministic zip writer alone on a tree.
//!
//!     cargo run --example zip_tree -- DIR DEST.zip [THREADS [PREVIOUS.zip]]
//!
//! With PREVIOUS.zip, the unchanged files' compressed bytes are copied from it (a rebuild's zip).
//! Prints one JSON line: seconds, files, unzipped and zipped bytes.
use std::path::PathBuf;
use std::time::Instant;

use xtask::artifacts::{write_zip, ZipOptions};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), Some(dest)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: zip_tree DIR DEST.zip [THREADS [PREVIOUS.zip]]");
    };
    let threads = match args.next() {
        Some(t) => t.to_string_lossy().parse()?,
        None => 2,
    };
    let options = ZipOptions {
        source_date_epoch: None,
        threads,
        reuse: args.next().map(PathBuf::from),
    };
    let started = Instant::now();
    let summary = write_zip(&PathBuf::from(dir), &PathBuf::from(dest), &options)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{{\"seconds\": {seconds:.3}, \"threads\": {threads}, \"files\": {}, \"unzipped_bytes\": {}, \"zipped_bytes\": {}}}",
        summary.files, summary.unzipped_bytes, summary.zipped_bytes
    );
    Ok(())
}
