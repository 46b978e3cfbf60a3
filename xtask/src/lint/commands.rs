//! Checks on the commands themselves: interactive hazards, publishing from inside the build,
//! bash-only syntax under `sh`, and files the commands need that the source does not have.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use regex::Regex;

use super::shell::{mask_literals, simple_commands, SimpleCommand};
use super::Context;
use crate::buildspec::{Shell, Spanned};
use crate::diagnostic::{Diagnostic, Location, Severity};
use crate::rules::{self, Rule};

pub fn check(cx: &Context, out: &mut Vec<Diagnostic>) {
    let Some(spec) = cx.buildspec() else { return };
    let shell = spec.shell();
    let powershell = super::looks_like_powershell(spec);
    let mut files = FileTracker::new(cx.source_root.clone());
    let mut earlier_text = String::new();
    for (_, command) in spec.all_commands() {
        let simple = simple_commands(&command.value);
        let at = |from: usize, needle: &str| locate_from(cx, command, from, needle);
        for cmd in &simple {
            interactive_hazards(cmd, &command.value, &at, out);
            publishing(cmd, &at, out);
            // Files made earlier in this same command (`curl -o x.sh ... && sh x.sh`) count too.
            let start = cmd.words.first().map_or(0, |w| w.offset);
            let before = command.value.get(..start).unwrap_or_default();
            files.check(cmd, &earlier_text, before, &at, out);
        }
        if shell == Shell::Sh && !powershell {
            bash_only_syntax(&command.value, &simple, &at, out);
        }
        earlier_text.push_str(&command.value);
        earlier_text.push('\n');
    }
}

fn diagnostic(
    rule: &'static Rule,
    span_loc: crate::diagnostic::Location,
    message: String,
) -> Diagnostic {
    Diagnostic::new(rule, message).at(span_loc)
}

/// Finds a needle at or after a byte offset of the command's text.
type Locate<'a> = dyn Fn(usize, &str) -> Location + 'a;

/// The first occurrence of `needle` at or after byte `from` of the command's text, found in the
/// source (where quotes and block indentation shift it) by counting the occurrences before it;
/// else the first occurrence anywhere in the command, else the whole command.
fn locate_from(cx: &Context, command: &Spanned<String>, from: usize, needle: &str) -> Location {
    if needle.is_empty() {
        return cx.locate(command, needle);
    }
    let nth = command
        .value
        .get(..from)
        .unwrap_or_default()
        .matches(needle)
        .count();
    let file = &cx.parsed.file;
    let start = command.span.start.offset;
    let end = command.span.end.offset.min(file.text.len());
    let found = file
        .text
        .get(start..end)
        .and_then(|source| source.match_indices(needle).nth(nth));
    match found {
        Some((i, _)) => file.at(file.span_at(start + i, needle.len())),
        None => cx.locate(command, needle),
    }
}

