"""Docker fixtures shared by the swap, publish and image tests.

The engine is started by ``.ci/run`` (or by you: ``dockerd --bridge=none --iptables=false
--ip6tables=false &``). No registry is reachable here, so the base image for test containers is
made locally with debootstrap and ``docker import``, once per machine.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.components import require

BASE_IMAGE = "trellis-box-test/base:bookworm"
# What test images need: Python with aiohttp and Pillow for the ComfyUI stand-in, pip and venv to
# install our package at build time, tini for signal handling comparisons, CA certificates for pip.
BASE_PACKAGES = [
    "python3", "python3-aiohttp", "python3-pil", "python3-pip", "python3-venv",
    "ca-certificates", "tini",
]
DEBIAN_MIRROR = os.environ.get("TRELLIS_BOX_TEST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DOCKER_CLI = "/usr/bin/docker"  # the docker.io client: the other one on PATH lacks buildx
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"


def docker_cli() -> str:
    return DOCKER_CLI if Path(DOCKER_CLI).exists() else "docker"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    require("docker")
    client = docker.from_env(timeout=300)
    yield client
    client.close()


def ensure_base_image(client: docker.DockerClient) -> str:
    """Build :data:`BASE_IMAGE` with debootstrap unless it exists; return its name."""
    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    require("debootstrap")
    with tempfile.TemporaryDirectory(prefix="tb-rootfs-") as root:
        subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             "bookworm", root, DEBIAN_MIRROR],
            check=True, stdout=subprocess.DEVNULL,
        )
        subprocess.run(["rm", "-rf", f"{root}/var/cache/apt/archives", f"{root}/var/lib/apt/lists"],
                       check=True)
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run([docker_cli(), "import", "-", BASE_IMAGE], stdin=tar.stdout, check=True,
                       stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            pytest.fail("tar of the debootstrap root failed")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    return ensure_base_image(docker_client)


def buildkit_build(context: Path, tag: str, *extra: str, dockerfile: str | None = None,
                   env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``docker build`` with BuildKit and the host CA as a secret (pip inside builds needs it)."""
    cmd = [docker_cli(), "build", "--network", "host", "-t", tag,
           "--secret", f"id=hostca,src={HOST_CA}"]
    if dockerfile:
        cmd += ["-f", dockerfile]
    cmd += [*extra, str(context)]
    return subprocess.run(cmd, capture_output=True, text=True,
                          env={**os.environ, "DOCKER_BUILDKIT": "1", **(env or {})})
