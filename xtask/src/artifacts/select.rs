//! CodeBuild's artifact selection: which paths under the artifact root are in the artifact
//! (`files`, `exclude-paths`) and where each one lands (`discard-paths`).
//!
//! Paths are relative to the artifact root (`base-directory` if set, else the source directory),
//! with `/` separators and no `.`/`..` components. The readings of CodeBuild's behaviour:
//!
//! - `files` are globs where `*` stays inside one path component and `**` crosses components:
//!   `**/*` is everything, `dir/*` the direct children of `dir`, `dir/**/*` everything below `dir`.
//! - A pattern without glob characters names one file. A directory is never an artifact, so
//!   `files: [python]` selects nothing when `python` is a directory (CodeBuild then fails with "no
//!   matching artifact paths found"); [`Selection::directory_hint`] turns that into advice.
//! - `exclude-paths` are globs relative to the artifact root, matched against file paths (an
//!   exclude pattern naming a directory does not exclude its contents: use `dir/**/*`).
//! - `discard-paths: yes` keeps only the file name. CodeBuild does not document what happens when
//!   two files then share a name, so extraction reports the collision as an error.
//! - `base-directory` is applied by the caller (it downloads that directory), unless it holds a
//!   glob (`my-build*`, CodeBuild's documented example): then the caller downloads the directory
//!   the glob starts in, and [`Selection::with_base_glob`] takes each entry relative to the
//!   matching directory it is in (the shortest match); the matched directories themselves are not
//!   in the artifact.

use std::fmt;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::buildspec::ArtifactSpec;

/// A `files` or `exclude-paths` pattern that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectionError {
    /// `files` is empty: CodeBuild requires at least one pattern.
    NoFiles,
    /// The pattern is empty, absolute, or climbs out of the artifact root with `..`.
    OutsideRoot { key: &'static str, pattern: String },
    /// globset rejected the pattern.
    InvalidGlob {
        key: &'static str,
        pattern: String,
        message: String,
    },
}

impl fmt::Display for SelectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SelectionError::NoFiles => write!(f, "artifacts.files lists no pattern"),
            SelectionError::OutsideRoot { key, pattern } => write!(
                f,
                "artifacts.{key}: `{pattern}` must be a non-empty path relative to the artifact root (no leading `/`, no `..`)"
            ),
            SelectionError::InvalidGlob {
                key,
                pattern,
                message,
            } => write!(f, "artifacts.{key}: `{pattern}` is not a valid glob: {message}"),
        }
    }
}

impl std::error::Error for SelectionError {}

/// The compiled `files` / `exclude-paths` / `discard-paths` / `enable-symlinks` of one artifact.
#[derive(Debug, Clone)]
pub struct Selection {
    files: Vec<String>,
    file_set: GlobSet,
    exclude_paths: Vec<String>,
    exclude_set: GlobSet,
    discard_paths: bool,
    enable_symlinks: bool,
    /// A glob `base-directory` (relative to the downloaded directory), see the module docs.
    base: Option<globset::GlobMatcher>,
}

/// Whether `text` has glob characters.
pub fn is_glob(text: &str) -> bool {
    has_glob_chars(text)
}

/// A `base-directory` split into the directory to download (without glob characters) and the
/// glob that picks directories below it, if any: `build/out*` → (`build`, `out*`).
pub fn split_base(base: &str) -> (String, Option<String>) {
    let parts: Vec<&str> = base.split('/').collect();
    match parts.iter().position(|p| has_glob_chars(p)) {
        None => (base.to_string(), None),
        Some(i) => {
            let dir = parts[..i].join("/");
            let dir = if dir.is_empty() && base.starts_with('/') {
                "/".to_string()
            } else {
                dir
            };
            (dir, Some(parts[i..].join("/")))
        }
    }
}

impl Selection {
    /// The selection of a buildspec artifact (primary or secondary).
    pub fn from_spec(spec: &ArtifactSpec) -> Result<Selection, SelectionError> {
        let files: Vec<&str> = spec.files.iter().map(|f| f.value.as_str()).collect();
        let excludes: Vec<&str> = spec
            .exclude_paths
            .iter()
            .map(|f| f.value.as_str())
            .collect();
        Ok(Selection::new(&files, &excludes, spec.discard_paths)?
            .with_symlinks(spec.enable_symlinks))
    }

    /// A selection from plain patterns (`enable-symlinks` off).
    pub fn new<S: AsRef<str>>(
        files: &[S],
        exclude_paths: &[S],
        discard_paths: bool,
    ) -> Result<Selection, SelectionError> {
        if files.is_empty() {
            return Err(SelectionError::NoFiles);
        }
        let (files, file_set) = compile("files", files)?;
        let (exclude_paths, exclude_set) = compile("exclude-paths", exclude_paths)?;
        Ok(Selection {
            files,
            file_set,
            exclude_paths,
            exclude_set,
            discard_paths,
            enable_symlinks: false,
            base: None,
        })
    }

