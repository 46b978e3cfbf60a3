//! One build, start to finish: settings → source → no-op check → container (see [`super::container`])
//! → artifact → verification and zip → manifest. Every way out of the container part (success,
//! error, Ctrl-C) removes the container.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context as _};

use super::cache;
use super::container::{await_removal, in_container, Inputs, Run, CONTAINER_CA_FILE};
use super::key::{self, KeyInputs};
use super::log::{log, timestamp};
use super::mounts;
use super::outputs::{self, Collected};
use super::secrets;
use super::settings::{source_number, Settings};
use super::source::Source;
use super::staging::Staging;
use super::summary::Summary;
use super::variables::{self, UserVariables, Variables};
use super::BuildLayer;
use crate::engine::{ContainerSpec, Engine};
use crate::manifest::Manifest;
use crate::verify::{import_smoke_test_in, LayerContainer};

pub async fn build(flags: BuildLayer) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let settings = Settings::resolve(&flags)?;
    let json = flags.json;
    for warning in &settings.warnings {
        log(json, &warning.headline());
    }

    let (user_vars, secrets) = user_variables(&flags, &settings).await?;

    let source = Source::discover(&settings.source_dir)?;
    let packed = source.pack()?;
    let engine = Engine::connect().await?;
    let image_id = ensure_image(&engine, &settings.image, json).await?;
    let cache_enabled = !flags.no_cache;
    let build_key = key::build_key(&KeyInputs {
        image_id: &image_id,
        buildspec_text: &settings.buildspec_text,
        source_digest: &packed.digest,
        variables: &user_vars.0,
        runtime: settings.runtime.id,
        arch: &settings.arch,
        layer_name: &settings.layer_name,
        cache_enabled,
        import_test: !flags.no_import_test,
    });
    if !flags.force {
        if let Some(manifest) = key::up_to_date(&settings.manifest_path(), &build_key) {
            log(
                json,
                &format!(
                    "up to date: {} (sha256 {})",
                    settings.zip_path().display(),
                    manifest.sha256
                ),
            );
            return Ok(up_to_date_summary(&settings, &manifest, started));
        }
    }

    std::fs::create_dir_all(&settings.out_dir)
        .with_context(|| format!("cannot create the out-dir {}", settings.out_dir.display()))?;
    let _lock = lock_out_dir(&settings.out_dir)?;

    let src_dir = format!(
        "{}/src{}/src",
        mounts::OUTPUT_ROOT,
        source_number(&settings.layer_name)
    );
    let build_number = variables::next_build_number(&settings.out_dir);
    let mut env = variables::codebuild_variables(
        &settings,
        &src_dir,
        build_number,
        source.git_revision.as_deref(),
    );
    for (name, value) in &user_vars.0 {
        env.set(name, value.clone());
    }
    let (container_env, ca_bundle) = container_environment(&flags);

    let memory_limit = match flags.scratch_on_disk {
        true => None,
        false => mounts::memory_limit(engine.memory_bytes().await),
    };
    let cache_volumes = cache::cache_volumes(&settings, &src_dir);
    let in_image = match (cache_enabled, memory_limit) {
        // Throwaway cache paths may go in memory: those the image has files in may not.
        (false, Some(_)) => {
            let dirs: Vec<String> = cache_volumes.iter().map(|(_, dir)| dir.clone()).collect();
            let found = engine.paths_in_image(&settings.image, &dirs).await?;
            dirs.into_iter()
                .zip(found)
                .filter(|(_, f)| *f)
                .map(|(d, _)| d)
                .collect()
        }
        _ => Vec::new(),
    };
    let mounts = mounts::plan(cache_volumes, cache_enabled, memory_limit, |dir| {
        in_image.iter().any(|d| d == dir)
    });
    for (dir, bytes) in &mounts.memory_dirs {
        log(
            json,
            &format!(
                "{dir} is in memory (tmpfs, up to {:.1} GiB; --scratch-on-disk puts it on a volume)",
                *bytes as f64 / f64::from(1 << 30)
            ),
        );
    }
    let spec = ContainerSpec {
        image: settings.image.clone(),
        env: container_env.0.clone(),
        working_dir: Some(src_dir.clone()),
        volumes: mounts.volumes,
        bind_mounts_ro: Vec::new(),
        scratch_dirs: mounts.scratch_dirs,
        memory_dirs: mounts.memory_dirs,
        labels: vec![(
            "xtask.layer-tools.layer".to_string(),
            settings.layer_name.clone(),
        )],
    };
    let run = Run {
        engine: &engine,
        settings: &settings,
        src_dir: &src_dir,
        json,
        secrets: &secrets,
        source_files: source.files.len(),
    };
    let finish = outputs::Finish {
        settings: &settings,
        build_key: &build_key,
        image_id: &image_id,
        git_revision: source.git_revision.clone(),
    };
    let work = async {
        let staging = Staging::create(&settings.out_dir)?;
        let primary = staging.primary();
        // The import test's container starts while the build runs, once the build container is
        // up (starting both at once delays the build); not at all if that never happens.
        let (build_started, started) = tokio::sync::oneshot::channel();
        let import_container = async {
            match (flags.no_import_test, started.await) {
                (false, Ok(())) => LayerContainer::mount(&engine, &settings.image, &primary).await,
                _ => None,
            }
        };
        let inputs = Inputs {
            source_tar: packed.tar,
            ca_bundle: ca_bundle.as_deref(),
            env,
            staging,
        };
        let build = in_container(&run, &spec, inputs, build_started);
        let (import_container, built) = tokio::join!(import_container, build);
        let (mut summary, collected, removal) = built?;
        let finished = match collected.filter(|_| summary.succeeded) {
            Some(collected) => {
                let import_test = match flags.no_import_test {
                    true => ImportTest::Skip,
                    false => ImportTest::Run(import_container),
                };
                zip_and_verify(&run, &finish, &collected, import_test, &mut summary).await
            }
            None => Ok(()),
        };
        await_removal(removal, json).await;
        finished.map(|()| summary)
    };
    let mut summary = tokio::select! {
        result = work => result?,
        code = interrupted() => {
            // The build future (and its container guard) is dropped here; remove the containers
            // explicitly too, since the process exits right after.
            log(json, &format!("interrupted: removing the build container (exit {code})"));
            if let Err(e) = engine.remove_session_containers().await {
                log(json, &format!("warning: {e}"));
            }
            Summary { interrupted: Some(code), ..Summary::default() }
        }
    };
    summary.duration_ms = started.elapsed().as_millis() as u64;
    print_summary(&summary, json);
    Ok(summary)
}

