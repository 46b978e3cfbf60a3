//! The import smoke test: every top-level module the layer's distributions install is imported in
//! the build image with only the layer on `sys.path`, mounted at `/opt` as Lambda mounts it, each
//! in its own interpreter with a timeout.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use super::checks::{self, diagnostic};
use crate::diagnostic::Diagnostic;
use crate::engine::{ContainerSpec, Engine, Exec, WorkContainer};
use crate::rules;

/// How long one import may take before it counts as hung.
pub const IMPORT_TIMEOUT_SECS: u64 = 30;
/// Lines of the driver's output that carry results start with this.
const RESULT_PREFIX: &str = "XTASK-IMPORT ";
/// The unprivileged user the imports run as (`nobody`): like Lambda, it cannot write to /opt.
const IMPORT_USER: &str = "65534:65534";
/// What a container that mounts the layer at `/opt` shows: every module to import is below it.
const PROBE: &str = "/opt/python";
/// Where the imports keep their bytecode (`-X pycache_prefix`): a volume per image that outlives
/// the build, never the layer. Python checks each cached file against its source's mtime and
/// size (the layer's mtimes are its files' CRC-32, see `artifacts::tree`), so an unchanged
/// package (pandas: most of an import test) is not compiled again.
const PYCACHE_DIR: &str = "/xtask-pycache";

/// A module to import: the package root it sits in (`python` or
/// `python/lib/python3.X/site-packages`), its name and the distribution that installed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Module {
    pub root: String,
    pub name: String,
    pub distribution: String,
}

/// Every top-level module of the layer, found as Python finds them on the layer's `sys.path`
/// roots (`python/`, `python/lib/python3.X/site-packages/`): packages (with or without
/// `__init__.py`: namespace packages too), `.py` modules and extension modules. Each is named
/// after the distribution that installed it where `*.dist-info` says (`top_level.txt`, else
/// `RECORD`); a layer whose metadata was stripped, or whose modules were copied in by hand, is
/// tested all the same. Directories of tests, docs and examples are not imported.
pub fn top_level_modules(dir: &Path) -> Vec<Module> {
    let (entries, _) = checks::walk(dir);
    let owners = distributions(dir, &entries);
    let mut modules = BTreeSet::new();
    for entry in entries.iter().filter(|e| !e.is_symlink) {
        let Some(root) = checks::package_root(&entry.rel) else {
            continue;
        };
        let inside = &entry.rel[root.len() + 1..];
        let Some(name) = module_of(inside) else {
            continue;
        };
        let distribution = owners
            .get(&(root.clone(), name.clone()))
            .cloned()
            .unwrap_or_else(|| NO_DISTRIBUTION.to_string());
        modules.insert(Module {
            root,
            name,
            distribution,
        });
    }
    modules.into_iter().collect()
}

/// What modules without `*.dist-info` are attributed to.
const NO_DISTRIBUTION: &str = "no distribution metadata";
/// Top-level directories that are not importable code of the layer.
const NOT_MODULES: &[&str] = &[
    "tests",
    "test",
    "docs",
    "doc",
    "examples",
    "bin",
    "__pycache__",
];

/// The top-level module a file at `inside` (relative to a package root) belongs to: the first
/// component of a `.py` or extension file's path, when it is an identifier.
fn module_of(inside: &str) -> Option<String> {
    let is_code = inside.ends_with(".py") || inside.ends_with(".so");
    if !is_code {
        return None;
    }
    let name = match inside.split_once('/') {
        Some((dir, _)) => dir,
        None => inside.split('.').next().unwrap_or_default(),
    };
    (is_identifier(name) && !NOT_MODULES.contains(&name)).then(|| name.to_string())
}

/// `(root, module) → distribution` from every `*.dist-info` (its `top_level.txt`, else `RECORD`).
fn distributions(
    dir: &Path,
    entries: &[checks::Entry],
) -> std::collections::BTreeMap<(String, String), String> {
    let mut owners = std::collections::BTreeMap::new();
    for entry in entries {
        let Some(dist_info) = entry.rel.strip_suffix("/RECORD") else {
            continue;
        };
        let Some(root) = checks::package_root(&entry.rel) else {
            continue;
        };
        let in_root = dist_info.rsplit_once('/').map(|(parent, _)| parent) == Some(root.as_str());
        if !dist_info.ends_with(".dist-info") || !in_root {
            continue;
        }
        let distribution = dist_info
            .rsplit('/')
            .next()
            .and_then(|d| d.strip_suffix(".dist-info"))
            .unwrap_or(dist_info)
            .to_string();
        let top_level = dir.join(dist_info).join("top_level.txt");
        let names: Vec<String> =
            match crate::util::read_regular(&top_level, checks::METADATA_MAX_BYTES) {
                Ok(text) => text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(|l| l.replace('/', "."))
                    .collect(),
                Err(_) => {
                    crate::util::read_regular(&dir.join(&entry.rel), checks::METADATA_MAX_BYTES)
                        .map(|record| modules_from_record(&record))
                        .unwrap_or_default()
                }
            };
        for name in names {
            let top = name.split('.').next().unwrap_or_default().to_string();
            owners.insert((root.clone(), top), distribution.clone());
        }
    }
    owners
}

