//! `build-layer --remote` against a CodeBuild stand-in (`scripts/codebuild-standin.py`, which
//! runs each started build with the local Docker executor, logs to moto's CloudWatch Logs and
//! uploads the artifact to moto's S3): the remote layer is the local layer (`compare`), deploy
//! publishes it, a failing remote build fails as a local one does, Ctrl-C stops it, and a missing
//! project is one line.

use crate::build_layer::{summary, LAYER_TEMPLATE};
use crate::support;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The stand-in CodeBuild, answering for one project; stopped when dropped.
struct CodeBuild {
    child: Child,
    endpoint: String,
}

impl CodeBuild {
    fn start(project: &str) -> CodeBuild {
        CodeBuild::start_with(project, &[])
    }

    fn start_with(project: &str, flags: &[&str]) -> CodeBuild {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("root");
        let python = std::env::var("LAYER_TEST_PYTHON").unwrap_or_else(|_| {
            root.join("target/moto-venv/bin/python")
                .display()
                .to_string()
        });
        let mut child = Command::new(python)
            .arg(root.join("scripts/codebuild-standin.py"))
            .args(["--xtask", env!("CARGO_BIN_EXE_xtask"), "--project", project])
            .args(flags)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the CodeBuild stand-in");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the stand-in's port");
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("the stand-in said {line:?}"))
            .to_string();
        CodeBuild {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for CodeBuild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_nanos());
    format!("xt-{tag}-{}-{:x}", std::process::id(), nanos % (1 << 40))
}

/// A project whose layer is `name`, with `buildspec`, and a bucket for it in moto.
fn project(name: &str, buildspec: &str) -> (tempfile::TempDir, String) {
    let dir = crate::build_layer::project(buildspec, &[]);
    let template = LAYER_TEMPLATE.replace("test-layer", name);
    std::fs::write(dir.path().join("template.yaml"), template).expect("template");
    let bucket = unique("remote");
    support::block_on(async {
        let config = xtask::aws::sdk_config(None, None).await;
        xtask::aws::s3_client(&config)
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
    });
    (dir, bucket)
}

fn xtask(codebuild: &CodeBuild, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
    command
        .args(args)
        .env("AWS_ENDPOINT_URL_CODEBUILD", &codebuild.endpoint);
    command
}

/// `build-layer --remote --bucket BUCKET --source DIR --image IMAGE --json`, then `extra`.
fn remote_command(
    codebuild: &CodeBuild,
    dir: &Path,
    bucket: &str,
    image: &str,
    extra: &[&str],
) -> Command {
    let source = dir.display().to_string();
    let mut args = vec![
        "build-layer",
        "--remote",
        "--bucket",
        bucket,
        "--source",
        &source,
        "--image",
        image,
        "--json",
    ];
    args.extend(extra);
    xtask(codebuild, &args)
}

fn remote_build(codebuild: &CodeBuild, dir: &Path, bucket: &str, extra: &[&str]) -> Output {
    let image = support::standin_image();
    remote_command(codebuild, dir, bucket, &image, extra)
        .output()
        .expect("run xtask")
}

/// The same build here: `build-layer --json --image <stand-in> --source DIR --out-dir OUT`.
fn local_build(dir: &Path, out_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "build-layer",
            "--json",
            "--image",
            &support::standin_image(),
        ])
        .arg("--source")
        .arg(dir)
        .arg("--out-dir")
        .arg(out_dir)
        .output()
        .expect("local build")
}

/// A build's stderr up to the first line that holds `marker`.
fn read_until(stderr: &mut impl BufRead, marker: &str) -> String {
    let mut seen = String::new();
    while !seen.contains(marker) {
        let mut line = String::new();
        if stderr.read_line(&mut line).expect("read") == 0 {
            panic!("the build ended before {marker:?}:\n{seen}");
        }
        seen.push_str(&line);
    }
    seen
}

/// SIGINT to `child`, which must exit 130 within 30 s; the rest of its stderr.
fn interrupt(child: &mut Child, stderr: &mut impl BufRead, seen: &str) -> String {
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status();
    assert!(killed.expect("kill").success());
    let started = Instant::now();
    let mut rest = String::new();
    std::io::Read::read_to_string(stderr, &mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130), "{seen}{rest}");
    assert!(started.elapsed() < Duration::from_secs(30));
    rest
}

const LAYER_SPEC: &str = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python/remote_pkg\n      - echo 'VALUE = 42' > layer/python/remote_pkg/__init__.py\n      - echo \"built in $CODEBUILD_BUILD_ID with GREETING=$GREETING\"\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";

