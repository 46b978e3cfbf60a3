//! End-to-end tests of `cargo xtask build-layer` with the stand-in build image: the real binary,
//! a real Docker daemon, the real seed layer (cfnresponse, pandas, requests from PyPI).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub(crate) const LAYER_TEMPLATE: &str = "Resources:\n  Layer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      LayerName: test-layer\n      CompatibleRuntimes: [python3.9]\n      CompatibleArchitectures: [x86_64]\n";

/// A project directory with a buildspec, a template naming the layer `test-layer`, and `files`.
pub(crate) fn project(buildspec: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("buildspec.yml"), buildspec).expect("write buildspec");
    std::fs::write(dir.path().join("template.yaml"), LAYER_TEMPLATE).expect("write template");
    for (name, content) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, content).expect("write file");
    }
    dir
}

pub(crate) fn build_layer(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("build-layer")
        .arg("--source")
        .arg(dir)
        .arg("--image")
        .arg(support::standin_image())
        .arg("--json")
        .args(extra)
        .output()
        .expect("run xtask")
}

/// build-layer with a Docker host that does not exist: for what must fail before any container.
pub(crate) fn build_layer_without_docker(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-layer", "--source"])
        .arg(dir)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("run xtask")
}

pub(crate) fn summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON summary ({e}); stdout:\n{stdout}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

pub(crate) fn zip_path(dir: &Path) -> PathBuf {
    dir.join("target/layer/test-layer.zip")
}

/// The build containers of the test layer (a fresh connection per call: each `block_on` has its
/// own runtime).
pub(crate) fn layer_containers(layer: &str) -> Vec<String> {
    support::block_on(async {
        let engine = xtask::engine::Engine::connect().await.expect("docker");
        engine
            .containers_labelled(&format!("xtask.layer-tools.layer={layer}"))
            .await
            .expect("list containers")
    })
}

pub(crate) fn zip_names(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("open zip");
    let mut archive = zip::ZipArchive::new(file).expect("read zip");
    (0..archive.len())
        .map(|i| {
            archive
                .by_index(i)
                .expect("zip entry")
                .name()
                .expect("utf-8 name")
                .to_string()
        })
        .collect()
}

const SMALL_LAYER: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python/pkg\n      - cp src/mod.py layer/python/pkg/__init__.py\n      - echo \"$CODEBUILD_LOCAL_BUILD\" > layer/python/pkg/local.txt\nartifacts:\n  base-directory: layer\n  files:\n    - 'python/**/*'\n";

#[test]
fn a_small_layer_builds_deterministically_and_a_rebuild_is_a_no_op() {
    if !support::docker_ready() {
        return;
    }
    let dir = project(SMALL_LAYER, &[("src/mod.py", "VALUE = 1\n")]);
    let first = build_layer(dir.path(), &[]);
    let s1 = summary(&first);
    assert_eq!(
        s1["status"],
        "SUCCEEDED",
        "{s1:#}\n{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(first.status.success());
    let names = zip_names(&zip_path(dir.path()));
    assert_eq!(names, ["python/pkg/__init__.py", "python/pkg/local.txt"]);
    assert_eq!(s1["file_count"], 2);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("target/layer/test-layer.json"))
            .expect("manifest"),
    )
    .expect("manifest json");
    assert_eq!(manifest["sha256"], s1["sha256"]);
    assert_eq!(manifest["compatible_runtimes"][0], "python3.9");

    let forced = summary(&build_layer(dir.path(), &["--force"]));
    assert_eq!(
        forced["sha256"], s1["sha256"],
        "two builds of the same inputs differ"
    );
    assert_eq!(forced["up_to_date"], false);

    let started = Instant::now();
    let noop = summary(&build_layer(dir.path(), &[]));
    assert_eq!(noop["up_to_date"], true, "{noop:#}");
    assert_eq!(
        noop["phases"].as_array().map(Vec::len),
        Some(0),
        "a no-op runs no phase"
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    std::fs::write(dir.path().join("src/mod.py"), "VALUE = 2\n").expect("edit");
    let changed = summary(&build_layer(dir.path(), &[]));
    assert_eq!(changed["up_to_date"], false);
    assert_ne!(changed["sha256"], s1["sha256"]);
}