/// The top-level modules a `RECORD` lists: first path components that are packages, `.py`
/// modules or extension modules.
pub fn modules_from_record(record: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    for line in record.lines() {
        let path = match line.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap_or_default(),
            None => line.split(',').next().unwrap_or_default(),
        };
        let name = match path.split_once('/') {
            Some((dir, _)) => dir,
            None => match path.strip_suffix(".py") {
                Some(module) => module,
                None if path.ends_with(".so") => path.split('.').next().unwrap_or_default(),
                None => continue,
            },
        };
        if is_identifier(name) && name != "__pycache__" {
            names.insert(name.to_string());
        }
    }
    names.into_iter().collect()
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The driver: imports the `root:module` arguments in a fresh isolated interpreter (`-I -S`: no
/// site-packages of the image, no user site, no environment; bytecode only in [`PYCACHE_DIR`],
/// else none) whose `sys.path`
/// starts with the layer's paths as Lambda orders them, and prints one JSON line per module.
/// First all of them in one interpreter, as a function imports them (one pandas import instead of
/// several); only when that fails is each module retried alone, so every failure is named. The
/// trade-off: a module that imports only after another one has been imported passes. With
/// `XTASK_PROBE` (a path under `/opt`) set, a container that does not show that path prints
/// an `unseen` line and imports nothing.
const DRIVER: &str = r#"
import json, os, subprocess, sys
probe = os.environ.get("XTASK_PROBE")
if probe and not os.path.lexists(probe):
    print("XTASK-IMPORT " + json.dumps({"unseen": probe}), flush=True)
    sys.exit(0)
version = "%d.%d" % sys.version_info[:2]
site = "/opt/python/lib/python%s/site-packages" % version
prelude = "import importlib, sys\nsys.path[:0] = [%r, '/opt/python']\n" % site
alone = prelude + "importlib.import_module(sys.argv[1])\n"
together = prelude + "for name in sys.argv[1:]:\n    importlib.import_module(name)\n"
env = dict(os.environ)
env["LD_LIBRARY_PATH"] = ":".join(p for p in [env.get("LD_LIBRARY_PATH"), "/opt/lib"] if p)
env["PATH"] = env.get("PATH", "/usr/bin:/bin") + ":/opt/bin"
env["HOME"] = "/tmp"
timeout = int(os.environ.get("XTASK_IMPORT_TIMEOUT", "30"))
print("XTASK-IMPORT " + json.dumps({"python": version}), flush=True)

cache = os.environ.get("XTASK_PYCACHE")
bytecode = ["-X", "pycache_prefix=" + cache] if cache else ["-B"]

def python(code, args):
    return subprocess.run(
        [sys.executable, "-I", "-S"] + bytecode + ["-c", code] + args,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/tmp", env=env, timeout=timeout,
    )

def check(module):
    try:
        done = python(alone, [module])
        ok = done.returncode == 0
        error = done.stderr.decode("utf-8", "replace").strip()
        lines = [l for l in error.splitlines() if l.strip()]
        error = lines[-1] if lines else "exit code %d" % done.returncode
    except subprocess.TimeoutExpired:
        ok, error = False, "did not finish within %d s" % timeout
    result = {"module": module, "ok": ok}
    if not ok:
        result["error"] = error
    return result

def all_import_together(modules):
    try:
        return python(together, modules).returncode == 0
    except subprocess.TimeoutExpired:
        return False

ours = ("python", "python/lib/python%s/site-packages" % version)
pairs = [tuple(arg.split(":", 1)) for arg in sys.argv[1:]]
tried = [pair for pair in pairs if pair[0] in ours]
if all_import_together([module for _, module in tried]):
    results = {pair: {"module": pair[1], "ok": True} for pair in tried}
else:
    # One interpreter per module, one per core at a time.
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = dict(zip(tried, pool.map(check, [module for _, module in tried])))
for pair in pairs:
    result = results.get(pair) or {"module": pair[1], "skipped": True}
    print("XTASK-IMPORT " + json.dumps(result), flush=True)
"#;

/// What the driver reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    /// The image's Python, `3.9`.
    pub python: Option<String>,
    /// Modules that imported.
    pub imported: Vec<String>,
    /// `(module, error line)` for each that did not.
    pub failed: Vec<(String, String)>,
    /// Modules for another Python version's site-packages, not tried.
    pub skipped: Vec<String>,
    /// The container did not show the layer at `/opt` (a daemon that mounted an empty
    /// directory): nothing was tried.
    pub unseen: bool,
}