/// The buildspec's variables, then the stores' (fetched with --resolve-secrets), the env file and
/// --env; and the secret values to mask in the log.
async fn user_variables(
    flags: &BuildLayer,
    settings: &Settings,
) -> anyhow::Result<(Variables, Vec<String>)> {
    let env_file = match &flags.env_file {
        Some(path) => variables::read_env_file(path)?,
        None => Vec::new(),
    };
    let mut user = UserVariables {
        buildspec: &settings.buildspec,
        env_file,
        cli: flags.env.clone(),
        stores: Vec::new(),
    };
    let missing = user.unresolved_secrets();
    if !missing.is_empty() && flags.resolve_secrets {
        let mut wanted = settings.buildspec.env.clone();
        wanted
            .parameter_store
            .retain(|(name, _)| missing.contains(&name.value));
        wanted
            .secrets_manager
            .retain(|(name, _)| missing.contains(&name.value));
        user.stores = secrets::resolve(&wanted).await?;
    } else if !missing.is_empty() {
        bail!(
            "the buildspec reads {} from Parameter Store / Secrets Manager: pass --resolve-secrets to fetch them with your AWS credentials, or each value with --env NAME=value or --env-file FILE",
            missing.join(", ")
        );
    }
    Ok((user.merged(), user.secret_values()))
}

/// What the container's environment adds for the tools in it: the host's proxy, pip index and CA
/// settings (unless --no-host-network-config), AWS credentials only with --pass-aws-credentials.
/// Returns the variables and the host CA bundle to copy in.
fn container_environment(flags: &BuildLayer) -> (Variables, Option<std::path::PathBuf>) {
    let ca_bundle = if flags.no_host_network_config {
        None
    } else {
        variables::host_ca_bundle()
    };
    let mut container_env = Variables::default();
    if !flags.no_host_network_config {
        for (name, value) in variables::host_network_variables() {
            container_env.set(&name, value);
        }
        if ca_bundle.is_some() {
            for name in variables::CA_VARIABLES {
                container_env.set(name, CONTAINER_CA_FILE);
            }
        }
    }
    if flags.pass_aws_credentials {
        for (name, value) in variables::host_aws_credentials() {
            container_env.set(&name, value);
        }
    }

    (container_env, ca_bundle)
}

/// Whether the verification imports the layer, and in which container when one was started
/// during the build.
#[allow(clippy::large_enum_variant)] // one value per build
enum ImportTest {
    Skip,
    Run(Option<LayerContainer>),
}

