//! `cargo xtask deploy-stack`: creates or updates the CodeBuild stack (`codebuild.yml`) or the CI
//! role's (`ci-role.yml`) through a CloudFormation change set: it shows the changes, applies them
//! only with `--yes`, and is a no-op when nothing changed.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use aws_sdk_cloudformation::types::{Capability, ChangeSetStatus, ChangeSetType, Parameter};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::aws;

/// Create or update a stack through a change set (shown; applied with --yes).
#[derive(Debug, Clone, Args)]
pub struct DeployStack {
    /// Which stack: the CodeBuild project (codebuild.yml) or the CI role (ci-role.yml).
    #[arg(value_enum, default_value = "codebuild")]
    pub which: Which,
    /// The template [default: codebuild.yml or ci-role.yml in the workspace].
    #[arg(long)]
    pub template_file: Option<PathBuf>,
    /// The stack's name [default: <LayerName>-codebuild or <LayerName>-ci-role].
    #[arg(long)]
    pub stack_name: Option<String>,
    /// A template parameter, KEY=VALUE (repeatable). LayerName defaults to the layer's; an
    /// existing stack keeps the values it has for the others.
    #[arg(long = "parameter", value_name = "KEY=VALUE", value_parser = parse_parameter)]
    pub parameters: Vec<(String, String)>,
    /// Apply the change set (without it, the changes are only shown).
    #[arg(long)]
    pub yes: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub profile: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    Codebuild,
    CiRole,
}

impl Which {
    fn file(self) -> &'static str {
        match self {
            Which::Codebuild => "codebuild.yml",
            Which::CiRole => "ci-role.yml",
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Which::Codebuild => "codebuild",
            Which::CiRole => "ci-role",
        }
    }
}

/// `KEY=VALUE`, KEY a CloudFormation parameter name (letters and digits).
fn parse_parameter(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Ok((key.to_string(), value.to_string()))
        }
        _ => bail!("`{text}` is not KEY=VALUE with a template parameter's name"),
    }
}

/// What a deploy-stack did.
#[derive(Debug, Serialize)]
pub struct StackOutcome {
    pub stack_name: String,
    /// `up_to_date`, `planned` (shown, not applied) or `applied`.
    pub status: &'static str,
    pub change_set: Option<String>,
    pub changes: Vec<String>,
    pub outputs: Vec<(String, String)>,
}

/// How long a change set may take to compute, and a stack to create or update.
const CHANGE_SET_WAIT: Duration = Duration::from_secs(5 * 60);
const STACK_WAIT: Duration = Duration::from_secs(60 * 60);

impl DeployStack {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let runtime = tokio::runtime::Runtime::new()?;
        let outcome = runtime.block_on(self.execute())?;
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{}", serde_json::to_string(&outcome)?)?;
        } else {
            write!(out, "{}", outcome.human())?;
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn execute(&self) -> anyhow::Result<StackOutcome> {
        let root = crate::util::project_root();
        let path = self
            .template_file
            .clone()
            .unwrap_or_else(|| root.join(self.which.file()));
        let body = crate::util::read_regular(&path, 1 << 20)
            .with_context(|| format!("cannot read the template {}", path.display()))?;
        let layer = crate::layer::read_template(None, &root)
            .ok()
            .flatten()
            .and_then(|t| crate::layer::LayerTarget::resolve(&Default::default(), Some(&t)).ok())
            .map(|target| target.short_name().to_string());
        let stack_name = match (&self.stack_name, &layer) {
            (Some(name), _) => name.clone(),
            (None, Some(layer)) => format!("{layer}-{}", self.which.suffix()),
            (None, None) => bail!("no layer name to name the stack after: pass --stack-name"),
        };
        let config = aws::sdk_config(self.profile.as_deref(), self.region.as_deref()).await;
        aws::require_region_and_credentials(&config).await?;
        let cfn = aws_sdk_cloudformation::Client::new(&config);
        let existing = existing_parameters(&cfn, &stack_name).await?;
        let parameters = parameters(&body, &self.parameters, layer.as_deref(), existing.as_ref());
        let created =
            create_change_set(&cfn, &stack_name, &body, parameters, existing.is_some()).await?;
        let computed = match &created {
            Some(change_set) => wait_for_change_set(&cfn, &stack_name, change_set).await?,
            None => None,
        };
        let (Some(change_set), Some(changes)) = (created.clone(), computed) else {
            if let Some(change_set) = created {
                discard(&cfn, &stack_name, &change_set, false).await;
            }
            return Ok(StackOutcome {
                outputs: outputs(&cfn, &stack_name).await.unwrap_or_default(),
                stack_name,
                status: "up_to_date",
                change_set: None,
                changes: Vec::new(),
            });
        };
        if !self.yes {
            // Shown, not kept: a change set (and a stack that only exists to hold it) left
            // behind would stand in the way of the next deploy.
            discard(&cfn, &stack_name, &change_set, existing.is_none()).await;
            return Ok(StackOutcome {
                stack_name,
                status: "planned",
                change_set: None,
                changes,
                outputs: Vec::new(),
            });
        }
        cfn.execute_change_set()
            .stack_name(&stack_name)
            .change_set_name(&change_set)
            .send()
            .await
            .map_err(|e| aws::explain(&e, "cloudformation:ExecuteChangeSet", &stack_name))?;
        wait_for_stack(&cfn, &stack_name).await?;
        Ok(StackOutcome {
            outputs: outputs(&cfn, &stack_name).await?,
            stack_name,
            status: "applied",
            change_set: Some(change_set),
            changes,
        })
    }
}

