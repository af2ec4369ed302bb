"""The stand-in runs from a copy of its files in Debian bookworm: Python 3.11, python3-aiohttp
3.8 and python3-pil only, as the swap, serve and image tests run it in containers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.comfy_standin import install
from tests.comfy_standin.probe import object_png, recorded_graph
from tests.docker_support import docker_cli
from tests.gltf_validator import validate_glb

pytestmark = pytest.mark.docker

# Runs inside the container: start the stand-in, run the recorded graph, fetch the GLB.
CLIENT = r"""
import asyncio, json, subprocess, sys, time, aiohttp

async def main():
    graph = json.load(open("/job/graph.json"))
    async with aiohttp.ClientSession("http://127.0.0.1:8188") as session:
        for _ in range(200):
            try:
                await session.get("/system_stats")
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
        form = aiohttp.FormData()
        form.add_field("image", open("/job/chair.png", "rb").read(), filename="chair.png")
        await session.post("/upload/image", data=form)
        ws = await session.ws_connect("/ws?clientId=box")
        answer = await (await session.post("/prompt", json={"prompt": graph, "client_id": "box"})).json()
        types = []
        while True:
            message = json.loads((await ws.receive(timeout=60)).data)
            types.append(message["type"])
            if message["type"] == "executing" and message["data"]["node"] is None:
                break
        history = await (await session.get("/history/" + answer["prompt_id"])).json()
        ref = history[answer["prompt_id"]]["outputs"]["10"]["3d"][0]
        view = await session.get("/view", params=ref)
        versions = {"aiohttp": aiohttp.__version__, "python": sys.version.split()[0]}
        print(json.dumps({"types": types, "ref": ref, "content_type": view.headers["Content-Type"],
                          "bytes": len(await view.read()), "versions": versions}))

server = subprocess.Popen([sys.executable, "main.py", "--listen", "127.0.0.1", "--port", "8188",
                           "--standin-exec-seconds", "0.2"], cwd="/comfy")
try:
    asyncio.run(main())
finally:
    server.terminate()
"""


def test_standin_runs_in_debian_bookworm(base_image: str, tmp_path: Path) -> None:
    root = install(tmp_path / "comfy")
    work = tmp_path / "work"
    work.mkdir()
    (work / "client.py").write_text(CLIENT)
    (work / "graph.json").write_text(json.dumps(recorded_graph()))
    (work / "chair.png").write_bytes(object_png())
    result = subprocess.run(
        [docker_cli(), "run", "--rm", "--network", "none", "-v", f"{root}:/comfy",
         "-v", f"{work}:/job", base_image, "python3", "/job/client.py"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["versions"]["aiohttp"].startswith("3.8.")
    assert report["types"][-2:] == ["status", "executing"] and "execution_success" in report["types"]
    assert report["content_type"] == "model/gltf-binary"
    glb = root / "output" / report["ref"]["subfolder"] / report["ref"]["filename"]
    assert glb.stat().st_size == report["bytes"]
    assert validate_glb(glb)["issues"]["numErrors"] == 0
