//! AWS configuration and clients, the way every AWS tool resolves them.
//!
//! Credentials, profile and region come from aws-config's default chain (environment, shared
//! config and credentials files, SSO, container and instance metadata). `AWS_ENDPOINT_URL` (and
//! `AWS_ENDPOINT_URL_S3`, or `endpoint_url` in the profile) are honoured by aws-config itself,
//! which is how tests point the tool at a local moto server.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The shared AWS configuration: `profile` and `region`, when given, override the environment.
pub async fn sdk_config(profile: Option<&str>, region: Option<&str>) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_string()));
    }
    loader.load().await
}

/// An S3 client; with a custom endpoint (moto, MinIO, LocalStack) it addresses buckets by path,
/// since such servers do not resolve `BUCKET.host` names.
pub fn s3_client(config: &SdkConfig) -> aws_sdk_s3::Client {
    let custom_endpoint = config.endpoint_url().is_some()
        || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some_and(|url| !url.is_empty());
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(custom_endpoint)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
