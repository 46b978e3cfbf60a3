#!/usr/bin/env bash
# The benchmark of issue 7:  bash scripts/bench.sh [--runs N] [--quick] [--skip-deploy]
#
# Compares `cargo xtask build-layer` / `deploy` with `sam build --use-container` + the zip `sam
# package` makes, on this machine, with the same build image (LAYER_BUILD_IMAGE, else the offline
# stand-in) and the same requirements. Installs what it compares against when missing: Info-ZIP
# (`zip`) and GNU `time` from Debian, aws-sam-cli from PyPI into target/bench/sam-venv; moto comes
# from target/moto-venv as in scripts/test.sh. Each case runs --runs times (default 3, --quick: 1);
# prints a table (also target/bench/latest.md) and writes target/bench/latest.json.
# The builds run on a copy of buildspec.yml, template.yaml and python-layer/ in /var/tmp/layer-bench
# (BENCH_WORK), never in target/layer; takes ~5 minutes with 3 runs on 2 cores.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
services="$root/target/bench"
mkdir -p "$services"

runs=3
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --runs=*) runs=${1#--runs=}; shift ;;
    --quick) runs=1; shift ;;
    --skip-deploy) extra+=(--skip-deploy); shift ;;
    -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "error: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

standin=layer-tools/build-python3.9-standin:latest
image=${LAYER_BUILD_IMAGE:-$standin}

# shellcheck source=scripts/lib.sh
source "$root/scripts/lib.sh"
ensure_docker
ensure_image

section "what the benchmark compares against"
packages=()
command -v zip >/dev/null || packages+=(zip)
command -v unzip >/dev/null || packages+=(unzip)
[ -x /usr/bin/time ] || packages+=(time)
if [ ${#packages[@]} -gt 0 ]; then
  apt_install "${packages[@]}"
fi
venv="$root/target/bench/sam-venv"
if ! "$venv/bin/sam" --version >/dev/null 2>&1; then
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    rm -rf "$venv"
    apt_install python3-venv
    python3 -m venv "$venv"
  fi
  echo "pip install aws-sam-cli into $venv"
  "$venv/bin/pip" install --quiet aws-sam-cli
fi
echo "$("$venv/bin/sam" --version), $(zip -v | sed -n 2p | sed 's/^ *//')"

section "build-layer binaries"
# Built once and copied, so that edits to the sources during the run change nothing measured.
cargo build --quiet --locked -p xtask --bin xtask --example zip_tree
mkdir -p "$root/target/bench/bin"
cp "$root/target/debug/xtask" "$root/target/debug/examples/zip_tree" "$root/target/bench/bin/"

section "benchmark: $runs run(s) per case, image $image"
exec python3 "$root/scripts/bench/bench.py" --runs "$runs" --image "$image" "${extra[@]}"
