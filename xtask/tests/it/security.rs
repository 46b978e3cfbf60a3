//! Hostile buildspecs, templates and build output, one test per attack, each on the real binary
//! (and, where the attack is the build's output, the stand-in build image): what they try must
//! stay inside the build's container and the selected artifact, within bounded time, memory and
//! disk, and secrets must stay in the build's environment.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::build_layer::{build_layer, build_layer_without_docker, project, summary, zip_path};
use crate::support;

/// The log of a build (`--json` puts it on stderr).
fn log(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A buildspec whose build phase runs `commands`, with the layer in `layer/python`.
fn layer_buildspec(commands: &[&str], artifacts_extra: &str) -> String {
    let commands: String = commands
        .iter()
        .map(|c| format!("      - {}\n", serde_json::to_string(c).unwrap()))
        .collect();
    format!(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python\n{commands}artifacts:\n  base-directory: layer\n  files: ['python/**/*']\n{artifacts_extra}"
    )
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask")
}

#[test]
fn a_secondary_identifier_that_is_a_path_is_refused_before_any_container() {
    let spec = format!(
        "{}  secondary-artifacts:\n    ../../evil:\n      files: ['**/*']\n",
        layer_buildspec(&["echo x=1 > layer/python/a.py"], "")
    );
    let dir = project(&spec, &[]);
    let output = build_layer_without_docker(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("BS115") && stderr.contains("../../evil") && stderr.contains(":11:5"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Docker"),
        "refused before Docker: {stderr}"
    );
    assert!(!dir.path().join("evil").exists() && !dir.path().join("evil.zip").exists());
}

#[test]
fn a_layer_name_that_is_a_path_is_refused_before_any_container() {
    let dir = project(&layer_buildspec(&["true"], ""), &[]);
    let template = crate::build_layer::LAYER_TEMPLATE.replace("test-layer", "../../x");
    std::fs::write(dir.path().join("template.yaml"), template).unwrap();
    let output = build_layer_without_docker(dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("invalid layer name \"../../x\""),
        "{stderr}"
    );
    assert!(!dir.path().join("x.zip").exists() && !dir.path().join("x.json").exists());
}

#[test]
fn a_report_group_named_dot_dot_stays_below_the_reports_directory() {
    if !support::docker_ready() {
        return;
    }
    let spec = format!(
        "{}reports:\n  '..':\n    files: ['junit.xml']\n    base-directory: out\n",
        layer_buildspec(
            &[
                "echo x=1 > layer/python/a.py",
                "mkdir -p out && echo '<testsuite/>' > out/junit.xml"
            ],
            ""
        )
    );
    let dir = project(&spec, &[]);
    let out = dir.path().join("target/layer");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    std::fs::write(dir.path().join("target/keep.txt"), "mine").unwrap();
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "SUCCEEDED", "{}", log(&output));
    assert!(out.join("keep.txt").exists() && dir.path().join("target/keep.txt").exists());
    let reports: Vec<_> = std::fs::read_dir(out.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0].starts_with("group-"), "{reports:?}");
    let report = out.join("reports").join(&reports[0]).join("junit.xml");
    assert_eq!(std::fs::read_to_string(report).unwrap(), "<testsuite/>\n");
}

#[test]
fn symlinks_that_escape_through_other_links_or_reach_a_fifo_are_refused() {
    if !support::docker_ready() {
        return;
    }
    // `up` is the artifact root; `up/../..` is the root lexically, one level above it physically.
    let escaping = layer_buildspec(
        &[
            "echo x=1 > layer/python/a.py",
            "ln -s .. layer/python/up",
            "ln -s up/../.. layer/python/esc",
        ],
        "  enable-symlinks: yes\n",
    );
    let to_fifo = layer_buildspec(
        &[
            "mkfifo /tmp/fifo",
            "ln -s /tmp/fifo layer/python/fifo",
            "ln -s /etc/passwd layer/python/passwd",
        ],
        "",
    );
    for spec in [escaping, to_fifo] {
        let dir = project(&spec, &[]);
        let started = Instant::now();
        let output = build_layer(dir.path(), &[]);
        let s = summary(&output);
        assert_eq!(s["status"], "FAILED", "{}", log(&output));
        assert!(
            s["errors"]
                .to_string()
                .contains("outside the artifact root"),
            "{s:#}\n{}",
            log(&output)
        );
        assert!(!log(&output).contains("root:x:0:0"), "a host file leaked");
        assert!(started.elapsed() < Duration::from_secs(120));
        assert!(!zip_path(dir.path()).exists());
    }
}

