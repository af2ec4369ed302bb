"""Import stand-ins for the GPU harness only: packages the GPU machine lacks and that are too big to
carry there (av 35 MB, pymeshlab 106 MB, meshlib 23 MB, boto3 with botocore 17 MB), never shipped.

A stand-in package answers any attribute with a permissive class (an Exception, so an ``except``
clause naming one still works) and any submodule with another stand-in, so ``from av.container
import InputContainer`` imports. Nothing in them does real work: the harness's jobs never call them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any


class Dummy:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> Dummy:
        return Dummy()

    def __getattr__(self, name: str) -> Dummy:
        return Dummy()

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __bool__(self) -> bool:
        return False


def _getattr(module: str) -> Callable[[str], type]:
    def __getattr__(name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (Dummy, Exception), {"__module__": module})

    return __getattr__


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.startswith(self.prefix + "."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        module.__path__ = []
        module.__getattr__ = _getattr(module.__name__)  # type: ignore[method-assign]


def make(name: str, namespace: dict[str, Any]) -> None:
    """Make the package ``name`` (its ``globals()``) a stand-in, submodules included."""
    namespace["__getattr__"] = _getattr(name)
    namespace["__path__"] = []
    namespace["STAND_IN"] = True
    if not any(isinstance(f, _Finder) and f.prefix == name for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder(name))
