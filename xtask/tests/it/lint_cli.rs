//! `cargo xtask lint-buildspec` as a user runs it: the real binary, its exit codes (0 clean or
//! warnings only, 1 errors, 2 unreadable or unparseable) and its three output formats.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// A corpus file, relative to the workspace root (as a user would name it from there).
fn corpus(name: &str) -> String {
    format!("xtask/test_data/buildspecs/{name}")
}

/// Runs `xtask lint-buildspec ARGS` from the workspace root, without colours.
fn lint(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("lint-buildspec")
        .args(args)
        .current_dir(workspace_root())
        .env("NO_COLOR", "1")
        .output()
        .expect("the xtask binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The exit code, with the output in the failure message when it is not `expected`.
#[track_caller]
fn assert_exit(output: &Output, expected: i32) {
    assert_eq!(
        output.status.code(),
        Some(expected),
        "exit status {:?}, expected {expected}\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        stdout(output),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[track_caller]
fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(output)))
}

/// `(rule, line, column)` of every diagnostic in a `--format json` report.
fn json_diagnostics(report: &Value) -> Vec<(String, u64, u64)> {
    report["diagnostics"]
        .as_array()
        .expect("diagnostics is an array")
        .iter()
        .map(|d| {
            (
                d["rule"].as_str().expect("rule is a string").to_string(),
                d["line"].as_u64().expect("line is a number"),
                d["column"].as_u64().expect("column is a number"),
            )
        })
        .collect()
}

#[test]
fn the_projects_own_buildspec_passes() {
    let output = lint(&["buildspec.yml"]);
    assert_exit(&output, 0);
    assert!(
        stdout(&output).contains("0 error(s)"),
        "{}",
        stdout(&output)
    );

    let output = lint(&["buildspec.yml", "--format", "json"]);
    assert_exit(&output, 0);
    assert_eq!(json(&output)["summary"]["errors"], 0);
}

#[test]
fn errors_exit_1_with_file_line_col_and_help() {
    let file = corpus("invalid/bs101-unknown-phase.yml");
    let output = lint(&[&file, "--no-cross-checks"]);
    assert_exit(&output, 1);
    let text = stdout(&output);
    assert!(
        text.contains(&format!(
            "{file}:6:3: error[BS101]: unknown key `pre-build`"
        )),
        "{text}"
    );
    assert!(text.contains("did you mean `pre_build`?"), "{text}");
    assert!(text.contains("1 error(s), 0 warning(s)"), "{text}");
}

#[test]
fn warnings_alone_exit_0() {
    let file = corpus("valid/go-unquoted-float-version.yml");
    let output = lint(&[&file, "--no-cross-checks"]);
    assert_exit(&output, 0);
    let text = stdout(&output);
    assert!(
        text.contains(&format!("{file}:8:15: warning[BS112]")),
        "{text}"
    );
    assert!(text.contains("0 error(s), 1 warning(s)"), "{text}");
}

#[test]
fn a_yaml_syntax_error_exits_2_and_still_points_at_the_place() {
    let file = corpus("invalid/bs002-unclosed-flow-sequence.yml");
    let output = lint(&[&file]);
    assert_exit(&output, 2);
    let text = stdout(&output);
    assert!(
        text.contains(&format!("{file}:7:13: error[BS002]: invalid YAML")),
        "{text}"
    );

    let output = lint(&[&file, "--format", "json"]);
    assert_exit(&output, 2);
    assert_eq!(
        json_diagnostics(&json(&output)),
        [("BS002".to_string(), 7, 13)]
    );
}

#[test]
fn a_missing_file_exits_2() {
    let output = lint(&["xtask/test_data/buildspecs/no-such-buildspec.yml"]);
    assert_exit(&output, 2);
    let text = stdout(&output);
    assert!(text.contains("BS001"), "{text}");
    assert!(
        text.contains("cannot read xtask/test_data/buildspecs/no-such-buildspec.yml"),
        "{text}"
    );
}

#[test]
fn json_reports_rule_line_and_column() {
    let output = lint(&[&corpus("invalid/bs207-arrays.yml"), "--format", "json"]);
    assert_exit(&output, 0); // BS207 is a warning
    let report = json(&output);
    assert_eq!(
        json_diagnostics(&report),
        [("BS207".to_string(), 8, 9), ("BS207".to_string(), 9, 25)]
    );
    assert_eq!(report["summary"]["errors"], 0);
    assert_eq!(report["summary"]["warnings"], 2);
    let first = &report["diagnostics"][0];
    assert_eq!(first["severity"], "warning");
    assert_eq!(first["name"], "bash-only-syntax");
    assert_eq!(first["file"], corpus("invalid/bs207-arrays.yml"));
    assert!(
        first["message"]
            .as_str()
            .is_some_and(|m| m.contains("arrays")),
        "{first}"
    );
}

#[test]
fn json_reports_diagnostics_in_the_templates_too() {
    let output = lint(&[
        &corpus("invalid/bs201-runtime-template-mismatch.yml"),
        "--template",
        &corpus("templates/layer-py311.yaml"),
        "--format",
        "json",
    ]);
    assert_exit(&output, 1);
    let report = json(&output);
    let places: BTreeSet<(String, u64, u64)> = report["diagnostics"]
        .as_array()
        .expect("diagnostics is an array")
        .iter()
        .map(|d| {
            let file = d["file"].as_str().expect("file is a string").to_string();
            (
                file,
                d["line"].as_u64().unwrap_or(0),
                d["column"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        places.contains(&(
            corpus("invalid/bs201-runtime-template-mismatch.yml"),
            10,
            15
        )),
        "{places:?}"
    );
    assert!(
        places.contains(&(corpus("templates/layer-py311.yaml"), 15, 11)),
        "{places:?}"
    );
}

/// The parts of SARIF 2.1.0 that code scanning needs, checked one by one.
#[track_caller]
fn assert_sarif_shape(sarif: &Value) {
    assert_eq!(sarif["version"], "2.1.0", "{sarif}");
    assert!(
        sarif["$schema"]
            .as_str()
            .is_some_and(|s| s.contains("sarif") && s.contains("2.1.0")),
        "{sarif}"
    );
    let runs = sarif["runs"].as_array().expect("runs is an array");
    assert_eq!(runs.len(), 1);
    let driver = &runs[0]["tool"]["driver"];
    assert!(
        driver["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{driver}"
    );
    let rules = driver["rules"]
        .as_array()
        .expect("tool.driver.rules is an array");
    assert!(!rules.is_empty());
    let ids: Vec<&str> = rules
        .iter()
        .map(|r| r["id"].as_str().expect("every rule has a string id"))
        .collect();
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "rule ids repeat: {ids:?}"
    );
    for rule in rules {
        assert!(
            rule["shortDescription"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{rule}"
        );
    }
    let results = runs[0]["results"].as_array().expect("results is an array");
    assert!(!results.is_empty(), "no results");
    for result in results {
        let rule_id = result["ruleId"].as_str().expect("ruleId is a string");
        assert!(
            ids.contains(&rule_id),
            "{rule_id} is not among the driver's rules"
        );
        if let Some(index) = result["ruleIndex"].as_u64() {
            assert_eq!(
                ids[index as usize], rule_id,
                "ruleIndex points at another rule"
            );
        }
        assert!(
            matches!(
                result["level"].as_str(),
                Some("error" | "warning" | "note" | "none")
            ),
            "{result}"
        );
        assert!(
            result["message"]["text"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "{result}"
        );
        let location = &result["locations"][0]["physicalLocation"];
        let uri = location["artifactLocation"]["uri"]
            .as_str()
            .expect("artifactLocation.uri");
        assert!(!uri.is_empty() && !uri.contains('\\'), "{uri}");
        let region = &location["region"];
        assert!(
            region["startLine"].as_u64().is_some_and(|l| l >= 1),
            "{result}"
        );
        assert!(
            region["startColumn"].as_u64().is_some_and(|c| c >= 1),
            "{result}"
        );
        if let Some(end) = region["endLine"].as_u64() {
            assert!(end >= region["startLine"].as_u64().unwrap_or(0), "{result}");
        }
    }
}

#[test]
fn sarif_has_the_shape_of_sarif_2_1_0() {
    let file = corpus("invalid/bs206-sam-deploy-guided.yml");
    let output = lint(&[&file, "--format", "sarif"]);
    assert_exit(&output, 1);
    let sarif = json(&output);
    assert_sarif_shape(&sarif);
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    let found: BTreeSet<(&str, &str, u64, u64)> = results
        .iter()
        .map(|r| {
            let location = &r["locations"][0]["physicalLocation"];
            (
                r["ruleId"].as_str().unwrap_or_default(),
                r["level"].as_str().unwrap_or_default(),
                location["region"]["startLine"].as_u64().unwrap_or(0),
                location["region"]["startColumn"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        found,
        BTreeSet::from([("BS206", "error", 9, 20), ("BS210", "warning", 9, 9)])
    );
    let uri = results[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str();
    assert_eq!(uri, Some(file.as_str()));
}

#[test]
fn sarif_of_unparseable_and_unreadable_files_keeps_the_shape() {
    for (file, rule) in [
        (corpus("invalid/bs002-tab-indentation.yml"), "BS002"),
        (corpus("invalid/bs004-only-comments.yml"), "BS004"),
        (corpus("no-such-buildspec.yml"), "BS001"),
    ] {
        let output = lint(&[&file, "--format", "sarif"]);
        assert!(
            matches!(output.status.code(), Some(1 | 2)),
            "{file}: {:?}",
            output.status
        );
        let sarif = json(&output);
        assert_sarif_shape(&sarif);
        assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], rule, "{file}");
    }
}

#[test]
fn no_cross_checks_suppresses_the_cross_check_rules() {
    let file = corpus("invalid/bs206-sam-deploy-guided.yml");
    let checked = json(&lint(&[&file, "--format", "json"]));
    let rules: BTreeSet<String> = json_diagnostics(&checked)
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(
        rules,
        BTreeSet::from(["BS206".to_string(), "BS210".to_string()])
    );

    let output = lint(&[&file, "--format", "json", "--no-cross-checks"]);
    assert_exit(&output, 0);
    assert_eq!(json_diagnostics(&json(&output)), []);

    // A template problem is a cross-check too.
    let output = lint(&[
        &file,
        "--no-cross-checks",
        "--template",
        "no/such/template.yaml",
    ]);
    assert_exit(&output, 0);
}

#[test]
fn an_explicit_template_that_cannot_be_read_is_an_error() {
    let file = corpus("valid/go-build.yml");
    let output = lint(&[
        &file,
        "--template",
        "no/such/template.yaml",
        "--format",
        "json",
    ]);
    assert_exit(&output, 1);
    let report = json(&output);
    let problems: Vec<&Value> = report["diagnostics"]
        .as_array()
        .expect("diagnostics")
        .iter()
        .filter(|d| d["rule"] == "BS209")
        .collect();
    assert_eq!(problems.len(), 1, "{report}");
    assert_eq!(problems[0]["severity"], "error");
}
