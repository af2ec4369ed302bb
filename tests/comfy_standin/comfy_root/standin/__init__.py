"""The stand-in's own implementation, written from the recordings, not from ComfyUI's source.

The module names custom nodes import (``server``, ``nodes``, ``folder_paths``, ``comfy.*``) are
thin shims over this package; only they, the HTTP/websocket API and client-visible error texts
follow ComfyUI by necessity.

- ``app``: start-up, route mounting, the single prompt worker (an asyncio task).
- ``api``, ``files``, ``node_info``: the HTTP routes; ``hub``: the websocket and message order.
- ``jobs``: the prompt queue and history; ``validation``: checking a prompt before queueing.
- ``executor``, ``run_plan``, ``cache``, ``progress``: running a prompt node by node.
- ``graph``, ``registry``: the prompt as a graph; the known node types.
- ``core_nodes``, ``pack_loader``: ComfyUI's core nodes we need; loading ``custom_nodes/*``.
- ``options``, ``faults``, ``schema``: stand-in settings, injected failures, recorded schemas.
"""
