//! Images: whether one is present, its id, and pulling it with progress.

use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::StreamExt;

use super::{Engine, Error, Result};

/// One progress message of a pull, as `docker pull` prints it: `status` ("Downloading",
/// "Pull complete", …), the layer `id` it is about, and bytes done/total when known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullProgress {
    pub status: String,
    pub id: Option<String>,
    pub current: Option<u64>,
    pub total: Option<u64>,
}

/// An image present on the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalImage {
    /// `sha256:…`
    pub id: String,
    /// As the image's config records it: `amd64`, `arm64`.
    pub architecture: String,
}

impl Engine {
    /// Whether `image` (a name, a tag or an id) is present locally.
    pub async fn image_exists(&self, image: &str) -> Result<bool> {
        Ok(self.image_id(image).await?.is_some())
    }

    /// The local image id of `image` (`sha256:…`), or `None` when it is not present.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        Ok(self.local_image(image).await?.map(|local| local.id))
    }

    /// The local `image`'s id and architecture, or `None` when it is not present.
    pub async fn local_image(&self, image: &str) -> Result<Option<LocalImage>> {
        match self.docker.inspect_image(image).await {
            Ok(inspect) => Ok(Some(LocalImage {
                id: inspect.id.unwrap_or_default(),
                architecture: inspect.architecture.unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(cause) => Err(Error::InspectImage {
                image: image.to_string(),
                cause: cause.into(),
            }),
        }
    }

    /// Pulls `image` (a tag defaults to `latest`, as `docker pull` does) for `platform`
    /// (`linux/arm64`; `None`: the daemon's own), handing each progress message to `progress`.
    pub async fn pull(
        &self,
        image: &str,
        platform: Option<&str>,
        mut progress: impl FnMut(PullProgress),
    ) -> Result<()> {
        let reference = with_default_tag(image);
        let mut options = CreateImageOptionsBuilder::new().from_image(&reference);
        if let Some(platform) = platform {
            options = options.platform(platform);
        }
        let options = options.build();
        let mut messages = self.docker.create_image(Some(options), None, None);
        while let Some(message) = messages.next().await {
            let message = message.map_err(|cause| Error::Pull {
                image: image.to_string(),
                cause: cause.into(),
            })?;
            progress(pull_progress(message));
        }
        Ok(())
    }

    /// The local `image`, pulled first (for `platform`, see [`Engine::pull`]) when it is not
    /// present.
    pub async fn ensure_image(
        &self,
        image: &str,
        platform: Option<&str>,
        progress: impl FnMut(PullProgress),
    ) -> Result<LocalImage> {
        if let Some(local) = self.local_image(image).await? {
            return Ok(local);
        }
        self.pull(image, platform, progress).await?;
        self.local_image(image)
            .await?
            .ok_or_else(|| Error::NoSuchImage {
                image: image.to_string(),
            })
    }
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
}