#[test]
fn a_rebuild_copies_unchanged_files_compressed_and_writes_the_zip_a_full_build_writes() {
    if !support::docker_ready() {
        return;
    }
    let spec = SMALL_LAYER.replace(
        "      - echo \"$CODEBUILD_LOCAL_BUILD\" > layer/python/pkg/local.txt\n",
        "      - seq 1 20000 > layer/python/pkg/numbers.txt\n",
    );
    let dir = project(&spec, &[("src/mod.py", "VALUE = 1\n")]);
    let first = build_layer(dir.path(), &[]);
    assert_eq!(summary(&first)["status"], "SUCCEEDED");
    std::fs::write(dir.path().join("src/mod.py"), "VALUE = 2\n").expect("edit");
    let second = build_layer(dir.path(), &[]);
    let log = String::from_utf8_lossy(&second.stderr);
    assert_eq!(summary(&second)["status"], "SUCCEEDED", "{log}");
    assert!(
        log.contains("zip: 1 of 2 files copied compressed from the previous zip"),
        "{log}"
    );
    let incremental = std::fs::read(zip_path(dir.path())).expect("zip");
    // --no-cache compresses everything: the same bytes.
    let full = build_layer(dir.path(), &["--force", "--no-cache"]);
    let log = String::from_utf8_lossy(&full.stderr);
    assert_eq!(summary(&full)["status"], "SUCCEEDED", "{log}");
    assert!(!log.contains("copied compressed"), "{log}");
    assert_eq!(
        std::fs::read(zip_path(dir.path())).expect("zip"),
        incremental
    );

    // What each old entry holds comes from the content listing beside the zip, trusted only
    // when it is the one the manifest's content digest covers.
    let listing = xtask::artifacts::zip::listing_path(&zip_path(dir.path()));
    let mut edited = std::fs::read(&listing).expect("the content listing beside the zip");
    edited[0] ^= 1;
    std::fs::write(&listing, edited).expect("edit the listing");
    std::fs::write(dir.path().join("src/mod.py"), "VALUE = 3\n").expect("edit");
    let third = build_layer(dir.path(), &[]);
    let log = String::from_utf8_lossy(&third.stderr);
    assert_eq!(summary(&third)["status"], "SUCCEEDED", "{log}");
    assert!(!log.contains("copied compressed"), "{log}");
}

#[test]
fn a_failing_build_writes_no_zip_and_exits_non_zero() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python && touch layer/python/x.py\n      - 'false'\n  post_build:\n    commands:\n      - echo \"post_build sees $CODEBUILD_BUILD_SUCCEEDING\"\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("post_build sees 0"));
    assert!(!zip_path(dir.path()).exists());
}

#[test]
fn an_invalid_buildspec_fails_with_the_lint_diagnostics_before_any_container() {
    // No Docker needed: the build must stop before it connects.
    let spec =
        "version: 0.2\nphases:\n  biuld:\n    commands: [echo]\nartifacts:\n  files: ['**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer_without_docker(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("buildspec.yml:3:3: error[BS101]"),
        "{stderr}"
    );
    assert!(!stderr.contains("Docker"), "{stderr}");
}

#[test]
fn secrets_without_values_fail_before_any_container() {
    let spec = "version: 0.2\nenv:\n  secrets-manager:\n    TOKEN: my/secret:token\nphases:\n  build:\n    commands: [echo]\nartifacts:\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer_without_docker(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("TOKEN") && stderr.contains("--env"),
        "{stderr}"
    );
}

#[test]
fn secret_values_are_masked_in_the_log() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nenv:\n  parameter-store:\n    DB_PASS: /db/pass\nphases:\n  build:\n    commands:\n      - echo \"password is $DB_PASS\"\n      - mkdir -p layer/python && touch layer/python/x.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &["--env", "DB_PASS=s3cr3t-value"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("password is ***"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-value"), "{stderr}");
}

#[test]
fn a_single_zip_artifact_is_the_layer() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p build/python && echo 'X = 1' > build/python/m.py\n      - cd build && zip -q -r ../layer.zip python\nartifacts:\n  files:\n    - layer.zip\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(
        s["status"],
        "SUCCEEDED",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(zip_names(&zip_path(dir.path())), ["python/m.py"]);
}

#[test]
fn sigint_mid_build_removes_the_container_and_writes_no_zip() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python && touch layer/python/x.py\n      - sleep 60\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let template = LAYER_TEMPLATE.replace("test-layer", "sigint-layer");
    std::fs::write(dir.path().join("template.yaml"), template).expect("write template");
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("build-layer")
        .arg("--source")
        .arg(dir.path())
        .arg("--image")
        .arg(support::standin_image())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait until the build container runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    while layer_containers("sigint-layer").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the build container never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill")
        .success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert!(
        layer_containers("sigint-layer").is_empty(),
        "the build container was left behind"
    );
    assert!(!dir.path().join("target/layer/sigint-layer.zip").exists());
}

