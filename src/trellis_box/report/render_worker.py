"""The thumbnail renderer's own process: ``python -m trellis_box.report.render_worker SIZE``.

f3d's wheel carries its own OpenSSL 3.2, which the system's older ``libssl.so.3`` shadows in any
process that loaded Python's ``ssl`` first (aiohttp, boto3): its import then fails. So f3d runs
here, in a process that imports it before anything else and nothing of trellis-box beyond it.

Protocol, one JSON object a line: after ``{"ready": true}``, each request ``{"glb": PATH,
"png": PATH}`` is answered ``{"ok": true}`` or ``{"error": TEXT}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import f3d


def engine(size: int) -> Any:
    f3d.Log.set_verbose_level(f3d.Log.VerboseLevel.QUIET)
    created = f3d.Engine.create(True)  # offscreen: EGL, GLX or OSMesa, whichever works here
    created.window.size = size, size
    options = created.options
    options["scene.up_direction"] = "+Y"  # glTF's up
    options["render.effect.antialiasing.mode"] = "fxaa"
    options["render.effect.tone_mapping"] = True
    options["render.light.intensity"] = 2.5
    return created


def render(renderer: Any, glb: str, png: str) -> None:
    renderer.scene.clear()
    renderer.scene.add(glb)
    camera = renderer.window.camera
    camera.reset_to_bounds()
    camera.azimuth(35)  # a three-quarter view, as a person would first turn it
    camera.elevation(25)
    camera.reset_to_bounds()
    renderer.window.render_to_image(True).save(png)  # no background: transparent around it


def main(size: int) -> int:
    renderer = engine(size)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            render(renderer, request["glb"], request["png"])
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which goes on
            print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        else:
            print(json.dumps({"ok": True}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
