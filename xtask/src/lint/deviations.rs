//! Where `build-layer` cannot do exactly what CodeBuild does with a buildspec, one warning line
//! (BS212) says how the local build differs, so nobody learns it from a surprise.

use super::Context;
use crate::diagnostic::Diagnostic;
use crate::rules;

pub fn check(cx: &Context, out: &mut Vec<Diagnostic>) {
    let Some(spec) = cx.buildspec() else { return };
    let file = &cx.parsed.file;
    for phase in &spec.phases {
        let Some(user) = &phase.run_as else { continue };
        let message = format!(
            "local builds run phase {} as {} with each command in a shell of its own (exported variables and the working directory go in; changes to them do not come back to later commands)",
            phase.name.key(),
            user.value
        );
        out.push(
            Diagnostic::new(&rules::LOCAL_DEVIATION, message)
                .at(file.at(user.span))
                .help("CodeBuild runs the phase as that user; it does not document how one shell spans users"),
        );
    }
    let Some(cache) = &spec.cache else { return };
    let Some(key) = &cache.key else { return };
    let needs_a_command = key.value.contains('`')
        || key
            .value
            .split("$(")
            .skip(1)
            .any(|call| !call.trim_start().starts_with("codebuild-hash-files"));
    if needs_a_command {
        let message = format!(
            "local builds cannot evaluate the cache key `{}` before the build (it runs a command): they use the unkeyed cache",
            key.value
        );
        out.push(
            Diagnostic::new(&rules::LOCAL_DEVIATION, message)
                .at(file.at(key.span))
                .help("keys made of text, variables and $(codebuild-hash-files …) are evaluated locally"),
        );
    }
}
