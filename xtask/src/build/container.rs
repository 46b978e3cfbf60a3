//! The build container's part of a build: create it, upload the source (and the host's CA
//! bundle), check the runtime, run the buildspec's driver script with the log streamed, collect
//! the reports and artifacts, and start its removal.

use std::path::Path;

use anyhow::{bail, Context as _};

use super::log::{log, timestamp, OutputReader};
use super::outputs::{self, Collected, InContainer};
use super::settings::Settings;
use super::staging::Staging;
use super::summary::Summary;
use super::variables::Variables;
use crate::buildspec::PhaseName;
use crate::engine::{ContainerSpec, Engine, Exec, WorkContainer};
use crate::plan::{self, PlanInputs};

/// Where the host's CA bundle is put in the container.
const CONTAINER_CA_DIR: &str = "/tmp/xtask-host-ca";
pub const CONTAINER_CA_FILE: &str = "/tmp/xtask-host-ca/ca-bundle.crt";

/// What the container part of a build needs to know.
pub struct Run<'a> {
    pub engine: &'a Engine,
    pub settings: &'a Settings,
    pub src_dir: &'a str,
    pub json: bool,
    pub secrets: &'a [String],
    pub source_files: usize,
}

/// What one build puts into its container, and where its artifacts go.
pub struct Inputs<'a> {
    /// The source tree as a tar.
    pub source_tar: Vec<u8>,
    /// The host's CA bundle, copied in when given.
    pub ca_bundle: Option<&'a Path>,
    /// The build's variables (CodeBuild's, the buildspec's, the user's).
    pub env: Variables,
    pub staging: Staging,
}

/// Everything that needs the container. Its removal starts on the way out, whatever happens, and
/// runs in the background (deleting a large source tree takes a while): on success the returned
/// handle reports how it went; on an error it has been awaited.
pub async fn in_container(
    run: &Run<'_>,
    spec: &ContainerSpec,
    inputs: Inputs<'_>,
    started: tokio::sync::oneshot::Sender<()>,
) -> anyhow::Result<(Summary, Option<Collected>, Removal)> {
    let container = run.engine.start_work_container(spec).await?;
    let _ = started.send(());
    let result = drive(run, &container, inputs).await;
    let removal = container.remove_in_background();
    match result {
        Ok((summary, collected)) => Ok((summary, collected, removal)),
        Err(e) => {
            await_removal(removal, run.json).await;
            Err(e)
        }
    }
}

pub type Removal = tokio::task::JoinHandle<crate::engine::Result<()>>;

pub async fn await_removal(removal: Removal, json: bool) {
    match removal.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log(json, &format!("warning: {e}")),
        Err(e) => log(
            json,
            &format!("warning: the container removal stopped: {e}"),
        ),
    }
}

