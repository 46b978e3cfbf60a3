#!/usr/bin/env python3
"""A CodeBuild API stand-in for the tests of `build-layer --remote`, on 127.0.0.1 only.

moto's CodeBuild keeps only a StartBuild's artifacts override and marks every build SUCCEEDED
at once: it can neither check what was sent nor run anything. This server speaks CodeBuild's
JSON 1.1 protocol for the calls `--remote` makes (StartBuild with its overrides,
BatchGetBuilds, StopBuild; for `--remote --matrix` StartBuildBatch with a buildspec `batch:
build-list:`, BatchGetBuildBatches, StopBuildBatch) and runs each started build for real: it fetches the source zip from
S3 (moto), runs the buildspec override with the local Docker executor (`xtask build-layer`) in
the image override, writes the log lines to CloudWatch Logs (moto) as they come, uploads the
artifact to S3 where CodeBuild would put it, and reports phases and status as CodeBuild does.

    codebuild-standin.py --xtask PATH --project NAME [--port 0]   # prints "listening on PORT"

S3 and Logs are reached through AWS_ENDPOINT_URL (moto). Deviation from CodeBuild: the artifact
zip is the layer zip `build-layer` made from the selected files (CodeBuild zips them itself);
its content is the same tree. With namespaceType BUILD_ID an artifact zip goes to
<path>/<build uuid>/<name>, and every build reports where its zip went. A batch reports a
DOWNLOAD_SOURCE build group before its builds, as CodeBuild does.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import yaml

PHASES = ["SUBMITTED", "QUEUED", "PROVISIONING", "DOWNLOAD_SOURCE", "INSTALL", "PRE_BUILD",
          "BUILD", "POST_BUILD", "UPLOAD_ARTIFACTS", "FINALIZING", "COMPLETED"]
TARGET_PREFIX = "CodeBuild_20161006."


class Build:
    def __init__(self, project, request, account, region):
        self.uuid = str(uuid.uuid4())
        self.id = f"{project}:{self.uuid}"
        self.arn = f"arn:aws:codebuild:{region}:{account}:build/{self.id}"
        self.project = project
        self.request = request
        self.status = "IN_PROGRESS"
        self.complete = False
        self.current = "SUBMITTED"
        self.phases = []
        self.started = time.time()
        self.ended = None
        self.process = None
        self.stopped = False
        self.log_group = f"/aws/codebuild/{project}"
        self.log_stream = self.uuid
        self.artifact_location = None
        self.secondary_locations = []
        self.lock = threading.Lock()

    def describe(self):
        with self.lock:
            build = {
                "id": self.id,
                "arn": self.arn,
                "buildNumber": 1,
                "startTime": self.started,
                "currentPhase": self.current,
                "buildStatus": self.status,
                "projectName": self.project,
                "phases": list(self.phases),
                "source": {"type": "S3", "location": self.request.get("sourceLocationOverride", "")},
                "environment": {"type": self.request.get("environmentTypeOverride", "LINUX_CONTAINER"), "image": self.request.get("imageOverride", ""),
                                "computeType": self.request.get("computeTypeOverride", "BUILD_GENERAL1_SMALL")},
                "logs": {"groupName": self.log_group, "streamName": self.log_stream},
                "timeoutInMinutes": self.request.get("timeoutInMinutesOverride", 60),
                "buildComplete": self.complete,
                "initiator": "codebuild-standin",
            }
            if self.ended:
                build["endTime"] = self.ended
            if self.artifact_location:
                build["artifacts"] = {"location": self.artifact_location}
            if self.secondary_locations:
                build["secondaryArtifacts"] = list(self.secondary_locations)
            return build

    def enter(self, phase, status=None, seconds=0):
        with self.lock:
            if self.phases and "endTime" not in self.phases[-1]:
                self.phases[-1]["endTime"] = time.time()
                self.phases[-1].setdefault("phaseStatus", "SUCCEEDED")
            entry = {"phaseType": phase, "startTime": time.time()}
            if status:
                entry["phaseStatus"] = status
                entry["durationInSeconds"] = seconds
                entry["endTime"] = time.time()
            self.phases.append(entry)
            self.current = phase


class Batch:
    """A batch build: a DOWNLOAD_SOURCE step, then one build per build-list entry, at once."""

    def __init__(self, project, account, region):
        self.uuid = str(uuid.uuid4())
        self.id = f"{project}:{self.uuid}"
        self.arn = f"arn:aws:codebuild:{region}:{account}:build-batch/{self.id}"
        self.project = project
        self.builds = []  # (identifier, Build)
        self.status = "IN_PROGRESS"
        self.complete = False
        self.stopped = False
        self.lock = threading.Lock()

    def describe(self):
        with self.lock:
            source = {"identifier": "DOWNLOAD_SOURCE", "dependsOn": [], "ignoreFailure": False,
                      "currentBuildSummary": {"arn": self.arn.replace("build-batch/", "build/") + "-source",
                                              "buildStatus": "SUCCEEDED"}}
            groups = [source]
            for identifier, build in self.builds:
                summary = build.describe()
                current = {"arn": summary["arn"], "buildStatus": summary["buildStatus"]}
                if "artifacts" in summary:
                    current["primaryArtifact"] = {"type": "S3", "location": summary["artifacts"]["location"]}
                groups.append({"identifier": identifier, "dependsOn": [], "ignoreFailure": False,
                               "currentBuildSummary": current})
            return {"id": self.id, "arn": self.arn, "projectName": self.project,
                    "buildBatchStatus": self.status, "complete": self.complete,
                    "currentPhase": "SUCCEEDED" if self.complete else "IN_PROGRESS",
                    "phases": [{"phaseType": "SUBMITTED", "phaseStatus": "SUCCEEDED"}],
                    "buildGroups": groups}


class Server:
    def __init__(self, args):
        self.args = args
        self.builds = {}
        self.batches = {}
        self.s3 = boto3.client("s3")
        self.logs = boto3.client("logs")
        self.region = self.s3.meta.region_name or "us-east-1"

    # --- the three calls ------------------------------------------------------------------------
    def start_build(self, body):
        project = self.checked_project(body)
        build = Build(project, body, "123456789012", self.region)
        self.builds[build.id] = build
        threading.Thread(target=self.run, args=(build,), daemon=True).start()
        return {"build": build.describe()}

    def checked_project(self, body):
        """The request's project, which must be this stand-in's, with an S3 source override."""
        project = body.get("projectName")
        if project != self.args.project:
            raise ApiError(400, "ResourceNotFoundException", f"Project cannot be found: arn:aws:codebuild:{self.region}:123456789012:project/{project}")
        if body.get("sourceTypeOverride") != "S3" or "/" not in body.get("sourceLocationOverride", ""):
            raise ApiError(400, "InvalidInputException", "sourceLocationOverride must be bucket/key with sourceTypeOverride S3")
        return project

    def batch_get_builds(self, body):
        ids = body.get("ids", [])
        found = [self.builds[i].describe() for i in ids if i in self.builds]
        missing = [i for i in ids if i not in self.builds]
        return {"builds": found, "buildsNotFound": missing}

    def stop_build(self, body):
        build = self.builds.get(body.get("id"))
        if build is None:
            raise ApiError(400, "ResourceNotFoundException", f"Build {body.get('id')} not found")
        build.stopped = True
        if build.process and build.process.poll() is None:
            build.process.send_signal(signal.SIGINT)
        return {"build": build.describe()}

    def start_build_batch(self, body):
        project = self.checked_project(body)
        if self.args.no_batch_config:
            raise ApiError(400, "InvalidInputException", "Batch build is not enabled for project: the project has no build batch configuration")
        try:
            spec = yaml.safe_load(body.get("buildspecOverride", "")) or {}
        except yaml.YAMLError as e:
            raise ApiError(400, "InvalidInputException", f"the buildspec override is not YAML: {e}")
        entries = (spec.get("batch") or {}).get("build-list")
        if not isinstance(entries, list) or not entries:
            raise ApiError(400, "InvalidInputException", "the stand-in runs a batch.build-list only")
        batch = Batch(project, "123456789012", self.region)
        for entry in entries:
            identifier = str(entry.get("identifier", ""))
            if not identifier or not all(c.isalnum() or c == "_" for c in identifier):
                raise ApiError(400, "InvalidInputException", f"invalid build identifier {identifier!r}")
            batch.builds.append((identifier, Build(project, self.child_request(body, identifier, entry), "123456789012", self.region)))
        self.batches[batch.id] = batch
        for _, build in batch.builds:
            self.builds[build.id] = build
        threading.Thread(target=self.run_batch, args=(batch,), daemon=True).start()
        return {"buildBatch": batch.describe()}

    def child_request(self, body, identifier, entry):
        """A batch build's own request: the batch's overrides with its entry's env over them."""
        env = entry.get("env") or {}
        request = {k: v for k, v in body.items() if k not in ("buildTimeoutInMinutesOverride", "buildBatchConfigOverride")}
        request["timeoutInMinutesOverride"] = body.get("buildTimeoutInMinutesOverride", 60)
        if env.get("image"):
            request["imageOverride"] = env["image"]
        if env.get("type"):
            request["environmentTypeOverride"] = env["type"]
        variables = {v["name"]: v for v in body.get("environmentVariablesOverride", [])}
        for name, value in (env.get("variables") or {}).items():
            variables[str(name)] = {"name": str(name), "value": str(value), "type": "PLAINTEXT"}
        request["environmentVariablesOverride"] = list(variables.values())
        return request

    def run_batch(self, batch):
        threads = [threading.Thread(target=self.run, args=(build,), daemon=True) for _, build in batch.builds]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with batch.lock:
            statuses = [build.status for _, build in batch.builds]
            if batch.stopped:
                batch.status = "STOPPED"
            elif all(s == "SUCCEEDED" for s in statuses):
                batch.status = "SUCCEEDED"
            else:
                batch.status = "FAILED"
            batch.complete = True

    def batch_get_build_batches(self, body):
        ids = body.get("ids", [])
        found = [self.batches[i].describe() for i in ids if i in self.batches]
        missing = [i for i in ids if i not in self.batches]
        return {"buildBatches": found, "buildBatchesNotFound": missing}

    def stop_build_batch(self, body):
        batch = self.batches.get(body.get("id"))
        if batch is None:
            raise ApiError(400, "ResourceNotFoundException", f"Batch build {body.get('id')} not found")
        with batch.lock:
            batch.stopped = True
        for _, build in batch.builds:
            self.stop_build({"id": build.id})
        return {"buildBatch": batch.describe()}

    # --- running a build ------------------------------------------------------------------------
    def run(self, build):
        work = tempfile.mkdtemp(prefix="codebuild-standin-")
        try:
            self.run_phases(build, work)
        except Exception as e:  # a fault of the stand-in is CodeBuild's FAULT
            self.log(build, [f"[Container] stand-in fault: {e}"])
            with build.lock:
                build.status = "FAULT"
        finally:
            shutil.rmtree(work, ignore_errors=True)
            build.enter("COMPLETED")
            with build.lock:
                build.complete = True
                build.ended = time.time()
                if build.status == "IN_PROGRESS":
                    build.status = "SUCCEEDED"

    def run_phases(self, build, work):
        request = build.request
        self.logs.create_log_stream(logGroupName=build.log_group, logStreamName=build.log_stream)
        build.enter("SUBMITTED", "SUCCEEDED")
        build.enter("QUEUED", "SUCCEEDED")
        build.enter("PROVISIONING", "SUCCEEDED")
        build.enter("DOWNLOAD_SOURCE")
        bucket, key = request["sourceLocationOverride"].split("/", 1)
        source_zip = os.path.join(work, "source.zip")
        self.s3.download_file(bucket, key, source_zip)
        src = os.path.join(work, "src")
        with zipfile.ZipFile(source_zip) as z:
            z.extractall(src)
        buildspec = os.path.join(src, "buildspec.yml")
        if request.get("buildspecOverride"):
            with open(buildspec, "w") as f:
                f.write(request["buildspecOverride"])
        out = os.path.join(work, "out")
        command = [self.args.xtask, "build-layer", "--source", src, "--buildspec", buildspec,
                   "--out-dir", out, "--json", "--force", "--no-import-test"]
        if request.get("imageOverride"):
            command += ["--image", request["imageOverride"]]
        # CodeBuild runs ARM_CONTAINER builds on ARM compute (here the local daemon emulates it)
        # and LINUX_CONTAINER ones on x86_64, whatever the source says.
        arm = request.get("environmentTypeOverride") == "ARM_CONTAINER"
        command += ["--arch", "arm64" if arm else "x86_64"]
        if request.get("timeoutInMinutesOverride"):
            command += ["--timeout-minutes", str(request["timeoutInMinutesOverride"])]
        # In a file, never on a command line (values may be secrets).
        env_file = os.path.join(work, "env")
        with open(env_file, "w") as f:
            for variable in request.get("environmentVariablesOverride", []):
                if variable.get("type", "PLAINTEXT") != "PLAINTEXT":
                    raise ApiError(400, "InvalidInputException", "only PLAINTEXT variables in the stand-in")
                if "\n" in variable["value"]:
                    raise ApiError(400, "InvalidInputException", "a multi-line value in the stand-in")
                f.write(f"{variable['name']}={variable['value']}\n")
        command += ["--env-file", env_file]
        # CodeBuild runs whatever Python the image has; the local executor would otherwise hold
        # the build to the template's first runtime.
        runtime = [v["value"] for v in request.get("environmentVariablesOverride", []) if v["name"] == "LAYER_RUNTIME"]
        if runtime:
            command += ["--runtime", runtime[0]]
        build.enter("INSTALL")
        build.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        stdout = []
        reader = threading.Thread(target=lambda: stdout.append(build.process.stdout.read()), daemon=True)
        reader.start()
        batch = []
        for line in build.process.stderr:
            batch.append(line.rstrip("\n"))
            if len(batch) >= 1:
                self.log(build, batch)
                batch = []
        self.log(build, batch)
        build.process.wait()
        reader.join()
        summary = json.loads("".join(stdout) or "{}")
        self.record_phases(build, summary)
        if build.stopped:
            with build.lock:
                build.status = "STOPPED"
            return
        if summary.get("status") != "SUCCEEDED":
            with build.lock:
                build.status = "FAILED"
            return
        build.enter("UPLOAD_ARTIFACTS")
        artifacts = request.get("artifactsOverride", {})
        if artifacts.get("type") == "S3" and summary.get("zip"):
            location = self.upload(build, artifacts, summary["zip"])
            with build.lock:
                build.artifact_location = location
        zips = {s["identifier"]: s["zip"] for s in summary.get("secondary_artifacts", [])}
        for override in request.get("secondaryArtifactsOverride", []):
            identifier = override.get("artifactIdentifier")
            if override.get("type") == "S3" and identifier in zips:
                location = self.upload(build, override, zips[identifier])
                with build.lock:
                    build.secondary_locations.append({"artifactIdentifier": identifier, "location": location})
        build.enter("FINALIZING")

    def upload(self, build, artifacts, zip_path):
        """One artifact zip where its override puts it; its location as CodeBuild reports it."""
        namespace = build.uuid if artifacts.get("namespaceType") == "BUILD_ID" else ""
        key = "/".join(p for p in [artifacts.get("path", ""), namespace, artifacts.get("name", "artifact.zip")] if p)
        self.s3.upload_file(zip_path, artifacts["location"], key)
        return f"arn:aws:s3:::{artifacts['location']}/{key}"

    def record_phases(self, build, summary):
        names = {"install": "INSTALL", "pre_build": "PRE_BUILD", "build": "BUILD", "post_build": "POST_BUILD"}
        with build.lock:
            build.phases = [p for p in build.phases if p["phaseType"] != "INSTALL"]
        for phase in summary.get("phases", []):
            name = names.get(str(phase.get("phase", "")).lower())
            if name:
                build.enter(name, phase.get("status"), int(phase.get("duration_ms", 0) / 1000))

    def log(self, build, lines):
        if not lines:
            return
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in lines]
        self.logs.put_log_events(logGroupName=build.log_group, logStreamName=build.log_stream, logEvents=events)


