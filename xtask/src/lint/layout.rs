//! The primary artifact must be a Lambda layer: `python/` at the zip root (Lambda mounts the zip at
//! /opt and adds /opt/python to sys.path), or a zip the build made itself.

use super::Context;
use crate::buildspec::ArtifactSpec;
use crate::diagnostic::Diagnostic;
use crate::rules;

pub fn check(cx: &Context, out: &mut Vec<Diagnostic>) {
    // Only a layer project has this constraint: the template says so.
    let Some(spec) = cx.buildspec() else { return };
    if cx.layers().is_empty() {
        return;
    }
    let Some(artifacts) = &spec.artifacts else {
        return;
    };
    let primary = &artifacts.primary;
    let file = &cx.parsed.file;
    if is_single_zip(primary) {
        return;
    }
    if primary.discard_paths {
        let message = "discard-paths flattens the artifact: the layer loses its python/ directory";
        out.push(
            Diagnostic::new(&rules::LAYER_LAYOUT, message)
                .at(file.at(artifacts.span))
                .help("remove discard-paths"),
        );
    }
    let base = primary
        .base_directory
        .as_ref()
        .map(|b| b.value.trim_end_matches('/').to_string());
    for pattern in &primary.files {
        if let Some(problem) = layout_problem(base.as_deref(), &pattern.value) {
            out.push(
                Diagnostic::new(&rules::LAYER_LAYOUT, problem)
                    .at(file.at(pattern.span))
                    .help("use `base-directory: <dir>` with `files: - 'python/**/*'` so the zip starts with python/"),
            );
        }
    }
}

/// `artifacts: files: [layer.zip]`: the build zipped the layer itself.
fn is_single_zip(spec: &ArtifactSpec) -> bool {
    spec.files.len() == 1 && spec.files[0].value.ends_with(".zip")
}

/// Where this pattern puts files in the zip, if that is not under `python/`.
fn layout_problem(base: Option<&str>, pattern: &str) -> Option<String> {
    let pattern = pattern.trim_start_matches("./");
    let first = pattern.split('/').next().unwrap_or_default();
    if first == "python" {
        return None;
    }
    let is_glob = first.contains(['*', '?', '[']);
    if is_glob {
        // `**/*` from base-directory X: the zip root is X's content; bad when X is python itself.
        let base_last = base.and_then(|b| b.rsplit('/').next());
        return match base_last {
            Some("python") | Some("site-packages") => Some(format!(
                "files `{pattern}` from base-directory `{}` puts the packages at the zip root, not under python/",
                base.unwrap_or_default()
            )),
            _ => None,
        };
    }
    // `out/app.py` lands in `out/`; a bare `README.md` is itself at the root.
    let lands = if pattern.contains('/') {
        format!("`{first}/`")
    } else {
        format!("`{first}`")
    };
    Some(format!(
        "files `{pattern}` lands in {lands} at the zip root; Lambda only imports from python/ (mounted at /opt/python)"
    ))
}

#[cfg(test)]
mod tests {
    use super::layout_problem;

    #[test]
    fn layouts() {
        assert_eq!(layout_problem(Some("layer"), "python/**/*"), None);
        assert_eq!(layout_problem(Some("build"), "**/*"), None);
        assert!(layout_problem(Some("layer/python"), "**/*").is_some());
        assert!(layout_problem(None, "layer/python/**/*").is_some());
        assert_eq!(layout_problem(None, "./python/**/*"), None);
    }
}