fn interactive_hazards(cmd: &SimpleCommand, whole: &str, at: &Locate, out: &mut Vec<Diagnostic>) {
    let words: Vec<&str> = cmd.command().iter().map(|w| w.text.as_str()).collect();
    let from = cmd.command().first().map_or(0, |w| w.offset);
    let at = |needle: &str| at(from, needle);
    let hazard = |message: String, help: &str, severity: Severity| {
        Diagnostic::new(&rules::INTERACTIVE_HAZARD, message)
            .severity(severity)
            .help(help.to_string())
    };
    match words.as_slice() {
        ["yes", ..] if cmd.piped_out => out.push(
            hazard(
                "`yes |` answers every prompt blindly, including ones that should stop the build".into(),
                "use the command's own non-interactive flag (e.g. `sam deploy --no-confirm-changeset`)",
                Severity::Error,
            )
            .at(at("yes")),
        ),
        ["read", ..] if !cmd.piped_in && !whole.contains('<') && !whole.contains('|') => out.push(
            hazard(
                "`read` waits for input that a build never gets: it fails at end of input".into(),
                "pass the value as an environment variable instead",
                Severity::Error,
            )
            .at(at("read")),
        ),
        ["sam", "deploy", ..] if cmd.has_flag(&["--guided"], Some('g')) => out.push(
            hazard(
                "`sam deploy --guided` asks questions interactively".into(),
                "pass the settings as flags or in samconfig.toml",
                Severity::Error,
            )
            .at(at("--guided")),
        ),
        ["sam", "deploy", ..] if !cmd.has_flag(&["--no-confirm-changeset"], None) => out.push(
            hazard(
                "`sam deploy` may stop to confirm the change set (confirm_changeset in samconfig.toml)".into(),
                "add --no-confirm-changeset",
                Severity::Warning,
            )
            .at(at("sam")),
        ),
        ["aws", "configure"] | ["aws", "configure", "--profile", _] => out.push(
            hazard(
                "`aws configure` prompts for credentials".into(),
                "use `aws configure set KEY VALUE` or environment variables",
                Severity::Error,
            )
            .at(at("configure")),
        ),
        [pm @ ("apt-get" | "apt" | "yum" | "dnf" | "microdnf"), action @ ("install" | "remove" | "upgrade" | "dist-upgrade"), ..]
            // apt-get: quiet level 2 (`-qq`) implies -y.
            if !cmd.has_flag(&["--yes", "--assume-yes", "-qq"], Some('y')) =>
        {
            out.push(
                hazard(
                    format!("`{pm} {action}` asks for confirmation without -y"),
                    "add -y",
                    Severity::Warning,
                )
                .at(at(pm)),
            )
        }
        [pip @ ("pip" | "pip3"), "uninstall", ..] if !cmd.has_flag(&["--yes"], Some('y')) => out.push(
            hazard(
                format!("`{pip} uninstall` asks for confirmation without -y"),
                "add -y",
                Severity::Warning,
            )
            .at(at("uninstall")),
        ),
        _ => {}
    }
}

fn publishing(cmd: &SimpleCommand, at: &Locate, out: &mut Vec<Diagnostic>) {
    let words: Vec<&str> = cmd.command().iter().map(|w| w.text.as_str()).collect();
    let from = cmd.command().first().map_or(0, |w| w.offset);
    let what = match words.as_slice() {
        ["sam", sub @ ("deploy" | "package" | "publish"), ..] => format!("sam {sub}"),
        ["aws", "lambda", sub @ ("publish-layer-version" | "update-function-code"), ..] => {
            format!("aws lambda {sub}")
        }
        ["aws", "cloudformation", sub @ ("deploy" | "package" | "create-stack" | "update-stack"), ..] =>
        {
            format!("aws cloudformation {sub}")
        }
        _ => return,
    };
    let first = words[0];
    out.push(
        diagnostic(
            &rules::PUBLISH_IN_BUILD,
            at(from, first),
            format!("`{what}` publishes from inside the build, which then needs AWS credentials and cannot run locally without them"),
        )
        .help("build the layer here and publish it as a separate step: `cargo xtask deploy`"),
    );
}

struct BashPattern {
    regex: &'static str,
    what: &'static str,
}

const BASH_PATTERNS: &[BashPattern] = &[
    BashPattern {
        regex: r"(^|[\s;&|(!])\[\[\s",
        what: "`[[ ]]` tests",
    },
    BashPattern {
        regex: r"(^|[\s;&|])[A-Za-z_][A-Za-z0-9_]*\+?=\(",
        what: "arrays",
    },
    BashPattern {
        regex: r"\$\{#?[A-Za-z_][A-Za-z0-9_]*\[",
        what: "array subscripts",
    },
    BashPattern {
        // `set -o pipefail`, `set -euo pipefail`, `set -e -o pipefail`; not `bash -o pipefail`.
        regex: r"(^|[\s;&|(])set(\s+-[A-Za-z]+)*\s+-[A-Za-z]*o\s*pipefail",
        what: "`set -o pipefail`",
    },
    BashPattern {
        regex: r"<<<",
        what: "here-strings (`<<<`)",
    },
    BashPattern {
        // `bash <(curl ...)` too: the calling shell parses the `<(`.
        regex: r"[<>]\(",
        what: "process substitution (`<(...)`)",
    },
    BashPattern {
        regex: r"&>",
        what: "`&>` redirection",
    },
    BashPattern {
        regex: r"(^|[\s;&|])function\s+[A-Za-z_]",
        what: "the `function` keyword",
    },
    BashPattern {
        regex: r"(^|[\s;&|])\[\s[^\]\n]*\s==\s",
        what: "`==` inside `[ ]`",
    },
    BashPattern {
        regex: r"\{[0-9]+\.\.[0-9]+\}",
        what: "brace ranges (`{1..5}`)",
    },
];

