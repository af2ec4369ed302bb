"""``report.html``: one self-contained page (styles, script and data inline) that links the batch's
files by relative names, so it opens the same from a folder, a static website or object storage.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any

from trellis_box import __version__

ASSETS = resources.files("trellis_box.report") / "assets"


@cache
def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def render(data: dict[str, Any], *, title: str, folder: str) -> bytes:
    """The page for ``data`` (summary, entries, viewer script name), as UTF-8 bytes."""
    # `<` escaped so no string in the data (a file name) can close the <script> element.
    payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    values = {
        "__CSS__": _asset("report.css"),
        "__JS__": _asset("report.js"),
        "__TITLE__": html.escape(title),
        "__DIR__": html.escape(folder),
        "__VERSION__": html.escape(__version__),
        "__GENERATED__": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    page = _asset("report.html")
    for key, value in values.items():
        page = page.replace(key, value)
    # The data last: nothing in it is taken for a placeholder.
    return page.replace("__DATA__", payload).encode()


#: What a checkout runs to put the viewer in place; the repository holds only the manifest.
VENDOR_COMMAND = "python scripts/vendor_model_viewer.py"


def viewer_files() -> dict[str, bytes]:
    """The vendored <model-viewer> build and its licence, under names carrying its version.

    Empty where the build was never fetched (the repository does not hold npm's code; a checkout
    gets it with :data:`VENDOR_COMMAND`): the report then works without its 3D view."""
    manifest = json.loads(_asset("vendor/model-viewer.json"))
    version = manifest["version"]
    if not (ASSETS / "vendor" / "model-viewer-umd.min.js").is_file():
        return {}
    return {
        f"model-viewer-{version}.min.js": (ASSETS / "vendor" / "model-viewer-umd.min.js").read_bytes(),
        f"model-viewer-{version}.LICENSE.txt": (ASSETS / "vendor" / "LICENSE").read_bytes(),
    }
