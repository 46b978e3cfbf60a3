//! `build-layer --remote --matrix` / `--cells`: every cell planned here as a single `--remote`
//! build is, then all of them run as one CodeBuild batch build (see `remote::batch`); each cell's
//! build is followed, and its artifact packaged and verified here, into the matrix's table. A
//! cell that is up to date is not sent; one that fails does not stop the others.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};

use super::execute::Outcome;
use super::matrix::CellResult;
use super::remote::batch::{self, Batch, BatchCell};
use super::remote::{self, ArtifactAt, CodeBuildExecutor};
use super::{Log, Masker, Plan, RemotePlan, Settings, Staging, Summary};
use crate::engine::Engine;
use crate::layer::Cell;

/// A cell that is built: its claimed plan (the out-dir lock held), its log and masker.
struct Pending {
    cell: Cell,
    plan: Plan,
    target: remote::RemoteTarget,
    import_test: Option<(Engine, u32)>,
    log: Log,
    masker: Masker,
    _lock: std::fs::File,
    started: Instant,
}

enum Prepared {
    UpToDate(Box<Summary>),
    Build(Box<Pending>),
}

/// Every cell, in order: the ones with nothing to do or that cannot be planned at once, the
/// others as one batch build.
pub async fn build(flags: &super::BuildLayer, cells: Vec<Cell>, jobs: usize) -> Vec<CellResult> {
    let order: Vec<String> = cells.iter().map(Cell::id).collect();
    let mut results = Vec::new();
    let mut pending = Vec::new();
    for cell in cells {
        let started = Instant::now();
        let outcome = match prepare(flags, &cell, started).await {
            Ok(Prepared::UpToDate(summary)) => Ok(*summary),
            Ok(Prepared::Build(p)) => {
                pending.push(*p);
                continue;
            }
            Err(e) => Err(e),
        };
        let took = started.elapsed();
        results.push(CellResult {
            cell,
            outcome,
            took,
        });
    }
    results.extend(run_batch(pending, jobs).await);
    results.sort_by_key(|r| order.iter().position(|id| *id == r.cell.id()));
    results
}

async fn prepare(
    flags: &super::BuildLayer,
    cell: &Cell,
    started: Instant,
) -> Result<Prepared, String> {
    let flags = super::matrix::cell_flags(flags, cell);
    let settings = Settings::resolve(&flags).map_err(|e| format!("{e:#}"))?;
    let (log, user, host, masker) = super::begin(&flags, &settings)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let mask = |e: anyhow::Error| masker.mask(&format!("{e:#}"));
    let RemotePlan {
        plan,
        target,
        import_test,
    } = super::plan_remote(&flags, &settings, user, host, &log)
        .await
        .map_err(mask)?;
    if let Some(summary) = super::up_to_date(&plan, &flags, &log, started) {
        return Ok(Prepared::UpToDate(Box::new(summary)));
    }
    let (lock, plan) = super::claim(plan).map_err(mask)?;
    Ok(Prepared::Build(Box::new(Pending {
        cell: cell.clone(),
        plan,
        target,
        import_test,
        log,
        masker,
        _lock: lock,
        started,
    })))
}

/// The cells as one batch: started, each cell's build handed to it as CodeBuild starts it.
/// After a signal the batch is stopped (all its builds, if it was started) and every cell that
/// had not finished is reported interrupted.
async fn run_batch(pending: Vec<Pending>, jobs: usize) -> Vec<CellResult> {
    let Some(first) = pending.first() else {
        return Vec::new();
    };
    if let Some(other) = pending.iter().find(|p| p.target != first.target) {
        let why = format!(
            "the cells resolve to different CodeBuild projects or buckets ({} and {}): a batch runs in one",
            first.target.project, other.target.project
        );
        return fail_all(&pending, &why);
    }
    let clients = match remote::Clients::new(&first.target).await {
        Ok(clients) => clients,
        Err(e) => return fail_all(&pending, &format!("{e:#}")),
    };
    let log = first.log.clone().for_cell(None);
    let executor = CodeBuildExecutor {
        clients: &clients,
        target: &first.target,
        log: &log,
        running: Default::default(),
    };
    let finished = Mutex::new(vec![None; pending.len()]);
    tokio::select! {
        () = start_and_follow(&executor, &pending, jobs, &finished) => {}
        code = super::interrupted() => {
            let batch = executor.running.lock().ok().and_then(|mut r| r.take());
            if let Some(id) = batch {
                log.line(&format!("interrupted: stopping the CodeBuild batch {id} (exit {code})"));
                batch::stop_batch(&executor, &id).await;
            }
            let mut finished = finished.lock().unwrap_or_else(PoisonError::into_inner);
            for (p, result) in pending.iter().zip(finished.iter_mut()) {
                if result.is_none() {
                    super::package::remove_pending(&p.plan);
                    *result = Some(Ok(Summary::interrupted(code, p.started.elapsed())));
                }
            }
        }
    }
    let finished = finished
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    pending
        .iter()
        .zip(finished)
        .map(|(p, outcome)| CellResult {
            cell: p.cell.clone(),
            outcome: outcome.unwrap_or_else(|| Err("the cell was not followed".to_string())),
            took: p.started.elapsed(),
        })
        .collect()
}