fn ready() -> bool {
    support::docker_ready() && support::moto_endpoint().is_some()
}

#[test]
fn a_remote_build_is_the_local_layer_and_deploy_publishes_it() {
    if !ready() {
        return;
    }
    let name = unique("rl");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let (dir, bucket) = project(&name, LAYER_SPEC);
    let output = remote_build(
        &codebuild,
        dir.path(),
        &bucket,
        &["--env", "GREETING=hello"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let remote = summary(&output);
    assert_eq!(remote["status"], "SUCCEEDED", "{remote:#}\n{stderr}");
    // The build's log came through CloudWatch Logs, with the --env override applied there.
    assert!(stderr.contains("with GREETING=hello"), "{stderr}");
    assert!(stderr.contains("started arn:aws:codebuild:"), "{stderr}");
    // Verified as a local build is: the import test ran here, in the same image.
    assert!(stderr.contains("1 modules imported, 0 failed"), "{stderr}");
    let phases = remote["phases"].to_string();
    assert!(
        phases.contains("\"BUILD\"") && phases.contains("SUCCEEDED"),
        "{phases}"
    );
    let manifest_path = dir.path().join(format!("target/layer/{name}.json"));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["built_by"]["project"], format!("{name}-layer"));

    // The same build here: the same layer.
    let local_out = dir.path().join("local");
    let local = local_build(dir.path(), &local_out);
    assert_eq!(summary(&local)["status"], "SUCCEEDED");
    let compared = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("compare")
        .arg(&manifest_path)
        .arg(local_out.join(format!("{name}.json")))
        .output()
        .expect("compare");
    let report = String::from_utf8_lossy(&compared.stdout);
    assert_eq!(compared.status.code(), Some(0), "{report}");
    // The two out-dirs, as the workflow compares them: each holds one manifest.
    let compared = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("compare")
        .arg(dir.path().join("target/layer"))
        .arg(&local_out)
        .output()
        .expect("compare");
    let report = String::from_utf8_lossy(&compared.stdout);
    assert_eq!(compared.status.code(), Some(0), "{report}");
    let empty = tempfile::tempdir().expect("temp dir");
    let compared = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("compare")
        .arg(&local_out)
        .arg(empty.path())
        .output()
        .expect("compare");
    let stderr = String::from_utf8_lossy(&compared.stderr);
    assert_eq!(compared.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds no build manifest"), "{stderr}");

    // deploy does not care where it ran; the second deploy is up to date.
    let template = dir.path().join("template.yaml").display().to_string();
    let out_dir = dir.path().join("target/layer").display().to_string();
    let deploy = |codebuild: &CodeBuild| {
        let output = xtask(
            codebuild,
            &[
                "deploy",
                "--template",
                &template,
                "--out-dir",
                &out_dir,
                "--json",
            ],
        )
        .output()
        .expect("deploy");
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str::<serde_json::Value>(&text).expect("deploy json")
    };
    assert_eq!(deploy(&codebuild)["status"], "published");
    assert_eq!(deploy(&codebuild)["status"], "up_to_date");
}

#[test]
fn without_flags_the_bucket_and_project_come_from_the_codebuild_stack() {
    if !ready() {
        return;
    }
    let name = unique("ro");
    let project_name = format!("{name}-standin");
    let codebuild = CodeBuild::start(&project_name);
    let (dir, _) = project(&name, LAYER_SPEC);
    let bucket = unique("ro-bucket");
    // The stack deploy-stack makes from codebuild.yml, with its outputs (made with CreateStack:
    // moto gives stacks made through change sets no outputs).
    support::block_on(async {
        let config = xtask::aws::sdk_config(None, None).await;
        let parameter = |key: &str, value: &str| {
            aws_sdk_cloudformation::types::Parameter::builder()
                .parameter_key(key)
                .parameter_value(value)
                .build()
        };
        aws_sdk_cloudformation::Client::new(&config)
            .create_stack()
            .stack_name(format!("{name}-codebuild"))
            .template_body(crate::stack::TEMPLATE)
            .parameters(parameter("BucketName", &bucket))
            .parameters(parameter("ProjectName", &project_name))
            .send()
            .await
            .expect("create the stack");
    });
    let source = dir.path().display().to_string();
    let image = support::standin_image();
    let output = xtask(
        &codebuild,
        &[
            "build-layer",
            "--remote",
            "--source",
            &source,
            "--image",
            &image,
            "--json",
        ],
    )
    .output()
    .expect("run xtask");
    let s = summary(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(s["status"], "SUCCEEDED", "{s:#}\n{stderr}");
    assert!(
        stderr.contains(&format!("s3://{bucket}/{name}/remote/sources/")),
        "{stderr}"
    );
}

#[test]
fn an_arm64_build_runs_on_arm_compute() {
    if !ready() || !support::cell_images_ready(&[("3.9", "arm64")]) {
        return;
    }
    let name = unique("ra");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let spec = LAYER_SPEC.replace(
        "echo \"built in $CODEBUILD_BUILD_ID with GREETING=$GREETING\"",
        "echo machine=$(uname -m)",
    );
    let (dir, bucket) = project(&name, &spec);
    let template = dir.path().join("template.yaml");
    let text = std::fs::read_to_string(&template).expect("template");
    std::fs::write(&template, text.replace("[x86_64]", "[arm64]")).expect("template");
    let image = support::cell_image_template()
        .replace("{python}", "3.9")
        .replace("{arch}", "arm64");
    let output = remote_command(&codebuild, dir.path(), &bucket, &image, &[])
        .output()
        .expect("run xtask");
    let s = summary(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(s["status"], "SUCCEEDED", "{s:#}\n{stderr}");
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(format!("target/layer/{name}.json")))
            .expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["architecture"], "arm64");
    // The stand-in ran it as CodeBuild runs ARM_CONTAINER builds: on an aarch64 machine.
    assert!(stderr.contains("machine=aarch64"), "{stderr}");
}

#[test]
fn a_failing_remote_build_fails_as_a_local_one_does() {
    if !ready() {
        return;
    }
    let name = unique("rf");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo about to fail\n      - exit 3\nartifacts:\n  files: ['**/*']\n";
    let (dir, bucket) = project(&name, spec);
    let output = remote_build(&codebuild, dir.path(), &bucket, &[]);
    let s = summary(&output);
    assert_eq!(output.status.code(), Some(1), "{s:#}");
    assert_eq!(s["status"], "FAILED");
    let build = s["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["phase"] == "BUILD").cloned())
        .unwrap_or_else(|| panic!("no BUILD phase: {s:#}"));
    assert_eq!(build["status"], "FAILED");
    assert!(!dir.path().join(format!("target/layer/{name}.zip")).exists());
}

#[test]
fn sigint_stops_the_remote_build() {
    if !ready() {
        return;
    }
    let name = unique("rs");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - echo sleeping\n      - sleep 120\nartifacts:\n  files: ['**/*']\n";
    let (dir, bucket) = project(&name, spec);
    let image = support::standin_image();
    let mut child = remote_command(&codebuild, dir.path(), &bucket, &image, &[])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let seen = read_until(&mut stderr, "sleeping");
    let rest = interrupt(&mut child, &mut stderr, &seen);
    assert!(rest.contains("stopping the CodeBuild build"), "{rest}");
}

#[test]
fn a_project_codebuild_does_not_know_is_one_line() {
    if !ready() {
        return;
    }
    let codebuild = CodeBuild::start("some-other-project");
    let (dir, bucket) = project(&unique("rp"), LAYER_SPEC);
    let output = remote_build(
        &codebuild,
        dir.path(),
        &bucket,
        &["--project", "no-such-project"],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    let error = stderr.lines().last().unwrap_or_default();
    assert!(
        error.starts_with("error: ")
            && error.contains("no-such-project")
            && error.contains("codebuild:StartBuild"),
        "{stderr}"
    );
}

/// A project of two runtimes on two architectures, whose build logs and records its cell.
fn matrix_project(name: &str, build: &str) -> (tempfile::TempDir, String) {
    let spec = format!("version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python/remote_pkg\n      - echo \"CELL = '$LAYER_RUNTIME-$(uname -m)'\" > layer/python/remote_pkg/__init__.py\n      - echo \"cell=$LAYER_RUNTIME-$(uname -m)\"\n      - mkdir -p notes && echo \"$LAYER_RUNTIME\" > notes/cell.txt\n{build}artifacts:\n  base-directory: layer\n  files: ['python/**/*']\n  secondary-artifacts:\n    notes:\n      base-directory: notes\n      files: ['*']\n");
    let (dir, bucket) = project(name, &spec);
    let template = dir.path().join("template.yaml");
    let text = std::fs::read_to_string(&template).expect("template");
    let text = text
        .replace("[python3.9]", "[python3.9, python3.13]")
        .replace("[x86_64]", "[x86_64, arm64]");
    std::fs::write(&template, text).expect("template");
    (dir, bucket)
}

fn remote_cells(codebuild: &CodeBuild, dir: &Path, bucket: &str, cells: &str) -> Output {
    let image = support::cell_image_template();
    remote_command(codebuild, dir, bucket, &image, &["--cells", cells])
        .output()
        .expect("run xtask")
}

fn cell<'a>(matrix: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    matrix["cells"]
        .as_array()
        .and_then(|cells| cells.iter().find(|c| c["cell"] == id))
        .unwrap_or_else(|| panic!("no cell {id}: {matrix:#}"))
}

#[test]
fn a_remote_matrix_is_one_batch_build_and_each_cell_is_its_local_layer() {
    let cells = [("3.9", "x86_64"), ("3.13", "x86_64"), ("3.9", "arm64")];
    if !ready() || !support::cell_images_ready(&cells) {
        return;
    }
    let name = unique("rm");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let (dir, bucket) = matrix_project(&name, "");
    let ids = "python3.9-x86_64,python3.13-x86_64,python3.9-arm64";
    let output = remote_cells(&codebuild, dir.path(), &bucket, ids);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let matrix = summary(&output);
    assert_eq!(matrix["status"], "SUCCEEDED", "{matrix:#}\n{stderr}");
    // One batch, each cell its own build in its own image and on its architecture's compute.
    assert_eq!(stderr.matches("started the batch ").count(), 1, "{stderr}");
    assert!(!stderr.contains("started arn:aws:codebuild:"), "{stderr}");
    for (id, machine) in [
        ("python3.9-x86_64", "python3.9-x86_64"),
        ("python3.13-x86_64", "python3.13-x86_64"),
        ("python3.9-arm64", "python3.9-aarch64"),
    ] {
        assert_eq!(cell(&matrix, id)["status"], "SUCCEEDED", "{matrix:#}");
        assert!(
            stderr.contains(&format!("[{id}] cell={machine}")),
            "{stderr}"
        );
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join(format!("target/layer/{name}-{id}.json")))
                .expect("the cell's manifest"),
        )
        .expect("json");
        assert_eq!(manifest["built_by"]["project"], format!("{name}-layer"));
        // Its secondary artifact came back too, named after the cell (cells share the out-dir).
        let notes = dir
            .path()
            .join(format!("target/layer/{name}-{id}-notes.zip"));
        let mut archive =
            zip::ZipArchive::new(std::fs::File::open(&notes).expect("notes zip")).expect("zip");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut archive.by_name("cell.txt").expect("cell.txt"),
            &mut text,
        )
        .expect("read");
        assert_eq!(text.trim(), id.split('-').next().unwrap_or_default());
    }
    // Nothing changed: no batch at all the second time.
    let again = remote_cells(&codebuild, dir.path(), &bucket, ids);
    let again_stderr = String::from_utf8_lossy(&again.stderr);
    let matrix = summary(&again);
    assert_eq!(matrix["status"], "SUCCEEDED", "{matrix:#}");
    assert_eq!(
        cell(&matrix, "python3.9-arm64")["up_to_date"],
        true,
        "{matrix:#}"
    );
    assert!(
        !again_stderr.contains("started the batch"),
        "{again_stderr}"
    );
    // A cell of the batch is the layer a local build of that cell makes.
    let local_dir = tempfile::tempdir().expect("temp dir");
    let local_out = local_dir.path();
    let local = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-layer", "--json", "--cells", "python3.13-x86_64"])
        .args(["--image", &support::cell_image_template()])
        .arg("--source")
        .arg(dir.path())
        .arg("--out-dir")
        .arg(local_out)
        .output()
        .expect("local build");
    assert_eq!(summary(&local)["status"], "SUCCEEDED");
    let compared = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("compare")
        .arg(
            dir.path()
                .join(format!("target/layer/{name}-python3.13-x86_64.json")),
        )
        .arg(local_out.join(format!("{name}-python3.13-x86_64.json")))
        .output()
        .expect("compare");
    let report = String::from_utf8_lossy(&compared.stdout);
    assert_eq!(compared.status.code(), Some(0), "{report}");
}

