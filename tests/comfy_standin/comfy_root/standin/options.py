"""Faults and timing of the stand-in: ``--standin-*`` flags over ``COMFY_STANDIN_*`` variables.

``current`` is read by the nodes and the server on every use, so ``POST /standin/options``
(used by the test fixture) changes a running server without a restart.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

# As recorded: /system_stats of the recording machine (CPU only, 25 GB).
RECORDED_RAM_BYTES = 25276502016


@dataclasses.dataclass
class Options:
    exec_seconds: float = 0.5
    #: The post-process node's time (remesh, UV unwrap, bake: CPU work on the real stack).
    post_seconds: float = 0.0
    progress_steps: int = 36
    glb_bytes: int = 0
    fail_node: str | None = None
    fail_kind: str = "error"
    fail_message: str | None = None
    fail_when: str | None = None
    drop_ws_after: int = 0
    view_delay: float = 0.0
    #: Seconds between queueing a prompt and answering its POST: a client cancelled meanwhile
    #: has a prompt on the server whose id it never read.
    queue_reply_delay: float = 0.0
    gpu_name: str | None = None
    vram_bytes: int | None = None
    startup_delay: float = 0.0

    def update(self, changes: dict[str, Any]) -> None:
        fields = {f.name: f for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ValueError(f"unknown stand-in option(s): {', '.join(unknown)}; "
                             f"known: {', '.join(sorted(fields))}")
        for name, value in changes.items():
            setattr(self, name, _coerce(fields[name], value))
        if self.fail_kind not in ("error", "oom"):
            raise ValueError(f"fail_kind must be 'error' or 'oom', not {self.fail_kind!r}")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def should_fail(self, class_type: str, inputs: dict[str, Any]) -> bool:
        if self.fail_node != class_type:
            return False
        if not self.fail_when:
            return True
        name, _, value = self.fail_when.partition("=")
        return str(inputs.get(name)) == value


def _coerce(field: dataclasses.Field[Any], value: Any) -> Any:
    if value is None or value == "":
        return field.default
    kind = str(field.type)
    if kind.startswith("float"):
        return float(value)
    if kind.startswith("int"):
        return int(value)
    return str(value)


def from_environment_and_args(args: Any) -> Options:
    options = Options()
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(Options):
        env_value = os.environ.get(f"COMFY_STANDIN_{field.name.upper()}")
        if env_value is not None:
            changes[field.name] = env_value
        arg_value = getattr(args, f"standin_{field.name}", None)
        if arg_value is not None:
            changes[field.name] = arg_value
    options.update(changes)
    return options


current = Options()
