"""The CLI shell: usage errors, error rendering and exit codes."""

from __future__ import annotations

import json

import pytest

from trellis_box.cli._errors import report
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