/// Reads the driver's result lines (other output, e.g. warnings, is ignored).
pub fn parse_output(output: &str) -> ImportOutcome {
    let mut outcome = ImportOutcome::default();
    for line in output.lines() {
        let Some(json) = line.strip_prefix(RESULT_PREFIX) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(json) else {
            continue;
        };
        if value["unseen"].is_string() {
            outcome.unseen = true;
            continue;
        }
        if let Some(python) = value["python"].as_str() {
            outcome.python = Some(python.to_string());
            continue;
        }
        let Some(module) = value["module"].as_str().map(str::to_string) else {
            continue;
        };
        if value["skipped"].as_bool() == Some(true) {
            outcome.skipped.push(module);
        } else if value["ok"].as_bool() == Some(true) {
            outcome.imported.push(module);
        } else {
            let error = value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string();
            outcome.failed.push((module, error));
        }
    }
    outcome
}

/// Uploads the layer at `layer_dir` to `/opt` of a new container of `image` and imports every
/// top-level module in it (see [`DRIVER`]). Returns one `BS310` diagnostic per failed import;
/// `Err` only when the test itself could not run (Docker, the image, the upload).
pub async fn import_smoke_test(
    engine: &Engine,
    image: &str,
    layer_dir: &Path,
) -> anyhow::Result<(ImportOutcome, Vec<Diagnostic>)> {
    let tested = import_smoke_test_in(engine, image, layer_dir, None, 1).await?;
    warn(tested.removal.finish().await);
    Ok((tested.outcome, tested.diagnostics))
}

/// What [`import_smoke_test_in`] found, and the removal of its container, still under way.
pub struct ImportTested {
    pub outcome: ImportOutcome,
    /// One `BS310` per module that did not import.
    pub diagnostics: Vec<Diagnostic>,
    /// Wait for it before exiting.
    pub removal: Removal,
}

/// A container being removed in the background (off the build's critical path), or none.
#[derive(Debug, Default)]
#[must_use = "wait for the removal before exiting"]
pub struct Removal(Option<tokio::task::JoinHandle<crate::engine::Result<()>>>);

impl Removal {
    fn of(container: WorkContainer) -> Removal {
        Removal(Some(container.remove_in_background()))
    }

    /// Waits for the removal; its failure, if any, as a warning.
    pub async fn finish(self) -> Option<String> {
        match self.0?.await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the import test's container removal stopped: {e}")),
        }
    }
}

/// A container of `image` with a directory bind-mounted read-only at `/opt`, created before that
/// directory is filled (a build starts it next to the build container, saving the import test
/// the container start).
pub struct LayerContainer {
    container: WorkContainer,
    layer_dir: PathBuf,
}

impl LayerContainer {
    /// `None` when the daemon is remote (it cannot mount host paths) or refuses the mount.
    pub async fn mount(engine: &Engine, image: &str, layer_dir: &Path) -> Option<LayerContainer> {
        if !engine.is_local() {
            return None;
        }
        let layer_dir = layer_dir.canonicalize().ok()?;
        let spec = ContainerSpec {
            bind_mounts_ro: vec![(layer_dir.display().to_string(), "/opt".to_string())],
            ..import_container_spec(image)
        };
        let container = engine.start_work_container(&spec).await.ok()?;
        open_pycache(engine, &container).await.ok()?;
        Some(LayerContainer {
            container,
            layer_dir,
        })
    }
}

