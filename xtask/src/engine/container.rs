//! Long-lived work containers: created from a [`ContainerSpec`], their main process only waits, and
//! [`super::Exec`] runs the real work in them (a build's phases, an import test). Plus the named
//! volumes that outlive them, and a look into an image without running it.

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType, VolumeCreateRequest};
use bollard::query_parameters::{ContainerArchiveInfoOptionsBuilder, RemoveVolumeOptionsBuilder};
use bollard::Docker;

use super::{remove_container, ContainerGuard, Engine, Error, Result};

/// The main process of every container this module creates: it waits, so the image's own
/// `ENTRYPOINT`/`CMD` (a shell, a service, or none at all) never matters.
const WAIT_FOREVER: [&str; 2] = ["sleep", "infinity"];

/// What a work container looks like; see [`Engine::start_work_container`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub image: String,
    /// Environment of the container (and so of every exec), `(NAME, value)`. Visible in the
    /// container's inspect data: never secrets (give those to one [`super::Exec`]).
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
    /// No network at all (`none`), for containers that have nothing to fetch: nothing they run
    /// can reach out, and the daemon tears them down in half the time.
    pub offline: bool,
}

/// A named volume and what it is labelled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub labels: std::collections::HashMap<String, String>,
    /// RFC 3339, as the daemon reports it.
    pub created_at: String,
}

/// A running work container. Dropping it force-removes the container (on a thread of its own);
/// [`WorkContainer::remove`] does the same on the normal path and reports failures.
pub struct WorkContainer {
    id: String,
    docker: Docker,
    guard: ContainerGuard,
    has_memory_dirs: bool,
}

impl WorkContainer {
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

    /// [`WorkContainer::remove`] on a task of its own, so the caller goes on while the daemon
    /// kills the container and deletes its volumes; await the handle before exiting.
    pub fn remove_in_background(self) -> tokio::task::JoinHandle<Result<()>> {
        tokio::spawn(self.remove())
    }
}

impl std::fmt::Debug for WorkContainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkContainer")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Creates and starts a container of `spec.image` whose main process only waits, for
    /// [`Engine::exec`] to run commands in. Default network, not privileged, never the Docker
    /// socket; named volumes are created when missing.
    pub async fn start_work_container(&self, spec: &ContainerSpec) -> Result<WorkContainer> {
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
        let body = ContainerCreateBody {
            env: Some(super::env_list(&spec.env)),
            working_dir: spec.working_dir.clone(),
            volumes: Some(spec.scratch_dirs.clone()),
            labels: Some(self.labels(&spec.labels)),
            host_config: Some(host_config(spec)),
            ..self.waiting_container(&spec.image)
        };
        let created = self.create_container(body, &spec.image).await?;
        let container = WorkContainer {
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
                cause: cause.into(),
            })?;
        Ok(container)
    }

    /// The create request of a container of `image` that runs [`WAIT_FOREVER`].
    fn waiting_container(&self, image: &str) -> ContainerCreateBody {
        ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(WAIT_FOREVER.map(str::to_string).to_vec()),
            cmd: Some(Vec::new()),
            labels: Some(self.labels(&[])),
            tty: Some(false),
            ..Default::default()
        }
    }

    /// Creates a container, turning the daemon's 404 into [`Error::NoSuchImage`].
    async fn create_container(
        &self,
        body: ContainerCreateBody,
        image: &str,
    ) -> Result<bollard::models::ContainerCreateResponse> {
        match self.docker.create_container(None, body).await {
            Ok(created) => Ok(created),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Err(Error::NoSuchImage {
                image: image.to_string(),
            }),
            Err(cause) => Err(Error::Create {
                image: image.to_string(),
                cause: cause.into(),
            }),
        }
    }

    /// Which of `paths` exist in `image` (checked in a container that is created, never started,
    /// and removed). A path the image has must not be hidden under an empty tmpfs.
    pub async fn paths_in_image(&self, image: &str, paths: &[String]) -> Result<Vec<bool>> {
        let created = self
            .create_container(self.waiting_container(image), image)
            .await?;
        let mut guard = self.guard(&created.id);
        let mut found = Vec::with_capacity(paths.len());
        for path in paths {
            let options = ContainerArchiveInfoOptionsBuilder::new().path(path).build();
            let stat = self
                .docker
                .get_container_archive_info(&created.id, Some(options))
                .await;
            found.push(stat.is_ok());
        }
        if remove_container(&self.docker, &created.id).await.is_ok() {
            guard.disarm();
        }
        Ok(found)
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
                cause: cause.into(),
            })
    }

    /// This tool's volumes that carry every label of `labels` (`name=value`), newest first.
    pub async fn volumes_labelled(&self, labels: &[String]) -> Result<Vec<Volume>> {
        let mut wanted = vec![format!("{}=1", super::LABEL)];
        wanted.extend(labels.iter().cloned());
        let filters = std::collections::HashMap::from([("label", wanted)]);
        let options = bollard::query_parameters::ListVolumesOptionsBuilder::new()
            .filters(&filters)
            .build();
        let listed = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|cause| Error::List {
                cause: cause.into(),
            })?;
        let mut volumes: Vec<Volume> = listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| Volume {
                name: v.name,
                labels: v.labels,
                created_at: v.created_at.unwrap_or_default(),
            })
            .collect();
        volumes.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(volumes)
    }

    /// Whether the named volume `name` exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(cause) => Err(Error::CreateVolume {
                volume: name.to_string(),
                cause: cause.into(),
            }),
        }
    }

    /// Copies everything in volume `from` into volume `to` (created when missing), in a
    /// container of `image` (its `cp`).
    pub async fn copy_volume(&self, image: &str, from: &str, to: &str) -> Result<()> {
        let spec = ContainerSpec {
            image: image.to_string(),
            volumes: vec![
                (from.to_string(), "/xtask-from".to_string()),
                (to.to_string(), "/xtask-to".to_string()),
            ],
            offline: true,
            ..ContainerSpec::default()
        };
        let container = self.start_work_container(&spec).await?;
        let copy = super::Exec::new(["cp", "-a", "/xtask-from/.", "/xtask-to/"]).root();
        let copied = self.exec_checked(&container, &copy).await;
        let removed = container.remove().await;
        copied.and(removed)
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
                cause: cause.into(),
            }),
        }
    }
}

/// Mounts, tmpfs and the init process of a work container.
fn host_config(spec: &ContainerSpec) -> HostConfig {
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
    HostConfig {
        mounts: Some(volumes.chain(binds).collect()),
        tmpfs: Some(
            spec.memory_dirs
                .iter()
                .map(|(dir, bytes)| (dir.clone(), format!("exec,mode=755,size={bytes}")))
                .collect(),
        ),
        privileged: Some(false),
        network_mode: spec.offline.then(|| "none".to_string()),
        // A real PID 1 that reaps the build's orphaned processes (`sleep` would not).
        init: Some(true),
        ..Default::default()
    }
}