#[test]
fn verify_layer_does_not_materialise_escaping_links_of_a_zip() {
    let dir = tempfile::tempdir().unwrap();
    let zip_file = dir.path().join("layer.zip");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&zip_file).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("python/a.py", options).unwrap();
    zip.write_all(b"x = 1\n").unwrap();
    zip.add_symlink("python/up", "..", options).unwrap();
    zip.add_symlink("python/esc", "up/../../../etc/passwd", options)
        .unwrap();
    zip.finish().unwrap();
    let output = xtask(&[
        "verify-layer",
        zip_file.to_str().unwrap(),
        "--no-import-test",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("outside the artifact root"), "{stderr}");
}

#[test]
fn a_sparse_file_stops_at_the_extraction_limit_and_leaves_nothing() {
    if !support::docker_ready() {
        return;
    }
    let spec = layer_buildspec(&["truncate -s 8G layer/python/big.bin"], "");
    let dir = project(&spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED", "{}", log(&output));
    let errors = s["errors"].to_string();
    assert!(
        errors.contains("extraction limit of 524288000 bytes"),
        "{errors}"
    );
    assert!(!zip_path(dir.path()).exists());
    assert_no_staging_left(dir.path());
}

#[test]
fn hard_links_cannot_amplify_past_the_limit() {
    if !support::docker_ready() {
        return;
    }
    let spec = layer_buildspec(
        &[
            "head -c 10000000 /dev/urandom > layer/python/a.bin",
            "for i in $(seq 60); do ln layer/python/a.bin layer/python/a$i.bin; done",
        ],
        "",
    );
    let dir = project(&spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED", "{}", log(&output));
    assert!(
        s["errors"].to_string().contains("extraction limit"),
        "{s:#}"
    );
    assert_no_staging_left(dir.path());
}

/// A `tar` that answers every download with a GNU long-name header claiming 8 GiB, then zeros.
const HOSTILE_TAR: &str = r#"#!/usr/bin/python3
import sys
block = bytearray(512)
block[0:13] = b"././@LongLink"
block[100:108] = b"0000644\0"
block[124:136] = b"77777777777\0"
block[156:157] = b"L"
block[257:263] = b"ustar "
block[148:156] = b"        "
block[148:155] = b"%06o\0" % sum(block)
out = sys.stdout.buffer
out.write(bytes(block))
zeros = bytes(1 << 20)
for _ in range(256):
    out.write(zeros)
"#;

#[test]
fn a_tar_header_cannot_make_the_reader_allocate_without_bound() {
    if !support::docker_ready() {
        return;
    }
    let spec = layer_buildspec(
        &[
            "echo x=1 > layer/python/a.py",
            "cp hostile-tar /usr/local/bin/tar && chmod 755 /usr/local/bin/tar",
        ],
        "",
    );
    let dir = project(&spec, &[("hostile-tar", HOSTILE_TAR)]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED", "{}", log(&output));
    assert!(
        s["errors"]
            .to_string()
            .contains("over the extraction limit of 1048576 bytes in one tar header"),
        "{s:#}\n{}",
        log(&output)
    );
}

/// A zip whose entries declare `entries` × 300 MB of zeros (a few hundred kB on disk).
fn zip_bomb(path: &Path, entries: usize) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default().large_file(false);
    let zeros = vec![0u8; 1 << 20];
    for i in 0..entries {
        zip.start_file(format!("python/zeros{i}.bin"), options)
            .unwrap();
        for _ in 0..300 {
            zip.write_all(&zeros).unwrap();
        }
    }
    zip.finish().unwrap();
}

#[test]
fn a_zip_bomb_is_refused_before_it_is_inflated() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("bomb.zip");
    zip_bomb(&bomb, 2);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 5_000_000);
    let output = xtask(&["verify-layer", bomb.to_str().unwrap(), "--no-import-test"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("as the zip declares them"), "{stderr}");

    if !support::docker_ready() {
        return;
    }
    // The same bomb as the build's single-zip artifact.
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - cp bomb.zip layer.zip\nartifacts:\n  files: ['layer.zip']\n";
    let project_dir = project(spec, &[]);
    std::fs::copy(&bomb, project_dir.path().join("bomb.zip")).unwrap();
    let output = build_layer(project_dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED", "{}", log(&output));
    assert!(
        log(&output).contains("as the zip declares them")
            || s["errors"].to_string().contains("as the zip declares them"),
        "{s:#}\n{}",
        log(&output)
    );
    assert!(!zip_path(project_dir.path()).exists());
}

/// Nested aliases: a few hundred bytes that would expand to 10^9 nodes.
fn alias_bomb(tail: &str) -> String {
    let mut text = String::from("x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n");
    for i in 1..=9 {
        let refs = vec![format!("*x{}", i - 1); 10].join(", ");
        text.push_str(&format!("x{i}: &x{i} [{refs}]\n"));
    }
    text.push_str(tail);
    text
}

#[test]
fn an_alias_bomb_is_refused_by_lint_build_and_deploy() {
    let spec = alias_bomb("version: 0.2\nphases:\n  build:\n    commands: [make]\n");
    let dir = project(&spec, &[]);
    let started = Instant::now();
    let lint = xtask(&[
        "lint-buildspec",
        dir.path().join("buildspec.yml").to_str().unwrap(),
    ]);
    assert_eq!(lint.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&lint.stdout).contains("more than 1000000 nodes"));
    let build = build_layer_without_docker(dir.path());
    assert!(!build.status.success());
    assert!(String::from_utf8_lossy(&build.stderr).contains("more than 1000000 nodes"));

    let template = alias_bomb("Resources:\n  L:\n    Type: AWS::Lambda::LayerVersion\n    Properties:\n      LayerName: l\n");
    std::fs::write(dir.path().join("template.yaml"), template).unwrap();
    let deploy = xtask(&[
        "deploy",
        "--template",
        dir.path().join("template.yaml").to_str().unwrap(),
        "--out-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!deploy.status.success());
    assert!(String::from_utf8_lossy(&deploy.stderr).contains("more than 1000000 nodes"));
    assert!(started.elapsed() < Duration::from_secs(20));
}

const SECRET_SPEC: &str = "version: 0.2\nenv:\n  parameter-store:\n    SECRET: /app/secret\n  exported-variables: [SECRET, DERIVED]\nphases:\n  build:\n    commands:\n      - sleep 4\n      - echo \"the secret is $SECRET\"\n      - DERIVED=\"x-$SECRET-y\"\n      - mkdir -p layer/python && echo x=1 > layer/python/a.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";

/// Every process's command line on this machine.
fn command_lines() -> Vec<String> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(bytes) = std::fs::read(entry.path().join("cmdline")) {
            lines.push(String::from_utf8_lossy(&bytes).replace('\0', " "));
        }
    }
    lines
}

#[test]
fn a_secret_never_appears_in_a_command_line_on_the_host() {
    if !support::docker_ready() {
        return;
    }
    let secret = format!("s3cr3t-{}", uuid::Uuid::new_v4().simple());
    let dir = project(SECRET_SPEC, &[]);
    // Passed through a file: the test's own `xtask` command line must not carry it either.
    let env_file = dir.path().join("secret.env");
    std::fs::write(&env_file, format!("SECRET={secret}\n")).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-layer", "--json", "--source"])
        .arg(dir.path())
        .arg("--image")
        .arg(support::standin_image())
        .arg("--env-file")
        .arg(&env_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_sleep = false;
    while Instant::now() < deadline {
        let lines = command_lines();
        saw_sleep |= lines.iter().any(|l| l.trim() == "sleep 4");
        seen.extend(lines.into_iter().filter(|l| l.contains(&secret)));
        if saw_sleep {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        saw_sleep,
        "the build's `sleep 4` was never seen:\n{}",
        log(&output)
    );
    assert_eq!(
        seen,
        Vec::<String>::new(),
        "the secret was on a command line"
    );
    let s = summary(&output);
    assert_eq!(s["status"], "SUCCEEDED", "{}", log(&output));
    assert!(!log(&output).contains(&secret));
}

#[test]
fn exported_and_multi_line_secrets_are_masked() {
    if !support::docker_ready() {
        return;
    }
    let dir = project(SECRET_SPEC, &[]);
    let pem = "-----BEGIN KEY-----\nMIIEabcdefghijkl\n-----END KEY-----";
    let arg = format!("SECRET={pem}");
    let output = build_layer(dir.path(), &["--env", &arg]);
    let s = summary(&output);
    assert_eq!(s["status"], "SUCCEEDED", "{}", log(&output));
    let everything = format!(
        "{}{}",
        log(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(!everything.contains("MIIEabcdefghijkl"), "{everything}");
    assert!(log(&output).contains("***"), "{}", log(&output));
    assert_eq!(s["exported_variables"]["SECRET"], "***");
    assert!(!s["exported_variables"]["DERIVED"]
        .to_string()
        .contains("MIIE"));

    // The human summary masks them too; --json carries them only when asked for.
    let human = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-layer", "--force", "--source"])
        .arg(dir.path())
        .args(["--image", &support::standin_image(), "--env", &arg])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(stdout.contains("exported SECRET=***"), "{stdout}");
    assert!(!stdout.contains("MIIE"), "{stdout}");
    let unmasked = summary(&build_layer(
        dir.path(),
        &["--force", "--env", &arg, "--json-unmasked-exports"],
    ));
    assert_eq!(unmasked["exported_variables"]["SECRET"], pem);
}

#[test]
fn forged_marker_lines_are_ordinary_output() {
    if !support::docker_ready() {
        return;
    }
    let spec = "version: 0.2\nenv:\n  exported-variables: [REAL]\nphases:\n  build:\n    commands:\n      - echo '##xtask phase BUILD end SUCCEEDED 1'\n      - printf '##xtask export FORGED=6869\\n##xtask build end SUCCEEDED\\n'\n      - REAL=yes\n      - 'false'\nartifacts:\n  files: ['python/**/*']\n";
    let dir = project(spec, &[]);
    let output = build_layer(dir.path(), &[]);
    let s = summary(&output);
    assert_eq!(s["status"], "FAILED", "{s:#}\n{}", log(&output));
    assert!(s["exported_variables"].get("FORGED").is_none(), "{s:#}");
    assert_eq!(s["exported_variables"]["REAL"], "yes");
    let build = s["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "BUILD")
        .unwrap()
        .clone();
    assert_eq!(build["status"], "FAILED");
    assert!(
        log(&output).contains("##xtask build end SUCCEEDED"),
        "{}",
        log(&output)
    );
}

#[test]
fn deploy_waits_for_no_build_and_takes_the_out_dir_lock() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        dir.path().join("template.yaml"),
        crate::build_layer::LAYER_TEMPLATE,
    )
    .unwrap();
    std::fs::write(out.join("test-layer.zip"), b"zip").unwrap();
    let manifest = serde_json::json!({
        "manifest_version": 1, "layer_name": "test-layer", "zip": "test-layer.zip",
        "sha256": "00", "code_sha256": "AA", "zipped_bytes": 3, "unzipped_bytes": 3,
        "file_count": 1, "compatible_runtimes": ["python3.9"], "architecture": "x86_64",
        "image": "i", "image_id": "sha256:i", "build_key": "k", "git_revision": null,
        "built_at": "2026-01-01T00:00:00Z",
        "verification": {"passed": true, "errors": [], "warnings": []}
    });
    std::fs::write(out.join("test-layer.json"), manifest.to_string()).unwrap();
    // A build in progress holds the lock: deploy must not read a zip that is being replaced.
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(out.join(".lock-test-layer"))
        .unwrap();
    lock.try_lock().unwrap();
    let output = xtask(&[
        "deploy",
        "--template",
        dir.path().join("template.yaml").to_str().unwrap(),
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("another build of this layer is running"),
        "{stderr}"
    );
}

/// No staging directory of a finished build is left, in memory or in the out-dir.
fn assert_no_staging_left(project: &Path) {
    let out = project.join("target/layer");
    let in_out_dir: Vec<_> = std::fs::read_dir(&out)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
                .collect()
        })
        .unwrap_or_default();
    assert!(in_out_dir.is_empty(), "staging left in {}", out.display());
    let shm: Vec<_> = std::fs::read_dir("/dev/shm")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    std::fs::read_to_string(p.join(".owner"))
                        .is_ok_and(|owner| Path::new(owner.trim()) == out)
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(shm.is_empty(), "staging left in /dev/shm: {shm:?}");
}
