"""The package layout is the architecture: each sub-package imports only the layers below it.

The order is the README's architecture table; a new import that points upwards (or a new
sub-package missing from the order) fails here, naming the file and the import.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import trellis_box

PACKAGE = Path(trellis_box.__file__).parent
#: Lowest first. ``errors``, ``pins``, ``docker_engine`` and ``aws_errors`` are the base every layer may use;
#: ``cli`` is the top.
LAYERS = ("errors", "pins", "docker_engine", "aws_errors", "weights", "comfyui", "gpu", "storage", "batch", "bench",
          "serve", "swap", "publish", "report", "cloud", "cli")
#: Installed into ComfyUI's custom_nodes/ on its own: imports nothing of ours.
STANDALONE = {"comfy_nodes"}


def _layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found += [(node.lineno, n) for n in names if n.startswith("trellis_box.")]
    return found


def test_every_sub_package_has_a_layer() -> None:
    layers = {_layer(p) for p in PACKAGE.glob("*") if p.name not in ("__init__.py", "__pycache__", "data",
                                                                      "py.typed")}
    assert layers - STANDALONE <= set(LAYERS), f"add {sorted(layers - STANDALONE - set(LAYERS))} to LAYERS"


def test_no_layer_imports_one_above_it() -> None:
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.parent == PACKAGE and path.name == "__init__.py":
            continue
        mine = _layer(path)
        for line, name in _imports(path):
            theirs = name.split(".")[1]
            if mine in STANDALONE and theirs != mine:
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {name} (the node pack stands alone)")
            elif theirs in LAYERS and mine in LAYERS and LAYERS.index(theirs) > LAYERS.index(mine):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} imports {name} ({theirs} is above {mine})")
    assert not upward, "\n".join(upward)


#: Command modules run on their own (``python -m``), not under ``trellis-box``.
OWN_ENTRY_POINTS = {"archcheck"}


def test_every_command_module_registers_the_same_way() -> None:
    """One style: a module-level ``app`` Typer with ``@app.command``, added by ``cli/app.py``."""
    import typer

    from trellis_box.cli import app as root

    added = [group.typer_instance for group in root.app.registered_groups]
    for path in sorted((PACKAGE / "cli").glob("[!_]*.py")):
        if path.stem in ("app", *OWN_ENTRY_POINTS):
            continue
        module = importlib.import_module(f"trellis_box.cli.{path.stem}")
        assert isinstance(getattr(module, "app", None), typer.Typer), f"{path.name}: no `app` Typer"
        assert any(module.app is typer_app for typer_app in added), f"{path.name}: not added"
        assert not hasattr(module, "register"), f"{path.name}: register() is the old style"
        assert module.app.registered_commands or module.app.registered_groups, path.name


#: Flags of other programs in a text, not of ours: nvidia-smi's query, the AWS CLI's, pip's,
#: docker build's, ComfyUI's.
FOREIGN_FLAGS = {"--query-gpu", "--repository-name", "--no-deps", "--build-arg", "--cpu", "--lowvram"}
_FLAG = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")
#: A command line shown in backticks for the user to run (`trellis-box models fetch --from DIR`,
#: ``docker run --gpus all``): its flags are its program's, and a suggestion may name them.
_COMMAND = re.compile(r"(`+)[a-z][\w.-]* [^`]*\1")


def _texts(path: Path) -> list[tuple[int, str]]:
    """The module's strings: an f-string whole (its values as ``{}``), so that a backticked command
    may span them; a flag alone in a list or tuple is an argument of a command line the code
    runs or shows (``[python, "main.py", "--port", port]``), not a text."""
    tree = ast.parse(path.read_text(), str(path))
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip |= {id(v) for v in node.values}
        elif isinstance(node, ast.List | ast.Tuple):
            skip |= {id(e) for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                     and re.fullmatch(r"--[a-z][\w-]*(=.*)?", e.value)}
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            texts.append((node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "{}"
                                               for v in node.values)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            texts.append((node.lineno, node.value))
    return texts


def test_the_library_spells_no_command_line_flags() -> None:
    """Outside ``cli/`` texts speak of parameters (`drain_timeout`), never of flags: each command
    spells them as the user typed them (``cli/_flags.py``)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if _layer(path) == "cli":
            continue
        for line, text in _texts(path):
            if set(_FLAG.findall(_COMMAND.sub("", text))) - FOREIGN_FLAGS:
                found.append(f"{path.relative_to(PACKAGE)}:{line}: {text.strip()[:80]}")
    assert not found, "\n".join(found)
