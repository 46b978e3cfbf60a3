#!/usr/bin/env python3
"""Interleaved A/B timing of two build-layer binaries on the benchmark's project.

    python3 scripts/bench/ab.py BASE_BIN HEAD_BIN [--runs N] [build-layer flags...]

Runs `build-layer --force --json` (plus the flags given, e.g. --no-cache) with each binary in
turn, alternating which goes first, after one unmeasured build each; prints the medians. Uses
the project and out-dir `scripts/bench.sh` leaves in BENCH_WORK (/var/tmp/layer-bench) and the
stand-in image (LAYER_BUILD_IMAGE overrides). Build a binary of another commit with
`git worktree add /tmp/base <commit> && cargo build --manifest-path /tmp/base/Cargo.toml -p xtask`.
Alternating puts both binaries under the same machine noise, which a benchmark run minutes
apart does not (SAM's medians moved by a third between two runs on one machine).
"""
import os
import statistics
import subprocess
import sys
import time

work = os.environ.get("BENCH_WORK", "/var/tmp/layer-bench")
image = os.environ.get("LAYER_BUILD_IMAGE", "layer-tools/build-python3.9-standin:latest")


def main():
    args = sys.argv[1:]
    if len(args) < 2 or args[0] in ("-h", "--help"):
        sys.exit(__doc__)
    bins = {"base": args[0], "head": args[1]}
    rest = args[2:]
    runs = 8
    if rest[:1] == ["--runs"]:
        runs, rest = int(rest[1]), rest[2:]
    times = {name: [] for name in bins}
    for path in bins.values():
        build(path, rest)
    for i in range(runs):
        order = list(bins.items()) if i % 2 == 0 else list(reversed(bins.items()))
        for name, path in order:
            times[name].append(build(path, rest))
    for name, values in times.items():
        runs_text = " ".join(f"{v:.2f}" for v in values)
        print(f"{name}: median {statistics.median(values):.3f} s, min {min(values):.3f} s ({runs_text})")


def build(binary, flags):
    cmd = [binary, "build-layer", "--source", f"{work}/proj", "--out-dir", f"{work}/out",
           "--image", image, "--json", "--force", *flags]
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
