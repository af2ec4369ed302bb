"""Which GPUs can run a compiled CUDA extension: read the fatbins inside its ``.so`` files.

A ``.so`` built by nvcc embeds its device code in an ELF section (``.nv_fatbin``, or
``__nv_relfatbin`` for relocatable device code) holding one or more fatbin containers. Each
container is a 16-byte header (magic ``0xBA55ED50``, version, header size, payload size) followed by
entries; each entry header starts with its kind (1 = PTX, 2 = cubin), its own header size and
payload size, and carries the compute capability at byte 28 and flags at byte 40. The layout follows
NVIDIA's ``fatbinary_section.h`` and public reverse engineering of cuobjdump; the tests check it
against nvcc's own output. No CUDA tool is needed, so the image build can run this on any machine.

Compatibility rules (CUDA C Programming Guide, "Binary Compatibility" and "Application
Compatibility"): a cubin for X.y runs on X.z for z >= y; PTX for compute capability c is JIT-compiled
by the driver for any GPU of capability >= c; arch-specific targets (``sm_90a``) run only on their
exact capability.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import struct
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from trellis_box.errors import (
    ConfigError,
    ExtensionNotFoundError,
    MissingGpuCodeError,
    UnreadableExtensionError,
)

# The extensions TRELLIS.2 needs at run time, as import names (pins.toml lists their wheels).
EXTENSION_PACKAGES = ("cumesh", "flex_gemm", "nvdiffrast", "o_voxel")

_FATBIN_SECTIONS = (b".nv_fatbin", b"__nv_relfatbin")
_FATBIN_MAGIC = 0xBA55ED50
_KIND_PTX = 1
_KIND_CUBIN = 2
# Observed on nvcc 12 and 13 output: set on entries built for ``sm_XXa`` / ``compute_XXa``.
_FLAG_ARCH_SPECIFIC = 0x100000
_ARCH = re.compile(r"^sm_(\d{2,3})a?$")


@dataclass(frozen=True, order=True)
class GpuCode:
    """One entry of a fatbin: machine code (cubin) or PTX for one compute capability."""

    capability: int  # major * 10 + minor, as in ``sm_86``
    kind: Literal["cubin", "ptx"]
    arch_specific: bool = False

    def runs_on(self, target: int) -> bool:
        if self.arch_specific:
            return target == self.capability
        if self.kind == "ptx":
            return target >= self.capability
        return target // 10 == self.capability // 10 and target >= self.capability

    def __str__(self) -> str:
        suffix = "a" if self.arch_specific else ""
        if self.kind == "ptx":
            return f"compute_{self.capability}{suffix} PTX"
        return f"sm_{self.capability}{suffix} cubin"


@dataclass(frozen=True)
class ExtensionReport:
    """The GPU code found in one ``.so`` and the target architectures it cannot run on."""

    source: str  # the wheel file or installed distribution the .so comes from
    member: str  # the .so, relative to the wheel or the package directory
    codes: tuple[GpuCode, ...]
    missing: tuple[str, ...]

    @property
    def has_gpu_code(self) -> bool:
        return bool(self.codes)


def parse_archs(spec: str | Iterable[str]) -> tuple[int, ...]:
    """``"sm_80 sm_86"`` (or a list) -> ``(80, 86)``; rejects anything that is not ``sm_NN``."""
    names = spec.replace(",", " ").split() if isinstance(spec, str) else list(spec)
    bad = [n for n in names if not _ARCH.match(n)]
    if bad or not names:
        raise ConfigError(
            f"invalid CUDA architecture list: {' '.join(names) or '(empty)'!r}",
            detail=f"not of the form sm_NN: {', '.join(bad)}" if bad else "no architecture given",
            fix='give real architectures, e.g. CUDA_ARCHS="sm_86 sm_89 sm_90" (the default)',
        )
    return tuple(int(_ARCH.match(n).group(1)) for n in names)  # type: ignore[union-attr]


def fatbin_codes(elf: bytes, *, name: str = "<bytes>") -> tuple[GpuCode, ...]:
    """Every GPU code entry in the fatbin sections of a 64-bit little-endian ELF file."""
    codes: set[GpuCode] = set()
    for section in _fatbin_sections(elf, name):
        codes.update(_container_codes(section, name))
    return tuple(sorted(codes))


def missing_archs(codes: Iterable[GpuCode], targets: Iterable[int]) -> tuple[str, ...]:
    codes = tuple(codes)
    return tuple(f"sm_{t}" for t in targets if not any(c.runs_on(t) for c in codes))


def scan(paths: Iterable[Path], targets: Iterable[int]) -> list[ExtensionReport]:
    """Report every ``.so`` in ``paths``: wheels (``.whl``), ``.so`` files, or directories."""
    targets = tuple(targets)
    reports = []
    for source, member, data in _shared_objects(paths):
        codes = fatbin_codes(data, name=f"{source}: {member}")
        # A .so without device code is a host-only helper (cumesh ships _xatlas): nothing to run on a GPU.
        missing = missing_archs(codes, targets) if codes else ()
        reports.append(ExtensionReport(source, member, codes, missing))
    return reports


def installed_packages(names: Iterable[str] = EXTENSION_PACKAGES, *,
                       python: str | None = None) -> list[Path]:
    """The directories of installed import packages, found without importing them (o_voxel
    imports torch). ``python``: look in that interpreter's environment (ComfyUI's venv) instead."""
    names = tuple(names)
    if python is None:
        specs = {n: _package_dirs(n) for n in names}
    else:
        specs = _package_dirs_of(python, names)
    missing = [n for n in names if not specs.get(n)]
    if missing:
        raise ExtensionNotFoundError(
            f"CUDA extension package(s) not installed: {', '.join(missing)}",
            detail=f"looked in the environment of {python or sys.executable}",
            fix="install the pinned ComfyUI-Trellis2 wheels (the wheels table of pins.toml) with pip --no-deps",
            packages=missing,
        )
    return [Path(d) for n in names for d in specs[n]]


def _package_dirs(name: str) -> list[str]:
    spec = importlib.util.find_spec(name)
    return list(spec.submodule_search_locations or []) if spec else []


def _package_dirs_of(python: str, names: tuple[str, ...]) -> dict[str, list[str]]:
    code = ("import importlib.util, json, sys\n"
            "specs = {n: importlib.util.find_spec(n) for n in sys.argv[1:]}\n"
            "print(json.dumps({n: list(s.submodule_search_locations or []) if s else []"
            " for n, s in specs.items()}))")
    try:
        done = subprocess.run([python, "-c", code, *names], capture_output=True, text=True,
                              check=True, timeout=60)
        return dict(json.loads(done.stdout))
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ExtensionNotFoundError(
            f"cannot list the packages of the Python at {python}",
            detail=str(exc),
            fix="pass `python` the interpreter ComfyUI runs with, e.g. /opt/venv/bin/python",
            python=python,
        ) from exc


def check(paths: Iterable[Path], targets: Iterable[int]) -> list[ExtensionReport]:
    """:func:`scan`, raising :class:`MissingGpuCodeError` naming every extension that lacks a target."""
    targets = tuple(targets)
    reports = scan(paths, targets)
    failing = [r for r in reports if r.missing]
    if failing:
        missing = [f"sm_{t}" for t in targets if any(f"sm_{t}" in r.missing for r in failing)]
        covered = [f"sm_{t}" for t in targets if f"sm_{t}" not in missing]
        cuda_arch_list = " ".join(f"{t // 10}.{t % 10}" for t in targets)
        lines = [
            f"{r.source}: {r.member}\n  has {', '.join(map(str, r.codes))}; "
            f"cannot run on {' '.join(r.missing)}"
            for r in failing
        ]
        fix = f'use wheels built for every target (TORCH_CUDA_ARCH_LIST="{cuda_arch_list}+PTX")'
        if covered:
            fix += f' or build for the GPUs they do run on:\n--build-arg CUDA_ARCHS="{" ".join(covered)}"'
        raise MissingGpuCodeError(
            f"{len(failing)} compiled extension(s) lack GPU code for {' '.join(missing)}: "
            + ", ".join(sorted({r.source for r in failing})),
            detail="\n".join(lines)
            + "\non those GPUs the first request would fail with 'no kernel image is available'",
            fix=fix,
            missing=missing,
            extensions=[f"{r.source}: {r.member}" for r in failing],
        )
    return reports


def _shared_objects(paths: Iterable[Path]) -> Iterator[tuple[str, str, bytes]]:
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise UnreadableExtensionError(
                f"no such wheel, .so or directory: {path}",
                detail="the GPU architecture check was asked to read it",
                fix="pass existing paths, or none to check the installed extension packages",
                path=path,
            )
        if path.is_dir():
            source = _distribution_of(path)
            for so in sorted(p for p in path.rglob("*") if p.is_file() and _is_shared_object(p.name)):
                yield source, str(so.relative_to(path.parent)), so.read_bytes()
        elif path.suffix == ".whl":
            try:
                with zipfile.ZipFile(path) as wheel:
                    for member in sorted(wheel.namelist()):
                        if _is_shared_object(Path(member).name):
                            yield path.name, member, wheel.read(member)
            except (zipfile.BadZipFile, OSError) as exc:
                raise UnreadableExtensionError(
                    f"cannot read wheel {path}",
                    detail=str(exc),
                    fix="download the wheel again from the pinned ComfyUI-Trellis2 commit",
                    path=path,
                ) from exc
        else:
            yield path.name, path.name, path.read_bytes()


def _is_shared_object(name: str) -> bool:
    return name.endswith(".so") or ".so." in name  # libfoo.so.12 too


def _distribution_of(package_dir: Path) -> str:
    """``'wheel cumesh 0.0.1'`` for an installed package directory, else the directory itself.

    Reads the ``*.dist-info`` beside the package, so it works for any environment's site-packages.
    """
    for dist in importlib.metadata.distributions(path=[str(package_dir.parent)]):
        top_level = (dist.read_text("top_level.txt") or "").split()
        files = {Path(str(f)).parts[0] for f in dist.files or ()}
        if package_dir.name in top_level or package_dir.name in files:
            return f"wheel {dist.metadata['Name']} {dist.version}"
    return str(package_dir)


def _fatbin_sections(elf: bytes, name: str) -> Iterator[bytes]:
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        raise _unreadable(name, "not a 64-bit little-endian ELF file")
    try:
        shoff, = struct.unpack_from("<Q", elf, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
        if shoff == 0:
            return
        if shnum == 0:  # more than 0xff00 sections: the count lives in section 0
            shnum = struct.unpack_from("<Q", elf, shoff + 0x20)[0]
        headers = [struct.unpack_from("<IIQQQQ", elf, shoff + i * shentsize) for i in range(shnum)]
        _, _, _, _, str_off, str_size = headers[shstrndx]
        names = elf[str_off:str_off + str_size]
        for sh_name, sh_type, _, _, offset, size in headers:
            section = names[sh_name:names.find(b"\0", sh_name)]
            if section in _FATBIN_SECTIONS and sh_type != 8:  # 8 = SHT_NOBITS: no bytes in the file
                if offset + size > len(elf):
                    raise _unreadable(name, f"section {section.decode()} runs past the end of the file")
                yield elf[offset:offset + size]
    except (struct.error, IndexError) as exc:
        raise _unreadable(name, f"truncated ELF section table ({exc})") from exc


def _container_codes(section: bytes, name: str) -> Iterator[GpuCode]:
    pos = 0
    while pos + 16 <= len(section):
        magic, _, header_size, payload_size = struct.unpack_from("<IHHQ", section, pos)
        if magic != _FATBIN_MAGIC:
            if any(section[pos:]):
                raise _unreadable(name, f"no fatbin magic at offset {pos} of its fatbin section")
            return  # zero padding after the last container
        entry, end = pos + header_size, pos + header_size + payload_size
        if end > len(section):
            raise _unreadable(name, f"fatbin container at offset {pos} is truncated")
        while entry + 48 <= end:
            kind, _, entry_header, entry_payload = struct.unpack_from("<HHIQ", section, entry)
            capability, = struct.unpack_from("<I", section, entry + 28)
            flags, = struct.unpack_from("<Q", section, entry + 40)
            if entry_header == 0:
                raise _unreadable(name, f"fatbin entry at offset {entry} has a zero-length header")
            if kind in (_KIND_PTX, _KIND_CUBIN):
                yield GpuCode(capability, "ptx" if kind == _KIND_PTX else "cubin",
                              bool(flags & _FLAG_ARCH_SPECIFIC))
            entry += entry_header + entry_payload
        pos = (end + 7) & ~7  # containers start 8-byte aligned


def _unreadable(name: str, fact: str) -> UnreadableExtensionError:
    return UnreadableExtensionError(
        f"cannot read the GPU code in {name}",
        detail=fact,
        fix="reinstall the wheel; if it is intact, report the file to trellis-box with `readelf -S` output",
        path=name,
    )
