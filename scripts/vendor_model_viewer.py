"""Vendor Google's <model-viewer> into the package, reproducibly, from npm.

    python scripts/vendor_model_viewer.py [VERSION]      # default: the version in the manifest

``npm pack`` fetches the published tarball (npm checks its integrity against the registry); its
self-contained UMD build (three.js included, loadable by a classic <script> from file://) and its
licence are copied to src/trellis_box/report/assets/vendor/, and the manifest beside them records
the version, the tarball, npm's integrity and the copied file's sha256 (tests/test_report.py
checks the file against it).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@google/model-viewer"
BUILD = "dist/model-viewer-umd.min.js"
VENDOR = Path(__file__).resolve().parent.parent / "src" / "trellis_box" / "report" / "assets" / "vendor"
MANIFEST = VENDOR / "model-viewer.json"


def main(argv: list[str]) -> int:
    version = argv[0] if argv else json.loads(MANIFEST.read_text())["version"]
    with tempfile.TemporaryDirectory() as tmp:
        packed = json.loads(subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{version}", "--json", "--pack-destination", tmp],
            check=True, capture_output=True, text=True, cwd=tmp).stdout)[0]
        with tarfile.open(Path(tmp) / packed["filename"]) as tar:
            tar.extractall(tmp, members=[tar.getmember(f"package/{name}")
                                         for name in (BUILD, "LICENSE", "package.json")],
                           filter="data")
        package = Path(tmp) / "package"
        meta = json.loads((package / "package.json").read_text())
        build = (package / BUILD).read_bytes()
        VENDOR.mkdir(parents=True, exist_ok=True)
        (VENDOR / "model-viewer-umd.min.js").write_bytes(build)
        (VENDOR / "LICENSE").write_bytes((package / "LICENSE").read_bytes())
    MANIFEST.write_text(json.dumps({
        "package": PACKAGE,
        "version": meta["version"],
        "licence": meta["license"],
        "file": BUILD,
        "tarball": f"https://registry.npmjs.org/{PACKAGE}/-/model-viewer-{meta['version']}.tgz",
        "integrity": packed["integrity"],
        "sha256": hashlib.sha256(build).hexdigest(),
    }, indent=2) + "\n")
    print(f"vendored {PACKAGE}@{meta['version']} ({meta['license']}) into {VENDOR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
