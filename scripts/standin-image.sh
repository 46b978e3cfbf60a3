#!/usr/bin/env bash
# Builds an offline stand-in for a SAM build image (public.ecr.aws/sam/build-pythonX.Y).
#
# For air-gapped machines and CI, where no container registry is reachable: the real images are
# pulled on any normal machine. A stand-in is the CPython of a Debian release (debootstrap, from the
# Debian mirror this machine already uses) plus what makes it resemble the SAM image: `python`/`pip`
# on PATH, aws-lambda-builders, zip, /var/task, and the host's CA bundle so pip reaches the index
# through the same TLS interception the host goes through.
#
#   python 3.9  bullseye    python 3.11  bookworm    python 3.13  trixie
#
# An arm64 stand-in on an x86_64 host is built and run under QEMU user emulation (qemu-user-static
# and a registered binfmt_misc handler for aarch64; scripts/lib.sh ensure_qemu sets them up). Docker
# 20.10 records an imported image as the host's architecture whatever --platform says, so its
# config is rewritten to say arm64.
#
# usage: scripts/standin-image.sh [--python 3.9|3.11|3.13] [--arch x86_64|arm64] [IMAGE]
#   IMAGE defaults to layer-tools/build-python<python>-standin:latest (x86_64) or :latest-arm64.
#   FORCE=1 rebuilds an existing image.
set -euo pipefail

python=3.9
arch=x86_64
image=
while [ $# -gt 0 ]; do
  case "$1" in
    --python) python=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) image=$1; shift ;;
  esac
done
case "$python" in
  3.9) suite=bullseye ;;
  3.11) suite=bookworm ;;
  3.13) suite=trixie ;;
  *) echo "error: no Debian release has CPython $python (3.9, 3.11 or 3.13)" >&2; exit 2 ;;
esac
case "$arch" in
  x86_64) deb_arch=amd64; tag=latest ;;
  arm64) deb_arch=arm64; tag=latest-arm64 ;;
  *) echo "error: --arch is x86_64 or arm64, not $arch" >&2; exit 2 ;;
esac
image=${image:-${STANDIN_IMAGE:-layer-tools/build-python$python-standin:$tag}}
ca_bundle=${STANDIN_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

# x86_64 images answer to both tags, so `--image layer-tools/build-python{python}-standin:latest-{arch}`
# names every cell's image.
tag_x86_64() {
  if [ "$arch" = x86_64 ] && [ "$image" = "layer-tools/build-python$python-standin:latest" ]; then
    docker tag "$image" "layer-tools/build-python$python-standin:latest-x86_64"
  fi
}

if [ -z "${FORCE:-}" ] && docker image inspect "$image" >/dev/null 2>&1; then
  tag_x86_64
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

for tool in debootstrap docker python3; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed (apt-get install $tool)" >&2; exit 1; }
done
[ -r "$ca_bundle" ] || { echo "error: CA bundle $ca_bundle is not readable (set STANDIN_CA_BUNDLE)" >&2; exit 1; }
host_arch=$(uname -m)
if [ "$arch" = arm64 ] && [ "$host_arch" != aarch64 ] && ! grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
  echo "error: building an arm64 stand-in on $host_arch needs QEMU user emulation: apt-get install qemu-user-static binfmt-support (and mount binfmt_misc: mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "debootstrap $suite ($deb_arch) from $mirror"
debootstrap --variant=minbase --arch="$deb_arch" --include=python3,python3-pip,python3-venv,zip,ca-certificates \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; echo "error: debootstrap failed" >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*

# What the SAM image has: python/pip on PATH, aws-lambda-builders, /var/task; the host's CA bundle.
cp "$ca_bundle" "$rootfs/etc/ssl/certs/host-ca-bundle.crt"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
ln -sf python3 "$rootfs/usr/bin/python"
ln -sf pip3 "$rootfs/usr/bin/pip"
mkdir -p "$rootfs/var/task"
pip_env=(PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1)
for var in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST; do
  [ -n "${!var:-}" ] && pip_env+=("$var=${!var}")
done
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "${pip_env[@]}" \
  chroot "$rootfs" pip install --no-cache-dir --no-compile --quiet aws-lambda-builders >"$work/pip.log" 2>&1 ||
  { tail -n 30 "$work/pip.log" >&2; echo "error: pip install aws-lambda-builders failed" >&2; exit 1; }
: >"$rootfs/etc/resolv.conf"

tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt' \
  --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/host-ca-bundle.crt' \
  --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'WORKDIR /var/task' \
  --change 'CMD ["/bin/bash"]' \
  --change "LABEL org.opencontainers.image.description=\"offline stand-in for public.ecr.aws/sam/build-python$python ($arch)\"" \
  - "$image" >/dev/null

# Docker 20.10 recorded the host's architecture: say what the image really is.
if [ "$arch" = arm64 ] && [ "$(docker image inspect --format '{{.Architecture}}' "$image")" != arm64 ]; then
  docker save "$image" -o "$work/image.tar"
  mkdir "$work/saved"
  tar -C "$work/saved" -xf "$work/image.tar"
  python3 - "$work/saved" <<'PYTHON'
import json, sys, pathlib
saved = pathlib.Path(sys.argv[1])
manifest = json.loads((saved / "manifest.json").read_text())
config = saved / manifest[0]["Config"]
data = json.loads(config.read_text())
data["architecture"] = "arm64"
data["variant"] = "v8"
config.write_text(json.dumps(data))
PYTHON
  docker rmi "$image" >/dev/null
  tar -C "$work/saved" -c . | docker load >/dev/null
fi

tag_x86_64
platform=linux/$(docker image inspect --format '{{.Architecture}}' "$image")
echo "built stand-in image $image: $platform, $(docker run --rm --platform "$platform" "$image" python3 --version 2>&1)"
