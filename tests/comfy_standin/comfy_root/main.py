"""Start the ComfyUI stand-in: ``python main.py --listen HOST --port PORT [...]``.

The same start sequence as ComfyUI 0.3.64's ``main.py``: directories from the command line,
core nodes, then ``custom_nodes/*`` (a failing import is logged and skipped), routes mounted,
one worker thread executing prompts in queue order, then the server. ``--port 0`` binds a free
port; the log line ``To see the GUI go to: http://HOST:PORT`` names it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sys
import threading
import time
from typing import Any

from comfy.cli_args import args

logging.basicConfig(level=args.verbose, format="%(message)s",
                    stream=sys.stdout if args.log_stdout else sys.stderr)

import comfy.model_management  # noqa: E402 - after logging, like ComfyUI
import comfy.utils  # noqa: E402
import comfyui_version  # noqa: E402
import execution  # noqa: E402
import folder_paths  # noqa: E402
import nodes  # noqa: E402
import server  # noqa: E402
import standin_options  # noqa: E402


def apply_directories() -> None:
    if args.output_directory:
        folder_paths.set_output_directory(os.path.abspath(args.output_directory))
    if args.input_directory:
        folder_paths.set_input_directory(os.path.abspath(args.input_directory))
    if args.user_directory:
        folder_paths.set_user_directory(os.path.abspath(args.user_directory))
    if args.temp_directory:
        folder_paths.set_temp_directory(os.path.join(os.path.abspath(args.temp_directory), "temp"))
    for directory in (folder_paths.get_output_directory(), folder_paths.get_input_directory()):
        os.makedirs(directory, exist_ok=True)


def prompt_worker(q: execution.PromptQueue, server_instance: server.PromptServer) -> None:
    executor = execution.PromptExecutor(server_instance)
    while True:
        queue_item = q.get(timeout=1000.0)
        if queue_item is None:
            continue
        item, item_id = queue_item
        started = time.perf_counter()
        prompt_id = item[1]
        server_instance.last_prompt_id = prompt_id
        executor.execute(item[2], prompt_id, item[3], item[4])
        q.task_done(item_id, executor.history_result, status=execution.ExecutionStatus(
            status_str="success" if executor.success else "error",
            completed=executor.success, messages=executor.status_messages))
        if server_instance.client_id is not None:
            server_instance.send_sync("executing", {"node": None, "prompt_id": prompt_id},
                                      server_instance.client_id)
        logging.info(f"Prompt executed in {time.perf_counter() - started:.2f} seconds")


def hijack_progress(server_instance: server.PromptServer) -> None:
    def hook(value: int, total: int, preview_image: Any, prompt_id: str | None = None,
             node_id: str | None = None) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        prompt_id = prompt_id or server_instance.last_prompt_id
        node_id = node_id or server_instance.last_node_id
        executor_progress = server_instance.progress
        if executor_progress is not None and node_id is not None:
            executor_progress.update(node_id, value, total)
        server_instance.send_sync("progress", {"value": value, "max": total,
                                               "prompt_id": prompt_id, "node": node_id},
                                  server_instance.client_id)

    comfy.utils.set_progress_bar_global_hook(hook)


async def run(server_instance: server.PromptServer) -> None:
    addresses = [(address, args.port) for address in args.listen.split(",")]
    publisher = asyncio.ensure_future(server_instance.publish_loop())
    await server_instance.start_multi_address(addresses)
    await publisher


def main() -> None:
    logging.info(f"Python version: {sys.version}")
    logging.info(f"ComfyUI version: {comfyui_version.__version__} (trellis-box stand-in)")
    standin_options.current.update(standin_options.from_environment_and_args(args).as_dict())
    apply_directories()
    shutil.rmtree(folder_paths.get_temp_directory(), ignore_errors=True)
    if standin_options.current.startup_delay > 0:
        time.sleep(standin_options.current.startup_delay)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    prompt_server = server.PromptServer(loop)
    nodes.init_extra_nodes(init_custom_nodes=not args.disable_all_custom_nodes)
    prompt_server.add_routes()
    hijack_progress(prompt_server)
    threading.Thread(target=prompt_worker, daemon=True,
                     args=(prompt_server.prompt_queue, prompt_server)).start()
    if args.quick_test_for_ci:
        return
    os.makedirs(folder_paths.get_temp_directory(), exist_ok=True)
    try:
        loop.run_until_complete(run(prompt_server))
    except KeyboardInterrupt:
        logging.info("\nStopped server")


if __name__ == "__main__":
    main()
