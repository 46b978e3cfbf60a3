//! `cargo xtask lock`: resolves `requirements.in` for each cell inside that cell's build image
//! (its Python, its architecture), for the platform Lambda runs the cell on, and writes the pins
//! to `locks/<cell>.txt`. Resolution only sees packages uploaded up to a date kept in the lock,
//! so running it again gives the same lock until `--upgrade` moves the date.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::{input_digest, Header, Locks, DEFAULT_DIR, INPUT_NAME};
use crate::build::{emulation, image as build_image, CONTAINER_CA_DIR};
use crate::engine::{ContainerSpec, Engine, Exec};
use crate::layer::{self, Cell};

/// The uv the locks are made with (the buildspec installs with the same release).
pub const UV_VERSION: &str = "0.13.9";
/// Fetches uv's binary from the package index (the same script the buildspec runs).
const GET_UV: &str = include_str!("../../../python-layer/get_uv.py");
/// Where the inputs go in the container.
const WORK_DIR: &str = "/tmp/xtask-lock";
/// A resolution that takes longer than this (natively) is stuck.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Resolve `requirements.in` into one lock per cell, each inside the cell's build image.
#[derive(Debug, Clone, clap::Args)]
pub struct Lock {
    /// The cells to lock: python3.13-arm64,python3.9-x86_64,… [default: the cells that have a
    /// lock, else the template's CompatibleRuntimes × CompatibleArchitectures].
    #[arg(long, value_delimiter = ',')]
    pub cells: Vec<String>,
    /// Build image of each cell; {runtime}, {python} and {arch} are filled in [default:
    /// public.ecr.aws/sam/build-<runtime>:latest-<arch>].
    #[arg(long, env = "LAYER_BUILD_IMAGE")]
    pub image: Option<String>,
    /// Project directory [default: the workspace root].
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// The locks directory [default: python-layer/locks]; requirements.in is beside it.
    #[arg(long)]
    pub locks: Option<PathBuf>,
    /// SAM/CloudFormation template naming the cells [default: template.yaml].
    #[arg(long)]
    pub template: Option<PathBuf>,
    /// Write nothing; exit 1 when a lock is missing or would change (for CI).
    #[arg(long)]
    pub check: bool,
    /// Resolve against the packages available now, not the date kept in each lock.
    #[arg(long)]
    pub upgrade: bool,
}

/// How one cell's lock came out.
enum Made {
    Unchanged,
    Written,
    /// `--check`: the lock on disk is missing or differs.
    Stale,
}

