"""The GPU containers file: the ComfyUI containers that take turns on this host's one GPU.

``swap`` and ``status`` read it; the template (``data/gpu-containers.toml``, written by
:func:`write_template`) documents every key. Each key is declared once, as a field of
:class:`SwapSettings` or :class:`ContainerSpec` whose metadata (:class:`Key`) holds its help, how
it is read and checked, its default and whether the container is created from it: parsing,
defaults, error messages and the drift digest all follow from those declarations. Every error
names the file, the field (``containers.<name>.<key>``) and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from trellis_box.errors import GpuConfigError, UnknownContainerError, UsageError

CONFIG_ENV = "TRELLIS_BOX_GPU_CONFIG"
DEFAULT_CONFIG = Path("/etc/trellis-box/gpu-containers.toml")
TEMPLATE = "gpu-containers.toml"

# Docker's own rule for container names.
_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_PORT = re.compile(r"(?:(?:\d+\.\d+\.\d+\.\d+:)?\d+:)?\d+(?:/(?:tcp|udp))?")


class _Invalid(Exception):
    """A value that breaks its key's rule; the parser adds the file and the field's full name."""

    def __init__(self, fact: str, fix: str, suffix: str = "") -> None:
        super().__init__(fact)
        self.fact, self.fix, self.suffix = fact, fix, suffix


# ---- how a value is read: each takes the TOML value and the key's name --------------------------

Read = Callable[[Any, str], Any]


def text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"expected a non-empty string, found {value!r}", "quote the value")
    return value


def path(value: Any, key: str) -> Path:
    return Path(text(value, key))


def label_value(value: Any, key: str) -> str:
    if not _CONTAINER_NAME.fullmatch(text(value, key)):
        raise _Invalid(f"{value!r} is not a valid label value here",
                       "use letters, digits, '_', '.' and '-'")
    return str(value)


def container_name(value: Any, key: str) -> str:
    if not _CONTAINER_NAME.fullmatch(text(value, key)):
        raise _Invalid(f"{value!r} is not a valid Docker container name",
                       "use letters, digits, '_', '.' and '-', starting with a letter or digit")
    return str(value)


def http_url(value: Any, key: str) -> str:
    parts = urlsplit(text(value, key))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"{value!r} is not an http(s) URL",
                       'write it like "http://127.0.0.1:8188/trellis-box/ready"')
    return str(value)


def base_url(value: Any, key: str) -> str:
    return http_url(value, key).rstrip("/")


def texts(value: Any, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _Invalid(f"expected a list of strings, found {value!r}", 'write it as ["...", "..."]')
    return tuple(value)


def port_mappings(value: Any, key: str) -> tuple[str, ...]:
    ports = texts(value, key)
    for i, port in enumerate(ports):
        if not _PORT.fullmatch(port):
            raise _Invalid(f"{port!r} is not a port mapping",
                           'write "HOST:CONTAINER", "IP:HOST:CONTAINER" or add "/udp"', f"[{i}]")
    return ports


def volume_mappings(value: Any, key: str) -> tuple[str, ...]:
    volumes = texts(value, key)
    for i, volume in enumerate(volumes):
        parts = volume.split(":")
        if len(parts) not in (2, 3) or not all(parts[:2]) or (
                len(parts) == 3 and parts[2] not in ("ro", "rw")):
            raise _Invalid(f"{volume!r} is not a volume mapping",
                           'write "SOURCE:TARGET" or "SOURCE:TARGET:ro"', f"[{i}]")
    return volumes


def environment(value: Any, key: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid("expected a table", 'write it as environment = { NAME = "value" }')
    for name, item in value.items():
        if isinstance(item, (dict, list)):
            raise _Invalid(f"expected a string, found {item!r}", "quote the value", f".{name}")
    return {name: ("1" if item else "0") if isinstance(item, bool) else str(item)
            for name, item in value.items()}


def gpu_request(value: Any, key: str) -> str | int | tuple[str, ...]:
    if value in ("all", "none"):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    if isinstance(value, list) and value and all(isinstance(v, (str, int)) for v in value):
        return tuple(str(v) for v in value)
    raise _Invalid(f"{value!r} is not a GPU request",
                   'use "all", "none", a count such as 1, or device ids such as ["0"]')


def seconds(*, allow_zero: bool) -> Read:
    def read(value: Any, key: str) -> float:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not (value >= 0 if allow_zero else value > 0):
            bound = "0 or more" if allow_zero else "more than 0"
            raise _Invalid(f"expected a number of seconds, {bound}; found {value!r}",
                           f"set a number, e.g. {key} = 60")
        return float(value)
    return read


# ---- the declarations --------------------------------------------------------------------------

@dataclass(frozen=True)
class Key:
    """What the file says about one field: everything but its name and default."""

    help: str
    read: Read
    required: bool = False
    #: The container is created from it: a change re-creates a stopped container.
    created_from: bool = False
    #: ``[swap]`` may set it for every container.
    swap_default: bool = False
    #: A default computed from the fields read before it (their values by name).
    derive: Callable[[Mapping[str, Any]], Any] | None = None


def key(help: str, read: Read, *, required: bool = False, created_from: bool = False,
        swap_default: bool = False,
        derive: Callable[[Mapping[str, Any]], Any] | None = None) -> dict[str, Key]:
    """Field metadata for one key of the file: ``x: int = field(default=1, metadata=key(...))``."""
    return {"key": Key(help, read, required, created_from, swap_default, derive)}


def _comfy_url(values: Mapping[str, Any]) -> str:
    # ComfyUI's API is served beside the readiness route unless said otherwise.
    parts = urlsplit(values["ready_url"])
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class ContainerSpec:
    """One GPU container: everything ``swap`` needs to create, start, drain and probe it.

    ``name`` is the table's name; every other field is a key of ``[containers.<name>]``.
    """

    name: str
    image: str = field(metadata=key("the Docker image to run", text, required=True,
                                    created_from=True))
    container_name: str = field(default="", metadata=key(
        "the Docker container's name (default: the table's name)", container_name,
        created_from=True, derive=lambda values: values["name"]))
    ready_url: str = field(default="", metadata=key(
        "answers 2xx once the container is ready", http_url, required=True))
    comfy_url: str = field(default="", metadata=key(
        "its ComfyUI API (default: scheme, host and port of ready_url)", base_url,
        derive=_comfy_url))
    command: tuple[str, ...] | None = field(default=None, metadata=key(
        "the command (default: the image's own)", texts, created_from=True))
    network: str | None = field(default=None, metadata=key(
        "Docker network mode, e.g. host", text, created_from=True))
    ports: tuple[str, ...] = field(default=(), metadata=key(
        '"HOST:CONTAINER" or "IP:HOST:CONTAINER", "/udp" for UDP', port_mappings,
        created_from=True))
    volumes: tuple[str, ...] = field(default=(), metadata=key(
        '"SOURCE:TARGET" or "SOURCE:TARGET:ro"', volume_mappings, created_from=True))
    environment: dict[str, str] = field(default_factory=dict, metadata=key(
        "environment variables", environment, created_from=True))
    # "all", a device count, or device ids; "none" runs without a GPU (CPU-only hosts, tests).
    gpus: str | int | tuple[str, ...] = field(default="all", metadata=key(
        '"all", a count, device ids, or "none"', gpu_request, created_from=True))
    ready_timeout: float = field(default=900.0, metadata=key(
        "seconds to become ready after start", seconds(allow_zero=False), swap_default=True))
    stop_timeout: float = field(default=60.0, metadata=key(
        "seconds between SIGTERM and SIGKILL", seconds(allow_zero=True), swap_default=True))
    settle_seconds: float = field(default=10.0, metadata=key(
        "seconds it must stay running and ready after it first is, or the swap rolls back "
        "(0: no wait)", seconds(allow_zero=True), swap_default=True))

    def digest(self) -> str:
        """A digest of what the container is created from, stored as a label: a changed config
        means a stopped container is re-created rather than restarted as it was."""
        created_from = {f.name: getattr(self, f.name) for f in fields(self)
                        if f.name == "name" or _key(f).created_from}
        canonical = json.dumps(created_from, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _default_lock(values: Mapping[str, Any]) -> Path:
    return default_lock_file(values["group"])


@dataclass(frozen=True)
class SwapSettings:
    """The ``[swap]`` table (besides the per-container defaults it may set)."""

    # The containers of one group share one GPU; a host with two GPUs can run two groups.
    group: str = field(default="gpu", metadata=key(
        "containers of one group take turns on one GPU", label_value))
    lock_file: Path = field(default=Path(), metadata=key(
        "one swap at a time: every swapping user must be able to write it", path,
        derive=_default_lock))
    lock_timeout: float = field(default=0.0, metadata=key(
        "seconds a second swap waits for the first (0: fail at once)", seconds(allow_zero=True)))
    drain_timeout: float = field(default=1800.0, metadata=key(
        "seconds to wait for the running container's queue to empty",
        seconds(allow_zero=False)))


def _key(f: Field[Any]) -> Key:
    found: Key = f.metadata["key"]
    return found


def schema(cls: type) -> list[Field[Any]]:
    """The fields of ``cls`` that are keys of the file, in declaration order."""
    return [f for f in fields(cls) if "key" in f.metadata]


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
    """``explicit``, else ``$TRELLIS_BOX_GPU_CONFIG``, else :data:`DEFAULT_CONFIG`."""
    if explicit is not None:
        return explicit
    env = os.environ.get(CONFIG_ENV)
    return Path(env) if env else DEFAULT_CONFIG


def template() -> str:
    """The documented template of the file, shipped with the package."""
    return resources.files("trellis_box").joinpath("data", TEMPLATE).read_text(encoding="utf-8")


def write_template(target: Path, *, overwrite: bool = False) -> Path:
    """Write :func:`template` to ``target`` (a directory gets ``gpu-containers.toml``)."""
    if target.is_dir():
        target = target / TEMPLATE
    if target.exists() and not overwrite:
        raise UsageError(f"{target} exists already", detail="it was left as it is",
                         fix="choose another path, or allow `overwrite` to replace it",
                         path=target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(template(), encoding="utf-8")
    except OSError as exc:
        raise GpuConfigError(f"cannot write the GPU containers file {target}", detail=str(exc),
                             fix="choose a path you may write, or run as a user who may write "
                                 "this one", path=target) from exc
    return target


def load_gpu_config(path: Path, spec_type: type[ContainerSpec] = ContainerSpec) -> GpuConfig:
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GpuConfigError(
            f"GPU containers file not found: {path}",
            fix=f"write one from the template (`write_template`) and edit it, or pass the path of "
                f"yours (`config`) or set {CONFIG_ENV}",
            path=path,
        ) from None
    except OSError as exc:
        raise GpuConfigError(f"cannot read the GPU containers file {path}", detail=str(exc),
                             fix="check the file's permissions", path=path) from exc
    try:
        raw = tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise GpuConfigError(f"GPU containers file {path} is not valid TOML", detail=str(exc),
                             fix="correct the syntax at the line and column named above",
                             path=path) from exc
    return parse_gpu_config(raw, path, spec_type)


def parse_gpu_config(raw: dict[str, Any], path: Path,
                     spec_type: type[ContainerSpec] = ContainerSpec) -> GpuConfig:
    """``spec_type``: the container schema, :class:`ContainerSpec` or a subclass adding keys."""
    parser = _Parser(path)
    parser.known_keys(raw, "", ["swap", "containers"])
    swap_raw = parser.table(raw, "swap", required=False)
    inherited = [f for f in schema(spec_type) if _key(f).swap_default]
    parser.known_keys(swap_raw, "swap.", [f.name for f in schema(SwapSettings) + inherited])
    settings = SwapSettings(**parser.read(SwapSettings, swap_raw, "swap", {}))
    defaults = parser.read_present(inherited, swap_raw, "swap")

    tables = parser.table(raw, "containers", required=True)
    if not tables:
        parser.fail("containers", "there is no [containers.<name>] table",
                    "add one table per GPU container (see the template)")
    containers = {name: parser.container(spec_type, name, table, defaults)
                  for name, table in tables.items()}
    seen: dict[str, str] = {}
    for spec in containers.values():
        if spec.container_name in seen:
            parser.fail(f"containers.{spec.name}.container_name",
                        f"{spec.container_name!r} is also the container name of "
                        f"containers.{seen[spec.container_name]}",
                        "give every GPU container its own container_name")
        seen[spec.container_name] = spec.name
    return GpuConfig(path=path, swap=settings, containers=containers)


class _Parser:
    """Reads tables against a schema; every problem becomes one error naming file and field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, fieldname: str, fact: str, fix: str) -> NoReturn:
        raise GpuConfigError(f"invalid field {fieldname} in {self.path}", detail=fact, fix=fix,
                             path=self.path, field=fieldname)

    def known_keys(self, table: dict[str, Any], prefix: str, known: list[str]) -> None:
        for name in table:
            if name not in known:
                self.fail(f"{prefix}{name}", "unknown key",
                          f"remove it, or use one of: {', '.join(sorted(known))}")

    def table(self, raw: dict[str, Any], name: str, *, required: bool) -> dict[str, Any]:
        value = raw.get(name)
        if value is None:
            if required:
                self.fail(name, f"missing [{name}] table", "add it (see the template)")
            return {}
        if not isinstance(value, dict):
            self.fail(name, f"expected a table, found {type(value).__name__}",
                      f"write it as [{name}]")
        return value

    def read_present(self, keys: list[Field[Any]], table: dict[str, Any],
                     prefix: str) -> dict[str, Any]:
        return {f.name: self._value(f, table[f.name], prefix) for f in keys if f.name in table}

    def read(self, cls: type, table: dict[str, Any], prefix: str,
             defaults: Mapping[str, Any]) -> dict[str, Any]:
        """Every key of ``cls``'s schema from ``table``: its value, else ``defaults``, else the
        key's derived or declared default (left out: the dataclass fills it)."""
        values: dict[str, Any] = dict(defaults)
        for f in schema(cls):
            declared = _key(f)
            if f.name in table:
                values[f.name] = self._value(f, table[f.name], prefix)
            elif declared.required:
                self.fail(f"{prefix}.{f.name}", "missing", f"add it: {declared.help}")
            elif declared.derive is not None and f.name not in values:
                values[f.name] = declared.derive(values)
            elif f.name not in values and f.default is not MISSING:
                values[f.name] = f.default
        return values

    def _value(self, f: Field[Any], value: Any, prefix: str) -> Any:
        try:
            return _key(f).read(value, f.name)
        except _Invalid as exc:
            self.fail(f"{prefix}.{f.name}{exc.suffix}", exc.fact, exc.fix)

    def container(self, spec_type: type[ContainerSpec], name: str, table: Any,
                  defaults: Mapping[str, Any]) -> ContainerSpec:
        prefix = f"containers.{name}"
        if not isinstance(table, dict):
            self.fail(prefix, "expected a table", f"write it as [{prefix}]")
        self.known_keys(table, prefix + ".", [f.name for f in schema(spec_type)])
        spec = spec_type(**self.read(spec_type, table, prefix, {"name": name, **defaults}))
        if spec.ports and spec.network == "host":
            self.fail(f"{prefix}.ports", "ports are not published with network = \"host\"",
                      "remove ports (the container listens on the host's ports directly)")
        return spec


def with_settings(config: GpuConfig, **changes: Any) -> GpuConfig:
    """``config`` with some ``[swap]`` settings replaced (those given as not ``None``)."""
    given = {name: value for name, value in changes.items() if value is not None}
    return replace(config, swap=replace(config.swap, **given)) if given else config
