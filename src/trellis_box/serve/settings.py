"""Every environment variable ``trellis-box serve`` and ``doctor`` read, read once.

``load()`` turns the environment into one frozen :class:`ServeSettings`; nothing else in the
package reads these variables. A bad value raises :class:`ConfigError` naming the variable.
Command-line flags override single fields with :func:`dataclasses.replace`.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from trellis_box.comfyui.workflow import RESOLUTIONS
from trellis_box.errors import ConfigError
from trellis_box.pins import load as load_pins

DEFAULT_COMFY_ROOT = Path("/opt/comfyui")
DEFAULT_STATE = Path("/tmp/trellis-box/state.json")  # docs/interfaces.md: the state-file contract

#: Variables that keep every Hugging Face library (huggingface_hub, transformers, datasets) off the
#: network. ComfyUI is always started with these, whatever the caller's environment says.
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
}


@dataclass(frozen=True)
class ServeSettings:
    comfy_root: Path
    listen: str
    port: int
    #: Extra ComfyUI arguments, appended after ours (``TRELLIS_BOX_COMFY_ARGS``, shell-split).
    comfy_args: tuple[str, ...]
    #: The interpreter that runs ComfyUI and the node-import check: the one ComfyUI's packages are in.
    python: str
    state_path: Path
    warmup: bool
    output_dir: Path
    input_dir: Path
    #: Directories the kernels and libraries write at run time, by the variable that names them.
    cache_dirs: dict[str, Path]
    #: GPU architectures the image's compiled extensions carry code for (``sm_89`` ...).
    cuda_archs: tuple[str, ...]
    start_timeout: float
    warmup_timeout: float
    import_timeout: float
    #: How long ComfyUI gets between SIGTERM and SIGKILL; ``docker stop`` must end well under 2 s.
    stop_grace: float
    #: Accept the GPU harness's random-weight stand-ins (``weights/standin.py``); reported everywhere.
    allow_stand_in: bool = False
    #: ``TRELLIS_BOX_LOW_VRAM``: overrides the VRAM profile's ``low_vram`` (None: the profile decides),
    #: e.g. to keep an 80 GB card's footprint small beside another process, or to measure it.
    low_vram: bool | None = None
    #: ``TRELLIS_BOX_WORKERS``: ComfyUI processes serve runs (None: ``auto``, the default, sized by
    #: :func:`trellis_box.gpu.profiles.workers_for` from the VRAM profile and the CPU cores; the H200
    #: measurements behind it at :data:`trellis_box.gpu.profiles.MAX_WORKERS`).
    workers: int | None = None
    #: ``TRELLIS_BOX_WORKER_PORT``: worker 1's port (worker i: this + i - 1); None: ``port + 1``.
    worker_base_port: int | None = None
    #: ``TRELLIS_BOX_WORKER_RESTARTS``: how often one worker may die after ready and be started
    #: again (with its warm-up) before serve gives up and exits non-zero (container unhealthy).
    worker_restarts: int = 3
    #: ``TRELLIS_BOX_MAX_RESOLUTION``: lowers the VRAM profile's highest resolution (None: the
    #: profile's own), so ``auto`` sizes workers at a lower resolution's peak and every client
    #: refuses what lies above it. Never raises it: preflight refuses one above the card's.
    max_resolution: str | None = None

    def worker_ports(self, count: int) -> list[int]:
        """Worker 0 keeps the public port, so a plain ComfyUI client still finds a ComfyUI there."""
        base = self.worker_base_port or self.port + 1
        return [self.port, *(base + i for i in range(count - 1))]

    @property
    def listen_addresses(self) -> tuple[str, ...]:
        """ComfyUI's listen address is a comma-separated list (``0.0.0.0,::``)."""
        return tuple(a.strip() for a in self.listen.split(",") if a.strip()) or ("0.0.0.0",)

    @property
    def base_url(self) -> str:
        """Where serve itself talks to ComfyUI: loopback when it listens on every address."""
        return self.url_for(self.port)

    def url_for(self, port: int) -> str:
        """Where serve talks to the worker on ``port``."""
        first = self.listen_addresses[0]
        host = "127.0.0.1" if first in ("0.0.0.0", "::") else first
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"