const BASH_BUILTINS: &[&str] = &[
    "source",
    "declare",
    "typeset",
    "readarray",
    "mapfile",
    "shopt",
    "pushd",
    "popd",
];

fn bash_patterns() -> &'static [(Regex, &'static str)] {
    static COMPILED: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    COMPILED.get_or_init(|| {
        BASH_PATTERNS
            .iter()
            .filter_map(|p| Regex::new(p.regex).ok().map(|r| (r, p.what)))
            .collect()
    })
}

fn bash_only_syntax(text: &str, simple: &[SimpleCommand], at: &Locate, out: &mut Vec<Diagnostic>) {
    let masked = mask_literals(text);
    // (what, the offending text, its byte offset in `text`)
    let mut found: Vec<(&str, String, usize)> = Vec::new();
    for (regex, what) in bash_patterns() {
        let Some(caps) = regex.captures(&masked) else {
            continue;
        };
        if let Some(m) = caps.get(0) {
            // A leading `(^|[\s;&|...])` group is context, not part of the syntax (`&>` keeps its `&`).
            let start = match caps.get(1) {
                Some(context) if regex.as_str().starts_with("(^|") => context.end(),
                _ => m.start(),
            };
            let needle = masked.get(start..m.end()).unwrap_or_default();
            found.push((what, needle.to_string(), start));
        }
    }
    for cmd in simple {
        if let Some(name) = cmd.name().filter(|n| BASH_BUILTINS.contains(n)) {
            let from = cmd.command().first().map_or(0, |w| w.offset);
            found.push(("a bash builtin", name.to_string(), from));
        }
    }
    for (what, needle, from) in found {
        let message = format!(
            "{what} `{}` need bash, but commands run in /bin/sh (CodeBuild's default on Linux)",
            needle.trim()
        );
        out.push(
            diagnostic(&rules::BASH_ONLY_SYNTAX, at(from, &needle), message)
                .help("add `env: shell: bash` or rewrite it in POSIX sh"),
        );
    }
}

/// Follows `cd` through the commands (0.2 keeps the working directory between commands and
/// phases) and checks that files named by well-known commands exist in the source.
struct FileTracker {
    root: PathBuf,
    /// Relative to the source root; `None` once a `cd` goes somewhere we cannot follow.
    cwd: Option<PathBuf>,
}

impl FileTracker {
    fn new(root: PathBuf) -> Self {
        FileTracker {
            root,
            cwd: Some(PathBuf::new()),
        }
    }

    fn check(
        &mut self,
        cmd: &SimpleCommand,
        earlier: &str,
        before: &str,
        at: &Locate,
        out: &mut Vec<Diagnostic>,
    ) {
        let words: Vec<&str> = cmd.command().iter().map(|w| w.text.as_str()).collect();
        if let ["cd", target, ..] = words.as_slice() {
            self.cwd = self.cwd.take().and_then(|cwd| follow_cd(&cwd, target));
            return;
        }
        if matches!(words.first(), Some(&("cd" | "pushd" | "popd"))) {
            self.cwd = None;
            return;
        }
        let Some(cwd) = &self.cwd else { return };
        let from = cmd.command().first().map_or(0, |w| w.offset);
        for path in referenced_files(&words) {
            if !is_checkable(path) || earlier.contains(path) || before.contains(path) {
                continue;
            }
            // `..` resolved by name: `cd build` may enter a directory only the build creates.
            let Some(shown) = follow_cd(cwd, path) else {
                continue;
            };
            if !self.root.join(&shown).exists() {
                let message = format!(
                    "`{}` does not exist in the source ({})",
                    path,
                    shown.display()
                );
                out.push(
                    diagnostic(&rules::MISSING_FILE, at(from, path), message)
                        .help("commit the file or fix the path (paths are relative to the source root, after any `cd`)"),
                );
            }
        }
    }
}

