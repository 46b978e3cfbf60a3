#!/usr/bin/env bash
# The project's test command:  bash scripts/test.sh [cargo test arguments]
#
# Makes everything the tests need available, then runs `cargo test --workspace --locked "$@"`:
#   - docker and debootstrap (apt-get, when missing and running as root),
#   - a Docker daemon: starts dockerd when none answers (log: target/test-services/dockerd.log) and
#     leaves it running for the next run,
#   - the build image LAYER_BUILD_IMAGE, by default the offline stand-in that
#     scripts/standin-image.sh builds (it is kept in Docker, so only the first run pays for it),
#   - QEMU user emulation for arm64 (qemu-user-static, binfmt_misc) and the stand-ins of the cells
#     the matrix tests build: python3.9 and python3.13 on x86_64, python3.9 on arm64 (emulated:
#     about 6 minutes to build once),
#   - a moto S3 server on 127.0.0.1 (venv: target/moto-venv), stopped when this script exits.
# The tests see dummy AWS credentials and an endpoint on this machine only: nothing reaches AWS.
# Safe to rerun; works with or without a running dockerd. In CI (CI set) a missing service fails
# the tests instead of skipping them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
services="$root/target/test-services"
mkdir -p "$services"

standin=layer-tools/build-python3.9-standin:latest
image=${LAYER_BUILD_IMAGE:-$standin}

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_docker
ensure_image
ensure_qemu
ensure_cell_images "3.9 x86_64" "3.13 x86_64" "3.9 arm64"

# --- moto ----------------------------------------------------------------------------------------
section "moto"
venv="$root/target/moto-venv"
if [ ! -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c 'import moto.server' 2>/dev/null; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    apt_install python3-venv
    /usr/bin/python3 -m venv "$venv"
  fi
  echo "pip install moto[server] into $venv"
  "$venv/bin/pip" install --quiet 'moto[server]'
fi

moto_pid=
stop_moto() {
  if [ -n "$moto_pid" ]; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
}
trap stop_moto EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
moto_log="$services/moto.log"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$moto_log" 2>&1 </dev/null &
moto_pid=$!
moto_answers() {
  "$venv/bin/python" - "$endpoint" <<'PYTHON' 2>/dev/null
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
opener.open(sys.argv[1] + "/moto-api/", timeout=2).read()
PYTHON
}
for _ in $(seq 60); do
  moto_answers && break
  kill -0 "$moto_pid" 2>/dev/null || break
  sleep 1
done
if ! moto_answers; then
  tail -n 30 "$moto_log" >&2
  die "moto_server did not answer at $endpoint within 60 s (log: $moto_log)"
fi
echo "moto $("$venv/bin/python" -c 'import moto; print(moto.__version__)') at $endpoint (log: $moto_log)"

# --- the tests' environment: local services and dummy credentials only ---------------------------
for var in $(compgen -e | grep '^AWS_' || true); do
  unset "$var"
done
: >"$services/aws-config-empty"
export AWS_CONFIG_FILE="$services/aws-config-empty"
export AWS_SHARED_CREDENTIALS_FILE="$services/aws-config-empty"
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL="$endpoint"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export NO_PROXY="127.0.0.1,localhost,::1${NO_PROXY:+,$NO_PROXY}"
export no_proxy="127.0.0.1,localhost,::1${no_proxy:+,$no_proxy}"
export LAYER_BUILD_IMAGE="$image"
# The Python with boto3 that runs scripts/codebuild-standin.py (the --remote tests' CodeBuild).
export LAYER_TEST_PYTHON="$venv/bin/python"

section "cargo test --workspace --locked $*"
cargo test --workspace --locked "$@"