/// Issue 5's checks on the layer tree: static (ELF, ABI, layout, size of parts) and, unless
/// disabled, importing every top-level module in the build image as Lambda mounts the layer.
async fn verify_layer(
    engine: &Engine,
    settings: &Settings,
    tree: &Path,
    import_test: ImportTest,
    json: bool,
) -> anyhow::Result<Vec<crate::diagnostic::Diagnostic>> {
    log(
        json,
        &format!("[Container] {} Verifying the layer", timestamp()),
    );
    let target =
        crate::verify::Target::new(&settings.compatible_runtimes, &[settings.arch.as_str()])?;
    let mut checks = crate::verify::verify_tree(tree, &target);
    if let ImportTest::Run(ready) = import_test {
        let (outcome, failed) = import_smoke_test_in(engine, &settings.image, tree, ready)
            .await
            .context("the import smoke test could not run (--no-import-test skips it)")?;
        log(
            json,
            &format!(
                "import smoke test: {} modules imported, {} failed",
                outcome.imported.len(),
                failed.len()
            ),
        );
        checks.extend(failed);
    }
    for check in &checks {
        log(json, &check.headline());
    }
    Ok(checks)
}

/// Zips the layer tree while `verify` checks it: the zips do not depend on the verdict (a failed
/// layer keeps its zip for inspection), and the import test mostly waits on Docker.
async fn zip_and_verify(
    run: &Run<'_>,
    finish: &outputs::Finish<'_>,
    collected: &Collected,
    import_test: ImportTest,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let (tree, contents) = outputs::layer_tree(collected, run.json)?;
    let job = finish.zip_job(&tree, collected)?;
    let zipping = tokio::task::spawn_blocking(move || job.run());
    let checks = verify_layer(run.engine, run.settings, &tree, import_test, run.json).await;
    let zipped = zipping.await.context("the zip writer stopped")??;
    match checks {
        Ok(checks) => finish.record(zipped, &contents, checks, summary),
        Err(e) => {
            zipped.discard();
            Err(e)
        }
    }
}

fn up_to_date_summary(settings: &Settings, manifest: &Manifest, started: Instant) -> Summary {
    Summary {
        succeeded: true,
        up_to_date: true,
        zip: Some(settings.zip_path().display().to_string()),
        manifest: Some(settings.manifest_path().display().to_string()),
        sha256: Some(manifest.sha256.clone()),
        code_sha256: Some(manifest.code_sha256.clone()),
        zipped_bytes: manifest.zipped_bytes,
        unzipped_bytes: manifest.unzipped_bytes,
        file_count: manifest.file_count,
        warnings: manifest.verification.warnings.clone(),
        duration_ms: started.elapsed().as_millis() as u64,
        ..Summary::default()
    }
}

fn print_summary(summary: &Summary, json: bool) {
    if json {
        return;
    }
    for warning in &summary.warnings {
        println!("warning: {warning}");
    }
    for error in &summary.errors {
        println!("error: {error}");
    }
    for report in &summary.reports {
        println!("reports: {report}");
    }
    for (id, zip) in &summary.secondary {
        println!("secondary artifact {id}: {zip}");
    }
    for (name, value) in &summary.exported {
        println!("exported {name}={}", value.as_deref().unwrap_or(""));
    }
    let status = if summary.succeeded {
        "SUCCEEDED"
    } else {
        "FAILED"
    };
    match (&summary.zip, summary.succeeded) {
        (Some(zip), true) => println!(
            "build {status}: {zip} ({} bytes, {} files, {} bytes unzipped, sha256 {})",
            summary.zipped_bytes,
            summary.file_count,
            summary.unzipped_bytes,
            summary.sha256.as_deref().unwrap_or("")
        ),
        _ => println!("build {status}: no layer zip written"),
    }
    let _ = std::io::stdout().flush();
}

async fn ensure_image(engine: &Engine, image: &str, json: bool) -> anyhow::Result<String> {
    let bar = crate::progress::Progress::new(json);
    let id = engine
        .ensure_image(image, |p| bar.update(&p.status, p.current, p.total))
        .await?;
    bar.finish();
    Ok(id)
}

/// One build of a project at a time: a second one fails at once instead of racing on the zip.
fn lock_out_dir(out_dir: &Path) -> anyhow::Result<std::fs::File> {
    let path = out_dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("the out-dir {} is not writable", out_dir.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!(
                "another build of this layer is running (lock: {})",
                path.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Resolves with the shell's exit code for the first SIGINT (130) or SIGTERM (143).
async fn interrupted() -> u8 {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return wait_ctrl_c().await,
        };
        tokio::select! {
            code = wait_ctrl_c() => code,
            _ = term.recv() => 143,
        }
    }
    #[cfg(not(unix))]
    {
        wait_ctrl_c().await
    }
}

async fn wait_ctrl_c() -> u8 {
    match tokio::signal::ctrl_c().await {
        Ok(()) => 130,
        // No signal handling available: never resolve, let the build finish.
        Err(_) => std::future::pending().await,
    }
}
