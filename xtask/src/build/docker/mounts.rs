//! Where the build container keeps what it writes: `cache: paths` in named volumes that outlive
//! it, everything else in storage that goes with it. A build writes thousands of small files, and
//! where they land dominated the build time on the benchmark VM (uv installing the seed layer from
//! its cache: 7.5 s in the image's copy-on-write layer, 2.1 s on a volume, 0.1 s in memory). So
//! the source tree lives in memory (tmpfs) when the Docker machine has room, else on a volume of
//! its own; `/tmp` is a volume. With `--no-cache` the cache paths are fresh and go with the
//! container: in memory too, unless the image has files there (a tmpfs would hide them; a new
//! volume starts with them).

use super::super::prepare::OUTPUT_ROOT;

/// Below this much memory on the Docker machine nothing is kept in memory.
const MIN_MEMORY_FOR_TMPFS: u64 = 4 << 30;

/// The container's storage, for [`crate::engine::ContainerSpec`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    /// Named volumes that persist between builds, `(volume, container path)`.
    pub volumes: Vec<(String, String)>,
    /// Container paths given an anonymous volume, removed with the container.
    pub scratch_dirs: Vec<String>,
    /// Container paths in memory, `(path, size limit in bytes)`.
    pub memory_dirs: Vec<(String, u64)>,
}

/// The size limit of each in-memory directory: a quarter of the Docker machine's memory, when
/// it has enough; `None` keeps everything on disk.
pub fn memory_limit(docker_memory_bytes: Option<u64>) -> Option<u64> {
    docker_memory_bytes
        .filter(|bytes| *bytes >= MIN_MEMORY_FOR_TMPFS)
        .map(|bytes| bytes / 4)
}

/// `cache_volumes` are the buildspec's cache paths (see [`super::cache::cache_volumes`]); without
/// the cache they start empty and go with the container. `in_image` tells whether the image has
/// something at a path.
pub fn plan(
    cache_volumes: Vec<(String, String)>,
    cache_enabled: bool,
    memory_limit: Option<u64>,
    in_image: impl Fn(&str) -> bool,
) -> Mounts {
    let mut mounts = Mounts {
        scratch_dirs: vec!["/tmp".to_string()],
        ..Mounts::default()
    };
    match memory_limit {
        Some(limit) => mounts.memory_dirs.push((OUTPUT_ROOT.to_string(), limit)),
        None => mounts.scratch_dirs.push(OUTPUT_ROOT.to_string()),
    }
    if cache_enabled {
        mounts.volumes = cache_volumes;
        return mounts;
    }
    for (_, dir) in cache_volumes {
        match memory_limit {
            // Inside the in-memory source tree: fresh already.
            Some(_) if is_under(&dir, OUTPUT_ROOT) => {}
            Some(limit) if !in_image(&dir) => mounts.memory_dirs.push((dir, limit)),
            _ => mounts.scratch_dirs.push(dir),
        }
    }
    mounts
}

fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches() -> Vec<(String, String)> {
        vec![
            ("vol-a".to_string(), "/root/.cache/uv".to_string()),
            (
                "vol-b".to_string(),
                "/codebuild/output/src1/src/.cache".to_string(),
            ),
        ]
    }

    #[test]
    fn memory_needs_a_machine_of_4_gib_and_takes_a_quarter() {
        assert_eq!(memory_limit(None), None);
        assert_eq!(memory_limit(Some((4 << 30) - 1)), None);
        assert_eq!(memory_limit(Some(16 << 30)), Some(4 << 30));
    }

    #[test]
    fn caches_persist_in_named_volumes_and_the_rest_goes_with_the_container() {
        let mounts = plan(caches(), true, Some(1 << 30), |_| false);
        assert_eq!(mounts.volumes, caches());
        assert_eq!(mounts.scratch_dirs, ["/tmp"]);
        assert_eq!(
            mounts.memory_dirs,
            [("/codebuild/output".to_string(), 1 << 30)]
        );

        let on_disk = plan(caches(), true, None, |_| false);
        assert_eq!(on_disk.scratch_dirs, ["/tmp", "/codebuild/output"]);
        assert!(on_disk.memory_dirs.is_empty());
    }

    #[test]
    fn without_the_cache_the_cache_paths_are_throwaway() {
        let mounts = plan(caches(), false, Some(1 << 30), |_| false);
        assert!(mounts.volumes.is_empty());
        assert_eq!(mounts.scratch_dirs, ["/tmp"]);
        assert_eq!(
            mounts.memory_dirs,
            [
                ("/codebuild/output".to_string(), 1 << 30),
                ("/root/.cache/uv".to_string(), 1 << 30)
            ]
        );
        // What the image has at a cache path stays visible: a new volume starts with it.
        let kept = plan(caches(), false, Some(1 << 30), |dir| {
            dir == "/root/.cache/uv"
        });
        assert_eq!(kept.scratch_dirs, ["/tmp", "/root/.cache/uv"]);
        let on_disk = plan(caches(), false, None, |_| false);
        assert_eq!(
            on_disk.scratch_dirs,
            [
                "/tmp",
                "/codebuild/output",
                "/root/.cache/uv",
                "/codebuild/output/src1/src/.cache"
            ]
        );
    }
}
