//! Runs the driver script that `xtask::build::driver` generates in the (stand-in) build image and checks
//! CodeBuild's buildspec 0.2 semantics, one container run per semantic.
//!
//! Needs a Docker daemon and the image `LAYER_BUILD_IMAGE`; `bash scripts/test.sh` provides both.

use crate::support::{self, RunOutput};

use xtask::build::driver::{self, DriverInputs, Marker};
use xtask::buildspec::{self, Buildspec};
use xtask::diagnostic::SourceFile;
use xtask::engine::Exec;

/// The token the driver marks its lines with in these tests.
const TOKEN: &str = "t0k3n";

fn parse(yaml: &str) -> Buildspec {
    let parsed = buildspec::parse(SourceFile::new("buildspec.yml", yaml));
    assert!(!parsed.has_errors(), "{:?}", parsed.diagnostics);
    parsed.buildspec.expect("a buildspec")
}

/// Runs `yaml`'s driver with the buildspec's own variables; `None` when the test is skipped.
async fn run(yaml: &str) -> Option<RunOutput> {
    let engine = support::require_docker().await?;
    let image = support::standin_image();
    if !support::require_image(&engine, &image).await {
        return None;
    }
    let spec = parse(yaml);
    let shell = spec.shell();
    let shell = driver::interpreter(&shell).expect("a Linux shell");
    let inputs = DriverInputs {
        src_dir: "/tmp".into(),
        shell: shell.to_string(),
    };
    let script = driver::driver_script(&spec, &inputs);
    // As the build runs it: the variables in the driver's environment.
    let variables: Vec<(String, String)> = spec
        .env
        .variables
        .iter()
        .map(|(name, value)| (name.value.clone(), value.value.clone()))
        .collect();
    let exec = Exec::new([shell, "-c", driver::BOOTSTRAP])
        .stdin(driver::stdin(TOKEN, &script))
        .envs(&variables);
    let output = support::run_exec(&engine, &image, &exec)
        .await
        .unwrap_or_else(|error| panic!("{error}"));
    Some(output)
}

fn has_line(output: &RunOutput, line: &str) -> bool {
    output.stdout.lines().any(|l| l == line)
}

fn assert_line(output: &RunOutput, line: &str) {
    assert!(
        has_line(output, line),
        "expected the line {line:?} in:\n{}",
        output.stdout
    );
}

fn assert_no_line(output: &RunOutput, line: &str) {
    assert!(
        !has_line(output, line),
        "unexpected line {line:?} in:\n{}",
        output.stdout
    );
}

fn assert_build(output: &RunOutput, succeeded: bool) {
    let ends: Vec<bool> = output
        .stdout
        .lines()
        .filter_map(|line| match driver::parse_marker(line, TOKEN) {
            Some(Marker::BuildEnd { succeeded }) => Some(succeeded),
            _ => None,
        })
        .collect();
    assert_eq!(
        ends,
        [succeeded],
        "build end markers in:\n{}",
        output.stdout
    );
    let code = if succeeded { 0 } else { 1 };
    assert_eq!(output.exit_code, code, "{}", output.stdout);
}

fn phase_started(output: &RunOutput, phase: &str) -> bool {
    output
        .stdout
        .lines()
        .any(|line| line.starts_with(&format!("##xtask {TOKEN} phase {phase} start ")))
}

#[test]
fn cd_and_variables_persist_across_commands_and_phases() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  install:
    commands:
      - echo "start=$(pwd) src=$CODEBUILD_SRC_DIR succeeding=$CODEBUILD_BUILD_SUCCEEDING"
      - mkdir -p /tmp/w/sub && cd /tmp/w
      - export FOO=bar; BAZ=qux
      - greet() { echo "hello $1"; }
  build:
    commands:
      - cd sub
      - echo "pwd=$(pwd) foo=$FOO baz=$BAZ"
  post_build:
    commands:
      - echo "post=$(pwd)"
      - greet world
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "start=/tmp src=/tmp succeeding=1");
        assert_line(&output, "pwd=/tmp/w/sub foo=bar baz=qux");
        assert_line(&output, "post=/tmp/w/sub");
        assert_line(&output, "hello world");
        assert_build(&output, true);
    });
}

#[test]
fn the_default_shell_is_sh_where_double_brackets_fail() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  build:
    commands:
      - '[[ 1 == 1 ]] && echo brackets-work'
