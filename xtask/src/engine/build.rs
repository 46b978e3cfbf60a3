//! The build's verbs: pull the image, start a long-lived build container, run commands in it with
//! streamed output, and keep named cache volumes between builds.

use std::time::Duration;

use bollard::container::LogOutput;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, ExecConfig, HostConfig, Mount, MountType};
use bollard::models::{CreateImageInfo, VolumeCreateRequest};
use bollard::query_parameters::{CreateImageOptionsBuilder, RemoveVolumeOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use super::{remove_container, ContainerGuard, Engine, Error, Result};

/// How often, and how many times, to ask for an exec's exit code after its output has ended: the
/// daemon may close the stream a moment before it records the code.
const EXIT_CODE_POLL: Duration = Duration::from_millis(50);
const EXIT_CODE_POLLS: u32 = 200;

/// One progress message of a pull, as `docker pull` prints it: `status` ("Downloading",
/// "Pull complete", …), the layer `id` it is about, and bytes done/total when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub status: String,
    pub id: Option<String>,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// What a build container looks like; see [`Engine::create_build_container`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildContainerSpec {
    pub image: String,
    /// Environment of the container (and so of every exec), `(NAME, value)`.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// Named volumes (created if missing), `(volume name, container path)`.
    pub volumes: Vec<(String, String)>,
    /// Read-only bind mounts, `(host path, container path)`.
    pub bind_mounts_ro: Vec<(String, String)>,
    /// Container paths given an anonymous volume of their own, removed with the container.
    /// Writes there skip the image's copy-on-write layer, which can be far slower than a volume.
    pub scratch_dirs: Vec<String>,
    /// Container paths held in memory (tmpfs, executable), `(path, size limit in bytes)`. The
    /// archive API cannot see into them, so uploads and downloads there go through `tar` in the
    /// container.
    pub memory_dirs: Vec<(String, u64)>,
    /// Extra labels; [`super::LABEL`] and [`super::SESSION_LABEL`] are always added.
    pub labels: Vec<(String, String)>,
}

/// A command started in a container: its id, output stream and stdin.
pub(super) struct StartedExec {
    pub id: String,
    pub output: std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

fn exec_error(container: &BuildContainer, cause: bollard::errors::Error) -> Error {
    Error::Exec {
        container: container.id.clone(),
        cause,
    }
}

/// The exit code of a command (`exec_id`) whose output has ended.
pub(super) async fn exit_code(docker: &Docker, container_id: &str, exec_id: &str) -> Result<i64> {
    let error = |cause| Error::Exec {
        container: container_id.to_string(),
        cause,
    };
    for _ in 0..EXIT_CODE_POLLS {
        let inspect = docker.inspect_exec(exec_id).await.map_err(error)?;
        match (inspect.running, inspect.exit_code) {
            (Some(true), _) | (_, None) => tokio::time::sleep(EXIT_CODE_POLL).await,
            (_, Some(code)) => return Ok(code),
        }
    }
    Err(error(bollard::errors::Error::DockerStreamError {
        error: "the command's output ended but the daemon reports no exit code".to_string(),
    }))
}

/// A running build container. Dropping it force-removes the container (on a thread of its own);
/// [`BuildContainer::remove`] does the same on the normal path and reports failures.
pub struct BuildContainer {
    id: String,
    docker: Docker,
    guard: ContainerGuard,
    has_memory_dirs: bool,
}

impl BuildContainer {
    /// The container's full id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether files move in and out through the image's `tar`: so in a container with tmpfs
    /// mounts, for every path (one may reach into a tmpfs through `..` or a symlink).
    pub fn transfers_with_tar(&self) -> bool {
        self.has_memory_dirs
    }

    /// Stops (SIGKILL) and removes the container and its anonymous volumes.
    pub async fn remove(mut self) -> Result<()> {
        let result = remove_container(&self.docker, &self.id).await;
        if result.is_ok() {
            self.guard.disarm();
        }
        result
    }

