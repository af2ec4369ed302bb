"""`trellis-box models verify` and `trellis_box.weights.verify.verify` on a tree fetched from a local copy."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hub_mirror import CliResult, HubMirror, make_comfy_root, write_local_tree
from trellis_box.errors import LockMissing, NotAComfyRoot, WeightsNotVerified
from trellis_box.weights.verify import verify

RunCli = Callable[..., CliResult]
DINO_DIR = "models/facebook/dinov3-vitl16-pretrain-lvd1689m"
RMBG = "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/model.pth"
SHAPE = "models/microsoft/TRELLIS.2-4B/ckpts/shape_dec_next_dc_f16c32_fp16.safetensors"


@pytest.fixture
def root(tmp_path: Path, hub_mirror: HubMirror, run_cli: RunCli) -> Path:
    """A ComfyUI root with every weight fetched (from a local copy of the mirror's repositories)."""
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    root = make_comfy_root(tmp_path / "comfyui")
    result = run_cli("models", "fetch", "--comfy-root", str(root), "--lock", str(tmp_path / "lock.json"),
                     "--from", str(tree))
    assert result.code == 0, result.text
    return root


def test_a_complete_tree_passes_quick_and_full(root: Path, run_cli: RunCli) -> None:
    quick = verify(root)
    full = verify(root, full=True)
    assert quick.ok and full.ok
    assert full.files == 23
    assert full.lock == root / "models/.trellis-box/weights.lock.json"
    result = run_cli("models", "verify", "--comfy-root", str(root), "--full")
    assert result.code == 0, result.text
    assert f"ok: 23 files ({full.bytes / 1e6:.1f} MB) match the sha256 in {full.lock}" in result.out
    assert f"hashing {full.bytes / 1e6:.1f} MB against the lock" in result.err  # the progress, off a terminal


def test_the_root_can_come_from_the_variable_serve_reads(
        root: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRELLIS_BOX_COMFY_ROOT", str(root))
    result = run_cli("models", "verify")
    assert result.code == 0, result.text
    assert "ok: 23 files (" in result.out
    monkeypatch.setenv("TRELLIS_BOX_COMFY_ROOT", str(root / "models"))
    wrong = run_cli("models", "verify")
    assert wrong.code != 0
    assert f"it looks like the models/ folder of {root}" in " ".join(wrong.text.split())


def test_quick_verify_says_it_checked_sizes_only(root: Path, run_cli: RunCli) -> None:
    result = run_cli("models", "verify", "--comfy-root", str(root))
    assert result.code == 0, result.text
    baked = root / "models/.trellis-box/weights.lock.json"
    assert "ok: 23 files (" in result.out
    assert (f"present with the sizes in {baked}; contents not hashed (`models verify --full` does)"
            in result.out.replace("\n", ""))
    assert "every weight" not in result.out
    unlocked = verify(root, lock_path=root / "absent.json")
    assert unlocked.summary() == "23 files present; no lock, so their sizes and contents are unchecked"


def test_the_fix_repeats_the_sources_and_lock_of_the_fetch_and_repairs(
        tmp_path: Path, hub_mirror: HubMirror, run_cli: RunCli) -> None:
    """A tree fetched from a mirror repo (--config) out of an air-gapped copy (--from) with a lock of
    its own: a bare `models fetch --comfy-root` would go to the gated catalog repo instead."""
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    mirror_repo = "PIA-SPACE-LAB/dinov3-vitl-pretrain-lvd1689m"
    (tree / mirror_repo).parent.mkdir(parents=True)
    (tree / "facebook/dinov3-vitl16-pretrain-lvd1689m").rename(tree / mirror_repo)
    config = tmp_path / "sources.toml"
    config.write_text(f'[dinov3]\nrepo = "{mirror_repo}"\n')
    lock = tmp_path / "pinned.lock.json"
    root = make_comfy_root(tmp_path / "comfyui")
    fetched = run_cli("models", "fetch", "--comfy-root", str(root), "--from", str(tree), "--config", str(config),
                      "--lock", str(lock))
    assert fetched.code == 0, fetched.text
    config.unlink()  # a docker build deletes its copy too
    (root / DINO_DIR / "model.safetensors").unlink()
    result = run_cli("models", "verify", "--comfy-root", str(root))
    assert result.code == 1
    baked = root / "models/.trellis-box/sources.toml"
    command = (f"trellis-box models fetch --comfy-root {root} --from {tree} --config {baked} --lock {lock}")
    assert f"fix: run `{command}`" in result.err.replace("\n", "")
    repaired = run_cli(*shlex.split(command)[1:])
    assert repaired.code == 0, repaired.text
    assert verify(root, full=True, lock_path=lock).ok


def test_a_truncated_file_is_named_by_its_full_path(root: Path, run_cli: RunCli) -> None:
    target = root / RMBG
    target.write_bytes(target.read_bytes()[:-10])
    result = run_cli("models", "verify", "--comfy-root", str(root), "--json")
    assert result.code == 1
    problems = json.loads(result.out)["problems"]
    assert problems == [{"kind": "truncated", "path": str(target),
                         "detail": f"{target.stat().st_size} bytes, the lock says {target.stat().st_size + 10}"}]
    assert f"error: weights under {root} failed verification" in result.err


def test_a_flipped_byte_passes_quick_and_fails_full(root: Path) -> None:
    target = root / SHAPE
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x80
    target.write_bytes(bytes(data))
    assert verify(root).ok
    report = verify(root, full=True)
    assert [(p.kind, p.path) for p in report.problems] == [("corrupt", target)]
    with pytest.raises(WeightsNotVerified) as caught:
        report.raise_for_problems()
    assert f"corrupt: {target} (sha256 " in str(caught.value)
    assert "fix: run `trellis-box models fetch --comfy-root" in str(caught.value)


def test_missing_files_and_a_missing_directory_are_each_named(root: Path, run_cli: RunCli) -> None:
    (root / RMBG).unlink()
    for f in (root / DINO_DIR).iterdir():
        f.unlink()
    (root / DINO_DIR).rmdir()
    report = verify(root)
    assert sorted((p.kind, p.path) for p in report.problems) == sorted([
        ("missing", root / RMBG),
        ("missing", root / DINO_DIR / "config.json"),
        ("missing", root / DINO_DIR / "model.safetensors"),
    ])
    result = run_cli("models", "verify", "--comfy-root", str(root))
    assert result.code == 1
    assert str(root / DINO_DIR / "model.safetensors") in result.out.replace("\n", "")


def test_partial_downloads_and_staging_leftovers_are_flagged(root: Path) -> None:
    stray = root / DINO_DIR / ".cache/huggingface/download/model.safetensors.incomplete"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"x" * 10)
    left = root / "models/.trellis-box/staging/trellis2/partial/pipeline.json.part"
    left.parent.mkdir(parents=True)
    left.write_bytes(b"{")
    report = verify(root)
    assert sorted((p.kind, p.path) for p in report.problems) == [("partial", stray), ("staging", left)]


def test_full_without_any_lock_is_an_error_naming_where_it_looked(tmp_path: Path, run_cli: RunCli) -> None:
    root = make_comfy_root(tmp_path / "bare")
    assert not verify(root).ok  # quick mode still reports every file as missing
    with pytest.raises(LockMissing) as caught:
        verify(root, full=True, lock_path=tmp_path / "absent.lock.json")
    assert f"looked for {tmp_path / 'absent.lock.json'}" in str(caught.value)
    # The library names its parameter; the command line, its flag.
    assert caught.value.fix == "run `trellis-box models fetch` (it writes both), or pass `lock_path` FILE"
    result = run_cli("models", "verify", "--comfy-root", str(root), "--full", "--lock",
                     str(tmp_path / "absent.lock.json"))
    assert result.code == 1
    assert "fix: run `trellis-box models fetch` (it writes both), or pass --lock FILE" in result.err


def test_a_wrong_comfy_root_is_refused(tmp_path: Path, run_cli: RunCli) -> None:
    with pytest.raises(NotAComfyRoot):
        verify(tmp_path / "nowhere")
    result = run_cli("models", "verify", "--comfy-root", str(tmp_path / "nowhere"))
    assert result.code == 2
    assert f"error: not a ComfyUI root: {tmp_path / 'nowhere'}" in result.err
    assert "does not exist" in result.err
    assert "fix: pass the directory that holds ComfyUI's main.py: --comfy-root " in result.err
    assert "`comfy_root`" not in result.err


def test_stand_in_weights_fail_verification_unless_allowed_and_are_always_named(
        root: Path, run_cli: RunCli) -> None:
    from trellis_box.weights import standin

    # Stand-ins differ in size from the locked files: only their presence is checked, never passed off.
    (root / SHAPE).write_bytes(b"{}")
    marker = standin.mark(root)
    assert marker == root / "models" / "STAND-IN-WEIGHTS" and standin.mode(root) == "stand-in"
    refused = run_cli("models", "verify", "--comfy-root", str(root), "--full", "--json")
    assert refused.code == 1
    report = json.loads(refused.out)
    assert report["weights_mode"] == "stand-in" and not report["ok"]
    assert [p["kind"] for p in report["problems"]] == ["stand-in"]
    assert "stand-in weights" in refused.err and "--allow-stand-in" in refused.err
    with pytest.raises(WeightsNotVerified, match="are stand-in weights, not the real models") as caught:
        verify(root).raise_for_problems()
    assert caught.value.fix.endswith("for measurement only, pass `allow_stand_in`")
    allowed = run_cli("models", "verify", "--comfy-root", str(root), "--allow-stand-in")
    assert allowed.code == 0, allowed.text
    assert "ok: 23 files present: stand-in weights (random values" in " ".join(allowed.out.split())
    # A missing file is still a problem with stand-ins allowed.
    (root / RMBG).unlink()
    assert [p.kind for p in verify(root, allow_stand_in=True).problems] == ["missing"]
    # The marker counts whatever it holds.
    marker.write_text("real, honestly\n")
    assert verify(root, allow_stand_in=False).weights_mode == "stand-in"


def test_real_weights_report_their_mode(root: Path) -> None:
    assert verify(root).weights_mode == "real" and verify(root).to_dict()["weights_mode"] == "real"