"#)
        .await
        else {
            return;
        };
        assert_no_line(&output, "brackets-work");
        assert!(output.stdout.contains("[[: not found"), "{}", output.stdout);
        assert!(output
            .stdout
            .contains("Phase complete: BUILD State: FAILED"));
        assert_build(&output, false);
    });
}

#[test]
fn env_shell_bash_makes_double_brackets_work() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
env:
  shell: bash
phases:
  build:
    commands:
      - '[[ 1 == 1 ]] && echo brackets-work'
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "brackets-work");
        assert_build(&output, true);
    });
}

#[test]
fn a_failing_command_stops_the_phase_but_finally_runs() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  build:
    commands:
      - echo one
      - sh -c 'exit 4'
      - echo two
    finally:
      - echo fin1
      - 'false'
      - echo fin2
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "one");
        assert_no_line(&output, "two");
        assert_line(&output, "fin1");
        assert_no_line(&output, "fin2");
        assert!(output
            .stdout
            .contains("Phase complete: BUILD State: FAILED"));
        assert!(
            output.stdout.contains(
                "Phase context status code: COMMAND_EXECUTION_ERROR Message: Error while executing command: sh -c 'exit 4'. Reason: exit status 4"
            ),
            "{}",
            output.stdout
        );
        assert_build(&output, false);
    });
}

#[test]
fn an_install_failure_skips_the_later_phases() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  install:
    commands:
      - 'false'
  pre_build:
    commands:
      - echo pre-ran
  build:
    commands:
      - echo build-ran
  post_build:
    commands:
      - echo post-ran
"#)
        .await
        else {
            return;
        };
        assert!(output
            .stdout
            .contains("Phase complete: INSTALL State: FAILED"));
        for line in ["pre-ran", "build-ran", "post-ran"] {
            assert_no_line(&output, line);
        }
        for phase in ["PRE_BUILD", "BUILD", "POST_BUILD"] {
            assert!(!phase_started(&output, phase), "{phase} started");
        }
        assert_build(&output, false);
    });
}

#[test]
fn a_build_failure_still_runs_post_build_with_succeeding_0() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  pre_build:
    commands:
      - echo "pre=$CODEBUILD_BUILD_SUCCEEDING"
  build:
    commands:
      - 'false'
  post_build:
    commands:
      - echo "post=$CODEBUILD_BUILD_SUCCEEDING"
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "pre=1");
        assert_line(&output, "post=0");
        assert!(output
            .stdout
            .contains("Phase complete: POST_BUILD State: SUCCEEDED"));
        assert_build(&output, false);
    });
}

#[test]
fn on_failure_continue_goes_on_but_the_build_fails() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  pre_build:
    on-failure: CONTINUE
    commands:
      - 'false'
  build:
    commands:
      - echo "build=$CODEBUILD_BUILD_SUCCEEDING"
"#)
        .await
        else {
            return;
        };
        assert!(output
            .stdout
            .contains("Phase complete: PRE_BUILD State: FAILED"));
        assert_line(&output, "build=0");
        assert!(output
            .stdout
            .contains("Phase complete: BUILD State: SUCCEEDED"));
        assert_build(&output, false);
    });
}

#[test]
fn on_failure_abort_skips_even_post_build() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  build:
    on-failure: ABORT
    commands:
      - 'false'
    finally:
      - echo build-finally
  post_build:
    commands:
      - echo post-ran
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "build-finally");
        assert_no_line(&output, "post-ran");
        assert!(!phase_started(&output, "POST_BUILD"));
        assert_build(&output, false);
    });
}

/// A command that fails on its first run with "flaky failure" and succeeds afterwards.
const FLAKY: &str = r#"n=$(cat /tmp/count 2>/dev/null || echo 0); n=$((n + 1)); echo "$n" > /tmp/count; echo "attempt $n"; [ "$n" -ge 2 ] || { echo "flaky failure"; false; }"#;

#[test]
fn retry_reruns_a_phase_that_fails_once() {
    support::block_on(async {
        let yaml = format!(
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2-fl.ky\n    commands:\n      - echo before\n      - {}\n    finally:\n      - echo finally-ran\n",
            yaml_single_quoted(FLAKY)
        );
        let Some(output) = run(&yaml).await else {
            return;
        };
        assert_line(&output, "attempt 1");
        assert_line(&output, "flaky failure");
        assert_line(&output, "attempt 2");
        assert_no_line(&output, "attempt 3");
        assert_eq!(
            output.stdout.matches("\nbefore\n").count(),
            2,
            "{}",
            output.stdout
        );
        assert_eq!(output.stdout.matches("\nfinally-ran\n").count(), 2);
        assert!(output.stdout.contains("##xtask t0k3n phase BUILD retry 1 "));
        assert!(output
            .stdout
            .contains("Phase complete: BUILD State: SUCCEEDED"));
        assert_build(&output, true);
    });
}

