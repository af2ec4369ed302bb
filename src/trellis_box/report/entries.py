"""The per-input reports of a batch (``<name>.json``, written by the batch engine), read from its
storage (a folder or an S3 prefix) into what the page shows: one :class:`Entry` per input and a
:class:`Summary` over all of them.

Reading is forgiving: a field a report lacks (an older trellis-box, a failure before upload) is
shown as unknown rather than failing the whole report, and JSON files that are not per-input
reports are ignored.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from trellis_box.storage import Storage

#: Where the report keeps what it makes (thumbnails, input previews, the viewer script).
FILES_DIR = "report-files"


@dataclass(frozen=True)
class Entry:
    name: str
    status: str
    data: dict[str, Any]
    #: Names in the store of the files this input has (absent ones are ``None``).
    glb: str | None = None
    cutout: str | None = None

    @property
    def input_path(self) -> str | None:
        return (self.data.get("input") or {}).get("path")

    @property
    def server_seconds(self) -> float | None:
        server_ms = (self.data.get("timings") or {}).get("server_ms")
        return server_ms / 1000 if isinstance(server_ms, (int, float)) else None

    def for_page(self, thumbnail: str | None, preview: str | None) -> dict[str, Any]:
        """What the page's script renders for this input (kept small: a batch has thousands)."""
        stats = self.data.get("glb") or {}
        timings = self.data.get("timings") or {}
        error = self.data.get("error") or None
        return {
            "name": self.name,
            "status": self.status,
            "glb": self.glb,
            "cutout": self.cutout,
            "thumbnail": thumbnail,
            "input": preview,
            "input_path": self.input_path,
            "resolution": self.data.get("resolution"),
            "preset": (self.data.get("parameters") or {}).get("preset"),
            "seconds": self.server_seconds,
            "nodes": [[n.get("class_type") or n.get("node"), n.get("seconds")]
                      for n in timings.get("nodes") or []],
            "bytes": stats.get("bytes"),
            "faces": stats.get("faces"),
            "vertices": stats.get("vertices"),
            "textures": stats.get("textures") or [],
            "error": None if error is None else {k: error.get(k) for k in
                                                 ("error", "message", "detail", "fix", "note")},
        }


@dataclass(frozen=True)
class Summary:
    counts: dict[str, int]
    gpu_seconds: float
    per_image_seconds: float | None
    resolutions: dict[str, int]
    servers: list[str]
    versions: dict[str, list[str]] = field(default_factory=dict)
    device: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"counts": self.counts, "gpu_seconds": round(self.gpu_seconds, 3),
                "per_image_seconds": None if self.per_image_seconds is None
                else round(self.per_image_seconds, 3),
                "resolutions": self.resolutions, "servers": self.servers,
                "versions": self.versions, "device": self.device}


def read_entries(store: Storage) -> list[Entry]:
    """Every per-input report in the store, in name order."""
    names = store.list()
    present = set(names)
    entries = []
    for file in names:
        if not file.endswith(".json"):
            continue
        try:
            data = json.loads(store.read(file))
        except (OSError, ValueError):
            continue
        if not (isinstance(data, dict) and "status" in data and "trellis_box_version" in data):
            continue
        name = file.removesuffix(".json")
        entries.append(Entry(name, str(data["status"]), data,
                             glb=f"{name}.glb" if f"{name}.glb" in present else None,
                             cutout=f"{name}.cutout.png" if f"{name}.cutout.png" in present else None))
    return entries


def summarise(entries: list[Entry]) -> Summary:
    timed = [s for e in entries if (s := e.server_seconds) is not None]
    ok = [e for e in entries if e.status == "ok"]

    def distinct(*path: str) -> list[str]:
        values = []
        for e in entries:
            value: Any = e.data
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                values.append(str(value))
        return sorted(set(values))

    devices = distinct("server", "device", "name")
    return Summary(
        counts={"inputs": len(entries), "ok": len(ok), "failed": len(entries) - len(ok)},
        gpu_seconds=sum(timed),
        per_image_seconds=sum(timed) / len(timed) if timed else None,
        resolutions=dict(Counter(str(e.data.get("resolution")) for e in ok)),
        servers=distinct("server", "url"),
        versions={"trellis-box": distinct("trellis_box_version"),
                  "ComfyUI": distinct("server", "comfyui_version"),
                  "PyTorch": distinct("server", "pytorch_version"),
                  "Python": distinct("server", "python_version")},
        device=", ".join(devices) or None,
    )