    /// Takes each path relative to the directory matching `pattern` that it is in; a path in no
    /// matching directory is not selected.
    pub fn with_base_glob(mut self, pattern: &str) -> Result<Selection, SelectionError> {
        let pattern = normalise("base-directory", pattern)?;
        let glob = GlobBuilder::new(pattern.trim_end_matches('/'))
            .literal_separator(true)
            .build()
            .map_err(|e| SelectionError::InvalidGlob {
                key: "base-directory",
                pattern: pattern.clone(),
                message: e.kind().to_string(),
            })?;
        self.base = Some(glob.compile_matcher());
        Ok(self)
    }

    /// `path` relative to its matching base directory (the path itself without a glob base).
    fn under_base<'p>(&self, path: &'p str) -> Option<&'p str> {
        let Some(base) = &self.base else {
            return Some(path);
        };
        path.match_indices('/')
            .map(|(i, _)| i)
            .find(|i| base.is_match(&path[..*i]))
            .map(|i| &path[i + 1..])
    }

    /// Everything (`**/*`), paths kept.
    pub fn everything() -> Selection {
        let mut builder = GlobSetBuilder::new();
        if let Ok(glob) = GlobBuilder::new("**/*").literal_separator(true).build() {
            builder.add(glob);
        }
        Selection {
            files: vec!["**/*".to_string()],
            file_set: builder.build().unwrap_or_else(|_| GlobSet::empty()),
            exclude_paths: Vec::new(),
            exclude_set: GlobSet::empty(),
            discard_paths: false,
            enable_symlinks: false,
            base: None,
        }
    }

    /// `enable-symlinks: yes` keeps symlinks as symlinks instead of storing their target's content.
    pub fn with_symlinks(mut self, enable_symlinks: bool) -> Selection {
        self.enable_symlinks = enable_symlinks;
        self
    }

    pub fn enable_symlinks(&self) -> bool {
        self.enable_symlinks
    }

    pub fn discard_paths(&self) -> bool {
        self.discard_paths
    }

    /// The normalised `files` patterns.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The normalised `exclude-paths` patterns.
    pub fn exclude_paths(&self) -> &[String] {
        &self.exclude_paths
    }

    /// Whether the file at `path` (relative to the artifact root) is in the artifact.
    pub fn is_selected(&self, path: &str) -> bool {
        let Some(path) = self.under_base(path) else {
            return false;
        };
        !path.is_empty() && self.file_set.is_match(path) && !self.exclude_set.is_match(path)
    }

    /// Where the file at `path` lands in the artifact, or `None` when it is not in it.
    pub fn place(&self, path: &str) -> Option<String> {
        if !self.is_selected(path) {
            return None;
        }
        let path = self.under_base(path)?;
        if self.discard_paths {
            path.rsplit('/').next().map(str::to_string)
        } else {
            Some(path.to_string())
        }
    }

    /// When `dir` is a directory that a glob-free `files` pattern names, that pattern: it selects
    /// nothing, and the user most likely meant `dir/**/*`.
    pub fn directory_hint(&self, dir: &str) -> Option<&str> {
        self.files
            .iter()
            .find(|p| !has_glob_chars(p) && p.trim_end_matches('/') == dir)
            .map(String::as_str)
    }
}

