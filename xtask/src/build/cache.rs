//! `cache: paths` for local builds: one named Docker volume per cached directory and project,
//! mounted where the buildspec expects it, so caches persist between builds (restored before
//! INSTALL, saved after the build, by construction).

use sha2::{Digest, Sha256};

use super::settings::Settings;

/// `cache: paths` → one named volume per directory, so caches persist between local builds.
pub fn cache_volumes(settings: &Settings, src_dir: &str) -> Vec<(String, String)> {
    let Some(cache) = &settings.buildspec.cache else {
        return Vec::new();
    };
    let project = crate::util::hex(&Sha256::digest(
        settings.source_dir.to_string_lossy().as_bytes(),
    ));
    let mut volumes: Vec<(String, String)> = Vec::new();
    for path in &cache.paths {
        let dir: Vec<&str> = path
            .value
            .split('/')
            .take_while(|part| !part.contains(['*', '?', '[']))
            .collect();
        let dir = dir.join("/");
        let dir = dir.trim_end_matches('/');
        if dir.is_empty() {
            continue;
        }
        let target = if dir.starts_with('/') {
            dir.to_string()
        } else {
            format!("{src_dir}/{dir}")
        };
        if volumes.iter().any(|(_, t)| *t == target) {
            continue;
        }
        let id = crate::util::hex(&Sha256::digest(target.as_bytes()));
        volumes.push((
            format!("xtask-cache-{}-{}", &project[..12], &id[..12]),
            target,
        ));
    }
    volumes
}