#[test]
fn a_failing_cell_of_the_batch_does_not_hide_the_others() {
    let cells = [("3.9", "x86_64"), ("3.13", "x86_64")];
    if !ready() || !support::cell_images_ready(&cells) {
        return;
    }
    let name = unique("rx");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let (dir, bucket) = matrix_project(&name, "      - test \"$LAYER_PYTHON\" != 3.13\n");
    let output = remote_cells(
        &codebuild,
        dir.path(),
        &bucket,
        "python3.9-x86_64,python3.13-x86_64",
    );
    let matrix = summary(&output);
    assert_eq!(output.status.code(), Some(1), "{matrix:#}");
    assert_eq!(matrix["status"], "FAILED");
    assert_eq!(
        cell(&matrix, "python3.9-x86_64")["status"],
        "SUCCEEDED",
        "{matrix:#}"
    );
    let failed = cell(&matrix, "python3.13-x86_64");
    assert_eq!(failed["status"], "FAILED", "{matrix:#}");
    let build = failed["phases"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["phase"] == "BUILD").cloned())
        .unwrap_or_else(|| panic!("no BUILD phase: {failed:#}"));
    assert_eq!(build["status"], "FAILED");
    assert!(dir
        .path()
        .join(format!("target/layer/{name}-python3.9-x86_64.zip"))
        .exists());
    assert!(!dir
        .path()
        .join(format!("target/layer/{name}-python3.13-x86_64.zip"))
        .exists());
}

