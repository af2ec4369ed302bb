"""The real components tests use beyond ``pip install -e '.[test]'``, checked in one place.

A test whose component is absent skips, naming it, why the test needs it and the command that
installs it, so the README's set-up and test commands pass on a fresh machine. Under CI
(``CI=true``: ``.ci/run`` installs every one of them) a skip fails the test instead (the hook is in
``conftest.py``): a green CI has run every test.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
NPM_PREFIX = REPO_ROOT / ".ci-work" / "npm"
NPM_PACKAGES = {"gltf-validator": "2.0.0-dev.3.10", "@comfyorg/litegraph": "0.17.2"}
REGISTRY_BINARY = "/usr/bin/docker-registry"
CHROMIUM = "/usr/bin/chromium"  # Debian's: Playwright never downloads a browser here
NVCC = "nvcc"


def node_path() -> list[Path]:
    """Where node looks for our npm packages: ``NODE_PATH``, else ``.ci/run``'s install."""
    raw = os.environ.get("NODE_PATH") or str(NPM_PREFIX / "node_modules")
    return [Path(p) for p in raw.split(os.pathsep) if p]


def npm_package(name: str) -> Path | None:
    """The installed directory of npm package ``name``, or None."""
    return next((p / name for p in node_path() if (p / name / "package.json").is_file()), None)


def _docker_engine() -> str | None:
    import docker

    try:
        client = docker.from_env(timeout=30)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:  # noqa: BLE001 - any failure here means "no engine"
        return f"no Docker engine reachable: {exc}"
    return None


def _programs(*names: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        missing = [n for n in names if shutil.which(n) is None and not Path(n).is_file()]
        return f"not found: {', '.join(missing)}" if missing else None

    return probe


def _modules(*names: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        # find_spec, not import: f3d must not be imported into the test process (report/render_worker.py)
        missing = [n for n in names if importlib.util.find_spec(n) is None]
        return f"Python module(s) not installed: {', '.join(missing)}" if missing else None

    return probe


def _both(*probes: Callable[[], str | None]) -> Callable[[], str | None]:
    return lambda: next((m for probe in probes if (m := probe()) is not None), None)


def _npm(name: str) -> Callable[[], str | None]:
    def probe() -> str | None:
        if shutil.which("node") is None:
            return "node is not installed"
        where = os.pathsep.join(map(str, node_path()))
        return None if npm_package(name) else f"{name} is not under NODE_PATH={where}"

    return probe


@dataclass(frozen=True)
class Component:
    name: str
    needed_for: str
    install: str
    probe: Callable[[], str | None]  # None when present, else what is missing


_NPM_INSTALL = ("apt-get install -y nodejs npm && npm install --prefix .ci-work/npm "
                + " ".join(f"{n}@{v}" for n, v in NPM_PACKAGES.items()))

COMPONENTS = {c.name: c for c in (
    Component("docker", "swap, publish and image tests run real containers",
              "apt-get install -y docker.io && dockerd --bridge=none --iptables=false --ip6tables=false &",
              _docker_engine),
    Component("debootstrap", "the local Debian base image of the test containers (no registry is reachable)",
              "apt-get install -y debootstrap", _programs("debootstrap")),
    Component("docker-registry", "publish pushes to a real registry demanding the ECR token's credentials",
              "apt-get install -y docker-registry apache2-utils", _programs(REGISTRY_BINARY, "htpasswd")),
    Component("gltf-validator", "every GLB a test makes is checked by Khronos' validator",
              _NPM_INSTALL, _npm("gltf-validator")),
    Component("litegraph", "the ComfyUI editor's graph library must load the editor workflow unchanged",
              _NPM_INSTALL, _npm("@comfyorg/litegraph")),
    Component("chromium", "report.html is opened in a real headless browser (Playwright drives Debian's)",
              "apt-get install -y chromium libegl1 libegl-mesa0 libgl1-mesa-dri (playwright comes with .[test])",
              _both(_modules("playwright"), _programs(CHROMIUM))),
    Component("f3d", "the report's thumbnails are rendered by f3d",
              "pip install 'trellis-box[thumbnails]' (part of .[test])", _modules("f3d")),
    Component("nvcc", "the architecture check is tested against real nvcc output",
              "bash .ci/install-nvcc .ci-work/cuda && export PATH=$PWD/.ci-work/cuda/bin:$PATH "
              "(NVIDIA's nvcc wheels from PyPI; also needs apt-get install -y gcc)",
              _programs(NVCC, "cc")),
)}


def require(name: str) -> None:
    """Skip the calling test (or fixture) unless component ``name`` is present."""
    component = COMPONENTS[name]
    missing = component.probe()
    if missing:
        pytest.skip(f"{component.name} missing ({missing}); {component.needed_for}. "
                    f"Install: {component.install}")
