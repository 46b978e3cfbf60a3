//! The driver: turns a parsed buildspec into one POSIX-sh script that runs every phase in a single
//! shell session with CodeBuild's buildspec 0.2 semantics, so a build is one exec in the work
//! container, and reads the marker lines it prints.
//!
//! # What the driver does
//! - `exec 2>&1` (CodeBuild's log is one stream), `set +e` (each command's status is taken after it
//!   runs; the driver never stops on its own), sets `CODEBUILD_SRC_DIR` and
//!   `CODEBUILD_BUILD_SUCCEEDING=1`, then `cd "$CODEBUILD_SRC_DIR"`. The build's variables are not
//!   in the script: the executor puts them in the driver's environment, where they are literal
//!   values by construction (and secrets stay out of the command line).
//! - Runs INSTALL, PRE_BUILD, BUILD, POST_BUILD (an absent phase is entered and succeeds at once, as
//!   CodeBuild logs it). Each command is `command eval`ed in the driver's own shell — not a subshell —
//!   so `cd`, variables and functions carry over between commands and phases. `command` strips
//!   `eval`'s special-builtin status, so a syntax error in a command fails that command instead of
//!   ending the shell. A multi-line YAML command is one `eval`, and its status is the unit's status.
//! - A failing command ends the phase's `commands`; `finally` still runs and a failing `finally`
//!   command ends the remaining `finally` commands. A phase succeeds only if both lists succeed.
//! - Transitions: INSTALL or PRE_BUILD failed → no later phase; BUILD failed → POST_BUILD still runs;
//!   `on-failure: CONTINUE` → the next phase runs; `ABORT` → no later phase; retry forms → the whole
//!   phase (commands and finally) runs again up to `count` more times while the failure matches the
//!   pattern, then the default transition. Any failed phase makes the build FAILED and sets
//!   `CODEBUILD_BUILD_SUCCEEDING=0` for what follows.
//! - The driver exits 0 when the build succeeded and 1 otherwise.
//!
//! # How it is run
//! [`BOOTSTRAP`] is the command line (`sh -c BOOTSTRAP`): it reads a per-build random token and
//! then the driver script from stdin, gives the commands `/dev/null` as stdin, and sources the
//! script. So the command line carries no variable, no token and no script (a script of any
//! size works, past the 128 KiB a single argument may have).
//!
//! # Marker lines
//! Besides CodeBuild's `[Container] <ts> …` log lines the driver prints machine-readable lines that
//! start with [`MARKER_PREFIX`] (`##xtask `) and the build's token; [`parse_marker`] reads them.
//! The token lives only in the driver's shell (never exported, never in a file or the command
//! line), so a command's output cannot forge a marker: a line without it is ordinary output.
//!
//! ```text
//! ##xtask <token> phase <PHASE> start <epoch-ms>
//! ##xtask <token> phase <PHASE> retry <attempt> <epoch-ms>          (attempt = 1, 2, …)
//! ##xtask <token> phase <PHASE> end SUCCEEDED|FAILED <epoch-ms>
//! ##xtask <token> export <NAME>=<lower-case hex of the value's bytes>
//! ##xtask <token> export <NAME>                                     (the variable is unset)
//! ##xtask <token> build end SUCCEEDED|FAILED
//! ```
//!
//! `<PHASE>` is the log name (`PRE_BUILD`). A phase that never starts was skipped. The exports and
//! `build end` come last; **no `build end` line means the build FAILED** (the shell died: a command
//! called `exit` with a trap of its own, a signal, the container was killed). A marker is printed
//! after a newline of its own only if the previous output ended with one, so the host should look
//! for the prefix at the start of a line and may treat a glued line as output.
//!
//! # Known limits (documented, not hidden)
//! - A command that calls `exit` ends the driver's shell. CodeBuild counts that as the command
//!   failing; the driver's EXIT trap reports the command, the phase and the build as FAILED (exit 1),
//!   but the phase's `finally` and later phases cannot run any more.
//! - `set -e` left on by a command makes a later failing command end the shell the same way.
//! - Retry phases capture each command's output in a temporary file (`eval … >"$tmp" 2>&1`) and print
//!   it when the command ends, because a pipe through `tee` would run the command in a subshell
//!   (breaking `cd` persistence) and lose its status in POSIX sh. Phases without a retry stream live.
//! - The script must be passed with `sh -c` (or as a file), not on stdin: commands inherit stdin.
//! - The top-level `run-as` is the user of the exec (see [`driver_user`]). When a phase has its
//!   own `run-as`, the driver runs as root and each command of a phase with a user runs with
//!   `runuser` in a shell of its own as that user: exported variables and the working directory
//!   go in, changes to them do not come back (CodeBuild does not document how it keeps one shell
//!   across users).

