//! The Python version must agree everywhere it is stated: `runtime-versions` in the buildspec,
//! the layer's `CompatibleRuntimes`, and the build image of the CodeBuild project. Deprecated
//! runtimes are flagged by date.

use super::Context;
use crate::diagnostic::{Diagnostic, Location, Severity};
use crate::rules;
use crate::runtime::{python_of_image, Runtime};

/// A runtime id (`python3.9`) and where it was written.
struct Stated {
    runtime: String,
    location: Location,
}

pub fn check(cx: &Context, out: &mut Vec<Diagnostic>) {
    let requested = requested_python(cx);
    let declared = declared_runtimes(cx);
    let images = image_pythons(cx);

    if let Some(req) = &requested {
        if !declared.is_empty() && !declared.iter().any(|d| d.runtime == req.runtime) {
            let listed: Vec<_> = declared.iter().map(|d| d.runtime.as_str()).collect();
            out.push(
                Diagnostic::new(
                    &rules::RUNTIME_TEMPLATE_MISMATCH,
                    format!(
                        "the build uses {} but the layer's CompatibleRuntimes are {}",
                        req.runtime,
                        listed.join(", ")
                    ),
                )
                .at(req.location.clone())
                .help(format!(
                    "make them agree (see {})",
                    position(&declared[0].location)
                )),
            );
        }
        for image in images.iter().filter(|i| i.runtime != req.runtime) {
            out.push(
                Diagnostic::new(
                    &rules::RUNTIME_IMAGE_MISMATCH,
                    format!(
                        "runtime-versions asks for {} but the CodeBuild image provides {}",
                        req.runtime, image.runtime
                    ),
                )
                .at(req.location.clone())
                .help(format!(
                    "the SAM build images have no runtime switcher; use build-{} (see {})",
                    req.runtime,
                    position(&image.location)
                )),
            );
        }
    }

    // What the layer is built with: the requested runtime, else the project's image.
    let built_with = requested.as_ref().or(images.first());
    if let Some(built) = built_with {
        for d in declared.iter().filter(|d| d.runtime != built.runtime) {
            out.push(
                Diagnostic::new(
                    &rules::RUNTIME_TEMPLATE_MISMATCH,
                    format!("the layer claims {} but is built with {}: native wheels (cp{}) only load on that one", d.runtime, built.runtime, built.runtime.trim_start_matches("python").replace('.', "")),
                )
                .severity(Severity::Warning)
                .at(d.location.clone())
                .help("list only the runtime the layer is built for, or build one layer per runtime; pure-Python layers are fine"),
            );
        }
    }
    if requested.is_none() {
        for image in &images {
            if !declared.is_empty() && !declared.iter().any(|d| d.runtime == image.runtime) {
                out.push(
                    Diagnostic::new(
                        &rules::RUNTIME_IMAGE_MISMATCH,
                        format!("the CodeBuild image provides {}, which the layer's CompatibleRuntimes do not list", image.runtime),
                    )
                    .at(image.location.clone()),
                );
            }
        }
    }

    let mut seen = Vec::new();
    for stated in requested.iter().chain(&declared) {
        if seen.contains(&stated.runtime) {
            continue;
        }
        seen.push(stated.runtime.clone());
        deprecation(cx, stated, out);
    }
}

fn deprecation(cx: &Context, stated: &Stated, out: &mut Vec<Diagnostic>) {
    let newest = Runtime::newest_supported(cx.today);
    let suggestion = newest.map_or(String::new(), |n| {
        format!("move to {} (supported until {})", n.id, n.deprecation)
    });
    let message = match Runtime::find(&stated.runtime) {
        Some(r) if r.is_deprecated_on(cx.today) => {
            format!("{} was deprecated by AWS Lambda on {}", r.id, r.deprecation)
        }
        Some(_) => return,
        None if is_older_than_table(&stated.runtime) => {
            format!("{} is no longer supported by AWS Lambda", stated.runtime)
        }
        None => return,
    };
    out.push(
        Diagnostic::new(&rules::DEPRECATED_RUNTIME, message)
            .at(stated.location.clone())
            .help(suggestion),
    );
}

fn is_older_than_table(runtime: &str) -> bool {
    let Some(version) = runtime.strip_prefix("python") else {
        return false;
    };
    match version.split_once('.') {
        Some(("2", _)) => true,
        Some(("3", minor)) => minor.parse::<u32>().is_ok_and(|m| m < 9),
        _ => false,
    }
}

fn position(location: &Location) -> String {
    format!(
        "{}:{}:{}",
        location.file.path, location.span.start.line, location.span.start.col
    )
}

/// `install: runtime-versions: python: 3.9`, when it names an exact version.
fn requested_python(cx: &Context) -> Option<Stated> {
    let install = cx
        .buildspec()?
        .phase(crate::buildspec::PhaseName::Install)?;
    let (_, version) = install
        .runtime_versions
        .iter()
        .find(|(name, _)| name.value == "python")?;
    let exact = version.value.split('.').count() == 2
        && version
            .value
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    exact.then(|| Stated {
        runtime: format!("python{}", version.value),
        location: cx.parsed.file.at(version.span),
    })
}

fn declared_runtimes(cx: &Context) -> Vec<Stated> {
    let Some(template) = &cx.template else {
        return Vec::new();
    };
    template
        .layers()
        .into_iter()
        .flat_map(|layer| layer.compatible_runtimes)
        .filter_map(|r| {
            Some(Stated {
                runtime: r.ok()?.to_string(),
                location: template.file.at(r.span),
            })
        })
        .collect()
}

fn image_pythons(cx: &Context) -> Vec<Stated> {
    let Some(codebuild) = &cx.codebuild else {
        return Vec::new();
    };
    codebuild
        .codebuild_images()
        .into_iter()
        .filter_map(|image| {
            let version = python_of_image(image.ok()?)?;
            Some(Stated {
                runtime: format!("python{version}"),
                location: codebuild.file.at(image.span),
            })
        })
        .collect()
}
