"""Command line of the stand-in: ComfyUI 0.3.64's flags that deployments pass, plus ``--standin-*``.

Parsed at import like ComfyUI's ``comfy.cli_args`` (``folder_paths`` needs ``--base-directory``
before anything else is imported). Flags that only tune torch are accepted and ignored, so a
command line written for the real server starts the stand-in unchanged.
"""

from __future__ import annotations

import argparse
import os


def _existing_directory(path: str) -> str:
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"'{path}' is not a directory.")
    return path


parser = argparse.ArgumentParser()
parser.add_argument("--listen", type=str, default="127.0.0.1", metavar="IP", nargs="?",
                    const="0.0.0.0,::")
parser.add_argument("--port", type=int, default=8188)
parser.add_argument("--enable-cors-header", type=str, default=None, nargs="?", const="*")
parser.add_argument("--max-upload-size", type=float, default=100)
parser.add_argument("--base-directory", type=str, default=None)
parser.add_argument("--output-directory", type=str, default=None)
parser.add_argument("--temp-directory", type=str, default=None)
parser.add_argument("--input-directory", type=str, default=None)
parser.add_argument("--user-directory", type=_existing_directory, default=None)
parser.add_argument("--front-end-root", type=_existing_directory, default=None)
parser.add_argument("--front-end-version", type=str, default="comfyanonymous/ComfyUI@latest")
parser.add_argument("--auto-launch", action="store_true")
parser.add_argument("--disable-auto-launch", action="store_true")
parser.add_argument("--disable-all-custom-nodes", action="store_true")
parser.add_argument("--whitelist-custom-nodes", type=str, nargs="+", default=[])
parser.add_argument("--disable-metadata", action="store_true")
parser.add_argument("--verbose", default="INFO", const="DEBUG", nargs="?",
                    choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
parser.add_argument("--log-stdout", action="store_true")
parser.add_argument("--dont-print-server", action="store_true")
parser.add_argument("--quick-test-for-ci", action="store_true")
parser.add_argument("--cuda-device", type=int, default=None)
parser.add_argument("--reserve-vram", type=float, default=None)
parser.add_argument("--preview-method", type=str, default="none")
parser.add_argument("--cache-lru", type=int, default=0)
for _flag in ("--cpu", "--gpu-only", "--highvram", "--normalvram", "--lowvram", "--novram",
              "--disable-smart-memory", "--disable-cuda-malloc", "--cuda-malloc",
              "--force-fp16", "--force-fp32", "--fp16-vae", "--bf16-vae", "--fp32-vae",
              "--use-pytorch-cross-attention", "--use-split-cross-attention",
              "--use-quad-cross-attention", "--use-sage-attention", "--use-flash-attention",
              "--disable-xformers", "--fast", "--deterministic", "--cache-classic",
              "--cache-none", "--disable-api-nodes", "--multi-user", "--async-offload"):
    parser.add_argument(_flag, action="store_true")

standin = parser.add_argument_group("stand-in faults and timing (COMFY_STANDIN_* by default)")
standin.add_argument("--standin-exec-seconds", type=float, default=None,
                     help="seconds the generator node takes per job, spread over its steps")
standin.add_argument("--standin-progress-steps", type=int, default=None)
standin.add_argument("--standin-glb-bytes", type=int, default=None,
                     help="approximate size of each exported GLB (the texture grows to fit)")
standin.add_argument("--standin-fail-node", type=str, default=None,
                     help="class_type of the node that raises while executing")
standin.add_argument("--standin-fail-kind", choices=["error", "oom"], default=None)
standin.add_argument("--standin-fail-message", type=str, default=None)
standin.add_argument("--standin-fail-when", type=str, default=None,
                     help="INPUT=VALUE: fail only when the node's input has this value")
standin.add_argument("--standin-drop-ws-after", type=int, default=None,
                     help="abort each websocket after it carried this many messages")
standin.add_argument("--standin-view-delay", type=float, default=None,
                     help="seconds /view waits before answering")
standin.add_argument("--standin-queue-reply-delay", type=float, default=None,
                     help="seconds POST /prompt waits, the prompt queued, before answering")
standin.add_argument("--standin-gpu-name", type=str, default=None)
standin.add_argument("--standin-vram-bytes", type=int, default=None)
standin.add_argument("--standin-startup-delay", type=float, default=None,
                     help="seconds before the port opens (model loading, imports)")

args = parser.parse_args()
