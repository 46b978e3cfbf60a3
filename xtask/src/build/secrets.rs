//! `--resolve-secrets`: the buildspec's `parameter-store` and `secrets-manager` values, fetched on
//! the host through the AWS SDK (default credential chain, `AWS_ENDPOINT_URL` honoured), the way
//! CodeBuild fetches them before the build. The values then only live in the build's environment
//! and are masked in its log.

use anyhow::Context as _;

use crate::aws;
use crate::buildspec::Env;

/// A `secrets-manager` reference: `secret-id:json-key:version-stage:version-id`, where only the
/// secret id is required and the id may itself be an ARN (which contains colons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    pub secret_id: String,
    pub json_key: Option<String>,
    pub version_stage: Option<String>,
    pub version_id: Option<String>,
}

impl SecretRef {
    pub fn parse(reference: &str) -> SecretRef {
        // An ARN is `arn:partition:secretsmanager:region:account:secret:name`: 7 fields.
        let fields: Vec<&str> = reference.split(':').collect();
        let id_fields = if reference.starts_with("arn:") {
            7.min(fields.len())
        } else {
            1
        };
        let secret_id = fields[..id_fields].join(":");
        let rest = &fields[id_fields..];
        let part = |i: usize| rest.get(i).filter(|s| !s.is_empty()).map(|s| s.to_string());
        SecretRef {
            secret_id,
            json_key: part(0),
            version_stage: part(1),
            version_id: part(2),
        }
    }
}

/// Every `(variable, value)` the buildspec's stores name.
pub async fn resolve(env: &Env) -> anyhow::Result<Vec<(String, String)>> {
    if env.parameter_store.is_empty() && env.secrets_manager.is_empty() {
        return Ok(Vec::new());
    }
    let config = aws::sdk_config(None, None).await;
    aws::require_region_and_credentials(&config).await?;
    let mut values = Vec::new();
    if !env.parameter_store.is_empty() {
        let ssm = aws_sdk_ssm::Client::new(&config);
        for (name, parameter) in &env.parameter_store {
            let answer = ssm
                .get_parameter()
                .name(&parameter.value)
                .with_decryption(true)
                .send()
                .await
                .map_err(|e| aws::explain(&e, "ssm:GetParameter", &parameter.value))
                .with_context(|| format!("parameter-store {}", name.value))?;
            let value = answer
                .parameter()
                .and_then(|p| p.value())
                .unwrap_or_default();
            values.push((name.value.clone(), value.to_string()));
        }
    }
    if !env.secrets_manager.is_empty() {
        let secrets = aws_sdk_secretsmanager::Client::new(&config);
        for (name, reference) in &env.secrets_manager {
            let secret = SecretRef::parse(&reference.value);
            let answer = secrets
                .get_secret_value()
                .secret_id(&secret.secret_id)
                .set_version_stage(secret.version_stage.clone())
                .set_version_id(secret.version_id.clone())
                .send()
                .await
                .map_err(|e| aws::explain(&e, "secretsmanager:GetSecretValue", &secret.secret_id))
                .with_context(|| format!("secrets-manager {}", name.value))?;
            let whole = answer.secret_string().unwrap_or_default();
            let value = match &secret.json_key {
                Some(key) => json_field(whole, key).with_context(|| {
                    format!(
                        "secrets-manager {}: secret {}",
                        name.value, secret.secret_id
                    )
                })?,
                None => whole.to_string(),
            };
            values.push((name.value.clone(), value));
        }
    }
    Ok(values)
}

/// A top-level key of a JSON secret: strings as they are, anything else as JSON text.
fn json_field(secret: &str, key: &str) -> anyhow::Result<String> {
    let parsed: serde_json::Value = serde_json::from_str(secret)
        .context("the secret is not JSON, so it has no key to select")?;
    match parsed.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => anyhow::bail!("the secret has no key `{key}`"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_with_and_without_arns() {
        let plain = SecretRef::parse("prod/db:password");
        assert_eq!(plain.secret_id, "prod/db");
        assert_eq!(plain.json_key.as_deref(), Some("password"));
        assert_eq!(plain.version_stage, None);
        let arn = SecretRef::parse(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf:user:AWSPREVIOUS",
        );
        assert_eq!(
            arn.secret_id,
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-AbCdEf"
        );
        assert_eq!(arn.json_key.as_deref(), Some("user"));
        assert_eq!(arn.version_stage.as_deref(), Some("AWSPREVIOUS"));
        let whole = SecretRef::parse("token::AWSCURRENT");
        assert_eq!(
            (whole.json_key, whole.version_stage.as_deref()),
            (None, Some("AWSCURRENT"))
        );
    }

    #[test]
    fn json_keys() {
        assert_eq!(json_field(r#"{"a":"x","n":3}"#, "a").unwrap(), "x");
        assert_eq!(json_field(r#"{"a":"x","n":3}"#, "n").unwrap(), "3");
        assert!(json_field("plain", "a").is_err());
        assert!(json_field("{}", "a").is_err());
    }
}
