"""The CLI shell: usage errors, error rendering and exit codes."""

from __future__ import annotations

import json

import pytest
import typer

from trellis_box.cli._errors import report
from trellis_box.cli._flags import data_in_flags, errors_in_flags
from trellis_box.cli.app import main
from trellis_box.errors import TrellisBoxError


def test_group_without_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 2
    assert "Usage" in capsys.readouterr().out


def test_unknown_option_is_a_usage_error_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list", "--bogus"]) == 2
    assert "--bogus" in capsys.readouterr().err


def test_error_text_keeps_square_brackets(capsys: pytest.CaptureFixture[str]) -> None:
    exc = TrellisBoxError("node [6] failed", detail="input [seed] out of range", fix="use [0..9]")
    assert report(exc, as_json=False) == 1
    err = capsys.readouterr().err
    assert "node [6] failed" in err and "input [seed]" in err and "use [0..9]" in err


def test_json_error_carries_reference_and_fix(capsys: pytest.CaptureFixture[str]) -> None:
    exc = TrellisBoxError("boom", fix="do this", path="/x")
    report(exc, as_json=True)
    data = json.loads(capsys.readouterr().out)
    assert data["error"] == "trellis-box-error" and data["fix"] == "do this" and data["path"] == "/x"


def test_parameter_names_in_an_error_become_what_the_user_typed() -> None:
    """One command's error through the one translation: every part of the error, options with and
    without a placeholder, a flag, an argument, another command, and names left as they are."""
    app = typer.Typer()

    @app.command()
    def command(ctx: typer.Context,
                out: str = typer.Argument(...),
                wait: float = typer.Option(1.0, "--wait", metavar="SECONDS"),
                preset: str = typer.Option("a", "--preset", metavar="a|b"),
                overwrite: bool = typer.Option(False, "--force")) -> None:
        with errors_in_flags(ctx, write_template="trellis-box swap init-config PATH"):
            raise TrellisBoxError(
                "`preset` 'c' is unknown", detail="parameter `preset` sets `nothing`",
                fix="give `wait` or `overwrite`, write `out`, or run `write_template`",
                note="`low_vram` and parameter `seed` are not options here")

    with pytest.raises(TrellisBoxError) as info:
        typer.main.get_command(app).main(["o"], standalone_mode=False)
    assert str(info.value) == (
        "--preset 'c' is unknown\n"
        "  --preset sets `nothing`\n"  # a list of values (a|b) is not a placeholder
        "  fix: give --wait SECONDS or --force, write OUT, or run trellis-box swap init-config PATH\n"
        "  note: `low_vram` and parameter `seed` are not options here")


def test_a_record_of_texts_is_worded_as_an_error_is() -> None:
    """A log line's fields: every text in it, however deep; numbers and other names untouched."""
    flags = {"port": "--port", "warmup": "--no-warmup"}
    record = {"reason": "disabled (`warmup`)", "duration_s": 1.5,
              "error": {"fix": "choose another port: TRELLIS_BOX_PORT / `port`", "port": 8188,
                        "paths": ["a `port` b", "`seed`"], "note": None}}
    assert data_in_flags(record, flags) == {
        "reason": "disabled (--no-warmup)", "duration_s": 1.5,
        "error": {"fix": "choose another port: TRELLIS_BOX_PORT / --port", "port": 8188,
                  "paths": ["a --port b", "`seed`"], "note": None}}
