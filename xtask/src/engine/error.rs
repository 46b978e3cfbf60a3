//! [`Error`]: one variant per operation of the Docker facade, each a one-line message that says
//! what failed, on which object, why, and what to do about it.

use std::fmt;

use super::{describe, short};

/// One variant per operation: the message says what failed, on which object, and why.
///
/// The cause is part of the message (a single line for the user), so `source()` is left empty.
#[derive(Debug)]
pub enum Error {
    Connect {
        host: String,
        docker_host: Option<String>,
        cause: bollard::errors::Error,
    },
    InspectImage {
        image: String,
        cause: bollard::errors::Error,
    },
    NoSuchImage {
        image: String,
    },
    Create {
        image: String,
        cause: bollard::errors::Error,
    },
    Start {
        container: String,
        cause: bollard::errors::Error,
    },
    Logs {
        container: String,
        cause: bollard::errors::Error,
    },
    Wait {
        container: String,
        cause: bollard::errors::Error,
    },
    Remove {
        container: String,
        cause: bollard::errors::Error,
    },
    List {
        cause: bollard::errors::Error,
    },
    Pull {
        image: String,
        cause: bollard::errors::Error,
    },
    /// A host path that must never be mounted into a build container (the Docker socket).
    RefusedMount {
        host_path: String,
    },
    Exec {
        container: String,
        cause: bollard::errors::Error,
    },
    Upload {
        container: String,
        dest_dir: String,
        cause: bollard::errors::Error,
    },
    Download {
        container: String,
        path: String,
        cause: bollard::errors::Error,
    },
    NoSuchPath {
        container: String,
        path: String,
    },
    CreateVolume {
        volume: String,
        cause: bollard::errors::Error,
    },
    RemoveVolume {
        volume: String,
        cause: bollard::errors::Error,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { host, docker_host, cause } => write!(
                f,
                "cannot reach the Docker daemon at {host}: {} — is dockerd running? (DOCKER_HOST={})",
                describe(cause),
                docker_host.as_deref().unwrap_or("unset"),
            ),
            Error::InspectImage { image, cause } => {
                write!(f, "failed to inspect image {image}: {}", describe(cause))
            }
            Error::NoSuchImage { image } => write!(
                f,
                "image {image} is not present locally: pull it, or build the offline stand-in with scripts/standin-image.sh"
            ),
            Error::Create { image, cause } => {
                write!(f, "failed to create a container from {image}: {}", describe(cause))
            }
            Error::Start { container, cause } => {
                write!(f, "failed to start container {}: {}", short(container), describe(cause))
            }
            Error::Logs { container, cause } => {
                write!(f, "failed to read the output of container {}: {}", short(container), describe(cause))
            }
            Error::Wait { container, cause } => {
                write!(f, "failed to wait for container {}: {}", short(container), describe(cause))
            }
            Error::Remove { container, cause } => {
                write!(f, "failed to remove container {}: {}", short(container), describe(cause))
            }
            Error::List { cause } => write!(f, "failed to list containers: {}", describe(cause)),
            Error::Pull { image, cause } => write!(
                f,
                "cannot pull image {image}: {} — without a reachable registry, build the offline stand-in with `bash scripts/standin-image.sh` and set LAYER_BUILD_IMAGE to it",
                describe(cause)
            ),
            Error::RefusedMount { host_path } => write!(
                f,
                "refusing to mount {host_path} into a build container: builds never get the Docker socket"
            ),
            Error::Exec { container, cause } => {
                write!(f, "failed to run a command in container {}: {}", short(container), describe(cause))
            }
            Error::Upload { container, dest_dir, cause } => write!(
                f,
                "failed to upload files to {dest_dir} in container {}: {}",
                short(container),
                describe(cause)
            ),
            Error::Download { container, path, cause } => write!(
                f,
                "failed to download {path} from container {}: {}",
                short(container),
                describe(cause)
            ),
            Error::NoSuchPath { container, path } => write!(
                f,
                "{path} does not exist in container {}: check the artifact paths in buildspec.yml",
                short(container)
            ),
            Error::CreateVolume { volume, cause } => {
                write!(f, "failed to create volume {volume}: {}", describe(cause))
            }
            Error::RemoveVolume { volume, cause } => write!(
                f,
                "failed to remove volume {volume}: {} (is a container still using it? `docker volume rm {volume}`)",
                describe(cause)
            ),
        }
    }
}

impl std::error::Error for Error {}
