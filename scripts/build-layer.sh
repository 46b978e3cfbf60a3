#!/usr/bin/env bash
# The main job on a fresh machine:  bash scripts/build-layer.sh [cargo xtask build-layer options]
#
# Makes Docker available (on Debian as root: installs docker.io and starts dockerd when none
# answers), picks the build image — LAYER_BUILD_IMAGE if set, else the real SAM image
# public.ecr.aws/sam/build-python3.9 (pulled), else, where no registry is reachable, the offline
# stand-in (built by scripts/standin-image.sh) — then runs `cargo xtask build-layer`.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
services="$root/target/build-services"
mkdir -p "$services"
standin=layer-tools/build-python3.9-standin:latest
real=public.ecr.aws/sam/build-python3.9:latest-x86_64

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_docker

if [ -n "${LAYER_BUILD_IMAGE:-}" ]; then
  image=$LAYER_BUILD_IMAGE
elif docker image inspect "$real" >/dev/null 2>&1 || timeout 600 docker pull "$real"; then
  image=$real
else
  echo "cannot pull $real: using the offline stand-in $standin"
  image=$standin
fi
ensure_image

section "cargo xtask build-layer --image $image $*"
cargo xtask build-layer --image "$image" "$@"