#[test]
fn the_seed_layer_builds_with_python_at_the_zip_root() {
    if !support::docker_ready() {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let dir = tempfile::tempdir().expect("temp dir");
    for file in [
        "buildspec.yml",
        "template.yaml",
        "python-layer/requirements.in",
        "python-layer/locks/python3.9-x86_64.txt",
        "python-layer/get_uv.py",
    ] {
        let to = dir.path().join(file);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(root.join(file), &to).expect("copy project file");
    }
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(
        s["status"],
        "SUCCEEDED",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A new project has an empty cache: uv came from get_uv.py, not from the pip fallback.
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("python-layer/get_uv.py") && !log.contains("get_uv.py: "),
        "{log}"
    );
    let zip = dir.path().join("target/layer/python-deps.zip");
    let names = zip_names(&zip);
    assert!(
        names.iter().all(|n| n.starts_with("python/")),
        "entries outside python/"
    );
    for module in [
        "python/pandas/__init__.py",
        "python/requests/__init__.py",
        "python/cfnresponse/__init__.py",
    ] {
        assert!(names.iter().any(|n| n == module), "{module} missing");
    }
    assert!(s["unzipped_bytes"].as_u64().unwrap_or(0) < 262_144_000);
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("target/layer/python-deps.json"))
            .expect("manifest"),
    )
    .expect("manifest json");
    assert_eq!(manifest["verification"]["passed"], true, "{manifest:#}");
    assert_eq!(
        manifest["verification"]["errors"].as_array().map(Vec::len),
        Some(0)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("modules imported, 0 failed"), "{stderr}");
    assert!(
        manifest["content_sha256"]
            .as_str()
            .is_some_and(|d| d.len() == 64),
        "{manifest:#}"
    );

    // Built again from scratch into another out-dir: the same layer, by `compare`.
    let again = dir.path().join("again");
    let again_arg = again.display().to_string();
    let output = build_layer(dir.path(), &["--force", "--out-dir", &again_arg]);
    assert_eq!(summary(&output)["status"], "SUCCEEDED");
    let first = dir.path().join("target/layer/python-deps.json");
    let compared = compare(&first, &again.join("python-deps.json"));
    let report = String::from_utf8_lossy(&compared.stdout);
    assert_eq!(compared.status.code(), Some(0), "{report}");
    assert!(report.starts_with("identical: content sha256 "), "{report}");
}

fn compare(a: &Path, b: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("compare")
        .args([a, b])
        .output()
        .expect("run xtask compare")
}

#[test]
fn compare_names_what_differs_and_refuses_a_zip_its_manifest_does_not_describe() {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = xtask::artifacts::zip::ZipOptions::default();
    let mut zips = Vec::new();
    for (name, content) in [("a", "one"), ("b", "two")] {
        let tree = dir.path().join(format!("tree-{name}"));
        std::fs::create_dir_all(tree.join("python")).expect("mkdir");
        std::fs::write(tree.join("python/m.py"), content).expect("write");
        let zip = dir.path().join(format!("{name}.zip"));
        xtask::artifacts::zip::write_zip(&tree, &zip, &options).expect("zip");
        zips.push(zip);
    }
    let output = compare(&zips[0], &zips[1]);
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(
        report.starts_with("different: 1 path differs") && report.contains("python/m.py"),
        "{report}"
    );
    let output = compare(&zips[0], &dir.path().join("missing.zip"));
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("missing.zip"), "{stderr}");
}

#[test]
fn a_layer_that_fails_verification_fails_the_build_and_is_marked_in_the_manifest() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python/broken layer/python/broken-1.0.dist-info\n      - echo \"raise ImportError('boom')\" > layer/python/broken/__init__.py\n      - echo broken > layer/python/broken-1.0.dist-info/top_level.txt\n      - echo 'broken/__init__.py,,' > layer/python/broken-1.0.dist-info/RECORD\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED", "{s:#}");
    assert_eq!(output.status.code(), Some(1));
    let errors = s["errors"].to_string();
    assert!(
        errors.contains("BS310") && errors.contains("boom"),
        "{errors}"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("target/layer/test-layer.json"))
            .expect("manifest"),
    )
    .expect("manifest json");
    assert_eq!(manifest["verification"]["passed"], false);

    let skipped = summary(&build_layer(dir.path(), &["--force", "--no-import-test"]));
    assert_eq!(skipped["status"], "SUCCEEDED", "{skipped:#}");
}

