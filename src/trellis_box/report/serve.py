"""``trellis-box report DIR --serve``: the batch folder over http on 127.0.0.1.

Browsers refuse a page opened from ``file://`` the fetch <model-viewer> makes for its GLB; the
same files served over http on the loopback interface turn in the viewer. Only the folder is
served, only to this machine.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from trellis_box.errors import PortInUseError
from trellis_box.report.build import REPORT
from trellis_box.storage.base import CONTENT_TYPES


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **CONTENT_TYPES}

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the command prints its URL, not one line per thumbnail."""


class ReportServer:
    """Serves ``folder`` on ``127.0.0.1:port`` (0: a free port) in a background thread."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        handler = functools.partial(_Handler, directory=str(folder))
        try:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as exc:
            raise PortInUseError(
                f"cannot serve the report on 127.0.0.1:{port}",
                detail=str(exc.strerror or exc),
                fix="choose another `port`, or 0 for any free one", port=port) from exc
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="report-server",
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/{REPORT}"

    def __enter__(self) -> ReportServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join()