    /// [`BuildContainer::remove`] on a task of its own, so the caller goes on while the daemon
    /// kills the container and deletes its volumes; await the handle before exiting.
    pub fn remove_in_background(self) -> tokio::task::JoinHandle<Result<()>> {
        tokio::spawn(self.remove())
    }
}

impl std::fmt::Debug for BuildContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildContainer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Pulls `image` (a tag defaults to `latest`, as `docker pull` does), handing each progress
    /// message to `progress`.
    pub async fn pull(&self, image: &str, mut progress: impl FnMut(PullProgress)) -> Result<()> {
        let reference = with_default_tag(image);
        let options = CreateImageOptionsBuilder::new()
            .from_image(&reference)
            .build();
        let mut messages = self.docker.create_image(Some(options), None, None);
        while let Some(message) = messages.next().await {
            let message = message.map_err(|cause| Error::Pull {
                image: image.to_string(),
                cause,
            })?;
            progress(pull_progress(message));
        }
        Ok(())
    }

    /// The local id of `image`, pulling it first when it is not present.
    pub async fn ensure_image(
        &self,
        image: &str,
        progress: impl FnMut(PullProgress),
    ) -> Result<String> {
        if let Some(id) = self.image_id(image).await? {
            return Ok(id);
        }
        self.pull(image, progress).await?;
        self.image_id(image)
            .await?
            .ok_or_else(|| Error::NoSuchImage {
                image: image.to_string(),
            })
    }

