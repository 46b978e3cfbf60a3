"""Installs the `uv` binary of one uv release into DIR/bin/uv, straight from its wheel.

    python3 get_uv.py VERSION DIR

`pip install uv==VERSION` does the same in about 2 s, most of it pip starting up; this takes a
fraction of that, which matters on a cold build. It reads the package index's JSON API (PEP 691:
PyPI, or PIP_INDEX_URL), picks the manylinux wheel for this machine, checks the SHA-256 the index
lists, and moves the binary into place only once it is whole and runs. Anything unexpected (no
JSON API, credentials in the index URL, no such wheel, a wrong hash) exits non-zero and leaves
nothing behind, so the caller can fall back to pip.
"""

import hashlib
import io
import json
import os
import platform
import ssl
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile


def main(version, dest):
    index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/") + "/uv/"
    if "@" in urllib.parse.urlsplit(index).netloc:
        # pip knows how to send them; nothing of them may reach a log.
        raise ValueError("the index URL carries credentials: leaving it to pip")
    cafile = os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE") or None
    context = ssl.create_default_context(cafile=cafile)
    request = urllib.request.Request(
        index, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, context=context, timeout=15) as response:
        files = json.load(response)["files"]
    arch = platform.machine()
    name = f"uv-{version}-py3-none-manylinux_2_17_{arch}.manylinux2014_{arch}.whl"
    wheel = next((f for f in files if f["filename"] == name), None)
    if wheel is None:
        raise LookupError(f"the index lists no {name}")
    url = urllib.parse.urljoin(index, wheel["url"])
    with urllib.request.urlopen(url, context=context, timeout=15) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != wheel["hashes"]["sha256"]:
        raise ValueError(f"{name}: the SHA-256 differs from the index's")
    binary = zipfile.ZipFile(io.BytesIO(data)).read(f"uv-{version}.data/scripts/uv")

    bin_dir = os.path.join(dest, "bin")
    os.makedirs(bin_dir, exist_ok=True)
    handle, part = tempfile.mkstemp(dir=bin_dir, prefix=".uv-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(binary)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(part, 0o755)
        subprocess.run([part, "--version"], check=True, stdout=subprocess.DEVNULL)
        os.replace(part, os.path.join(bin_dir, "uv"))
    except BaseException:
        os.unlink(part)
        raise


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        main(*sys.argv[1:3])
    except Exception as error:  # the caller falls back to pip
        sys.exit(f"get_uv.py: {type(error).__name__}: {error}")