use std::fmt::Write as _;

use crate::buildspec::{Buildspec, OnFailure, Phase, PhaseName, Shell};

/// The start of every machine-readable line the driver prints.
pub const MARKER_PREFIX: &str = "##xtask ";

/// The driver's command line: `<shell> -c BOOTSTRAP`, with `token\nscript` on stdin (see
/// [`stdin`]). The script is written to a private temporary file, which it removes first thing.
pub const BOOTSTRAP: &str = r#"IFS= read -r __xt_token || exit 97
__xt_script=$(umask 077 && mktemp "${TMPDIR:-/tmp}/xtask-driver.XXXXXX") || exit 97
cat >"$__xt_script" || exit 97
exec </dev/null
. "$__xt_script""#;

/// What the driver's stdin carries: the token, then the script.
pub fn stdin(token: &str, script: &str) -> Vec<u8> {
    format!("{token}\n{script}").into_bytes()
}

/// A new per-build token: 128 random bits, hex.
pub fn new_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What the driver needs besides the buildspec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverInputs {
    /// Where the source is in the container, e.g. `/codebuild/output/src123/src`; becomes
    /// `CODEBUILD_SRC_DIR` and the working directory.
    pub src_dir: String,
    /// The shell the driver runs in (`sh`, `bash`): a phase with its own `run-as` runs each
    /// command in a new one of these.
    pub shell: String,
}

/// The program to run the driver with (`<program> -c <script>`), or `None` for Windows shells.
pub fn interpreter(shell: &Shell) -> Option<&str> {
    match shell {
        Shell::Sh => Some("sh"),
        Shell::Bash => Some("bash"),
        Shell::Other(program) => Some(program),
        Shell::Windows(_) => None,
    }
}