    /// Creates and starts a container of `spec.image` whose main process only waits (`sleep
    /// infinity`), for [`Engine::exec`] to run the build's commands in. Default network, not
    /// privileged, never the Docker socket; named volumes are created when missing.
    pub async fn create_build_container(
        &self,
        spec: &BuildContainerSpec,
    ) -> Result<BuildContainer> {
        if let Some((host_path, _)) = spec
            .bind_mounts_ro
            .iter()
            .find(|(host_path, _)| host_path.ends_with("docker.sock"))
        {
            return Err(Error::RefusedMount {
                host_path: host_path.clone(),
            });
        }
        for (volume, _) in &spec.volumes {
            self.ensure_volume(volume, &spec.labels).await?;
        }

        let volumes = spec.volumes.iter().map(|(volume, target)| Mount {
            source: Some(volume.clone()),
            target: Some(target.clone()),
            typ: Some(MountType::VOLUME),
            ..Default::default()
        });
        let binds = spec.bind_mounts_ro.iter().map(|(host_path, target)| Mount {
            source: Some(host_path.clone()),
            target: Some(target.clone()),
            typ: Some(MountType::BIND),
            read_only: Some(true),
            ..Default::default()
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: Some(vec!["sleep".to_string(), "infinity".to_string()]),
            cmd: Some(Vec::new()),
            env: Some(env_list(&spec.env)),
            working_dir: spec.working_dir.clone(),
            volumes: Some(spec.scratch_dirs.clone()),
            labels: Some(self.labels(&spec.labels)),
            tty: Some(false),
            host_config: Some(HostConfig {
                mounts: Some(volumes.chain(binds).collect()),
                tmpfs: Some(
                    spec.memory_dirs
                        .iter()
                        .map(|(dir, bytes)| (dir.clone(), format!("exec,mode=755,size={bytes}")))
                        .collect(),
                ),
                privileged: Some(false),
                // A real PID 1 that reaps the build's orphaned processes (`sleep` would not).
                init: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.create_container(body, &spec.image).await?;
        let container = BuildContainer {
            guard: self.guard(&created.id),
            id: created.id,
            docker: self.docker.clone(),
            has_memory_dirs: !spec.memory_dirs.is_empty(),
        };
        self.docker
            .start_container(&container.id, None)
            .await
            .map_err(|cause| Error::Start {
                container: container.id.clone(),
                cause,
            })?;
        Ok(container)
    }

    /// Runs `cmd` in `container` (as `user` when given: a name or uid known to the image; in
    /// `working_dir` when given), hands stdout and stderr chunks to `on_output` as they arrive, and
    /// returns the exit code. `env` adds to the container's environment.
    pub async fn exec(
        &self,
        container: &BuildContainer,
        cmd: &[String],
        env: &[(String, String)],
        user: Option<&str>,
        working_dir: Option<&str>,
        mut on_output: impl FnMut(&[u8]),
    ) -> Result<i64> {
        let started = self
            .start_exec(container, cmd, env, user, working_dir, false)
            .await?;
        let mut output = started.output;
        while let Some(chunk) = output.next().await {
            match chunk.map_err(|cause| exec_error(container, cause))? {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => on_output(&message),
                LogOutput::StdIn { .. } => {}
            }
        }
        exit_code(&self.docker, &container.id, &started.id).await
    }

    /// Starts `cmd` in `container` with its output attached (and its stdin when `stdin`).
    pub(super) async fn start_exec(
        &self,
        container: &BuildContainer,
        cmd: &[String],
        env: &[(String, String)],
        user: Option<&str>,
        working_dir: Option<&str>,
        stdin: bool,
    ) -> Result<StartedExec> {
        let config = ExecConfig {
            attach_stdin: Some(stdin),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.to_vec()),
            env: Some(env_list(env)),
            user: user.map(str::to_string),
            working_dir: working_dir.map(str::to_string),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(&container.id, config)
            .await
            .map_err(|cause| exec_error(container, cause))?;
        let started = self
            .docker
            .start_exec(&exec.id, Some(StartExecOptions::default()))
            .await
            .map_err(|cause| exec_error(container, cause))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(exec_error(
                container,
                bollard::errors::Error::DockerStreamError {
                    error: "the daemon started the command detached".to_string(),
                },
            ));
        };
        Ok(StartedExec {
            id: exec.id,
            output,
            input,
        })
    }

    /// Creates the named volume `name` unless it exists (the daemon treats a second create as a
    /// no-op), labelled like this engine's containers plus `labels`.
    pub async fn ensure_volume(&self, name: &str, labels: &[(String, String)]) -> Result<()> {
        let request = VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(self.labels(labels)),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map(drop)
            .map_err(|cause| Error::CreateVolume {
                volume: name.to_string(),
                cause,
            })
    }

    /// Removes the named volume `name`; one that does not exist counts as removed.
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(())
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(cause) => Err(Error::RemoveVolume {
                volume: name.to_string(),
                cause,
            }),
        }
    }
}

/// `NAME=value` strings, as the API wants them.
fn env_list(env: &[(String, String)]) -> Vec<String> {
    env.iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect()
}

fn pull_progress(message: CreateImageInfo) -> PullProgress {
    let detail = message.progress_detail.unwrap_or_default();
    PullProgress {
        status: message.status.unwrap_or_default(),
        id: message.id,
        current: detail.current.and_then(|bytes| u64::try_from(bytes).ok()),
        total: detail.total.and_then(|bytes| u64::try_from(bytes).ok()),
    }
}

/// `image` with `:latest` appended when it names neither a tag nor a digest: without one, the
/// API's `fromImage` pulls every tag of the repository.
fn with_default_tag(image: &str) -> String {
    let last_component = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last_component.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tag_defaults_to_latest() {
        assert_eq!(with_default_tag("alpine"), "alpine:latest");
        assert_eq!(
            with_default_tag("127.0.0.1:9/nope/nope"),
            "127.0.0.1:9/nope/nope:latest"
        );
        assert_eq!(
            with_default_tag("public.ecr.aws/sam/build-python3.9:latest"),
            "public.ecr.aws/sam/build-python3.9:latest"
        );
        assert_eq!(with_default_tag("a/b@sha256:00"), "a/b@sha256:00");
    }

    #[test]
    fn environment_pairs_become_name_equals_value() {
        let env = vec![("A".to_string(), "1=2".to_string())];
        assert_eq!(env_list(&env), vec!["A=1=2".to_string()]);
    }
}