/// Starts the batch and follows every cell to its summary, each put in `finished` as it ends.
async fn start_and_follow(
    executor: &CodeBuildExecutor<'_>,
    pending: &[Pending],
    jobs: usize,
    finished: &Mutex<Vec<Option<Result<Summary, String>>>>,
) {
    let finish = |index: usize, result: Result<Summary, String>| {
        finished.lock().unwrap_or_else(PoisonError::into_inner)[index] = Some(result);
    };
    let cells: Vec<BatchCell> = pending
        .iter()
        .map(|p| BatchCell {
            identifier: batch::identifier(&p.cell.id()),
            plan: &p.plan,
        })
        .collect();
    let batch = match executor.start_batch(&cells).await {
        Ok(batch) => batch,
        Err(e) => {
            for (index, p) in pending.iter().enumerate() {
                finish(index, Err(p.masker.mask(&format!("{e:#}"))));
            }
            return;
        }
    };
    let mut waiting = HashMap::new();
    let mut builds = Vec::new();
    for (p, cell) in pending.iter().zip(&cells) {
        let (tell, build_id) = oneshot::channel();
        waiting.insert(cell.identifier.clone(), tell);
        builds.push((p, build_id));
    }
    let timeout = pending.iter().map(|p| p.plan.options.timeout).max();
    let packaging = Semaphore::new(jobs.max(1));
    let cell_runs = builds
        .into_iter()
        .enumerate()
        .map(|(index, (p, build_id))| {
            let batch = &batch;
            let packaging = &packaging;
            async move {
                finish(
                    index,
                    run_cell(executor, p, build_id, batch, packaging).await,
                )
            }
        });
    let dispatch = executor.dispatch_batch(&batch, waiting, timeout.unwrap_or(Duration::ZERO));
    tokio::join!(dispatch, futures_util::future::join_all(cell_runs));
}

/// One cell of the batch: its build followed once the batch has started it, its artifact
/// packaged here (`packaging` bounds how many at once: the import test runs a container).
async fn run_cell(
    batch_executor: &CodeBuildExecutor<'_>,
    p: &Pending,
    build_id: oneshot::Receiver<batch::BuildStarted>,
    batch: &Batch,
    packaging: &Semaphore,
) -> Result<Summary, String> {
    let mask = |e: anyhow::Error| p.masker.mask(&format!("{e:#}"));
    let executor = CodeBuildExecutor {
        log: &p.log,
        running: Default::default(),
        ..*batch_executor
    };
    let never_started = |why: String| {
        p.log.container(&why);
        Outcome {
            failure: Some(why),
            executor: "codebuild",
            ..Outcome::default()
        }
    };
    // Ready before the build is: a build handed over is always followed (or stopped).
    let staging = Staging::create(&p.plan.out_dir).map_err(mask)?;
    let outcome = match build_id.await {
        Ok(Ok(id)) => {
            p.log.line(&format!("following the batch's build {id}"));
            let artifact = ArtifactAt::ReportedUnder(batch.artifact_prefix.clone());
            executor
                .follow_and_stage(&p.plan, staging, &id, artifact)
                .await
                .map_err(mask)?
        }
        Ok(Err(why)) => never_started(why),
        Err(_) => never_started("the batch was not followed to this cell's build".to_string()),
    };
    let _permit = packaging.acquire().await;
    let (outcome, packaged) =
        super::package_remote(&p.plan, outcome, p.import_test.as_ref(), &p.log)
            .await
            .map_err(mask)?;
    Ok(Summary::new(
        &p.plan,
        outcome,
        packaged,
        p.started.elapsed(),
    ))
}

fn fail_all(pending: &[Pending], why: &str) -> Vec<CellResult> {
    pending
        .iter()
        .map(|p| CellResult {
            cell: p.cell.clone(),
            outcome: Err(why.to_string()),
            took: p.started.elapsed(),
        })
        .collect()
}
