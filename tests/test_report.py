"""report.html of a real batch (the stand-in's GLBs), opened in a real headless Chromium.

One batch for the module: ``trellis-box generate`` against the stand-in with two photos and a
broken file, so the report is the one the command itself writes at its end.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image, ImageChops

from tests.browser import new_page
from tests.cloud_support import Aws
from tests.comfy_standin import install
from tests.comfy_standin.launcher import StandinServer
from tests.components import require
from tests.photos import object_photo
from trellis_box.cli.app import main
from trellis_box.errors import PortInUseError, ReportInputError
from trellis_box.report import page as report_page
from trellis_box.report.build import build_report
from trellis_box.report.serve import ReportServer
from trellis_box.storage.local import LocalStorage

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.timeout(300)

VENDOR = Path(report_page.ASSETS.joinpath("vendor").__fspath__())  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``generate``'s output folder: object-0 and object-1 ok, broken failed."""
    root = install(tmp_path_factory.mktemp("comfyui"))
    server = StandinServer(root, options={"exec_seconds": 0.1},
                           env={"TRELLIS_BOX_STATE": str(root / "no-state.json")}).start()
    work = tmp_path_factory.mktemp("batch")
    photos = [object_photo(work / "in" / f"object-{i}.png", i) for i in range(2)]
    (work / "in" / "broken.png").write_bytes(photos[0].read_bytes()[:60])
    try:
        # A process of its own: the browser tests' Playwright holds an event loop in this one.
        run = subprocess.run([sys.executable, "-m", "trellis_box.cli.app", "generate", str(work / "in"),
                              "--server", server.url, "--out", str(work / "out"), "--json"],
                             capture_output=True, text=True, timeout=240)
    finally:
        server.stop()
    assert run.returncode == 3, run.stderr  # one input failed
    return work / "out"


def _data(folder: Path) -> dict[str, Any]:
    html = (folder / "report.html").read_text()
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert found, html[:500]
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def _entries(folder: Path) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _data(folder)["entries"]}


def test_the_vendored_viewer_is_the_pinned_npm_build() -> None:
    manifest = json.loads((VENDOR / "model-viewer.json").read_text())
    assert (manifest["package"], manifest["licence"]) == ("@google/model-viewer", "Apache-2.0")
    assert manifest["version"].startswith("4.")
    built = (VENDOR / "model-viewer-umd.min.js").read_bytes()
    assert hashlib.sha256(built).hexdigest() == manifest["sha256"], "run scripts/vendor_model_viewer.py"
    assert "Apache License" in (VENDOR / "LICENSE").read_text()


def test_generate_writes_a_report_of_every_input(batch: Path) -> None:
    data = _data(batch)
    entries = _entries(batch)
    assert {n: e["status"] for n, e in entries.items()} == {
        "broken": "failed", "object-0": "ok", "object-1": "ok"}
    ok = entries["object-0"]
    assert ok["glb"] == "object-0.glb" and ok["cutout"] == "object-0.cutout.png"
    assert ok["bytes"] == (batch / "object-0.glb").stat().st_size
    assert ok["faces"] == 12 and ok["textures"] == [[64, 64]]
    assert ok["resolution"] == "1024" and ok["preset"] == "balanced"
    assert "Trellis2MeshWithVoxelGenerator" in {name for name, _ in ok["nodes"]}
    # The input shown is a small copy made beside the report: the original may move away.
    assert ok["input"].startswith("report-files/inputs/object-0.")
    with Image.open(batch / ok["input"]) as preview:
        assert preview.size == (96, 96)
    failed = entries["broken"]
    assert failed["error"]["error"] == "image-invalid" and failed["error"]["fix"]
    assert failed["glb"] is None and failed["thumbnail"] is None
    summary = data["summary"]
    assert summary["counts"] == {"inputs": 3, "ok": 2, "failed": 1}
    assert summary["resolutions"] == {"1024": 2} and summary["per_image_seconds"] is not None
    assert summary["versions"]["ComfyUI"] == ["0.3.64"]
    # Every link is relative, so the folder works wherever it is copied or uploaded.
    assert (batch / data["viewer_script"]).is_file()
    assert all(not str(v).startswith(("/", "file:", "http")) for e in entries.values()
               for k, v in e.items() if k in ("glb", "cutout", "thumbnail", "input") and v)


