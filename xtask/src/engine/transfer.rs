//! Files in and out of a build container as tar streams: upload a tar into a directory, download
//! a path as a tar that a blocking [`std::io::Read`] streams. Through Docker's archive API, or,
//! for a container with in-memory directories (which that API cannot see), the image's `tar`.

use std::io::Read;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    ContainerArchiveInfoOptionsBuilder, DownloadFromContainerOptionsBuilder,
    UploadToContainerOptions, UploadToContainerOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::build::exit_code;
use super::{remove_container, BuildContainer, Engine, Error, Result};

/// An upload returns when the daemon has unpacked the whole tar, so it may take longer than the
/// usual per-request timeout.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Downloaded chunks buffered ahead of the reader (each up to the daemon's chunk size, ~32 KiB).
const DOWNLOAD_CHUNKS_AHEAD: usize = 16;
/// The exit code of the transfer scripts when the image has no `tar`, and what it means.
const NO_TAR: i64 = 69;
const HAS_TAR: &str = "command -v tar >/dev/null || exit 69;";
const NO_TAR_MESSAGE: &str = "the image has no `tar`, which an in-memory source tree needs \
                              (build-layer --scratch-on-disk keeps it on a volume)";

impl Engine {
    /// Unpacks the tar archive `tar` into `dest_dir` of `container`, creating `dest_dir` first.
    pub async fn upload(
        &self,
        container: &BuildContainer,
        dest_dir: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        if container.transfers_with_tar() {
            return self.upload_with_tar(container, dest_dir, tar).await;
        }
        let options = self.prepare_upload(container, dest_dir).await?;
        self.upload_client()
            .upload_to_container(
                container.id(),
                Some(options),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|cause| upload_error(container, dest_dir, cause))
    }

    /// [`Engine::upload`] through the container's own `tar` (the archive API cannot see into
    /// tmpfs mounts): it unpacks the archive from stdin, as root; files owned by root, modes kept,
    /// as the archive API does.
    async fn upload_with_tar(
        &self,
        container: &BuildContainer,
        dest_dir: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        let script = format!(r#"{HAS_TAR} mkdir -p -- "$1" && exec tar -x -o -f - -C "$1""#);
        let cmd = ["sh", "-c", &script, "sh", dest_dir].map(str::to_string);
        let started = self
            .start_exec(container, &cmd, &[], Some("0"), None, true)
            .await?;
        let (mut input, mut output) = (started.input, started.output);
        // `input` moves in, so it is closed (end of file for `tar`) even when a write fails.
        let send = async move {
            input.write_all(&tar).await?;
            input.shutdown().await
        };
        let mut messages = Vec::new();
        let receive = async {
            while let Some(Ok(chunk)) = output.next().await {
                messages.extend_from_slice(&chunk.into_bytes());
            }
        };
        let transfer = async { tokio::join!(send, receive).0 };
        let sent = tokio::time::timeout(UPLOAD_TIMEOUT, transfer)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
        let code = exit_code(&self.docker, container.id(), &started.id).await?;
        if code == 0 && sent.is_ok() {
            return Ok(());
        }
        let error = match sent {
            Err(e) if code == 0 => format!("the archive could not be sent: {e}"),
            _ if code == NO_TAR => NO_TAR_MESSAGE.to_string(),
            _ => format!(
                "`tar -x` in the container exited with {code}: {}",
                String::from_utf8_lossy(&messages).trim()
            ),
        };
        Err(upload_error(
            container,
            dest_dir,
            bollard::errors::Error::DockerStreamError { error },
        ))
    }

    /// The client for uploads: this one with a longer timeout.
    fn upload_client(&self) -> bollard::Docker {
        self.docker.clone().with_timeout(UPLOAD_TIMEOUT)
    }

    /// Creates `dest_dir` in `container` (as root) and returns the options to upload into it.
    async fn prepare_upload(
        &self,
        container: &BuildContainer,
        dest_dir: &str,
    ) -> Result<UploadToContainerOptions> {
        let mkdir = ["mkdir", "-p", "--", dest_dir].map(str::to_string);
        let mut output = Vec::new();
        let code = self
            .exec(container, &mkdir, &[], Some("0"), None, |chunk| {
                output.extend_from_slice(chunk)
            })
            .await?;
        if code != 0 {
            return Err(upload_error(
                container,
                dest_dir,
                bollard::errors::Error::DockerStreamError {
                    error: format!(
                        "`mkdir -p` exited with {code}: {}",
                        String::from_utf8_lossy(&output).trim()
                    ),
                },
            ));
        }

        Ok(UploadToContainerOptionsBuilder::new()
            .path(dest_dir)
            .build())
    }

    /// The file or directory `path` of `container` as a tar archive (entries named after the
    /// last component of `path`), streamed: read it on a blocking thread (`spawn_blocking`), for
    /// example with `tar::Archive::new(reader)`. A missing `path` is [`Error::NoSuchPath`].
    pub async fn download(&self, container: &BuildContainer, path: &str) -> Result<TarReader> {
        let (sender, mut receiver) = mpsc::channel(DOWNLOAD_CHUNKS_AHEAD);
        if container.transfers_with_tar() {
            self.download_with_tar(container, path, sender).await?;
        } else {
            let docker = self.docker.clone();
            let (id, source) = (container.id().to_string(), path.to_string());
            tokio::spawn(async move {
                let options = DownloadFromContainerOptionsBuilder::new()
                    .path(&source)
                    .build();
                let mut chunks = docker.download_from_container(&id, Some(options));
                while let Some(chunk) = chunks.next().await {
                    let failed = chunk.is_err();
                    // The reader was dropped: stop downloading.
                    if sender.send(chunk.map(Vec::from)).await.is_err() || failed {
                        break;
                    }
                }
            });
        }

        let download_error = |cause| Error::Download {
            container: container.id().to_string(),
            path: path.to_string(),
            cause,
        };
        let first = match receiver.recv().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404,
                ..
            })) => {
                return Err(Error::NoSuchPath {
                    container: container.id().to_string(),
                    path: path.to_string(),
                })
            }
            Some(Err(cause)) => return Err(download_error(cause)),
            None => Vec::new(),
        };
        Ok(TarReader {
            chunks: receiver,
            current: first,
            position: 0,
            container: container.id().to_string(),
            path: path.to_string(),
        })
    }
}