fn has_glob_chars(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Strips `./` prefixes; rejects empty, absolute and `..` patterns.
fn normalise(key: &'static str, pattern: &str) -> Result<String, SelectionError> {
    let outside = || SelectionError::OutsideRoot {
        key,
        pattern: pattern.to_string(),
    };
    let mut rest = pattern.trim();
    while let Some(stripped) = rest.strip_prefix("./") {
        rest = stripped.trim_start_matches('/');
    }
    if rest.is_empty() || rest == "." || rest.starts_with('/') {
        return Err(outside());
    }
    if rest.split('/').any(|c| c == "..") {
        return Err(outside());
    }
    Ok(rest.to_string())
}

fn compile<S: AsRef<str>>(
    key: &'static str,
    patterns: &[S],
) -> Result<(Vec<String>, GlobSet), SelectionError> {
    let mut normalised = Vec::with_capacity(patterns.len());
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let pattern = normalise(key, pattern.as_ref())?;
        let glob = GlobBuilder::new(&pattern)
            .literal_separator(true)
            .build()
            .map_err(|e| SelectionError::InvalidGlob {
                key,
                pattern: pattern.clone(),
                message: e.kind().to_string(),
            })?;
        builder.add(glob);
        normalised.push(pattern);
    }
    let set = builder.build().map_err(|e| SelectionError::InvalidGlob {
        key,
        pattern: normalised.join(", "),
        message: e.to_string(),
    })?;
    Ok((normalised, set))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(files: &[&str], exclude: &[&str], discard: bool) -> Selection {
        Selection::new(files, exclude, discard).unwrap()
    }

    #[test]
    fn double_star_selects_everything() {
        let s = sel(&["**/*"], &[], false);
        for p in ["a", "python/x.py", "python/a/b/c.so", ".hidden"] {
            assert_eq!(s.place(p).as_deref(), Some(p), "{p}");
        }
    }

    #[test]
    fn dir_double_star_selects_below_dir_only() {
        let s = sel(&["python/**/*"], &[], false);
        assert!(s.is_selected("python/x.py"));
        assert!(s.is_selected("python/numpy/core/_multiarray.so"));
        assert!(!s.is_selected("python"));
        assert!(!s.is_selected("pythonx/y.py"));
        assert!(!s.is_selected("src/python/x.py"));
    }

    #[test]
    fn single_star_does_not_cross_slash() {
        let s = sel(&["dir/*"], &[], false);
        assert!(s.is_selected("dir/a"));
        assert!(!s.is_selected("dir/sub/b"));
        let top = sel(&["*.zip"], &[], false);
        assert!(top.is_selected("layer.zip"));
        assert!(!top.is_selected("out/layer.zip"));
    }

    #[test]
    fn plain_path_names_one_file_and_a_directory_name_selects_nothing() {
        let s = sel(&["./layer.zip", "python"], &[], false);
        assert!(s.is_selected("layer.zip"));
        assert!(!s.is_selected("python/x.py"));
        assert_eq!(s.directory_hint("python"), Some("python"));
        assert_eq!(s.directory_hint("layer.zip"), Some("layer.zip"));
        assert_eq!(s.directory_hint("other"), None);
    }

    #[test]
    fn exclude_paths_apply_to_files() {
        let s = sel(
            &["**/*"],
            &["**/__pycache__/*", "python/tests/**/*", "*.md"],
            false,
        );
        assert!(!s.is_selected("python/pkg/__pycache__/a.pyc"));
        assert!(!s.is_selected("python/tests/deep/t.py"));
        assert!(!s.is_selected("README.md"));
        assert!(s.is_selected("python/docs/README.md"));
        assert!(s.is_selected("python/pkg/a.py"));
    }

    #[test]
    fn discard_paths_keeps_the_file_name() {
        let s = sel(&["**/*"], &[], true);
        assert_eq!(s.place("a/b/c.txt").as_deref(), Some("c.txt"));
        assert_eq!(s.place("top").as_deref(), Some("top"));
    }

    #[test]
    fn a_glob_base_directory_collects_the_files_of_every_match() {
        let s = sel(&["**/*"], &[], true)
            .with_base_glob("my-build*")
            .unwrap();
        assert_eq!(s.place("my-build1/a.txt").as_deref(), Some("a.txt"));
        assert_eq!(s.place("my-build-two/sub/b.txt").as_deref(), Some("b.txt"));
        assert_eq!(s.place("other/c.txt"), None);
        assert_eq!(s.place("my-build1"), None);
        let kept = sel(&["**/*"], &[], false).with_base_glob("out/*").unwrap();
        assert_eq!(kept.place("out/x/sub/b.txt").as_deref(), Some("sub/b.txt"));
        assert_eq!(
            split_base("build/out*/x"),
            ("build".into(), Some("out*/x".into()))
        );
        assert_eq!(
            split_base("my-build*"),
            ("".into(), Some("my-build*".into()))
        );
        assert_eq!(split_base("/tmp/o*"), ("/tmp".into(), Some("o*".into())));
        assert_eq!(split_base("plain/dir"), ("plain/dir".into(), None));
    }

    #[test]
    fn bad_patterns_are_rejected() {
        let none: [&str; 0] = [];
        assert_eq!(
            Selection::new(&none, &none, false).unwrap_err(),
            SelectionError::NoFiles
        );
        for bad in ["/abs/**/*", "../x", "a/../../b", "", "./"] {
            let err = Selection::new(&[bad], &[], false).unwrap_err();
            assert!(
                matches!(err, SelectionError::OutsideRoot { .. }),
                "{bad}: {err}"
            );
        }
        let err = Selection::new(&["a/[b"], &[], false).unwrap_err();
        assert!(err.to_string().contains("not a valid glob"), "{err}");
    }
}