/// [`import_smoke_test`], in `ready` when it mounts `layer_dir`. The container is removed in the
/// background: the caller waits for [`ImportTested::removal`].
pub async fn import_smoke_test_in(
    engine: &Engine,
    image: &str,
    layer_dir: &Path,
    ready: Option<LayerContainer>,
    slowdown: u32,
) -> anyhow::Result<ImportTested> {
    let modules = top_level_modules(layer_dir);
    let ready = ready.and_then(|ready| {
        let mounts_it = layer_dir.canonicalize().ok() == Some(ready.layer_dir.clone());
        // Not the tree to test (dropping it removes the container).
        mounts_it.then_some(ready.container)
    });
    if modules.is_empty() {
        let removal = Removal(ready.map(WorkContainer::remove_in_background));
        return Ok(ImportTested {
            outcome: ImportOutcome::default(),
            diagnostics: Vec::new(),
            removal,
        });
    }
    let mounted = match ready {
        Some(container) => Some(container),
        None => LayerContainer::mount(engine, image, layer_dir)
            .await
            .map(|mounted| mounted.container),
    };
    let driver = Driver {
        engine,
        modules: &modules,
        slowdown: u64::from(slowdown.max(1)),
    };
    let (container, output) = driver.run_anywhere(image, layer_dir, mounted).await?;
    let removal = Removal::of(container);
    let code = output.code;
    let text = output.text();
    let outcome = parse_output(&text);
    if code != 0 || outcome.python.is_none() {
        // The caller never sees the removal: wait for it here.
        warn(removal.finish().await);
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        anyhow::bail!(
            "the import test driver failed in {image} (exit code {code}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    let diagnostics = failures(&outcome, &modules, image);
    Ok(ImportTested {
        outcome,
        diagnostics,
        removal,
    })
}

/// Runs [`DRIVER`] on a list of modules.
struct Driver<'a> {
    engine: &'a Engine,
    modules: &'a [Module],
    slowdown: u64,
}

impl Driver<'_> {
    /// The driver in `mounted` when that shows the layer, else in a new container with a copy of
    /// the layer.
    async fn run_anywhere(
        &self,
        image: &str,
        layer_dir: &Path,
        mounted: Option<WorkContainer>,
    ) -> anyhow::Result<(WorkContainer, crate::engine::Output)> {
        let Some(container) = mounted else {
            return self.run_uploaded(image, layer_dir).await;
        };
        match self.run(&container, Some(PROBE)).await {
            Ok(output) if !parse_output(&output.text()).unseen => Ok((container, output)),
            // Timed out: a copy would hang the same way.
            Err(e) if e.downcast_ref::<crate::engine::Error>().is_none() => {
                warn(Removal::of(container).finish().await);
                Err(e)
            }
            // Not seen (a daemon in a VM that does not share the path mounts an empty
            // directory), or no exec in it (it stopped during a long build): try a copy.
            _ => {
                let removed = Removal::of(container).finish();
                let (warning, uploaded) =
                    tokio::join!(removed, self.run_uploaded(image, layer_dir));
                warn(warning);
                uploaded
            }
        }
    }

    /// The driver in `container`; with `probe` (a path under `/opt`), it first checks that the
    /// container sees it, and when not says so and imports nothing.
    async fn run(
        &self,
        container: &WorkContainer,
        probe: Option<&str>,
    ) -> anyhow::Result<crate::engine::Output> {
        let args = self
            .modules
            .iter()
            .map(|m| format!("{}:{}", m.root, m.name));
        let mut exec = Exec::new(
            ["python3", "-I", "-S", "-c", DRIVER]
                .map(str::to_string)
                .into_iter()
                .chain(args),
        )
        .env(
            "XTASK_IMPORT_TIMEOUT",
            (IMPORT_TIMEOUT_SECS * self.slowdown).to_string(),
        )
        .env("XTASK_PYCACHE", PYCACHE_DIR)
        .user(IMPORT_USER)
        .working_dir("/tmp");
        if let Some(probe) = probe {
            exec = exec.env("XTASK_PROBE", probe);
        }
        let modules = self.modules.len() as u64;
        let budget =
            Duration::from_secs((IMPORT_TIMEOUT_SECS * (modules + 1) + 60) * self.slowdown);
        let output = tokio::time::timeout(budget, self.engine.exec_output(container, &exec))
            .await
            .with_context(|| format!("the import test did not finish within {budget:?}"))??;
        Ok(output)
    }

    /// The driver in a new container with a copy of the layer uploaded to `/opt`.
    async fn run_uploaded(
        &self,
        image: &str,
        layer_dir: &Path,
    ) -> anyhow::Result<(WorkContainer, crate::engine::Output)> {
        let container = uploaded_layer_container(self.engine, image, layer_dir).await?;
        match self.run(&container, None).await {
            Ok(output) => Ok((container, output)),
            Err(e) => {
                warn(Removal::of(container).finish().await);
                Err(e)
            }
        }
    }
}

fn warn(warning: Option<String>) {
    if let Some(warning) = warning {
        eprintln!("warning: {warning}");
    }
}