impl Engine {
    /// Which of `paths` exist in `image` (checked in a container that is created, never started,
    /// and removed). A path the image has must not be hidden under an empty tmpfs.
    pub async fn paths_in_image(&self, image: &str, paths: &[String]) -> Result<Vec<bool>> {
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.to_string()),
            labels: Some(self.labels(&[])),
            ..Default::default()
        };
        let created = self.create_container(body, image).await?;
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

    /// [`Engine::download`] from an in-memory directory: the container's own `tar` writes the
    /// archive to stdout, named as the archive API names entries (`dir/.` gives the contents of
    /// `dir`, anything else is named after its last component). Chunks go to `sender`; a missing
    /// path, a failed `tar` or a broken stream ends it with an error, as the archive API would.
    async fn download_with_tar(
        &self,
        container: &BuildContainer,
        path: &str,
        sender: mpsc::Sender<Result<Vec<u8>, bollard::errors::Error>>,
    ) -> Result<()> {
        let (dir, name) = match path.strip_suffix("/.") {
            Some(dir) => (dir, "."),
            None => path.rsplit_once('/').unwrap_or((".", path)),
        };
        let dir = if dir.is_empty() { "/" } else { dir };
        let script = format!(
            r#"{HAS_TAR} cd -- "$1" 2>/dev/null && test -e "$2" || exit 66; exec tar -c -f - -- "$2""#
        );
        let cmd = ["sh", "-c", &script, "sh", dir, name].map(str::to_string);
        let started = self
            .start_exec(container, &cmd, &[], Some("0"), None, false)
            .await?;
        let (docker, container_id) = (self.docker.clone(), container.id().to_string());
        tokio::spawn(async move {
            let mut output = started.output;
            let mut messages = Vec::new();
            while let Some(chunk) = output.next().await {
                let chunk = match chunk {
                    Ok(LogOutput::StdOut { message }) => message,
                    Ok(other) => {
                        messages.extend_from_slice(&other.into_bytes());
                        continue;
                    }
                    Err(cause) => {
                        let _ = sender.send(Err(cause)).await;
                        return;
                    }
                };
                // The reader was dropped: stop downloading.
                if sender.send(Ok(chunk.to_vec())).await.is_err() {
                    return;
                }
            }
            let failure = match exit_code(&docker, &container_id, &started.id).await {
                Ok(0) => return,
                Ok(NO_TAR) => bollard::errors::Error::DockerStreamError {
                    error: NO_TAR_MESSAGE.to_string(),
                },
                Ok(66) => bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    message: "no such file or directory".to_string(),
                },
                Ok(code) => bollard::errors::Error::DockerStreamError {
                    error: format!(
                        "`tar -c` in the container exited with {code}: {}",
                        String::from_utf8_lossy(&messages).trim()
                    ),
                },
                Err(e) => bollard::errors::Error::DockerStreamError {
                    error: e.to_string(),
                },
            };
            let _ = sender.send(Err(failure)).await;
        });
        Ok(())
    }
}

fn upload_error(
    container: &BuildContainer,
    dest_dir: &str,
    cause: bollard::errors::Error,
) -> Error {
    Error::Upload {
        container: container.id().to_string(),
        dest_dir: dest_dir.to_string(),
        cause,
    }
}

/// A blocking reader of a tar archive that is still being downloaded. Reading blocks the thread
/// until the next chunk arrives, so use it on a blocking thread, never inside async code.
pub struct TarReader {
    chunks: mpsc::Receiver<Result<Vec<u8>, bollard::errors::Error>>,
    current: Vec<u8>,
    position: usize,
    container: String,
    path: String,
}

impl Read for TarReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let unread = self.current.get(self.position..).unwrap_or_default();
            if !unread.is_empty() || buf.is_empty() {
                let count = unread.len().min(buf.len());
                buf[..count].copy_from_slice(&unread[..count]);
                self.position += count;
                return Ok(count);
            }
            match self.chunks.blocking_recv() {
                Some(Ok(chunk)) => {
                    self.current = chunk;
                    self.position = 0;
                }
                Some(Err(cause)) => {
                    return Err(std::io::Error::other(Error::Download {
                        container: self.container.clone(),
                        path: self.path.clone(),
                        cause,
                    }))
                }
                None => return Ok(0),
            }
        }
    }
}

impl std::fmt::Debug for TarReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarReader")
            .field("container", &self.container)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
