"""Entry point of the ``trellis-box`` command."""

from __future__ import annotations

import sys

import typer

from trellis_box import __version__
from trellis_box.cli import batch, bench, generate, models, publish, serve, status, swap, workflow
from trellis_box.cli import report as report_command
from trellis_box.cli._errors import EXIT_USAGE, is_click_error, report

app = typer.Typer(
    name="trellis-box",
    help="Bake, verify, serve and drive the comfyui-trellis2 image-to-GLB container.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback(invoke_without_command=True)
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


# One style for every command module: a module-level `app` (named for a group, unnamed for
# top-level commands) whose commands are declared with @app.command.
for _module in (models, generate, report_command, bench, serve, swap, status, publish, workflow, batch):
    app.add_typer(_module.app)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    as_json = "--json" in args
    try:
        result = app(args=args, standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return report(KeyboardInterrupt(), as_json=as_json)
    except Exception as exc:  # noqa: BLE001 - the one place every error becomes text
        if is_click_error(exc):
            exc.show()  # type: ignore[attr-defined]
            return getattr(exc, "exit_code", EXIT_USAGE)
        return report(exc, as_json=as_json)
    except KeyboardInterrupt as exc:
        return report(exc, as_json=as_json)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
