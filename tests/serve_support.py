"""Test helpers for ``trellis-box serve``: a fake ``nvidia-smi`` (no GPU on CI machines).

The fake is a POSIX sh script, so it runs on the host and in Debian test containers alike. It
answers ``nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`` for the fields
``name``, ``memory.total`` (MiB), ``compute_cap`` and ``driver_version``, one line per GPU, the way
the real tool does; ``fail=`` makes it exit 9 with the real tool's driver error.
"""

from __future__ import annotations

import stat
from pathlib import Path

# What the real tool prints when the driver is not reachable (container started without --gpus).
DRIVER_ERROR = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running."
)

L40S_MIB = 46068  # nvidia-smi's memory.total of an L40S (48 GB card)
L4_MIB = 23034  # an L4 (24 GB card)

_SCRIPT = """#!/bin/sh
# Fake nvidia-smi written by tests/serve_support.py (there is no GPU on this machine).
if [ -n "{fail}" ]; then
    echo "{fail}"
    exit 9
fi
fields=""
for arg in "$@"; do
    case "$arg" in
        --query-gpu=*) fields="${{arg#--query-gpu=}}" ;;
    esac
done
if [ -z "$fields" ]; then
    echo "fake nvidia-smi: only --query-gpu=... is supported" >&2
    exit 2
fi
i=0
while [ "$i" -lt {gpus} ]; do
    line=""
    old_ifs=$IFS
    IFS=,
    for field in $fields; do
        case "$field" in
            name) value="{name}" ;;
            memory.total) value="{memory_mib}" ;;
            compute_cap) value="{compute_cap}" ;;
            driver_version) value="{driver}" ;;
            *) echo "Field \\"$field\\" is not a valid field to query." >&2; exit 2 ;;
        esac
        line="${{line:+$line, }}$value"
    done
    IFS=$old_ifs
    echo "$line"
    i=$((i + 1))
done
"""


def fake_nvidia_smi_script(
    *,
    name: str = "NVIDIA L40S",
    memory_mib: int = L40S_MIB,
    compute_cap: str = "8.9",
    driver: str = "550.127.05",
    gpus: int = 1,
    fail: str = "",
) -> str:
    """The script text (for ``COPY`` into a test image); see :func:`write_fake_nvidia_smi`."""
    return _SCRIPT.format(name=name, memory_mib=memory_mib, compute_cap=compute_cap,
                          driver=driver, gpus=gpus, fail=fail)


def write_fake_nvidia_smi(bin_dir: Path, **kwargs: object) -> Path:
    """Write an executable ``nvidia-smi`` into ``bin_dir`` (put it first on PATH); return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "nvidia-smi"
    path.write_text(fake_nvidia_smi_script(**kwargs))  # type: ignore[arg-type]
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP
               | stat.S_IROTH)
    return path
