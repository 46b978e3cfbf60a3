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
