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
import re
import ssl
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import zipfile


def glibc():
    """This machine's glibc version, `(2, 31)`; an error for another libc (musl)."""
    libc, version = platform.libc_ver()
    if libc != "glibc" or not version:
        raise LookupError("not a glibc system: no manylinux wheel fits")
    return tuple(int(part) for part in version.split(".")[:2])


def manylinux_version(tag, arch):
    """`(2, 28)` for `manylinux_2_28_<arch>`, `(2, 17)` for `manylinux2014_<arch>`, else None."""
    if tag == f"manylinux2014_{arch}":
        return (2, 17)
    match = re.fullmatch(r"manylinux_(\d+)_(\d+)_" + re.escape(arch), tag)
    return (int(match[1]), int(match[2])) if match else None


def best_wheel(files, version, arch, libc):
    """The release's manylinux wheel for `arch` that needs the newest glibc this one has (uv
    ships x86_64 for manylinux 2.17, aarch64 for 2.28), else its musllinux wheel: uv's musl
    builds are static, so they run on an older glibc too (Amazon Linux 2 on arm64 has 2.26). The
    binary is run before it is installed either way."""
    prefix = f"uv-{version}-py3-none-"
    best, best_version = None, None
    for entry in files:
        filename = entry["filename"]
        if not (filename.startswith(prefix) and filename.endswith(".whl")):
            continue
        for tag in filename[len(prefix):-len(".whl")].split("."):
            needs = manylinux_version(tag, arch)
            if needs and needs <= libc and (best_version is None or needs > best_version):
                best, best_version = entry, needs
    if best is None:
        musl = [e for e in files if e["filename"].startswith(prefix)
                and re.search(r"[._-]musllinux_\d+_\d+_" + re.escape(arch) + r"(\.|\.whl$)", e["filename"])]
        if musl:
            return musl[0]
        raise LookupError(f"the index lists no uv {version} wheel for {arch} with glibc {libc}")
    return best


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
    wheel = best_wheel(files, version, platform.machine(), glibc())
    name = wheel["filename"]
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
