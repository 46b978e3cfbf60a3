//! Smoke tests of the Docker facade against a real daemon and the (stand-in) SAM build image.
//!
//! Needs a Docker daemon and the image `LAYER_BUILD_IMAGE`; `bash scripts/test.sh` provides both.

use crate::support;

use std::time::Duration;

use xtask::engine::Error;

#[test]
fn the_build_image_runs_python_3_9() {
    support::with_docker(async |engine, image| {
        let output = support::run_once(engine, image, &["python3", "--version"])
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(output.exit_code, 0, "python3 --version failed: {output:?}");
        assert!(
            output.stdout.starts_with("Python 3.9"),
            "expected `Python 3.9…` on stdout, got {output:?}"
        );
    });
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    support::with_docker(async |engine, image| {
        let script = "echo to-stdout; echo to-stderr >&2";
        let output = support::run_once(engine, image, &["sh", "-c", script])
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(output.exit_code, 0, "{output:?}");
        assert_eq!(output.stdout, "to-stdout\n");
        assert_eq!(output.stderr, "to-stderr\n");
    });
}

#[test]
fn a_failing_command_reports_its_exit_code_and_leaves_no_container() {
    support::with_docker(async |engine, image| {
        let output = support::run_once(engine, image, &["sh", "-c", "exit 3"])
            .await
            .unwrap_or_else(|error| panic!("{error}"));

        assert_eq!(output.exit_code, 3, "{output:?}");
        let leftovers = engine
            .session_containers()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            leftovers.is_empty(),
            "containers left behind: {leftovers:?}"
        );
    });
}

#[test]
fn a_cancelled_run_still_removes_its_container() {
    support::with_docker(async |engine, image| {
        // Drop the run while `sleep` runs, as a Ctrl-C or an outer timeout would.
        let while_running = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            engine.session_containers().await
        };
        let running = tokio::select! {
            output = support::run_once(engine, image, &["sleep", "300"]) => panic!("`sleep 300` returned: {output:?}"),
            running = while_running => running.unwrap_or_else(|error| panic!("{error}")),
        };

        assert_eq!(
            running.len(),
            1,
            "expected one running container: {running:?}"
        );
        let leftovers = engine
            .session_containers()
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        assert!(
            leftovers.is_empty(),
            "the guard left containers behind: {leftovers:?}"
        );
    });
}

#[test]
fn a_missing_image_is_reported_as_such() {
    support::with_daemon(async |engine| {
        let image = "layer-tools/no-such-image:never-built";
        assert!(!engine
            .image_exists(image)
            .await
            .unwrap_or_else(|error| panic!("{error}")));
        match support::run_once(engine, image, &["true"]).await {
            Err(Error::NoSuchImage { image: reported }) => assert_eq!(reported, image),
            other => panic!("expected Error::NoSuchImage, got {other:?}"),
        }
    });
}
