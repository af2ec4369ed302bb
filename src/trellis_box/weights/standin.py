"""Stand-in weights: random-weight checkpoints at the catalog paths, never mistaken for the real ones.

The GPU harness (benchmarks/gpu/harness.py) writes checkpoints with TRELLIS.2's architectures and
random values where the real weights cannot be had, and marks the tree with :data:`MARKER`. Every
reader says so: ``models verify`` reports "stand-in weights" and fails unless told to accept them,
``serve`` refuses them unless ``TRELLIS_BOX_ALLOW_STAND_IN_WEIGHTS=1`` and writes
``weights_mode: "stand-in"`` into its state file (``/trellis-box/info``), and every figure measured
on them is labelled with :data:`LABEL`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

#: Under the ComfyUI root: beside every model directory, where nobody ships a file of that name.
MARKER = "models/STAND-IN-WEIGHTS"
MARKER_TEXT = (
    "stand-in weights: random values with TRELLIS.2's architectures, written by the trellis-box GPU\n"
    "harness. Meshes made with them are noise; timings and memory are indicative only.\n"
)
LABEL = "stand-in weights"
WeightsMode = Literal["real", "stand-in"]


def marker_path(root: Path) -> Path:
    return root / MARKER


def mode(root: Path) -> WeightsMode:
    """``stand-in`` when the marker is there, whatever it holds: a marker edited by hand still counts."""
    return "stand-in" if marker_path(root).exists() else "real"


def mark(root: Path) -> Path:
    path = marker_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MARKER_TEXT, encoding="utf-8")
    return path
