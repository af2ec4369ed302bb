"""Copy the part of trellis-box that `models fetch` and `models verify` need: nothing more.

Run by Dockerfile.trellis2 (stage weights-src) as ``python weights_closure.py SRC PYPROJECT DEST``.
The weights stage installs DEST, and because Docker's COPY is content-addressed, the weights stay
cached for every change that leaves DEST unchanged: a new serve feature, a node-pack fix, a README
edit, a test dependency or tool setting in pyproject.toml. Only the models code (and what it
imports), the catalog, the lock, the pins or the package's own metadata and dependencies re-run
the download.

How: every CLI command module except ``models`` is replaced by an empty ``app`` (the weights
stage never runs those commands, and their imports would pull serve, client, batch... in), then the
closure is every ``trellis_box`` module reachable from ``cli/app.py`` through import statements,
read from the source (so imports inside functions count too), plus the data files. pyproject.toml
is cut to the tables that build and install the package (the tool-deps stage reads its
dependencies from that cut too, and the weights stage is built on tool-deps).
"""

import ast
import re
import shutil
import sys
from pathlib import Path

PACKAGE = "trellis_box"
KEEP_CLI = {"__init__", "app", "models", "_errors", "_flags", "_output"}
DATA = ("catalog.toml", "pins.toml", "weights.lock.json")
STUB = '"""Not part of the weights stage."""\n\nimport typer\n\napp = typer.Typer()\n'
# pyproject tables that build and install the package; the rest (test extras, pytest and linter
# settings) does not change what the weights stage runs.
PACKAGING_TABLES = re.compile(r"(build-system|project|project\.scripts|tool\.setuptools(\..+)?)")
TABLE_HEADER = re.compile(r"^\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def module_file(src: Path, dotted: str) -> Path | None:
    path = src.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported(src: Path, file: Path) -> set[str]:
    """Dotted names of the package's modules (and their parent packages) ``file`` imports."""
    parts = list(file.relative_to(src).with_suffix("").parts)
    package = parts if parts[-1] == "__init__" else parts[:-1]
    package = [p for p in package if p != "__init__"]
    names: set[str] = set()
    for node in ast.walk(ast.parse(file.read_text(), str(file))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)  # `from . import models`
    found: set[str] = set()
    for name in names:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            parts = name.split(".")
            found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return {n for n in found if module_file(src, n)}


def closure(src: Path, start: str) -> set[Path]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(imported(src, module_file(src, name)) - seen)  # type: ignore[arg-type]
    return {module_file(src, n) for n in seen}  # type: ignore[misc]


def packaging_part(pyproject: str) -> str:
    """The tables of ``pyproject`` that build and install the package, in their order."""
    kept, keep = [], False
    for line in pyproject.splitlines():
        header = TABLE_HEADER.match(line.strip())
        if header:
            keep = bool(PACKAGING_TABLES.fullmatch(header.group(1)))
        if keep:
            kept.append(line)
    return "\n".join(kept).strip() + "\n"


def main(src: Path, pyproject: Path, dest: Path) -> None:
    for module in (src / PACKAGE / "cli").glob("*.py"):
        if module.stem not in KEEP_CLI:
            module.write_text(STUB)
    data = {src / PACKAGE / "data" / name for name in DATA}
    for path in sorted(closure(src, f"{PACKAGE}.cli.app") | {p for p in data if p.exists()}):
        target = dest / "src" / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    (dest / "pyproject.toml").write_text(packaging_part(pyproject.read_text()))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]), Path(sys.argv[3]))
