"""The Docker side of ``swap`` and ``status``: observe, create, start, stop, read logs.

The only module of swap that imports the docker SDK. Every engine failure becomes a
:class:`DockerEngineError` naming the operation and the container.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import docker
import docker.errors
from docker.models.containers import Container
from docker.types import DeviceRequest

from trellis_box.docker_engine import docker_client, engine_call
from trellis_box.errors import DockerEngineError
from trellis_box.swap.config import ContainerSpec, GpuConfig

MANAGED_LABEL = "io.trellis-box.managed"
GROUP_LABEL = "io.trellis-box.swap.group"
NAME_LABEL = "io.trellis-box.swap.name"
SPEC_LABEL = "io.trellis-box.swap.spec-digest"
# Kept on the container so a container whose config entry was deleted can still be drained.
COMFY_URL_LABEL = "io.trellis-box.swap.comfy-url"
READY_URL_LABEL = "io.trellis-box.swap.ready-url"


@dataclass(frozen=True)
class Observed:
    """One container as the engine reports it."""

    container_name: str
    name: str | None  # the config entry it was created from
    status: str  # Docker's: created, running, paused, restarting, exited, dead
    managed: bool
    image: str
    spec_digest: str | None
    comfy_url: str | None
    ready_url: str | None
    started_at: datetime | None
    exit_code: int | None

    @property
    def running(self) -> bool:
        return self.status == "running"


class DockerOps:
    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client

    @classmethod
    def from_env(cls) -> DockerOps:
        return cls(docker_client(timeout=120))

    def observe(self, config: GpuConfig) -> list[Observed]:
        """The group's managed containers and any container whose name the config uses, config
        order first."""
        wanted = {spec.container_name for spec in config.containers.values()}
        labels = [f"{MANAGED_LABEL}=true", f"{GROUP_LABEL}={config.swap.group}"]
        with engine_call("list containers"):
            found = {c.name: c for c in self.client.containers.list(
                all=True, filters={"label": labels}, ignore_removed=True)}
            for name in wanted - found.keys():
                container = self._get(name)
                if container is not None:
                    found[name] = container
        order = [s.container_name for s in config.containers.values()]
        ranked = sorted(found, key=lambda n: (order.index(n) if n in order else len(order), n))
        return [self._describe(found[name]) for name in ranked]

    def get(self, container_name: str) -> Observed | None:
        with engine_call(f"inspect {container_name}"):
            container = self._get(container_name)
        return None if container is None else self._describe(container)

    def image_present(self, image: str) -> bool:
        with engine_call(f"inspect image {image}"):
            try:
                self.client.images.get(image)
                return True
            except docker.errors.ImageNotFound:
                return False

    def create(self, spec: ContainerSpec, group: str) -> None:
        labels = {MANAGED_LABEL: "true", GROUP_LABEL: group, NAME_LABEL: spec.name,
                  SPEC_LABEL: spec.digest(),
                  COMFY_URL_LABEL: spec.comfy_url, READY_URL_LABEL: spec.ready_url}
        with engine_call(f"create {spec.container_name} from {spec.image}"):
            self.client.containers.create(
                spec.image,
                command=list(spec.command) if spec.command is not None else None,
                name=spec.container_name,
                labels=labels,
                environment=spec.environment,
                network_mode=spec.network,
                ports=_ports(spec.ports) or None,
                volumes=list(spec.volumes),
                device_requests=_gpu_request(spec.gpus),
                detach=True,
            )

    def start(self, container_name: str) -> None:
        with engine_call(f"start {container_name}"):
            self._require(container_name).start()

    def stop(self, container_name: str, timeout: float) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; a container already gone is stopped."""
        with engine_call(f"stop {container_name}"):
            container = self._get(container_name)
            if container is not None:
                container.stop(timeout=int(timeout))

    def remove(self, container_name: str) -> None:
        with engine_call(f"remove {container_name}"):
            container = self._get(container_name)
            if container is not None:
                container.remove(force=True)

    def logs(self, container_name: str, lines: int) -> list[str]:
        with engine_call(f"read the logs of {container_name}"):
            container = self._get(container_name)
            if container is None:
                return []
            text: str = container.logs(tail=lines).decode("utf-8", "replace")
        return text.splitlines()

    def _get(self, container_name: str) -> Container | None:
        try:
            return self.client.containers.get(container_name)
        except docker.errors.NotFound:
            return None

    def _require(self, container_name: str) -> Container:
        container = self._get(container_name)
        if container is None:
            raise DockerEngineError(
                f"container {container_name} does not exist",
                detail="it was removed while the swap ran",
                fix="run the swap again: it creates missing containers from the config",
                container=container_name,
            )
        return container

    @staticmethod
    def _describe(container: Container) -> Observed:
        attrs = container.attrs
        labels = attrs.get("Config", {}).get("Labels") or {}
        state = attrs.get("State", {})
        status = state.get("Status", container.status)
        started = _parse_time(state.get("StartedAt")) if status == "running" else None
        return Observed(
            container_name=container.name,
            name=labels.get(NAME_LABEL),
            status=status,
            managed=labels.get(MANAGED_LABEL) == "true",
            image=attrs.get("Config", {}).get("Image", ""),
            spec_digest=labels.get(SPEC_LABEL),
            comfy_url=labels.get(COMFY_URL_LABEL),
            ready_url=labels.get(READY_URL_LABEL),
            started_at=started,
            exit_code=state.get("ExitCode") if status == "exited" else None,
        )


def _ports(mappings: tuple[str, ...]) -> dict[str, object]:
    """``"IP:HOST:CONTAINER/proto"`` strings to the SDK's ``{"CONTAINER/proto": (IP, HOST)}``."""
    ports: dict[str, object] = {}
    for mapping in mappings:
        spec, _, proto = mapping.partition("/")
        parts = spec.split(":")
        key = f"{parts[-1]}/{proto or 'tcp'}"
        if len(parts) == 1:
            ports[key] = None
        elif len(parts) == 2:
            ports[key] = int(parts[0])
        else:
            ports[key] = (parts[0], int(parts[1]))
    return ports


def _gpu_request(gpus: str | int | tuple[str, ...]) -> list[DeviceRequest] | None:
    if gpus == "none":
        return None
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if isinstance(gpus, int):
        return [DeviceRequest(count=gpus, capabilities=[["gpu"]])]
    return [DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]])]


def _parse_time(value: str | None) -> datetime | None:
    """Docker's UTC nanosecond stamps (``2026-11-27T03:20:01.123456789Z``) to a datetime."""
    if not value or value.startswith("0001-"):
        return None
    head, _, fraction = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}+00:00")
