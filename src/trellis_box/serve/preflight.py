"""Checks that run before ComfyUI starts, shared by ``serve`` (stop at the first failure) and
``doctor`` (run them all and report).

Each step is a function ``(settings, findings) -> detail`` that returns one line saying what it
saw, records what later steps need in :class:`Findings`, and raises a :class:`TrellisBoxError`
naming the object, the fact and the fix. :func:`run` times the steps and hands each
:class:`StepResult` to a callback; it never prints.

Cheap steps come first, so a container without a GPU fails in milliseconds, not after the node
packs have imported torch.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trellis_box.comfyui.workflow import WorkflowOptions
from trellis_box.errors import (
    ConfigError,
    DirectoryNotWritableError,
    GpuUnavailableError,
    GpuUnsupportedError,
    PortInUseError,
    TrellisBoxError,
    WeightsNotVerified,
)
from trellis_box.gpu.probe import (
    GPU_FIX,
    GPU_QUERY,
    NVIDIA_SMI,
    Gpu,
    covering_target,
    driver_version,
    nvidia_smi,
    parse_gpus,
)
from trellis_box.gpu.profiles import (
    CORES_PER_WORKER,
    GIB,
    MAX_WORKERS,
    MEASURED_PEAK_BYTES,
    NEEDS_GB,
    WORKER_MARGIN_BYTES,
    Profile,
    lowered,
    profile_for,
    workers_for,
    workers_in_memory,
)
from trellis_box.serve.node_imports import import_packs, node_pack_dirs
from trellis_box.serve.runtime_packages import check_runtime_packages
from trellis_box.serve.settings import OFFLINE_ENV, ServeSettings
from trellis_box.weights import catalog, standin
from trellis_box.weights.verify import VerifyReport, verify

# CUDA 12.x runs on drivers from 525.60.13 on (minor version compatibility); torch 2.7.0+cu126
# needs CUDA 12.
MIN_DRIVER = (525, 60, 13)


@dataclass
class Findings:
    """What the steps learned, for the steps after them and for ``serve``."""

    root: Path | None = None
    gpu: Gpu | None = None
    profile: Profile | None = None
    #: The environment ComfyUI (and the import check) run with.
    env: dict[str, str] = field(default_factory=dict)
    #: Node pack directory name -> node classes it registered on import.
    packs: dict[str, list[str]] = field(default_factory=dict)
    #: ``stand-in`` when the weights are the GPU harness's random ones (weights/standin.py).
    weights_mode: str = "real"
    #: ComfyUI workers serve runs: ``TRELLIS_BOX_WORKERS``, or sized from the profile.
    workers: int = 1


@dataclass(frozen=True)
class StepResult:
    name: str
    #: None: skipped because a step it needs failed.
    ok: bool | None
    seconds: float
    detail: str
    error: TrellisBoxError | None = None

    def as_dict(self) -> dict[str, object]:
        status = "skipped" if self.ok is None else "ok" if self.ok else "failed"
        record: dict[str, object] = {"step": self.name, "status": status,
                                     "duration_s": round(self.seconds, 3), "detail": self.detail}
        if self.error is not None:
            record["error"] = self.error.to_dict()
        return record


Check = Callable[[ServeSettings, Findings], str]


@dataclass(frozen=True)
class Step:
    name: str
    check: Check
    needs: tuple[str, ...] = ()


# ---- GPU ---------------------------------------------------------------------------------------


def _gpu(settings: ServeSettings, found: Findings) -> str:
    gpus = parse_gpus(nvidia_smi(GPU_QUERY))
    if not gpus:
        raise GpuUnavailableError(
            f"no CUDA GPU visible: {NVIDIA_SMI} lists no device",
            detail="The driver answers but no GPU is assigned to this container.",
            fix=GPU_FIX,
        )
    # ComfyUI runs on the first device it sees; with several, the others stay idle.
    found.gpu = Gpu(gpus[0].name, gpus[0].vram_bytes, gpus[0].compute_cap, count=len(gpus))
    more = f" (+{len(gpus) - 1} more; ComfyUI uses the first)" if len(gpus) > 1 else ""
    return found.gpu.describe() + more


#: The cloud GPUs of each architecture, so a fix names cards a user can rent.
GPUS_BY_ARCH = {"sm_80": "A100", "sm_86": "A10G", "sm_89": "L4/L40S", "sm_90": "H100"}


def _known_gpus(archs: Sequence[str]) -> str:
    return ", ".join(f"{GPUS_BY_ARCH[a]} {a}" if a in GPUS_BY_ARCH else a for a in archs)


def _arch(settings: ServeSettings, found: Findings) -> str:
    assert found.gpu is not None
    target = covering_target(found.gpu.arch, settings.cuda_archs)
    if target is None:
        raise GpuUnsupportedError(
            f"GPU architecture {found.gpu.arch} ({found.gpu.name}) is not one this image was built for",
            detail=f"The compiled extensions (cumesh, flex_gemm, nvdiffrast, o_voxel) carry code for\n"
                   f"{' '.join(settings.cuda_archs)}; on {found.gpu.arch} the first generation would\n"
                   "fail with \"no kernel image is available for execution on the device\".",
            fix=f"run on a GPU this image was built for ({_known_gpus(settings.cuda_archs)}), or rebuild\n"
                f"it with --build-arg CUDA_ARCHS including {found.gpu.arch} and extension wheels compiled\n"
                "for it (the build's architecture check refuses wheels without its code)",
            arch=found.gpu.arch, cuda_archs=list(settings.cuda_archs),
        )
    runs = "is" if target == found.gpu.arch else f"runs the {target} code"
    return f"{found.gpu.arch} {runs} in the image's build ({' '.join(settings.cuda_archs)})"


def _profile(settings: ServeSettings, found: Findings) -> str:
    assert found.gpu is not None
    found.profile = profile = profile_for(found.gpu.vram_bytes)
    if settings.low_vram is not None and settings.low_vram != profile.low_vram:
        found.profile = profile = dataclasses.replace(profile, low_vram=settings.low_vram)
    if not profile.allowed_resolutions:
        raise GpuUnsupportedError(
            f"GPU {found.gpu.name} is too small for TRELLIS.2",
            detail=f"It reports {profile.describe()}; TRELLIS.2 needs about 24 GB at any resolution.",
            fix=f"run on a GPU with at least 24 GB that this image was built for "
                f"({_known_gpus(settings.cuda_archs)})",
            vram_bytes=found.gpu.vram_bytes,
        )
    # The one place the cap is applied: the state file, /trellis-box/info, every client's
    # refusal and the worker sizing below all read this profile.
    if settings.max_resolution is not None:
        found.profile = profile = _capped(settings.max_resolution, profile, found.gpu)
    forced = " (TRELLIS_BOX_LOW_VRAM)" if settings.low_vram is not None else ""
    capped = " (TRELLIS_BOX_MAX_RESOLUTION)" if settings.max_resolution is not None else ""
    found.workers, sized = worker_count(settings, profile)
    return f"{profile.name}: low_vram {'on' if profile.low_vram else 'off'}{forced}, resolutions " \
           f"{', '.join(profile.allowed_resolutions)}{capped}, {found.workers} ComfyUI " \
           f"worker{'s' if found.workers > 1 else ''} ({sized})"


def _capped(top: str, profile: Profile, gpu: Gpu) -> Profile:
    if top not in profile.allowed_resolutions:
        lower = ", ".join(profile.allowed_resolutions)
        raise ConfigError(
            f"TRELLIS_BOX_MAX_RESOLUTION={top} is above what GPU {gpu.name} holds",
            detail=f"It reports {profile.describe()}; {top} needs about {NEEDS_GB[top]} GB. "
                   "The setting only lowers the card's limit, never raises it.",
            fix=f"set TRELLIS_BOX_MAX_RESOLUTION to one of {lower}, or unset it for the card's own "
                f"limit ({profile.max_resolution})",
            variable="TRELLIS_BOX_MAX_RESOLUTION", max_resolution=profile.max_resolution,
            vram_bytes=gpu.vram_bytes,
        )
    return lowered(profile, top)


def worker_count(settings: ServeSettings, profile: Profile) -> tuple[int, str]:
    """``TRELLIS_BOX_WORKERS``, or sized from the VRAM profile and the cores serve may use
    (``taskset`` included); and how, in words. A number set by hand is held to the same memory
    plan: more workers than fit would run out of memory when each gets a top-resolution job."""
    if settings.workers is not None:
        fit = max(1, workers_in_memory(profile))
        if settings.workers > fit:
            raise _workers_over_memory(settings.workers, fit, profile)
        return settings.workers, "TRELLIS_BOX_WORKERS"
    cores = len(os.sched_getaffinity(0))
    return workers_for(profile, cores), (
        f"auto: {workers_in_memory(profile)} fit in memory at {profile.max_resolution}'s peak, "
        f"{cores} cores allow {cores // CORES_PER_WORKER}, at most {MAX_WORKERS}, at least 1")


def _workers_over_memory(asked: int, fit: int, profile: Profile) -> ConfigError:
    top = profile.max_resolution
    assert top is not None
    lower = [(r, n) for r in profile.allowed_resolutions
             if r != top and (n := workers_in_memory(lowered(profile, r))) >= asked]
    fixes = [f"set TRELLIS_BOX_WORKERS to {fit if fit == 1 else f'{fit} or fewer'}, or to auto"]
    if lower:
        fixes.append(f"or keep {asked} and lower the top resolution: TRELLIS_BOX_MAX_RESOLUTION="
                     f"{lower[-1][0]} ({lower[-1][1]} fit at its peak)")
    return ConfigError(
        f"TRELLIS_BOX_WORKERS={asked}: {asked} workers do not fit in this GPU's memory at {top}",
        detail=f"It reports {profile.describe()}. Every worker is planned at the measured peak of "
               f"the highest resolution it accepts ({MEASURED_PEAK_BYTES[top] / 1e9:.1f} GB at {top}, "
               f"every model resident) with {WORKER_MARGIN_BYTES / GIB:.0f} GiB kept free: {fit} "
               f"fit. More would run out of memory when each gets a {top} job at once.",
        fix="\n".join(fixes), variable="TRELLIS_BOX_WORKERS", workers=asked, fit=fit,
        max_resolution=top, vram_bytes=profile.vram_bytes)


def _driver(settings: ServeSettings, found: Findings) -> str:
    version = driver_version()
    parts = tuple(int(p) for p in version.split(".") if p.isdigit())
    if parts < MIN_DRIVER:
        raise GpuUnsupportedError(
            f"NVIDIA driver {version} is too old for this image",
            detail="The image runs CUDA 12.6 (torch 2.7.0+cu126), which needs driver "
                   f"{'.'.join(map(str, MIN_DRIVER))} or newer.",
            fix="update the host's NVIDIA driver (535 or newer recommended), then restart the container",
            driver=version,
        )
    return f"driver {version} (CUDA 12 needs {'.'.join(map(str, MIN_DRIVER))} or newer)"


# ---- environment and directories ---------------------------------------------------------------


def comfy_environment(base: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment ComfyUI runs with, and the variables it had to override to get there.

    Always offline: every weight is baked, and the pinned Trellis2 node downloads with a plain
    HTTP GET that ignores ``HF_ENDPOINT`` when a file is missing. The attention backends default to
    the workflow's, because the sparse layers read ``SPARSE_ATTN_BACKEND`` once, at import, and
    fall back to flash_attn, which the image does not ship.
    """
    env = dict(base)
    overridden = [f"{k}={env[k]}" for k, v in OFFLINE_ENV.items() if k in env and env[k] != v]
    env.update(OFFLINE_ENV)
    attention = WorkflowOptions().attention
    env.setdefault("ATTN_BACKEND", attention)
    env.setdefault("SPARSE_ATTN_BACKEND", env["ATTN_BACKEND"])
    return env, overridden


