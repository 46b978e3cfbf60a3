//! `cargo xtask deploy` against a local moto server (S3 + Lambda): idempotence, inline and S3
//! (multipart) uploads, dry runs, and the one-line errors. Each test uses its own layer name and
//! bucket, so they run in parallel. The error cases that fail before any AWS call need no moto.

use crate::support;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;
use xtask::deploy::{Deploy, Outcome, Status};
use xtask::manifest::{Manifest, Verification, MANIFEST_VERSION};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    deploy: Deploy,
}

/// A unique, valid layer and bucket name: lower case, at most 63 characters.
fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_nanos());
    format!("xt-{tag}-{}-{:x}", std::process::id(), nanos % (1 << 40))
}

/// A temp directory with a template, and an out-dir where the "build" writes a zip + manifest.
struct Fixture {
    dir: tempfile::TempDir,
    name: String,
}

impl Fixture {
    fn new(tag: &str) -> Fixture {
        Self::with_description(tag, "test layer for deploy")
    }

    fn with_description(tag: &str, description: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let name = unique(tag);
        let template = format!(
            "Parameters:\n  LayerName:\n    Type: String\n    Default: {name}\nResources:\n  \
             Layer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      LayerName: \
             !Ref LayerName\n      Description: '{description}'\n      ContentUri: python-layer/\n      \
             CompatibleRuntimes:\n        - python3.9\n      CompatibleArchitectures: [x86_64]\n      \
             LicenseInfo: MIT\n"
        );
        std::fs::write(dir.path().join("template.yaml"), template).unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        Fixture { dir, name }
    }

    fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn zip_path(&self) -> PathBuf {
        self.out_dir().join(format!("{}.zip", self.name))
    }

    fn manifest_path(&self) -> PathBuf {
        self.out_dir().join(format!("{}.json", self.name))
    }

    /// "Builds" the layer: one stored (uncompressed) file, then the manifest for it.
    fn build(&self, content: &[u8]) -> Manifest {
        self.build_as(&self.name.clone(), "python3.9", "x86_64", content)
    }

    /// "Builds" one cell of a matrix (`<name>-<runtime>-<arch>.zip`, as build-layer names it).
    fn build_cell(&self, runtime: &str, arch: &str, content: &[u8]) -> Manifest {
        let stem = format!("{}-{runtime}-{arch}", self.name);
        self.build_as(&stem, runtime, arch, content)
    }

    fn build_as(&self, stem: &str, runtime: &str, arch: &str, content: &[u8]) -> Manifest {
        self.build_for(stem, &[runtime], arch, content)
    }

    /// "Builds" with `build-layer --multi-runtime` (`<name>-<arch>.zip`, every runtime in it).
    fn build_multi_runtime(&self, runtimes: &[&str], arch: &str, content: &[u8]) -> Manifest {
        let stem = format!("{}-{arch}", self.name);
        self.build_for(&stem, runtimes, arch, content)
    }

    fn build_for(&self, stem: &str, runtimes: &[&str], arch: &str, content: &[u8]) -> Manifest {
        let zip_path = self.out_dir().join(format!("{stem}.zip"));
        write_zip(&zip_path, content);
        let (sha256, code_sha256, size) = xtask::artifacts::zip::hash_file(&zip_path).unwrap();
        let manifest = Manifest {
            manifest_version: MANIFEST_VERSION,
            layer_name: self.name.clone(),
            zip: format!("{stem}.zip"),
            sha256,
            code_sha256,
            content_sha256: None,
            zip_writer: None,
            zipped_bytes: size,
            unzipped_bytes: content.len() as u64,
            file_count: 1,
            compatible_runtimes: runtimes.iter().map(|r| r.to_string()).collect(),
            architecture: arch.into(),
            image: "test".into(),
            image_id: "sha256:test".into(),
            build_key: "test".into(),
            git_revision: None,
            built_at: "2026-01-01T00:00:00Z".into(),
            verification: Verification {
                passed: true,
                ..Default::default()
            },
            built_by: None,
        };
        manifest
            .write(&self.out_dir().join(format!("{stem}.json")))
            .unwrap();
        manifest
    }

    fn deploy(&self, extra: &[&str]) -> anyhow::Result<Outcome> {
        support::block_on(self.cli(extra).deploy.execute())
    }

    /// `deploy --cells …`: each cell's outcome.
    fn deploy_cells(&self, cells: &str) -> Vec<(String, anyhow::Result<Outcome>)> {
        let cli = self.cli(&["--cells", cells]);
        support::block_on(cli.deploy.execute_cells()).unwrap()
    }

