"""The GPU containers file: the ComfyUI containers that take turns on this host's one GPU.

``swap`` and ``status`` read it; ``examples/gpu-containers.toml`` documents every key. Every error
names the file, the field (``containers.<name>.<key>``) and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from trellis_box.errors import GpuConfigError, UnknownContainerError

CONFIG_ENV = "TRELLIS_BOX_GPU_CONFIG"
DEFAULT_CONFIG = Path("/etc/trellis-box/gpu-containers.toml")

# Docker's own rule for container names.
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_PORT = re.compile(r"(?:(?:\d+\.\d+\.\d+\.\d+:)?\d+:)?\d+(?:/(?:tcp|udp))?")


@dataclass(frozen=True)
class ContainerSpec:
    """One GPU container: everything ``swap`` needs to create, start, drain and probe it."""

    name: str
    image: str
    container_name: str
    ready_url: str
    comfy_url: str
    command: tuple[str, ...] | None = None
    network: str | None = None
    ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    environment: dict[str, str] = field(default_factory=dict)
    # "all", a device count, or device ids; "none" runs without a GPU (CPU-only hosts, tests).
    gpus: str | int | tuple[str, ...] = "all"
    ready_timeout: float = 900.0
    stop_timeout: float = 60.0

    def digest(self) -> str:
        """A digest of what the container is created from, stored as a label: a changed config
        means a stopped container is re-created rather than restarted as it was."""
        created_from = {k: v for k, v in asdict(self).items()
                        if k not in ("ready_timeout", "stop_timeout", "ready_url", "comfy_url")}
        canonical = json.dumps(created_from, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class SwapSettings:
    lock_file: Path
    # The containers of one group share one GPU; a host with two GPUs can run two groups.
    group: str = "gpu"
    lock_timeout: float = 0.0
    drain_timeout: float = 1800.0


@dataclass(frozen=True)
class GpuConfig:
    path: Path
    swap: SwapSettings
    containers: dict[str, ContainerSpec]

    def container(self, name: str) -> ContainerSpec:
        try:
            return self.containers[name]
        except KeyError:
            raise UnknownContainerError(
                f"no GPU container named {name!r} in {self.path}",
                detail=f"configured: {', '.join(sorted(self.containers))}",
                fix=f"use one of those names, or add a [containers.{name}] table to {self.path}",
                name=name, path=self.path,
            ) from None


def default_lock_file(group: str = "gpu") -> Path:
    name = "trellis-box-swap.lock" if group == "gpu" else f"trellis-box-swap-{group}.lock"
    return Path(tempfile.gettempdir()) / name


def config_path(explicit: Path | None = None) -> Path:
    """``--config``, else ``$TRELLIS_BOX_GPU_CONFIG``, else :data:`DEFAULT_CONFIG`."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def load_gpu_config(path: Path) -> GpuConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GpuConfigError(
            f"GPU containers file not found: {path}",
            fix=f"write one (start from examples/gpu-containers.toml), or pass --config or set "
                f"{CONFIG_ENV}",
            path=path,
        ) from None
    except OSError as exc:
        raise GpuConfigError(f"cannot read the GPU containers file {path}", detail=str(exc),
                             fix="check the file's permissions", path=path) from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GpuConfigError(f"GPU containers file {path} is not valid TOML", detail=str(exc),
                             fix="correct the syntax at the line and column named above",
                             path=path) from exc
    return parse_gpu_config(raw, path)


