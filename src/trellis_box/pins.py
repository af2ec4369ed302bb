"""The upstream pins (``data/pins.toml``): the one source every consumer reads."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class Repo:
    repo: str
    commit: str
    dir: str = ""
    licence: str = ""
    version: str = ""
    subdir: str = ""  # where the package's setup.py sits inside the repository, if not at its top


@dataclass(frozen=True)
class PackageRange:
    """A package the pinned node packs need within a version range (PEP 440 specifiers)."""

    name: str
    range: str
    why: str


@dataclass(frozen=True)
class ModuleNames:
    """A module the pinned node packs import names from only at run time."""

    module: str
    names: tuple[str, ...]
    why: str
    source: str


@dataclass(frozen=True)
class Pins:
    comfyui: Repo
    node_packs: dict[str, Repo]
    base_image: str
    python: str
    packages: dict[str, str]
    runtime: dict[str, str]
    wheel_dir: str
    wheels: tuple[str, ...]
    cuda_archs: tuple[str, ...]
    # The CUDA extensions' sources (built by image/build_extensions.py) and the build tools it needs.
    extensions: dict[str, Repo]
    extension_build_packages: dict[str, str]
    compat_packages: tuple[PackageRange, ...] = ()
    compat_modules: tuple[ModuleNames, ...] = ()

    def build_args(self) -> dict[str, str]:
        """Dockerfile build-arg name -> value; the Dockerfile's ARG defaults must equal these."""
        return {
            "BASE_IMAGE": self.base_image,
            "PYTHON_VERSION": self.python,
            "COMFYUI_REPO": self.comfyui.repo,
            "COMFYUI_COMMIT": self.comfyui.commit,
            "TRELLIS2_NODES_REPO": self.node_packs["trellis2"].repo,
            "TRELLIS2_NODES_COMMIT": self.node_packs["trellis2"].commit,
            "TRELLIS2_NODES_DIR": self.node_packs["trellis2"].dir,
            "RMBG_NODES_REPO": self.node_packs["rmbg"].repo,
            "RMBG_NODES_COMMIT": self.node_packs["rmbg"].commit,
            "RMBG_NODES_DIR": self.node_packs["rmbg"].dir,
            "TORCH_VERSION": self.packages["torch"],
            "TORCHVISION_VERSION": self.packages["torchvision"],
            "TORCHAUDIO_VERSION": self.packages["torchaudio"],
            "TORCH_INDEX_URL": self.packages["torch_index"],
            "XFORMERS_VERSION": self.packages["xformers"],
            "TRANSFORMERS_VERSION": self.packages["transformers"],
            "SETUPTOOLS_VERSION": self.packages["setuptools"],
            "RUNTIME_PACKAGES": " ".join(f"{name}=={v}" for name, v in self.runtime.items()),
            "TRELLIS2_WHEEL_DIR": self.wheel_dir,
            "TRELLIS2_WHEELS": " ".join(self.wheels),
            "CUDA_ARCHS": " ".join(self.cuda_archs),
            "EXTENSION_BUILD_PACKAGES": " ".join(
                f"{name}=={v}" for name, v in self.extension_build_packages.items()),
        }


def _repo(table: dict[str, Any]) -> Repo:
    return Repo(**{k: str(v) for k, v in table.items()})


def parse(text: str) -> Pins:
    raw = tomllib.loads(text)
    return Pins(
        comfyui=_repo(raw["comfyui"]),
        node_packs={name: _repo(t) for name, t in raw["node_packs"].items()},
        base_image=raw["base"]["image"],
        python=raw["base"]["python"],
        packages={k: str(v) for k, v in raw["python"].items()},
        runtime={k: str(v) for k, v in raw["runtime"].items()},
        wheel_dir=raw["wheels"]["dir"],
        wheels=tuple(raw["wheels"]["files"]),
        cuda_archs=tuple(raw["gpu"]["cuda_archs"]),
        extensions={name: _repo(t) for name, t in raw["extensions"].items() if name != "build_packages"},
        extension_build_packages={k: str(v) for k, v in raw["extensions"]["build_packages"].items()},
        compat_packages=tuple(PackageRange(name, t["range"], t["why"])
                              for name, t in raw.get("compat", {}).get("packages", {}).items()),
        compat_modules=tuple(ModuleNames(module, tuple(t["names"]), t["why"], t["source"])
                             for module, t in raw.get("compat", {}).get("modules", {}).items()),
    )


def pins_text() -> str:
    return resources.files("trellis_box").joinpath("data/pins.toml").read_text(encoding="utf-8")


@cache
def load() -> Pins:
    return parse(pins_text())
