#!/usr/bin/env bash
# Builds an offline stand-in for the SAM build image public.ecr.aws/sam/build-python3.9.
#
# For air-gapped machines and CI, where no container registry is reachable: the real image is pulled
# on any normal machine. The stand-in is CPython 3.9 from Debian bullseye (debootstrap, from the Debian
# mirror this machine already uses), plus what makes it resemble the SAM image: `python`/`pip` on PATH,
# aws-lambda-builders, zip, /var/task, and the host's CA bundle so pip reaches the index through the
# same TLS interception the host goes through.
#
# usage: scripts/standin-image.sh [IMAGE]     (FORCE=1 rebuilds an existing image)
set -euo pipefail

image=${1:-${STANDIN_IMAGE:-layer-tools/build-python3.9-standin:latest}}
ca_bundle=${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ -z "${FORCE:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "stand-in image $image already exists (FORCE=1 rebuilds it)"
  exit 0
fi

# The first Debian (not security) mirror configured for apt, in one-line or deb822 format.
debian_mirror() {
  local uri
  uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    grep -Eo '^(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)[^[:space:]]+/debian/?([[:space:]]|$)' |
    grep -Eo '[a-z]+://[^[:space:]]+' | head -n 1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}
mirror=${DEBIAN_MIRROR:-$(debian_mirror)}

for tool in debootstrap docker; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
[ -r "$ca_bundle" ] || { echo "error: CA bundle $ca_bundle is not readable (set STANDIN_CA_BUNDLE)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "debootstrap bullseye from $mirror"
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,zip \
  bullseye "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; echo "error: debootstrap failed" >&2; exit 1; }
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*

base="$image-rootfs"
tar -C "$work/rootfs" -c . | docker import - "$base" >/dev/null

mkdir "$work/context"
cp "$ca_bundle" "$work/context/host-ca-bundle.crt"
cat >"$work/context/Dockerfile" <<DOCKERFILE
FROM $base
LABEL org.opencontainers.image.description="offline stand-in for public.ecr.aws/sam/build-python3.9"
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_TRUSTED_HOST
COPY host-ca-bundle.crt /etc/ssl/certs/host-ca-bundle.crt
ENV LANG=C.UTF-8 \\
    PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt \\
    SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt \\
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca-bundle.crt \\
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN ln -sf python3 /usr/bin/python && ln -sf pip3 /usr/bin/pip \\
 && pip install --no-cache-dir aws-lambda-builders \\
 && mkdir -p /var/task
WORKDIR /var/task
CMD ["/bin/bash"]
DOCKERFILE

# Proxy settings reach `pip install` as Docker's predefined build arguments.
build_args=()
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
  [ -n "${!var:-}" ] && build_args+=(--build-arg "$var")
done
DOCKER_BUILDKIT=0 docker build --quiet ${build_args[@]+"${build_args[@]}"} -t "$image" "$work/context" >/dev/null
docker rmi "$base" >/dev/null 2>&1 || true   # the built image keeps the layers

echo "built stand-in image $image: $(docker run --rm "$image" python --version 2>&1)"