/// Deletes a change set that was only shown, and the empty stack a CREATE change set made.
async fn discard(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
    change_set: &str,
    created: bool,
) {
    let _ = cfn
        .delete_change_set()
        .stack_name(stack_name)
        .change_set_name(change_set)
        .send()
        .await;
    if created {
        let _ = cfn.delete_stack().stack_name(stack_name).send().await;
    }
}

/// The parameters of an existing stack (`None`: there is none, or only a change set under
/// review that was never executed).
async fn existing_parameters(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let described = cfn.describe_stacks().stack_name(stack_name).send().await;
    let stacks = match described {
        Ok(d) => d.stacks.unwrap_or_default(),
        Err(e) if format!("{e:?}").contains("does not exist") => return Ok(None),
        Err(e) => {
            return Err(aws::explain(
                &e,
                "cloudformation:DescribeStacks",
                stack_name,
            ))
        }
    };
    let Some(stack) = stacks.into_iter().next() else {
        return Ok(None);
    };
    let status = stack.stack_status().map(|s| s.as_str()).unwrap_or_default();
    match status {
        "REVIEW_IN_PROGRESS" => Ok(None),
        "ROLLBACK_COMPLETE" => bail!("the stack {stack_name} failed to create (ROLLBACK_COMPLETE): delete it, then deploy again"),
        s if s.ends_with("_IN_PROGRESS") => bail!("the stack {stack_name} is busy ({s}): wait for it to finish"),
        _ => Ok(Some(
            stack
                .parameters()
                .iter()
                .filter_map(|p| p.parameter_key().map(str::to_string))
                .collect(),
        )),
    }
}

/// The change set's parameters: the flags, `LayerName` from the layer when the template has it
/// and no flag gives it, and the existing stack's previous values for the rest.
fn parameters(
    body: &str,
    given: &[(String, String)],
    layer: Option<&str>,
    existing: Option<&Vec<String>>,
) -> Vec<Parameter> {
    let mut out: Vec<Parameter> = given
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(k)
                .parameter_value(v)
                .build()
        })
        .collect();
    let given_key = |key: &str| given.iter().any(|(k, _)| k == key);
    if let Some(layer) =
        layer.filter(|_| body.contains("\n  LayerName:") && !given_key("LayerName"))
    {
        out.push(
            Parameter::builder()
                .parameter_key("LayerName")
                .parameter_value(layer)
                .build(),
        );
    }
    for key in existing.into_iter().flatten() {
        let defaulted = key == "LayerName" && layer.is_some();
        if !given_key(key) && !defaulted {
            out.push(
                Parameter::builder()
                    .parameter_key(key)
                    .use_previous_value(true)
                    .build(),
            );
        }
    }
    out
}

/// A change set for the template; `None` when CloudFormation says at once there is nothing to
/// change.
async fn create_change_set(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
    body: &str,
    parameters: Vec<Parameter>,
    update: bool,
) -> anyhow::Result<Option<String>> {
    let name = format!("xtask-{}", crate::util::unix_millis());
    let created = cfn
        .create_change_set()
        .stack_name(stack_name)
        .change_set_name(&name)
        .change_set_type(match update {
            true => ChangeSetType::Update,
            false => ChangeSetType::Create,
        })
        .template_body(body)
        .set_parameters(Some(parameters))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await;
    match created {
        Ok(_) => Ok(Some(name)),
        // Some implementations refuse an update without changes at once.
        Err(e) if no_changes(&format!("{e:?}")) => Ok(None),
        Err(e) => Err(aws::explain(
            &e,
            "cloudformation:CreateChangeSet",
            stack_name,
        )),
    }
}

