//! The only module that talks to Docker: a small facade over bollard whose methods are verbs.
//!
//! Everything else in the crate goes through [`Engine`]; bollard's types and errors stay in here.
//! Containers this module creates carry the label [`LABEL`]`=1`, so leftovers can be found with
//! `docker ps -a --filter label=xtask.layer-tools=1`, and [`SESSION_LABEL`] naming the [`Engine`]
//! that made them. They are removed both explicitly and, should the caller bail out early (an
//! error, a panic, a cancelled future), by a guard's `Drop`. A Ctrl-C ends the process without
//! running `Drop`: a signal handler calls [`Engine::remove_session_containers`] instead.
//!
//! Parts: `image` (inspect, pull), `container` (long-lived work containers and volumes), `exec`
//! (commands in them) and `transfer` (tar upload, streaming tar download).

mod container;
mod error;
mod exec;
mod image;
mod transfer;

pub use container::{ContainerSpec, Volume, WorkContainer};
pub use error::{Cause, Error};
pub use exec::{Exec, Output, Stream, OUTPUT_LIMIT};
pub use image::{LocalImage, PullProgress};
pub use transfer::{tar_of_files, TarReader};

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::query_parameters::{ListContainersOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::{ClientVersion, Docker};

/// The label put on every container this module creates (with the value `1`).
pub const LABEL: &str = "xtask.layer-tools";
/// The label naming the [`Engine`] (process and connection) that created a container.
pub const SESSION_LABEL: &str = "xtask.layer-tools.session";

/// Where the daemon listens when `DOCKER_HOST` is unset (bollard's default, which it keeps private).
#[cfg(unix)]
const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
#[cfg(windows)]
const DEFAULT_DOCKER_HOST: &str = "npipe:////./pipe/docker_engine";

/// How long connecting may take before the daemon counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Per-request timeout afterwards (until the response headers arrive, not for a whole stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A connection to a Docker (or Podman) daemon. A clone shares the connection and the session.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    /// The daemon address, kept to open a separate connection for cleanup in `Drop`.
    host: String,
    /// The value of [`SESSION_LABEL`] on this engine's containers, unique per connection.
    session: String,
}

impl Engine {
    /// Connects to the daemon named by `DOCKER_HOST` (unix socket or tcp; the platform default when
    /// unset), checks that it answers, and lowers the API version to what the daemon speaks.
    pub async fn connect() -> Result<Engine> {
        let docker_host = std::env::var("DOCKER_HOST")
            .ok()
            .filter(|host| !host.is_empty());
        let host = docker_host
            .clone()
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string());
        let connect_error = |cause: bollard::errors::Error| Error::Connect {
            host: host.clone(),
            docker_host: docker_host.clone(),
            cause: cause.into(),
        };

        let docker = Docker::connect_with_host(&host)
            .map_err(connect_error)?
            .with_timeout(CONNECT_TIMEOUT);
        let docker = match docker.negotiate_version().await {
            Ok(docker) => docker,
            // bollard 0.21 sends unversioned paths, which every daemon answers. Should it start to
            // prefix its own (newer) version, an older daemon refuses that and names its maximum.
            Err(cause) => match max_api_version(&cause) {
                Some(version) => connect_with_version(&host, &version)
                    .map_err(connect_error)?
                    .with_timeout(CONNECT_TIMEOUT),
                None => return Err(connect_error(cause)),
            },
        };
        docker.ping().await.map_err(connect_error)?;
        Ok(Engine {
            docker: docker.with_timeout(REQUEST_TIMEOUT),
            host,
            session: new_session_id(),
        })
    }

    /// Whether the daemon runs on this machine (a Unix socket or a named pipe), so it can bind-mount
    /// host paths; a remote daemon (tcp://, ssh://) needs uploads instead.
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://") || self.host.starts_with("npipe://")
    }

    /// The API version in use after negotiation, e.g. `1.41`.
    pub fn api_version(&self) -> String {
        let version = self.docker.client_version();
        format!("{}.{}", version.major_version, version.minor_version)
    }

    /// Ids of the containers (running or not) this engine created that still exist; empty unless
    /// a run is in progress or a clean-up failed.
    pub async fn session_containers(&self) -> Result<Vec<String>> {
        self.containers_labelled(&format!("{SESSION_LABEL}={}", self.session))
            .await
    }

    /// Ids of this tool's containers (any session) that also carry `label` (`name=value`).
    pub async fn containers_labelled(&self, label: &str) -> Result<Vec<String>> {
        let labels = vec![format!("{LABEL}=1"), label.to_string()];
        let filters = HashMap::from([("label", labels)]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let containers = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|cause| Error::List {
                cause: cause.into(),
            })?;
        Ok(containers
            .into_iter()
            .filter_map(|container| container.id)
            .collect())
    }

    /// Removes every container this engine created that still exists (running or not) and returns
    /// how many there were: what a Ctrl-C handler calls, since a signal skips the guards' `Drop`.
    pub async fn remove_session_containers(&self) -> Result<usize> {
        let containers = self.session_containers().await?;
        let mut first_error = None;
        for container in &containers {
            if let Err(error) = self.remove(container).await {
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(containers.len()),
        }
    }

    /// The memory of the machine the daemon runs on (Docker Desktop's VM, say), when it tells.
    pub async fn memory_bytes(&self) -> Option<u64> {
        let info = self.docker.info().await.ok()?;
        info.mem_total.and_then(|bytes| u64::try_from(bytes).ok())
    }

    /// The machine the daemon runs on (`uname -m`: `x86_64`, `aarch64`), when it tells.
    pub async fn daemon_architecture(&self) -> Option<String> {
        let info = self.docker.info().await.ok()?;
        info.architecture.filter(|arch| !arch.is_empty())
    }

    /// The labels every container and volume this engine creates carries, plus `extra`.
    fn labels(&self, extra: &[(String, String)]) -> HashMap<String, String> {
        let mut labels: HashMap<String, String> = extra.iter().cloned().collect();
        labels.insert(LABEL.to_string(), "1".to_string());
        labels.insert(SESSION_LABEL.to_string(), self.session.clone());
        labels
    }

    /// A guard that removes `container` when dropped (until disarmed).
    fn guard(&self, container: &str) -> ContainerGuard {
        ContainerGuard {
            host: self.host.clone(),
            version: self.docker.client_version(),
            id: Some(container.to_string()),
        }
    }

    /// Removes a container, stopping it first if it still runs.
    pub async fn remove(&self, container: &str) -> Result<()> {
        remove_container(&self.docker, container).await
    }
}