#[test]
fn retry_does_not_rerun_when_the_pattern_does_not_match() {
    support::block_on(async {
        let yaml = format!(
            "version: 0.2\nphases:\n  build:\n    on-failure: RETRY-2-timed out\n    commands:\n      - {}\n",
            yaml_single_quoted(FLAKY)
        );
        let Some(output) = run(&yaml).await else {
            return;
        };
        assert_line(&output, "attempt 1");
        assert_no_line(&output, "attempt 2");
        assert!(!output.stdout.contains("##xtask t0k3n phase BUILD retry"));
        assert_build(&output, false);
    });
}

fn yaml_single_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn a_multi_line_command_is_one_command() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  build:
    commands:
      - |
        false
        echo after-false
      - echo next
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "after-false");
        assert_line(&output, "next");
        assert_eq!(
            output.stdout.matches(" Running command ").count(),
            2,
            "{}",
            output.stdout
        );
        assert_build(&output, true);
    });
}

#[test]
fn env_variables_are_literal() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
env:
  variables:
    LIT: $HOME
    PATHLIKE: $PATH:/x
    QUOTE: "it's \"quoted\""
phases:
  build:
    commands:
      - printf '%s\n' "lit=$LIT" "pathlike=$PATHLIKE" "quote=$QUOTE"
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "lit=$HOME");
        assert_line(&output, "pathlike=$PATH:/x");
        assert_line(&output, "quote=it's \"quoted\"");
        assert_build(&output, true);
    });
}

#[test]
fn exported_variables_are_reported() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
env:
  exported-variables:
    - OUT
    - NEVER_SET
phases:
  build:
    commands:
      - OUT="v 1 'x'"
"#)
        .await
        else {
            return;
        };
        let exports: Vec<Marker> = output
            .stdout
            .lines()
            .filter_map(|line| driver::parse_marker(line, TOKEN))
            .filter(|m| matches!(m, Marker::Export { .. }))
            .collect();
        assert_eq!(
            exports,
            [
                Marker::Export {
                    name: "OUT".into(),
                    value: Some("v 1 'x'".into())
                },
                Marker::Export {
                    name: "NEVER_SET".into(),
                    value: None
                },
            ],
            "{}",
            output.stdout
        );
        assert_build(&output, true);
    });
}

#[test]
fn a_command_that_exits_fails_the_build() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  build:
    commands:
      - exit 0
      - echo after-exit
  post_build:
    commands:
      - echo post-ran
"#)
        .await
        else {
            return;
        };
        assert_no_line(&output, "after-exit");
        assert!(output
            .stdout
            .contains("Phase complete: BUILD State: FAILED"));
        assert_build(&output, false);
    });
}

#[test]
fn a_syntax_error_fails_the_command_not_the_shell() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
phases:
  build:
    commands:
      - if then
    finally:
      - echo finally-ran
  post_build:
    commands:
      - echo post-ran
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "finally-ran");
        assert_line(&output, "post-ran");
        assert!(output
            .stdout
            .contains("Phase complete: BUILD State: FAILED"));
        assert_build(&output, false);
    });
}

#[test]
fn a_phase_runs_as_its_own_user_with_the_exported_environment() {
    support::block_on(async {
        let Some(output) = run(r#"version: 0.2
env:
  variables:
    SHARED: from-buildspec
phases:
  install:
    commands:
      - echo "install as $(id -un)"
      - export EXPORTED=yes
  build:
    run-as: nobody
    commands:
      - echo "build as $(id -un) in $(pwd) shared=$SHARED exported=$EXPORTED"
  post_build:
    commands:
      - echo "post as $(id -un)"
"#)
        .await
        else {
            return;
        };
        assert_line(&output, "install as root");
        assert_line(
            &output,
            "build as nobody in /tmp shared=from-buildspec exported=yes",
        );
        assert_line(&output, "post as root");
        assert_build(&output, true);
    });
}
