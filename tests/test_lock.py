"""`trellis-box models lock`, the lock format and `lock_digest`, and fetch pinned by a lock."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hub_mirror import TOKEN, CliResult, HubMirror, make_comfy_root
from trellis_box.errors import LockInvalid
from trellis_box.weights.catalog import load_catalog
from trellis_box.weights.lock import Lock, LockedFile, LockedModel, lock_digest, read, write

RunCli = Callable[..., CliResult]
RMBG = "briaai/RMBG-1.4"


@pytest.fixture
def hub(hub_mirror: HubMirror, monkeypatch: pytest.MonkeyPatch) -> HubMirror:
    monkeypatch.setenv("HF_ENDPOINT", hub_mirror.endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub_mirror.throttle(None)
    hub_mirror.cut(None)
    return hub_mirror


def rev_parse(mirror: HubMirror, repo: str, rev: str) -> str:
    return subprocess.run(["git", "-C", str(mirror.repos[repo]), "rev-parse", rev], capture_output=True,
                          text=True, check=True).stdout.strip()


def test_lock_records_commit_size_and_sha256_of_every_file(hub: HubMirror, tmp_path: Path,
                                                           run_cli: RunCli) -> None:
    path = tmp_path / "weights.lock.json"
    result = run_cli("models", "lock", "--lock", str(path), "--json")
    assert result.code == 0, result.text
    assert json.loads(result.out)["digest"] == lock_digest(path)
    lock = read(path)
    assert lock is not None
    for model in load_catalog():
        locked = lock.models[model.name]
        assert locked.commit == rev_parse(hub, model.repo, "main")
        assert set(locked.files) == set(model.files)
        for name, entry in locked.files.items():
            data = hub.content(model.repo, name)
            assert (entry.size, entry.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert TOKEN not in result.text


def test_lock_needs_access_to_the_gated_model(hub: HubMirror, tmp_path: Path, run_cli: RunCli,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    result = run_cli("models", "lock", "--lock", str(tmp_path / "lock.json"))
    assert result.code == 1
    assert "gated model facebook/dinov3-vitl16-pretrain-lvd1689m needs a Hugging Face token" in result.err
    assert not (tmp_path / "lock.json").exists()


def test_fetch_with_a_lock_gets_the_locked_commit_after_the_branch_moved(
        hub: HubMirror, tmp_path: Path, run_cli: RunCli) -> None:
    first = hub.add_revision(RMBG, "t-moving", {"model.pth": b"first version " * 100})
    config = tmp_path / "sources.toml"
    config.write_text('[rmbg]\nrevision = "t-moving"\n')
    path = tmp_path / "lock.json"
    assert run_cli("models", "lock", "--lock", str(path), "--config", str(config)).code == 0
    # The branch moves on upstream; the lock keeps the build on the commit it recorded.
    repo = hub.repos[RMBG]
    subprocess.run(["git", "-C", str(repo), "branch", "-f", "t-moving", "main"], check=True)
    root = make_comfy_root(tmp_path / "comfyui")
    result = run_cli("models", "fetch", "--comfy-root", str(root), "--lock", str(path), "--config", str(config),
                     "--json")
    assert result.code == 0, result.text
    assert (root / "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/model.pth").read_bytes() == b"first version " * 100
    rmbg = next(m for m in json.loads(result.out)["models"] if m["name"] == "rmbg")
    assert rmbg["commit"] == first


def _lock(sha: str) -> Lock:
    return Lock({"rmbg": LockedModel(repo=RMBG, revision="main", commit="a" * 40,
                                     files={"model.pth": LockedFile(size=3, sha256=sha)})})


def test_lock_digest_is_canonical_and_follows_the_content(tmp_path: Path) -> None:
    assert lock_digest(tmp_path / "absent.json") == "unlocked"
    path = tmp_path / "lock.json"
    write(path, _lock("1" * 64))
    digest = lock_digest(path)
    assert digest.startswith("sha256:") and len(digest) == 7 + 64
    path.write_text(json.dumps(json.loads(path.read_text()), indent=7))  # same content, other whitespace
    assert lock_digest(path) == digest
    write(path, _lock("2" * 64))
    assert lock_digest(path) != digest


def test_an_invalid_lock_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "lock.json"
    path.write_text('{"version": 1, "models": {"rmbg": {"repo": "x"}}}')
    with pytest.raises(LockInvalid) as caught:
        read(path)
    assert f"weights lock {path} is not valid" in str(caught.value)
    assert f"run `trellis-box models lock --lock {path}`" in str(caught.value)
