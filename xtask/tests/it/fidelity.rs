//! CodeBuild's behaviour where a local build used to depart from it, on the real binary and the
//! stand-in image: a buildspec without artifacts runs, a glob base-directory collects every
//! matching directory, the target runtime comes from where the build says it, images of every
//! shape run, and a layer that fails is never left where a layer is expected.

use std::process::Command;

use crate::build_layer::{build_layer, project, summary, zip_path};
use crate::support;

fn log(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_buildspec_without_artifacts_runs_every_phase_and_packages_nothing() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  install:\n    commands: ['echo in-install']\n  build:\n    commands: ['echo in-build']\n  post_build:\n    commands: ['echo in-post-build']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "SUCCEEDED", "{}", log(&output));
    assert!(output.status.success());
    assert_eq!(s["no_artifacts"], true);
    assert_eq!(s["layer_packaged"], false);
    assert!(s["zip"].is_null() && s["manifest"].is_null(), "{s:#}");
    let phases: Vec<&str> = s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["INSTALL", "PRE_BUILD", "BUILD", "POST_BUILD"]);
    assert!(log(&output).contains("in-post-build"));
    assert!(!zip_path(dir.path()).exists());

    // Failing: every transition rule still applies, and the exit status follows the build.
    let failing = "version: 0.2\nphases:\n  build:\n    commands: ['false']\n  post_build:\n    commands: ['echo post-build-ran']\n";
    let dir = project(failing, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED");
    assert_eq!(output.status.code(), Some(1));
    assert!(log(&output).contains("post-build-ran"), "{}", log(&output));

    // The human summary says that nothing was packaged.
    let human = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-layer", "--source"])
        .arg(project(spec, &[]).path())
        .args(["--image", &support::standin_image()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout
            .contains("no layer packaged (the buildspec declares no artifacts; nothing to deploy)"),
        "{stdout}"
    );
}

#[test]
fn a_glob_base_directory_collects_the_files_of_every_matching_directory() {
    if !support::docker_ready() {
        return;
    }
    // CodeBuild's documented example (base-directory 'my-build*', discard-paths) as a secondary
    // artifact; the layer itself from two matching directories.
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p out-1/python out-2/python/pkg my-build1/sub my-build2 other\n      - echo a > out-1/python/a.py\n      - echo b > out-2/python/pkg/b.py\n      - echo one > my-build1/sub/one.txt\n      - echo two > my-build2/two.txt\n      - echo no > other/no.txt\nartifacts:\n  base-directory: 'out-*'\n  files: ['python/**/*']\n  secondary-artifacts:\n    docs:\n      base-directory: 'my-build*'\n      discard-paths: yes\n      files: ['**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &["--no-import-test"]);
    let s = summary(&output);
    assert_eq!(s["status"], "SUCCEEDED", "{s:#}\n{}", log(&output));
    assert_eq!(
        crate::build_layer::zip_names(&zip_path(dir.path())),
        ["python/a.py", "python/pkg/b.py"]
    );
    let docs = dir.path().join("target/layer/docs.zip");
    assert_eq!(crate::build_layer::zip_names(&docs), ["one.txt", "two.txt"]);
}

#[test]
fn a_layer_that_fails_verification_is_not_left_where_a_layer_is_expected() {
    if !support::docker_ready() {
        return;
    }
    let good = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python && echo 'x = 1' > layer/python/fine.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(good, &[]);
    assert_eq!(
        summary(&build_layer(dir.path(), &[]))["status"],
        "SUCCEEDED"
    );
    assert!(zip_path(dir.path()).exists());

    // Modules copied in by hand, without any *.dist-info: still imported, and the failure named.
    let bad = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python/handmade\n      - seq 1 5000 > layer/python/handmade/data.txt\n      - echo \"raise ImportError('boom')\" > layer/python/handmade/__init__.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    std::fs::write(dir.path().join("buildspec.yml"), bad).unwrap();
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED", "{s:#}");
    let errors = s["errors"].to_string();
    assert!(
        errors.contains("BS310")
            && errors.contains("import handmade")
            && errors.contains("no distribution metadata"),
        "{errors}"
    );
    assert!(
        !zip_path(dir.path()).exists(),
        "a rejected layer at the layer's path"
    );
    let rejected = dir.path().join("target/layer/test-layer.zip.rejected");
    assert!(rejected.exists());
    assert_eq!(s["zip"], serde_json::Value::Null);
    assert_eq!(s["rejected_zip"], rejected.display().to_string());

    // Fixed: the file that did not change is copied from the rejected zip.
    std::fs::write(
        dir.path().join("buildspec.yml"),
        bad.replace("raise ImportError('boom')", "X = 1"),
    )
    .unwrap();
    let fixed = build_layer(dir.path(), &[]);
    assert_eq!(summary(&fixed)["status"], "SUCCEEDED", "{}", log(&fixed));
    assert!(
        log(&fixed).contains("zip: 1 of 2 files copied compressed from the previous zip"),
        "{}",
        log(&fixed)
    );
}

#[test]
fn the_target_runtime_comes_from_the_build_not_a_default() {
    if !support::docker_ready() {
        return;
    }
    let layer = "mkdir -p layer/python && echo 'x = 1' > layer/python/m.py";
    // No template: the buildspec's runtime-versions names the runtime.
    let spec = format!("version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: \"3.9\"\n  build:\n    commands:\n      - {layer}\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n");
    let dir = project(&spec, &[]);
    std::fs::remove_file(dir.path().join("template.yaml")).unwrap();
    let output = build_layer(dir.path(), &[]);
    assert_eq!(summary(&output)["status"], "SUCCEEDED", "{}", log(&output));
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("target/layer/layer.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        manifest["compatible_runtimes"],
        serde_json::json!(["python3.9"])
    );

    // Nothing names it: the image's own Python does, and the log says so.
    let spec = format!("version: 0.2\nphases:\n  build:\n    commands:\n      - {layer}\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n");
    let dir = project(&spec, &[]);
    std::fs::remove_file(dir.path().join("template.yaml")).unwrap();
    let output = build_layer(dir.path(), &[]);
    assert_eq!(summary(&output)["status"], "SUCCEEDED", "{}", log(&output));
    assert!(
        log(&output).contains("target runtime: python3.9 (the image's Python"),
        "{}",
        log(&output)
    );

    // Two sources that disagree: an error naming both, before any container.
    let dir = project(&spec, &[]);
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-layer", "--runtime", "python3.12", "--source"])
        .arg(dir.path())
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "--runtime python3.12 is not one of the layer's CompatibleRuntimes (python3.9"
        ) && stderr.contains("template.yaml:6:"),
        "{stderr}"
    );
}

/// An image made from the stand-in: `shape` is `no-command` (imported: no CMD, no ENTRYPOINT, no
/// ENV) or `python-entrypoint` (its ENTRYPOINT is not a shell).
fn stand_in_variant(shape: &str) -> String {
    let image = format!("layer-tools/test-{shape}:latest");
    let docker = |args: &[&str]| {
        let output = Command::new("docker")
            .args(args)
            .output()
            .expect("the docker CLI");
        assert!(
            output.status.success(),
            "docker {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    };
    let name = format!("xtask-test-{shape}-{}", std::process::id());
    docker(&["create", "--name", &name, &support::standin_image(), "true"]);
    match shape {
        "no-command" => {
            let export = Command::new("sh")
                .args([
                    "-c",
                    &format!("docker export {name} | docker import - {image}"),
                ])
                .output()
                .unwrap();
            assert!(
                export.status.success(),
                "{}",
                String::from_utf8_lossy(&export.stderr)
            );
        }
        _ => {
            docker(&[
                "commit",
                "--change",
                "ENTRYPOINT [\"/usr/bin/python3\", \"-c\", \"raise SystemExit(3)\"]",
                &name,
                &image,
            ]);
        }
    }
    docker(&["rm", "-f", &name]);
    image
}

#[test]
fn images_without_a_command_or_with_a_non_shell_entrypoint_build() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\ncache:\n  paths: ['/root/.cache/test/**/*']\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python && echo 'x = 1' > layer/python/m.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    for shape in ["no-command", "python-entrypoint"] {
        let image = stand_in_variant(shape);
        let dir = project(spec, &[]);
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["build-layer", "--json", "--no-cache", "--source"])
            .arg(dir.path())
            .args(["--image", &image])
            .output()
            .unwrap();
        let s = summary(&output);
        assert_eq!(s["status"], "SUCCEEDED", "{shape}: {}", log(&output));
        let _ = Command::new("docker").args(["rmi", "-f", &image]).output();
    }
}

#[test]
fn keyed_caches_follow_their_key_and_fall_back_by_prefix() {
    if !support::docker_ready() {
        return;
    }
    // Each build appends its name to the cache's log; the layer is that log.
    let spec = |action: &str| {
        format!("version: 0.2\ncache:\n  key: deps-$(codebuild-hash-files requirements.txt)\n  fallback-keys:\n    - deps-\n{action}  paths:\n    - '/root/.cache/keyed/**/*'\nphases:\n  build:\n    commands:\n      - mkdir -p /root/.cache/keyed layer/python\n      - echo \"$RUN\" >> /root/.cache/keyed/log\n      - cp /root/.cache/keyed/log layer/python/log.txt\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n")
    };
    let dir = project(&spec(""), &[("requirements.txt", "six==1.16.0\n")]);
    let log_after = |run: &str| -> String {
        let output = build_layer(
            dir.path(),
            &[
                "--force",
                "--no-import-test",
                "--env",
                &format!("RUN={run}"),
            ],
        );
        assert_eq!(summary(&output)["status"], "SUCCEEDED", "{}", log(&output));
        let zip = std::fs::File::open(zip_path(dir.path())).unwrap();
        let mut archive = zip::ZipArchive::new(zip).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut archive.by_name("python/log.txt").unwrap(), &mut text)
            .unwrap();
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert_eq!(log_after("one"), "one");
    assert_eq!(
        log_after("two"),
        "one two",
        "the same key restores its cache"
    );
    std::fs::write(dir.path().join("requirements.txt"), "six==1.15.0\n").unwrap();
    assert_eq!(
        log_after("three"),
        "one two three",
        "a new key starts from the newest cache of a fallback key"
    );
    std::fs::write(
        dir.path().join("buildspec.yml"),
        spec("  action: restore\n"),
    )
    .unwrap();
    assert_eq!(log_after("four"), "one two three four");
    assert_eq!(
        log_after("five"),
        "one two three five",
        "a restore-only cache is not saved"
    );
    std::fs::write(dir.path().join("buildspec.yml"), spec("  action: save\n")).unwrap();
    assert_eq!(log_after("six"), "six", "a save-only cache starts empty");
}
