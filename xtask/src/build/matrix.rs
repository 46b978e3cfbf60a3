//! `build-layer --matrix` / `--cells`: the same pipeline for every cell (a runtime on an
//! architecture), each its own verified zip and manifest named after the cell, several cells at a
//! time up to a bound that fits the machine. One failing cell does not hide the others: every
//! cell's result is in the table at the end.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
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

/// Builds every cell, `jobs` at a time (with `--remote`: as one CodeBuild batch build). After a signal no cell starts: the running ones stop
/// (each listens for it) and the others are reported interrupted before they started.
pub async fn build(flags: &BuildLayer, cells: Vec<Cell>, jobs: usize) -> Vec<CellResult> {
    if flags.remote {
        return super::remote_cells::build(flags, cells, jobs).await;
    }
    let signal = Arc::new(AtomicU8::new(0));
    let listener = {
        let signal = signal.clone();
        tokio::spawn(async move { signal.store(super::interrupted().await, Ordering::SeqCst) })
    };
    let runs = cells.into_iter().map(|cell| {
        let flags = cell_flags(flags, &cell);
        let signal = signal.clone();
        async move {
            let started = Instant::now();
            let outcome = match signal.load(Ordering::SeqCst) {
                0 => super::build(flags).await.map_err(|e| format!("{e:#}")),
                code => Ok(Summary::interrupted(code, Duration::ZERO)),
            };
            CellResult {
                cell,
                outcome,
                took: started.elapsed(),
            }
        }
    });
    let results = futures_util::stream::iter(runs)
        .buffered(jobs.max(1))
        .collect()
        .await;
    listener.abort();
    results
}

/// How one architecture's multi-runtime layer went.
pub struct CombinedResult {
    pub arch: String,
    pub runtimes: Vec<String>,
    pub outcome: Result<super::combine::Combined, String>,
}

/// `--multi-runtime`: per architecture, the cells' layers combined into one. An architecture with
/// a failed cell, or with one runtime only, is not combined (an error of its own).
pub fn combine_all(
    out_dir: &std::path::Path,
    layer_name: Option<&str>,
    results: &[CellResult],
) -> Vec<CombinedResult> {
    let mut arches: Vec<String> = results.iter().map(|r| r.cell.arch.clone()).collect();
    arches.dedup();
    arches.sort();
    arches.dedup();
    let mut combined = Vec::new();
    for arch in arches {
        let of_arch: Vec<&CellResult> = results.iter().filter(|r| r.cell.arch == arch).collect();
        let runtimes = of_arch
            .iter()
            .map(|r| r.cell.runtime.id.to_string())
            .collect();
        let outcome = built_cells(&of_arch).and_then(|cells| {
            let name = layer_name.ok_or("the layer's name does not resolve")?;
            super::combine::combine(out_dir, name, &arch, &cells).map_err(|e| format!("{e:#}"))
        });
        let outcome = match (outcome, layer_name) {
            (Err(e), Some(name)) => match super::combine::remove_stale(out_dir, name, &arch) {
                Ok(()) => Err(e),
                Err(removing) => Err(format!("{e}; {removing:#}")),
            },
            (outcome, _) => outcome,
        };
        combined.push(CombinedResult {
            arch,
            runtimes,
            outcome,
        });
    }
    combined
}

/// The zips and manifests of `results`, or why they cannot be combined.
fn built_cells(results: &[&CellResult]) -> Result<Vec<super::combine::BuiltCell>, String> {
    results
        .iter()
        .map(|r| {
            let summary = r.outcome.as_ref().map_err(|_| not_built(r))?;
            let layer = summary
                .layer
                .as_ref()
                .filter(|_| summary.succeeded)
                .ok_or_else(|| not_built(r))?;
            Ok(super::combine::BuiltCell {
                runtime: r.cell.runtime,
                manifest_path: layer.manifest.clone().into(),
            })
        })
        .collect()
}

fn not_built(result: &CellResult) -> String {
    format!(
        "not combined: the cell {} did not build a layer",
        result.cell.id()
    )
}

/// The flags of one cell: its runtime and architecture (its image's `{python}`, `{arch}` … are
/// filled in from them), its own log prefix and file names.
pub(super) fn cell_flags(flags: &BuildLayer, cell: &Cell) -> BuildLayer {
    BuildLayer {
        runtime: Some(cell.runtime.id.to_string()),
        arch: Some(cell.arch.clone()),
        cell: Some(cell.id()),
        matrix: false,
        cells: Vec::new(),
        multi_runtime: false,
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

/// The multi-runtime layers, after the cells' table.
pub fn print_combined(combined: &[CombinedResult]) {
    let mut out = std::io::stdout().lock();
    for c in combined {
        let runtimes = c.runtimes.join("+");
        let _ = match &c.outcome {
            Ok(layer) => {
                for warning in &layer.manifest.verification.warnings {
                    let _ = writeln!(out, "multi-runtime {}: warning: {warning}", c.arch);
                }
                writeln!(
                    out,
                    "multi-runtime {} ({runtimes}): {} ({} bytes, sha256 {})",
                    c.arch,
                    layer.zip.display(),
                    layer.manifest.zipped_bytes,
                    layer.manifest.sha256
                )
            }
            Err(e) => writeln!(out, "multi-runtime {} ({runtimes}): FAILED: {e}", c.arch),
        };
    }
}

/// The multi-runtime layers as JSON.
pub fn combined_json(combined: &[CombinedResult]) -> Value {
    let layers: Vec<Value> = combined
        .iter()
        .map(|c| match &c.outcome {
            Ok(layer) => json!({
                "architecture": c.arch,
                "compatible_runtimes": c.runtimes,
                "status": "SUCCEEDED",
                "zip": layer.zip.display().to_string(),
                "zipped_bytes": layer.manifest.zipped_bytes,
                "unzipped_bytes": layer.manifest.unzipped_bytes,
                "sha256": layer.manifest.sha256,
            }),
            Err(e) => json!({
                "architecture": c.arch,
                "compatible_runtimes": c.runtimes,
                "status": "FAILED",
                "error": e,
            }),
        })
        .collect();
    Value::Array(layers)
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
