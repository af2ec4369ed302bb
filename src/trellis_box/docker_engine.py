"""The one way to the Docker engine for ``swap``, ``status`` and ``publish``: a checked client, and
engine failures as :class:`DockerEngineError` naming what was being done."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import docker.errors

from trellis_box.errors import DockerEngineError


@contextmanager
def engine_call(action: str, **facts: Any) -> Iterator[None]:
    """Turn the SDK's errors raised inside into one naming ``action`` ("failed to <action>")."""
    try:
        yield
    except docker.errors.DockerException as exc:
        raise DockerEngineError(
            f"the Docker engine failed to {action}",
            detail=str(exc),
            fix="check that dockerd runs and this user may use it: docker info",
            **facts,
        ) from exc


def docker_client(*, timeout: float) -> docker.DockerClient:
    """A client from the environment (``DOCKER_HOST``, else the local socket), pinged once so
    an absent engine fails here, by name, rather than at the first real call. ``timeout``: the
    longest single API call (a push of a large layer needs minutes)."""
    with engine_call("answer (DOCKER_HOST or /var/run/docker.sock)"):
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    return client
