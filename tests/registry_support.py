"""A real Docker registry and the ECR API on loopback, for the publish tests.

- ``ecr_api``: moto's server (``ThreadedMotoServer``) on 127.0.0.1, the ECR API emulated, with
  fixed test credentials in the environment of the test (``aws_env``).
- ``registry``: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1 requiring basic auth
  with exactly the user and password that moto's authorization token decodes to, so a publish
  really logs in with the ECR token. ``start_registry`` makes more (e.g. with other credentials).
  dockerd speaks plain HTTP to 127.0.0.0/8 registries, so no TLS is needed.
Both fail the test, never skip, when they cannot start.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.components import REGISTRY_BINARY, require

START_TIMEOUT = 60.0
REGION = "us-east-1"
_MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
])


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT, as docker names it
    username: str
    password: str
    process: subprocess.Popen[bytes]
    log: Path

    def _get(self, path: str, *, accept: str | None = None) -> tuple[dict[str, str], bytes]:
        request = urllib.request.Request(f"http://{self.host}{path}")
        basic = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
        if accept:
            request.add_header("Accept", accept)
        with urllib.request.urlopen(request, timeout=30) as resp:
            return dict(resp.headers), resp.read()

    def manifest_digest(self, repository: str, tag: str) -> str:
        """The digest the registry serves for ``repository:tag`` (``Docker-Content-Digest``)."""
        headers, _ = self._get(f"/v2/{repository}/manifests/{tag}", accept=_MANIFEST_TYPES)
        return headers["Docker-Content-Digest"]

    def tags(self, repository: str) -> list[str]:
        _, body = self._get(f"/v2/{repository}/tags/list")
        return sorted(json.loads(body)["tags"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_registry(root: Path, username: str, password: str) -> Registry:
    """Start ``docker-registry`` under ``root`` with one htpasswd user; wait until it answers."""
    require("docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = subprocess.run(["htpasswd", "-nbB", username, password], check=True,
                              capture_output=True, text=True).stdout
    (root / "htpasswd").write_text(htpasswd)
    port = _free_port()
    config = root / "config.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(json.dumps({
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")},
                    "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "trellis-box-tests"},
        "auth": {"htpasswd": {"realm": "trellis-box-tests", "path": str(root / "htpasswd")}},
    }))
    log = root / "registry.log"
    with log.open("wb") as sink:
        process = subprocess.Popen([REGISTRY_BINARY, "serve", str(config)], stdout=sink,
                                   stderr=subprocess.STDOUT)
    registry = Registry(f"127.0.0.1:{port}", username, password, process, log)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"docker-registry exited with {process.returncode}:\n{log.read_text()}")
        try:
            urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=2)
            pytest.fail("the test registry answered /v2/ without credentials")
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                return registry
        except OSError:
            pass
        if time.monotonic() > deadline:
            stop_registry(registry)
            pytest.fail(f"docker-registry did not answer within {START_TIMEOUT:g} s:\n"
                        f"{log.read_text()}")
        time.sleep(0.1)


def stop_registry(registry: Registry) -> None:
    registry.process.terminate()
    try:
        registry.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        registry.process.kill()
        registry.process.wait()


@dataclass(frozen=True)
class EcrApi:
    endpoint_url: str

    def client(self) -> Any:
        return boto3.client("ecr", region_name=REGION, endpoint_url=self.endpoint_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def registry_credentials(self) -> tuple[str, str]:
        """What the ECR token decodes to (moto's own answer, not a copy of its formula)."""
        token = self.client().get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
        return user, password


@pytest.fixture(scope="session")
def ecr_api() -> Iterator[EcrApi]:
    # Imported here: moto's server pulls in Flask, and this module loads in every test session.
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    try:
        server.start()
    except OSError as exc:
        pytest.fail(f"moto server did not start on 127.0.0.1: {exc}")
    host, port = server.get_host_and_port()
    yield EcrApi(f"http://{host}:{port}")
    server.stop()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, ecr_api: EcrApi, tmp_path: Path) -> EcrApi:
    """Test credentials and region for boto3, ECR pointed at moto, no user AWS files, no IMDS."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", ecr_api.endpoint_url)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return ecr_api


@pytest.fixture(scope="session")
def registry(ecr_api: EcrApi, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry that accepts only the credentials in moto's ECR token."""
    username, password = ecr_api.registry_credentials()
    started = start_registry(tmp_path_factory.mktemp("registry"), username, password)
    yield started
    stop_registry(started)
