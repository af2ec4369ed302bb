"""Human output with rich, machine output with ``--json``: one place decides which."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console

# Progress bars, tables and diagnostics go to stderr so stdout stays clean for --json and pipes.
err = Console(stderr=True)
out = Console()

JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def emit(data: Any, *, as_json: bool, render: Callable[[Console], None]) -> None:
    """Print ``data`` as JSON, or let ``render`` draw it for a person."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        sys.stdout.flush()
    else:
        render(out)
