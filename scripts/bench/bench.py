#!/usr/bin/env python3
"""The benchmark of issue 7: `cargo xtask build-layer`/`deploy` against `sam build --use-container`
+ the zip `sam package` makes, on the same machine, image and requirements.

Run through scripts/bench.sh, which installs what is compared against and builds the binaries.
Writes target/bench/latest.json (+ a timestamped copy) and target/bench/latest.md.
"""
import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "target" / "bench"
BIN = BENCH / "bin"
# Outside the repository: the tool sends only git-tracked/unignored files of a git checkout, and
# target/ is ignored, so a project copy under target/ would look empty.
WORK = Path(os.environ.get("BENCH_WORK", "/var/tmp/layer-bench"))
PROJ = WORK / "proj"
OUT = WORK / "out"
SAM = BENCH / "sam-venv" / "bin" / "sam"
# SAM's build and cache directories live outside the project: the tool sends every file of a
# non-git source directory into the container, and SAM's 117 MB build output is no source.
SAM_DIR = WORK / "sam"
LAYER_DIR = SAM_DIR / "build" / "PythonDepsLayer"
SAM_ZIP = WORK / "sam-layer.zip"
# Older releases of one pinned requirement (a different one per run, so SAM's cache never matches).
SIX_VERSIONS = ["1.16.0", "1.15.0", "1.14.0", "1.13.0", "1.12.0", "1.11.0", "1.10.0", "1.9.0"]

