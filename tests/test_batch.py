"""The batch engine's pure decisions: input expansion, names, resume keys, finished reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from trellis_box import batch
from trellis_box.errors import UsageError
from trellis_box.workflow import WorkflowOptions


def _png(path: Path, colour: tuple[int, int, int] = (200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def test_directories_expand_to_their_images_in_order(tmp_path: Path) -> None:
    _png(tmp_path / "in" / "b.png")
    _png(tmp_path / "in" / "a.jpg")
    (tmp_path / "in" / "notes.txt").write_text("not an image")
    items = batch.plan([tmp_path / "in"])
    assert [i.name for i in items] == ["a", "b"]


def test_an_input_named_twice_runs_once(tmp_path: Path) -> None:
    a = _png(tmp_path / "a.png")
    assert len(batch.plan([a, tmp_path / "." / "a.png", tmp_path])) == 1


def test_same_stem_in_two_places_gets_two_stable_names(tmp_path: Path) -> None:
    one, two = _png(tmp_path / "x" / "chair.png"), _png(tmp_path / "y" / "chair.jpg")
    first = [i.name for i in batch.plan([one, two])]
    assert len(set(first)) == 2 and all(n.startswith("chair-") for n in first)
    # Stable from run to run and whatever the order, so resume finds its reports.
    assert sorted(first) == sorted(i.name for i in batch.plan([two, one]))


def test_nothing_to_do_is_a_usage_error_naming_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images to generate from") as info:
        batch.plan([tmp_path / "empty"])
    assert str(tmp_path / "empty") in str(info.value)


def test_a_missing_file_is_kept_so_it_gets_its_own_error(tmp_path: Path) -> None:
    items = batch.plan([tmp_path / "gone.png"])
    assert [i.name for i in items] == ["gone"]


def test_the_key_changes_with_the_image_and_with_any_parameter() -> None:
    base = batch.job_key("aa", WorkflowOptions())
    assert base == batch.job_key("aa", WorkflowOptions())
    assert base != batch.job_key("bb", WorkflowOptions())
    assert base != batch.job_key("aa", WorkflowOptions(seed=1))
    assert base != batch.job_key("aa", WorkflowOptions(texture_size=1024))


def test_a_report_counts_as_finished_only_with_its_files_and_the_same_key(tmp_path: Path) -> None:
    report = {"status": "ok", "key": "sha256:k"}
    (tmp_path / "a.json").write_text(json.dumps(report))
    assert batch.finished_report(tmp_path, "a", "sha256:k") is None  # no GLB yet
    (tmp_path / "a.glb").write_bytes(b"glTF")
    (tmp_path / "a.cutout.png").write_bytes(b"png")
    assert batch.finished_report(tmp_path, "a", "sha256:k") == report
    assert batch.finished_report(tmp_path, "a", "sha256:other") is None
    (tmp_path / "a.json").write_text(json.dumps({**report, "status": "failed"}))
    assert batch.finished_report(tmp_path, "a", "sha256:k") is None
    (tmp_path / "a.json").write_text("{truncated")
    assert batch.finished_report(tmp_path, "a", "sha256:k") is None