#[test]
fn sigint_stops_the_batch_build_and_keeps_the_finished_cells() {
    let cells = [("3.9", "x86_64"), ("3.13", "x86_64")];
    if !ready() || !support::cell_images_ready(&cells) {
        return;
    }
    let name = unique("rz");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let sleep = "      - test \"$LAYER_PYTHON\" != 3.13 || { echo sleeping; sleep 120; }\n";
    let (dir, bucket) = matrix_project(&name, sleep);
    let image = support::cell_image_template();
    let cells = ["--cells", "python3.9-x86_64,python3.13-x86_64"];
    let mut child = remote_command(&codebuild, dir.path(), &bucket, &image, &cells)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let seen = read_until(&mut stderr, "sleeping");
    // The python3.9 cell finishes while python3.13 sleeps.
    let finished = dir
        .path()
        .join(format!("target/layer/{name}-python3.9-x86_64.json"));
    let waiting = Instant::now();
    while !finished.exists() && waiting.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(finished.exists(), "{seen}");
    let rest = interrupt(&mut child, &mut stderr, &seen);
    assert!(rest.contains("stopping the CodeBuild batch"), "{rest}");
    let mut stdout = String::new();
    let mut out = child.stdout.take().expect("stdout");
    std::io::Read::read_to_string(&mut out, &mut stdout).expect("read");
    let matrix: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        cell(&matrix, "python3.9-x86_64")["status"],
        "SUCCEEDED",
        "{matrix:#}"
    );
    assert_eq!(
        cell(&matrix, "python3.13-x86_64")["interrupted"],
        130,
        "{matrix:#}"
    );
}

