//! `cargo xtask deploy-stack` against moto's CloudFormation: a change set is shown, applied only
//! with `--yes`, and a stack with no changes is up to date.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn unique(tag: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |age| age.as_nanos());
    format!("xt-{tag}-{}-{:x}", std::process::id(), nanos % (1 << 40))
}

/// A stack template with a bucket and the outputs codebuild.yml has.
pub(crate) const TEMPLATE: &str = "AWSTemplateFormatVersion: '2010-09-09'\nParameters:\n  BucketName:\n    Type: String\n  ProjectName:\n    Type: String\nResources:\n  Bucket:\n    Type: AWS::S3::Bucket\n    Properties:\n      BucketName: !Ref BucketName\nOutputs:\n  ArtifactBucketName:\n    Value: !Ref Bucket\n  ProjectName:\n    Value: !Ref ProjectName\n";

/// `deploy-stack codebuild --template-file <dir>/stack.yml --stack-name NAME …`, its JSON.
pub(crate) fn deploy_stack(dir: &Path, stack: &str, extra: &[&str]) -> serde_json::Value {
    let template = dir.join("stack.yml");
    std::fs::write(&template, TEMPLATE).expect("template");
    let output = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["deploy-stack", "codebuild", "--json", "--stack-name", stack])
        .arg("--template-file")
        .arg(&template)
        .args(extra)
        .output()
        .expect("run xtask");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).expect("json")
}

#[test]
fn a_change_set_is_shown_applied_with_yes_and_then_up_to_date() {
    if support::moto_endpoint().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let stack = unique("stack");
    let bucket = unique("stack-bucket");
    let parameters = [
        "--parameter",
        &format!("BucketName={bucket}"),
        "--parameter",
        "ProjectName=p",
    ];
    let planned = deploy_stack(dir.path(), &stack, &parameters);
    assert_eq!(planned["status"], "planned", "{planned:#}");
    let changes = planned["changes"].to_string();
    assert!(
        changes.contains("Add Bucket (AWS::S3::Bucket)"),
        "{changes}"
    );

    let mut apply = parameters.to_vec();
    apply.push("--yes");
    let applied = deploy_stack(dir.path(), &stack, &apply);
    assert_eq!(applied["status"], "applied", "{applied:#}");
    // The stack made the bucket. (moto gives a stack made through a change set no outputs.)
    support::block_on(async {
        let config = xtask::aws::sdk_config(None, None).await;
        xtask::aws::s3_client(&config)
            .head_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("the stack's bucket");
    });
    let again = deploy_stack(dir.path(), &stack, &apply);
    assert_eq!(again["status"], "up_to_date", "{again:#}");
}
