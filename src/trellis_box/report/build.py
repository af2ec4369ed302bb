"""Build a batch's ``report.html`` from its per-input files: the page at once, then thumbnails.

``build_report`` writes the page before it renders any thumbnail (an interrupted render still
leaves a report), then writes it again with the thumbnails that exist. Everything it makes lives
under ``report-files/``: previews of the inputs, thumbnails, the viewer script and its licence;
each is made once and kept while its source is unchanged.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from trellis_box.errors import ReportInputError, ThumbnailsUnavailableError, TrellisBoxError
from trellis_box.report import page, thumbnails
from trellis_box.report.entries import FILES_DIR, Entry, read_entries, summarise
from trellis_box.storage import Storage, open_storage

REPORT = "report.html"
PREVIEW_SIZE = 384


@dataclass
class ReportResult:
    page: str
    counts: dict[str, int]
    thumbnails: int = 0
    #: Why some or all models have no thumbnail (absent renderer, failed renders), or ``None``.
    thumbnails_note: str | None = None
    failed_thumbnails: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"report": self.page, "counts": self.counts, "thumbnails": self.thumbnails,
                "thumbnails_note": self.thumbnails_note,
                "failed_thumbnails": self.failed_thumbnails}


def thumbnail_name(entry: Entry) -> str:
    return f"{FILES_DIR}/thumbnails/{entry.name}.png"


def build_report(store: Storage, *, folder: str, render_thumbnails: bool = True,
                 workers: int | None = None, note: str | None = None,
                 on_thumbnail: Callable[[str, int], None] | None = None) -> ReportResult:
    """Write ``report.html`` (and ``report-files/``) for the batch in ``store``.

    ``folder`` is how the page names the batch (``trellis-box report FOLDER --serve``); ``note``
    is shown above the cards (a batch still running: the page is partial).
    ``on_thumbnail(glb, total)`` is called as each thumbnail is done.
    """
    entries = read_entries(store)
    if not entries:
        raise ReportInputError(
            f"no per-input reports in {store.url('')}",
            detail="a batch output folder holds a <name>.json beside each <name>.glb",
            fix="name the output folder of a generate run (`trellis-box generate ... --out DIR`)")
    viewer = _copy_viewer(store)
    previews = {e.name: _preview(store, e) for e in entries}
    missing = [e for e in entries if e.glb and _stale(store, e.glb, thumbnail_name(e))]
    unrendered = None
    if missing and not render_thumbnails:
        unrendered = f"{len(missing)} not rendered (skipped; `trellis-box report {folder}` renders them)"
    elif missing:
        try:
            thumbnails.check_available()
        except ThumbnailsUnavailableError as exc:
            unrendered = f"{exc.message}; fix: {exc.fix}"
    result = ReportResult(REPORT, summarise(entries).counts, thumbnails_note=unrendered)
    _write_page(store, entries, previews, viewer, folder, note, result)
    if missing and unrendered is None:
        total = len(missing)
        try:
            rendered = thumbnails.render_all(
                store, {e.glb or "": thumbnail_name(e) for e in missing}, workers=workers,
                on_done=None if on_thumbnail is None else lambda glb: on_thumbnail(glb, total))
        except ThumbnailsUnavailableError as exc:
            result.thumbnails_note = f"{exc.message}; fix: {exc.fix}"
        else:
            result.failed_thumbnails = rendered.failed
            if rendered.failed:
                result.thumbnails_note = f"{len(rendered.failed)} could not be rendered"
        _write_page(store, entries, previews, viewer, folder, note, result)
    return result


def _write_page(store: Storage, entries: list[Entry], previews: dict[str, str | None],
                viewer: str | None, folder: str, note: str | None, result: ReportResult) -> None:
    thumbs_dir = f"{FILES_DIR}/thumbnails/"
    present = {thumbs_dir + n for n in store.list(thumbs_dir)}
    data = {
        "dir": folder,
        "viewer_script": viewer,
        "viewer_missing": None if viewer else f"this trellis-box was installed without the 3D viewer: "
                                              f"run `{page.VENDOR_COMMAND}` in its checkout",
        "summary": summarise(entries).as_dict(),
        "thumbnails_note": result.thumbnails_note,
        "note": note,
        "entries": [e.for_page(thumbnail_name(e) if thumbnail_name(e) in present else None,
                               previews[e.name]) for e in entries],
    }
    result.thumbnails = len(present & {thumbnail_name(e) for e in entries if e.glb})
    store.write_bytes(REPORT, page.render(data, title=f"trellis-box report: {folder}", folder=folder))


def _stale(store: Storage, source: str, made: str) -> bool:
    made_at = store.modified(made)
    return made_at is None or made_at < (store.modified(source) or 0.0)


def _copy_viewer(store: Storage) -> str | None:
    names = {f"{FILES_DIR}/{name}": data for name, data in page.viewer_files().items()}
    for name, data in names.items():
        if store.modified(name) is None:
            store.write_bytes(name, data)
    return next((n for n in names if n.endswith(".js")), None)


def _preview(store: Storage, entry: Entry) -> str | None:
    """A small copy of the input image (the original may live anywhere, or nowhere, later)."""
    sha256 = (entry.data.get("input") or {}).get("sha256")
    if not (sha256 and entry.input_path):
        return None
    name = f"{FILES_DIR}/inputs/{entry.name}.{str(sha256)[:12]}.webp"
    if store.modified(name) is not None:
        return name
    try:
        with Image.open(io.BytesIO(_read_input(entry.input_path))) as image:
            image.seek(0)
            small = ImageOps.exif_transpose(image)
            small.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
            if small.mode not in ("RGB", "RGBA"):
                small = small.convert("RGBA")
            buffer = io.BytesIO()
            small.save(buffer, format="WEBP", quality=80)
    except (OSError, TrellisBoxError, UnidentifiedImageError, ValueError,
            Image.DecompressionBombError):
        return None
    store.write_bytes(name, buffer.getvalue())
    return name


def _read_input(path: str) -> bytes:
    """The input image where the batch found it: a local path or ``s3://bucket/key``."""
    location, _, name = path.rpartition("/")
    return open_storage(location or ".").read(name)