    fn cli(&self, extra: &[&str]) -> Cli {
        let out_dir = self.out_dir();
        let template = self.dir.path().join("template.yaml");
        let samconfig = self.dir.path().join("no-samconfig.toml");
        let mut args: Vec<String> = vec![
            "deploy".into(),
            "--out-dir".into(),
            out_dir.display().to_string(),
            "--template".into(),
            template.display().to_string(),
            "--samconfig".into(),
            samconfig.display().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        Cli::try_parse_from(args).unwrap()
    }
}

fn write_zip(path: &Path, content: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .large_file(content.len() > u32::MAX as usize / 2);
    zip.start_file("python/data.bin", options).unwrap();
    zip.write_all(content).unwrap();
    zip.finish().unwrap();
}

/// Incompressible bytes (xorshift), so a stored zip is as big as asked.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

async fn clients() -> (aws_sdk_s3::Client, aws_sdk_lambda::Client) {
    let config = xtask::aws::sdk_config(None, None).await;
    (
        xtask::aws::s3_client(&config),
        xtask::aws::lambda_client(&config),
    )
}

/// Creates a bucket in the environment's region (us-east-1 under scripts/test.sh).
fn create_bucket(name: &str) {
    support::block_on(async {
        let (s3, _) = clients().await;
        s3.create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    });
}

/// `(key, size)` of every object in the bucket.
fn objects(bucket: &str) -> Vec<(String, i64)> {
    support::block_on(async {
        let (s3, _) = clients().await;
        let listing = s3.list_objects_v2().bucket(bucket).send().await.unwrap();
        listing
            .contents()
            .iter()
            .map(|o| {
                (
                    o.key().unwrap_or_default().to_string(),
                    o.size().unwrap_or_default(),
                )
            })
            .collect()
    })
}

fn layer_versions(name: &str) -> Vec<i64> {
    support::block_on(async {
        let (_, lambda) = clients().await;
        let listed = lambda
            .list_layer_versions()
            .layer_name(name)
            .send()
            .await
            .unwrap();
        listed
            .layer_versions()
            .iter()
            .map(|v| v.version())
            .collect()
    })
}

fn error_of(result: anyhow::Result<Outcome>) -> String {
    match result {
        Ok(outcome) => panic!("expected an error, got {outcome:?}"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn first_deploy_is_version_1_same_zip_is_up_to_date_changed_zip_is_version_2() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let fixture = Fixture::new("idem");
    let manifest = fixture.build(b"first content");
    let first = fixture.deploy(&[]).unwrap();
    assert_eq!(first.status, Status::Published, "{first:?}");
    assert_eq!(first.version, Some(1));
    assert_eq!(first.bytes_uploaded, manifest.zipped_bytes);
    assert_eq!(first.upload.as_ref().unwrap().method, "inline");
    assert_eq!(first.code_sha256, manifest.code_sha256);
    assert_eq!(first.code_size, manifest.zipped_bytes);
    assert_eq!(first.description.as_deref(), Some("test layer for deploy"));
    assert!(first
        .layer_version_arn
        .as_deref()
        .unwrap()
        .ends_with(&format!(":layer:{}:1", fixture.name)));

    // moto reports CodeSha256 like AWS: base64 of the raw SHA-256 digest.
    let got = support::block_on(async {
        let (_, lambda) = clients().await;
        lambda
            .get_layer_version()
            .layer_name(&fixture.name)
            .version_number(1)
            .send()
            .await
            .unwrap()
    });
    let content = got.content().unwrap();
    assert_eq!(content.code_sha256(), Some(manifest.code_sha256.as_str()));
    assert_eq!(got.description(), Some("test layer for deploy"));
    assert_eq!(got.license_info(), Some("MIT"));
    assert_eq!(got.compatible_runtimes().len(), 1);

    let again = fixture.deploy(&["--yes"]).unwrap();
    assert_eq!(again.status, Status::UpToDate, "{again:?}");
    assert_eq!(again.version, Some(1));
    assert_eq!(again.bytes_uploaded, 0);
    assert!(
        again.human().starts_with("up to date: arn:"),
        "{}",
        again.human()
    );
    assert_eq!(layer_versions(&fixture.name), [1]);

    fixture.build(b"second content");
    let changed = fixture.deploy(&["--json"]).unwrap();
    assert_eq!(changed.status, Status::Published);
    assert_eq!(changed.version, Some(2));
    assert_eq!(changed.previous_version, Some(1));
    let json = serde_json::to_value(&changed).unwrap();
    assert_eq!(json["status"], "published");
    assert_eq!(json["version"], 2);
}

#[test]
fn force_publishes_and_an_s3_object_is_reused_only_when_proven() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let fixture = Fixture::new("s3");
    let bucket = unique("bucket");
    create_bucket(&bucket);
    let manifest = fixture.build(b"small layer through S3");
    let first = fixture
        .deploy(&["--bucket", &bucket, "--prefix", "/layers/"])
        .unwrap();
    assert_eq!(first.status, Status::Published, "{first:?}");
    assert_eq!(first.version, Some(1));
    assert_eq!(first.bytes_uploaded, manifest.zipped_bytes);
    let key = format!("layers/{}/{}.zip", fixture.name, manifest.sha256);
    let upload = first.upload.as_ref().unwrap();
    assert_eq!(
        (upload.method, upload.key.as_deref(), upload.parts),
        ("s3", Some(key.as_str()), 1)
    );
    assert_eq!(
        objects(&bucket),
        [(key.clone(), manifest.zipped_bytes as i64)]
    );

    let forced = fixture
        .deploy(&["--bucket", &bucket, "--prefix", "layers", "--force"])
        .unwrap();
    assert_eq!(forced.status, Status::Published, "{forced:?}");
    assert_eq!(forced.version, Some(2));
    // moto keeps no checksums, so nothing proves the object holds these bytes (its size and
    // metadata do not): it is uploaded again. With S3's SHA-256 checksum it is not (s3.rs tests).
    assert_eq!(forced.bytes_uploaded, manifest.zipped_bytes);
    assert!(!forced.upload.as_ref().unwrap().already_in_s3);
    assert_eq!(layer_versions(&fixture.name).len(), 2);
}

#[test]
fn a_zip_over_50_mb_goes_through_s3_multipart() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let fixture = Fixture::new("big");
    let manifest = fixture.build(&random_bytes(52_428_800 + 1_048_576, 7));
    assert!(manifest.zipped_bytes > xtask::deploy::INLINE_LIMIT);

    let without_bucket = error_of(fixture.deploy(&[]));
    assert!(without_bucket.contains("--bucket"), "{without_bucket}");

    let bucket = unique("big");
    create_bucket(&bucket);
    let outcome = fixture.deploy(&["--bucket", &bucket, "--json"]).unwrap();
    assert_eq!(outcome.status, Status::Published, "{outcome:?}");
    assert_eq!(outcome.version, Some(1));
    assert_eq!(outcome.bytes_uploaded, manifest.zipped_bytes);
    assert_eq!(outcome.upload.as_ref().unwrap().parts, 4);
    let key = format!("{}/{}.zip", fixture.name, manifest.sha256);
    assert_eq!(
        objects(&bucket),
        [(key.clone(), manifest.zipped_bytes as i64)]
    );
    let head = support::block_on(async {
        let (s3, _) = clients().await;
        s3.head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
    });
    let etag = head
        .e_tag()
        .unwrap_or_default()
        .trim_matches('"')
        .to_string();
    assert!(
        etag.ends_with("-4"),
        "a multipart upload's ETag ends with -<parts>: {etag}"
    );
    assert_eq!(
        head.metadata()
            .and_then(|m| m.get("sha256"))
            .map(String::as_str),
        Some(manifest.sha256.as_str())
    );

    let again = fixture.deploy(&["--bucket", &bucket]).unwrap();
    assert_eq!(again.status, Status::UpToDate);
    assert_eq!(again.bytes_uploaded, 0);
}

#[test]
fn dry_run_writes_nothing() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let fixture = Fixture::new("dry");
    let bucket = unique("dry");
    create_bucket(&bucket);
    let manifest = fixture.build(b"dry run content");
    let plan = fixture.deploy(&["--bucket", &bucket, "--dry-run"]).unwrap();
    assert_eq!(plan.status, Status::DryRun, "{plan:?}");
    assert_eq!(plan.version, None);
    assert_eq!(plan.bytes_uploaded, 0);
    let upload = plan.upload.as_ref().unwrap();
    assert!(!upload.already_in_s3);
    assert_eq!(
        upload.key.as_deref(),
        Some(format!("{}/{}.zip", fixture.name, manifest.sha256).as_str())
    );
    assert!(
        plan.human().starts_with("dry run: would publish"),
        "{}",
        plan.human()
    );
    assert_eq!(objects(&bucket), []);
    assert_eq!(layer_versions(&fixture.name), Vec::<i64>::new());