/// `value` as one single-quoted POSIX-sh word: nothing inside is expanded.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// Whether `name` can be a shell variable name.
pub fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The helpers every driver starts with. Names start with `__xt_` to stay out of the commands' way.
/// Every statement that may return non-zero sits in a condition, so a `set -e` left on by a command
/// cannot stop the driver's own bookkeeping.
const PRELUDE: &str = r#"rm -f "$__xt_script"
exec 2>&1
set +e
case $(date -u +%3N 2>/dev/null) in
[0-9][0-9][0-9]) __xt_gnu_date=1 ;;
*) __xt_gnu_date=0 ;;
esac
__xt_ts() {
  if [ "$__xt_gnu_date" = 1 ]; then date -u '+%Y/%m/%d %H:%M:%S.%3N'; else date -u '+%Y/%m/%d %H:%M:%S'; fi
}
__xt_ms() {
  if [ "$__xt_gnu_date" = 1 ]; then date -u +%s%3N; else echo "$(date -u +%s)000"; fi
}
__xt_log() { printf '[Container] %s %s\n' "$(__xt_ts)" "$1"; }
__xt_mark() { printf '##xtask %s %s\n' "$__xt_token" "$1"; }
__xt_hex() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
__xt_tmp=${TMPDIR:-/tmp}/xtask-driver.$$
__xt_out=$__xt_tmp.out
__xt_err_out=$__xt_tmp.err
__xt_in_cmd=0
__xt_capture=0
__xt_stop=0
__xt_build_failed=0
__xt_phase_name=
__xt_s=0
__xt_err=
__xt_user=
# Runs $__xt_c: in this shell, or, for a phase that runs as another user ($__xt_user), in a shell
# of its own as that user (the exported variables and the working directory go in, not out).
__xt_run() {
  if [ -n "$__xt_user" ]; then
    runuser -u "$__xt_user" -m -- "$__xt_shell" -c 'cd "$1" || exit 1; eval "$2"' xtask "$PWD" "$__xt_c"
  else
    command eval "$__xt_c"
  fi
}
# Runs the command in $__xt_c and leaves its status in $__xt_s. The first failure of a phase
# attempt is kept in $__xt_err (CodeBuild's message) and, in capture mode, $__xt_err_out.
__xt_cmd() {
  __xt_log "Running command $__xt_c"
  __xt_in_cmd=1
  if [ "$__xt_capture" = 1 ]; then
    __xt_run >"$__xt_out" 2>&1
    __xt_s=$?
    set +e
    cat "$__xt_out"
  else
    __xt_run
    __xt_s=$?
    set +e
  fi
  __xt_in_cmd=0
  if [ "$__xt_s" != 0 ]; then
    __xt_log "Command did not exit successfully $__xt_c exit status $__xt_s"
    if [ -z "$__xt_err" ]; then
      __xt_err="Error while executing command: $__xt_c. Reason: exit status $__xt_s"
      if [ "$__xt_capture" = 1 ]; then cp "$__xt_out" "$__xt_err_out" || :; fi
    fi
  fi
}
# Whether the failure just seen matches the retry pattern $1 (an ERE): the failing command's output
# and CodeBuild's message ("Error while executing command: … Reason: exit status N") are searched
# line by line, so the default `.*` always matches.
__xt_matches() {
  { cat "$__xt_err_out" 2>/dev/null; printf '%s\n' "$__xt_err"; } | grep -Eq -e "$1"
}
__xt_phase_failed() {
  __xt_log "Phase complete: $__xt_phase_name State: FAILED"
  __xt_log "Phase context status code: COMMAND_EXECUTION_ERROR Message: $__xt_err"
  __xt_mark "phase $__xt_phase_name end FAILED $(__xt_ms)"
  __xt_build_failed=1
  CODEBUILD_BUILD_SUCCEEDING=0
  export CODEBUILD_BUILD_SUCCEEDING
}
# Usage: __xt_phase PHASE DEFAULT|ABORT|CONTINUE|RETRY RETRY_COUNT RETRY_PATTERN
__xt_phase() {
  __xt_phase_name=$1
  __xt_mark "phase $1 start $(__xt_ms)"
  __xt_log "Entering phase $1"
  if [ "$2" = RETRY ]; then __xt_capture=1; else __xt_capture=0; fi
  __xt_attempt=0
  while :; do
    __xt_err=
    rm -f "$__xt_err_out"
    __xt_s=0
    "__xt_commands_$1"
    __xt_s=0
    "__xt_finally_$1"
    if [ -z "$__xt_err" ]; then break; fi
    if [ "$2" = RETRY ] && [ "$__xt_attempt" -lt "$3" ] && __xt_matches "$4"; then
      __xt_attempt=$((__xt_attempt + 1))
      __xt_log "Phase $1 failed: retrying the phase (attempt $__xt_attempt of $3)"
      __xt_mark "phase $1 retry $__xt_attempt $(__xt_ms)"
      continue
    fi
    break
  done
  __xt_capture=0
  if [ -z "$__xt_err" ]; then
    __xt_log "Phase complete: $1 State: SUCCEEDED"
    __xt_log "Phase context status code:  Message: "
    __xt_mark "phase $1 end SUCCEEDED $(__xt_ms)"
    return 0
  fi
  __xt_phase_failed
  case $2 in
  ABORT) __xt_stop=1 ;;
  CONTINUE) ;;
  *)
    # The default transitions: BUILD goes on to POST_BUILD; INSTALL and PRE_BUILD go to the end.
    case $1 in
    INSTALL | PRE_BUILD) __xt_stop=1 ;;
    esac
    ;;
  esac
}
# A command that calls `exit` ends this shell: CodeBuild counts that as the command failing, so
# report the command, its phase and the build as FAILED. Later phases cannot run any more.
__xt_on_exit() {
  __xt_rc=$?
  set +e
  if [ "$__xt_in_cmd" = 1 ]; then
    __xt_in_cmd=0
    if [ "$__xt_capture" = 1 ]; then cat "$__xt_out"; fi
    __xt_log "Command did not exit successfully $__xt_c exit status $__xt_rc"
    if [ -z "$__xt_err" ]; then
      __xt_err="Error while executing command: $__xt_c. Reason: exit status $__xt_rc"
    fi
    __xt_phase_failed
    __xt_mark "build end FAILED"
  fi
  rm -f "$__xt_out" "$__xt_err_out"
  exit 1
}
"#;

