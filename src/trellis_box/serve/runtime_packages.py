"""The run-time traps no import check sees: packages the pinned node packs use only inside a job.

transformers 5 breaks TRELLIS.2's DINOv3 extractor at the first generation, and an o_voxel
without ``tiled_flexible_dual_grid_to_mesh`` fails at the first shape decode; the node packs
import cleanly either way. The ranges and names are pins (``data/pins.toml`` ``[compat]``).

Checked in ComfyUI's interpreter, in the ComfyUI root, with the root first on ``sys.path`` as
``main.py`` has it: versions from ``importlib.metadata`` (nothing imported), and only the modules
whose names are needed are imported. Results go to a file: an extension that prints or crashes
while importing cannot hide them.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from trellis_box import pins
from trellis_box.errors import RuntimePackageError

_CHECK = r"""
import importlib, importlib.metadata, json, sys
results, root, packages, modules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
sys.path.insert(0, root)
def note(record):
    with open(results, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
for name in packages:
    try:
        dist = importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        note({"package": name, "version": None})
    else:
        note({"package": name, "version": dist.version, "location": str(dist.locate_file(""))})
def version_of(module):
    try:
        return importlib.metadata.version(module.split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return None
for module, names in modules.items():
    note({"module": module, "state": "importing"})
    try:
        imported = importlib.import_module(module)
    except BaseException as e:
        note({"module": module, "state": "failed", "error": f"{type(e).__name__}: {e}"})
    else:
        note({"module": module, "state": "ok", "file": getattr(imported, "__file__", None),
              "version": version_of(module), "missing": [n for n in names if not hasattr(imported, n)]})
"""


def check_runtime_packages(root: Path, *, python: str, env: Mapping[str, str],
                           timeout: float) -> list[str]:
    """One line per package and module that passed; :class:`RuntimePackageError` for the first
    that would fail a job, naming it, what was found and the fix."""
    p = pins.load()
    with tempfile.TemporaryDirectory(prefix="trellis-box-runtime-") as tmp:
        results = Path(tmp) / "results.jsonl"
        cmd = [python, "-c", _CHECK, str(results), str(root),
               json.dumps([r.name for r in p.compat_packages]),
               json.dumps({m.module: list(m.names) for m in p.compat_modules})]
        try:
            done = subprocess.run(cmd, cwd=root, env=dict(env), capture_output=True, text=True,
                                  errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            done = None
        records = _records(results)
    found = {r["package"]: r for r in records if "package" in r}
    imported = {r["module"]: r for r in records if "module" in r}
    lines = [_package(package, found.get(package.name), python, p.packages.get(package.name))
             for package in p.compat_packages]
    return lines + [_module(module, imported.get(module.module), python, done, timeout)
                    for module in p.compat_modules]


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except FileNotFoundError:
        return []


def _package(need: pins.PackageRange, record: dict[str, Any] | None, python: str,
             pinned: str | None) -> str:
    version = (record or {}).get("version")
    install = f"{need.name}=={pinned}" if pinned else f"{need.name}{need.range}"
    fix = (f"install {install} in ComfyUI's interpreter: `{python} -m pip install '{install}'`, or\n"
           "rebuild the image from Dockerfile.trellis2, which pins it (data/pins.toml)")
    if version is None:
        raise RuntimePackageError(
            f"{need.name} is not installed in ComfyUI's interpreter; ComfyUI was not started",
            detail=f"{python} has no {need.name} distribution; the pinned node packs need "
                   f"{need.name}{need.range}: {need.why}.",
            fix=fix, package=need.name, version=None, range=need.range)
    try:
        inside = Version(version) in SpecifierSet(need.range)
    except InvalidVersion:
        inside = False
    if not inside:
        raise RuntimePackageError(
            f"{need.name} {version} is outside the range the node packs work with ({need.range}); "
            "ComfyUI was not started",
            detail=f"Found in {python} at {record.get('location') if record else '?'}.\n"
                   f"{need.why[0].upper()}{need.why[1:]}; every import check passes before that.",
            fix=fix, package=need.name, version=version, range=need.range)
    return f"{need.name} {version} ({need.range})"


def _module(need: pins.ModuleNames, record: dict[str, Any] | None, python: str,
            done: subprocess.CompletedProcess[str] | None, timeout: float) -> str:
    package = need.module.split(".")[0]
    fix = (f"install {need.source}:\nrebuild the image from Dockerfile.trellis2, or `{python} -m pip "
           f"install` a {package} wheel built from that source")
    facts: dict[str, Any] = {"module": need.module, "names": list(need.names)}
    if record is None or record["state"] == "importing":
        if done is None:
            said = f"did not finish importing within {timeout:g} s"
        else:
            tail = "\n".join(done.stderr.strip().splitlines()[-20:]) or "(no output)"
            said = f"killed the interpreter (exit code {done.returncode}):\n{tail}"
        raise RuntimePackageError(
            f"{need.module} {said.splitlines()[0]}; ComfyUI was not started",
            detail="\n".join(said.splitlines()[1:]) or f"{need.why}.", fix=fix, **facts)
    if record["state"] == "failed":
        raise RuntimePackageError(
            f"{need.module} cannot be imported in ComfyUI's interpreter; ComfyUI was not started",
            detail=f"{record['error']}\n{need.why[0].upper()}{need.why[1:]}: "
                   f"{', '.join(need.names)}; the first job would fail.",
            fix=fix, error=record["error"], **facts)
    found = f"{package} {record.get('version') or '(no version metadata)'}"
    if record["missing"]:
        raise RuntimePackageError(
            f"{need.module} ({found}, {record['file']}) lacks {', '.join(record['missing'])}; "
            "ComfyUI was not started",
            detail=f"{need.why[0].upper()}{need.why[1:]}: {', '.join(need.names)}; the first job "
                   "would fail. This is another build of it than the node packs need.",
            fix=fix, missing=record["missing"], file=record["file"], version=record.get("version"),
            **facts)
    return f"{need.module} ({found}) has {', '.join(need.names)}"
