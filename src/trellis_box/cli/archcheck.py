"""``python -m trellis_box.cli.archcheck``: can the compiled CUDA extensions run on the target GPUs?

The image build runs it (Dockerfile.trellis2) against ComfyUI's venv; a missing architecture fails
the build naming the wheel, the ``.so`` and the architecture.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trellis_box import pins
from trellis_box.cli._errors import EXIT_USAGE, is_click_error, report
from trellis_box.cli._flags import errors_in_flags
from trellis_box.cli._output import JsonOption, emit
from trellis_box.gpu import archcheck


def arch(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        None, help="Wheels, .so files or package directories \\[default: the installed "
                   + ", ".join(archcheck.EXTENSION_PACKAGES) + "]."),
    archs: str = typer.Option(None, "--archs",
                              help='Target GPUs, e.g. "sm_86 sm_89 sm_90" \\[default: pins.toml].'),
    python: str = typer.Option(None, "--python",
                               help="Find the installed packages with this interpreter (ComfyUI's)."),
    as_json: bool = JsonOption,
) -> None:
    """Check that every CUDA extension carries cubin or PTX for every target architecture."""
    with errors_in_flags(ctx):
        targets = archcheck.parse_archs(archs or pins.load().cuda_archs)
        reports = archcheck.check(paths or archcheck.installed_packages(python=python), targets)

    def render(out: Console) -> None:
        table = Table(title=f"GPU code for {' '.join(f'sm_{t}' for t in targets)}")
        for col in ("extension", ".so", "GPU code"):
            table.add_column(col, overflow="fold")
        for r in reports:
            table.add_row(r.source, r.member, ", ".join(map(str, r.codes)) or "none (host code only)")
        out.print(table)
        out.print("ok: every extension runs on every target")

    emit([{"source": r.source, "member": r.member, "codes": [str(c) for c in r.codes]}
          for r in reports], as_json=as_json, render=render)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    app = typer.Typer(add_completion=False)
    app.command()(arch)
    command = typer.main.get_command(app)
    try:
        command.main(args=args, prog_name="python -m trellis_box.cli.archcheck", standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - every error becomes text, as in app.main
        if is_click_error(exc):
            exc.show()  # type: ignore[attr-defined]
            return EXIT_USAGE
        return report(exc, as_json="--json" in args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