/// The driver script for `spec`: POSIX sh that works under dash and bash.
pub fn driver_script(spec: &Buildspec, inputs: &DriverInputs) -> String {
    let mut script = String::new();
    script.push_str(
        "# Generated by `cargo xtask` (build/driver.rs): buildspec 0.2 phases in one shell.\n",
    );
    script.push_str(PRELUDE);
    let _ = writeln!(
        script,
        "CODEBUILD_SRC_DIR={}; export CODEBUILD_SRC_DIR",
        shell_quote(&inputs.src_dir)
    );
    script.push_str("CODEBUILD_BUILD_SUCCEEDING=1; export CODEBUILD_BUILD_SUCCEEDING\n");
    script.push_str(concat!(
        "if ! cd \"$CODEBUILD_SRC_DIR\"; then\n",
        "  __xt_log \"Phase context status code: CLIENT_ERROR Message: cannot enter $CODEBUILD_SRC_DIR\"\n",
        "  __xt_mark \"build end FAILED\"\n",
        "  exit 1\n",
        "fi\n",
        "trap __xt_on_exit EXIT\n",
    ));

    let _ = writeln!(script, "__xt_shell={}", shell_quote(&inputs.shell));
    for name in PhaseName::ALL {
        let phase = spec.phase(name);
        let log_name = name.log_name();
        let commands = phase.map_or(&[][..], |p| &p.commands[..]);
        let finally = phase.map_or(&[][..], |p| &p.finally[..]);
        let user = phase_user(spec, phase).unwrap_or_default();
        let _ = writeln!(script, "__xt_user_{log_name}={}", shell_quote(user));
        let commands_fn = format!("__xt_commands_{log_name}");
        let finally_fn = format!("__xt_finally_{log_name}");
        write_command_list(&mut script, &commands_fn, &log_name, commands);
        write_command_list(&mut script, &finally_fn, &log_name, finally);
        let (mode, count, pattern) = on_failure_args(phase);
        let _ = writeln!(
            script,
            "if [ \"$__xt_stop\" = 0 ]; then __xt_phase {log_name} {mode} {count} {}; fi",
            shell_quote(&pattern)
        );
    }

    script.push_str("trap - EXIT\n");
    script.push_str("rm -f \"$__xt_out\" \"$__xt_err_out\"\n");
    for name in &spec.env.exported_variables {
        let name = &name.value;
        if !is_variable_name(name) {
            continue;
        }
        let _ = writeln!(
            script,
            "if [ \"${{{name}+set}}\" = set ]; then __xt_mark \"export {name}=$(__xt_hex \"${name}\")\"; \
             else __xt_mark 'export {name}'; fi"
        );
    }
    script.push_str(concat!(
        "if [ \"$__xt_build_failed\" = 0 ]; then __xt_mark 'build end SUCCEEDED'; exit 0; fi\n",
        "__xt_mark 'build end FAILED'\n",
        "exit 1\n",
    ));
    script
}