def _environment(settings: ServeSettings, found: Findings) -> str:
    if shutil.which(settings.python) is None:
        raise ConfigError(
            f"ComfyUI's Python interpreter {settings.python} is not an executable file",
            detail="serve starts ComfyUI and imports the node packs with it.",
            fix="set TRELLIS_BOX_PYTHON to the interpreter ComfyUI's packages are installed in\n"
                "(/opt/venv/bin/python in the image)",
            variable="TRELLIS_BOX_PYTHON", path=settings.python,
        )
    found.env, overridden = comfy_environment(os.environ)
    shown = " ".join(f"{k}={found.env[k]}" for k in (*OFFLINE_ENV, "ATTN_BACKEND", "SPARSE_ATTN_BACKEND"))
    return shown + (f" (overrode {', '.join(overridden)})" if overridden else "")


def writable_dirs(settings: ServeSettings) -> dict[str, Path]:
    """Every directory ComfyUI, its nodes and serve write at run time, by what names it."""
    return {
        "output directory": settings.output_dir,
        "input directory": settings.input_dir,
        # ComfyUI creates its user directory at start and keeps settings there.
        "user directory": settings.comfy_root / "user",
        **{f"{name} cache" if name != "HF_HOME" else "HF_HOME": path
           for name, path in settings.cache_dirs.items()},
        "state file directory (TRELLIS_BOX_STATE)": settings.state_path.parent,
    }


