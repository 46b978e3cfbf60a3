//! `cache: paths` for local builds: one named Docker volume per cached directory and project,
//! mounted where the buildspec expects it, so caches persist between builds (restored before
//! INSTALL, saved after the build, by construction).

use sha2::{Digest, Sha256};

/// `(volume, directory)` for each cache directory of the project `project_id`.
pub fn cache_volumes(project_id: &str, dirs: &[String]) -> Vec<(String, String)> {
    dirs.iter()
        .map(|dir| {
            let id = crate::util::hex(&Sha256::digest(dir.as_bytes()));
            let project = project_id.get(..12).unwrap_or(project_id);
            (format!("xtask-cache-{project}-{}", &id[..12]), dir.clone())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_directory_and_project_has_its_volume() {
        let dirs = vec!["/root/.cache/uv".to_string(), "/src/.cache".to_string()];
        let a = cache_volumes("aaaaaaaaaaaaaaaa", &dirs);
        let b = cache_volumes("bbbbbbbbbbbbbbbb", &dirs);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0].0, a[1].0);
        assert_ne!(a[0].0, b[0].0);
        assert_eq!(a[0].1, "/root/.cache/uv");
        assert!(a[0].0.starts_with("xtask-cache-aaaaaaaaaaaa-"));
    }
}
