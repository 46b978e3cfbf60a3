//! `cache:` for local builds: named Docker volumes that outlive the container, mounted where the
//! buildspec's cache paths are. One volume per directory and project; with a `key`, one per
//! directory, project and evaluated key, and a new key starts from the newest cache whose key
//! begins with a fallback key (copied, so the fallback stays as it is). `action: restore` mounts
//! a throwaway copy (nothing is saved); `action: save` starts empty (nothing is restored).

use sha2::{Digest, Sha256};

use super::super::cache::{Action, CachePlan};
use super::super::log::Log;
use crate::engine::Engine;

/// Volume labels: the project, the cached directory, the evaluated key.
const PROJECT_LABEL: &str = "xtask.cache.project";
const DIR_LABEL: &str = "xtask.cache.dir";
const KEY_LABEL: &str = "xtask.cache.key";

/// The cache volumes of a build: `(volume, directory)` to mount, and the throwaway ones to remove
/// after the build.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CacheVolumes {
    pub mounts: Vec<(String, String)>,
    pub throwaway: Vec<String>,
}

/// `(volume, directory)` for each cache directory of the project, unkeyed (as
/// [`volume_name`] names them).
pub fn cache_volumes(project_id: &str, dirs: &[String]) -> Vec<(String, String)> {
    dirs.iter()
        .map(|dir| (volume_name(project_id, dir, None), dir.clone()))
        .collect()
}

/// `xtask-cache-<project>-<directory>[-<key>]`, each a short hash.
pub fn volume_name(project_id: &str, dir: &str, key: Option<&str>) -> String {
    let short = |text: &str| crate::util::hex(&Sha256::digest(text.as_bytes()))[..12].to_string();
    let project = project_id.get(..12).unwrap_or(project_id);
    match key {
        Some(key) => format!("xtask-cache-{project}-{}-{}", short(dir), short(key)),
        None => format!("xtask-cache-{project}-{}", short(dir)),
    }
}

/// Makes the cache volumes of `plan` ready: created, restored from a fallback, or copied for a
/// restore-only cache.
pub async fn prepare(
    engine: &Engine,
    image: &str,
    project_id: &str,
    plan: &CachePlan,
    log: &Log,
) -> anyhow::Result<CacheVolumes> {
    let mut volumes = CacheVolumes::default();
    for dir in &plan.dirs {
        let name = volume_name(project_id, dir, plan.key.as_deref());
        let labels = labels(project_id, dir, plan.key.as_deref());
        let exists = engine.volume_exists(&name).await?;
        if plan.action == Some(Action::Save) && exists {
            engine.remove_volume(&name).await?;
        }
        if !exists && plan.action != Some(Action::Save) {
            if let Some(fallback) = fallback(engine, project_id, dir, plan).await? {
                log.line(&format!(
                    "cache {dir}: restored from the cache of key `{}`",
                    fallback.1
                ));
                engine.ensure_volume(&name, &labels).await?;
                engine.copy_volume(image, &fallback.0, &name).await?;
            }
        }
        engine.ensure_volume(&name, &labels).await?;
        let mounted = match plan.action {
            Some(Action::Restore) => {
                let copy = format!("xtask-cache-restore-{}", uuid::Uuid::new_v4().simple());
                engine.ensure_volume(&copy, &[]).await?;
                engine.copy_volume(image, &name, &copy).await?;
                volumes.throwaway.push(copy.clone());
                copy
            }
            _ => name,
        };
        volumes.mounts.push((mounted, dir.to_string()));
    }
    Ok(volumes)
}

fn labels(project_id: &str, dir: &str, key: Option<&str>) -> Vec<(String, String)> {
    let mut labels = vec![
        (PROJECT_LABEL.to_string(), project_id.to_string()),
        (DIR_LABEL.to_string(), dir.to_string()),
    ];
    if let Some(key) = key {
        labels.push((KEY_LABEL.to_string(), key.to_string()));
    }
    labels
}

/// The newest cache of `dir` whose key starts with one of the fallback keys (in their order):
/// `(volume, key)`.
async fn fallback(
    engine: &Engine,
    project_id: &str,
    dir: &str,
    plan: &CachePlan,
) -> anyhow::Result<Option<(String, String)>> {
    if plan.fallback_keys.is_empty() {
        return Ok(None);
    }
    let filter = [
        format!("{PROJECT_LABEL}={project_id}"),
        format!("{DIR_LABEL}={dir}"),
    ];
    let candidates = engine.volumes_labelled(&filter).await?;
    for prefix in &plan.fallback_keys {
        let found = candidates.iter().find_map(|v| {
            let key = v.labels.get(KEY_LABEL)?;
            key.starts_with(prefix.as_str())
                .then(|| (v.name.clone(), key.clone()))
        });
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_project_and_key_has_its_volume() {
        let dirs = vec!["/root/.cache/uv".to_string(), "/src/.cache".to_string()];
        let a = cache_volumes("aaaaaaaaaaaaaaaa", &dirs);
        let b = cache_volumes("bbbbbbbbbbbbbbbb", &dirs);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0].0, a[1].0);
        assert_ne!(a[0].0, b[0].0);
        assert_eq!(a[0].1, "/root/.cache/uv");
        assert!(a[0].0.starts_with("xtask-cache-aaaaaaaaaaaa-"));
        let keyed = volume_name("aaaaaaaaaaaaaaaa", "/root/.cache/uv", Some("k1"));
        assert_ne!(keyed, a[0].0);
        assert_ne!(
            keyed,
            volume_name("aaaaaaaaaaaaaaaa", "/root/.cache/uv", Some("k2"))
        );
    }
}