#[test]
fn secondary_artifacts_and_reports_land_in_the_out_dir() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python docs out\n      - echo 'A = 1' > layer/python/a.py\n      - echo hello > docs/readme.txt\n      - echo '<testsuite/>' > out/junit.xml\nreports:\n  unit:\n    base-directory: out\n    files: ['*.xml']\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n  secondary-artifacts:\n    docs:\n      files: ['docs/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(
        s["status"],
        "SUCCEEDED",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        zip_names(&dir.path().join("target/layer/docs.zip")),
        ["docs/readme.txt"]
    );
    assert_eq!(s["secondary_artifacts"][0]["identifier"], "docs");
    let report = dir.path().join("target/layer/reports/unit/junit.xml");
    assert_eq!(
        std::fs::read_to_string(report).expect("report copied"),
        "<testsuite/>\n"
    );
}

#[test]
fn a_python_the_image_does_not_have_fails_with_a_clear_message() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: \"3.11\"\n  build:\n    commands:\n      - echo never\nartifacts:\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let template = LAYER_TEMPLATE.replace("python3.9", "python3.11");
    std::fs::write(dir.path().join("template.yaml"), template).expect("write template");
    let output = build_layer(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("asks for python 3.11") && stderr.contains("cannot switch runtimes"),
        "{stderr}"
    );
    assert!(!stderr.contains("echo never\n"), "{stderr}");
}

#[test]
fn cache_paths_persist_between_builds_unless_disabled() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p /root/.cache/xtask-test layer/python && touch layer/python/x.py\n      - if [ -f /root/.cache/xtask-test/mark ]; then echo cache=warm; else echo cache=cold; fi\n      - echo $CODEBUILD_BUILD_NUMBER > /root/.cache/xtask-test/mark\n      - echo sources-on=$(grep ' /codebuild/output ' /proc/mounts | cut -d' ' -f3)\ncache:\n  paths:\n    - '/root/.cache/xtask-test/**/*'\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let build = |flags: &[&str]| {
        let output = build_layer(dir.path(), flags);
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        let summary = summary(&output);
        assert_eq!(summary["status"], "SUCCEEDED", "{log}");
        (log, summary)
    };
    let (log, first) = build(&[]);
    assert!(log.contains("\ncache=cold\n"), "{log}");
    // The source tree is in memory exactly when the log says so (the Docker machine has room).
    let in_memory = log.contains("/codebuild/output is in memory");
    assert_eq!(log.contains("\nsources-on=tmpfs\n"), in_memory, "{log}");
    let (log, second) = build(&["--force", "--scratch-on-disk"]);
    assert!(log.contains("\ncache=warm\n"), "{log}");
    assert!(
        log.contains("\nsources-on=") && !log.contains("sources-on=tmpfs"),
        "{log}"
    );
    assert_eq!(second["sha256"], first["sha256"]);
    let (log, _) = build(&["--force", "--no-cache"]);
    assert!(log.contains("\ncache=cold\n"), "{log}");
}

#[test]
fn host_proxy_and_ca_are_forwarded_but_aws_credentials_are_not() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo \"proxy=${HTTPS_PROXY:-none} key=${AWS_ACCESS_KEY_ID:-none}\"\n      - if [ -s /tmp/xtask-host-ca/ca-bundle.crt ]; then echo \"ca=$PIP_CERT\"; else echo ca=absent; fi\n      - mkdir -p layer/python && touch layer/python/x.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let run = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .arg("build-layer")
            .arg("--source")
            .arg(dir.path())
            .args(["--image", &support::standin_image(), "--json", "--force"])
            .args(extra)
            .env("HTTPS_PROXY", "http://proxy.invalid:3128")
            .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE12")
            .env("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt")
            .output()
            .expect("run xtask");
        String::from_utf8_lossy(&output.stderr).to_string()
    };
    let forwarded = run(&[]);
    assert!(
        forwarded.contains("proxy=http://proxy.invalid:3128 key=none"),
        "{forwarded}"
    );
    // Whole lines: the command echoed into the log names both outcomes. (The stand-in image
    // sets a PIP_CERT of its own: what counts is the host's copy, and pip pointed at it.)
    assert!(
        forwarded.contains("\nca=/tmp/xtask-host-ca/ca-bundle.crt\n"),
        "{forwarded}"
    );
    let isolated = run(&["--no-host-network-config"]);
    assert!(isolated.contains("proxy=none key=none"), "{isolated}");
    assert!(isolated.contains("\nca=absent\n"), "{isolated}");
}

