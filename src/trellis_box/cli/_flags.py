"""The library names a command's parameters in backticks (`drain_timeout`); a user of the command
line reads them as its flags (``--drain-timeout SECONDS``)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import typer

from trellis_box.errors import TrellisBoxError

_MENTION = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def flags_of(ctx: typer.Context) -> dict[str, str]:
    """Each option of the running command by its parameter name: ``{"force": "--force"}``."""
    flags = {}
    for param in ctx.command.params:
        if param.param_type_name != "option" or not param.name:
            continue
        flag = max(param.opts, key=len)
        metavar = getattr(param, "metavar", None)
        flags[param.name] = f"{flag} {metavar}" if metavar and not param.is_flag else flag  # type: ignore[attr-defined]
    return flags


def spell_flags(text: str, flags: Mapping[str, str]) -> str:
    return _MENTION.sub(lambda m: flags.get(m.group(1), m.group(0)), text)


@contextmanager
def errors_in_flags(ctx: typer.Context, **more: str) -> Iterator[None]:
    """Rewrite the parameter names in the fix, detail and note of an error raised inside as the
    command's flags (``more``: names that are not options of this command, e.g. another command)."""
    try:
        yield
    except TrellisBoxError as exc:
        flags = {**flags_of(ctx), **more}
        exc.fix = spell_flags(exc.fix, flags) if exc.fix else exc.fix
        exc.detail = spell_flags(exc.detail, flags) if exc.detail else exc.detail
        exc.note = spell_flags(exc.note, flags) if exc.note else exc.note
        raise
