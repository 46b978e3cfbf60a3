//! The build image: present (pulled when missing, with progress), its id, and what it is — its
//! Python and glibc, asked once per image id in a container that only runs `python3 -c …` and
//! kept in a small cache file, so later builds of the same image do not ask again.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::log::Log;
use crate::engine::{ContainerSpec, Engine, Exec};

/// What the tool knows of an image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageFacts {
    /// The local image id, `sha256:…`.
    pub id: String,
    /// `(3, 9)`: the Python `python3` (else `python`) runs; `None` when it has none.
    pub python: Option<(u32, u32)>,
    /// `(2, 26)`: the glibc that Python is linked against; `None` for another libc.
    pub glibc: Option<(u32, u32)>,
    /// The architecture its config records (`amd64`, `arm64`), read on every build.
    #[serde(skip)]
    pub architecture: String,
}

impl ImageFacts {
    /// An image CodeBuild runs (`--remote`): nothing is known of it here; its id names where it
    /// runs, so a remote build's key differs from a local one's.
    pub fn remote(project: &str, image: &str, arch: &str) -> ImageFacts {
        ImageFacts {
            id: format!("codebuild:{project}:{image}"),
            python: None,
            glibc: None,
            architecture: arch.to_string(),
        }
    }
}

/// Prints one line: the major, minor and glibc version of the first Python on PATH.
const PROBE: &str = r#"for p in python3 python; do
  command -v "$p" >/dev/null 2>&1 || continue
  exec "$p" -c 'import platform, sys; print("XTASK-IMAGE", sys.version_info[0], sys.version_info[1], platform.libc_ver()[1] or "-")'
done
echo "XTASK-IMAGE - - -""#;

/// The image `name`, pulled for `arch` (`x86_64`, `arm64`) when missing, and its facts (cached
/// by image id).
pub async fn inspect(
    engine: &Engine,
    name: &str,
    arch: &str,
    log: &Log,
) -> anyhow::Result<ImageFacts> {
    let bar = crate::progress::Progress::new(log.json());
    let platform = format!("linux/{}", docker_architecture(arch));
    let local = engine
        .ensure_image(name, Some(&platform), |p| {
            bar.update(&p.status, p.current, p.total)
        })
        .await?;
    bar.finish();
    let facts = match Cache::load().get(&local.id) {
        Some(facts) => facts,
        None => {
            let facts = probe(engine, name, local.id).await?;
            Cache::load().store(&facts);
            facts
        }
    };
    Ok(ImageFacts {
        architecture: local.architecture,
        ..facts
    })
}

/// Docker's name of a Lambda architecture: `x86_64` is `amd64`.
pub fn docker_architecture(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        other => other,
    }
}

/// An image of another architecture than the build's would put its binaries in the layer: refused
/// before anything runs. An image that records none is let through (verification reads the ELF
/// headers of what it built).
pub fn check_architecture(image: &str, facts: &ImageFacts, arch: &str) -> anyhow::Result<()> {
    let wanted = docker_architecture(arch);
    if facts.architecture.is_empty() || facts.architecture == wanted {
        return Ok(());
    }
    anyhow::bail!(
        "the image {image} is linux/{}, but the build targets {arch} (linux/{wanted}): its layer would hold {} binaries; use an image for {arch} (the SAM images are tagged latest-x86_64 and latest-arm64)",
        facts.architecture,
        facts.architecture
    )
}

async fn probe(engine: &Engine, name: &str, id: String) -> anyhow::Result<ImageFacts> {
    let spec = ContainerSpec {
        image: name.to_string(),
        offline: true,
        ..ContainerSpec::default()
    };
    let container = engine.start_work_container(&spec).await?;
    let output = engine.exec_output(&container, &Exec::sh(PROBE, &[])).await;
    if let Err(e) = container.remove().await {
        eprintln!("warning: {e}");
    }
    let text = output
        .with_context(|| format!("cannot ask the image {name} for its Python"))?
        .text();
    Ok(parse_probe(&text, id))
}

fn parse_probe(text: &str, id: String) -> ImageFacts {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("XTASK-IMAGE "))
        .unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    let number = |i: usize| words.get(i).and_then(|w| w.parse::<u32>().ok());
    let python = number(0).zip(number(1));
    let glibc = words.get(2).and_then(|v| {
        let (major, minor) = v.split_once('.')?;
        let minor: String = minor.chars().take_while(char::is_ascii_digit).collect();
        Some((major.parse().ok()?, minor.parse().ok()?))
    });
    ImageFacts {
        id,
        python,
        glibc,
        architecture: String::new(),
    }
}

/// The facts of every image seen, by id, in `$XDG_CACHE_HOME/xtask-layer/images.json` (else
/// `~/.cache/…`). A cache that cannot be read or written is no cache: the probe runs again.
struct Cache {
    path: Option<PathBuf>,
    images: BTreeMap<String, ImageFacts>,
}

impl Cache {
    fn load() -> Cache {
        let path = cache_dir().map(|dir| dir.join("images.json"));
        let images = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        Cache { path, images }
    }

    fn get(&self, id: &str) -> Option<ImageFacts> {
        self.images.get(id).cloned()
    }

    fn store(mut self, facts: &ImageFacts) {
        let Some(path) = self.path.take() else {
            return;
        };
        self.images.insert(facts.id.clone(), facts.clone());
        let Ok(text) = serde_json::to_string_pretty(&self.images) else {
            return;
        };
        let written = path
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| {
                // Unique per writer: the cells of a matrix may store at once.
                let temp = path.with_extension(format!("json.{}", uuid::Uuid::new_v4().simple()));
                std::fs::write(&temp, text)?;
                std::fs::rename(&temp, &path)
            });
        if let Err(e) = written {
            eprintln!(
                "warning: cannot cache image facts in {}: {e}",
                path.display()
            );
        }
    }
}

/// The tool's cache directory on this machine.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("xtask-layer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_line_is_read() {
        let facts = parse_probe("noise\nXTASK-IMAGE 3 9 2.26\n", "sha256:1".into());
        assert_eq!(facts.python, Some((3, 9)));
        assert_eq!(facts.glibc, Some((2, 26)));
        let none = parse_probe("XTASK-IMAGE - - -\n", "x".into());
        assert_eq!((none.python, none.glibc), (None, None));
        let musl = parse_probe("XTASK-IMAGE 3 12 -\n", "x".into());
        assert_eq!((musl.python, musl.glibc), (Some((3, 12)), None));
    }
}