async fn remove_container(docker: &Docker, container: &str) -> Result<()> {
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(container, Some(options)).await {
        Ok(()) => Ok(()),
        // Already gone (or being removed): nothing is left behind.
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404 | 409,
            ..
        }) => Ok(()),
        Err(cause) => Err(Error::Remove {
            container: container.to_string(),
            cause: cause.into(),
        }),
    }
}

/// Removes its container when dropped while still armed: on an early return, a panic or a cancelled
/// future. The removal runs on its own thread, runtime and connection, so it works from any context
/// (inside or outside a Tokio runtime of either flavour) and never reuses a connection whose driver
/// task lives on a runtime that is blocked or shutting down.
struct ContainerGuard {
    host: String,
    version: ClientVersion,
    id: Option<String>,
}

impl ContainerGuard {
    fn disarm(&mut self) {
        self.id = None;
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let (host, version) = (self.host.clone(), self.version);
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let result = match runtime {
                Ok(runtime) => runtime.block_on(async {
                    let docker = connect_with_version(&host, &version)
                        .map_err(|cause| Error::Remove {
                            container: id.clone(),
                            cause: cause.into(),
                        })?
                        .with_timeout(REQUEST_TIMEOUT);
                    remove_container(&docker, &id).await
                }),
                Err(error) => {
                    eprintln!("warning: cannot clean up container {}: {error}", short(&id));
                    return;
                }
            };
            if let Err(error) = result {
                eprintln!("warning: {error} (find leftovers with `docker ps -a --filter label={LABEL}=1`)");
            }
        });
        if cleanup.join().is_err() {
            eprintln!("warning: the container clean-up thread panicked");
        }
    }
}

/// A value for [`SESSION_LABEL`]: the process id, the time and a counter for engines in one process.
fn new_session_id() -> String {
    static ENGINES: AtomicU64 = AtomicU64::new(0);
    let engine = ENGINES.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    format!("{}-{nanos}-{engine}", std::process::id())
}

/// Connects to `host` speaking API `version` (what `Docker::connect_with_host` does with its own).
fn connect_with_version(
    host: &str,
    version: &ClientVersion,
) -> Result<Docker, bollard::errors::Error> {
    let timeout = REQUEST_TIMEOUT.as_secs();
    if host.starts_with("tcp://") || host.starts_with("http://") {
        Docker::connect_with_http(host, timeout, version)
    } else {
        Docker::connect_with_local(host, timeout, version)
    }
}

/// The daemon's maximum API version from its refusal of a newer client: "client version 1.53 is
/// too new. Maximum supported API version is 1.41".
fn max_api_version(error: &bollard::errors::Error) -> Option<ClientVersion> {
    let bollard::errors::Error::DockerResponseServerError {
        status_code: 400,
        message,
    } = error
    else {
        return None;
    };
    let (_, rest) = message.split_once("Maximum supported API version is ")?;
    let version: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let (major, minor) = version.split_once('.')?;
    Some(ClientVersion {
        major_version: major.parse().ok()?,
        minor_version: minor.parse().ok()?,
    })
}

/// `NAME=value` strings, as the API wants them.
fn env_list(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

/// The 12-character short form of a container id, as `docker ps` shows it.
fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_error(status_code: u16, message: &str) -> bollard::errors::Error {
        bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        }
    }

    #[test]
    fn the_maximum_version_is_read_from_a_refusal() {
        let refusal = server_error(
            400,
            "client version 1.53 is too new. Maximum supported API version is 1.41",
        );
        let version = max_api_version(&refusal).map(|v| (v.major_version, v.minor_version));
        assert_eq!(version, Some((1, 41)));
        assert!(
            max_api_version(&server_error(500, "Maximum supported API version is 1.41")).is_none()
        );
        assert!(max_api_version(&server_error(400, "something else")).is_none());
    }

    #[test]
    fn ids_are_shortened_like_docker_ps_does() {
        assert_eq!(short("0123456789abcdef0123"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }

    #[test]
    fn environment_pairs_become_name_equals_value() {
        let env = vec![("A".to_string(), "1=2".to_string())];
        assert_eq!(env_list(&env), vec!["A=1=2".to_string()]);
    }
}
