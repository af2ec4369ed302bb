"""Human output with rich, machine output with ``--json``: one place decides which."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

# Progress bars, tables and diagnostics go to stderr so stdout stays clean for --json and pipes.
# markup=False: nothing printed is ever read as rich markup, so file names, node output and fix
# texts show as they are ("cup [v2].png", "[red]x.png", "capabilities: [gpu]"). Styles come
# only from styled(), which keeps them apart from the data.
err = Console(stderr=True, markup=False)
out = Console(markup=False)

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def styled(*parts: str | tuple[str, str]) -> Text:
    """One line from plain pieces and ``(text, style)`` pairs: ``styled(("error:", "red"), " ",
    message)``. No piece is parsed, so data can never turn into a style."""
    return Text.assemble(*parts)


def emit(data: Any, *, as_json: bool, render: Callable[[Console], None]) -> None:
    """Print ``data`` as JSON, or let ``render`` draw it for a person."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()
    else:
        render(out)
