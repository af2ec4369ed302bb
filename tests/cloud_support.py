"""AWS on loopback for the storage and cloud tests: the moto server the publish tests start
(``ecr_api``), here for S3, IAM and Batch too, reached the standard way (``AWS_ENDPOINT_URL``).

Batch runs without Docker (moto's ``use_docker: False``): a submitted job is accepted, validated
and marked SUCCEEDED without running a container; the children themselves are run by the tests.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
import pytest

from tests.registry_support import REGION, EcrApi


@dataclass(frozen=True)
class Aws:
    endpoint_url: str

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, prefix: str = "tb") -> str:
        """A new, empty bucket of this test (the server lives for the whole session)."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        self.client("s3").create_bucket(Bucket=name)
        return name

    def put(self, url: str, data: bytes) -> None:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=data)

    def upload_folder(self, folder: Path, url: str) -> None:
        for path in sorted(folder.iterdir()):
            self.put(f"{url.rstrip('/')}/{path.name}", path.read_bytes())

    def get(self, url: str) -> bytes:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        body: bytes = self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def job_queue(self) -> str:
        """An enabled job queue on an unmanaged compute environment (moto needs its role)."""
        tag = uuid.uuid4().hex[:10]
        role = self.client("iam").create_role(
            RoleName=f"batch-service-{tag}", AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                        "Principal": {"Service": "batch.amazonaws.com"}}]}),
        )["Role"]["Arn"]
        batch = self.client("batch")
        env = batch.create_compute_environment(computeEnvironmentName=f"gpu-{tag}", type="UNMANAGED",
                                               state="ENABLED", serviceRole=role)
        name = f"queue-{tag}"
        batch.create_job_queue(jobQueueName=name, state="ENABLED", priority=1, computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": env["computeEnvironmentArn"]}])
        return name


class HeldRequest:
    """A TCP relay to the moto server that holds every request whose bytes hold ``marker`` (``PUT
    /bucket/key ``) until the test lets it through or drops its connection: an upload stays in
    flight for exactly as long as a test needs, on real sockets, with boto3 unaware.

    A held request has not reached moto (it is held before its first byte is passed on, unless
    its request line straddles two reads). After :meth:`drop` every later request naming it is
    dropped as well (boto3's retries), after :meth:`let_through` every one passes.

    A hold lasts ``hold_at_most`` seconds at most, then every request passes and :attr:`ran_out`
    is set: code that waits on the held request with the event loop blocked makes its test fail
    (the test's own checks run again once the hold ends) instead of hanging it.
    """

    def __init__(self, upstream: str, marker: bytes, *, hold_at_most: float = 20.0) -> None:
        target = urllib.parse.urlsplit(upstream)
        assert target.hostname and target.port, upstream
        self._upstream = (target.hostname, target.port)
        self._marker = marker
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        #: Set when a request naming the marker arrived and is being held.
        self.holding = threading.Event()
        #: Set when a hold lasted ``hold_at_most`` before the test decided.
        self.ran_out = threading.Event()
        self._hold_at_most = hold_at_most
        self._decided = threading.Event()
        self._drop = False
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, name="held-request", daemon=True).start()

    def let_through(self) -> None:
        self._decided.set()

    def drop(self) -> None:
        self._drop = True
        self._decided.set()

    def close(self) -> None:
        self._decided.set()
        for sock in [self._listener, *self._open]:
            _close(sock)

    def __enter__(self) -> HeldRequest:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
                server = socket.create_connection(self._upstream)
            except OSError:
                return  # closed
            self._open += [client, server]
            threading.Thread(target=self._pump, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, watched: bool) -> None:
        tail = b""  # the marker may straddle two reads
        try:
            while data := source.recv(65536):
                if watched and self._marker in tail + data:
                    self.holding.set()
                    if not self._decided.wait(self._hold_at_most):
                        self.ran_out.set()
                        self._decided.set()
                    if self._drop:
                        break
                sink.sendall(data)
                tail = data[-len(self._marker):]
        except OSError:
            pass  # the other side or close() ended the connection
        finally:
            _close(source)
            _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.fixture
def aws(aws_env: EcrApi, monkeypatch: pytest.MonkeyPatch) -> Aws:
    """Test credentials (``aws_env``) and every service at the moto server."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_env.endpoint_url)
    request = urllib.request.Request(f"{aws_env.endpoint_url}/moto-api/config", method="POST",
                                     data=json.dumps({"batch": {"use_docker": False}}).encode())
    urllib.request.urlopen(request, timeout=30).close()
    return Aws(aws_env.endpoint_url)