def load(env: Mapping[str, str] | None = None) -> ServeSettings:
    env = os.environ if env is None else env
    root = Path(env.get("TRELLIS_BOX_COMFY_ROOT") or DEFAULT_COMFY_ROOT)
    home = Path(env.get("HOME") or Path.home())
    flex_gemm_cache = env.get("FLEX_GEMM_AUTOTUNE_CACHE_PATH")
    return ServeSettings(
        comfy_root=root,
        listen=env.get("TRELLIS_BOX_LISTEN") or "0.0.0.0",
        port=_int(env, "TRELLIS_BOX_PORT", 8188, low=1, high=65535),
        comfy_args=_args(env, "TRELLIS_BOX_COMFY_ARGS"),
        python=env.get("TRELLIS_BOX_PYTHON") or sys.executable,
        state_path=Path(env.get("TRELLIS_BOX_STATE") or DEFAULT_STATE),
        warmup=_bool(env, "TRELLIS_BOX_WARMUP", True),
        output_dir=Path(env.get("TRELLIS_BOX_OUTPUT_DIR") or root / "output"),
        input_dir=Path(env.get("TRELLIS_BOX_INPUT_DIR") or root / "input"),
        cache_dirs={
            "TRITON_CACHE_DIR": Path(env.get("TRITON_CACHE_DIR") or home / ".triton"),
            # flex_gemm names a file; its directory is what must be writable.
            "FLEX_GEMM_AUTOTUNE_CACHE_PATH": (
                Path(flex_gemm_cache).parent if flex_gemm_cache else home / ".flex_gemm"
            ),
            "HF_HOME": Path(env.get("HF_HOME") or home / ".cache" / "huggingface"),
        },
        cuda_archs=_archs(env, "TRELLIS_BOX_CUDA_ARCHS"),
        start_timeout=_seconds(env, "TRELLIS_BOX_START_TIMEOUT", 300.0),
        warmup_timeout=_seconds(env, "TRELLIS_BOX_WARMUP_TIMEOUT", 900.0),
        import_timeout=_seconds(env, "TRELLIS_BOX_IMPORT_TIMEOUT", 300.0),
        stop_grace=_seconds(env, "TRELLIS_BOX_STOP_GRACE", 1.0),
        allow_stand_in=_bool(env, "TRELLIS_BOX_ALLOW_STAND_IN_WEIGHTS", False),
        low_vram=_bool(env, "TRELLIS_BOX_LOW_VRAM", False) if env.get("TRELLIS_BOX_LOW_VRAM") else None,
        workers=_workers(env, "TRELLIS_BOX_WORKERS"),
        worker_base_port=_int(env, "TRELLIS_BOX_WORKER_PORT", 0, low=1, high=65535) or None,
        worker_restarts=_int(env, "TRELLIS_BOX_WORKER_RESTARTS", 3, low=0, high=100),
        max_resolution=_resolution(env, "TRELLIS_BOX_MAX_RESOLUTION"),
    )


#: More workers than this share one GPU's memory bandwidth for nothing (profiles.MAX_WORKERS).
MAX_WORKERS = 16


def _workers(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw or raw.lower() == "auto":
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_WORKERS:
        raise _bad(name, raw, f"auto or an integer from 1 to {MAX_WORKERS}")
    return int(raw)


def _resolution(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    if not raw:
        return None
    if raw not in RESOLUTIONS:
        raise _bad(name, raw, f"one of {', '.join(RESOLUTIONS)}")
    return raw


def _bad(name: str, value: str, expected: str) -> ConfigError:
    return ConfigError(
        f"environment variable {name} is invalid",
        detail=f"{name}={value!r}; expected {expected}.",
        fix=f"set {name} to {expected}, or unset it for the default",
        variable=name,
    )


def _int(env: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, raw, f"an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise _bad(name, raw, f"an integer from {low} to {high}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, raw, "a number of seconds above 0") from None
    if not value > 0:
        raise _bad(name, raw, "a number of seconds above 0")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if not raw:
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise _bad(name, raw, "1 or 0")


def _args(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise _bad(name, raw, f"arguments a shell could split ({exc})") from None


def _archs(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name)
    if not raw:
        return load_pins().cuda_archs
    archs = tuple(raw.replace(",", " ").split())
    for arch in archs:
        if not (arch.startswith("sm_") and arch[3:].isdigit()):
            raise _bad(name, raw, "GPU architectures such as \"sm_86 sm_89 sm_90\"")
    return archs
