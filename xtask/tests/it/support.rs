//! Shared harness for the integration tests: finds the services a test needs (Docker, the stand-in
//! build image, a local moto server) and, when one is missing, fails the test in CI (`CI` set and
//! non-empty) or skips it loudly elsewhere. `bash scripts/test.sh` provides all of them.

use std::future::Future;
use std::net::IpAddr;

use xtask::engine::{ContainerSpec, Engine, Exec};

/// The image the build runs in when `LAYER_BUILD_IMAGE` is unset: the offline stand-in for
/// `public.ecr.aws/sam/build-python3.9` that `scripts/standin-image.sh` builds.
pub const DEFAULT_IMAGE: &str = "layer-tools/build-python3.9-standin:latest";

/// Whether this is a CI run, where a missing service is a failure rather than a skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// Fails the test in CI; elsewhere prints a line that is hard to miss, and the caller returns.
fn missing(what: &str, why: &str) {
    let help = "run the tests with `bash scripts/test.sh`, which starts everything they need";
    if in_ci() {
        panic!("{what} is required in CI (CI is set): {why}\n{help}");
    }
    eprintln!("SKIPPED: {what} is not available: {why} ({help})");
}

/// A connection to the Docker daemon, or `None` (after a `SKIPPED:` line) outside CI.
pub async fn require_docker() -> Option<Engine> {
    match Engine::connect().await {
        Ok(engine) => Some(engine),
        Err(error) => {
            missing("Docker", &error.to_string());
            None
        }
    }
}

/// The build image: `LAYER_BUILD_IMAGE`, or the stand-in.
pub fn standin_image() -> String {
    std::env::var("LAYER_BUILD_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// Whether `image` is present locally; `false` (after a `SKIPPED:` line) outside CI.
pub async fn require_image(engine: &Engine, image: &str) -> bool {
    match engine.image_exists(image).await {
        Ok(true) => true,
        Ok(false) => {
            missing(
                &format!("the image {image}"),
                "it is not present locally (scripts/standin-image.sh builds it)",
            );
            false
        }
        Err(error) => panic!("{error}"),
    }
}

/// The daemon and the build image, or `None` when the test is skipped.
pub async fn docker_and_image() -> Option<(Engine, String)> {
    let engine = require_docker().await?;
    let image = standin_image();
    require_image(&engine, &image)
        .await
        .then_some((engine, image))
}

/// Runs `test` with the daemon and the build image on a fresh runtime; outside CI, when either is
/// missing, it says so and the test passes without running (in CI it fails).
pub fn with_docker(test: impl AsyncFnOnce(&Engine, &str)) {
    block_on(async {
        if let Some((engine, image)) = docker_and_image().await {
            test(&engine, &image).await;
        }
    })
}

/// Whether the daemon and the build image are there, for tests that run the `xtask` binary;
/// outside CI a missing one is said and the caller returns (in CI the test fails).
pub fn docker_ready() -> bool {
    block_on(docker_and_image()).is_some()
}

/// [`with_docker`] for tests that need only the daemon.
pub fn with_daemon(test: impl AsyncFnOnce(&Engine)) {
    block_on(async {
        if let Some(engine) = require_docker().await {
            test(&engine).await;
        }
    })
}

/// The moto server's URL from `AWS_ENDPOINT_URL`, or `None` (after a `SKIPPED:` line) outside CI.
///
/// Panics, in CI or not, when the endpoint is not on this machine: the tests never talk to AWS.
pub fn moto_endpoint() -> Option<String> {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => {
            assert!(
                is_loopback_url(&url),
                "AWS_ENDPOINT_URL={url} is not a loopback address (127.0.0.1, localhost, [::1]): \
                 the tests only ever talk to a local moto server"
            );
            Some(url)
        }
        _ => {
            missing("a moto server", "AWS_ENDPOINT_URL is not set");
            None
        }
    }
}

/// Whether `url` (`scheme://[user@]host[:port][/path]`) names this machine.
fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host_port)| host_port);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What a one-shot command printed, and its exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` in a new container of `image` to completion; the container is removed whatever
/// happens (a dropped future included: its guard removes it).
pub async fn run_once(
    engine: &Engine,
    image: &str,
    cmd: &[&str],
) -> Result<RunOutput, xtask::engine::Error> {
    run_exec(engine, image, &Exec::new(cmd.iter().copied())).await
}

/// [`run_once`] for a command with its environment, user or directory.
pub async fn run_exec(
    engine: &Engine,
    image: &str,
    exec: &Exec,
) -> Result<RunOutput, xtask::engine::Error> {
    let spec = ContainerSpec {
        image: image.to_string(),
        ..Default::default()
    };
    let container = engine.start_work_container(&spec).await?;
    let output = engine.exec_output(&container, exec).await;
    container.remove().await?;
    let output = output?;
    Ok(RunOutput {
        exit_code: output.code,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs a test body on a fresh current-thread runtime (the flavour `#[tokio::test]` uses).
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot start a Tokio runtime")
        .block_on(future)
}

#[test]
fn loopback_urls_are_recognised() {
    for url in [
        "http://127.0.0.1:5000",
        "http://localhost:5000/",
        "http://[::1]:5000",
        "https://user@127.0.0.2",
    ] {
        assert!(is_loopback_url(url), "{url} should count as loopback");
    }
    for url in [
        "http://10.0.0.1:5000",
        "https://s3.amazonaws.com",
        "http://localhost.example.com",
        "localhost:5000",
    ] {
        assert!(!is_loopback_url(url), "{url} should not count as loopback");
    }
}

/// The image of every cell of a matrix, `{python}` and `{arch}` filled in per cell:
/// `LAYER_CELL_IMAGE`, or the stand-ins `scripts/standin-image.sh --python X --arch Y` builds.
pub fn cell_image_template() -> String {
    std::env::var("LAYER_CELL_IMAGE")
        .ok()
        .filter(|image| !image.is_empty())
        .unwrap_or_else(|| "layer-tools/build-python{python}-standin:latest-{arch}".to_string())
}

/// Whether the images of `cells` (`(python, arch)`) are all present; `false` (after a `SKIPPED:`
/// line) outside CI.
pub fn cell_images_ready(cells: &[(&str, &str)]) -> bool {
    block_on(async {
        let Some(engine) = require_docker().await else {
            return false;
        };
        for (python, arch) in cells {
            let image = cell_image_template()
                .replace("{python}", python)
                .replace("{arch}", arch);
            if !require_image(&engine, &image).await {
                return false;
            }
        }
        true
    })
}