    // Once published, a dry run of a changed zip still publishes nothing.
    fixture.deploy(&["--bucket", &bucket]).unwrap();
    fixture.build(b"dry run content, changed");
    let plan = fixture.deploy(&["--bucket", &bucket, "--dry-run"]).unwrap();
    assert_eq!(plan.status, Status::DryRun);
    assert_eq!(plan.previous_version, Some(1));
    assert_eq!(layer_versions(&fixture.name), [1]);
    assert_eq!(objects(&bucket).len(), 1);
}

#[test]
fn a_missing_bucket_is_one_clear_error() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let fixture = Fixture::new("nobucket");
    fixture.build(b"content");
    let bucket = unique("missing");
    let message = error_of(fixture.deploy(&["--bucket", &bucket]));
    assert!(
        message.contains("does not exist") && message.contains(&bucket),
        "{message}"
    );
    assert_eq!(layer_versions(&fixture.name), Vec::<i64>::new());
}

#[test]
fn a_failed_verification_is_refused() {
    let fixture = Fixture::new("failed");
    let mut manifest = fixture.build(b"too big, say");
    manifest.verification = Verification {
        passed: false,
        errors: vec!["unzipped size 300000000 exceeds 262144000".into()],
        warnings: vec![],
    };
    manifest.write(&fixture.manifest_path()).unwrap();
    let message = error_of(fixture.deploy(&["--force"]));
    assert!(
        message.contains("refusing to publish") && message.contains("262144000"),
        "{message}"
    );
}

