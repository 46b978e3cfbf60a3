//! Smoke test of the AWS configuration and S3 client against a local moto server.
//!
//! Needs `AWS_ENDPOINT_URL` pointing at moto on this machine and dummy credentials in the
//! environment; `bash scripts/test.sh` starts moto and sets both.

use crate::support;

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use xtask::aws;

#[test]
fn s3_round_trip_through_moto() {
    let Some(endpoint) = support::moto_endpoint() else {
        return;
    };
    support::block_on(async {
        let config = aws::sdk_config(None, None).await;
        assert_eq!(
            config.endpoint_url(),
            Some(endpoint.as_str()),
            "aws-config did not pick up AWS_ENDPOINT_URL"
        );
        let region = config.region().map(|region| region.to_string());
        let s3 = aws::s3_client(&config);

        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |age| age.as_nanos());
        let bucket = format!("xtask-smoke-{}-{nanos}", std::process::id());
        let key = "layers/python3.9/layer.zip";
        let body = b"not really a zip, but 42 bytes of content.".to_vec();

        let mut create = s3.create_bucket().bucket(&bucket);
        if let Some(region) = region.as_deref().filter(|region| *region != "us-east-1") {
            let location = CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build();
            create = create.create_bucket_configuration(location);
        }
        create
            .send()
            .await
            .unwrap_or_else(|error| panic!("create bucket {bucket}: {error:?}"));

        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap_or_else(|error| panic!("put object: {error:?}"));

        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|error| panic!("head object: {error:?}"));
        let size = i64::try_from(body.len()).expect("tiny body");
        assert_eq!(head.content_length(), Some(size));

        let listing = s3
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|error| panic!("list objects: {error:?}"));
        let objects: Vec<_> = listing
            .contents()
            .iter()
            .map(|object| (object.key(), object.size()))
            .collect();
        assert_eq!(objects, [(Some(key), Some(size))]);

        s3.delete_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap_or_else(|error| panic!("delete object: {error:?}"));
        s3.delete_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap_or_else(|error| panic!("delete bucket: {error:?}"));
    });
}