/// The user a phase's commands run as when the driver itself runs as root: the phase's `run-as`,
/// else the top-level one. `None` when no phase has its own (the driver then runs as the
/// top-level user, see [`driver_user`]).
fn phase_user<'a>(spec: &'a Buildspec, phase: Option<&'a Phase>) -> Option<&'a str> {
    if !has_phase_users(spec) {
        return None;
    }
    let own = phase.and_then(|p| p.run_as.as_ref());
    own.or(spec.run_as.as_ref()).map(|u| u.value.as_str())
}

fn has_phase_users(spec: &Buildspec) -> bool {
    spec.phases.iter().any(|p| p.run_as.is_some())
}

/// The user the driver runs as: the top-level `run-as`, unless a phase has its own (then root,
/// so that each phase can run as its user).
pub fn driver_user(spec: &Buildspec) -> Option<&str> {
    match has_phase_users(spec) {
        true => None,
        false => spec.run_as.as_ref().map(|u| u.value.as_str()),
    }
}

/// A function running `commands` in order, stopping at the first failure (`$__xt_s` non-zero).
fn write_command_list(
    script: &mut String,
    function: &str,
    phase: &str,
    commands: &[crate::buildspec::Spanned<String>],
) {
    let _ = writeln!(script, "{function}() {{");
    let _ = writeln!(script, "  __xt_user=$__xt_user_{phase}");
    for command in commands {
        let _ = writeln!(script, "  __xt_c={}", shell_quote(&command.value));
        script.push_str("  __xt_cmd\n");
        script.push_str("  if [ \"$__xt_s\" != 0 ]; then return 0; fi\n");
    }
    script.push_str("}\n");
}

/// The `__xt_phase` arguments for a phase's `on-failure`: mode, retry count, retry pattern (ERE).
fn on_failure_args(phase: Option<&Phase>) -> (&'static str, u32, String) {
    match phase.and_then(|p| p.on_failure.as_ref()).map(|o| &o.value) {
        None => ("DEFAULT", 0, String::new()),
        Some(OnFailure::Abort) => ("ABORT", 0, String::new()),
        Some(OnFailure::Continue) => ("CONTINUE", 0, String::new()),
        Some(OnFailure::Retry { count, pattern }) => ("RETRY", *count, java_regex_to_ere(pattern)),
    }
}

/// CodeBuild's retry pattern is (presumably) a Java regex; the driver matches with `grep -E`.
///
/// The common ground is the same (literals, `.`, `*`, `+`, `?`, `{m,n}`, `|`, groups, brackets,
/// anchors); this rewrites the shorthand classes `\d \D \s \S` that ERE lacks. Not translated:
/// `\w`/`\b` (GNU grep has them), lazy and possessive quantifiers, lookaround, `(?i)` flags and
/// `\Q…\E`. Java's `find` also searches the whole text, grep each line: `^`/`$` anchor per line.
pub fn java_regex_to_ere(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut in_bracket = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(next) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let class = match next {
                    'd' => Some(("[0-9]", "0-9")),
                    'D' => Some(("[^0-9]", "")),
                    's' => Some(("[[:space:]]", "[:space:]")),
                    'S' => Some(("[^[:space:]]", "")),
                    _ => None,
                };
                match class {
                    Some((outside, _)) if !in_bracket => out.push_str(outside),
                    Some((_, inside)) if !inside.is_empty() => out.push_str(inside),
                    _ => {
                        out.push('\\');
                        out.push(next);
                    }
                }
            }
            '[' if !in_bracket => {
                in_bracket = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
            }
            ']' if in_bracket => {
                in_bracket = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// One machine-readable line of the driver's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    PhaseStart {
        phase: PhaseName,
        at_ms: u64,
    },
    PhaseRetry {
        phase: PhaseName,
        attempt: u32,
        at_ms: u64,
    },
    PhaseEnd {
        phase: PhaseName,
        succeeded: bool,
        at_ms: u64,
    },
    /// An exported variable; `None` when it was unset at the end of the build.
    Export {
        name: String,
        value: Option<String>,
    },
    BuildEnd {
        succeeded: bool,
    },
}

