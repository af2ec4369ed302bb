"""The library names a command's parameters in backticks (`drain_timeout`, or ``parameter
`texture_size``` through :func:`trellis_box.comfyui.workflow.mention`); a user of the command line
reads them as what they typed (``--drain-timeout SECONDS``, ``--texture-size``, ``OUT``). The one
place that translates, for every command (and for image/build_extensions.py, which runs where
typer is not installed: typer is only named here for types)."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from trellis_box.errors import TrellisBoxError, WorkflowInvalidError

if TYPE_CHECKING:
    import typer

_MENTION = re.compile(r"(?:parameter )?`([A-Za-z_][A-Za-z0-9_]*)`")


def flags_of(ctx: typer.Context) -> dict[str, str]:
    """Each parameter of the running command by its name, as the user writes it:
    ``{"force": "--force", "drain_timeout": "--drain-timeout SECONDS", "out": "OUT"}``."""
    flags = {}
    for param in ctx.command.params:
        if not param.name:
            continue
        metavar = getattr(param, "metavar", None)
        if param.param_type_name == "argument":
            flags[param.name] = metavar or param.name.upper()
        elif param.param_type_name == "option":
            flag = max(param.opts, key=len)
            # A placeholder (SECONDS) says what follows the flag; a list of the values
            # (web|balanced|max) would repeat what the text around it says.
            placeholder = metavar and metavar.isupper() and not getattr(param, "is_flag", False)
            flags[param.name] = f"{flag} {metavar}" if placeholder else flag
    return flags


def _spell(text: str, flags: Mapping[str, str]) -> str:
    return _MENTION.sub(lambda m: flags.get(m.group(1), m.group(0)), text)


def in_flags(exc: TrellisBoxError, flags: Mapping[str, str]) -> TrellisBoxError:
    """``exc`` worded for the command line, in place: each parameter it names spelled as in
    ``flags`` (:func:`flags_of`, and names some other option or command sets)."""
    exc.message = _spell(exc.message, flags)
    exc.fix = _spell(exc.fix, flags) if exc.fix else exc.fix
    exc.note = _spell(exc.note, flags) if exc.note else exc.note
    problems = exc.facts.get("problems")
    if isinstance(exc, WorkflowInvalidError) and isinstance(problems, list):
        exc.detail = _problems(problems, flags)
    elif exc.detail:
        exc.detail = _spell(exc.detail, flags)
    return exc


def data_in_flags(data: Any, flags: Mapping[str, str]) -> Any:
    """``data`` with each parameter its texts name spelled as in ``flags``: a record that carries
    errors (a log line's fields, a check's detail), worded as :func:`in_flags` words an error."""
    if isinstance(data, str):
        return _spell(data, flags)
    if isinstance(data, dict):
        return {key: data_in_flags(value, flags) for key, value in data.items()}
    if isinstance(data, list):
        return [data_in_flags(value, flags) for value in data]
    return data


def _problems(problems: list[dict[str, Any]], flags: Mapping[str, str]) -> str:
    """A workflow's problems by the option that set each input (graph paths after it), those an
    option set more than once (``--steps``: three inputs) on one line."""
    lines: dict[tuple[str, str, str], list[str]] = {}
    for problem in problems:
        where = flags.get(problem.get("parameter") or "") or problem["path"]
        lines.setdefault((where, problem["fact"], _spell(problem["fix"], flags)), []).append(
            problem["path"])
    return "\n".join(f"{where}: {fact} ({', '.join(paths)})\n  fix: {fix}"
                     for (where, fact, fix), paths in lines.items())


@contextmanager
def errors_in_flags(ctx: typer.Context, **more: str) -> Iterator[None]:
    """Word an error raised inside for this command (:func:`in_flags`). ``more``: how to spell
    names that are not parameters of this command (another command), or that another option set
    (a shorthand)."""
    try:
        yield
    except TrellisBoxError as exc:
        in_flags(exc, {**flags_of(ctx), **more})
        raise