TARGETS = {
    "cold": ("ratio", 0.25, "≤ 0.25× SAM"),
    "rebuild": ("ratio", 0.15, "≤ 0.15× SAM"),
    "warm": ("ratio", 2.0, "≤ 2× its unavoidable parts"),
    "noop": ("tool", 0.2, "≤ 0.2 s"),
    "overhead": ("tool", 1.5, "≤ 1.5 s"),
    "overhead_parts": ("tool", 1.5, "≤ 1.5 s"),
    "zip": ("ratio", 0.2, "≤ 0.2× Info-ZIP, size within 3 %"),
    "rss": ("tool", 64.0, "≤ 64 MB"),
    "deploy": ("tool", 0, "0 bytes uploaded"),
    # Issue 15 asks for the comparison, with no target.
    "arm64": ("ratio", None, "– (a comparison)"),
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Timed:
    """One command: wall time, stdout, stderr lines with their time since the start."""

    def __init__(self, name, cmd, cwd=None, env=None, rss=False):
        self.name = name
        logs = BENCH / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.log_path = logs / f"{name}.log"
        time_file = logs / f"{name}.time"
        if rss:
            cmd = ["/usr/bin/time", "-v", "-o", str(time_file)] + cmd
        self.lines = []
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        out = []
        reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
        reader.start()
        for raw in proc.stderr:
            self.lines.append((time.perf_counter() - started, raw.decode(errors="replace").rstrip()))
        reader.join()
        self.code = proc.wait()
        self.seconds = time.perf_counter() - started
        self.stdout = out[0].decode(errors="replace") if out else ""
        with open(self.log_path, "w") as f:
            f.write("$ " + " ".join(cmd) + "\n")
            for t, line in self.lines:
                f.write(f"{t:8.3f} {line}\n")
            f.write("--- stdout\n" + self.stdout)
            f.write(f"--- exit {self.code}, {self.seconds:.3f} s\n")
        self.max_rss_mb = None
        if rss and time_file.exists():
            m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
            if m:
                self.max_rss_mb = int(m.group(1)) / 1024
        if self.code != 0:
            tail = "\n".join(line for _, line in self.lines[-25:])
            raise SystemExit(f"{name} failed (exit {self.code}, log {self.log_path}):\n{tail}")

    def first(self, text):
        for t, line in self.lines:
            if text in line:
                return t
        return None


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return {"min": None, "median": None, "runs": []}
    return {"min": min(values), "median": statistics.median(values), "runs": values}


# --- the project copy --------------------------------------------------------------------------
def fresh_project():
    shutil.rmtree(WORK, ignore_errors=True)
    PROJ.mkdir(parents=True)
    for name in ["buildspec.yml", "template.yaml"]:
        shutil.copy2(ROOT / name, PROJ / name)
    shutil.copytree(ROOT / "python-layer", PROJ / "python-layer")


def set_pin(package, version, proj=None):
    # What SAM installs (requirements.txt) and what build-layer installs (the cell's lock).
    proj = proj or PROJ
    for req in [proj / "python-layer" / "requirements.txt",
                proj / "python-layer" / "locks" / "python3.9-x86_64.txt"]:
        text, n = re.subn(rf"(?m)^{re.escape(package)}==\S+", f"{package}=={version}", req.read_text())
        assert n == 1, f"{package} is not pinned in {req}"
        req.write_text(text)


def tool_cache_volumes(proj=None, arch="x86_64", runtime="python3.9"):
    # build-layer names them xtask-cache-<sha256(source dir \0 runtime \0 arch)[:12]>-<...>:
    # only this project's cell.
    proj = proj or PROJ
    key = str(proj.resolve()).encode() + b"\0" + runtime.encode() + b"\0" + arch.encode()
    project = hashlib.sha256(key).hexdigest()[:12]
    out = subprocess.run(["docker", "volume", "ls", "-q", "--filter", f"name=xtask-cache-{project}"],
                         capture_output=True, text=True, check=True).stdout.split()
    return out


def clear_tool_cache(proj=None, arch="x86_64"):
    vols = tool_cache_volumes(proj, arch)
    if vols:
        subprocess.run(["docker", "volume", "rm", "-f"] + vols, capture_output=True, check=True)


# --- the two tools -----------------------------------------------------------------------------
def sam_env():
    env = dict(os.environ)
    env["SAM_CLI_TELEMETRY"] = "0"
    env["SAM_CLI_POLL_DELAY"] = env.get("SAM_CLI_POLL_DELAY", "0.5")
    return env


def retried(fn):
    """Retries a failed build (a PyPI read timeout is no result); only the successful try counts."""
    def wrapper(name, *args, **kwargs):
        for attempt in range(3):
            try:
                return fn(name if attempt == 0 else f"{name}-retry{attempt}", *args, **kwargs)
            except SystemExit as e:
                if attempt == 2:
                    raise
                log(f"{name} failed, retrying: {str(e).splitlines()[-1]}")
    return wrapper


@retried
def sam_build(name, image, cached=False, zip_it=True, proj=None, sam_dir=None):
    proj, sam_dir = proj or PROJ, sam_dir or SAM_DIR
    cmd = [str(SAM), "build", "--use-container", "--build-image", image, "--skip-pull-image",
           "--build-dir", str(sam_dir / "build"), "--cache-dir", str(sam_dir / "cache")]
    if cached:
        cmd.append("--cached")
    started = time.perf_counter()
    build = Timed(name, cmd, cwd=proj, env=sam_env())
    if zip_it:
        # What `sam package` uploads for a layer: its built ContentUri directory, zipped.
        SAM_ZIP.unlink(missing_ok=True)
        Timed(name + "-zip", ["zip", "-q", "-r", "-X", str(SAM_ZIP), "."],
              cwd=sam_dir / "build" / "PythonDepsLayer")
    return time.perf_counter() - started, build


@retried
def tool_build(name, image, force=False, no_cache=False, extra=(), proj=None):
    cmd = [str(BIN / "xtask"), "build-layer", "--source", str(proj or PROJ), "--out-dir", str(OUT),
           "--image", image, "--json"]
    if force:
        cmd.append("--force")
    if no_cache:
        cmd.append("--no-cache")
    cmd.extend(extra)
    run = Timed(name, cmd, rss=True)
    run.summary = json.loads(run.stdout)
    if "cells" in run.summary:  # --cells: one cell
        run.summary = run.summary["cells"][0]
    assert run.summary["status"] == "SUCCEEDED", run.summary
    return run


def breakdown(run):
    """Where a build-layer run's wall time went (seconds), from its log timestamps and --json."""
    s = run.summary
    phases = sum(p["duration_ms"] for p in s["phases"]) / 1000
    marks = [run.first("Entering phase DOWNLOAD_SOURCE"), run.first("Entering phase INSTALL"),
             run.first("Entering phase UPLOAD_ARTIFACTS"), run.first("Verifying the layer"),
             run.first("import smoke test:")]

    def span(a, b):
        return (b - a) if a is not None and b is not None else None

    parts = {
        "before_container (settings, lint, source tar, git, image inspect)": marks[0],
        "container_start_upload (create, start, source + CA upload, runtime check)": span(marks[0], marks[1]),
        "buildspec_phases": phases,
        "artifact_download_extract (+ build container removal)": span(marks[2], marks[3] or marks[4]),
        "verify (static checks, import-test container: tar, upload, imports, removal)": span(marks[3], marks[4]),
        "zip_hash_manifest_staging_cleanup": span(marks[4] or marks[3], run.seconds),
    }
    return {"wall": run.seconds, "phases": phases, "overhead": run.seconds - phases, "parts": parts}


def container_start(run):
    """Creating and starting the work container: from the tool's last line before it to
    DOWNLOAD_SOURCE (logged once the container runs)."""
    start = run.first(" is in memory (tmpfs") or run.first("Entering phase DOWNLOAD_SOURCE")
    end = run.first("Entering phase DOWNLOAD_SOURCE")
    return (end - start) if start is not None and end is not None else None


def install_seconds(run):
    """`uv pip install` from the warm cache: its [Container] timestamps, to the next command."""
    stamps = []
    for _, line in run.lines:
        m = re.match(r"\[Container\] (\d+/\d+/\d+ \d+:\d+:\d+\.\d+) Running command (.*)", line)
        if m:
            stamps.append((time.mktime(time.strptime(m.group(1)[:19], "%Y/%m/%d %H:%M:%S"))
                           + float("0" + m.group(1)[19:]), m.group(2)))
    for (t, cmd), (t_next, _) in zip(stamps, stamps[1:]):
        if "uv pip install" in cmd:
            return t_next - t
    return None


def stages(run):
    """Each stage of a build-layer run, in seconds, from its log."""
    marks = {name: run.first(text) for name, text in [
        ("start", " is in memory (tmpfs"), ("source", "Entering phase DOWNLOAD_SOURCE"),
        ("phases", "Entering phase INSTALL"), ("upload", "Entering phase UPLOAD_ARTIFACTS"),
        ("verify", "Verifying the layer"), ("imports", "import smoke test:")]}

    def span(a, b):
        return (marks[b] - marks[a]) if marks[a] is not None and marks[b] is not None else None

    return {"before the container": marks["start"], "container start": span("start", "source"),
            "source upload": span("source", "phases"), "buildspec phases": span("phases", "upload"),
            "artifact download + extract": span("upload", "verify"),
            "verify + import test (zip alongside)": span("verify", "imports"),
            "rest (zip, manifest)": (run.seconds - marks["imports"]) if marks["imports"] else None}


class LoggedRun:
    """A build-layer run read back from its log (bench.py --rewrite)."""

    def __init__(self, path):
        self.lines, self.stdout, self.seconds = [], "", None
        text = Path(path).read_text().split("\n--- stdout\n", 1)
        for line in text[0].splitlines()[1:]:
            t, _, rest = line.strip().partition(" ")
            self.lines.append((float(t), rest))
        stdout, _, tail = text[1].rpartition("--- exit ")
        self.summary = json.loads(stdout)
        self.seconds = float(tail.split(", ")[1].split(" ")[0])

    first = Timed.first


def dist_infos_of_dir(path):
    return sorted(p.name for p in Path(path).glob("python/*.dist-info"))


def dist_infos_of_zip(path):
    names = subprocess.run(["unzip", "-Z1", str(path)], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    return sorted({n.split("/")[1] for n in names
                   if n.startswith("python/") and n.count("/") >= 2 and n.split("/")[1].endswith(".dist-info")})


# --- moto --------------------------------------------------------------------------------------
def start_moto():
    venv = ROOT / "target" / "moto-venv"
    if not (venv / "bin" / "moto_server").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "moto[server]"], check=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    logf = open(BENCH / "logs" / "moto.log", "w")
    proc = subprocess.Popen([str(venv / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(60):
        try:
            opener.open(endpoint + "/moto-api/", timeout=2).read()
            break
        except Exception:
            if proc.poll() is not None:
                raise SystemExit("moto_server exited (log target/bench/logs/moto.log)")
            time.sleep(1)
    return proc, endpoint, venv


def aws_env(endpoint):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    empty = BENCH / "aws-config-empty"
    empty.write_text("")
    env.update({
        "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true", "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
        "NO_PROXY": "127.0.0.1,localhost,::1", "no_proxy": "127.0.0.1,localhost,::1",
    })
    return env


def overhead(cases, tool_runs):
    bds = [breakdown(r) for r in tool_runs]
    cases["overhead"] = {
        "tool": stats([b["overhead"] for b in bds]),
        "wall": stats([b["wall"] for b in bds]),
        "phases": stats([b["phases"] for b in bds]),
        "parts_median": {k: statistics.median([b["parts"][k] for b in bds if b["parts"][k] is not None] or [0])
                         for k in bds[0]["parts"]},
    }


# --- the cases ---------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image", default=os.environ.get("LAYER_BUILD_IMAGE", "layer-tools/build-python3.9-standin:latest"))
    ap.add_argument("--skip-deploy", action="store_true")
    ap.add_argument("--arm64-image", default="layer-tools/build-python3.9-standin:latest-arm64",
                    help="image of case 9, the emulated python3.9-arm64 cell ('' skips it)")
    ap.add_argument("--arm64-runs", type=int, default=1,
                    help="runs of case 9 (each SAM run takes minutes under QEMU)")
    ap.add_argument("--rewrite", action="store_true",
                    help="recompute the overhead breakdown of target/bench/latest.json from its logs")
    args = ap.parse_args()
    if args.rewrite:
        results = json.loads((BENCH / "latest.json").read_text())
        runs = sorted((BENCH / "logs").glob("cold-tool-*.log"))
        overhead(results["cases"], [LoggedRun(p) for p in runs if "retry" not in p.name])
        write(results)
        return
    runs = max(1, args.runs)
    image = args.image
    t_start = time.time()
    results = {"runs": runs, "image": image, "cases": {}}
    cases = results["cases"]

    fresh_project()
    OUT.mkdir(parents=True, exist_ok=True)

    # 1. cold build to a publishable zip -------------------------------------------------------
    sam_cold, tool_cold = [], []
    for i in range(runs):
        shutil.rmtree(SAM_DIR, ignore_errors=True)
        log(f"cold {i + 1}/{runs}: sam build --use-container + zip")
        t, _ = sam_build(f"cold-sam-{i}", image)
        sam_cold.append(t)
        clear_tool_cache()
        log(f"cold {i + 1}/{runs}: build-layer --force --no-cache (empty cache)")
        tool_cold.append(tool_build(f"cold-tool-{i}", image, force=True, no_cache=True))
        log(f"  sam {t:.2f} s, build-layer {tool_cold[-1].seconds:.2f} s")
    sam_pkgs = dist_infos_of_dir(LAYER_DIR)
    tool_pkgs = dist_infos_of_zip(OUT / "python-deps.zip")
    cases["cold"] = {"sam": stats(sam_cold), "tool": stats([r.seconds for r in tool_cold]),
                     "sam_zip_bytes": SAM_ZIP.stat().st_size,
                     "tool_zip_bytes": tool_cold[-1].summary["zipped_bytes"]}
    results["packages"] = {"same": sam_pkgs == tool_pkgs, "sam": sam_pkgs, "tool": tool_pkgs,
                           "only_sam": sorted(set(sam_pkgs) - set(tool_pkgs)),
                           "only_tool": sorted(set(tool_pkgs) - set(sam_pkgs))}
    log(f"packages: same set of dist-info directories: {sam_pkgs == tool_pkgs} ({len(tool_pkgs)})")

    # 4. tool overhead, 6. peak RSS (from the cold runs) ----------------------------------------
    overhead(cases, tool_cold)
    cases["rss"] = {"tool": stats([r.max_rss_mb for r in tool_cold])}

    # 4b. the overhead the issue lists (start, upload, download, extraction, zip): without the
    # import test, whose container and imports are verification, not transport ------------------
    parts_runs = []
    for i in range(runs):
        log(f"overhead without the import test {i + 1}/{runs}: build-layer --force --no-import-test")
        parts_runs.append(tool_build(f"overhead-parts-{i}", image, force=True, extra=["--no-import-test"]))
    bds = [breakdown(r) for r in parts_runs]
    cases["overhead_parts"] = {"tool": stats([b["overhead"] for b in bds]),
                               "wall": stats([b["wall"] for b in bds])}

    # 2. rebuild after changing one pinned version ---------------------------------------------
    log("rebuild: priming SAM --cached and the build-layer cache volumes (untimed)")
    sam_build("rebuild-prime-sam", image, cached=True, zip_it=False)
    tool_build("rebuild-prime-tool", image, force=True)
    sam_rb, tool_rb = [], []
    for i in range(runs):
        version = SIX_VERSIONS[i % len(SIX_VERSIONS)]
        set_pin("six", version)
        log(f"rebuild {i + 1}/{runs}: six=={version}")
        t, _ = sam_build(f"rebuild-sam-{i}", image, cached=True)
        sam_rb.append(t)
        run = tool_build(f"rebuild-tool-{i}", image)
        assert not run.summary["up_to_date"]
        tool_rb.append(run.seconds)
        log(f"  sam {t:.2f} s, build-layer {run.seconds:.2f} s")
    pkgs_rb = (dist_infos_of_dir(LAYER_DIR), dist_infos_of_zip(OUT / "python-deps.zip"))
    cases["rebuild"] = {"sam": stats(sam_rb), "tool": stats(tool_rb),
                        "same_packages_after_change": pkgs_rb[0] == pkgs_rb[1],
                        "tool_phases_last": run.summary["phases"]}

    # 8. warm forced rebuild against the sum of what no build can avoid -------------------------
    warm = []
    for i in range(runs):
        log(f"warm forced rebuild {i + 1}/{runs}: build-layer --force")
        warm.append(tool_build(f"warm-tool-{i}", image, force=True))
    cases["warm"] = {"tool": stats([r.seconds for r in warm]),
                     "start": stats([container_start(r) for r in warm]),
                     "install": stats([install_seconds(r) for r in warm]),
                     "parts": [stages(r) for r in warm]}

    # 3. no-op rebuild ---------------------------------------------------------------------------
    sam_noop, tool_noop = [], []
    for i in range(runs):
        log(f"no-op {i + 1}/{runs}")
        _, b = sam_build(f"noop-sam-{i}", image, cached=True, zip_it=False)
        sam_noop.append(b.seconds)
        run = tool_build(f"noop-tool-{i}", image)
        assert run.summary["up_to_date"], "build-layer rebuilt although nothing changed"
        tool_noop.append(run.seconds)
    cases["noop"] = {"sam": stats(sam_noop), "tool": stats(tool_noop)}

    # 5. zip only, on the same extracted trees ---------------------------------------------------
    trees = {"layer": WORK / "tree-layer", "sam": LAYER_DIR}
    shutil.rmtree(trees["layer"], ignore_errors=True)
    trees["layer"].mkdir()
    subprocess.run(["unzip", "-q", str(OUT / "python-deps.zip"), "-d", str(trees["layer"])], check=True)
    for label, tree in trees.items():
        ours, infozip = [], []
        dest_ours, dest_info = WORK / f"zip-ours-{label}.zip", WORK / f"zip-infozip-{label}.zip"
        summary = None
        for i in range(runs):
            log(f"zip {label} {i + 1}/{runs}")
            dest_ours.unlink(missing_ok=True)
            r = Timed(f"zip-ours-{label}-{i}", [str(BIN / "zip_tree"), str(tree), str(dest_ours), "2"])
            summary = json.loads(r.stdout)
            ours.append(r.seconds)
            dest_info.unlink(missing_ok=True)
            infozip.append(Timed(f"zip-infozip-{label}-{i}", ["zip", "-q", "-r", "-X", str(dest_info), "."],
                                 cwd=tree).seconds)
        ours_bytes, info_bytes = dest_ours.stat().st_size, dest_info.stat().st_size
        cases["zip" if label == "layer" else "zip_sam_tree"] = {
            "tool": stats(ours), "infozip": stats(infozip), "sam": stats(infozip),
            "files": summary["files"], "unzipped_bytes": summary["unzipped_bytes"],
            "tool_zip_bytes": ours_bytes, "infozip_zip_bytes": info_bytes,
            "tool_ratio": ours_bytes / summary["unzipped_bytes"],
            "infozip_ratio": info_bytes / summary["unzipped_bytes"],
            "size_difference": ours_bytes / info_bytes - 1,
        }

    # 7. deploy of an unchanged layer against moto ----------------------------------------------
    if not args.skip_deploy:
        moto, endpoint, venv = start_moto()
        try:
            env = aws_env(endpoint)
            subprocess.run([str(venv / "bin" / "python"), "-c",
                            "import boto3; boto3.client('s3', endpoint_url=%r, region_name='us-east-1')"
                            ".create_bucket(Bucket='layer-bench')" % endpoint], env=env, check=True)
            cmd = [str(BIN / "xtask"), "deploy", "--out-dir", str(OUT), "--template",
                   str(PROJ / "template.yaml"), "--bucket", "layer-bench", "--json"]
            first = Timed("deploy-first", cmd, env=env)
            first_out = json.loads(first.stdout)
            times, uploaded = [], []
            for i in range(runs):
                log(f"deploy unchanged {i + 1}/{runs}")
                r = Timed(f"deploy-unchanged-{i}", cmd, env=env)
                out = json.loads(r.stdout)
                times.append(r.seconds)
                uploaded.append(out.get("bytes_uploaded"))
            cases["deploy"] = {"first": {"seconds": first.seconds,
                                         "bytes_uploaded": first_out.get("bytes_uploaded")},
                               "tool": stats(times), "bytes_uploaded": uploaded}
        finally:
            moto.terminate()
            moto.wait()

    # 9. the emulated arm64 cell, cold: SAM and build-layer on the same arm64 image -------------
    if args.arm64_image and image_present(args.arm64_image):
        arm_proj, arm_sam = WORK / "proj-arm64", WORK / "sam-arm64"
        shutil.rmtree(arm_proj, ignore_errors=True)
        shutil.copytree(PROJ, arm_proj)
        # SAM builds the template's architecture (--use-container runs the image as linux/arm64).
        set_pin("six", "1.17.0", arm_proj)
        template = (arm_proj / "template.yaml").read_text()
        (arm_proj / "template.yaml").write_text(template.replace("x86_64", "arm64"))
        sam_arm, tool_arm = [], []
        for i in range(max(1, args.arm64_runs)):
            shutil.rmtree(arm_sam, ignore_errors=True)
            log(f"arm64 cell {i + 1}/{args.arm64_runs}: sam build --use-container (emulated) + zip")
            t, _ = sam_build(f"arm64-sam-{i}", args.arm64_image, proj=arm_proj, sam_dir=arm_sam)
            sam_arm.append(t)
            clear_tool_cache(arm_proj, "arm64")
            log(f"arm64 cell {i + 1}/{args.arm64_runs}: build-layer --cells python3.9-arm64 --force --no-cache")
            run = tool_build(f"arm64-tool-{i}", args.arm64_image, force=True, no_cache=True,
                             extra=["--cells", "python3.9-arm64"], proj=arm_proj)
            tool_arm.append(run.seconds)
            log(f"  sam {t:.2f} s, build-layer {run.seconds:.2f} s")
        cases["arm64"] = {"sam": stats(sam_arm), "tool": stats(tool_arm), "image": args.arm64_image}

    results["total_seconds"] = time.time() - t_start
    results["machine"] = machine(image)
    write(results)


def image_present(image):
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode == 0


def machine(image):
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
        except Exception:
            return ""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_mb": mem, "kernel": platform.release(),
        "os": sh("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
        "docker": sh("docker", "version", "--format", "{{.Server.Version}}"),
        "image_id": sh("docker", "image", "inspect", "--format", "{{.Id}}", image),
        "sam": sh(str(SAM), "--version"), "zip": sh("sh", "-c", "zip -v | sed -n 2p"),
        "loadavg_end": open("/proc/loadavg").read().split()[:3],
    }


def fmt(v, unit="s"):
    if v is None:
        return "–"
    if unit == "s":
        return f"{v:.2f} s"
    if unit == "MB":
        return f"{v:.1f} MB"
    return f"{v:,} B"


def write(results):
    c = results["cases"]
    rows = []

    def row(key, label, other_label, other, tool, unit="s", ratio=True):
        kind, limit, text = TARGETS[key]
        ratio_v = (tool["median"] / other["median"]) if ratio and other and other.get("median") else None
        check_v = ratio_v if kind == "ratio" else tool["median"]
        ok = None if limit is None else (check_v is not None and check_v <= limit)
        if key == "zip":
            ok = ok and abs(c["zip"]["size_difference"]) <= 0.03
        rows.append({
            "case": label, "other": other_label,
            "other_min": other["min"] if other else None, "other_median": other["median"] if other else None,
            "tool_min": tool["min"], "tool_median": tool["median"], "ratio": ratio_v,
            "target": text, "met": ok, "unit": unit})

    row("cold", "1. cold build → zip (empty cache)", "sam build --use-container + zip", c["cold"]["sam"], c["cold"]["tool"])
    row("rebuild", "2. rebuild after one pin change (warm cache)", "sam build --use-container --cached + zip", c["rebuild"]["sam"], c["rebuild"]["tool"])
    row("noop", "3. no-op rebuild", "sam build --use-container --cached", c["noop"]["sam"], c["noop"]["tool"])
    row("overhead", "4. tool overhead (wall − buildspec phases)", "build-layer wall (cold)", c["overhead"]["wall"], c["overhead"]["tool"])
    if "overhead_parts" in c:
        row("overhead_parts", "4b. overhead without the import test (start, upload, download, extract, zip, static checks)",
            "build-layer --no-import-test wall (warm)", c["overhead_parts"]["wall"], c["overhead_parts"]["tool"])
    row("zip", "5. zip only (layer tree, 2 threads)", "zip -q -r -X", c["zip"]["infozip"], c["zip"]["tool"])
    if "warm" in c:
        w = c["warm"]
        parts = [w["start"]["median"], w["install"]["median"], c["zip"]["tool"]["median"]]
        floor = sum(p for p in parts if p is not None)
        w["unavoidable"] = {"container_start": parts[0], "install_from_warm_cache": parts[1],
                            "zip": parts[2], "sum": floor}
        unavoidable = {"min": floor, "median": floor}
        row("warm", "8. warm forced rebuild (build-layer --force) vs the sum of what no build avoids "
            f"(container start {fmt(parts[0])}, install from the warm cache {fmt(parts[1])}, "
            f"zip {fmt(parts[2])})", "that sum", unavoidable, w["tool"])
    row("rss", "6. peak RSS of build-layer (cold)", "–", None, c["rss"]["tool"], unit="MB", ratio=False)
    if "arm64" in c:
        row("arm64", "9. python3.9-arm64 cell, cold, emulated by QEMU (build-layer --cells, empty cache)",
            "sam build --use-container + zip, same arm64 image", c["arm64"]["sam"], c["arm64"]["tool"])
    if "deploy" in c:
        d = c["deploy"]
        rows.append({"case": "7. deploy, unchanged layer (moto)", "other": "first deploy (publish)",
                     "other_min": d["first"]["seconds"], "other_median": d["first"]["seconds"],
                     "tool_min": d["tool"]["min"], "tool_median": d["tool"]["median"],
                     "ratio": d["tool"]["median"] / d["first"]["seconds"],
                     "target": "0 bytes uploaded", "unit": "s",
                     "met": all(b == 0 for b in d["bytes_uploaded"]),
                     "note": f"bytes uploaded: {d['bytes_uploaded']} (first deploy: {d['first']['bytes_uploaded']:,})"})
    results["table"] = rows

    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mb'] // 1024} GB, {m['os']}, "
             f"Docker {m['docker']}; image `{results['image']}`; {m['sam']}; {results['runs']} run(s) "
             f"per case (min / median); load average at the end {' '.join(m['loadavg_end'])}.", "",
             "| case | compared with | other (min / median) | build-layer (min / median) | ratio (median) | target | met |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        u = r["unit"]
        other = f"{fmt(r['other_min'], u)} / {fmt(r['other_median'], u)}" if r["other_median"] is not None else "–"
        ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else "–"
        target = r["target"] + (f"; {r['note']}" if r.get("note") else "")
        lines.append(f"| {r['case']} | {r['other']} | {other} | {fmt(r['tool_min'], u)} / "
                     f"{fmt(r['tool_median'], u)} | {ratio} | {target} | {'–' if r['met'] is None else 'yes' if r['met'] else '**no**'} |")
    z = c["zip"]
    lines += ["",
              f"Zip sizes (layer tree, {z['files']} files, {z['unzipped_bytes']:,} B): build-layer "
              f"{z['tool_zip_bytes']:,} B ({z['tool_ratio']:.3f}), Info-ZIP {z['infozip_zip_bytes']:,} B "
              f"({z['infozip_ratio']:.3f}): {z['size_difference'] * 100:+.1f} %.",
              f"Packages (dist-info directories) in SAM's layer and build-layer's zip are the same: "
              f"{results['packages']['same']} ({len(results['packages']['tool'])}).",
              "Where build-layer's cold-build time goes (median s): " + ", ".join(
                  f"{k.split(' ')[0]} {v:.2f}" for k, v in c["overhead"]["parts_median"].items()) + "."]
    if "warm" in c:
        medians = {}
        for k in c["warm"]["parts"][0]:
            vals = [p[k] for p in c["warm"]["parts"] if p[k] is not None]
            medians[k] = statistics.median(vals) if vals else None
        lines.append("Where a warm forced rebuild's time goes (median s): " + ", ".join(
            f"{k} {v:.2f}" for k, v in medians.items() if v is not None) + ".")
    if "zip_sam_tree" in c:
        s = c["zip_sam_tree"]
        lines.append(f"Zip on SAM's layer tree ({s['files']} files, {s['unzipped_bytes']:,} B): build-layer "
                     f"{fmt(s['tool']['median'])} vs Info-ZIP {fmt(s['infozip']['median'])} "
                     f"({s['tool']['median'] / s['infozip']['median']:.2f}×), size {s['size_difference'] * 100:+.1f} %.")
    text = "\n".join(lines) + "\n"
    BENCH.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    for path in [BENCH / "latest.json", BENCH / f"results-{stamp}.json"]:
        path.write_text(json.dumps(results, indent=2) + "\n")
    (BENCH / "latest.md").write_text(text)
    print(text)
    print(f"JSON: {BENCH / 'latest.json'} (and results-{stamp}.json); logs: {BENCH / 'logs'}; "
          f"took {results['total_seconds']:.0f} s")


if __name__ == "__main__":
    main()
