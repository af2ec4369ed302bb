"""swap's probes keep one loop and one connection for all their polls; ``status --url``.

The connection counts come from a small aiohttp server that records the peer of every request:
one peer address is one TCP connection.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from tests.comfy_standin.fixtures import StartStandin
from trellis_box.cli.app import main
from trellis_box.swap.probes import Probes

GIB = 1024**3


@dataclass
class CountingServer:
    """Answers ``/queue`` with one running prompt for ``busy_polls`` requests, then empty."""

    url: str = ""
    busy_polls: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    peers: set[tuple[str, int]] = field(default_factory=set)

    def seen(self, request: web.Request) -> None:
        self.requests[request.path] = self.requests.get(request.path, 0) + 1
        self.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]

    async def queue(self, request: web.Request) -> web.Response:
        self.seen(request)
        busy = self.requests["/queue"] <= self.busy_polls
        running = [[0, "prompt-1", {}, {}, []]] if busy else []
        return web.json_response({"queue_running": running, "queue_pending": []})

    async def ready(self, request: web.Request) -> web.Response:
        self.seen(request)
        return web.json_response({"ready": True})


@pytest.fixture
def counting_server() -> Iterator[CountingServer]:
    server = CountingServer()
    app = web.Application()
    app.router.add_get("/queue", server.queue)
    app.router.add_get("/ready", server.ready)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{port}"
    yield server
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=30)
    loop.close()


def test_a_drain_of_many_polls_uses_one_connection(counting_server: CountingServer) -> None:
    counting_server.busy_polls = 40
    changes = []
    with Probes(poll_seconds=0.01) as probes:
        left = probes.drain(counting_server.url, timeout=600, on_change=changes.append)
    assert (left.running, left.pending) == ((), ())
    assert counting_server.requests["/queue"] == 41
    assert len(counting_server.peers) == 1
    # One message per change of the queue, not one per poll.
    assert [(q.running, q.pending) for q in changes] == [(("prompt-1",), ())]


def test_readiness_and_queue_polls_reuse_their_connections(
        counting_server: CountingServer) -> None:
    with Probes() as probes:
        for _ in range(25):
            assert probes.ready(f"{counting_server.url}/ready").ready
            probes.queue(counting_server.url)
    assert counting_server.requests == {"/ready": 25, "/queue": 25}
    # One session for readiness and the ComfyUI API alike: one connection, not fifty.
    assert len(counting_server.peers) == 1


def test_a_drain_that_times_out_returns_what_is_left(counting_server: CountingServer) -> None:
    counting_server.busy_polls = 10**6
    with Probes(poll_seconds=0.01) as probes:
        left = probes.drain(counting_server.url, timeout=0)
    assert left.running == ("prompt-1",)


def test_readiness_of_nothing_listening_says_so(counting_server: CountingServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with Probes() as probes:
        probe = probes.ready(f"http://127.0.0.1:{port}/ready")
    assert (probe.ready, probe.detail) == (False, "connection refused")


# ---- status --url: a plain ComfyUI, no containers file, no Docker -----------------------------

def test_status_url_reads_a_plain_comfyui(comfy_standin: StartStandin,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    server = comfy_standin(node_pack=False, gpu_name="NVIDIA L40S", vram_bytes=48 * GIB)
    assert main(["status", "--url", server.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["reachable"] is True and report["error"] is None
    stats = report["stats"]
    assert stats["comfyui_version"] == "0.3.64"
    assert (stats["queue_running"], stats["queue_pending"]) == (0, 0)
    assert stats["devices"] == [{"name": "cuda:0 NVIDIA L40S : cudaMallocAsync", "type": "cuda",
                                 "vram_total": 48 * GIB, "vram_free": 48 * GIB - GIB // 2}]

    assert main(["status", "--url", server.url]) == 0
    text = capsys.readouterr().out
    assert f"{server.url}: ComfyUI 0.3.64, queue 0 running, 0 pending" in text
    assert "cuda cuda:0 NVIDIA L40S : cudaMallocAsync: 0.5 GiB of 48.0 GiB used" in text


def test_status_url_of_nothing_exits_1_and_says_unreachable(
        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    assert main(["status", "--url", url]) == 1
    text = capsys.readouterr().out
    assert f"{url}: not reachable" in text
    assert f"ComfyUI at {url} did not answer GET" in text