#[test]
fn a_project_without_batch_builds_is_one_line_per_cell() {
    if !ready() {
        return;
    }
    let name = unique("rn");
    let codebuild = CodeBuild::start_with(&format!("{name}-layer"), &["--no-batch-config"]);
    let (dir, bucket) = matrix_project(&name, "");
    // The cells' images are not needed: the batch is refused before anything runs.
    let output = remote_cells(
        &codebuild,
        dir.path(),
        &bucket,
        "python3.9-x86_64,python3.13-x86_64",
    );
    let matrix = summary(&output);
    assert_eq!(output.status.code(), Some(1), "{matrix:#}");
    for id in ["python3.9-x86_64", "python3.13-x86_64"] {
        let error = cell(&matrix, id)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(error.contains("BuildBatchConfig"), "{matrix:#}");
    }
}

#[test]
fn secondary_artifacts_come_back_as_a_local_build_makes_them() {
    if !ready() {
        return;
    }
    let name = unique("r2");
    let codebuild = CodeBuild::start(&format!("{name}-layer"));
    let spec = LAYER_SPEC.replace(
        "artifacts:\n  base-directory: layer\n  files: ['python/**/*']\n",
        "      - mkdir -p docs && echo 'how to use it' > docs/README.txt\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n  secondary-artifacts:\n    docs:\n      base-directory: docs\n      files: ['**/*']\n",
    );
    assert!(spec.contains("secondary-artifacts"), "{spec}");
    let (dir, bucket) = project(&name, &spec);
    let output = remote_build(&codebuild, dir.path(), &bucket, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let remote = summary(&output);
    assert_eq!(remote["status"], "SUCCEEDED", "{remote:#}\n{stderr}");
    let docs = &remote["secondary_artifacts"][0];
    assert_eq!(docs["identifier"], "docs", "{remote:#}");
    let remote_zip = std::fs::read(docs["zip"].as_str().unwrap_or_default()).expect("docs zip");

    let local_dir = tempfile::tempdir().expect("temp dir");
    let local = local_build(dir.path(), local_dir.path());
    let local = summary(&local);
    assert_eq!(local["status"], "SUCCEEDED", "{local:#}");
    let local_zip = std::fs::read(local_dir.path().join("docs.zip")).expect("local docs zip");
    assert_eq!(remote_zip, local_zip, "the secondary artifact differs");
}
