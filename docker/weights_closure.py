"""Copy the part of trellis-box that `models fetch` and `models verify` need: nothing more.

Run by Dockerfile.trellis2 (stage weights-src) as ``python weights_closure.py SRC DEST`` with the
package's dependencies installed. The weights stage installs DEST, and because Docker's COPY is
content-addressed, the weights stay cached for every change that leaves DEST unchanged: a new serve
feature, a node-pack fix, a README edit. Only the models code, the catalog, the lock or the pins
re-run the download.

How: every CLI command module except ``models`` is replaced by an empty ``register`` (the weights
stage never runs those commands, and their imports would pull serve, client, batch... into the
closure), then the modules the remaining CLI and the fetch/verify library import are the closure.
"""

import shutil
import sys
from pathlib import Path

KEEP_CLI = {"__init__", "app", "models", "_errors", "_output"}
DATA = ("catalog.toml", "pins.toml", "weights.lock.json")
STUB = '"""Not part of the weights stage."""\n\n\ndef register(app):\n    pass\n'


def main(src: Path, dest: Path) -> None:
    for module in (src / "trellis_box" / "cli").glob("*.py"):
        if module.stem not in KEEP_CLI:
            module.write_text(STUB)
    sys.path.insert(0, str(src))
    import trellis_box.cli.app  # noqa: F401
    import trellis_box.fetch  # noqa: F401
    import trellis_box.hub  # noqa: F401
    import trellis_box.lock  # noqa: F401
    import trellis_box.verify  # noqa: F401

    used = {Path(m.__file__).resolve() for m in list(sys.modules.values())
            if getattr(m, "__file__", None)}
    data = {src / "trellis_box" / "data" / name for name in DATA}
    for path in sorted(p for p in used | data if p.is_relative_to(src) and p.exists()):
        target = dest / "src" / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
