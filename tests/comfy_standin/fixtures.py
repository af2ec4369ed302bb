"""pytest fixture ``comfy_standin``: start stand-in ComfyUI servers on 127.0.0.1.

Usage::

    def test_x(comfy_standin):
        server = comfy_standin(exec_seconds=0.2)      # our node pack installed
        server.url, server.root, server.output_dir
        server.set_faults(fail_node="Trellis2MeshWithVoxelGenerator", fail_kind="oom")
        server.restart()                               # same port, empty queue and history

Starting takes about a second and blocks; from a running event loop use
``await asyncio.to_thread(server.restart)``. Every server is stopped at the end of the test.
The ``/trellis-box/*`` routes read ``<root>/trellis-box-state.json`` unless ``env`` sets
``TRELLIS_BOX_STATE``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.comfy_standin import install
from tests.comfy_standin.launcher import StandinServer

StartStandin = Callable[..., StandinServer]


@pytest.fixture
def comfy_standin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartStandin]:
    servers: list[StandinServer] = []

    def start(*, node_pack: bool = True, rmbg_weights: bool = True, root: Path | None = None,
              extra_args: list[str] | None = None, env: dict[str, str] | None = None,
              **options: Any) -> StandinServer:
        comfy_root = install(root or tmp_path_factory.mktemp("comfyui"), node_pack=node_pack,
                             rmbg_weights=rmbg_weights)
        # Never the machine's /tmp/trellis-box/state.json: a test names its own state file.
        env = {"TRELLIS_BOX_STATE": str(comfy_root / "trellis-box-state.json"), **(env or {})}
        server = StandinServer(comfy_root, options=options, extra_args=extra_args, env=env)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()
