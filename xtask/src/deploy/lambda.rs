//! The Lambda side of a deploy: the layer's latest version and its CodeSha256, and
//! PublishLayerVersion.

use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Architecture, LayerVersionContentInput, Runtime};

use crate::aws::{self, Failure};

/// The newest version of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Latest {
    pub version: i64,
    pub layer_version_arn: String,
    pub code_sha256: Option<String>,
}

/// The layer's newest version, or `None` when it has none (or does not exist yet).
pub async fn latest(
    lambda: &aws_sdk_lambda::Client,
    layer_name: &str,
) -> anyhow::Result<Option<Latest>> {
    let listed = match lambda
        .list_layer_versions()
        .layer_name(layer_name)
        .send()
        .await
    {
        Ok(listed) => listed,
        Err(error) => {
            return match aws::classify(&error) {
                Failure::NotFound => Ok(None),
                failure => Err(aws::explain_failure(
                    &failure,
                    "lambda:ListLayerVersions",
                    layer_name,
                )),
            }
        }
    };
    // Lambda lists newest first; taking the maximum does not depend on it.
    let Some(newest) = listed.layer_versions().iter().max_by_key(|v| v.version()) else {
        return Ok(None);
    };
    let version = newest.version();
    let got = lambda
        .get_layer_version()
        .layer_name(layer_name)
        .version_number(version)
        .send()
        .await
        .map_err(|e| {
            aws::explain(
                &e,
                "lambda:GetLayerVersion",
                &format!("{layer_name} version {version}"),
            )
        })?;
    Ok(Some(Latest {
        version,
        layer_version_arn: got
            .layer_version_arn()
            .or(newest.layer_version_arn())
            .unwrap_or_default()
            .to_string(),
        code_sha256: got
            .content()
            .and_then(|c| c.code_sha256())
            .map(str::to_string),
    }))
}

/// Where PublishLayerVersion takes the zip from.
pub enum Content<'a> {
    Inline(Vec<u8>),
    S3 { bucket: &'a str, key: &'a str },
}

/// The properties of the new version.
pub struct Properties<'a> {
    pub layer_name: &'a str,
    pub description: Option<&'a str>,
    pub license_info: Option<&'a str>,
    pub compatible_runtimes: &'a [String],
    pub compatible_architectures: &'a [String],
}

/// What PublishLayerVersion answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub layer_arn: String,
    pub layer_version_arn: String,
    pub version: i64,
    pub code_sha256: Option<String>,
    pub code_size: i64,
}

pub async fn publish(
    lambda: &aws_sdk_lambda::Client,
    properties: &Properties<'_>,
    content: Content<'_>,
) -> anyhow::Result<Published> {
    let content = match content {
        Content::Inline(bytes) => LayerVersionContentInput::builder().zip_file(Blob::new(bytes)),
        Content::S3 { bucket, key } => LayerVersionContentInput::builder()
            .s3_bucket(bucket)
            .s3_key(key),
    }
    .build();
    let published = lambda
        .publish_layer_version()
        .layer_name(properties.layer_name)
        .content(content)
        .set_description(properties.description.map(str::to_string))
        .set_license_info(properties.license_info.map(str::to_string))
        .set_compatible_runtimes(Some(
            properties.compatible_runtimes.iter().map(|r| Runtime::from(r.as_str())).collect(),
        ))
        .set_compatible_architectures(Some(
            properties
                .compatible_architectures
                .iter()
                .map(|a| Architecture::from(a.as_str()))
                .collect(),
        ))
        .send()
        .await
        .map_err(|e| {
            let failure = aws::classify(&e);
            let what = format!("layer {}", properties.layer_name);
            match failure {
                // Lambda reads the S3 object with the caller's permissions.
                Failure::AccessDenied => anyhow::anyhow!(
                    "access denied: publishing needs the IAM permission lambda:PublishLayerVersion on \
                     {what} (and s3:GetObject on the zip when it comes from S3)"
                ),
                other => aws::explain_failure(&other, "lambda:PublishLayerVersion", &what),
            }
        })?;
    Ok(Published {
        layer_arn: published.layer_arn().unwrap_or_default().to_string(),
        layer_version_arn: published
            .layer_version_arn()
            .unwrap_or_default()
            .to_string(),
        version: published.version(),
        code_sha256: published
            .content()
            .and_then(|c| c.code_sha256())
            .map(str::to_string),
        code_size: published.content().map_or(0, |c| c.code_size()),
    })
}
