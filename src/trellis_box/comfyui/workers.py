"""The ComfyUI workers behind one server URL, read off ``/trellis-box/info``.

``trellis-box serve`` may run several ComfyUI processes in one container (one GPU, each its own
port, worker 0 on the public one). Clients are given the public URL; the others are the same host
on each worker's port, so a container must publish those ports at the same numbers. A plain
ComfyUI, or a container with one worker, is the one URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yarl import URL


def worker_urls(base_url: str, info: Mapping[str, Any] | None) -> list[str]:
    """``base_url`` first (it reaches worker 0, whatever port it was published on), then every
    other worker's URL."""
    workers = (info or {}).get("workers") or []
    url = URL(base_url.rstrip("/"))
    others = [url.with_port(int(w["port"])) for w in workers
              if isinstance(w, dict) and w.get("index") and w.get("port")]
    return [base_url.rstrip("/"), *(str(u) for u in others)]
