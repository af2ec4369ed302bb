"""The files of a batch: which inputs it has and their names, when an input is done, its report
(the type is :class:`trellis_box.batch.report.JobReport`).

Names are stable from one run to the next (resume depends on it); a report is renamed into place
whole, so a half-written one never counts as done.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trellis_box.batch.report import JobReport
from trellis_box.comfyui import workflow
from trellis_box.comfyui.explain import write_failed
from trellis_box.errors import UsageError
from trellis_box.storage import Storage

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})


@dataclass(frozen=True)
class Item:
    source: Path
    name: str
    #: Where the input came from when ``source`` is a local copy of it (``s3://bucket/key``).
    origin: str | None = None

    @property
    def where(self) -> str:
        return self.origin or str(self.source)


def plan(inputs: list[Path], *, out_dir: Path | None = None) -> list[Item]:
    """Expand directories (their image files, sorted) and give every input a unique name.

    Cutouts we wrote are not inputs, should ``out_dir`` be one of the directories.
    """
    return name_items([(p, None) for p in expand(inputs, out_dir=out_dir)],
                      looked_in=[str(p) for p in inputs])


def is_image_name(name: str, *, skip_cutouts: bool = False) -> bool:
    return (Path(name).suffix.lower() in IMAGE_SUFFIXES
            and not (skip_cutouts and name.endswith(".cutout.png")))


def expand(inputs: list[Path], *, out_dir: Path | None = None) -> list[Path]:
    """Files as given, directories as their image files (sorted); our cutouts skipped in ``out_dir``."""
    ours = out_dir.resolve() if out_dir is not None else None
    sources: list[Path] = []
    for path in inputs:
        if path.is_dir():
            skip_cutouts = path.resolve() == ours
            sources += sorted(p for p in path.iterdir()
                              if p.is_file() and is_image_name(p.name, skip_cutouts=skip_cutouts))
        else:
            sources.append(path)
    return [p.resolve() if p.exists() else p for p in sources]


def name_items(sources: list[tuple[Path, str | None]], *, looked_in: list[str]) -> list[Item]:
    """One item per distinct input (a local path, or its origin when it is a copy), named.

    Two inputs with the same stem get the stem plus a short hash of their path (or origin), so
    names are stable from one run to the next whatever else is in the batch.
    """
    unique = list({origin or str(path): (path, origin) for path, origin in sources}.values())
    if not unique:
        raise UsageError("no images to generate from",
                         detail=f"looked in: {', '.join(looked_in)}",
                         fix=f"name image files or directories holding "
                             f"{', '.join(sorted(IMAGE_SUFFIXES))} files")
    stems: dict[str, int] = {}
    for p, _ in unique:
        stems[p.stem.lower()] = stems.get(p.stem.lower(), 0) + 1
    return [Item(p, p.stem if stems[p.stem.lower()] == 1 else
                 f"{p.stem}-{hashlib.sha256((origin or str(p)).encode()).hexdigest()[:8]}", origin)
            for p, origin in unique]


#: Version 2 hashes the parameters that differ from their defaults, so a parameter added at its
#: default leaves every earlier key valid. A default is therefore part of what a key means:
#: changing one must come with a new version.
KEY_VERSION = 2

#: The parameters version 1 keys hashed, every one of them (reports before ``key_version``).
_V1_PARAMETERS = ("resolution", "seed", "sparse_structure_steps", "shape_steps", "texture_steps",
                  "texture_size", "target_face_num", "remesh", "low_vram", "attention",
                  "glb_prefix", "cutout_prefix")


def job_key(image_sha256: str, options: workflow.WorkflowOptions) -> str:
    """What makes two runs the same: the image content and every value that differs from its
    parameter's default (seed included). The preset only names values, so it is not hashed."""
    canonical = json.dumps({"key_version": KEY_VERSION, "image": image_sha256,
                            "parameters": options.non_default()}, sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def legacy_key_v1(image_sha256: str, options: workflow.WorkflowOptions) -> str | None:
    """The key a version 1 report of the same run carries, so outputs made before version 2 stay
    done; None when ``options`` sets a parameter version 1 did not know."""
    if set(options.non_default()) - set(_V1_PARAMETERS):
        return None
    values = {name: options[name] for name in _V1_PARAMETERS}
    canonical = json.dumps({"image": image_sha256, "options": values}, sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def output_paths(out_dir: Path, name: str) -> dict[str, Path]:
    return {"glb": out_dir / f"{name}.glb", "cutout": out_dir / f"{name}.cutout.png",
            "report": out_dir / f"{name}.json"}


def finished_report(out: Storage, name: str, key: str, *older: str | None
                    ) -> JobReport | None:
    """The report of a finished run of the same job, or ``None`` if it must (re)run.

    ``key`` is the job's key; ``older`` are its keys in earlier key versions.

    The GLB must still have the size the report recorded: one cut short or replaced since (a
    copy interrupted, an editor's export over it) is generated again rather than kept.
    """
    paths = output_paths(Path(), name)
    try:
        report = JobReport.from_json(json.loads(out.read(paths["report"].name)))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if report.status != "ok" or report.key not in (key, *filter(None, older)):
        return None
    glb_bytes = out.size(paths["glb"].name)
    if glb_bytes is None or report.glb is None or report.glb.bytes != glb_bytes:
        return None
    return report if out.exists(paths["cutout"].name) else None


def write_report(path: Path, report: JobReport) -> None:
    write_json(path, report.to_json())


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` whole: a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from exc