@dataclass(frozen=True)
class Unwritable:
    name: str
    path: Path
    reason: str
    #: Owner of the directory (or of its nearest existing parent), when it could be read.
    owner_uid: int | None = None

    def __str__(self) -> str:
        return f"{self.name} {self.path}: {self.reason}"


def check_writable(name: str, path: Path) -> Unwritable | None:
    """None if this process can create a file in ``path`` (created if missing).

    A real write, not ``os.access``: bind mounts, read-only filesystems and root squash all
    disagree with permission bits.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".trellis-box-write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
        return None
    except OSError as exc:
        if exc.errno == errno.EROFS:
            return Unwritable(name, path, "read-only filesystem (mounted :ro?)")
        if exc.errno == errno.ENOSPC:
            return Unwritable(name, path, "no space left on the device")
        existing = path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        try:
            st = existing.stat()
        except OSError:
            return Unwritable(name, path, exc.strerror or str(exc))
        which = "it is" if existing == path else f"it does not exist and {existing} is"
        return Unwritable(
            name, path,
            f"{exc.strerror or exc}: {which} owned by uid {st.st_uid} gid {st.st_gid}, "
            f"mode {st.st_mode & 0o7777:o}",
            owner_uid=st.st_uid,
        )


def _directories(settings: ServeSettings, found: Findings) -> str:
    dirs = writable_dirs(settings)
    problems = [p for name, path in dirs.items() if (p := check_writable(name, path)) is not None]
    if problems:
        uid, gid = os.getuid(), os.getgid()
        owner = next((p.owner_uid for p in problems if p.owner_uid is not None), None)
        as_owner = (f"`docker run --user {owner} ...` (compose: `user: \"{owner}\"`)"
                    if owner is not None else "`docker run --user <uid of the folder's owner> ...`")
        first = problems[0]
        raise DirectoryNotWritableError(
            f"{first.name} {first.path} is not writable by uid {uid}"
            + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
            detail="\n".join(str(p) for p in problems)
                   + f"\nThis process runs as uid {uid} gid {gid}; ComfyUI was not started.",
            fix=f"give the host folder mounted there (e.g. ./output) to uid {uid}:\n"
                f"`sudo chown -R {uid}:{gid} <host folder>`, or run the container as the folder's\n"
                f"owner: {as_owner}. A read-only mount must be mounted read-write.",
            uid=uid, gid=gid, paths=[str(p.path) for p in problems],
        )
    return f"{len(dirs)} directories writable by uid {os.getuid()}"


def _port(settings: ServeSettings, found: Findings) -> str:
    # Bound the way aiohttp binds (SO_REUSEADDR): only a live listener makes it fail. On the host
    # network another ComfyUI (the container this one is swapped with) may still hold the port,
    # and serve would then register and warm up that server instead of its own.
    ports = settings.worker_ports(found.workers)
    for port in ports:
        variable = "TRELLIS_BOX_PORT / `port`" if port == settings.port else "TRELLIS_BOX_WORKER_PORT"
        for address in settings.listen_addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((address, port))
                except OSError as exc:
                    raise PortInUseError(
                        f"port {port} on {address} is not free; ComfyUI was not started",
                        detail=f"bind: {exc.strerror or exc}. Another server (another ComfyUI "
                               "container on the host network?) listens there.",
                        fix="stop it (`trellis-box swap` stops the running GPU container first), or "
                            f"choose another port: {variable}",
                        port=port, listen=address,
                    ) from None
    listed = ", ".join(str(p) for p in ports)
    return f"port{'s' if len(ports) > 1 else ''} {listed} free on {', '.join(settings.listen_addresses)}"


# ---- weights -----------------------------------------------------------------------------------

def _root(settings: ServeSettings, found: Findings) -> str:
    found.root = catalog.comfy_root(settings.comfy_root)
    return str(found.root)


def _weights(settings: ServeSettings, found: Findings) -> str:
    assert found.root is not None
    report = verify(found.root, full=False, allow_stand_in=settings.allow_stand_in)
    found.weights_mode = report.weights_mode
    if report.weights_mode == "stand-in" and not settings.allow_stand_in:
        raise WeightsNotVerified(
            f"the weights under {found.root} are stand-in weights (random values), not the real models",
            detail=f"{standin.marker_path(found.root)} marks them; ComfyUI was not started.",
            fix="rebuild the image with the real weights; for measurement only, set "
                "TRELLIS_BOX_ALLOW_STAND_IN_WEIGHTS=1",
            problems=[p.to_dict() for p in report.problems],
        )
    if not report.ok:
        raise weights_error(report)
    if report.weights_mode == "stand-in":
        return f"{report.files} weight files present: {standin.LABEL.upper()} (random values, not the real models)"
    return report.summary()


def weights_error(report: VerifyReport,
                  models: tuple[catalog.Model, ...] | None = None) -> WeightsNotVerified:
    """``verify``'s problems (of ``models``, the catalog's by default), worded for a server that
    refuses to start."""
    first, rest = report.problems[0], report.problems[1:]
    what = "missing" if first.kind == "missing" else f"{first.kind} ({first.detail})"
    nodes = sorted({m.loader for m in models or catalog.load_catalog()
                    for p in report.problems if p.path.is_relative_to(m.target_dir(report.root))})
    listed = "weights.lock" if report.lock else "the model catalog"
    return WeightsNotVerified(
        f"weight file {what}: {first.path}"
        + (f" (and {len(rest)} more problem{'s' if len(rest) > 1 else ''})" if rest else ""),
        detail=f"{' and '.join(nodes) or 'The pipeline'} need{'s' if len(nodes) < 2 else ''} it at "
               "the first generation; ComfyUI was not started.\n"
               f"It is in {listed} but not on disk as listed: the image was built without it, or a\n"
               f"volume mounted on {report.root / 'models'} hides it."
               + "".join(f"\n{p.kind}: {p.path}" for p in rest[:10])
               + (f"\n... {len(rest) - 10} more" if len(rest) > 10 else ""),
        fix="rebuild the image, or remove that volume. `trellis-box models verify` lists every\n"
            "missing or damaged file.",
        problems=[p.to_dict() for p in report.problems],
    )


def _runtime_packages(settings: ServeSettings, found: Findings) -> str:
    assert found.root is not None
    return "; ".join(check_runtime_packages(found.root, python=settings.python, env=found.env,
                                            timeout=settings.import_timeout))


def _nodes(settings: ServeSettings, found: Findings) -> str:
    assert found.root is not None
    found.packs = import_packs(found.root, node_pack_dirs(found.root), python=settings.python,
                               env=found.env, timeout=settings.import_timeout,
                               comfy_args=settings.comfy_args)
    return "; ".join(f"{name}: {len(classes)} node classes" for name, classes in found.packs.items())


# ---- running the steps -------------------------------------------------------------------------

_GPU = Step("gpu", _gpu)
_AFTER_GPU: tuple[Step, ...] = (
    Step("cuda arch", _arch, needs=("gpu",)),
    Step("profile", _profile, needs=("gpu",)),
    Step("environment", _environment),
    # Before anything is created under it: a mistyped root must not grow an output folder.
    Step("comfyui root", _root),
    Step("directories", _directories, needs=("comfyui root",)),
)
_COMFY: tuple[Step, ...] = (
    Step("weights", _weights, needs=("comfyui root",)),
    Step("node imports", _nodes, needs=("comfyui root", "environment")),
    # After the node imports: a pack that fails to import is the first thing to fix.
    Step("runtime packages", _runtime_packages, needs=("comfyui root", "environment")),
)

#: ``serve``: everything that must hold before ComfyUI starts, cheapest first.
PREFLIGHT: tuple[Step, ...] = (_GPU, *_AFTER_GPU, Step("port", _port), *_COMFY)

#: ``doctor``: the same checks plus the driver version (serve leaves that to CUDA itself), minus
#: the port, which a running server holds when doctor is run beside it.
DOCTOR: tuple[Step, ...] = (_GPU, Step("driver", _driver, needs=("gpu",)), *_AFTER_GPU, *_COMFY)


def run(settings: ServeSettings, steps: Sequence[Step] = PREFLIGHT, *, fail_fast: bool = True,
        on_step: Callable[[StepResult], None] | None = None) -> tuple[Findings, list[StepResult]]:
    """Run ``steps`` in order. With ``fail_fast`` the first failure is raised after it is reported;
    otherwise every step runs whose needs passed, and the caller reads the results."""
    found = Findings()
    results: list[StepResult] = []
    passed: set[str] = set()
    for step in steps:
        missing = [n for n in step.needs if n not in passed]
        if missing:
            result = StepResult(step.name, None, 0.0, f"skipped: needs {', '.join(missing)}")
        else:
            start = time.monotonic()
            try:
                detail = step.check(settings, found)
            except TrellisBoxError as exc:
                result = StepResult(step.name, False, time.monotonic() - start, exc.message, exc)
            else:
                result = StepResult(step.name, True, time.monotonic() - start, detail)
                passed.add(step.name)
        results.append(result)
        if on_step is not None:
            on_step(result)
        if fail_fast and result.error is not None:
            raise result.error
    return found, results
