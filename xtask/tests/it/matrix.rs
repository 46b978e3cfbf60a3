//! Cells: `build-layer --cells` builds the seed layer for python3.13 on x86_64 and python3.9 on
//! arm64 (under QEMU on an x86_64 machine), each verified against its own target, while a cell
//! without a lock fails beside them; a lock made for another cell, or from an older list, is
//! refused; and `cargo xtask lock --check` reproduces the checked-in locks.

use crate::build_layer::{layer_containers, zip_names};
use crate::support;

use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// A copy of the seed project with the locks of `cells` only.
fn seed_project(cells: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut files = vec![
        "buildspec.yml".to_string(),
        "template.yaml".to_string(),
        "python-layer/requirements.in".to_string(),
        "python-layer/get_uv.py".to_string(),
    ];
    files.extend(
        cells
            .iter()
            .map(|cell| format!("python-layer/locks/{cell}.txt")),
    );
    for file in files {
        let to = dir.path().join(&file);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(workspace_root().join(&file), &to).expect("copy project file");
    }
    dir
}

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("run xtask")
}

fn build_cells(dir: &Path, cells: &str) -> Output {
    let source = dir.display().to_string();
    let image = support::cell_image_template();
    xtask(&[
        "build-layer",
        "--source",
        &source,
        "--image",
        &image,
        "--cells",
        cells,
        "--jobs",
        "2",
        "--json",
    ])
}

fn cell<'a>(summary: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    let cells = summary["cells"].as_array().expect("cells");
    cells
        .iter()
        .find(|c| c["cell"] == id)
        .unwrap_or_else(|| panic!("no cell {id} in {summary:#}"))
}

