//! Benchmark helper (scripts/bench.sh): runs the tool's safe tar extraction alone.
//!
//!     cargo run --example extract_tar -- ARCHIVE.tar DEST PATTERN...
//!
//! Prints one JSON line: seconds, files and bytes extracted.
use std::path::PathBuf;
use std::time::Instant;

use xtask::artifacts::{extract_tar, Selection};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(archive), Some(dest)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: extract_tar ARCHIVE.tar DEST PATTERN...");
    };
    let patterns: Vec<String> = args.collect();
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let selection = Selection::new(&patterns, &[], false)?;
    let reader = std::io::BufReader::new(std::fs::File::open(&archive)?);
    let started = Instant::now();
    let summary = extract_tar(reader, &PathBuf::from(dest), &selection)?;
    println!(
        "{{\"seconds\": {:.3}, \"files\": {}, \"bytes\": {}}}",
        started.elapsed().as_secs_f64(),
        summary.files,
        summary.bytes
    );
    Ok(())
}