/// One `BS310` per module that did not import.
fn failures(outcome: &ImportOutcome, modules: &[Module], image: &str) -> Vec<Diagnostic> {
    outcome
        .failed
        .iter()
        .map(|(name, error)| {
            let module = modules.iter().find(|m| &m.name == name);
            let rel = module.map_or_else(|| name.clone(), |m| format!("{}/{}", m.root, m.name));
            let from = module
                .map(|m| format!(" ({})", describe_owner(&m.distribution)))
                .unwrap_or_default();
            diagnostic(
                &rules::IMPORT_FAILED,
                &rel,
                format!("`import {name}`{from} failed with only the layer on sys.path: {error}"),
            )
            .help(format!(
                "reproduce with `docker run --rm --network none --user 65534:65534 -v $PWD/layer:/opt:ro {image} python3 -I -S -c \"import sys; sys.path[:0]=['/opt/python']; import {name}\"`; a missing module usually means a dependency was not installed into the layer"
            ))
        })
        .collect()
}

fn describe_owner(distribution: &str) -> String {
    match distribution {
        NO_DISTRIBUTION => NO_DISTRIBUTION.to_string(),
        name => format!("from {name}"),
    }
}

/// A container of `image` with a copy of the layer at `/opt`, uploaded as a tar: for remote
/// daemons, and paths the daemon cannot share (outside Docker Desktop's file sharing, say).
async fn uploaded_layer_container(
    engine: &Engine,
    image: &str,
    layer_dir: &Path,
) -> anyhow::Result<WorkContainer> {
    let dir = layer_dir.to_path_buf();
    let tar = tokio::task::spawn_blocking(move || tar_of(&dir))
        .await
        .context("packing the layer for the import test stopped")??;
    let container = engine
        .start_work_container(&import_container_spec(image))
        .await?;
    open_pycache(engine, &container).await?;
    engine.upload(&container, "/opt", tar).await?;
    Ok(container)
}

/// A container for the import test: `/tmp` to work in, the image's bytecode cache mounted.
fn import_container_spec(image: &str) -> ContainerSpec {
    use sha2::{Digest, Sha256};
    let volume = crate::util::hex(&Sha256::digest(image.as_bytes()));
    ContainerSpec {
        image: image.to_string(),
        working_dir: Some("/tmp".to_string()),
        volumes: vec![(
            format!("xtask-pycache-{}", &volume[..12]),
            PYCACHE_DIR.to_string(),
        )],
        // Importing fetches nothing: a package's import-time code cannot reach out.
        offline: true,
        ..Default::default()
    }
}

/// Lets the import user write to the bytecode cache (a new volume belongs to root).
async fn open_pycache(engine: &Engine, container: &WorkContainer) -> crate::engine::Result<()> {
    let chmod = Exec::new(["chmod", "1777", PYCACHE_DIR]).root();
    engine.exec_checked(container, &chmod).await.map(drop)
}

/// A tar of the tree at `dir` with entry names relative to it, modes and mtimes as they are (the
/// bytecode cache relies on the mtimes).
fn tar_of(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    builder
        .append_dir_all(".", dir)
        .with_context(|| format!("cannot pack {}", dir.display()))?;
    builder.into_inner().context("cannot pack the layer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lists_top_level_modules() {
        let record = "six.py,sha256=x,100\n\
                      six-1.16.0.dist-info/RECORD,,\n\
                      __pycache__/six.cpython-39.pyc,,\n\
                      yaml/__init__.py,sha256=y,10\n\
                      _yaml.cpython-39-x86_64-linux-gnu.so,sha256=z,5\n\
                      ../../bin/tool,sha256=a,1\n\
                      \"weird,name/__init__.py\",sha256=b,1\n";
        assert_eq!(modules_from_record(record), ["_yaml", "six", "yaml"]);
    }

    #[test]
    fn driver_output_is_parsed() {
        let output = "noise\nXTASK-IMPORT {\"python\": \"3.9\"}\n\
                      XTASK-IMPORT {\"module\": \"six\", \"ok\": true}\n\
                      XTASK-IMPORT {\"module\": \"bad\", \"ok\": false, \"error\": \"ImportError: boom\"}\n\
                      XTASK-IMPORT {\"module\": \"other\", \"skipped\": true}\n";
        let outcome = parse_output(output);
        assert_eq!(outcome.python.as_deref(), Some("3.9"));
        assert_eq!(outcome.imported, ["six"]);
        assert_eq!(
            outcome.failed,
            [("bad".to_string(), "ImportError: boom".to_string())]
        );
        assert_eq!(outcome.skipped, ["other"]);
    }

    #[test]
    fn the_driver_has_no_tabs() {
        assert!(!DRIVER.contains('\t'));
    }
}
