"""Start-up and the single prompt worker.

The sequence ComfyUI 0.3.64 follows, as far as clients can tell: folders from the command line,
core nodes, then ``custom_nodes/*``, routes mounted (each also under ``/api``), then the port
opens and the log names it (``To see the GUI go to: http://HOST:PORT``, which launchers wait
for; ``--port 0`` binds a free port).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

import comfy.model_management as mm
import comfy.utils
import comfyui_version
import folder_paths
from aiohttp import web
from comfy.cli_args import args

from standin import core_nodes, files, options, pack_loader
from standin.api import Api
from standin.executor import Executor, Outcome
from standin.hub import Hub
from standin.jobs import Job, JobQueue
from standin.progress import Activity

log = logging.getLogger("standin.app")
T = TypeVar("T")


class Standin:
    """The server's parts, wired together; ``server.PromptServer`` wraps one for custom nodes."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.activity = Activity()
        self.queue = JobQueue(changed=self._queue_changed)
        upload_limit = round(args.max_upload_size * 1024 * 1024)
        features = {"supports_preview_metadata": True, "max_upload_size": upload_limit}
        self.api = Api(self.queue, features, args.front_end_root)
        self.hub = Hub(loop, self.activity, self.api.status, lambda: features)
        self.executor = Executor(self.hub.publish, self.activity)
        self.web = web.Application(client_max_size=upload_limit)
        # Custom nodes add their routes here while they are imported, before mount_routes.
        self.routes = web.RouteTableDef()
        self.routes.get("/ws")(self.hub.handle)
        self.api.add_routes(self.routes)
        files.add_routes(self.routes)

    def _queue_changed(self) -> None:
        self.hub.publish("status", {"status": self.api.status()})

    def mount_routes(self) -> None:
        """Every route twice, ``/api/...`` first: the front end calls the prefixed paths."""
        prefixed = web.RouteTableDef()
        for route in self.routes:
            if isinstance(route, web.RouteDef):  # not static folders
                prefixed.route(route.method, "/api" + route.path)(route.handler, **route.kwargs)
        self.web.add_routes(prefixed)
        self.web.add_routes(self.routes)

    def report_progress(self, value: int, total: int, preview: Any, prompt_id: str | None = None,
                        node_id: str | None = None) -> None:
        """``comfy.utils.ProgressBar``'s hook; runs in the node's thread, so it is also where
        an interrupt reaches a long node."""
        mm.throw_exception_if_processing_interrupted()
        node_id = node_id or self.activity.node_id
        if self.activity.board is not None and node_id is not None:
            self.activity.board.advanced(node_id, value, total)
        self.hub.publish("progress", {"value": value, "max": total,
                                      "prompt_id": prompt_id or self.activity.prompt_id,
                                      "node": node_id}, self.activity.client_id)

    async def work(self) -> None:
        while True:
            job = await self.queue.take()
            started = time.perf_counter()
            outcome = await self._in_thread(self._execute, job)
            self.queue.finish(job, outcome)
            # Every prompt ends with this message; clients read /history after it.
            if self.activity.client_id is not None:
                self.hub.publish("executing", {"node": None, "prompt_id": job.prompt_id},
                                 self.activity.client_id)
            log.info(f"Prompt executed in {time.perf_counter() - started:.2f} seconds")

    def _execute(self, job: Job) -> Outcome:
        try:
            return self.executor.run(job.prompt, job.prompt_id, job.extra_data, job.outputs)
        except Exception:  # a stand-in bug: keep serving, record the prompt as failed
            log.exception("prompt %s could not be run", job.prompt_id)
            return Outcome(False, [], {}, {})

    def _in_thread(self, function: Callable[[Job], T], job: Job) -> asyncio.Future[T]:
        """Run a blocking prompt in a daemon thread (not asyncio.to_thread: Ctrl-C must stop
        the server at once, not wait for the running node).

        The result is handed back with call_soon_threadsafe, after every message the prompt
        published the same way, so ``executing`` with ``node: null`` always comes last.
        """
        future: asyncio.Future[T] = self.loop.create_future()

        def run() -> None:
            result = function(job)
            self.loop.call_soon_threadsafe(future.set_result, result)

        threading.Thread(target=run, name=f"prompt {job.prompt_id}", daemon=True).start()
        return future

    async def serve(self) -> None:
        delivery = asyncio.ensure_future(self.hub.deliver_forever())
        worker = asyncio.ensure_future(self.work())
        runner = web.AppRunner(self.web, access_log=None)
        await runner.setup()
        log.info("Starting server\n")
        for host in args.listen.split(","):
            site = web.TCPSite(runner, host, args.port)
            await site.start()
            # aiohttp 3.8 (Debian bookworm) has no public way to read the bound port.
            bound = cast("asyncio.Server | None", site._server)
            port = bound.sockets[0].getsockname()[1] if bound and bound.sockets else args.port
            shown = f"[{host}]" if ":" in host else host
            log.info(f"To see the GUI go to: http://{shown}:{port}")
        await asyncio.gather(delivery, worker)


def _prepare_folders() -> None:
    for flag, setter in ((args.output_directory, folder_paths.set_output_directory),
                         (args.input_directory, folder_paths.set_input_directory),
                         (args.user_directory, folder_paths.set_user_directory)):
        if flag:
            setter(os.path.abspath(flag))
    if args.temp_directory:
        # ComfyUI keeps its temp files in a "temp" folder inside the given one.
        folder_paths.set_temp_directory(os.path.join(os.path.abspath(args.temp_directory), "temp"))
    temp = folder_paths.get_temp_directory()
    # Previews of earlier runs are never served again. The folder itself may stay (a volume's
    # mount point, or a parent the server cannot write), so it may exist afterwards.
    shutil.rmtree(temp, ignore_errors=True)
    for folder in (folder_paths.get_output_directory(), folder_paths.get_input_directory(), temp):
        os.makedirs(folder, exist_ok=True)


def main() -> None:
    import server  # the shim custom nodes reach the server through

    log.info(f"Python version: {sys.version}")
    log.info(f"ComfyUI version: {comfyui_version.__version__} (trellis-box stand-in)")
    options.current.update(options.from_environment_and_args(args).as_dict())
    _prepare_folders()
    if options.current.startup_delay > 0:
        time.sleep(options.current.startup_delay)  # stands for model loading and slow imports
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    standin = Standin(loop)
    server.PromptServer(standin)
    allowed = list(args.whitelist_custom_nodes) if args.disable_all_custom_nodes else None
    core_nodes.register()  # first, so no pack can replace a core node type
    pack_loader.load_all(folder_paths.get_folder_paths("custom_nodes"), allowed)
    standin.mount_routes()
    comfy.utils.set_progress_bar_global_hook(standin.report_progress)
    if args.quick_test_for_ci:  # start-up only: imports and routes are what CI checks
        return
    try:
        loop.run_until_complete(standin.serve())
    except KeyboardInterrupt:  # exit status 0, as ComfyUI's; `trellis-box serve` relies on it
        log.info("\nStopped server")
