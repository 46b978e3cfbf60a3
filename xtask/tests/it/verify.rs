//! Layer verification against real fixtures: shared objects compiled with gcc here (one needing a
//! glibc 2.34 symbol, one linked against a musl libc), a hand-made aarch64 ELF header, renamed
//! extension modules, wheel metadata, layout mistakes, the `verify-layer` command on a zip, and
//! the import smoke test in the stand-in build image.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::diagnostic::{Diagnostic, Severity};
use xtask::verify::{self, Target};

fn target(runtimes: &[&str], architectures: &[&str]) -> Target {
    Target::new(runtimes, architectures).unwrap()
}

fn write(root: &Path, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, contents).unwrap();
    path
}

/// `(rule id, severity, message)` of each diagnostic.
fn summary(diagnostics: &[Diagnostic]) -> Vec<(&'static str, Severity, String)> {
    diagnostics
        .iter()
        .map(|d| (d.rule.id, d.severity, d.message.clone()))
        .collect()
}

fn ids(diagnostics: &[Diagnostic]) -> Vec<&'static str> {
    diagnostics.iter().map(|d| d.rule.id).collect()
}

/// Compiles C `source` into a shared object at `out` with gcc (`extra` go last on the command line).
fn gcc_shared(source: &str, out: &Path, extra: &[&str]) {
    let dir = out.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let c_file = out.with_extension("c");
    std::fs::write(&c_file, source).unwrap();
    let output = Command::new("gcc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&c_file)
        .args(extra)
        .output()
        .expect("gcc is needed for these tests (apt-get install gcc)");
    assert!(
        output.status.success(),
        "gcc failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_file(c_file).unwrap();
}

const PLAIN_C: &str = "int add(int a, int b) { return a + b; }\n";

/// `pthread_create` and `dlopen` moved into libc in glibc 2.34: linking against a newer glibc
/// gives them the GLIBC_2.34 version.
const NEEDS_GLIBC_2_34: &str = "#include <pthread.h>\n#include <dlfcn.h>\n\
    static void *run(void *arg) { return arg; }\n\
    int go(void) { pthread_t t; pthread_create(&t, 0, run, 0); return dlopen(\"x\", RTLD_NOW) != 0; }\n";

/// A bare 64-bit little-endian ELF header for `machine` (183 = EM_AARCH64), no sections.
fn elf_header(machine: u16) -> Vec<u8> {
    let mut bytes = vec![0u8; 64];
    bytes[..4].copy_from_slice(b"\x7fELF");
    bytes[4] = 2; // ELFCLASS64
    bytes[5] = 1; // little endian
    bytes[6] = 1; // EV_CURRENT
    bytes[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
    bytes[18..20].copy_from_slice(&machine.to_le_bytes());
    bytes[20..24].copy_from_slice(&1u32.to_le_bytes());
    bytes[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    bytes
}

#[test]
fn a_glibc_2_34_symbol_fails_amazon_linux_2_but_not_2023() {
    let layer = tempfile::tempdir().unwrap();
    let so = layer.path().join("python/fast/_speed.abi3.so");
    gcc_shared(NEEDS_GLIBC_2_34, &so, &[]);
    let facts = verify::elf::inspect(std::fs::read(&so).unwrap().as_slice()).unwrap();
    // Reading only the parts it needs from the open file finds the same.
    let file = std::fs::File::open(&so).unwrap();
    assert_eq!(
        verify::elf::inspect(&object::ReadCache::new(file)).unwrap(),
        facts
    );
    assert_eq!(
        facts.max_glibc,
        Some((2, 34)),
        "the fixture should need GLIBC_2.34 on this host"
    );

    let old = verify::verify_tree(layer.path(), &target(&["python3.9"], &["x86_64"]));
    assert_eq!(ids(&old), ["BS302"], "{:#?}", summary(&old));
    assert!(old[0].is_error());
    assert!(
        old[0].message.contains("needs glibc 2.34") && old[0].message.contains("python3.9"),
        "{}",
        old[0].message
    );
    assert_eq!(
        old[0].position().as_deref(),
        Some("python/fast/_speed.abi3.so:1:1")
    );

    let new = verify::verify_tree(layer.path(), &target(&["python3.12"], &["x86_64"]));
    assert!(new.is_empty(), "{:#?}", summary(&new));

    let both = verify::verify_tree(
        layer.path(),
        &target(&["python3.11", "python3.12"], &["x86_64"]),
    );
    assert_eq!(ids(&both), ["BS302"]);
    assert!(both[0].message.contains("python3.11") && !both[0].message.contains("python3.12"));
}

#[test]
fn an_aarch64_file_in_an_x86_64_layer_is_an_error() {
    let layer = tempfile::tempdir().unwrap();
    write(layer.path(), "python/pkg/__init__.py", "");
    write(layer.path(), "python/pkg/libnative.so", elf_header(183));
    let x86 = verify::verify_tree(layer.path(), &target(&["python3.12"], &["x86_64"]));
    assert_eq!(ids(&x86), ["BS301"], "{:#?}", summary(&x86));
    assert!(x86[0].message.contains("aarch64"), "{}", x86[0].message);

    let arm = verify::verify_tree(layer.path(), &target(&["python3.12"], &["arm64"]));
    assert!(arm.is_empty(), "{:#?}", summary(&arm));

    // A real x86_64 object in a layer claiming both architectures fails for arm64.
    gcc_shared(PLAIN_C, &layer.path().join("python/pkg/libx.so"), &[]);
    let both = verify::verify_tree(layer.path(), &target(&["python3.12"], &["x86_64", "arm64"]));
    assert_eq!(ids(&both), ["BS301", "BS301"], "{:#?}", summary(&both));
}

#[test]
fn a_cp39_extension_in_a_python3_11_layer_is_an_error_and_abi3_is_not() {
    let layer = tempfile::tempdir().unwrap();
    write(layer.path(), "python/fast/__init__.py", "");
    gcc_shared(
        PLAIN_C,
        &layer
            .path()
            .join("python/fast/_speed.cpython-39-x86_64-linux-gnu.so"),
        &[],
    );
    gcc_shared(
        PLAIN_C,
        &layer.path().join("python/fast/_stable.abi3.so"),
        &[],
    );
    gcc_shared(PLAIN_C, &layer.path().join("python/fast/_plain.so"), &[]);

    let py311 = verify::verify_tree(layer.path(), &target(&["python3.11"], &["x86_64"]));
    assert_eq!(ids(&py311), ["BS304"], "{:#?}", summary(&py311));
    assert!(py311[0].message.contains("CPython 3.9"));
    assert!(py311[0].help.as_deref().unwrap().contains("python3.9"));

    let py39 = verify::verify_tree(layer.path(), &target(&["python3.9"], &["x86_64"]));
    assert!(py39.is_empty(), "{:#?}", summary(&py39));

    // Under python/lib/python3.9/site-packages only python3.9 sees it: no ABI error for 3.11 there.
    let versioned = tempfile::tempdir().unwrap();
    gcc_shared(
        PLAIN_C,
        &versioned
            .path()
            .join("python/lib/python3.9/site-packages/_speed.cpython-39-x86_64-linux-gnu.so"),
        &[],
    );
    write(versioned.path(), "python/common.py", "");
    let split = verify::verify_tree(
        versioned.path(),
        &target(&["python3.9", "python3.11"], &["x86_64"]),
    );
    assert!(split.is_empty(), "{:#?}", summary(&split));
}

#[test]
fn musl_linked_objects_are_errors() {
    let build = tempfile::tempdir().unwrap();
    let libc_musl = build.path().join("libc.musl-x86_64.so.1");
    gcc_shared(PLAIN_C, &libc_musl, &["-Wl,-soname,libc.musl-x86_64.so.1"]);
    let layer = tempfile::tempdir().unwrap();
    let linked = layer.path().join("python/pkg/_native.abi3.so");
    gcc_shared(
        PLAIN_C,
        &linked,
        &["-Wl,--no-as-needed", libc_musl.to_str().unwrap()],
    );
    let found = verify::verify_tree(layer.path(), &target(&["python3.12"], &["x86_64"]));
    assert_eq!(ids(&found), ["BS303"], "{:#?}", summary(&found));
    assert!(found[0].message.contains("libc.musl-x86_64.so.1"));
}

#[test]
fn wheel_tags_must_fit_every_runtime_and_architecture() {
    let layer = tempfile::tempdir().unwrap();
    write(layer.path(), "python/fast/__init__.py", "");
    write(
        layer.path(),
        "python/fast-1.0.dist-info/WHEEL",
        "Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: cp39-cp39-manylinux_2_17_x86_64\nTag: cp39-cp39-manylinux2014_x86_64\n",
    );
    write(layer.path(), "python/six.py", "");
    write(
        layer.path(),
        "python/six-1.16.0.dist-info/WHEEL",
        "Wheel-Version: 1.0\nTag: py2-none-any\nTag: py3-none-any\n",
    );
    let ok = verify::verify_tree(layer.path(), &target(&["python3.9"], &["x86_64"]));
    assert!(ok.is_empty(), "{:#?}", summary(&ok));

    let bad = verify::verify_tree(
        layer.path(),
        &target(&["python3.9", "python3.11"], &["x86_64", "arm64"]),
    );
    assert_eq!(ids(&bad), ["BS305"], "{:#?}", summary(&bad));
    let message = &bad[0].message;
    assert!(message.starts_with("fast-1.0 "), "{message}");
    for misfit in ["python3.9/arm64", "python3.11/x86_64", "python3.11/arm64"] {
        assert!(message.contains(misfit), "{message}");
    }
    assert!(!message.contains("python3.9/x86_64"), "{message}");
}

#[test]
fn layout_bytecode_bloat_and_the_sdk_are_reported() {
    let layer = tempfile::tempdir().unwrap();
    write(layer.path(), "python/pkg/__init__.py", "");
    write(
        layer.path(),
        "python/pkg/__pycache__/__init__.cpython-38.pyc",
        "x",
    );
    write(
        layer.path(),
        "python/pkg/__pycache__/__init__.cpython-312.pyc",
        "x",
    );
    write(
        layer.path(),
        "python/pkg/tests/test_big.py",
        vec![b'#'; 150_000],
    );
    write(layer.path(), "python/boto3/__init__.py", "x");
    write(
        layer.path(),
        "python/lib/python3.8/site-packages/old.py",
        "",
    );
    write(layer.path(), "requirements.txt", "six\n");
    write(layer.path(), "lib/libextra.so.1", "not elf");
    write(layer.path(), "bin/tool", "#!/bin/sh\n");

    let found = verify::verify_tree(layer.path(), &target(&["python3.12"], &["x86_64"]));
    let rules = summary(&found);
    let has = |id: &str, severity: Severity, text: &str| {
        rules
            .iter()
            .any(|(i, s, m)| *i == id && *s == severity && m.contains(text))
    };
    assert!(
        has("BS306", Severity::Error, "python/lib/python3.8"),
        "{rules:#?}"
    );
    assert!(
        has("BS306", Severity::Warning, "requirements.txt"),
        "{rules:#?}"
    );
    assert!(has("BS307", Severity::Warning, "cpython-38"), "{rules:#?}");
    assert!(
        has("BS308", Severity::Warning, "python/pkg/tests 150.0 kB"),
        "{rules:#?}"
    );
    assert!(
        has("BS309", Severity::Warning, "python/boto3"),
        "{rules:#?}"
    );
    assert_eq!(
        found.len(),
        5,
        "bin/ and lib/ are used by Lambda: {rules:#?}"
    );

    let empty = tempfile::tempdir().unwrap();
    write(empty.path(), "numpy/__init__.py", "");
    let misplaced = verify::verify_tree(empty.path(), &target(&["python3.12"], &["x86_64"]));
    let rules = summary(&misplaced);
    assert!(
        rules
            .iter()
            .any(|(i, s, m)| *i == "BS306" && *s == Severity::Error && m.contains("no packages")),
        "{rules:#?}"
    );
}

#[test]
fn distributions_list_their_top_level_modules() {
    let layer = tempfile::tempdir().unwrap();
    write(layer.path(), "python/yaml/__init__.py", "");
    write(
        layer.path(),
        "python/_yaml.cpython-39-x86_64-linux-gnu.so",
        "",
    );
    write(
        layer.path(),
        "python/PyYAML-6.0.dist-info/top_level.txt",
        "_yaml\nyaml\n",
    );
    write(layer.path(), "python/PyYAML-6.0.dist-info/RECORD", "");
    write(layer.path(), "python/six.py", "");
    write(
        layer.path(),
        "python/six-1.16.0.dist-info/RECORD",
        "six.py,,\nsix-1.16.0.dist-info/RECORD,,\n",
    );
    write(
        layer.path(),
        "python/ghost-1.0.dist-info/top_level.txt",
        "ghost\n",
    );
    write(layer.path(), "python/ghost-1.0.dist-info/RECORD", "");
    let modules: Vec<(String, String)> = verify::top_level_modules(layer.path())
        .into_iter()
        .map(|m| (m.name, m.distribution))
        .collect();
    let expected = [
        ("_yaml", "PyYAML-6.0"),
        ("six", "six-1.16.0"),
        ("yaml", "PyYAML-6.0"),
    ];
    assert_eq!(
        modules,
        expected.map(|(a, b)| (a.to_string(), b.to_string()))
    );
}

#[test]
fn verify_layer_checks_a_zip_and_exits_1_on_errors() {
    let tree = tempfile::tempdir().unwrap();
    write(tree.path(), "python/fast/__init__.py", "");
    gcc_shared(
        PLAIN_C,
        &tree
            .path()
            .join("python/fast/_speed.cpython-39-x86_64-linux-gnu.so"),
        &[],
    );
    let zip_path = tree.path().join("layer.zip");
    let status = Command::new("zip")
        .args(["-qr", "layer.zip", "python"])
        .current_dir(tree.path())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        // No zip tool: write the archive with the crate instead.
        let file = std::fs::File::create(&zip_path).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let options = zip::write::SimpleFileOptions::default();
        for rel in [
            "python/fast/__init__.py",
            "python/fast/_speed.cpython-39-x86_64-linux-gnu.so",
        ] {
            zip.start_file(rel, options).unwrap();
            std::io::Write::write_all(&mut zip, &std::fs::read(tree.path().join(rel)).unwrap())
                .unwrap();
        }
        zip.finish().unwrap();
    }

    let run = |runtime: &str| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["verify-layer", zip_path.to_str().unwrap()])
            .args(["--runtime", runtime, "--arch", "x86_64"])
            .args(["--no-import-test", "--format", "json"])
            .output()
            .unwrap()
    };
    let bad = run("python3.11");
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    let report: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    assert_eq!(report["summary"]["errors"], 1, "{report:#}");
    assert_eq!(report["diagnostics"][0]["rule"], "BS304");
    assert_eq!(
        report["diagnostics"][0]["file"],
        "python/fast/_speed.cpython-39-x86_64-linux-gnu.so"
    );

    let good = run("python3.9");
    assert_eq!(good.status.code(), Some(0), "{good:?}");
}

/// The import smoke test in the stand-in image: a module that raises fails with its message, one
/// that needs a package only the image has fails (the image's site-packages are not visible), and
/// a clean one imports.
#[test]
fn broken_imports_are_reported_from_the_build_image() {
    support::with_docker(async |engine, image| {
        let layer = tempfile::tempdir().unwrap();
        let dist = |name: &str, top_level: &str| {
            write(
                layer.path(),
                &format!("python/{name}-1.0.dist-info/top_level.txt"),
                top_level,
            );
            write(
                layer.path(),
                &format!("python/{name}-1.0.dist-info/RECORD"),
                "",
            );
        };
        write(
            layer.path(),
            "python/broken/__init__.py",
            "raise ImportError('boom')\n",
        );
        dist("broken", "broken\n");
        write(layer.path(), "python/needs_wheel.py", "import wheel\n");
        dist("needs_wheel", "needs_wheel\n");
        write(
            layer.path(),
            "python/fine/__init__.py",
            "import json\nVALUE = 1\n",
        );
        write(layer.path(), "python/fine/helper.py", "");
        dist("fine", "fine\n");

        let started = std::time::Instant::now();
        let (outcome, diagnostics) = verify::import_smoke_test(engine, image, layer.path())
            .await
            .unwrap();
        eprintln!("import test took {:?}", started.elapsed());
        assert_eq!(outcome.python.as_deref(), Some("3.9"));
        assert_eq!(outcome.imported, ["fine"]);
        assert_eq!(ids(&diagnostics), ["BS310", "BS310"]);
        let broken = diagnostics
            .iter()
            .find(|d| d.message.contains("`import broken`"))
            .unwrap();
        assert!(
            broken.message.contains("ImportError: boom"),
            "{}",
            broken.message
        );
        assert!(broken.is_error());
        let needs = diagnostics
            .iter()
            .find(|d| d.message.contains("`import needs_wheel`"))
            .unwrap();
        assert!(
            needs.message.contains("No module named 'wheel'"),
            "the image's own site-packages must not be visible: {}",
            needs.message
        );
    });
}

#[test]
fn a_container_mounted_before_the_layer_exists_sees_it() {
    support::with_docker(async |engine, image| {
        let layer = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let ready = verify::LayerContainer::mount(engine, image, layer.path())
            .await
            .expect("a local daemon mounts the directory");
        // Filled after the container started, as a build fills its staging directory.
        write(layer.path(), "python/late/__init__.py", "VALUE = 1\n");
        write(
            layer.path(),
            "python/late-1.0.dist-info/top_level.txt",
            "late\n",
        );
        write(layer.path(), "python/late-1.0.dist-info/RECORD", "");
        // The import container has no network: only its loopback interface.
        write(
            layer.path(),
            "python/offline.py",
            "import os\nassert os.listdir('/sys/class/net') == ['lo'], os.listdir('/sys/class/net')\n",
        );
        let tested = verify::import_smoke_test_in(engine, image, layer.path(), Some(ready), 1)
            .await
            .unwrap();
        assert_eq!(tested.outcome.imported, ["late", "offline"]);
        assert!(tested.diagnostics.is_empty(), "{:?}", tested.diagnostics);
        assert_eq!(tested.removal.finish().await, None);
        let left = engine.session_containers().await.unwrap();
        assert!(
            left.is_empty(),
            "the import test's container is left: {left:?}"
        );

        // A container mounting another directory is not used for this one.
        let elsewhere = verify::LayerContainer::mount(engine, image, other.path())
            .await
            .expect("mount");
        let tested = verify::import_smoke_test_in(engine, image, layer.path(), Some(elsewhere), 1)
            .await
            .unwrap();
        assert_eq!(tested.outcome.imported, ["late", "offline"]);
        assert_eq!(tested.removal.finish().await, None);
    });
}

#[test]
fn a_mount_that_shows_nothing_falls_back_to_a_copy() {
    support::with_docker(async |engine, image| {
        let parent = tempfile::tempdir().unwrap();
        let layer = parent.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        let ready = verify::LayerContainer::mount(engine, image, &layer)
            .await
            .expect("mount");
        // The mounted directory is replaced: the container keeps seeing the old, empty one, as
        // when a daemon in a VM mounts a path it does not share.
        std::fs::rename(&layer, parent.path().join("old")).unwrap();
        std::fs::create_dir(&layer).unwrap();
        write(&layer, "python/late/__init__.py", "VALUE = 1\n");
        write(&layer, "python/late-1.0.dist-info/top_level.txt", "late\n");
        write(&layer, "python/late-1.0.dist-info/RECORD", "");
        let tested = verify::import_smoke_test_in(engine, image, &layer, Some(ready), 1)
            .await
            .unwrap();
        assert_eq!(tested.outcome.imported, ["late"]);
        assert!(tested.diagnostics.is_empty(), "{:?}", tested.diagnostics);
        assert_eq!(tested.removal.finish().await, None);
    });
}

#[test]
fn the_import_test_keeps_bytecode_out_of_the_layer_and_reuses_it() {
    support::with_docker(async |engine, image| {
        let layer = tempfile::tempdir().unwrap();
        let name = format!("cached_{}", uuid::Uuid::new_v4().simple());
        write(
            layer.path(),
            &format!("python/{name}/__init__.py"),
            "VALUE = 1\n",
        );
        for _ in 0..2 {
            let (outcome, diagnostics) = verify::import_smoke_test(engine, image, layer.path())
                .await
                .unwrap();
            assert_eq!(
                outcome.imported,
                std::slice::from_ref(&name),
                "{diagnostics:?}"
            );
        }
        // Nothing written into the layer; the bytecode is in the image's cache volume.
        let written: Vec<_> = walkdir(layer.path())
            .into_iter()
            .filter(|p| p.contains("__pycache__") || p.ends_with(".pyc"))
            .collect();
        assert!(written.is_empty(), "{written:?}");
        let volume = {
            use sha2::{Digest, Sha256};
            let hash: String = Sha256::digest(image.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("xtask-pycache-{}", &hash[..12])
        };
        let spec = xtask::engine::ContainerSpec {
            image: image.to_string(),
            volumes: vec![(volume, "/cache".to_string())],
            ..Default::default()
        };
        let container = engine.start_work_container(&spec).await.unwrap();
        let found = engine
            .exec_output(
                &container,
                &xtask::engine::Exec::new([
                    "find",
                    "/cache",
                    "-path",
                    &format!("*{name}*"),
                    "-name",
                    "*.pyc",
                ]),
            )
            .await
            .unwrap();
        container.remove().await.unwrap();
        let found = String::from_utf8_lossy(&found.stdout).into_owned();
        assert!(
            found.contains(&format!("/cache/opt/python/{name}/__init__.cpython-39.pyc")),
            "{found}"
        );
    });
}

/// Every path below `dir`, relative, `/`-separated.
fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        for entry in std::fs::read_dir(&path).unwrap().flatten() {
            let p = entry.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out
}