#[test]
fn a_missing_manifest_names_build_layer() {
    let fixture = Fixture::new("nomanifest");
    let message = error_of(fixture.deploy(&[]));
    assert!(message.contains("cargo xtask build-layer"), "{message}");
}

#[test]
fn a_stale_zip_names_build_layer() {
    let fixture = Fixture::new("stale");
    fixture.build(b"built");
    write_zip(&fixture.zip_path(), b"changed after the build");
    let message = error_of(fixture.deploy(&[]));
    assert!(
        message.contains("stale") && message.contains("cargo xtask build-layer"),
        "{message}"
    );
}

#[test]
fn a_corrupt_manifest_is_one_clear_error() {
    let fixture = Fixture::new("corrupt");
    fixture.build(b"content");
    std::fs::write(fixture.manifest_path(), "{ \"manifest_version\": 1, ").unwrap();
    let message = error_of(fixture.deploy(&[]));
    assert!(
        message.contains("corrupt") && message.contains("build-layer"),
        "{message}"
    );
}

#[test]
fn a_description_over_256_characters_is_refused() {
    let fixture = Fixture::with_description("desc", &"d".repeat(257));
    fixture.build(b"content");
    let message = error_of(fixture.deploy(&[]));
    assert!(
        message.contains("257 characters") && message.contains("256"),
        "{message}"
    );
    let message = error_of(fixture.deploy(&["--description", &"é".repeat(300)]));
    assert!(message.contains("300 characters"), "{message}");
}

#[test]
fn an_invalid_layer_name_is_refused() {
    let fixture = Fixture::new("badname");
    fixture.build(b"content");
    for name in [
        "has space",
        "x".repeat(141).as_str(),
        "arn:aws:lambda:us-east-1:1:layer:x",
    ] {
        let message = error_of(fixture.deploy(&["--layer-name", name]));
        assert!(message.contains("invalid layer name"), "{message}");
    }
}

/// build-layer then deploy, end to end: the real binary, the stand-in build image, moto.
#[test]
fn build_layer_then_deploy_end_to_end() {
    if support::moto_endpoint().is_none() || !support::docker_ready() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let name = unique("e2e");
    let template = format!(
        "Resources:\n  Layer:\n    Type: AWS::Serverless::LayerVersion\n    Properties:\n      \
         LayerName: {name}\n      Description: end to end\n      CompatibleRuntimes: [python3.9]\n      \
         CompatibleArchitectures: [x86_64]\n"
    );
    std::fs::write(dir.path().join("template.yaml"), template).unwrap();
    let buildspec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python/e2e\n      - echo 'OK = True' > layer/python/e2e/__init__.py\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    std::fs::write(dir.path().join("buildspec.yml"), buildspec).unwrap();
    let deploy = || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["deploy", "--build", "--json", "--template"])
            .arg(dir.path().join("template.yaml"))
            .arg("--out-dir")
            .arg(dir.path().join("target/layer"))
            .env("LAYER_BUILD_IMAGE", support::standin_image())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(
            output.status.success(),
            "deploy --build failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_str::<serde_json::Value>(stdout.trim()).unwrap()
    };
    let first = deploy();
    let manifest = Manifest::read(&dir.path().join(format!("target/layer/{name}.json"))).unwrap();
    assert_eq!(layer_versions(&name), [1]);
    assert_eq!(first["code_sha256"], manifest.code_sha256, "{first:#}");
    let second = deploy();
    assert_eq!(
        layer_versions(&name),
        [1],
        "an unchanged layer was published again: {second:#}"
    );
}

