#!/usr/bin/env bash
# Shared by scripts/test.sh and scripts/build-layer.sh (source it): makes docker, debootstrap, a
# running Docker daemon and the build image available on a Debian machine.
# Expects: $root (the repository), $services (a directory for logs); ensure_image also $image and
# $standin (the stand-in is built when $image is it, anything else is pulled).
# shellcheck disable=SC2154  # the variables above are set by the sourcing script

section() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

apt_updated=
apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    die "missing $* (install: apt-get install $*)"
  fi
  if [ -z "$apt_updated" ]; then
    apt-get update -qq
    apt_updated=1
  fi
  echo "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

ensure_docker() {
  # --- tools ---------------------------------------------------------------------------------------
  section "tools"
  packages=()
  { command -v docker && command -v dockerd; } >/dev/null || packages+=(docker.io)
  command -v debootstrap >/dev/null || packages+=(debootstrap)
  if [ ${#packages[@]} -gt 0 ]; then
    apt_install "${packages[@]}"
  fi
  echo "docker $(docker version --format '{{.Client.Version}}' 2>/dev/null || echo '?'), $(command -v debootstrap)"

  # --- Docker daemon -------------------------------------------------------------------------------
  section "docker daemon"
  docker_answers() { timeout 20 docker info >/dev/null 2>&1; }
  if ! docker_answers; then
    case "${DOCKER_HOST:-unix:///var/run/docker.sock}" in
      unix:///var/run/docker.sock | unix:///run/docker.sock) ;;
      *) die "no Docker daemon answers at DOCKER_HOST=$DOCKER_HOST" ;;
    esac
    [ "$(id -u)" = 0 ] || die "no Docker daemon answers, and starting dockerd needs root"
    dockerd_log="$services/dockerd.log"
    echo "no daemon answers: starting dockerd (log: $dockerd_log)"
    setsid dockerd >"$dockerd_log" 2>&1 </dev/null &
    dockerd_pid=$!
    for _ in $(seq 60); do
      docker_answers && break
      kill -0 "$dockerd_pid" 2>/dev/null || break
      sleep 1
    done
    if ! docker_answers; then
      tail -n 30 "$dockerd_log" >&2
      kill -0 "$dockerd_pid" 2>/dev/null || die "dockerd exited (log above, full log: $dockerd_log)"
      die "dockerd did not answer within 60 s (log above, full log: $dockerd_log)"
    fi
  fi
  echo "daemon: Docker Engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
}

ensure_image() {
  # --- build image ---------------------------------------------------------------------------------
  section "build image"
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    if [ "$image" = "$standin" ]; then
      bash scripts/standin-image.sh "$image"
    else
      docker pull "$image" || die "image $image is not present and cannot be pulled (unset LAYER_BUILD_IMAGE to use the stand-in)"
    fi
  fi
  echo "using $image"
}

ensure_qemu() {
  # --- QEMU user emulation, for arm64 cells on an x86_64 machine -----------------------------------
  section "arm64 emulation"
  if [ "$(uname -m)" = aarch64 ]; then
    echo "arm64 machine: no emulation needed"
    return
  fi
  handler=/proc/sys/fs/binfmt_misc/qemu-aarch64
  if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
    [ "$(id -u)" = 0 ] || die "binfmt_misc is not mounted (sudo mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc)"
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  fi
  if ! grep -qs '^enabled' "$handler"; then
    command -v update-binfmts >/dev/null && [ -e /usr/libexec/qemu-binfmt/aarch64-binfmt-P ] ||
      apt_install qemu-user-static binfmt-support
    update-binfmts --enable qemu-aarch64 2>/dev/null || true
  fi
  grep -qs '^enabled' "$handler" || die "no aarch64 binfmt_misc handler after installing qemu-user-static (see $handler)"
  # F (fix binary): the kernel opens QEMU when the handler is registered, so it works in containers.
  grep -qs '^flags:.*F' "$handler" || die "the aarch64 handler lacks the F flag: containers cannot use it ($handler)"
  echo "aarch64 binaries run under $(sed -n 's/^interpreter //p' "$handler")"
}

ensure_cell_images() {
  # --- the stand-ins of the cells the tests build: "python arch" pairs -------------------------------
  section "cell images"
  for cell in "$@"; do
    read -r python arch <<<"$cell"
    cell_image="layer-tools/build-python$python-standin:latest-$arch"
    if ! docker image inspect "$cell_image" >/dev/null 2>&1; then
      bash scripts/standin-image.sh --python "$python" --arch "$arch"
    fi
    docker image inspect "$cell_image" >/dev/null 2>&1 || die "no image $cell_image after building it"
    echo "cell python$python-$arch: $cell_image"
  done
}
