//! Likely secrets written as plain `env.variables`, which CodeBuild shows in its console and logs.

use std::sync::OnceLock;

use regex::Regex;

use super::Context;
use crate::diagnostic::Diagnostic;
use crate::rules;

/// Names that say "secret", and suffixes that say "only a reference to one".
const SECRET_NAME: &str =
    r"(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|ACCESS_?KEY|CREDENTIAL)";
const REFERENCE_SUFFIX: &str =
    r"(?i)(_NAME|_ID|_ARN|_PATH|_FILE|_URL|_URI|_ENDPOINT|_REGION|_HEADER|_TYPE)$";
/// Values that are secrets whatever they are called.
const SECRET_VALUE: &str = r"^(AKIA|ASIA)[0-9A-Z]{16}$|^gh[pousr]_[A-Za-z0-9]{30,}$|^github_pat_|^xox[abprs]-|^sk_live_|^glpat-|-----BEGIN [A-Z ]*PRIVATE KEY-----";

struct Patterns {
    name: Regex,
    reference: Regex,
    value: Regex,
}

fn patterns() -> Option<&'static Patterns> {
    static COMPILED: OnceLock<Option<Patterns>> = OnceLock::new();
    COMPILED
        .get_or_init(|| {
            Some(Patterns {
                name: Regex::new(SECRET_NAME).ok()?,
                reference: Regex::new(REFERENCE_SUFFIX).ok()?,
                value: Regex::new(SECRET_VALUE).ok()?,
            })
        })
        .as_ref()
}

pub fn check(cx: &Context, out: &mut Vec<Diagnostic>) {
    let (Some(spec), Some(p)) = (cx.buildspec(), patterns()) else {
        return;
    };
    for (name, value) in &spec.env.variables {
        let v = value.value.trim();
        let is_reference = v.is_empty() || v.contains('$') || v.starts_with("arn:");
        let by_name = p.name.is_match(&name.value)
            && !p.reference.is_match(&name.value)
            && !is_reference
            && !is_setting(v);
        if by_name || p.value.is_match(v) {
            let message = format!("`{}` looks like a secret stored in plain text", name.value);
            out.push(
                Diagnostic::new(&rules::PLAINTEXT_SECRET, message)
                    .at(cx.parsed.file.at(value.span))
                    .help("move it to env.secrets-manager or env.parameter-store (SecureString)"),
            );
        }
    }
}

/// A switch or a small number (`TOKENIZERS_PARALLELISM: "false"`, `PASSWORD_MIN_LENGTH: 12`):
/// a setting about secrets, not one.
fn is_setting(value: &str) -> bool {
    let switch = ["true", "false", "yes", "no", "on", "off"]
        .iter()
        .any(|s| value.eq_ignore_ascii_case(s));
    switch || (value.len() <= 5 && value.bytes().all(|b| b.is_ascii_digit()))
}
