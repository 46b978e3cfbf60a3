//! Files in and out of a work container as tar streams: upload a tar into a directory, download
//! a path as a tar that a blocking [`std::io::Read`] streams. Through Docker's archive API, or,
//! for a container with in-memory directories (which that API cannot see), the image's `tar`.

use std::io::Read;
use std::time::Duration;

use bollard::container::LogOutput;
use bollard::query_parameters::{
    DownloadFromContainerOptionsBuilder, UploadToContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::exec::exit_code;
use super::{Cause, Engine, Error, Exec, Result, WorkContainer};

/// An upload returns when the daemon has unpacked the whole tar, so it may take longer than the
/// usual per-request timeout.
const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A download that sends nothing for this long is given up (a hung daemon or `tar`).
const DOWNLOAD_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Downloaded chunks buffered ahead of the reader (each up to the daemon's chunk size, ~32 KiB).
const DOWNLOAD_CHUNKS_AHEAD: usize = 16;
/// Exit codes of the transfer scripts: the image has no `tar`; the path does not exist.
const NO_TAR: i64 = 69;
const NO_SUCH_PATH: i64 = 66;
const HAS_TAR: &str = "command -v tar >/dev/null || exit 69;";
const NO_TAR_HINT: &str =
    "an in-memory source tree needs it (build-layer --scratch-on-disk keeps it on a volume)";

type Chunk = Result<Vec<u8>>;

impl Engine {
    /// Unpacks the tar archive `tar` into `dest_dir` of `container`, creating `dest_dir` first.
    pub async fn upload(
        &self,
        container: &WorkContainer,
        dest_dir: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        if container.transfers_with_tar() {
            return self.upload_with_tar(container, dest_dir, tar).await;
        }
        self.exec_checked(
            container,
            &Exec::new(["mkdir", "-p", "--", dest_dir]).root(),
        )
        .await
        .map_err(|e| upload_error(container, dest_dir, Cause::message(e.to_string())))?;
        let options = UploadToContainerOptionsBuilder::new()
            .path(dest_dir)
            .build();
        self.docker
            .clone()
            .with_timeout(UPLOAD_TIMEOUT)
            .upload_to_container(
                container.id(),
                Some(options),
                bollard::body_full(tar.into()),
            )
            .await
            .map_err(|cause| upload_error(container, dest_dir, cause.into()))
    }

    /// [`Engine::upload`] through the container's own `tar` (the archive API cannot see into
    /// tmpfs mounts): it unpacks the archive from stdin, as root; files owned by root, modes kept,
    /// as the archive API does.
    async fn upload_with_tar(
        &self,
        container: &WorkContainer,
        dest_dir: &str,
        tar: Vec<u8>,
    ) -> Result<()> {
        let script = format!(r#"{HAS_TAR} mkdir -p -- "$1" && exec tar -x -o -f - -C "$1""#);
        let exec = Exec::sh(&script, &[dest_dir]).root().stdin(tar);
        let output = tokio::time::timeout(UPLOAD_TIMEOUT, self.exec_output(container, &exec))
            .await
            .map_err(|_| upload_error(container, dest_dir, Cause::message("timed out")))?;
        match output {
            Ok(output) if output.code == 0 => Ok(()),
            Ok(output) if output.code == NO_TAR => Err(missing_tar(container)),
            Ok(output) => Err(upload_error(
                container,
                dest_dir,
                Cause::Exit {
                    command: "tar -x".to_string(),
                    code: output.code,
                    output: output.text(),
                },
            )),
            Err(e) => Err(upload_error(
                container,
                dest_dir,
                Cause::message(e.to_string()),
            )),
        }
    }

    /// The file or directory `path` of `container` as a tar archive (entries named after the
    /// last component of `path`; `dir/.` gives the contents of `dir`), streamed: read it on a
    /// blocking thread (`spawn_blocking`), for example with `tar::Archive::new(reader)`. A missing
    /// `path` is [`Error::NoSuchPath`].
    pub async fn download(&self, container: &WorkContainer, path: &str) -> Result<TarReader> {
        let (sender, mut receiver) = mpsc::channel(DOWNLOAD_CHUNKS_AHEAD);
        if container.transfers_with_tar() {
            self.download_with_tar(container, path, sender).await?;
        } else {
            let options = DownloadFromContainerOptionsBuilder::new()
                .path(path)
                .build();
            let chunks = self
                .docker
                .download_from_container(container.id(), Some(options));
            let (id, source) = (container.id().to_string(), path.to_string());
            let chunks = chunks.map(move |chunk| match chunk {
                Ok(bytes) => Ok(Vec::from(bytes)),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 404, ..
                }) => Err(Error::NoSuchPath {
                    container: id.clone(),
                    path: source.clone(),
                }),
                Err(cause) => Err(Error::Download {
                    container: id.clone(),
                    path: source.clone(),
                    cause: cause.into(),
                }),
            });
            tokio::spawn(forward(
                chunks,
                sender,
                container.id().to_string(),
                path.to_string(),
            ));
        }
        let first = match receiver.recv().await {
            Some(chunk) => chunk?,
            None => Vec::new(),
        };
        Ok(TarReader {
            chunks: receiver,
            current: first,
            position: 0,
        })
    }

    /// [`Engine::download`] from an in-memory directory: the container's own `tar` writes the
    /// archive to stdout, named as the archive API names entries. A missing path, a failed `tar`
    /// or a broken stream ends the stream with an error, as the archive API would.
    async fn download_with_tar(
        &self,
        container: &WorkContainer,
        path: &str,
        sender: mpsc::Sender<Chunk>,
    ) -> Result<()> {
        let (dir, name) = match path.strip_suffix("/.") {
            Some(dir) => (dir, "."),
            None => path.rsplit_once('/').unwrap_or((".", path)),
        };
        let dir = if dir.is_empty() { "/" } else { dir };
        let script = format!(
            r#"{HAS_TAR} cd -- "$1" 2>/dev/null && test -e "$2" || exit {NO_SUCH_PATH}; exec tar -c -f - -- "$2""#
        );
        let exec = Exec::sh(&script, &[dir, name]).root();
        let started = self.start_exec(container, &exec).await?;
        let (docker, id, path) = (
            self.docker.clone(),
            container.id().to_string(),
            path.to_string(),
        );
        tokio::spawn(async move {
            let mut messages = Vec::new();
            let stdout = started.output.filter_map(|chunk| {
                let item = match chunk {
                    Ok(LogOutput::StdOut { message }) => Some(Ok(message.to_vec())),
                    Ok(other) => {
                        let room = 4096usize.saturating_sub(messages.len());
                        let bytes = other.into_bytes();
                        messages.extend_from_slice(&bytes[..bytes.len().min(room)]);
                        None
                    }
                    Err(cause) => Some(Err(Error::Download {
                        container: id.clone(),
                        path: path.clone(),
                        cause: cause.into(),
                    })),
                };
                std::future::ready(item)
            });
            let sender = match forward(stdout, sender, id.clone(), path.clone()).await {
                Some(sender) => sender,
                None => return,
            };
            let failure = match exit_code(&docker, &id, &started.id).await {
                Ok(0) => return,
                Ok(NO_TAR) => missing_tar_id(&id),
                Ok(NO_SUCH_PATH) => Error::NoSuchPath {
                    container: id.clone(),
                    path: path.clone(),
                },
                Ok(code) => Error::Download {
                    container: id.clone(),
                    path: path.clone(),
                    cause: Cause::Exit {
                        command: "tar -c".to_string(),
                        code,
                        output: String::from_utf8_lossy(&messages).into_owned(),
                    },
                },
                Err(e) => e,
            };
            let _ = sender.send(Err(failure)).await;
        });
        Ok(())
    }
}

/// Sends the chunks of `stream` to `sender` until it ends, fails, stays silent for
/// [`DOWNLOAD_IDLE_TIMEOUT`] or the reader goes away. Returns the sender when the stream ended
/// normally (for a final status), `None` otherwise.
async fn forward(
    stream: impl Stream<Item = Chunk>,
    sender: mpsc::Sender<Chunk>,
    container: String,
    path: String,
) -> Option<mpsc::Sender<Chunk>> {
    let mut stream = std::pin::pin!(stream);
    loop {
        let chunk = match tokio::time::timeout(DOWNLOAD_IDLE_TIMEOUT, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Some(sender),
            Err(_) => Err(Error::Download {
                container: container.clone(),
                path: path.clone(),
                cause: Cause::message(format!(
                    "nothing arrived for {} s",
                    DOWNLOAD_IDLE_TIMEOUT.as_secs()
                )),
            }),
        };
        let failed = chunk.is_err();
        // The reader was dropped: stop downloading.
        if sender.send(chunk).await.is_err() || failed {
            return None;
        }
    }
}

fn upload_error(container: &WorkContainer, dest_dir: &str, cause: Cause) -> Error {
    Error::Upload {
        container: container.id().to_string(),
        dest_dir: dest_dir.to_string(),
        cause,
    }
}

fn missing_tar(container: &WorkContainer) -> Error {
    missing_tar_id(container.id())
}

fn missing_tar_id(container: &str) -> Error {
    Error::MissingTool {
        container: container.to_string(),
        tool: "tar",
        hint: NO_TAR_HINT,
    }
}

/// A blocking reader of a tar archive that is still being downloaded. Reading blocks the thread
/// until the next chunk arrives, so use it on a blocking thread, never inside async code.
pub struct TarReader {
    chunks: mpsc::Receiver<Chunk>,
    current: Vec<u8>,
    position: usize,
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
                Some(Err(error)) => return Err(std::io::Error::other(error)),
                None => return Ok(0),
            }
        }
    }
}

impl std::fmt::Debug for TarReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarReader").finish_non_exhaustive()
    }
}

/// A tar of in-memory files (`(name, content)`, mode 0644), to upload.
pub fn tar_of_files<N: AsRef<str>>(files: &[(N, Vec<u8>)]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, name.as_ref(), content.as_slice())?;
    }
    builder.into_inner()
}