def parse_gpu_config(raw: dict[str, Any], path: Path) -> GpuConfig:
    reader = _Reader(path)
    reader.known_keys(raw, "", {"swap", "containers"})
    swap_raw = reader.table(raw, "swap", required=False)
    reader.known_keys(swap_raw, "swap.", {"group", "lock_file", "lock_timeout", "drain_timeout",
                                          "ready_timeout", "stop_timeout"})
    lock_file = reader.string(swap_raw, "swap.lock_file", required=False)
    group = reader.string(swap_raw, "swap.group", required=False) or "gpu"
    if not _CONTAINER_NAME.fullmatch(group):
        reader.fail("swap.group", f"{group!r} is not a valid label value here",
                    "use letters, digits, '_', '.' and '-'")
    settings = SwapSettings(
        lock_file=Path(lock_file) if lock_file else default_lock_file(group),
        group=group,
        lock_timeout=reader.seconds(swap_raw, "swap.lock_timeout", 0.0, allow_zero=True),
        drain_timeout=reader.seconds(swap_raw, "swap.drain_timeout", 1800.0),
    )
    ready_default = reader.seconds(swap_raw, "swap.ready_timeout", 900.0)
    stop_default = reader.seconds(swap_raw, "swap.stop_timeout", 60.0, allow_zero=True)

    tables = reader.table(raw, "containers", required=True)
    if not tables:
        reader.fail("containers", "there is no [containers.<name>] table",
                    "add one table per GPU container (see examples/gpu-containers.toml)")
    containers = {name: reader.container(name, table, ready_default, stop_default)
                  for name, table in tables.items()}
    seen: dict[str, str] = {}
    for spec in containers.values():
        if spec.container_name in seen:
            reader.fail(f"containers.{spec.name}.container_name",
                        f"{spec.container_name!r} is also the container name of "
                        f"containers.{seen[spec.container_name]}",
                        "give every GPU container its own container_name")
        seen[spec.container_name] = spec.name
    return GpuConfig(path=path, swap=settings, containers=containers)


_CONTAINER_KEYS = {"image", "container_name", "command", "network", "ports", "volumes",
                   "environment", "ready_url", "comfy_url", "gpus", "ready_timeout",
                   "stop_timeout"}


