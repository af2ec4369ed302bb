"""`trellis-box models fetch` against a real olah Hub mirror through the real huggingface_hub client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import trellis_box
from tests.hub_mirror import (
    BIG_FILE,
    INVALID_TOKEN_PREFIX,
    TOKEN,
    CliResult,
    HubMirror,
    make_comfy_root,
    write_local_tree,
)
from trellis_box.errors import LocalSourceMissing
from trellis_box.weights import fetch as fetch_module
from trellis_box.weights.catalog import load_catalog
from trellis_box.weights.verify import sha256_file, verify

DINO = "facebook/dinov3-vitl16-pretrain-lvd1689m"
TRELLIS = "microsoft/TRELLIS.2-4B"
RunCli = Callable[..., CliResult]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_comfy_root(tmp_path / "comfyui")


@pytest.fixture
def hub(hub_mirror: HubMirror, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubMirror]:
    """The mirror as HF_ENDPOINT, no token (none in a build secret either); downloads unthrottled."""
    monkeypatch.setenv("HF_ENDPOINT", hub_mirror.endpoint)
    monkeypatch.setenv("TRELLIS_BOX_HF_TOKEN_SECRET", "/nonexistent/hf_token")
    hub_mirror.throttle(None)
    hub_mirror.cut(None)
    yield hub_mirror
    hub_mirror.throttle(None)
    hub_mirror.cut(None)


def fetch_args(root: Path, lock: Path, *extra: str) -> list[str]:
    return ["models", "fetch", "--comfy-root", str(root), "--lock", str(lock), *extra]


def placed_files(root: Path) -> list[Path]:
    """Every file under any catalog target (the node pack's placeholder aside)."""
    out = []
    for model in load_catalog():
        target = model.target_dir(root)
        if target.exists():
            out += [p for p in target.rglob("*") if p.is_file() and p.name != "put"]
    return out


def assert_fetched(root: Path, mirror: HubMirror, revision: str = "main") -> None:
    for model in load_catalog():
        for path in model.files:
            assert model.file_target(root, path).read_bytes() == mirror.content(model.repo, path, revision), path


def resolve_gets(mirror: HubMirror, since: int) -> list[str]:
    return [r.path for r in mirror.requests[since:] if r.method == "GET" and "/resolve/" in r.path]


def fetch_signalled(hub: HubMirror, args: list[str], partial: Path, at_least: int,
                    signum: int) -> tuple[subprocess.Popen[bytes], bytes, bytes]:
    """`trellis-box` as a child on a throttled Hub, sent ``signum`` once ``partial`` holds
    ``at_least`` bytes; the process and its output once it ended."""
    hub.throttle(200_000)
    proc = subprocess.Popen([sys.executable, "-m", "trellis_box.cli.app", *args],
                            env={**os.environ, **hub.env(token=True)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (partial.is_file() and partial.stat().st_size >= at_least):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the download never got going"
            time.sleep(0.05)
        proc.send_signal(signum)
    finally:
        out, err = proc.communicate(timeout=60)
    return proc, out, err


def test_fetch_places_every_file_at_its_node_path_and_records_the_lock(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    lock = tmp_path / "weights.lock.json"
    result = run_cli(*fetch_args(root, lock, "--json"))
    assert result.code == 0, result.text
    assert_fetched(root, hub)
    assert (root / "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/model.pth").is_file()
    report = json.loads(result.out)
    assert report["lock_written"] == str(lock)
    written = json.loads(lock.read_text())
    baked = json.loads((root / "models/.trellis-box/weights.lock.json").read_text())
    assert written == baked
    main = subprocess.run(["git", "-C", str(hub.repos[DINO]), "rev-parse", "main"], capture_output=True,
                          text=True, check=True).stdout.strip()
    assert written["models"]["dinov3"]["commit"] == main
    assert not (root / "models/.trellis-box/staging").exists()
    assert TOKEN not in result.text

    again = run_cli(*fetch_args(root, lock, "--json"))
    assert again.code == 0, again.text
    assert {m["name"]: m["downloaded"] for m in json.loads(again.out)["models"]} == {
        "trellis2": 0, "ss-decoder": 0, "dinov3": 0, "rmbg": 0}
    assert json.loads(again.out)["lock_written"] is None


def test_gated_model_without_token_says_how_to_pass_one_and_downloads_nothing(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli) -> None:
    since = len(hub.requests)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json"))
    assert result.code == 1
    assert f"gated model {DINO} needs a Hugging Face token" in result.err
    for way in ("--token-file", "/run/secrets/hf_token", "HF_TOKEN", f"{hub.endpoint}/{DINO}"):
        assert way in result.err
    assert "DINOv3 License applies whichever source you use" in result.err
    assert resolve_gets(hub, since) == []
    assert placed_files(root) == []
    assert not (tmp_path / "lock.json").exists()


def test_gated_model_refusing_the_token_names_the_access_page(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "hf_wrong_token_never_printed_77"
    monkeypatch.setenv("HF_TOKEN", wrong)
    since = len(hub.requests)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--json"))
    assert result.code == 1
    assert f"error: no access to gated model {DINO}" in result.err
    assert "refused the token from HF_TOKEN (gated repo)" in result.err
    assert f"request access at {hub.endpoint}/{DINO} (approved by hand" in result.err
    assert "or point dinov3 at a mirror that serves it (repo, endpoint in the dinov3 table of --config)" in result.err
    assert json.loads(result.out)["error"] == "gated-access-denied"
    assert any(r.status == 403 and DINO in r.path for r in hub.requests[since:])
    assert resolve_gets(hub, since) == []
    assert placed_files(root) == []
    assert wrong not in result.text


@pytest.mark.parametrize("source", ["token-file", "secret"])
def test_token_file_and_build_secret_come_before_hf_token(
        source: str, hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_wrong_token_from_env")
    secret = tmp_path / "hf_token"
    secret.write_text(TOKEN + "\n")
    extra: tuple[str, ...] = ()
    if source == "token-file":
        extra = ("--token-file", str(secret))
        monkeypatch.setenv("TRELLIS_BOX_HF_TOKEN_SECRET", str(tmp_path / "absent"))
    else:
        monkeypatch.setenv("TRELLIS_BOX_HF_TOKEN_SECRET", str(secret))
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", *extra))
    assert result.code == 0, result.text
    assert_fetched(root, hub)
    assert TOKEN not in result.text


def test_wrong_revision_lists_the_branches(hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    config = tmp_path / "sources.toml"
    config.write_text('[trellis2]\nrevision = "no-such-branch"\n')
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--config", str(config)))
    assert result.code == 1
    assert f"error: revision 'no-such-branch' not found in {TRELLIS}" in result.err
    assert f"branches and tags on {hub.endpoint}: " in result.err and "main" in result.err
    assert 'fix: use an existing branch, tag or full commit (revision = "..." in the trellis2 table' in result.err
    assert placed_files(root) == []


def test_file_deleted_upstream_is_named_before_anything_downloads(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    gone = "ckpts/shape_enc_next_dc_f16c32_fp16.safetensors"
    commit = hub.add_revision(TRELLIS, "t-deleted-file", {gone: None})
    config = tmp_path / "sources.toml"
    config.write_text('[trellis2]\nrevision = "t-deleted-file"\n')
    since = len(hub.requests)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--config", str(config)))
    assert result.code == 1
    assert f"error: {TRELLIS} at t-deleted-file lacks files the nodes need" in result.err
    assert f"commit {commit}: missing {gone}" in result.err
    assert 'fix: pin a revision that has them (revision = "<commit>" in the trellis2 table of --config)' in result.err
    assert resolve_gets(hub, since) == []
    assert placed_files(root) == []


def test_not_enough_disk_says_how_much_and_downloads_nothing(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("TRELLIS_BOX_DISK_FREE_BYTES", "100000")
    since = len(hub.requests)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json"))
    assert result.code == 1
    assert f"error: not enough disk space under {root} for the weights" in result.err
    assert "still to download (23 files), 100.0 KB free" in result.err
    assert resolve_gets(hub, since) == []
    assert placed_files(root) == []
    assert not (root / "models/.trellis-box/staging").exists()


def test_a_file_that_differs_from_the_lock_is_refused_and_its_model_directory_never_appears(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    lock = tmp_path / "lock.json"
    assert run_cli(*fetch_args(root, lock)).code == 0
    data = json.loads(lock.read_text())
    bad = "ckpts/tex_dec_next_dc_f16c32_fp16.safetensors"
    data["models"]["trellis2"]["files"][bad]["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    fresh = make_comfy_root(tmp_path / "fresh")
    result = run_cli(*fetch_args(fresh, lock))
    assert result.code == 1
    assert f"error: checksum mismatch for {TRELLIS}/{bad}; refused" in result.err
    assert f"expected {'0' * 64}" in result.err
    # The TRELLIS node treats the directory's existence as "installed": it must not exist.
    assert not (fresh / "models/microsoft/TRELLIS.2-4B").exists()


def test_fetch_from_a_local_tree_needs_no_hub(root: Path, tmp_path: Path, hub_mirror: HubMirror,
                                              run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any Hub call fails
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    lock = tmp_path / "lock.json"
    result = run_cli(*fetch_args(root, lock, "--from", str(tree)))
    assert result.code == 0, result.text
    assert_fetched(root, hub_mirror)
    assert json.loads(lock.read_text())["models"]["rmbg"]["commit"] is None


def test_a_flipped_byte_in_the_local_tree_is_refused(root: Path, tmp_path: Path, hub_mirror: HubMirror,
                                                     run_cli: RunCli) -> None:
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    lock = tmp_path / "lock.json"
    assert run_cli(*fetch_args(make_comfy_root(tmp_path / "first"), lock, "--from", str(tree))).code == 0
    pth = tree / "briaai/RMBG-1.4/model.pth"
    data = bytearray(pth.read_bytes())
    data[1000] ^= 0x01
    pth.write_bytes(bytes(data))
    result = run_cli(*fetch_args(root, lock, "--from", str(tree)))
    assert result.code == 1
    assert "error: checksum mismatch for briaai/RMBG-1.4/model.pth; refused" in result.err
    assert not (root / "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/model.pth").exists()


def test_a_missing_file_in_the_local_tree_is_named(root: Path, tmp_path: Path, run_cli: RunCli) -> None:
    tree = tmp_path / "empty-tree"
    tree.mkdir()
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--from", str(tree)))
    assert result.code == 1
    assert f"error: --from {tree} lacks files of {TRELLIS}" in result.err
    assert f"{tree}/{TRELLIS}/pipeline.json" in result.err
    # The library names its parameter (source_for's).
    trellis = next(m for m in load_catalog() if m.pin.repo == TRELLIS)
    with pytest.raises(LocalSourceMissing) as caught:
        fetch_module.source_for(tree).resolve(trellis, "main")
    assert caught.value.message == f"`from_dir` {tree} lacks files of {TRELLIS}"


def test_a_wrong_comfy_root_is_refused(hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli) -> None:
    result = run_cli(*fetch_args(root / "models", tmp_path / "lock.json"))
    assert result.code == 2
    assert f"error: not a ComfyUI root: {root / 'models'}" in result.err
    assert f"it looks like the models/ folder of {root}" in result.err
    assert "fix: pass the directory that holds ComfyUI's main.py" in result.err


def test_an_incomplete_model_directory_is_completed(hub: HubMirror, root: Path, tmp_path: Path,
                                                    run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's own snapshot_download can leave a partial directory it never repairs."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    partial = root / "models/microsoft/TRELLIS.2-4B"
    partial.mkdir(parents=True)
    (partial / "pipeline.json").write_bytes(hub.content(TRELLIS, "pipeline.json"))
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--json"))
    assert result.code == 0, result.text
    assert_fetched(root, hub)
    trellis = next(m for m in json.loads(result.out)["models"] if m["name"] == "trellis2")
    assert (trellis["downloaded"], trellis["reused"]) == (17, 1)


def test_a_download_killed_mid_file_resumes_where_it_stopped(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    lock = tmp_path / "lock.json"
    partial = root / "models/.trellis-box/staging/dinov3/partial" / (BIG_FILE[1] + ".part")
    proc, out, err = fetch_signalled(hub, fetch_args(root, lock), partial, 400_000, signal.SIGKILL)
    killed_at = partial.stat().st_size
    assert 400_000 <= killed_at < len(hub.content(*BIG_FILE))
    assert not (root / "models/facebook/dinov3-vitl16-pretrain-lvd1689m").exists()
    assert TOKEN.encode() not in out + err

    hub.throttle(None)
    since = len(hub.requests)
    result = run_cli(*fetch_args(root, lock))
    assert result.code == 0, result.text
    assert_fetched(root, hub)
    resumed = [r for r in hub.requests[since:] if r.path.endswith(BIG_FILE[1]) and r.method == "GET"]
    assert len(resumed) == 1 and resumed[0].status == 206
    assert resumed[0].range is not None
    assert int(resumed[0].range.removeprefix("bytes=").rstrip("-")) >= killed_at
    assert verify(root, full=True).ok  # the sha256 recorded across the two runs is the file's


def test_a_connection_cut_mid_file_resumes_from_the_bytes_received(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.cut(1_000_000)  # every download drops after 1 MB: the 3 MB file takes four requests
    since = len(hub.requests)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--workers", "1"))
    assert result.code == 0, result.text
    assert_fetched(root, hub)
    resumed = [r for r in hub.requests[since:] if r.path.endswith(BIG_FILE[1]) and r.method == "GET"]
    assert [(r.range, r.status) for r in resumed] == [
        (None, 200), ("bytes=1000000-", 206), ("bytes=2000000-", 206), ("bytes=3000000-", 206)]
    assert result.err.count(f"/model.safetensors; retrying {DINO}/{BIG_FILE[1]}\n") == 3  # at once: bytes came
    assert verify(root, full=True).ok


def test_a_hub_that_stalls_once_is_retried_and_the_fetch_completes(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("TRELLIS_BOX_HUB_READ_TIMEOUT", "1")
    monkeypatch.setattr(fetch_module, "RETRY_DELAYS", (0.1, 0.2, 0.4))
    hub.stall(4.0, times=1)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--workers", "1"))
    assert result.code == 0, result.text
    assert_fetched(root, hub)
    assert f"{hub.endpoint} is reachable but too slow for {DINO}; retrying {DINO}/{BIG_FILE[1]} in 0.1 s" in result.err


def test_a_hub_that_stays_slow_is_told_apart_from_an_unreachable_one(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("TRELLIS_BOX_HUB_READ_TIMEOUT", "1")
    monkeypatch.setattr(fetch_module, "RETRY_DELAYS", (0.1, 0.2, 0.4))
    hub.stall(3.0, times=1000)
    try:
        result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--workers", "1", "--json"))
    finally:
        hub.stall(0, times=0)
    assert result.code == 1
    assert f"error: {hub.endpoint} is reachable but too slow for {DINO}" in result.err
    assert "then sent nothing for 1 s (ReadTimeout), through every retry" in result.err
    assert "fix: run again later (the fetch resumes); on a slow link raise TRELLIS_BOX_HUB_READ_TIMEOUT" in result.err
    assert json.loads(result.out)["error"] == "hf-too-slow"
    assert "cannot reach" not in result.err
    assert result.err.count(f"retrying {DINO}/{BIG_FILE[1]}") == 3
    assert placed_files(root) == []


def test_a_file_larger_than_any_buffer_streams_through_the_mirror(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """The mirror must stream: reading a multi-GB file whole before answering made the client's
    read timeout fire. A sparse 64 MB file (4,000 times the proxy's chunk) stands in for the 1-8 GB ones."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    big = tmp_path / "model.pth"
    with big.open("wb") as f:
        f.truncate(64 << 20)
    config = tmp_path / "sources.toml"
    config.write_text('[rmbg]\nrevision = "t-big-file"\n')
    hub.add_revision("briaai/RMBG-1.4", "t-big-file", {"model.pth": big})
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--config", str(config), "--json"))
    assert result.code == 0, result.text
    placed = root / "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4/model.pth"
    assert placed.stat().st_size == 64 << 20
    assert sha256_file(placed) == sha256_file(big)
    assert hub.peak_buffer <= 1 << 20


def test_a_mirror_override_is_fetched_and_its_licence_still_shown(
        root: Path, tmp_path: Path, hub_mirror: HubMirror, run_cli: RunCli) -> None:
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    mirror_repo = "PIA-SPACE-LAB/dinov3-vitl-pretrain-lvd1689m"
    (tree / mirror_repo).parent.mkdir(parents=True)
    (tree / DINO).rename(tree / mirror_repo)
    config = tmp_path / "sources.toml"
    config.write_text(f'[dinov3]\nrepo = "{mirror_repo}"\n')
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--from", str(tree), "--config", str(config)))
    assert result.code == 0, result.text
    assert_fetched(root, hub_mirror)
    assert (f"note: dinov3: fetched from {mirror_repo} instead of {DINO}; the DINOv3 License still applies"
            in result.out.replace("\n", ""))


def test_a_second_fetch_on_the_same_root_is_refused_while_one_runs(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.throttle(100_000)
    env = {**os.environ, **hub.env(token=True)}
    partial = root / "models/.trellis-box/staging/dinov3/partial" / (BIG_FILE[1] + ".part")
    first = subprocess.Popen([sys.executable, "-m", "trellis_box.cli.app",
                              *fetch_args(root, tmp_path / "lock.json")], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not partial.is_file():
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        result = run_cli(*fetch_args(root, tmp_path / "lock.json"))
        assert result.code == 1
        assert f"error: another fetch is working on {root}" in result.err
    finally:
        first.kill()
        first.wait(60)


def test_an_unreachable_hub_is_named_with_the_air_gapped_alternative(
        root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(fetch_module, "RETRY_DELAYS", (0.1, 0.2, 0.4))
    result = run_cli(*fetch_args(root, tmp_path / "lock.json"))
    assert result.code == 1
    assert result.err.count(f"cannot reach http://127.0.0.1:9 for {TRELLIS}; retrying {TRELLIS} in ") == 3
    assert f"error: cannot reach http://127.0.0.1:9 for {TRELLIS}" in result.err
    assert "too slow" not in result.err
    assert "air-gapped: `trellis-box models fetch --from DIR`" in result.err
    assert placed_files(root) == []


@pytest.mark.parametrize("meta", ["", '{"size": 31', "[]"])
def test_a_partial_whose_record_was_cut_by_a_kill_starts_over(
        meta: str, root: Path, tmp_path: Path, hub_mirror: HubMirror, run_cli: RunCli) -> None:
    """A kill while the record beside a partial file is written leaves it empty or cut."""
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    area = root / "models/.trellis-box/staging/dinov3"
    partial = area / "partial" / (BIG_FILE[1] + ".part")
    partial.parent.mkdir(parents=True)
    (area / "commit").write_text("local")
    partial.write_bytes(b"\0" * 1000)
    partial.with_name(partial.name + ".json").write_text(meta)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--from", str(tree)))
    assert result.code == 0, result.text
    assert_fetched(root, hub_mirror)
    assert not area.exists()


def test_ctrl_c_keeps_the_partial_and_starts_no_queued_download(
        hub: HubMirror, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    partial = root / "models/.trellis-box/staging/dinov3/partial" / (BIG_FILE[1] + ".part")
    since = len(hub.requests)
    proc, out, err = fetch_signalled(hub, fetch_args(root, tmp_path / "lock.json", "--workers", "1"),
                                     partial, 200_000, signal.SIGINT)
    assert proc.returncode == 130, err
    assert err.decode().splitlines()[-1] == (
        "interrupted: files already downloaded are kept (partial ones in models/.trellis-box/staging); "
        "run the same command again to resume")
    assert partial.stat().st_size >= 200_000  # kept for the next run
    # One worker, largest file first: the interrupted download is the only one that ever started.
    assert [r for r in resolve_gets(hub, since) if not r.endswith(BIG_FILE[1])] == []
    assert placed_files(root) == []


def test_a_token_the_hub_does_not_know_says_so_not_try_later(
        hub: HubMirror, root: Path, tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface.co answers 401 "Invalid credentials" on every endpoint to an expired token."""
    token = INVALID_TOKEN_PREFIX + "_expired_never_printed_31"
    monkeypatch.setenv("HF_TOKEN", token)
    result = run_cli(*fetch_args(root, tmp_path / "lock.json", "--json"))
    assert result.code == 1
    assert f"error: {hub.endpoint} rejected the Hugging Face token as invalid" in result.err
    assert "the token from HF_TOKEN is unknown" in result.err
    assert f"fix: create a read token at {hub.endpoint}/settings/tokens" in result.err
    assert json.loads(result.out)["error"] == "hf-token-invalid"
    assert placed_files(root) == []
    assert token not in result.text


def test_the_air_gapped_fetch_never_imports_huggingface_hub(root: Path, tmp_path: Path,
                                                             hub_mirror: HubMirror) -> None:
    """An air-gapped machine may have no working huggingface_hub: `--from DIR` must not need it."""
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    blocked = ("import sys; sys.modules['huggingface_hub'] = None; "
               "from trellis_box.cli.app import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", blocked, *fetch_args(root, tmp_path / "lock.json", "--from",
                                                                      str(tree))],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert_fetched(root, hub_mirror)


def package_files() -> set[Path]:
    package = Path(trellis_box.__file__).resolve().parent
    return {p for p in package.rglob("*") if "__pycache__" not in p.parts}


def test_fetch_without_lock_never_writes_into_the_package(root: Path, tmp_path: Path, hub_mirror: HubMirror,
                                                          run_cli: RunCli) -> None:
    """A user who cannot write site-packages must not download everything and then fail; a dev
    checkout must not get an untracked lock."""
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    before = package_files()
    result = run_cli("models", "fetch", "--comfy-root", str(root), "--from", str(tree), "--json")
    assert result.code == 0, result.text
    assert package_files() == before
    report = json.loads(result.out)
    assert report["lock_written"] is None
    baked = root / "models/.trellis-box/weights.lock.json"
    assert report["baked_lock"] == str(baked)
    assert set(json.loads(baked.read_text())["models"]) == {m.name for m in load_catalog()}
    human = run_cli("models", "fetch", "--comfy-root", str(root), "--from", str(tree))
    assert f"resolved lock baked into the tree: {baked}" in human.out
    assert "commit that file as src/trellis_box/data/weights.lock.json" in human.out


def unprivileged(argv: list[str]) -> list[str]:
    """``argv`` run as a user who owns nothing here (root may write anywhere)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv] if os.geteuid() == 0 else argv


def test_a_root_the_user_cannot_write_is_refused_before_anything_is_resolved(hub: HubMirror) -> None:
    shared = Path(tempfile.mkdtemp(prefix="trellis-box-ro-"))  # /tmp: reachable by the other user
    try:
        shared.chmod(0o755)
        root = make_comfy_root(shared / "comfyui")
        home = shared / "home"
        home.mkdir(mode=0o777)
        home.chmod(0o777)
        for path in (root, *root.rglob("*")):
            path.chmod(0o555 if path.is_dir() else 0o444)  # read-only to everyone but root
        since = len(hub.requests)
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(home), "HOME": str(home)}
        done = subprocess.run(unprivileged([sys.executable, "-m", "trellis_box.cli.app", "models", "fetch",
                                            "--comfy-root", str(root), "--lock", str(home / "lock.json")]),
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        assert f"error: fetch cannot write where the weights go under {root}" in done.stderr
        for place in ("models/.trellis-box", "models/microsoft", "custom_nodes/ComfyUI-BRIA_AI-RMBG/RMBG-1.4"):
            assert str(root / place) in done.stderr
        assert "Nothing was resolved or downloaded." in done.stderr
        assert "(a --lock FILE must be in a writable directory)" in done.stderr
        assert hub.requests[since:] == []
        assert not (root / "models/.trellis-box").exists()
    finally:
        for path in (shared, *shared.rglob("*")):
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(shared)


def test_files_already_in_place_are_rehashed_with_progress(root: Path, tmp_path: Path, hub_mirror: HubMirror,
                                                           run_cli: RunCli) -> None:
    """Re-hashing the real 18 GB takes about 45 s: never in silence."""
    tree = write_local_tree(tmp_path / "airgap", hub_mirror)
    assert run_cli(*fetch_args(root, tmp_path / "lock.json", "--from", str(tree))).code == 0
    total = sum(p.stat().st_size for p in placed_files(root))
    again = run_cli(*fetch_args(root, tmp_path / "lock.json", "--from", str(tree)))
    assert again.code == 0, again.text
    assert f"checking 23 files already there ({total / 1e6:.1f} MB, sha256)" in again.err