fn manifest(dir: &Path, stem: &str) -> serde_json::Value {
    let path = dir.join(format!("target/layer/{stem}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("manifest")).expect("json")
}

/// The ELF machine (`e_machine`) of the first shared object in the zip: 62 x86-64, 183 AArch64.
fn elf_machine_of_first_shared_object(zip: &Path) -> (String, u16) {
    let name = zip_names(zip)
        .into_iter()
        .find(|n| n.ends_with(".so"))
        .expect("a shared object");
    let mut archive = zip::ZipArchive::new(std::fs::File::open(zip).expect("zip")).expect("zip");
    let mut header = [0u8; 20];
    archive
        .by_name(&name)
        .expect("entry")
        .read_exact(&mut header)
        .expect("ELF header");
    (name, u16::from_le_bytes([header[18], header[19]]))
}

#[test]
fn each_cell_is_verified_for_its_own_target_and_a_failing_cell_hides_no_other() {
    if !support::cell_images_ready(&[("3.13", "x86_64"), ("3.9", "arm64"), ("3.9", "x86_64")]) {
        return;
    }
    // python3.9-x86_64 has no lock in this copy: that cell fails, the others build.
    let dir = seed_project(&["python3.13-x86_64", "python3.9-arm64"]);
    let output = build_cells(
        dir.path(),
        "python3.13-x86_64,python3.9-arm64,python3.9-x86_64",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr:\n{stderr}"));
    assert_eq!(output.status.code(), Some(1), "{summary:#}\n{stderr}");
    assert_eq!(summary["status"], "FAILED");

    let missing = cell(&summary, "python3.9-x86_64");
    assert_eq!(missing["status"], "ERROR", "{missing:#}");
    let error = missing["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no lock for the cell python3.9-x86_64")
            && error.contains("cargo xtask lock --cells python3.9-x86_64"),
        "{error}"
    );

    for (id, runtime, arch, abi, machine) in [
        (
            "python3.13-x86_64",
            "python3.13",
            "x86_64",
            "cpython-313",
            62,
        ),
        ("python3.9-arm64", "python3.9", "arm64", "cpython-39", 183),
    ] {
        let result = cell(&summary, id);
        assert_eq!(result["status"], "SUCCEEDED", "{id}: {result:#}\n{stderr}");
        let stem = format!("python-deps-{id}");
        let zip = dir.path().join(format!("target/layer/{stem}.zip"));
        let names = zip_names(&zip);
        assert!(
            names.iter().any(|n| n == "python/pandas/__init__.py"),
            "{id}"
        );
        assert!(
            names.iter().any(|n| n.ends_with(".so") && n.contains(abi)),
            "{id}: no {abi} extension module"
        );
        let (so, found) = elf_machine_of_first_shared_object(&zip);
        assert_eq!(found, machine, "{id}: {so}");
        let manifest = manifest(dir.path(), &stem);
        assert_eq!(
            manifest["compatible_runtimes"],
            serde_json::json!([runtime])
        );
        assert_eq!(manifest["architecture"], arch);
        assert_eq!(manifest["verification"]["passed"], true, "{manifest:#}");
    }
    // Each cell's log lines are marked with it; the arm64 one ran emulated on an x86_64 machine.
    assert!(stderr.contains("[python3.13-x86_64] "), "{stderr}");
    // A new project's cache is empty: each cell's uv came from get_uv.py (the aarch64 wheel is
    // manylinux_2_28), not from the slow pip fallback.
    for id in ["python3.13-x86_64", "python3.9-arm64"] {
        assert!(
            !stderr.contains(&format!("[{id}] get_uv.py: ")),
            "{id} fell back to pip:\n{stderr}"
        );
    }
    if std::env::consts::ARCH == "x86_64" {
        assert!(
            stderr.contains(
                "[python3.9-arm64] arm64 build on this x86_64 Docker machine: emulated by QEMU"
            ),
            "{stderr}"
        );
    }
    assert!(!dir
        .path()
        .join("target/layer/python-deps-python3.9-x86_64.zip")
        .exists());
}

#[test]
fn a_multi_runtime_layer_holds_each_runtime_in_its_own_site_packages() {
    if !support::cell_images_ready(&[("3.9", "x86_64"), ("3.13", "x86_64")]) {
        return;
    }
    let dir = seed_project(&["python3.9-x86_64", "python3.13-x86_64"]);
    let source = dir.path().display().to_string();
    let image = support::cell_image_template();
    let output = xtask(&[
        "build-layer",
        "--source",
        &source,
        "--image",
        &image,
        "--cells",
        "python3.9-x86_64,python3.13-x86_64",
        "--multi-runtime",
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}); stderr:\n{stderr}"));
    assert!(output.status.success(), "{summary:#}\n{stderr}");
    let combined = &summary["multi_runtime"][0];
    assert_eq!(combined["status"], "SUCCEEDED", "{summary:#}");
    assert_eq!(combined["architecture"], "x86_64");

    let zip = dir.path().join("target/layer/python-deps-x86_64.zip");
    let names = zip_names(&zip);
    for (version, abi) in [("3.9", "cpython-39"), ("3.13", "cpython-313")] {
        let site = format!("python/lib/python{version}/site-packages/");
        assert!(
            names.contains(&format!("{site}pandas/__init__.py")),
            "no pandas for {version}"
        );
        // Each runtime's directory holds only extension modules for its own ABI.
        let foreign = names
            .iter()
            .filter(|n| n.starts_with(&site) && n.contains("cpython-3") && !n.contains(abi))
            .collect::<Vec<_>>();
        assert!(foreign.is_empty(), "{version}: {foreign:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("python/lib/python3.9/site-packages/")
                || n.starts_with("python/lib/python3.13/site-packages/")
                || n.ends_with('/')),
        "content outside the versioned site-packages"
    );
    let manifest = manifest(dir.path(), "python-deps-x86_64");
    assert_eq!(
        manifest["compatible_runtimes"],
        serde_json::json!(["python3.9", "python3.13"])
    );
    assert_eq!(manifest["architecture"], "x86_64");
    assert_eq!(manifest["verification"]["passed"], true, "{manifest:#}");
    assert_eq!(manifest["zip"], "python-deps-x86_64.zip");
}

#[test]
fn sigint_stops_a_matrix_and_no_further_cell_starts() {
    if !support::cell_images_ready(&[("3.9", "x86_64"), ("3.13", "x86_64")]) {
        return;
    }
    let spec = "version: 0.2\nphases:\n  build:\n    commands:\n      - mkdir -p layer/python && touch layer/python/x.py\n      - sleep 60\nartifacts:\n  base-directory: layer\n  files: ['python/**/*']\n";
    let dir = crate::build_layer::project(spec, &[]);
    let template = crate::build_layer::LAYER_TEMPLATE.replace("test-layer", "sigint-matrix");
    std::fs::write(dir.path().join("template.yaml"), template).expect("write template");
    let image = support::cell_image_template();
    let child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["build-layer", "--image", &image, "--jobs", "1", "--json"])
        .args(["--cells", "python3.9-x86_64,python3.13-x86_64", "--source"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let first = "sigint-matrix-python3.9-x86_64";
    let deadline = Instant::now() + Duration::from_secs(60);
    while layer_containers(first).is_empty() {
        assert!(Instant::now() < deadline, "the first cell never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status();
    assert!(killed.expect("kill").success());
    let started = Instant::now();
    let output = child.wait_with_output().expect("wait");
    assert_eq!(output.status.code(), Some(130));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the matrix went on for {:?} after SIGINT",
        started.elapsed()
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("[python3.13-x86_64] [Container]"),
        "a cell started after the signal:\n{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(
        cell(&summary, "python3.13-x86_64")["interrupted"],
        130,
        "{summary:#}"
    );
    for stem in [first, "sigint-matrix-python3.13-x86_64"] {
        assert!(layer_containers(stem).is_empty(), "{stem} left a container");
    }
}

#[test]
fn a_lock_made_for_another_cell_or_an_older_list_is_refused() {
    if !support::cell_images_ready(&[("3.13", "x86_64")]) {
        return;
    }
    let dir = seed_project(&[]);
    let locks = dir.path().join("python-layer/locks");
    std::fs::create_dir_all(&locks).expect("mkdir");
    std::fs::copy(
        workspace_root().join("python-layer/locks/python3.9-x86_64.txt"),
        locks.join("python3.13-x86_64.txt"),
    )
    .expect("copy lock");
    let output = build_cells(dir.path(), "python3.13-x86_64");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let error = cell(&summary, "python3.13-x86_64")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("python-layer/locks/python3.13-x86_64.txt:2:1: error: this lock is for the cell python3.9-x86_64, not python3.13-x86_64"),
        "{error}"
    );

    // The right cell's lock, but requirements.in changed since.
    std::fs::copy(
        workspace_root().join("python-layer/locks/python3.13-x86_64.txt"),
        locks.join("python3.13-x86_64.txt"),
    )
    .expect("copy lock");
    let input = dir.path().join("python-layer/requirements.in");
    let mut text = std::fs::read_to_string(&input).expect("requirements.in");
    text.push_str("six\n");
    std::fs::write(&input, text).expect("write requirements.in");
    let output = build_cells(dir.path(), "python3.13-x86_64");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let error = cell(&summary, "python3.13-x86_64")["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains(":3:1: error: the lock is older than"),
        "{error}"
    );
    assert!(!dir
        .path()
        .join("target/layer")
        .join("python-deps-python3.13-x86_64.zip")
        .exists());
}

#[test]
fn the_checked_in_locks_are_what_the_lock_command_makes() {
    if !support::cell_images_ready(&[("3.9", "x86_64"), ("3.13", "x86_64")]) {
        return;
    }
    let dir = seed_project(&["python3.9-x86_64", "python3.13-x86_64"]);
    let source = dir.path().display().to_string();
    let image = support::cell_image_template();
    let output = xtask(&[
        "lock",
        "--source",
        &source,
        "--image",
        &image,
        "--cells",
        "python3.9-x86_64,python3.13-x86_64",
        "--check",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("python3.9-x86_64: python-layer/locks/python3.9-x86_64.txt is up to date")
            && stdout.contains(
                "python3.13-x86_64: python-layer/locks/python3.13-x86_64.txt is up to date"
            ),
        "{stdout}"
    );

    // A stale lock is reported, and --check writes nothing.
    let lock = dir.path().join("python-layer/locks/python3.13-x86_64.txt");
    let edited = std::fs::read_to_string(&lock)
        .expect("lock")
        .replace("six==", "six==0.0.0\n# was six==");
    std::fs::write(&lock, &edited).expect("edit lock");
    let output = xtask(&[
        "lock",
        "--source",
        &source,
        "--image",
        &image,
        "--cells",
        "python3.13-x86_64",
        "--check",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stdout).contains("is missing or stale"));
    assert_eq!(std::fs::read_to_string(&lock).expect("lock"), edited);
}
