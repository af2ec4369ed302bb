"""`trellis-box models list`: what a person and a machine see."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.hub_mirror import CliResult
from trellis_box.weights.catalog import load_catalog

RunCli = Callable[..., CliResult]


def test_list_json_carries_every_catalog_fact(run_cli: RunCli) -> None:
    result = run_cli("models", "list", "--json")
    assert result.code == 0, result.text
    listed = json.loads(result.out)
    assert [m["name"] for m in listed] == [m.name for m in load_catalog()]
    dino = next(m for m in listed if m["name"] == "dinov3")
    assert dino["gated"] is True
    assert dino["licence_url"].startswith("https://")
    assert dino["target"] == "models/facebook/dinov3-vitl16-pretrain-lvd1689m"
    assert dino["files"] == ["config.json", "model.safetensors"]


def test_list_table_shows_licence_gated_and_target(run_cli: RunCli) -> None:
    result = run_cli("models", "list")
    assert result.code == 0, result.text
    for fact in ("facebook/dinov3-vitl16-pretrain-lvd1689m@main", "DINOv3 License", "non-commercial",
                 "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/", "gated"):
        assert fact in result.out
    rows = [line for line in result.out.splitlines() if line.startswith("│ dinov3")]
    assert rows and " yes " in rows[0]
    assert "RMBG-1.4/ (1 file)" in result.out and "(1 files)" not in result.out
    assert "TRELLIS.2-4B/ (18 files)" in result.out



def test_help_keeps_the_bracketed_examples(run_cli: RunCli) -> None:
    # Rich takes "[dinov3]" for markup and drops it unless escaped.
    result = run_cli("models", "list", "--help")
    assert "[dinov3] repo" in " ".join(result.out.split())
    verify_help = " ".join(run_cli("models", "verify", "--help").out.split())
    assert "Lock file to check against" in verify_help
