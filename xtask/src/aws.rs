//! AWS configuration and clients, the way every AWS tool resolves them.
//!
//! Credentials, profile and region come from aws-config's default chain (environment, shared
//! config and credentials files, SSO, container and instance metadata). `AWS_ENDPOINT_URL` (and
//! `AWS_ENDPOINT_URL_S3`, or `endpoint_url` in the profile) are honoured by aws-config itself,
//! which is how tests point the tool at a local moto server.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The shared AWS configuration: `profile` and `region`, when given, override the environment.
pub async fn sdk_config(profile: Option<&str>, region: Option<&str>) -> SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    // Every AWS call goes through rustls with the ring crypto provider and the platform's trust
    // store (a corporate CA the system trusts is trusted).
    let https = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https);
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

/// A Lambda client for the shared configuration (`AWS_ENDPOINT_URL` applies as for S3).
pub fn lambda_client(config: &SdkConfig) -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(config)
}

/// The error every AWS SDK call returns (S3 and Lambda share the smithy runtime's type).
pub type SdkError<E> = aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>;

/// Fails with one actionable line when no region or no credentials are configured, before any
/// request is made (the SDK's own messages for both are long and generic).
pub async fn require_region_and_credentials(config: &SdkConfig) -> anyhow::Result<String> {
    let Some(region) = config.region().map(ToString::to_string) else {
        anyhow::bail!(
            "no AWS region configured: pass --region, set AWS_REGION, set `region` in the profile, \
             or `region` under [default.deploy.parameters] in samconfig.toml"
        );
    };
    let provider = config.credentials_provider().ok_or_else(|| {
        anyhow::anyhow!(
            "no AWS credentials provider is configured: pass --profile or set AWS_PROFILE"
        )
    })?;
    use aws_sdk_s3::config::ProvideCredentials as _;
    if let Err(error) = provider.provide_credentials().await {
        // The chain's own text lists every provider it tried, over several lines.
        let reason = error.to_string();
        let reason = reason
            .lines()
            .next()
            .unwrap_or_default()
            .trim_end_matches(':');
        anyhow::bail!(
            "no AWS credentials found ({reason}): pass --profile, set AWS_PROFILE or \
             AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`"
        );
    }
    Ok(region)
}

/// What went wrong in one AWS call, reduced to what decides the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request never got an answer (network, endpoint, credentials at signing time).
    Unreachable(String),
    /// 403 or an `AccessDenied*` code.
    AccessDenied,
    /// The credentials themselves were refused (unknown key id, expired token, bad signature).
    BadCredentials(String),
    /// `NoSuchBucket`, or a 404 from HeadBucket.
    NoSuchBucket,
    /// The bucket lives in another region: 301, `PermanentRedirect`, `AuthorizationHeaderMalformed`.
    WrongRegion(Option<String>),
    /// 404 / `ResourceNotFoundException` / `NotFound` / `NoSuchKey`.
    NotFound,
    /// Anything else: the service's code and message, or the SDK's description.
    Other(String),
}

/// Classifies an SDK error (S3 or Lambda).
pub fn classify<E>(error: &SdkError<E>) -> Failure
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let described = aws_sdk_s3::error::DisplayErrorContext(error).to_string();
    let Some(response) = error.raw_response() else {
        return Failure::Unreachable(described);
    };
    let status = response.status().as_u16();
    let code = error.code().unwrap_or_default().to_string();
    let message = error.message().unwrap_or_default().to_string();
    let bucket_region = response
        .headers()
        .get("x-amz-bucket-region")
        .map(str::to_string);
    match code.as_str() {
        "NoSuchBucket" => return Failure::NoSuchBucket,
        "PermanentRedirect"
        | "AuthorizationHeaderMalformed"
        | "IllegalLocationConstraintException" => return Failure::WrongRegion(bucket_region),
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "InvalidClientTokenId" => return Failure::BadCredentials(format!("{code}: {message}")),
        "NoSuchKey" | "NotFound" | "ResourceNotFoundException" => return Failure::NotFound,
        _ => {}
    }
    if code.starts_with("AccessDenied") || status == 403 {
        return Failure::AccessDenied;
    }
    if status == 301 || status == 307 {
        return Failure::WrongRegion(bucket_region);
    }
    if status == 404 {
        return Failure::NotFound;
    }
    if code.is_empty() {
        Failure::Other(format!("HTTP {status}: {described}"))
    } else if message.is_empty() {
        Failure::Other(code)
    } else {
        Failure::Other(format!("{code}: {message}"))
    }
}