#[test]
fn each_cell_is_published_as_its_own_layer_and_a_missing_one_fails_alone() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let fixture = Fixture::new("cells");
    fixture.build_cell("python3.9", "x86_64", b"cp39 x86_64");
    fixture.build_cell("python3.13", "arm64", b"cp313 aarch64");
    let results = fixture.deploy_cells("python3.9-x86_64,python3.13-arm64,python3.12-x86_64");
    let by_cell = |id: &str| {
        let (_, result) = results.iter().find(|(cell, _)| cell == id).unwrap();
        result
    };
    for (id, runtime, arch) in [
        ("python3.9-x86_64", "python3.9", "x86_64"),
        ("python3.13-arm64", "python3.13", "arm64"),
    ] {
        let outcome = by_cell(id)
            .as_ref()
            .unwrap_or_else(|e| panic!("{id}: {e:#}"));
        let published = format!("{}-{}", fixture.name, id.replace('.', "-"));
        assert_eq!(outcome.status, Status::Published, "{id}");
        assert_eq!(outcome.layer_name, published);
        assert_eq!(outcome.compatible_runtimes, [runtime]);
        assert_eq!(outcome.compatible_architectures, [arch]);
        assert_eq!(layer_versions(&published), [1], "{id}");
        let got = support::block_on(async {
            let (_, lambda) = clients().await;
            lambda
                .get_layer_version()
                .layer_name(&published)
                .version_number(1)
                .send()
                .await
                .unwrap()
        });
        assert_eq!(got.compatible_runtimes().len(), 1);
        assert_eq!(got.compatible_runtimes()[0].as_str(), runtime);
        assert_eq!(got.compatible_architectures()[0].as_str(), arch);
    }
    let missing = format!("{:#}", by_cell("python3.12-x86_64").as_ref().unwrap_err());
    assert!(missing.contains("build-layer"), "{missing}");

    // Per cell idempotent: nothing changed, nothing published.
    let again = fixture.deploy_cells("python3.9-x86_64,python3.13-arm64");
    for (id, result) in &again {
        let outcome = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e:#}"));
        assert_eq!(outcome.status, Status::UpToDate, "{id}");
    }
}

#[test]
fn a_multi_runtime_layer_is_published_per_architecture_with_all_its_runtimes() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let fixture = Fixture::new("multi");
    fixture.build_multi_runtime(&["python3.9", "python3.13"], "x86_64", b"both");
    let cli = fixture.cli(&["--multi-runtime"]);
    let results = support::block_on(cli.deploy.execute_cells()).unwrap();
    assert_eq!(results.len(), 1, "one architecture in the template");
    let (unit, result) = &results[0];
    assert_eq!(unit, "multi-runtime x86_64");
    let outcome = result.as_ref().unwrap_or_else(|e| panic!("{e:#}"));
    let published = format!("{}-x86_64", fixture.name);
    assert_eq!(outcome.status, Status::Published);
    assert_eq!(outcome.layer_name, published);
    assert_eq!(outcome.compatible_runtimes, ["python3.9", "python3.13"]);
    assert_eq!(outcome.compatible_architectures, ["x86_64"]);
    let got = support::block_on(async {
        let (_, lambda) = clients().await;
        lambda
            .get_layer_version()
            .layer_name(&published)
            .version_number(1)
            .send()
            .await
            .unwrap()
    });
    let runtimes: Vec<&str> = got
        .compatible_runtimes()
        .iter()
        .map(|r| r.as_str())
        .collect();
    assert_eq!(runtimes, ["python3.9", "python3.13"]);

    let again =
        support::block_on(fixture.cli(&["--multi-runtime"]).deploy.execute_cells()).unwrap();
    let outcome = again[0].1.as_ref().unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(outcome.status, Status::UpToDate);

    // Without a multi-runtime build there is nothing to publish, and the error says how to make one.
    let none = Fixture::new("multi-none");
    let results = support::block_on(none.cli(&["--multi-runtime"]).deploy.execute_cells()).unwrap();
    let error = format!("{:#}", results[0].1.as_ref().unwrap_err());
    assert!(error.contains("build-layer"), "{error}");
}