/// Reads a marker line of the build with `token` (without its line ending); `None` for any other
/// line, a forged one (another token, or none) included.
pub fn parse_marker(line: &str, token: &str) -> Option<Marker> {
    let rest = line.strip_prefix(MARKER_PREFIX)?;
    let rest = rest.strip_prefix(token)?.strip_prefix(' ')?;
    if token.is_empty() {
        return None;
    }
    let words: Vec<&str> = rest.split(' ').collect();
    let state = |word: &str| match word {
        "SUCCEEDED" => Some(true),
        "FAILED" => Some(false),
        _ => None,
    };
    match words.as_slice() {
        ["phase", phase, "start", at] => Some(Marker::PhaseStart {
            phase: phase_named(phase)?,
            at_ms: at.parse().ok()?,
        }),
        ["phase", phase, "retry", attempt, at] => Some(Marker::PhaseRetry {
            phase: phase_named(phase)?,
            attempt: attempt.parse().ok()?,
            at_ms: at.parse().ok()?,
        }),
        ["phase", phase, "end", result, at] => Some(Marker::PhaseEnd {
            phase: phase_named(phase)?,
            succeeded: state(result)?,
            at_ms: at.parse().ok()?,
        }),
        ["export", assignment] => match assignment.split_once('=') {
            Some((name, hex)) => Some(Marker::Export {
                name: name.to_string(),
                value: Some(String::from_utf8_lossy(&decode_hex(hex)?).into_owned()),
            }),
            None => Some(Marker::Export {
                name: assignment.to_string(),
                value: None,
            }),
        },
        ["build", "end", result] => Some(Marker::BuildEnd {
            succeeded: state(result)?,
        }),
        _ => None,
    }
}