/// One actionable line for a failed call: `action` is the IAM action it needs
/// (`lambda:PublishLayerVersion`), `resource` what it acted on.
pub fn explain<E>(error: &SdkError<E>, action: &str, resource: &str) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    explain_failure(&classify(error), action, resource)
}

/// The message for a classified failure (see [`explain`]).
pub fn explain_failure(failure: &Failure, action: &str, resource: &str) -> anyhow::Error {
    match failure {
        Failure::Unreachable(detail) if detail.to_lowercase().contains("credential") => {
            anyhow::anyhow!(
                "no usable AWS credentials for {action} ({detail}): pass --profile, set AWS_PROFILE \
                 or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`"
            )
        }
        Failure::Unreachable(detail) => anyhow::anyhow!(
            "{action} on {resource} got no answer ({detail}): check the network, proxy and \
             AWS_ENDPOINT_URL"
        ),
        Failure::AccessDenied => anyhow::anyhow!(
            "access denied: the caller needs the IAM permission {action} on {resource}"
        ),
        Failure::BadCredentials(detail) => anyhow::anyhow!(
            "the AWS credentials were rejected by {action} ({detail}): refresh them, or pick \
             another --profile"
        ),
        Failure::NoSuchBucket => anyhow::anyhow!(
            "the S3 bucket of {resource} does not exist: create it, or pass another --bucket"
        ),
        Failure::WrongRegion(Some(region)) => anyhow::anyhow!(
            "the S3 bucket of {resource} is in region {region}, not this one: pass --region {region} \
             or a bucket in this region"
        ),
        Failure::WrongRegion(None) => anyhow::anyhow!(
            "the S3 bucket of {resource} is in another region: pass its --region or a bucket in \
             this region"
        ),
        Failure::NotFound => anyhow::anyhow!("{action}: {resource} was not found"),
        Failure::Other(detail) => anyhow::anyhow!("{action} on {resource} failed: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    fn service_error(
        status: u16,
        code: &str,
        header: Option<(&str, &str)>,
    ) -> SdkError<PutObjectError> {
        let mut response = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        if let Some((name, value)) = header {
            response
                .headers_mut()
                .insert(name.to_string(), value.to_string());
        }
        let metadata = ErrorMetadata::builder().code(code).message("m").build();
        aws_sdk_s3::error::SdkError::service_error(PutObjectError::generic(metadata), response)
    }

    #[test]
    fn failures_are_classified_and_explained_in_one_line() {
        let denied = service_error(403, "AccessDenied", None);
        assert_eq!(classify(&denied), Failure::AccessDenied);
        let message = explain(&denied, "s3:PutObject", "s3://b/k").to_string();
        assert!(
            message.contains("s3:PutObject") && !message.contains('\n'),
            "{message}"
        );
        let lambda_denied = service_error(403, "AccessDeniedException", None);
        assert_eq!(classify(&lambda_denied), Failure::AccessDenied);
        assert_eq!(
            classify(&service_error(404, "NoSuchBucket", None)),
            Failure::NoSuchBucket
        );
        assert_eq!(
            classify(&service_error(
                301,
                "",
                Some(("x-amz-bucket-region", "eu-west-1"))
            )),
            Failure::WrongRegion(Some("eu-west-1".into()))
        );
        assert_eq!(
            classify(&service_error(400, "AuthorizationHeaderMalformed", None)),
            Failure::WrongRegion(None)
        );
        let wrong = explain_failure(
            &Failure::WrongRegion(Some("eu-west-1".into())),
            "a",
            "s3://b",
        );
        assert!(wrong.to_string().contains("--region eu-west-1"), "{wrong}");
        assert!(matches!(
            classify(&service_error(403, "InvalidAccessKeyId", None)),
            Failure::BadCredentials(_)
        ));
        assert_eq!(classify(&service_error(404, "", None)), Failure::NotFound);
        assert!(matches!(
            classify(&service_error(500, "InternalError", None)),
            Failure::Other(_)
        ));
    }
}
