"""Exceptions to text and exit codes.

Exit codes: 0 done, 1 a known error, 2 usage, 3 a batch finished with failed inputs (report
written), 130 interrupted (Ctrl-C, SIGINT), 143 terminated (SIGTERM: ``timeout``, systemd,
``docker stop``, Kubernetes, AWS Batch). Tracebacks only with ``TRELLIS_BOX_DEBUG=1``; unknown exceptions keep
their own text.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

from trellis_box.errors import TrellisBoxError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def is_click_error(exc: BaseException) -> bool:
    """A usage error of typer's click. typer >= 0.29 ships its own copy of click (and click is not a
    dependency of ours), so match the class name along the MRO instead of importing click."""
    return any(cls.__name__ == "ClickException" for cls in type(exc).__mro__)


def report(exc: BaseException, *, as_json: bool) -> int:
    """Print ``exc`` for the user and return the process exit code."""
    if os.environ.get("TRELLIS_BOX_DEBUG") == "1":
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, TrellisBoxError):
        if as_json:
            sys.stdout.write(json.dumps(exc.to_dict(), indent=2) + "\n")
        from trellis_box.cli._output import err, styled

        err.print(styled(("error:", "bold red"), " ", str(exc)), highlight=False, soft_wrap=True)
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return EXIT_INTERRUPTED
    if as_json:
        sys.stdout.write(json.dumps({"error": "unexpected", "message": repr(exc)}) + "\n")
    sys.stderr.write(f"error: unexpected {type(exc).__name__}: {exc}\n"
                     "  note: run again with TRELLIS_BOX_DEBUG=1 for the traceback\n")
    return EXIT_ERROR
