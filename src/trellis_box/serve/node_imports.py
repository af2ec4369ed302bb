"""The node-pack import check: each upstream pack imported the way ComfyUI imports it, so a
broken pack stops serve with its own traceback instead of ComfyUI's silent ``IMPORT FAILED``."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from trellis_box import pins
from trellis_box.errors import ConfigError, NodeImportError

# Run in the ComfyUI root with ComfyUI's interpreter. It loads each pack exactly as ComfyUI's
# nodes.load_custom_node does for a directory (module name = path with "." -> "_x_", registered in
# sys.modules before exec_module, so relative imports work), with the root first on sys.path as
# main.py has it. comfy.cli_args parses the command line only once main.py enabled it
# (comfy.options), so the check enables it with argv set to ComfyUI's own arguments: a pack (or
# comfy.model_management, which picks the device at import) sees the flags ComfyUI will run with.
# Results go to a file, one JSON line each, "importing" first: a pack that kills the interpreter
# (a bad .so segfaults) is still named.
_IMPORT_CHECK = r"""
import importlib.util, json, os, sys, traceback
results, root, comfy_args, packs = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4:]
sys.argv = [os.path.join(root, "main.py"), *comfy_args]
sys.path.insert(0, root)
try:
    import comfy.options
except ImportError:
    pass
else:
    comfy.options.enable_args_parsing()
def note(record):
    with open(results, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
try:
    import comfy.cli_args
except SystemExit:
    note({"state": "bad-args"})
    raise
except ImportError:
    pass
for pack in packs:
    note({"pack": pack, "state": "importing"})
    name = pack.replace(".", "_x_")
    try:
        spec = importlib.util.spec_from_file_location(name, os.path.join(pack, "__init__.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except BaseException:
        note({"pack": pack, "state": "failed", "traceback": traceback.format_exc()})
    else:
        classes = sorted(getattr(module, "NODE_CLASS_MAPPINGS", None) or {})
        note({"pack": pack, "state": "ok", "classes": classes})
"""


def node_pack_dirs(root: Path) -> list[Path]:
    """The upstream packs the pipeline needs (from the pins), in load order."""
    return [root / "custom_nodes" / repo.dir for repo in pins.load().node_packs.values()]


def import_packs(root: Path, packs: Sequence[Path], *, python: str, env: Mapping[str, str],
                 timeout: float, comfy_args: Sequence[str] = ()) -> dict[str, list[str]]:
    """Import each pack as ComfyUI would, in one child interpreter; pack name -> its node classes.

    ``comfy_args`` are the extra arguments ComfyUI is started with (``--cpu``, ``--lowvram``...).

    Raises :class:`NodeImportError` with the pack's own traceback for the first that fails.
    """
    for pack in packs:
        if not (pack / "__init__.py").is_file():
            raise NodeImportError(
                f"node pack {pack.name} is missing: {pack / '__init__.py'} does not exist",
                detail="ComfyUI would start without its nodes; the workflow needs them.",
                fix="rebuild the image (Dockerfile.trellis2 clones every pinned node pack), or remove\n"
                    f"a volume mounted over {pack.parent}",
                pack=pack.name, path=pack,
            )
    with tempfile.TemporaryDirectory(prefix="trellis-box-imports-") as tmp:
        results = Path(tmp) / "results.jsonl"
        cmd = [python, "-c", _IMPORT_CHECK, str(results), str(root), json.dumps(list(comfy_args)),
               *map(str, packs)]
        try:
            done = subprocess.run(cmd, cwd=root, env=dict(env), capture_output=True, text=True,
                                  errors="replace", timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            started = _records(results)
            name = Path(started[-1]["pack"]).name if started else packs[0].name
            raise NodeImportError(
                f"node pack {name} did not finish importing within {timeout:g} s",
                detail="An import that hangs usually waits for the network (there is none here, by\n"
                       "design) or for a lock; a slow disk can make a large import slow.",
                fix="find what the pack waits for at import, or raise TRELLIS_BOX_IMPORT_TIMEOUT",
                pack=name,
            ) from None
        records = _records(results)
    if any(r["state"] == "bad-args" for r in records):
        raise _args_rejected(comfy_args, done.stderr)
    classes: dict[str, list[str]] = {}
    for record in records:
        name = Path(record["pack"]).name
        if record["state"] == "ok":
            classes[name] = list(record["classes"])
        elif record["state"] == "failed":
            raise _import_failed(name, str(record["traceback"]))
    unfinished = [Path(r["pack"]).name for r in records
                  if r["state"] == "importing" and Path(r["pack"]).name not in classes]
    if unfinished or done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-20:]) or "(no output)"
        raise _import_failed(unfinished[0] if unfinished else "(before the first pack)",
                             f"the interpreter died with exit code {done.returncode}:\n{tail}")
    return classes


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    except FileNotFoundError:
        return []


def _args_rejected(comfy_args: Sequence[str], stderr: str) -> ConfigError:
    """ComfyUI's argument parser exited before any pack was imported: no pack is at fault."""
    said = stderr.strip().splitlines()[-1] if stderr.strip() else "(no output)"  # argparse: "error: ..."
    return ConfigError(
        f"ComfyUI rejects its extra arguments: {' '.join(comfy_args) or '(none)'}",
        detail=f"{said}\nComfyUI would exit at once; it was not started.",
        fix="correct TRELLIS_BOX_COMFY_ARGS or the arguments after `--` (`python main.py --help` in\n"
            "the ComfyUI root lists them)",
        variable="TRELLIS_BOX_COMFY_ARGS", comfy_args=list(comfy_args),
    )


def _import_failed(pack: str, traceback_text: str) -> NodeImportError:
    last = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else ""
    if "undefined symbol" in last or "ABI" in last:
        fix = "a compiled extension does not match the installed torch: rebuild the image from\n" \
              "Dockerfile.trellis2, which installs the pinned torch and the matching wheels"
    elif last.startswith(("ModuleNotFoundError", "ImportError")):
        fix = "a Python package the pack imports is not installed: rebuild the image from\n" \
              "Dockerfile.trellis2 (it installs every pinned requirement), or add the package"
    else:
        fix = "fix the error the traceback ends with, then restart; `trellis-box doctor` repeats this check"
    return NodeImportError(
        f"node pack {pack} failed to import; ComfyUI was not started",
        detail="ComfyUI would have logged IMPORT FAILED and served without its nodes.\n"
               "The pack's own traceback:\n" + _tail(traceback_text, 60),
        fix=fix,
        pack=pack, exception=last,
    )


def _tail(text: str, lines: int) -> str:
    kept = text.rstrip().splitlines()
    return "\n".join((["..."] if len(kept) > lines else []) + kept[-lines:])
