"""Fixtures for the image tests: CUDA objects compiled by nvcc, and Dockerfile.trellis2 built for
real on a local stand-in for the upstream stack.

nvcc (13.0 here) compiles for chosen GPU architectures without a GPU, so the build-time
architecture check is tested against real fatbins, never against bytes we wrote ourselves.

No registry or GitHub is reachable, so the two images Dockerfile.trellis2 lets a build swap are
made locally: ``PYTHON_IMAGE`` (the debootstrap base with a venv at /opt/venv) and ``STACK_IMAGE``
(that plus the ComfyUI stand-in at /opt/comfyui, a fake ``nvidia-smi`` reporting an L40S, and
the four CUDA extension packages as wheels whose ``.so`` files nvcc built for the pinned GPUs).
Everything else in the image is built from this repository by the real Dockerfile, once per session.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import docker
import pytest

from tests.comfy_standin import install as install_standin
from tests.components import NVCC, require
from tests.docker_support import buildkit_build
from tests.hub_mirror import HubMirror, ProxyRequest
from tests.serve_support import fake_nvidia_smi_script
from trellis_box import pins
from trellis_box.gpu import archcheck

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = "Dockerfile.trellis2"
# What the build context needs (.dockerignore keeps the rest out of a real build as well).
CONTEXT_FILES = (DOCKERFILE, ".dockerignore", "pyproject.toml", "README.md", "src", "image")
PYTHON_IMAGE = "trellis-box-test/image-python:bookworm"
STACK_IMAGE = "trellis-box-test/image-stack:standin"
FINAL_IMAGE = "trellis-box-test/comfyui-trellis2:standin"
T = TypeVar("T")

KERNEL = """\
__global__ void add_one(float *x) { x[threadIdx.x] += 1.0f; }
extern "C" void launch(float *x) { add_one<<<1, 32>>>(x); }
"""


def gencode(arch: int, *, ptx: bool = False, specific: bool = False) -> str:
    """``-gencode`` for a cubin (``sm_86``) or PTX (``compute_86``) of one compute capability."""
    a = "a" if specific else ""
    code = f"compute_{arch}{a}" if ptx else f"sm_{arch}{a}"
    return f"arch=compute_{arch}{a},code={code}"


def compile_cuda_so(dest: Path, gencodes: Iterable[str], *flags: str) -> Path:
    """A real CUDA shared object carrying exactly the requested cubins and PTX."""
    require("nvcc")
    src = dest.with_suffix(".cu")
    src.write_text(KERNEL)
    cmd = [NVCC, "-shared", "-Xcompiler", "-fPIC", *flags, "-o", str(dest), str(src)]
    for g in gencodes:
        cmd += ["-gencode", g]
    subprocess.run(cmd, check=True, capture_output=True)
    return dest


def compile_host_so(dest: Path) -> Path:
    """A shared object with no device code (like cumesh's ``_xatlas``)."""
    src = dest.with_suffix(".c")
    src.write_text("int host_only(void) { return 1; }\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(dest), str(src)], check=True,
                   capture_output=True)
    return dest


def make_wheel(dest_dir: Path, name: str, version: str, files: dict[str, Path]) -> Path:
    """A minimal installable wheel ``<name>-<version>-py3-none-any.whl`` holding ``files``."""
    dist_info = f"{name}-{version}.dist-info"
    wheel = dest_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        for member, path in files.items():
            zf.write(path, f"{name}/{member}")
        zf.writestr(f"{dist_info}/METADATA",
                    f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        zf.writestr(f"{dist_info}/WHEEL",
                    "Wheel-Version: 1.0\nGenerator: trellis-box-tests\nRoot-Is-Purelib: false\n"
                    "Tag: py3-none-any\n")
        zf.writestr(f"{dist_info}/top_level.txt", f"{name}\n")
        record = [*zf.namelist(), f"{dist_info}/RECORD"]
        zf.writestr(f"{dist_info}/RECORD", "".join(f"{m},,\n" for m in record))
    return wheel


@dataclass
class BuiltImage:
    tag: str
    context: Path
    output: str  # the build's plain progress output
    build_args: dict[str, str]
    env: dict[str, str]
    # What the Hub mirror saw during this build alone: the mirror serves the whole session.
    hub_requests: list[ProxyRequest]

    def rebuild(self, tag: str, context: Path, *extra: str,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return build_final(context, tag, self.build_args, env or self.env, *extra)


def copy_context(dest: Path) -> Path:
    """The build context as a copy, so tests can change sources without touching the repository."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in CONTEXT_FILES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def build_final(context: Path, tag: str, build_args: dict[str, str], env: dict[str, str],
                *extra: str) -> subprocess.CompletedProcess[str]:
    args = [f"--build-arg={k}={v}" for k, v in build_args.items()]
    return buildkit_build(context, tag, "--progress=plain", "--secret=id=hf_token,env=HF_TOKEN",
                          *args, *extra, dockerfile=str(context / DOCKERFILE), env=env)


def steps(output: str) -> dict[str, list[str]]:
    """BuildKit plain progress grouped by step: ``{"[weights 3/3] RUN ...": [lines...]}``."""
    names: dict[str, str] = {}
    grouped: dict[str, list[str]] = {}
    for line in output.splitlines():
        number, _, rest = line.partition(" ")
        if not number.startswith("#"):
            continue
        if number not in names and rest.startswith("["):
            names[number] = rest
            grouped[rest] = []
        elif number in names:
            grouped[names[number]].append(rest)
    return grouped


def _build_or_fail(context: Path, tag: str, *extra: str) -> None:
    done = buildkit_build(context, tag, *extra)
    if done.returncode != 0:
        pytest.fail(f"building {tag} failed:\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def python_image(base_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    ctx = tmp_path_factory.mktemp("python-image")
    # System site-packages: the ComfyUI stand-in uses Debian's aiohttp and Pillow, as ComfyUI
    # uses the packages of the venv it runs in.
    (ctx / "Dockerfile").write_text(
        f"FROM {base_image}\nRUN python3 -m venv --system-site-packages /opt/venv\n")
    _build_or_fail(ctx, PYTHON_IMAGE)
    return PYTHON_IMAGE


@pytest.fixture(scope="session")
def stack_image(python_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    ctx = tmp_path_factory.mktemp("stack-image")
    install_standin(ctx / "comfyui", node_pack=False, rmbg_weights=False)
    (ctx / "nvidia-smi").write_text(fake_nvidia_smi_script())
    so = compile_cuda_so(ctx / "ext.so", [gencode(int(a[3:])) for a in pins.load().cuda_archs])
    host = compile_host_so(ctx / "host.so")
    (ctx / "wheels").mkdir()
    for name in archcheck.EXTENSION_PACKAGES:
        make_wheel(ctx / "wheels", name, "0.0.1", {"_C.so": so, "_host.so": host})
    (ctx / "Dockerfile").write_text(
        f"FROM {python_image}\n"
        "COPY comfyui /opt/comfyui\n"
        "COPY nvidia-smi /usr/local/bin/nvidia-smi\n"
        "COPY wheels /tmp/wheels\n"
        "RUN chmod 755 /usr/local/bin/nvidia-smi \\\n"
        "    && /opt/venv/bin/pip install --no-deps --no-index /tmp/wheels/*.whl \\\n"
        "    && rm -rf /tmp/wheels\n")
    _build_or_fail(ctx, STACK_IMAGE)
    return STACK_IMAGE


@pytest.fixture(scope="session")
def final_image(stack_image: str, python_image: str, hub_mirror: HubMirror,
                tmp_path_factory: pytest.TempPathFactory) -> BuiltImage:
    """Dockerfile.trellis2 built for real on the stand-in stack, weights from the olah mirror,
    the mirror's (fake) token passed the one supported way: a BuildKit secret from HF_TOKEN."""
    context = copy_context(tmp_path_factory.mktemp("context"))
    # A cache mount of its own: the builder keeps the default one across sessions, and a session
    # finding every weight there would prove nothing about the fetch (nor the token).
    build_args = {"PYTHON_IMAGE": python_image, "STACK_IMAGE": stack_image,
                  "HF_ENDPOINT": hub_mirror.endpoint,
                  "WEIGHTS_CACHE_ID": f"trellis-box-test-weights-{uuid.uuid4().hex[:12]}"}
    env = {"HF_TOKEN": hub_mirror.token}
    seen_before = len(hub_mirror.requests)
    done = build_final(context, FINAL_IMAGE, build_args, env)
    if done.returncode != 0:
        pytest.fail(f"building {FINAL_IMAGE} failed:\n{done.stderr[-6000:]}")
    return BuiltImage(FINAL_IMAGE, context, done.stderr, build_args, env,
                      list(hub_mirror.requests[seen_before:]))


def wait_for(predicate: Callable[[], T], timeout: float, what: Callable[[], str],
             interval: float = 0.5) -> T:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes; ``what`` says
    what was awaited, evaluated at the timeout (so it can include the latest logs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what()}")
        time.sleep(interval)


def container_logs(client: docker.DockerClient, name: str) -> str:
    try:
        logs: bytes = client.containers.get(name).logs()
        return logs.decode(errors="replace")[-4000:]
    except docker.errors.NotFound:
        return "(container gone)"

