//! [`Error`]: one variant per operation of the Docker facade, each a one-line message that says
//! what failed, on which object, why ([`Cause`]), and what to do about it.

use std::fmt;

use super::short;

/// Why an operation failed: the daemon said so, a command in the container failed, or something
/// else that is said in words. Nothing here is invented: a failed `tar` is an exit status, not an
/// HTTP error.
#[derive(Debug)]
pub enum Cause {
    /// The daemon refused the request, or the connection to it broke.
    Daemon(bollard::errors::Error),
    /// `command` in the container exited with `code`; `output` is the end of what it printed.
    Exit {
        command: String,
        code: i64,
        output: String,
    },
    /// Anything else.
    Message(String),
}

impl Cause {
    pub fn message(text: impl Into<String>) -> Cause {
        Cause::Message(text.into())
    }

    /// The daemon's HTTP status, when the daemon answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Cause::Daemon(bollard::errors::Error::DockerResponseServerError {
                status_code,
                ..
            }) => Some(*status_code),
            _ => None,
        }
    }
}

impl From<bollard::errors::Error> for Cause {
    fn from(error: bollard::errors::Error) -> Cause {
        Cause::Daemon(error)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Daemon(error) => f.write_str(&describe(error)),
            Cause::Exit {
                command,
                code,
                output,
            } if output.trim().is_empty() => write!(f, "`{command}` exited with status {code}"),
            Cause::Exit {
                command,
                code,
                output,
            } => write!(
                f,
                "`{command}` exited with status {code}: {}",
                one_line(output)
            ),
            Cause::Message(text) => f.write_str(&one_line(text)),
        }
    }
}

/// One variant per operation: the message says what failed, on which object, and why.
///
/// The cause is part of the message (a single line for the user), so `source()` is left empty.
#[derive(Debug)]
pub enum Error {
    Connect {
        host: String,
        docker_host: Option<String>,
        cause: Cause,
    },
    InspectImage {
        image: String,
        cause: Cause,
    },
    NoSuchImage {
        image: String,
    },
    Create {
        image: String,
        cause: Cause,
    },
    Start {
        container: String,
        cause: Cause,
    },
    Remove {
        container: String,
        cause: Cause,
    },
    List {
        cause: Cause,
    },
    Pull {
        image: String,
        cause: Cause,
    },
    /// A host path that must never be mounted into a container (the Docker socket).
    RefusedMount {
        host_path: String,
    },
    /// A command could not be run, or (for the checked forms) ran and failed.
    Exec {
        container: String,
        command: String,
        cause: Cause,
    },
    Upload {
        container: String,
        dest_dir: String,
        cause: Cause,
    },
    Download {
        container: String,
        path: String,
        cause: Cause,
    },
    NoSuchPath {
        container: String,
        path: String,
    },
    /// The image lacks a program a transfer needs (`tar` for in-memory directories).
    MissingTool {
        container: String,
        tool: &'static str,
        hint: &'static str,
    },
    CreateVolume {
        volume: String,
        cause: Cause,
    },
    RemoveVolume {
        volume: String,
        cause: Cause,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Connect { host, docker_host, cause } => write!(
                f,
                "cannot reach the Docker daemon at {host}: {cause} — is dockerd running? (DOCKER_HOST={})",
                docker_host.as_deref().unwrap_or("unset"),
            ),
            Error::InspectImage { image, cause } => {
                write!(f, "failed to inspect image {image}: {cause}")
            }
            Error::NoSuchImage { image } => write!(
                f,
                "image {image} is not present locally: pull it, or build an offline stand-in (for python 3.9, 3.11 or 3.13 on x86_64 or arm64) with `bash scripts/standin-image.sh --python 3.X --arch ARCH`"
            ),
            Error::Create { image, cause } => {
                write!(f, "failed to create a container from {image}: {cause}")
            }
            Error::Start { container, cause } => {
                write!(f, "failed to start container {}: {cause}", short(container))
            }
            Error::Remove { container, cause } => {
                write!(f, "failed to remove container {}: {cause}", short(container))
            }
            Error::List { cause } => write!(f, "failed to list containers: {cause}"),
            Error::Pull { image, cause } => write!(
                f,
                "cannot pull image {image}: {cause} — without a reachable registry, build an offline stand-in (python 3.9, 3.11 or 3.13; x86_64 or arm64) with `bash scripts/standin-image.sh --python 3.X --arch ARCH` and pass it with --image (or LAYER_BUILD_IMAGE)"
            ),
            Error::RefusedMount { host_path } => write!(
                f,
                "refusing to mount {host_path} into a container: builds never get the Docker socket"
            ),
            Error::Exec { container, cause: cause @ Cause::Exit { .. }, .. } => {
                write!(f, "in container {}: {cause}", short(container))
            }
            Error::Exec { container, command, cause } => write!(
                f,
                "`{command}` in container {} failed: {cause}",
                short(container)
            ),
            Error::Upload { container, dest_dir, cause } => write!(
                f,
                "failed to upload files to {dest_dir} in container {}: {cause}",
                short(container)
            ),
            Error::Download { container, path, cause } => write!(
                f,
                "failed to download {path} from container {}: {cause}",
                short(container)
            ),
            Error::NoSuchPath { container, path } => write!(
                f,
                "{path} does not exist in container {}: check the artifact paths in buildspec.yml",
                short(container)
            ),
            Error::MissingTool { container, tool, hint } => write!(
                f,
                "the image of container {} has no `{tool}`: {hint}",
                short(container)
            ),
            Error::CreateVolume { volume, cause } => {
                write!(f, "failed to create volume {volume}: {cause}")
            }
            Error::RemoveVolume { volume, cause } => write!(
                f,
                "failed to remove volume {volume}: {cause} (is a container still using it? `docker volume rm {volume}`)"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// A bollard error and its causes on one line ("client error (Connect): No such file or directory").
fn describe(error: &bollard::errors::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    one_line(&message)
}

/// One line for the user, whatever a daemon or a command put in its message (at most 400
/// characters, the end kept: that is where the error usually is).
fn one_line(text: &str) -> String {
    const MAX_CHARS: usize = 400;
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = joined.chars().count();
    if count <= MAX_CHARS {
        return joined;
    }
    let tail: String = joined.chars().skip(count - MAX_CHARS).collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_one_line_and_bounded() {
        let exit = Cause::Exit {
            command: "tar -x".into(),
            code: 2,
            output: "tar: x: Cannot open\n  more\n".into(),
        };
        assert_eq!(
            exit.to_string(),
            "`tar -x` exited with status 2: tar: x: Cannot open more"
        );
        let quiet = Cause::Exit {
            command: "true".into(),
            code: 1,
            output: " \n".into(),
        };
        assert_eq!(quiet.to_string(), "`true` exited with status 1");
        let long = Cause::message("x".repeat(1000) + " end");
        assert!(long.to_string().ends_with(" end") && long.to_string().chars().count() <= 401);
    }
}