class ApiError(Exception):
    def __init__(self, status, kind, message):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


def handler(server):
    calls = {"StartBuild": server.start_build, "BatchGetBuilds": server.batch_get_builds,
             "StopBuild": server.stop_build, "StartBuildBatch": server.start_build_batch,
             "BatchGetBuildBatches": server.batch_get_build_batches,
             "StopBuildBatch": server.stop_build_batch}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            target = self.headers.get("X-Amz-Target", "")
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            call = calls.get(target.removeprefix(TARGET_PREFIX))
            try:
                if call is None:
                    raise ApiError(400, "InvalidAction", f"not in the stand-in: {target}")
                status, answer = 200, call(body)
            except ApiError as e:
                status, answer = e.status, {"__type": e.kind, "message": e.message}
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    return Handler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xtask", required=True)
    ap.add_argument("--project", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--no-batch-config", action="store_true",
                    help="refuse StartBuildBatch as CodeBuild does for a project without BuildBatchConfig")
    args = ap.parse_args()
    server = Server(args)
    try:
        server.logs.create_log_group(logGroupName=f"/aws/codebuild/{args.project}")
    except server.logs.exceptions.ResourceAlreadyExistsException:
        pass
    http = ThreadingHTTPServer(("127.0.0.1", args.port), handler(server))
    print(f"listening on {http.server_address[1]}", flush=True)
    http.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
