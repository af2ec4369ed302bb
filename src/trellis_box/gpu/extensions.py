"""The four CUDA extensions built from their pinned sources for any set of GPU architectures.

The prebuilt Torch270 wheels of ComfyUI-Trellis2 carry no sm_80 code (no A100) and are built for
one torch. This builds cumesh, flex_gemm, nvdiffrast and o_voxel from ``pins.toml [extensions]``
(cloned at the pinned commits, or taken from a directory of sources for a machine with no network),
as wheels, four at a time, with the debug info stripped from every ``.so`` and every wheel checked
by :mod:`trellis_box.gpu.archcheck` against the targets. Needs torch, nvcc, ``git`` (to clone),
``strip`` and the ``wheel`` package; imports only the standard library, so it runs in ComfyUI's
interpreter (``image/build_extensions.py`` is its command line).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from trellis_box import pins
from trellis_box.errors import ExtensionBuildError
from trellis_box.gpu import archcheck

# CuMesh vendors Eigen at its top (``Eigen/``) but its cubvh include dir is an empty submodule
# path, and the o_voxel fork's Eigen is a GitLab submodule: both get a link to CuMesh's copy
# (only ``<Eigen/Dense>`` is included). Extension -> the include directory that must hold ``Eigen/``.
EIGEN_INCLUDES = {"cumesh": "third_party/cubvh/third_party/eigen", "o_voxel": "third_party/eigen"}
EIGEN_SOURCE = "cumesh"


@dataclass(frozen=True)
class Built:
    """One extension's stripped, checked wheel and how long its build took."""

    name: str
    wheel: Path
    seconds: float
    unstripped_bytes: int


def torch_arch_list(targets: Iterable[int]) -> str:
    """``(80, 90)`` -> ``"8.0;9.0"``: the ``TORCH_CUDA_ARCH_LIST`` torch's cpp_extension builds cubins for."""
    return ";".join(f"{t // 10}.{t % 10}" for t in targets)


