"""The ComfyUI stand-in for tests: a ComfyUI 0.3.64 look-alike built from the recordings.

``install(root)`` lays out a ComfyUI root (``main.py``, ``server.py``, ``folder_paths.py``, ...,
``custom_nodes/`` with stand-ins for the two pinned upstream packs, ``models/``, ``input/``,
``output/``); then ``python <root>/main.py --listen HOST --port PORT`` starts it like ComfyUI.
It needs Python 3.11+, aiohttp >= 3.8 and Pillow only, so a copy of the root runs in a Debian
bookworm container. See ``fixtures.py`` for the in-process pytest fixture.
"""

from __future__ import annotations

import shutil
from pathlib import Path

FILES = Path(__file__).resolve().parent / "comfy_root"
NODE_PACK_DIR = "trellis_box_nodes"
RMBG_WEIGHTS = Path("custom_nodes", "ComfyUI-BRIA_AI-RMBG", "RMBG-1.4", "model.pth")
# The stand-in packs take their schemas from here (comfy_root/standin/schema.py reads it).
SCHEMAS = "standin_object_info.json"


def node_pack_source() -> Path:
    import trellis_box.comfy_nodes

    return Path(trellis_box.comfy_nodes.__file__).resolve().parent


def recorded_schemas() -> Path:
    """The recorded ``/object_info`` the package ships (a verbatim copy of the recording)."""
    import trellis_box

    return Path(trellis_box.__file__).resolve().parent / "data" / "object_info.json"


def install(root: Path, *, node_pack: bool = True, rmbg_weights: bool = True) -> Path:
    """Lay out a stand-in ComfyUI root at ``root`` (created or refreshed) and return it.

    ``node_pack`` installs our pack as ``custom_nodes/trellis_box_nodes``; ``rmbg_weights``
    writes a placeholder ``model.pth`` where the RMBG loader looks (without it the loader fails
    at execution time, as upstream does without weights).
    """
    root = Path(root)
    # Tool caches left by linting the stand-in in place are megabytes, copied for every server.
    shutil.copytree(FILES, root, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache",
                                                  ".ruff_cache"))
    shutil.copyfile(recorded_schemas(), root / SCHEMAS)
    for directory in ("models", "input", "output", "user"):
        (root / directory).mkdir(exist_ok=True)
    if node_pack:
        target = root / "custom_nodes" / NODE_PACK_DIR
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(node_pack_source(), target,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    if rmbg_weights:
        weights = root / RMBG_WEIGHTS
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_bytes(b"stand-in RMBG-1.4 weights\n")
    return root
