//! `build-layer --matrix` / `--cells`: the same pipeline for every cell (a runtime on an
//! architecture), each its own verified zip and manifest named after the cell, several cells at a
//! time up to a bound that fits the machine. One failing cell does not hide the others: every
//! cell's result is in the table at the end.

use std::io::Write as _;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::summary::Summary;
use super::BuildLayer;
use crate::layer::Cell;

/// How one cell went.
pub struct CellResult {
    pub cell: Cell,
    pub outcome: Result<Summary, String>,
    pub took: Duration,
}

/// Builds every cell, `jobs` at a time.
pub async fn build(flags: &BuildLayer, cells: Vec<Cell>, jobs: usize) -> Vec<CellResult> {
    let runs = cells.into_iter().map(|cell| {
        let flags = cell_flags(flags, &cell);
        async move {
            let started = Instant::now();
            let outcome = super::build(flags).await.map_err(|e| format!("{e:#}"));
            CellResult {
                cell,
                outcome,
                took: started.elapsed(),
            }
        }
    });
    futures_util::stream::iter(runs)
        .buffered(jobs.max(1))
        .collect()
        .await
}

/// The flags of one cell: its runtime and architecture (its image's `{python}`, `{arch}` … are
/// filled in from them), its own log prefix and file names.
fn cell_flags(flags: &BuildLayer, cell: &Cell) -> BuildLayer {
    BuildLayer {
        runtime: Some(cell.runtime.id.to_string()),
        arch: Some(cell.arch.clone()),
        cell: Some(cell.id()),
        matrix: false,
        cells: Vec::new(),
        ..flags.clone()
    }
}

/// How many cells build at once: one per two cores (a build keeps about two busy), at least one.
pub fn default_jobs() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / 2).max(1)
}

/// The exit status of a matrix: the first interruption's, else 1 when a cell failed, else 0.
pub fn exit_code(results: &[CellResult]) -> u8 {
    let codes = results.iter().map(|r| match &r.outcome {
        Ok(summary) => summary.exit_code(),
        Err(_) => 2,
    });
    let codes: Vec<u8> = codes.collect();
    if let Some(signal) = codes.iter().find(|c| **c >= 128) {
        return *signal;
    }
    u8::from(codes.iter().any(|c| *c != 0))
}

/// The table: cell, result, size, time, sha256.
pub fn print(results: &[CellResult]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>12} {:>8}  sha256",
        "cell", "result", "zip bytes", "time"
    );
    for r in results {
        let (status, bytes, sha) = match &r.outcome {
            Ok(s) => (
                if s.succeeded { "SUCCEEDED" } else { "FAILED" },
                s.layer
                    .as_ref()
                    .map_or(String::from("-"), |l| l.zipped_bytes.to_string()),
                s.layer
                    .as_ref()
                    .filter(|_| s.succeeded)
                    .map_or(String::from("-"), |l| l.sha256.clone()),
            ),
            Err(_) => ("ERROR", "-".to_string(), "-".to_string()),
        };
        let _ = writeln!(
            out,
            "{:<20} {:<10} {:>12} {:>7.1}s  {sha}",
            r.cell.id(),
            status,
            bytes,
            r.took.as_secs_f64()
        );
        if let Err(e) = &r.outcome {
            let _ = writeln!(out, "  error: {e}");
        }
        if let Ok(s) = &r.outcome {
            for error in &s.errors {
                let _ = writeln!(out, "  error: {error}");
            }
        }
    }
}

/// One JSON object: every cell's summary (or error), and the matrix's status.
pub fn to_json(results: &[CellResult]) -> Value {
    let cells: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut value = match &r.outcome {
                Ok(summary) => summary.to_json(),
                Err(e) => json!({"status": "ERROR", "error": e}),
            };
            value["cell"] = json!(r.cell.id());
            value["seconds"] = json!(r.took.as_secs_f64());
            value
        })
        .collect();
    json!({
        "status": if exit_code(results) == 0 { "SUCCEEDED" } else { "FAILED" },
        "cells": cells,
    })
}