fn follow_cd(cwd: &Path, target: &str) -> Option<PathBuf> {
    if !is_checkable(target) {
        return None;
    }
    let mut path = cwd.to_path_buf();
    for part in Path::new(target).components() {
        match part {
            Component::Normal(p) => path.push(p),
            Component::ParentDir => {
                if !path.pop() {
                    return None; // leaves the source root
                }
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(path)
}

/// A relative, literal path we can look up (not a redirection or `<(process substitution)`).
fn is_checkable(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.starts_with('-')
        && !path.contains(['$', '*', '?', '~', '`', '{', '[', '<', '>', '(', ')'])
}

/// Files a command clearly reads: pip requirement/constraint files, scripts run by a shell or
/// Python, and `./script`.
fn referenced_files<'a>(words: &[&'a str]) -> Vec<&'a str> {
    let mut files = Vec::new();
    let is_pip = match words {
        [first, ..] if first.starts_with("pip") => true,
        [py, "-m", "pip", ..] if py.starts_with("python") => true,
        ["uv", "pip", ..] => true,
        _ => false,
    };
    if is_pip {
        let mut iter = words.iter();
        while let Some(w) = iter.next() {
            match *w {
                "-r" | "--requirement" | "-c" | "--constraint" => {
                    files.extend(iter.next().copied())
                }
                _ => {
                    let inline = w
                        .strip_prefix("--requirement=")
                        .or_else(|| w.strip_prefix("--constraint="))
                        .or_else(|| w.strip_prefix("-r"));
                    files.extend(inline.filter(|rest| !rest.is_empty()));
                }
            }
        }
        return files;
    }
    match words {
        ["sh" | "bash", rest @ ..] => files.extend(shell_script(rest)),
        ["." | "source", file, ..] => files.push(file),
        [py, script, ..] if py.starts_with("python") && script.ends_with(".py") => {
            files.push(script)
        }
        [script, ..] if script.starts_with("./") && script.len() > 2 => files.push(script),
        _ => {}
    }
    files
}

/// The script `sh`/`bash` runs: its first operand, unless the commands come from `-c` or stdin
/// (`-s`). Option arguments (`-o pipefail`, `--rcfile FILE`) are not operands.
fn shell_script<'a>(args: &[&'a str]) -> Option<&'a str> {
    let mut iter = args.iter().copied();
    while let Some(arg) = iter.next() {
        match arg.strip_prefix('-').or_else(|| arg.strip_prefix('+')) {
            None => return Some(arg),
            Some("-") => return iter.next(),
            Some("-rcfile" | "-init-file") => {
                iter.next();
            }
            Some(long) if long.starts_with('-') => {}
            Some(flags) if flags.contains(['c', 's']) => return None,
            Some(flags) => {
                if flags.contains(['o', 'O']) {
                    iter.next();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::referenced_files;

    #[test]
    fn files_of_common_commands() {
        assert_eq!(
            referenced_files(&["pip", "install", "-r", "req.txt", "-t", "x"]),
            ["req.txt"]
        );
        assert_eq!(
            referenced_files(&["python3", "-m", "pip", "install", "--requirement=r.txt"]),
            ["r.txt"]
        );
        assert_eq!(
            referenced_files(&["pip", "install", "-rreq.txt"]),
            ["req.txt"]
        );
        assert_eq!(
            referenced_files(&["bash", "scripts/build.sh"]),
            ["scripts/build.sh"]
        );
        assert!(referenced_files(&["bash", "-c", "echo"]).is_empty());
        assert!(referenced_files(&["bash", "-lc", "make build"]).is_empty());
        assert!(referenced_files(&["bash", "-s", "--", "x"]).is_empty());
        assert_eq!(
            referenced_files(&["bash", "-o", "pipefail", "ci.sh"]),
            ["ci.sh"]
        );
        assert_eq!(referenced_files(&["sh", "-e", "--", "ci.sh"]), ["ci.sh"]);
        assert_eq!(referenced_files(&["bash", "--norc", "ci.sh"]), ["ci.sh"]);
        assert_eq!(referenced_files(&["./build.sh", "x"]), ["./build.sh"]);
        assert_eq!(
            referenced_files(&["python", "setup.py", "bdist"]),
            ["setup.py"]
        );
        assert!(referenced_files(&["pip", "install", "requests"]).is_empty());
    }
}