async fn drive(
    run: &Run<'_>,
    container: &WorkContainer,
    inputs: Inputs<'_>,
) -> anyhow::Result<(Summary, Option<Collected>)> {
    let Inputs {
        source_tar,
        ca_bundle,
        env,
        staging,
    } = inputs;
    let json = run.json;
    log(
        json,
        &format!("[Container] {} Entering phase DOWNLOAD_SOURCE", timestamp()),
    );
    log(
        json,
        &format!(
            "[Container] {} Uploading the source ({} files) to {}",
            timestamp(),
            run.source_files,
            run.src_dir
        ),
    );
    // Independent round trips to the daemon, so at the same time.
    let upload_source = async {
        let uploaded = run.engine.upload(container, run.src_dir, source_tar).await;
        uploaded.map_err(anyhow::Error::from)
    };
    let upload_ca = async {
        let Some(bundle) = ca_bundle else {
            return Ok(());
        };
        let tar = single_file_tar("ca-bundle.crt", bundle)?;
        let uploaded = run.engine.upload(container, CONTAINER_CA_DIR, tar).await;
        uploaded.map_err(anyhow::Error::from)
    };
    let (source, ca, runtime) = tokio::join!(
        upload_source,
        upload_ca,
        check_runtime_versions(run, container)
    );
    source?;
    ca?;
    runtime?;

    let interpreter = plan::interpreter(&run.settings.buildspec.shell())
        .context("Windows shells (powershell.exe, cmd.exe) cannot run in a Linux build image")?;
    let script = plan::driver_script(
        &run.settings.buildspec,
        &PlanInputs {
            src_dir: run.src_dir.to_string(),
            variables: env.0,
        },
    );
    let driver = Exec::new([interpreter, "-c", script.as_str()]).working_dir(run.src_dir);
    let user = run
        .settings
        .buildspec
        .run_as
        .as_ref()
        .map(|u| u.value.as_str());
    if let Some(user) = user {
        // The source was unpacked as root; the run-as user builds in it.
        let chown = Exec::new(["chown", "-R", user, run.src_dir]).root();
        run.engine
            .exec_checked(container, &chown)
            .await
            .with_context(|| format!("run-as {user}: cannot hand the source to that user"))?;
    }
    let driver = match user {
        Some(user) => driver.user(user),
        None => driver,
    };
    let mut output = OutputReader::new(json, run.secrets);
    let exit = run
        .engine
        .exec(container, &driver, |_, chunk| output.feed(chunk))
        .await?;
    output.flush();
    let mut summary = output.summary;
    summary.succeeded = output.build_succeeded == Some(true) && exit == 0;
    if !summary.succeeded && output.saw_no_space && container.transfers_with_tar() {
        log(
            json,
            "hint: the source tree is in memory and bounded; --scratch-on-disk puts it on a volume",
        );
    }
    let at = InContainer {
        engine: run.engine,
        container,
        src_dir: run.src_dir,
    };
    // Reports are copied whatever the outcome: a failed build is when they matter most.
    let (reports, warnings) = outputs::collect_reports(&at, run.settings).await;
    summary.reports = reports;
    summary.warnings.extend(warnings);
    if !summary.succeeded {
        return Ok((summary, None));
    }
    log(
        json,
        &format!(
            "[Container] {} Entering phase UPLOAD_ARTIFACTS",
            timestamp()
        ),
    );
    let collected = outputs::collect_artifacts(&at, run.settings, staging).await?;
    Ok((summary, Some(collected)))
}

/// `runtime-versions` asks for a Python the SAM image cannot switch to: check it is the image's.
async fn check_runtime_versions(run: &Run<'_>, container: &WorkContainer) -> anyhow::Result<()> {
    let Some(install) = run.settings.buildspec.phase(PhaseName::Install) else {
        return Ok(());
    };
    if install.runtime_versions.is_empty() {
        return Ok(());
    }
    log(run.json, &format!("[Container] {} Skipping install of runtimes. Runtime version selection is not supported by this build image.", timestamp()));
    let Some((_, wanted)) = install
        .runtime_versions
        .iter()
        .find(|(name, _)| name.value == "python")
    else {
        return Ok(());
    };
    let exact = wanted.value.split('.').count() == 2
        && wanted.value.split('.').all(|p| p.parse::<u32>().is_ok());
    if !exact {
        return Ok(());
    }
    let version = Exec::sh("python --version 2>&1 || python3 --version 2>&1", &[]);
    let text = run.engine.exec_output(container, &version).await?.text();
    let found = text
        .split_whitespace()
        .nth(1)
        .map(|v| v.split('.').take(2).collect::<Vec<_>>().join("."));
    if found.as_deref() != Some(wanted.value.as_str()) {
        bail!(
            "runtime-versions asks for python {} but the image {} has {}: SAM build images cannot switch runtimes (CodeBuild's curated images would install it); use --image public.ecr.aws/sam/build-python{} or --runtime python{}",
            wanted.value,
            run.settings.image,
            text.trim(),
            wanted.value,
            wanted.value
        );
    }
    Ok(())
}

fn single_file_tar(name: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let content = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    builder.append_data(&mut header, name, content.as_slice())?;
    Ok(builder.into_inner()?)
}