impl Lock {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Runtime::new()?;
        runtime.block_on(self.run_async())
    }

    async fn run_async(self) -> anyhow::Result<ExitCode> {
        let source = self
            .source
            .clone()
            .unwrap_or_else(crate::util::project_root);
        let locks = match Locks::locate(&source, self.locks.as_deref())? {
            Some(locks) => locks,
            None => create_default(&source)?,
        };
        let input = locks.input();
        let digest = input_digest(&input)?;
        let cells = self.cells_to_lock(&locks, &source)?;
        let engine = Engine::connect().await?;
        let mut stale = false;
        for cell in &cells {
            let made = self
                .lock_cell(&engine, &locks, cell, &digest)
                .await
                .with_context(|| format!("cannot lock the cell {}", cell.id()))?;
            let path = locks.relative_path(cell);
            match made {
                Made::Unchanged => println!("{}: {path} is up to date", cell.id()),
                Made::Written => println!("{}: wrote {path}", cell.id()),
                Made::Stale => {
                    stale = true;
                    println!(
                        "{}: {path} is missing or stale: run `cargo xtask lock --cells {}`",
                        cell.id(),
                        cell.id()
                    );
                }
            }
        }
        Ok(ExitCode::from(u8::from(stale)))
    }

    /// `--cells`, else the cells that already have a lock, else the template's.
    fn cells_to_lock(&self, locks: &Locks, source: &std::path::Path) -> anyhow::Result<Vec<Cell>> {
        if self.cells.is_empty() {
            let existing = existing_cells(locks);
            if !existing.is_empty() {
                return Ok(existing);
            }
        }
        layer::wanted_cells(&self.cells, self.template.as_deref(), source, None)
    }

    async fn lock_cell(
        &self,
        engine: &Engine,
        locks: &Locks,
        cell: &Cell,
        digest: &str,
    ) -> anyhow::Result<Made> {
        let path = locks.path(cell);
        let previous = crate::util::read_regular(&path, super::MAX_LOCK_BYTES).ok();
        let as_of = match (&previous, self.upgrade) {
            (Some(text), false) => Header::parse(text).ok().and_then(|h| h.as_of),
            _ => None,
        }
        .unwrap_or_else(today);
        let pins = self.resolve(engine, locks, cell, &as_of).await?;
        let text = Header::render(cell, digest, &cell.python_platform(), &as_of) + &pins;
        if previous.as_deref() == Some(text.as_str()) {
            return Ok(Made::Unchanged);
        }
        if self.check {
            return Ok(Made::Stale);
        }
        write_atomically(&path, &text)?;
        Ok(Made::Written)
    }

    /// `uv pip compile` in a container of the cell's image: the pins, as uv prints them.
    async fn resolve(
        &self,
        engine: &Engine,
        locks: &Locks,
        cell: &Cell,
        as_of: &str,
    ) -> anyhow::Result<String> {
        let image = match self.image.as_deref().filter(|i| !i.is_empty()) {
            Some(template) => cell.image(template),
            None => cell.runtime.build_image_for(&cell.arch),
        };
        let platform = format!("linux/{}", build_image::docker_architecture(&cell.arch));
        let local = engine
            .ensure_image(&image, Some(&platform), |_| {})
            .await
            .with_context(|| format!("cannot get the image {image}"))?;
        let facts = build_image::ImageFacts {
            architecture: local.architecture,
            ..build_image::ImageFacts::default()
        };
        build_image::check_architecture(&image, &facts, &cell.arch)?;
        let daemon = engine.daemon_architecture().await.unwrap_or_default();
        let slowdown = emulation::check(&cell.arch, &daemon, engine.is_local())?.slowdown();
        println!("{}: resolving {INPUT_NAME} in {image}", cell.id());
        let container = engine
            .start_work_container(&ContainerSpec {
                image: image.clone(),
                ..ContainerSpec::default()
            })
            .await?;
        let input = crate::util::read_regular(&locks.input(), super::MAX_LOCK_BYTES)?;
        let files = [
            ("requirements.in", input.into_bytes()),
            ("get_uv.py", GET_UV.as_bytes().to_vec()),
        ];
        engine
            .upload(&container, WORK_DIR, crate::engine::tar_of_files(&files)?)
            .await?;
        // The host's CA bundle where the build puts it (the host settings point there).
        let host = crate::build::HostConfig::from_env(true, false);
        if let Some(bundle) = &host.ca_bundle {
            let bundle = [("ca-bundle.crt", std::fs::read(bundle)?)];
            let tar = crate::engine::tar_of_files(&bundle)?;
            engine.upload(&container, CONTAINER_CA_DIR, tar).await?;
        }
        let exec = compile_exec(cell, as_of, &host);
        let budget = RESOLVE_TIMEOUT * slowdown;
        let output = tokio::time::timeout(budget, engine.exec_output(&container, &exec))
            .await
            .with_context(|| format!("uv pip compile did not finish within {budget:?}"))??;
        let _ = container.remove().await;
        if output.code != 0 {
            bail!(
                "uv pip compile failed (exit {}):\n{}",
                output.code,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        if output.stdout.len() >= crate::engine::OUTPUT_LIMIT {
            bail!(
                "the resolution is larger than a lock can be ({} bytes)",
                crate::engine::OUTPUT_LIMIT
            );
        }
        String::from_utf8(output.stdout).context("uv printed a lock that is not UTF-8")
    }
}

/// `python3.X get_uv.py` then `uv pip compile` for the cell's Python and platform, wheels only
/// (as the build installs), the host's index and CA settings in its environment.
fn compile_exec(cell: &Cell, as_of: &str, host: &crate::build::HostConfig) -> Exec {
    let python = format!("python{}", cell.runtime.python_version());
    let script = r#"set -e
cd "$XTASK_LOCK_DIR"
"$XTASK_PYTHON" get_uv.py "$XTASK_UV_VERSION" uv >&2 ||
  "$XTASK_PYTHON" -m pip install --quiet --target uv "uv==$XTASK_UV_VERSION" >&2
exec uv/bin/uv pip compile --quiet --no-header --only-binary :all: \
  --python "$XTASK_PYTHON" --python-platform "$XTASK_PLATFORM" --exclude-newer "$XTASK_AS_OF" \
  ${PIP_INDEX_URL:+--index-url "$PIP_INDEX_URL"} \
  ${PIP_EXTRA_INDEX_URL:+--extra-index-url "$PIP_EXTRA_INDEX_URL"} \
  requirements.in"#;
    let mut exec = Exec::sh(script, &[])
        .env("XTASK_LOCK_DIR", WORK_DIR)
        .env("XTASK_PYTHON", python)
        .env("XTASK_UV_VERSION", UV_VERSION)
        .env("XTASK_PLATFORM", cell.python_platform())
        .env("XTASK_AS_OF", as_of)
        .env("UV_NO_PROGRESS", "1")
        .env("UV_CACHE_DIR", format!("{WORK_DIR}/uv-cache"))
        .root();
    for (name, value) in &host.env.0 {
        exec = exec.env(name, value);
    }
    exec
}

/// The cells of the `<cell>.txt` files in the locks directory.
fn existing_cells(locks: &Locks) -> Vec<Cell> {
    let Ok(entries) = std::fs::read_dir(&locks.dir) else {
        return Vec::new();
    };
    let mut cells: Vec<Cell> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Cell::parse(name.strip_suffix(".txt")?).ok()
        })
        .collect();
    cells.sort_by_key(Cell::id);
    cells
}

/// The default locks directory, created on first use beside an existing `requirements.in`.
fn create_default(source: &std::path::Path) -> anyhow::Result<Locks> {
    let dir = source.join(DEFAULT_DIR);
    let input = dir.parent().unwrap_or(&dir).join(INPUT_NAME);
    if !input.is_file() {
        bail!(
            "{} does not exist: list what the layer needs there (one requirement per line), then lock it",
            input.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Locks::locate(source, None)?.context("the locks directory vanished")
}

/// Today, 00:00 UTC, as uv's `--exclude-newer` takes it.
fn today() -> String {
    let now = crate::util::UtcTime::now().rfc3339();
    format!("{}T00:00:00Z", &now[..10])
}

fn write_atomically(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let dir = path.parent().context("a lock has a directory")?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, text.as_bytes())?;
    temp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
