//! `cache:` for local builds, decided before the build (pure): which directories are cached, and
//! under which key. CodeBuild evaluates `key` and `fallback-keys` in the shell; here they are
//! evaluated on the host from what the build will have: the build's variables (`$NAME`,
//! `${NAME}`) and `$(codebuild-hash-files <globs>)` over the source that is sent. A key that needs
//! anything else (another command, a file made during the build) cannot be known before the build
//! starts: the build then uses the unkeyed cache, and says so.

use globset::{GlobBuilder, GlobSetBuilder};
use sha2::{Digest, Sha256};

use super::variables::Variables;
use crate::buildspec::Buildspec;

/// The cache of a build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachePlan {
    /// `cache: paths` directories in the container (absolute), once each.
    pub dirs: Vec<String>,
    /// The evaluated `key`; `None` for an unkeyed cache.
    pub key: Option<String>,
    /// The evaluated `fallback-keys`, looked up by prefix when `key` has no cache yet.
    pub fallback_keys: Vec<String>,
    /// `restore` (never saved) or `save` (never restored); `None` for both.
    pub action: Option<Action>,
    /// Why the key was not used, when it could not be evaluated.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Restore,
    Save,
}

/// The cache plan of `buildspec`, its keys evaluated with `variables` and the source `tar`.
pub fn plan(buildspec: &Buildspec, src_dir: &str, variables: &Variables, tar: &[u8]) -> CachePlan {
    let Some(cache) = &buildspec.cache else {
        return CachePlan::default();
    };
    let mut plan = CachePlan {
        dirs: dirs(buildspec, src_dir),
        action: match cache.action.as_ref().map(|a| a.value.as_str()) {
            Some("restore") => Some(Action::Restore),
            Some("save") => Some(Action::Save),
            _ => None,
        },
        ..CachePlan::default()
    };
    let Some(key) = &cache.key else {
        return plan;
    };
    let evaluate = |text: &str| evaluate(text, variables, tar);
    match evaluate(&key.value) {
        Ok(key) => {
            plan.key = Some(key);
            plan.fallback_keys = cache
                .fallback_keys
                .iter()
                .filter_map(|k| evaluate(&k.value).ok())
                .collect();
        }
        Err(why) => {
            plan.note = Some(format!(
                "cache key `{}` cannot be evaluated before the build ({why}): the unkeyed cache is used",
                key.value
            ))
        }
    }
    plan
}

/// The directories of `cache: paths` (each up to its first glob component), absolute, once each.
pub fn dirs(buildspec: &Buildspec, src_dir: &str) -> Vec<String> {
    let Some(cache) = &buildspec.cache else {
        return Vec::new();
    };
    let mut dirs: Vec<String> = Vec::new();
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
        let absolute = if dir.starts_with('/') {
            dir.to_string()
        } else {
            format!("{src_dir}/{dir}")
        };
        if !dirs.contains(&absolute) {
            dirs.push(absolute);
        }
    }
    dirs
}

/// A key as the shell would expand it: literal text, `$NAME`/`${NAME}` from `variables`,
/// `$(codebuild-hash-files <globs>)` over the files of `tar`.
pub fn evaluate(text: &str, variables: &Variables, tar: &[u8]) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        if let Some(inner) = after.strip_prefix('(') {
            let end = inner.find(')').ok_or("an unclosed $(")?;
            out.push_str(&command(&inner[..end], tar)?);
            rest = &inner[end + 1..];
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner.find('}').ok_or("an unclosed ${")?;
            out.push_str(&variable(&inner[..end], variables)?);
            rest = &inner[end + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            out.push_str(&variable(&after[..end], variables)?);
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    if text.contains('`') {
        return Err("it runs a command".to_string());
    }
    Ok(out)
}

fn variable(name: &str, variables: &Variables) -> Result<String, String> {
    variables
        .get(name)
        .map(str::to_string)
        .ok_or_else(|| format!("${name} is not a variable of the build"))
}

/// `codebuild-hash-files <globs>`: a SHA-256 over the path and content of every source file that
/// matches one of the globs (relative to the source directory), in path order.
fn command(text: &str, tar: &[u8]) -> Result<String, String> {
    let mut words = text.split_whitespace();
    if words.next() != Some("codebuild-hash-files") {
        return Err(format!("`{}` is a command", text.trim()));
    }
    let mut globs = GlobSetBuilder::new();
    for pattern in words {
        let glob = GlobBuilder::new(pattern.trim_matches(['\'', '"']))
            .literal_separator(true)
            .build()
            .map_err(|e| format!("`{pattern}` is not a glob: {e}"))?;
        globs.add(glob);
    }
    let globs = globs.build().map_err(|e| e.to_string())?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(tar);
    let entries = archive.entries().map_err(|e| e.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if entry.header().entry_type().is_file() && globs.is_match(&path) {
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).map_err(|e| e.to_string())?;
            files.push((path, content));
        }
    }
    files.sort();
    let mut hash = Sha256::new();
    for (path, content) in &files {
        hash.update(path.as_bytes());
        hash.update([0]);
        hash.update(content);
        hash.update([0]);
    }
    Ok(crate::util::hex(&hash.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar(files: &[(&str, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            builder
                .append_data(&mut header, path, content.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn keys_expand_variables_and_hash_source_files() {
        let mut vars = Variables::default();
        vars.set("ENV", "prod");
        let source = tar(&[("requirements.txt", "six==1\n"), ("src/a.py", "x")]);
        let key = evaluate(
            "deps-${ENV}-$(codebuild-hash-files requirements.txt)",
            &vars,
            &source,
        )
        .unwrap();
        assert!(
            key.starts_with("deps-prod-") && key.len() == "deps-prod-".len() + 64,
            "{key}"
        );
        let changed = tar(&[("requirements.txt", "six==2\n"), ("src/a.py", "x")]);
        let other = evaluate(
            "deps-$ENV-$(codebuild-hash-files requirements.txt)",
            &vars,
            &changed,
        )
        .unwrap();
        assert_ne!(key, other);
        assert_eq!(evaluate("literal", &vars, &source).unwrap(), "literal");
        assert!(evaluate("$(git rev-parse HEAD)", &vars, &source).is_err());
        assert!(evaluate("${MISSING}", &vars, &source).is_err());
        assert!(evaluate("`date`", &vars, &source).is_err());
    }
}