def test_thumbnails_are_pngs_of_the_model(batch: Path) -> None:
    require("f3d")
    for name in ("object-0", "object-1"):
        thumbnail = _entries(batch)[name]["thumbnail"]
        assert thumbnail == f"report-files/thumbnails/{name}.png"
        data = (batch / thumbnail).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(data)) as image:
            assert image.mode == "RGBA" and image.size == (384, 384)
            alpha = image.getchannel("A").histogram()
            covered = 1 - alpha[0] / (384 * 384)
            # The box fills the middle of the picture: neither an empty frame nor a flat card.
            assert 0.2 < covered < 0.9, covered
            colours = image.convert("RGB").getcolors(maxcolors=384 * 384) or []
            assert len(colours) > 1000, "the textured faces are shaded, not one flat colour"


def test_rebuilding_keeps_fresh_thumbnails(batch: Path) -> None:
    require("f3d")
    before = (batch / "report-files/thumbnails/object-0.png").stat().st_mtime_ns
    result = build_report(LocalStorage(batch), folder=str(batch))
    assert result.thumbnails == 2 and result.thumbnails_note is None
    assert (batch / "report-files/thumbnails/object-0.png").stat().st_mtime_ns == before


def test_the_report_of_an_s3_batch_is_uploaded_beside_it(
        batch: Path, aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    require("f3d")
    bucket = aws.bucket()
    url = f"s3://{bucket}/runs/one"
    for path in sorted(p for p in batch.iterdir() if p.is_file() and p.name != "report.html"):
        aws.put(f"{url}/{path.name}", path.read_bytes())
    assert main(["report", url, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["report"] == f"{url}/report.html" and printed["thumbnails"] == 2
    keys = set(aws.keys(bucket, "runs/one/"))
    html = aws.get(f"{url}/report.html").decode()
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert found
    data = json.loads(found.group(1))
    entries = {e["name"]: e for e in data["entries"]}
    links = [data["viewer_script"], *(v for e in entries.values()
                                      for k, v in e.items() if k in ("glb", "cutout", "thumbnail", "input") and v)]
    assert entries["object-0"]["thumbnail"] == "report-files/thumbnails/object-0.png"
    assert data["viewer_script"].startswith("report-files/model-viewer-")
    # Every link is relative and names an object beside the page: a static website serves them all.
    assert all(not link.startswith(("/", "s3:", "http")) and f"runs/one/{link}" in keys
               for link in links), (links, keys)
    assert aws.get(f"{url}/report-files/thumbnails/object-1.png").startswith(b"\x89PNG\r\n\x1a\n")
    head = aws.client("s3").head_object(Bucket=bucket, Key="runs/one/report.html")
    assert head["ContentType"].startswith("text/html")  # opens in the browser, not as a download

    assert main(["report", url, "--serve"]) == 2
    assert f"serves a folder of this machine, not {url}" in capsys.readouterr().err


def test_a_folder_without_reports_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fix = "name the output folder of a generate run (`trellis-box generate ... --out DIR`)"
    with pytest.raises(ReportInputError) as caught:
        build_report(LocalStorage(tmp_path), folder=str(tmp_path))
    assert caught.value.fix == fix  # a command to run: the same for every caller
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no per-input reports in {tmp_path}" in err and f"fix: {fix}" in err


def test_a_port_in_use_names_the_parameter_and_the_flag(batch: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(batch, copy)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError) as caught:
            ReportServer(copy, port)
        assert caught.value.fix == "choose another `port`, or 0 for any free one"
        code = main(["report", str(copy), "--serve", "--port", str(port), "--no-thumbnails"])
    err = capsys.readouterr().err
    assert code == caught.value.exit_code
    assert f"cannot serve the report on 127.0.0.1:{port}" in err
    assert "fix: choose another --port, or 0 for any free one" in err and "`" not in err


@pytest.fixture(scope="module")
def served(batch: Path) -> Iterator[str]:
    with ReportServer(batch) as server:
        yield server.url


def _open(browser: Browser, url: str) -> tuple[Page, Any]:
    page, console = new_page(browser)
    page.goto(url)
    page.wait_for_selector("article.card")
    # Every visible picture decoded (lazy ones near the top load at once).
    page.wait_for_function("[...document.querySelectorAll('img')].every(i => i.complete)")
    return page, console


def test_the_report_loads_without_console_errors(browser: Browser, served: str) -> None:
    page, console = _open(browser, served)
    assert page.locator("article.card").count() == 3
    assert page.locator("#file-note").is_hidden() and page.locator("#batch-note").is_hidden()
    assert page.locator('[data-fact="failed"]').inner_text().endswith("1")
    broken = page.evaluate("[...document.images].filter(i => !i.naturalWidth).map(i => i.src)")
    assert broken == []
    assert console.errors == [], console


def test_a_failed_input_shows_its_error_and_fix(browser: Browser, served: str) -> None:
    page, console = _open(browser, served)
    error = page.locator('article[data-name="broken"] .error').inner_text()
    assert "cannot use image" in error and "broken.png" in error
    assert "fix: " in error
    assert page.locator('article[data-name="broken"] button.view3d').count() == 0
    page.click('[data-filter="failed"]')
    assert page.locator("article.card").count() == 1
    assert console.errors == [], console


def _stage_picture(page: Page, selector: str) -> Image.Image:
    return Image.open(io.BytesIO(page.locator(selector).screenshot())).convert("RGB")


def test_the_viewer_shows_the_model(browser: Browser, served: str) -> None:
    page, console = _open(browser, served)
    page.click('article[data-name="object-0"] button.view3d')
    page.wait_for_selector('article[data-name="object-0"][data-viewer="loaded"]', timeout=120_000)
    page.wait_for_function("document.querySelector('model-viewer').loaded")
    page.wait_for_timeout(500)  # let the first frames settle (software WebGL)
    model = _stage_picture(page, 'article[data-name="object-0"] model-viewer')
    # A viewer with nothing to show, in the same place: an empty scene.
    page.evaluate("document.querySelector('model-viewer').replaceWith("
                  "Object.assign(document.createElement('model-viewer'), {id: 'empty'}))")
    page.wait_for_timeout(1000)
    empty = _stage_picture(page, "#empty")
    assert len(model.getcolors(maxcolors=1 << 20) or []) > 200, "the canvas is blank"
    difference = ImageChops.difference(model, empty).convert("L").point(lambda v: 255 if v > 24 else 0)
    changed = difference.histogram()[255] / (model.width * model.height)
    assert changed > 0.1, f"only {changed:.1%} of the viewer differs from an empty scene"
    assert console.errors == [], console


def test_from_the_disk_the_3d_view_takes_the_glb_the_user_picks(browser: Browser, batch: Path) -> None:
    page, console = _open(browser, (batch / "report.html").as_uri())
    assert page.locator("#file-note").is_visible()
    # Pictures do load from the disk: only the viewer's fetch is refused there.
    assert page.evaluate("[...document.images].filter(i => !i.naturalWidth).length") == 0
    assert "--serve" in page.locator("#file-note").inner_text()
    card = 'article[data-name="object-1"]'
    page.click(f"{card} button.view3d")
    assert "--serve" in page.locator(f"{card} .stage").inner_text()
    assert page.locator("model-viewer").count() == 0  # no GLB fetch a file:// page would refuse
    page.set_input_files(f"{card} input.pick", str(batch / "object-1.glb"))
    page.wait_for_selector(f'{card}[data-viewer="loaded"]', timeout=120_000)
    assert (page.locator(f"{card} model-viewer").get_attribute("src") or "").startswith("blob:")
    assert console.errors == [], console


def test_the_report_command_rebuilds_and_serves(batch: Path, tmp_path: Path, browser: Browser) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(batch, copy, ignore=shutil.ignore_patterns("report.html", "report-files"))
    process = subprocess.Popen([sys.executable, "-m", "trellis_box.cli.app", "report", str(copy),
                                "--serve", "--no-thumbnails", "--json"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        lines = []
        while not lines or lines[-1] != "}\n":
            line = process.stdout.readline()
            assert line, "report --serve ended before printing its URL"
            lines.append(line)
        printed = json.loads("".join(lines))
        assert printed["url"].startswith("http://127.0.0.1:")
        assert printed["thumbnails"] == 0
        assert printed["thumbnails_note"] == f"2 not rendered (skipped; `trellis-box report {copy}` renders them)"
        with urllib.request.urlopen(printed["url"]) as answer:
            assert b'id="report-data"' in answer.read()
        with urllib.request.urlopen(printed["url"].replace("report.html", "object-0.glb")) as answer:
            assert answer.headers["Content-Type"] == "model/gltf-binary"
            assert answer.read(4) == b"glTF"
        # Without thumbnails the page still opens clean, with a placeholder saying how to add them.
        page, console = _open(browser, printed["url"])
        assert "trellis-box[thumbnails]" in page.locator('article[data-name="object-0"] .stage').inner_text()
        assert console.errors == [], console
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    assert _entries(copy)["object-0"]["thumbnail"] is None  # the placeholder is shown instead


def test_a_note_on_the_batch_shows_above_the_cards(browser: Browser, batch: Path, tmp_path: Path) -> None:
    """A page built while the batch still runs (``trellis-box batch report``) says it is partial."""
    folder = tmp_path / "out"
    shutil.copytree(batch, folder, ignore=shutil.ignore_patterns("report.html"))
    note = "partial: job j is RUNNING <b>(1 of 3 children not finished)</b>"
    build_report(LocalStorage(folder), folder=str(folder), render_thumbnails=False, note=note)
    assert _data(folder)["note"] == note
    page, console = _open(browser, (folder / "report.html").as_uri())
    assert page.locator("#batch-note").is_visible()
    assert page.locator("#batch-note").inner_text() == note  # as text: a name is never markup
    assert console.errors == [], console


def test_a_link_to_one_input_opens_its_3d_view(browser: Browser, served: str) -> None:
    page, console = new_page(browser)
    page.goto(served + "#object-1")
    page.wait_for_selector('article[data-name="object-1"] model-viewer', state="attached")
    assert page.locator('article[data-name="object-0"]').get_attribute("data-viewer") is None
    assert page.locator("model-viewer").count() == 1
    assert page.locator("model-viewer").get_attribute("src") == "object-1.glb"
    assert console.errors == [], console


def test_without_the_vendored_viewer_the_report_works_and_says_how_to_get_it(
        browser: Browser, batch: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout that never ran scripts/vendor_model_viewer.py (the repository holds no npm code)."""
    assets = tmp_path / "assets"
    shutil.copytree(Path(report_page.ASSETS.__fspath__()), assets)  # type: ignore[attr-defined]
    (assets / "vendor" / "model-viewer-umd.min.js").unlink()
    monkeypatch.setattr(report_page, "ASSETS", assets)
    folder = tmp_path / "out"
    shutil.copytree(batch, folder, ignore=shutil.ignore_patterns("report.html", "report-files"))
    build_report(LocalStorage(folder), folder=str(folder), render_thumbnails=False)
    assert not list((folder / "report-files").glob("model-viewer-*"))
    with ReportServer(folder) as server:
        page, console = _open(browser, server.url)
        page.locator('article[data-name="object-0"] button.view3d').click()
        note = page.locator('article[data-name="object-0"] .still.placeholder')
        assert "python scripts/vendor_model_viewer.py" in note.inner_text()
        assert page.locator("model-viewer").count() == 0
        assert console.errors == [], console