#[test]
fn a_second_build_of_the_same_layer_fails_at_once() {
    if !support::docker_ready() {
        return;
    }
    let dir = project(SMALL_LAYER, &[("src/mod.py", "VALUE = 1\n")]);
    let out_dir = dir.path().join("target/layer");
    std::fs::create_dir_all(&out_dir).expect("out-dir");
    let lock = std::fs::File::create(out_dir.join(".lock-test-layer")).expect("lock file");
    lock.try_lock().expect("take the lock");
    let output = build_layer(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("another build of this layer is running"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_docker_daemon_is_one_clear_line() {
    let dir = project(SMALL_LAYER, &[("src/mod.py", "VALUE = 1\n")]);
    let output = build_layer_without_docker(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("cannot reach the Docker daemon"),
        "{stderr}"
    );
}

#[test]
fn top_level_run_as_runs_the_commands_as_that_user() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nrun-as: nobody\nphases:\n  build:\n    commands:\n      - echo \"user=$(id -un)\"\n      - mkdir -p layer/python && touch layer/python/x.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("user=nobody"), "{stderr}");
}

#[test]
fn a_phase_with_its_own_run_as_runs_as_that_user() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    run-as: nobody\n    commands:\n      - id -un > /tmp/who\n  post_build:\n    commands:\n      - mkdir -p layer/python && cp /tmp/who layer/python/who.txt && id -un >> layer/python/who.txt\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &["--no-import-test"]);
    let s = summary(&output);
    assert_eq!(
        s["status"],
        "SUCCEEDED",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let zip = std::fs::File::open(zip_path(dir.path())).expect("zip");
    let mut archive = zip::ZipArchive::new(zip).expect("zip");
    let mut who = String::new();
    std::io::Read::read_to_string(
        &mut archive.by_name("python/who.txt").expect("who"),
        &mut who,
    )
    .expect("read");
    assert_eq!(who, "nobody\nroot\n");
}

#[test]
fn resolve_secrets_fetches_parameter_store_and_secrets_manager_values_from_aws() {
    if support::moto_endpoint().is_none() || !support::docker_ready() {
        return;
    }
    let unique = format!("xt-{}-{}", std::process::id(), xtask::util::unix_millis());
    let parameter = format!("/{unique}/db-pass");
    let secret = format!("{unique}/api");
    support::block_on(async {
        let config = xtask::aws::sdk_config(None, None).await;
        aws_sdk_ssm::Client::new(&config)
            .put_parameter()
            .name(&parameter)
            .value("param-value-1")
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("put parameter");
        aws_sdk_secretsmanager::Client::new(&config)
            .create_secret()
            .name(&secret)
            .secret_string(r#"{"token":"secret-token-2"}"#)
            .send()
            .await
            .expect("create secret");
    });
    let spec = format!(
        "version: 0.2\nenv:\n  parameter-store:\n    DB_PASS: {parameter}\n  secrets-manager:\n    TOKEN: {secret}:token\nphases:\n  build:\n    commands:\n      - echo \"db=$DB_PASS token=$TOKEN\"\n      - mkdir -p layer/python\n      - printf '%s %s' \"$DB_PASS\" \"$TOKEN\" > layer/python/values.txt\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n"
    );
    let dir = project(&spec, &[]);
    let output = build_layer(dir.path(), &["--resolve-secrets"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("db=*** token=***"), "{stderr}");
    assert!(
        !stderr.contains("param-value-1") && !stderr.contains("secret-token-2"),
        "{stderr}"
    );
    let file = std::fs::File::open(zip_path(dir.path())).expect("zip");
    let mut archive = zip::ZipArchive::new(file).expect("read zip");
    let mut values = String::new();
    std::io::Read::read_to_string(
        &mut archive.by_name("python/values.txt").expect("entry"),
        &mut values,
    )
    .expect("read entry");
    assert_eq!(values, "param-value-1 secret-token-2");
}

#[test]
fn running_out_of_space_in_memory_points_to_scratch_on_disk() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo cp write error, No space left on device && false\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert_eq!(
        log.contains("hint: the source tree is in memory"),
        log.contains("/codebuild/output is in memory"),
        "{log}"
    );
    let on_disk = build_layer(dir.path(), &["--scratch-on-disk"]);
    let log = String::from_utf8_lossy(&on_disk.stderr);
    assert!(!log.contains("hint: the source tree is in memory"), "{log}");
}

#[test]
fn without_the_cache_a_cache_path_keeps_what_the_image_has_there() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - test -d /etc/ssl/certs && echo image-files=visible\n      - mkdir -p /root/.cache/fresh layer/python && touch layer/python/x.py\n      - ls -A /root/.cache/fresh | wc -l | sed 's/^/fresh-entries=/'\ncache:\n  paths:\n    - '/etc/ssl/**/*'\n    - '/root/.cache/fresh/**/*'\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &["--no-cache"]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("\nimage-files=visible\n"), "{log}");
    assert!(log.contains("\nfresh-entries=0\n"), "{log}");
}