def clone(url: str, commit: str, dest: Path) -> None:
    """The exact commit, by fetch (a moved branch cannot change what is built), without submodules."""
    dest.mkdir(parents=True)
    for args in (["init", "-q"], ["fetch", "-q", "--depth", "1", url, commit], ["checkout", "-q", "FETCH_HEAD"]):
        done = subprocess.run(["git", "-C", str(dest), *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise ExtensionBuildError(
                f"cannot get {url} at {commit}",
                detail=f"git {' '.join(args)}: {done.stderr.strip()}",
                fix="check the network, or pass `sources` DIR with the sources laid out as pins.toml "
                    "[extensions] names them (dir = the folder name)",
                repo=url, commit=commit,
            )


def prepare_sources(work: Path, sources: Path | None, extensions: dict[str, pins.Repo]) -> dict[str, Path]:
    """Each extension's source tree under ``work`` (copied from ``sources`` or cloned), Eigen linked."""
    trees = {}
    for name, repo in extensions.items():
        tree = work / repo.dir
        if sources is not None:
            given = sources / repo.dir
            if not (given / "setup.py").is_file():
                raise ExtensionBuildError(
                    f"no {name} sources in {sources}",
                    detail=f"{given / 'setup.py'} does not exist",
                    fix=f"put {repo.repo} at {repo.commit} (its {repo.subdir or 'top'} folder) in "
                        f"{given}, or leave out `sources` to clone it",
                    extension=name,
                )
            # The build writes build/ and *.egg-info into the tree: never into the given sources.
            shutil.copytree(given, tree, symlinks=True)
        else:
            checkout = work / "checkouts" / name
            clone(repo.repo, repo.commit, checkout)
            shutil.move(checkout / repo.subdir if repo.subdir else checkout, tree)
        trees[name] = tree
    link_eigen(trees)
    return trees


def link_eigen(trees: dict[str, Path]) -> None:
    """Point every include dir of :data:`EIGEN_INCLUDES` that lacks ``Eigen/Dense`` at CuMesh's ``Eigen/``."""
    eigen = trees[EIGEN_SOURCE] / "Eigen"
    for name, include in EIGEN_INCLUDES.items():
        if name not in trees:
            continue
        target = trees[name] / include / "Eigen"
        if (target / "Dense").is_file():
            continue
        if not (eigen / "Dense").is_file():
            raise ExtensionBuildError(
                f"{name} needs Eigen and {EIGEN_SOURCE}'s vendored copy is missing",
                detail=f"neither {target / 'Dense'} nor {eigen / 'Dense'} exists",
                fix=f"use the pinned {EIGEN_SOURCE} sources (pins.toml [extensions.{EIGEN_SOURCE}]): "
                    "they vendor Eigen at Eigen/",
                extension=name,
            )
        if target.is_symlink() or target.exists():
            target.unlink() if target.is_symlink() else shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(eigen.resolve(), target_is_directory=True)


def build_env(targets: Iterable[int], jobs: int) -> dict[str, str]:
    # BUILD_TARGET: the setup.py files guess ROCm or CUDA from torch unless told.
    return {**os.environ, "TORCH_CUDA_ARCH_LIST": torch_arch_list(targets), "MAX_JOBS": str(jobs),
            "BUILD_TARGET": "cuda"}


def build_wheels(trees: dict[str, Path], out: Path, targets: tuple[int, ...], *, jobs: int,
                 python: str = sys.executable,
                 progress: Callable[[str], None] = lambda _: None) -> dict[str, tuple[Path, float]]:
    """``pip wheel --no-build-isolation --no-deps`` for every tree at once: name -> (wheel, seconds).

    All four at once, each with ``jobs`` compile jobs: the extensions have few sources each, so the
    cores stay busy only when the builds overlap (the longest, cumesh, sets the wall time).
    """
    raw = out / "raw"
    logs = out / "logs"
    raw.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    env = build_env(targets, jobs)
    running = {}
    for name, tree in trees.items():
        log = (logs / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [python, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "--no-cache-dir",
             "-w", str(raw / name), str(tree)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        running[name] = (proc, log, time.monotonic())
    built, failed = {}, []
    finished: dict[str, float] = {}
    while len(finished) < len(running):  # each build's own time, whichever ends first
        for name, (proc, _, _) in running.items():
            if name not in finished and proc.poll() is not None:
                finished[name] = time.monotonic()
        time.sleep(0.2)
    for name, (proc, log, started) in running.items():
        code = proc.wait()
        log.close()
        seconds = finished[name] - started
        progress(f"{name}: {'built' if code == 0 else f'failed ({code})'} in {seconds:.0f} s")
        wheels = sorted((raw / name).glob("*.whl"))
        if code != 0 or len(wheels) != 1:
            failed.append(name)
        else:
            built[name] = (wheels[0], seconds)
    if failed:
        tails = "\n".join(f"--- {n} ({logs / f'{n}.log'}):\n" + _tail(logs / f"{n}.log") for n in failed)
        raise ExtensionBuildError(
            f"{len(failed)} extension build(s) failed: {', '.join(failed)}",
            detail=tails,
            fix="read the log named above; a compiler error in a .cu file usually means nvcc is "
                "older than the architecture asked for (sm_90 needs CUDA >= 11.8)",
            extensions=failed,
        )
    return built


def strip_wheel(wheel: Path, out: Path, *, python: str = sys.executable) -> Path:
    """``strip --strip-debug`` every ``.so`` in ``wheel``; repacked by ``wheel pack`` (new RECORD hashes)."""
    unpacked = out / f"{wheel.name}.d"
    shutil.rmtree(unpacked, ignore_errors=True)
    _run([python, "-m", "wheel", "unpack", "-d", str(unpacked), str(wheel)], wheel.name)
    [root] = unpacked.iterdir()
    for so in sorted(root.rglob("*.so")):
        _run(["strip", "--strip-debug", str(so)], so.name)
    _run([python, "-m", "wheel", "pack", "-d", str(out), str(root)], wheel.name)
    shutil.rmtree(unpacked)
    return out / wheel.name


def build(out: Path, archs: str | Iterable[str], *, sources: Path | None = None, work: Path | None = None,
          jobs: int | None = None, only: Iterable[str] | None = None, python: str = sys.executable,
          progress: Callable[[str], None] = lambda _: None) -> list[Built]:
    """Sources -> four stripped wheels in ``out`` that :func:`archcheck.check` passes for ``archs``."""
    targets = archcheck.parse_archs(archs)
    extensions = pins.load().extensions
    wanted = list(only) if only else list(extensions)
    unknown = sorted(set(wanted) - set(extensions))
    if unknown:
        raise ExtensionBuildError(
            f"unknown extension(s): {', '.join(unknown)}",
            detail=f"pins.toml [extensions] names {', '.join(extensions)}",
            fix="name extensions as pins.toml does",
        )
    # o_voxel and cumesh take Eigen from cumesh's tree, built or not.
    chosen = {n: extensions[n] for n in extensions if n in wanted or n == EIGEN_SOURCE}
    out.mkdir(parents=True, exist_ok=True)
    work = work or out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    trees = prepare_sources(work, sources, chosen)
    progress(f"building {', '.join(wanted)} for {' '.join(f'sm_{t}' for t in targets)}")
    raw = build_wheels({n: trees[n] for n in wanted}, work, targets,
                       jobs=jobs or os.cpu_count() or 1, python=python, progress=progress)
    built = []
    for name, (wheel, seconds) in raw.items():
        built.append(Built(name, strip_wheel(wheel, out, python=python), seconds, wheel.stat().st_size))
    archcheck.check([b.wheel for b in built], targets)
    return built


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ExtensionBuildError(
            f"{Path(cmd[0]).name} failed on {what}",
            detail=(done.stderr or done.stdout).strip()[-2000:],
            fix="install binutils (strip) and the wheel package (pins.toml [extensions] build_packages)",
        )


def _tail(path: Path, lines: int = 25) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
