"""Loading ``custom_nodes/*`` the way ComfyUI 0.3.64 does, so real node packs run unchanged.

Each ``.py`` file or directory is imported under a unique module name (a directory's path with
``.`` replaced by ``_x_``), registered in ``sys.modules`` before it runs so its relative imports
work. A pack that raises is logged and skipped: the server starts without it, and the import
summary marks it ``(IMPORT FAILED)``, which operators and our tests look for.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import time
from collections.abc import Iterator

from standin import registry

log = logging.getLogger("standin.pack_loader")


def _module_names(path: str) -> tuple[str, str, str]:
    """(short name, name in sys.modules, file to execute) of a pack file or directory."""
    if os.path.isfile(path):
        stem = os.path.splitext(path)[0]
        return os.path.basename(stem), stem, path
    return os.path.basename(path), path.replace(".", "_x_"), os.path.join(path, "__init__.py")


def load_pack(path: str, protected: set[str]) -> bool:
    """Import one pack and register its node types, except names in ``protected`` (core nodes)."""
    short_name, module_name, entry = _module_names(path)
    try:
        spec = importlib.util.spec_from_file_location(module_name, entry)
        if spec is None or spec.loader is None:
            raise ImportError(f"no module loader for {entry}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except Exception:
        log.warning("custom node pack %s failed to import:", path, exc_info=True)
        return False
    registry.PACK_DIRS[short_name] = os.path.abspath(os.path.dirname(entry))
    classes = getattr(module, "NODE_CLASS_MAPPINGS", None)
    if classes is None:
        log.warning("custom node pack %s has no NODE_CLASS_MAPPINGS; skipped", path)
        return False
    for name, node_class in classes.items():
        if name not in protected:
            registry.NODE_CLASSES[name] = node_class
            node_class.RELATIVE_PYTHON_MODULE = f"custom_nodes.{short_name}"
    registry.DISPLAY_NAMES.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {})
    return True


def _candidates(folder: str) -> Iterator[tuple[str, str]]:
    for entry in sorted(os.listdir(os.path.realpath(folder))):
        path = os.path.join(folder, entry)
        if entry == "__pycache__" or entry.endswith(".disabled"):
            continue
        if os.path.isfile(path) and not entry.endswith(".py"):
            continue
        yield entry, path


def load_all(folders: list[str], allowed: list[str] | None) -> None:
    """Load the packs in ``folders``; ``allowed`` limits them to those names (None: all)."""
    core = set(registry.NODE_CLASSES)
    timings: list[tuple[float, str, bool]] = []
    for folder in folders:
        if not os.path.isdir(folder):
            continue
        for entry, path in _candidates(folder):
            if allowed is not None and entry not in allowed:
                log.info("custom node pack %s not loaded: custom nodes are disabled", entry)
                continue
            started = time.perf_counter()
            loaded = load_pack(path, core)
            timings.append((time.perf_counter() - started, path, loaded))
    if timings:
        log.info("\nImport times for custom nodes:")
        for seconds, path, loaded in sorted(timings):
            log.info(f"{seconds:6.1f} seconds{'' if loaded else ' (IMPORT FAILED)'}: {path}")
        log.info("")