fn phase_named(log_name: &str) -> Option<PhaseName> {
    PhaseName::ALL
        .into_iter()
        .find(|phase| phase.log_name() == log_name)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buildspec::parse;
    use crate::diagnostic::SourceFile;

    fn spec(text: &str) -> Buildspec {
        let parsed = parse(SourceFile::new("buildspec.yml", text));
        assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
        parsed.buildspec.expect("a buildspec")
    }

    fn inputs() -> DriverInputs {
        DriverInputs {
            src_dir: "/codebuild/output/src1/src".into(),
            shell: "sh".into(),
        }
    }

    #[test]
    fn quoting_keeps_values_literal() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$PATH:/x"), "'$PATH:/x'");
        assert_eq!(shell_quote("a\nb"), "'a\nb'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(
            shell_quote(r#"echo "hi" 'there'"#),
            r#"'echo "hi" '\''there'\'''"#
        );
    }

    #[test]
    fn variable_names_are_checked() {
        assert!(is_variable_name("PATH"));
        assert!(is_variable_name("_x1"));
        assert!(!is_variable_name("1x"));
        assert!(!is_variable_name("a-b"));
        assert!(!is_variable_name(""));
    }

    #[test]
    fn the_source_directory_is_set_and_no_variable_is_in_the_script() {
        let text = "version: 0.2\nenv:\n  variables:\n    P: secret-looking-value\nphases:\n  build:\n    commands:\n      - 'true'\n";
        let script = driver_script(&spec(text), &inputs());
        assert!(script
            .contains("CODEBUILD_SRC_DIR='/codebuild/output/src1/src'; export CODEBUILD_SRC_DIR"));
        assert!(!script.contains("secret-looking-value"), "{script}");
    }

    #[test]
    fn script_has_the_expected_shape() {
        let text = "version: 0.2\nenv:\n  exported-variables: [OUT]\nphases:\n  build:\n    on-failure: RETRY-2-\\d+ errors\n    commands:\n      - echo \"it's\"\n    finally:\n      - echo done\n";
        let script = driver_script(&spec(text), &inputs());
        let cd = script.find("cd \"$CODEBUILD_SRC_DIR\"").expect("a cd");
        let install = script.find("__xt_phase INSTALL DEFAULT").expect("install");
        let pre_build = script
            .find("__xt_phase PRE_BUILD DEFAULT")
            .expect("pre_build");
        let build = script
            .find("__xt_phase BUILD RETRY 2 '[0-9]+ errors'")
            .expect("build");
        let post_build = script
            .find("__xt_phase POST_BUILD DEFAULT")
            .expect("post_build");
        assert!(cd < install && install < pre_build && pre_build < build && build < post_build);
        assert!(script.contains(r#"__xt_c='echo "it'\''s"'"#), "{script}");
        assert!(script.contains("__xt_c='echo done'"));
        assert!(script.contains("export OUT="));
        assert!(script.ends_with("exit 1\n"));
        assert!(!script.contains("set -e"));
    }

    #[test]
    fn java_shorthands_become_ere() {
        assert_eq!(java_regex_to_ere(".*"), ".*");
        assert_eq!(
            java_regex_to_ere(r"\d+ errors\s"),
            "[0-9]+ errors[[:space:]]"
        );
        assert_eq!(java_regex_to_ere(r"[\d.]+"), "[0-9.]+");
        assert_eq!(java_regex_to_ere(r"a\.b\\d"), r"a\.b\\d");
        assert_eq!(java_regex_to_ere(r"[]\d]"), "[]0-9]");
    }

    #[test]
    fn markers_are_parsed() {
        assert_eq!(
            parse_marker("##xtask t0k3n phase PRE_BUILD start 1700000000123", "t0k3n"),
            Some(Marker::PhaseStart {
                phase: PhaseName::PreBuild,
                at_ms: 1_700_000_000_123
            })
        );
        assert_eq!(
            parse_marker("##xtask t0k3n phase BUILD retry 2 5", "t0k3n"),
            Some(Marker::PhaseRetry {
                phase: PhaseName::Build,
                attempt: 2,
                at_ms: 5
            })
        );
        assert_eq!(
            parse_marker("##xtask t0k3n phase BUILD end FAILED 7", "t0k3n"),
            Some(Marker::PhaseEnd {
                phase: PhaseName::Build,
                succeeded: false,
                at_ms: 7
            })
        );
        assert_eq!(
            parse_marker("##xtask t0k3n export V=610a", "t0k3n"),
            Some(Marker::Export {
                name: "V".into(),
                value: Some("a\n".into())
            })
        );
        assert_eq!(
            parse_marker("##xtask t0k3n export V", "t0k3n"),
            Some(Marker::Export {
                name: "V".into(),
                value: None
            })
        );
        assert_eq!(
            parse_marker("##xtask t0k3n build end SUCCEEDED", "t0k3n"),
            Some(Marker::BuildEnd { succeeded: true })
        );
        assert_eq!(parse_marker("[Container] x", "t0k3n"), None);
        assert_eq!(
            parse_marker("##xtask t0k3n phase NOPE start 1", "t0k3n"),
            None
        );
        assert_eq!(parse_marker("##xtask t0k3n export V=6", "t0k3n"), None);
        // A forged marker: no token, or another one.
        assert_eq!(parse_marker("##xtask build end SUCCEEDED", "t0k3n"), None);
        assert_eq!(
            parse_marker("##xtask other build end SUCCEEDED", "t0k3n"),
            None
        );
        assert_eq!(parse_marker("##xtask  build end SUCCEEDED", ""), None);
    }

    #[test]
    fn interpreters() {
        assert_eq!(interpreter(&Shell::Sh), Some("sh"));
        assert_eq!(interpreter(&Shell::Bash), Some("bash"));
        assert_eq!(interpreter(&Shell::Windows("cmd.exe".into())), None);
    }
}