class _Reader:
    """Typed field access that turns every problem into one error naming file and field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, fieldname: str, fact: str, fix: str) -> NoReturn:
        raise GpuConfigError(f"invalid field {fieldname} in {self.path}", detail=fact, fix=fix,
                             path=self.path, field=fieldname)

    def known_keys(self, table: dict[str, Any], prefix: str, known: set[str]) -> None:
        for key in table:
            if key not in known:
                self.fail(f"{prefix}{key}", "unknown key",
                          f"remove it, or use one of: {', '.join(sorted(known))}")

    def table(self, raw: dict[str, Any], key: str, *, required: bool) -> dict[str, Any]:
        value = raw.get(key)
        if value is None:
            if required:
                self.fail(key, f"missing [{key}] table",
                          "add it (see examples/gpu-containers.toml)")
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a table, found {type(value).__name__}",
                      f"write it as [{key}]")
        return value

    def string(self, table: dict[str, Any], fieldname: str, *, required: bool) -> str | None:
        value = table.get(fieldname.rsplit(".", 1)[-1])
        if value is None:
            if required:
                self.fail(fieldname, "missing", "add it")
            return None
        if not isinstance(value, str) or not value:
            self.fail(fieldname, f"expected a non-empty string, found {value!r}",
                      "quote the value")
        return value

    def strings(self, table: dict[str, Any], fieldname: str) -> tuple[str, ...]:
        value = table.get(fieldname.rsplit(".", 1)[-1], [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.fail(fieldname, f"expected a list of strings, found {value!r}",
                      'write it as ["...", "..."]')
        return tuple(value)

    def seconds(self, table: dict[str, Any], fieldname: str, default: float, *,
                allow_zero: bool = False) -> float:
        value = table.get(fieldname.rsplit(".", 1)[-1], default)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not (value >= 0 if allow_zero else value > 0):
            bound = "0 or more" if allow_zero else "more than 0"
            self.fail(fieldname, f"expected a number of seconds, {bound}; found {value!r}",
                      f"set a number, e.g. {fieldname.rsplit('.', 1)[-1]} = {default:g}")
        return float(value)

    def url(self, table: dict[str, Any], fieldname: str, *, required: bool) -> str | None:
        value = self.string(table, fieldname, required=required)
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.fail(fieldname, f"{value!r} is not an http(s) URL",
                          'write it like "http://127.0.0.1:8188/trellis-box/ready"')
        return value

    def container(self, name: str, table: Any, ready_default: float,
                  stop_default: float) -> ContainerSpec:
        prefix = f"containers.{name}"
        if not isinstance(table, dict):
            self.fail(prefix, "expected a table", f"write it as [{prefix}]")
        self.known_keys(table, prefix + ".", _CONTAINER_KEYS)
        container_name = self.string(table, f"{prefix}.container_name", required=False) or name
        if not _CONTAINER_NAME.fullmatch(container_name):
            self.fail(f"{prefix}.container_name",
                      f"{container_name!r} is not a valid Docker container name",
                      "use letters, digits, '_', '.' and '-', starting with a letter or digit")
        ready_url = self.url(table, f"{prefix}.ready_url", required=True) or ""
        comfy_url = self.url(table, f"{prefix}.comfy_url", required=False)
        if comfy_url is None:
            # ComfyUI's API is served beside the readiness route unless said otherwise.
            parts = urlsplit(ready_url)
            comfy_url = f"{parts.scheme}://{parts.netloc}"
        network = self.string(table, f"{prefix}.network", required=False)
        ports = self.strings(table, f"{prefix}.ports")
        for i, port in enumerate(ports):
            if not _PORT.fullmatch(port):
                self.fail(f"{prefix}.ports[{i}]", f"{port!r} is not a port mapping",
                          'write "HOST:CONTAINER", "IP:HOST:CONTAINER" or add "/udp"')
        if ports and network == "host":
            self.fail(f"{prefix}.ports", "ports are not published with network = \"host\"",
                      "remove ports (the container listens on the host's ports directly)")
        volumes = self.strings(table, f"{prefix}.volumes")
        for i, volume in enumerate(volumes):
            fields = volume.split(":")
            if len(fields) not in (2, 3) or not all(fields[:2]) or (
                    len(fields) == 3 and fields[2] not in ("ro", "rw")):
                self.fail(f"{prefix}.volumes[{i}]", f"{volume!r} is not a volume mapping",
                          'write "SOURCE:TARGET" or "SOURCE:TARGET:ro"')
        command = table.get("command")
        if command is not None:
            command = self.strings(table, f"{prefix}.command")
        environment = table.get("environment", {})
        if not isinstance(environment, dict):
            self.fail(f"{prefix}.environment", "expected a table",
                      'write it as environment = { NAME = "value" }')
        for key, value in environment.items():
            if isinstance(value, (dict, list)):
                self.fail(f"{prefix}.environment.{key}", f"expected a string, found {value!r}",
                          "quote the value")
        return ContainerSpec(
            name=name,
            image=self.string(table, f"{prefix}.image", required=True) or "",
            container_name=container_name,
            ready_url=ready_url,
            comfy_url=comfy_url.rstrip("/"),
            command=command,
            network=network,
            ports=ports,
            volumes=volumes,
            environment={k: _env_text(v) for k, v in environment.items()},
            gpus=self.gpus(table, f"{prefix}.gpus"),
            ready_timeout=self.seconds(table, f"{prefix}.ready_timeout", ready_default),
            stop_timeout=self.seconds(table, f"{prefix}.stop_timeout", stop_default,
                                      allow_zero=True),
        )

    def gpus(self, table: dict[str, Any], fieldname: str) -> str | int | tuple[str, ...]:
        value = table.get("gpus", "all")
        if value in ("all", "none"):
            return str(value)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        if isinstance(value, list) and value and all(isinstance(v, (str, int)) for v in value):
            return tuple(str(v) for v in value)
        self.fail(fieldname, f"{value!r} is not a GPU request",
                  'use "all", "none", a count such as 1, or device ids such as ["0"]')


def _env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)