/// Whether CloudFormation's message says there is nothing to change.
fn no_changes(message: &str) -> bool {
    message.contains("didn't contain changes") || message.contains("No updates are to be performed")
}

/// The change set's changes once computed; `None` when it has none.
async fn wait_for_change_set(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
    name: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let started = Instant::now();
    loop {
        let d = cfn
            .describe_change_set()
            .stack_name(stack_name)
            .change_set_name(name)
            .send()
            .await
            .map_err(|e| aws::explain(&e, "cloudformation:DescribeChangeSet", stack_name))?;
        match d.status() {
            Some(ChangeSetStatus::CreateComplete) => {
                return Ok(Some(
                    d.changes().iter().filter_map(describe_change).collect(),
                ))
            }
            Some(ChangeSetStatus::Failed) => {
                let reason = d.status_reason().unwrap_or_default();
                if no_changes(reason) {
                    return Ok(None);
                }
                bail!("the change set for {stack_name} failed: {reason}");
            }
            _ if started.elapsed() > CHANGE_SET_WAIT => {
                bail!("the change set for {stack_name} was not ready within 5 minutes")
            }
            _ => tokio::time::sleep(Duration::from_secs(2)).await,
        }
    }
}

/// `Add ArtifactBucket (AWS::S3::Bucket)`, `Modify BuildRole (AWS::IAM::Role), replaced`.
fn describe_change(change: &aws_sdk_cloudformation::types::Change) -> Option<String> {
    let r = change.resource_change()?;
    let replacement = match r.replacement().map(|x| x.as_str()) {
        Some("True") => ", replaced",
        Some("Conditional") => ", maybe replaced",
        _ => "",
    };
    Some(format!(
        "{} {} ({}){replacement}",
        r.action().map(|a| a.as_str()).unwrap_or("?"),
        r.logical_resource_id().unwrap_or("?"),
        r.resource_type().unwrap_or("?")
    ))
}

async fn wait_for_stack(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let d = cfn
            .describe_stacks()
            .stack_name(stack_name)
            .send()
            .await
            .map_err(|e| aws::explain(&e, "cloudformation:DescribeStacks", stack_name))?;
        let stack = d
            .stacks()
            .first()
            .context("DescribeStacks returned no stack")?;
        let status = stack.stack_status().map(|s| s.as_str()).unwrap_or_default();
        if status.contains("ROLLBACK") || status.ends_with("_FAILED") {
            if !status.ends_with("_IN_PROGRESS") {
                let reason = stack.stack_status_reason().unwrap_or_default();
                bail!("the stack {stack_name} ended {status}: {reason} (its events say which resource failed)");
            }
        } else if status.ends_with("_COMPLETE") {
            return Ok(());
        }
        if started.elapsed() > STACK_WAIT {
            bail!("the stack {stack_name} is still {status} after 60 minutes");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// The outputs of the stack `stack_name`, when it exists and can be read.
pub async fn stack_outputs(
    stack_name: &str,
    profile: Option<&str>,
    region: Option<&str>,
) -> anyhow::Result<Vec<(String, String)>> {
    let config = aws::sdk_config(profile, region).await;
    let cfn = aws_sdk_cloudformation::Client::new(&config);
    outputs(&cfn, stack_name).await
}

/// The stack's outputs, `(key, value)`.
pub async fn outputs(
    cfn: &aws_sdk_cloudformation::Client,
    stack_name: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let d = cfn
        .describe_stacks()
        .stack_name(stack_name)
        .send()
        .await
        .map_err(|e| aws::explain(&e, "cloudformation:DescribeStacks", stack_name))?;
    Ok(d.stacks()
        .first()
        .map(|s| {
            s.outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_string(), o.output_value()?.to_string())))
                .collect()
        })
        .unwrap_or_default())
}

impl StackOutcome {
    pub fn human(&self) -> String {
        let mut text = match self.status {
            "up_to_date" => format!("up to date: the stack {} has no changes\n", self.stack_name),
            "planned" => format!(
                "changes to the stack {} (not applied: run again with --yes to apply them):\n",
                self.stack_name
            ),
            _ => format!("applied to the stack {}:\n", self.stack_name),
        };
        for change in &self.changes {
            text.push_str(&format!("  {change}\n"));
        }
        for (key, value) in &self.outputs {
            text.push_str(&format!("  output {key} = {value}\n"));
        }
        text
    }
}
