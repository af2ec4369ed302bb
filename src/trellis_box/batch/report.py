"""One input's report, ``<name>.json`` beside its GLB: what ran, on which server, and how it ended.

The batch engine builds one :class:`JobReport` per input and writes it last, after the GLB and
the cutout; resume reads it back (:func:`trellis_box.batch.files.finished_report`). The JSON is
the format earlier versions wrote, so their reports still resume: ``to_json`` leaves out what an
outcome does not have, ``from_json`` takes what is there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trellis_box import __version__
from trellis_box.batch.glb import GlbStats


@dataclass(frozen=True)
class InputFacts:
    """The input file and, once it decoded, the normalised image that was uploaded."""

    path: str
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    #: What normalisation changed ("EXIF orientation 6 applied", ...).
    changes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        if self.sha256 is None:  # it never decoded: its path is all there is
            return {"path": self.path}
        return {"path": self.path, "sha256": self.sha256, "width": self.width,
                "height": self.height, "mode": self.mode, "changes": list(self.changes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InputFacts:
        return cls(str(data.get("path", "")), data.get("sha256"), data.get("width"),
                   data.get("height"), data.get("mode"), tuple(data.get("changes") or ()))


@dataclass(frozen=True)
class NodeTiming:
    node: str
    class_type: str | None
    seconds: float


@dataclass(frozen=True)
class Timings:
    #: From queueing to the files being home, on this machine.
    client_seconds: float
    #: The server's own execution time (its ``execution_start`` to ``execution_success``).
    server_ms: int | None
    nodes: tuple[NodeTiming, ...] = ()
    cached_nodes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"client_seconds": self.client_seconds, "server_ms": self.server_ms,
                "nodes": [{"node": n.node, "class_type": n.class_type, "seconds": n.seconds}
                          for n in self.nodes],
                "cached_nodes": list(self.cached_nodes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Timings:
        return cls(float(data.get("client_seconds") or 0.0), data.get("server_ms"),
                   tuple(NodeTiming(str(n.get("node")), n.get("class_type"),
                                    float(n.get("seconds") or 0.0))
                         for n in data.get("nodes") or ()),
                   tuple(str(n) for n in data.get("cached_nodes") or ()))


@dataclass(frozen=True)
class ReportFiles:
    """Where the files went: paths, or ``s3://`` URLs for an S3 output."""

    glb: str
    cutout: str

    def to_json(self) -> dict[str, str]:
        return {"glb": self.glb, "cutout": self.cutout}


@dataclass(frozen=True)
class ExportRerun:
    """A cached answer named a GLB deleted from the server: the export ran again."""

    missing: str | None
    stale_prompt_id: str


@dataclass(frozen=True)
class JobReport:
    status: str  # ok | failed
    #: The resume key of the image content and the requested parameters (None: never decoded).
    key: str | None
    input: InputFacts
    #: The parameters that ran (``WorkflowOptions.as_dict()``: the profile's low_vram, a
    #: stepped-down resolution), beside ``requested``, the ones the key was made of.
    parameters: dict[str, Any]
    #: Server and version facts (``trellis_box.batch.engine.server_facts``).
    server: dict[str, Any]
    #: The key's version (``trellis_box.batch.files.KEY_VERSION``); absent in version 1 reports.
    key_version: int | None = None
    requested: dict[str, Any] | None = None
    prompt_id: str | None = None
    #: What ran, for a finished job: the resolution after any step down, low_vram, seed.
    resolution: str | None = None
    low_vram: bool | None = None
    seed: int | None = None
    timings: Timings | None = None
    glb: GlbStats | None = None
    files: ReportFiles | None = None
    export_rerun: ExportRerun | None = None
    #: ``TrellisBoxError.to_dict()`` of a failed input.
    error: dict[str, Any] | None = None
    trellis_box_version: str = field(default=__version__)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "trellis_box_version": self.trellis_box_version,
            "status": self.status,
            "key": self.key,
            "key_version": self.key_version,
            "input": self.input.to_json(),
            "parameters": self.parameters,
            "requested": self.requested,
            "resolution": self.resolution,
            "low_vram": self.low_vram,
            "seed": self.seed,
            "server": self.server,
            "prompt_id": self.prompt_id,
            "timings": self.timings.to_json() if self.timings else None,
            "glb": self.glb.as_dict() if self.glb else None,
            "files": self.files.to_json() if self.files else None,
            "export_rerun": (vars(self.export_rerun).copy() if self.export_rerun else None),
            "error": self.error,
        }
        always = {"trellis_box_version", "status", "key", "input", "parameters", "server",
                  "prompt_id"}
        return {k: v for k, v in data.items() if k in always or v is not None}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobReport:
        """A report as written by this or an earlier version; raises ``ValueError`` (or
        ``KeyError``, ``TypeError``) on one that is not a report at all."""
        files = data.get("files")
        rerun = data.get("export_rerun")
        return cls(
            status=str(data["status"]), key=data.get("key"),
            input=InputFacts.from_json(data.get("input") or {}),
            parameters=dict(data.get("parameters") or {}), server=dict(data.get("server") or {}),
            key_version=data.get("key_version"), requested=data.get("requested"),
            prompt_id=data.get("prompt_id"), resolution=data.get("resolution"),
            low_vram=data.get("low_vram"), seed=data.get("seed"),
            timings=Timings.from_json(data["timings"]) if data.get("timings") else None,
            glb=GlbStats.from_dict(data["glb"]) if data.get("glb") else None,
            files=ReportFiles(str(files["glb"]), str(files["cutout"])) if files else None,
            export_rerun=(ExportRerun(rerun.get("missing"), str(rerun.get("stale_prompt_id")))
                          if rerun else None),
            error=data.get("error"),
            trellis_box_version=str(data.get("trellis_box_version", "")),
        )
