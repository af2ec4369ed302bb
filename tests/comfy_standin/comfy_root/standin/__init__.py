"""The stand-in's own implementation. The ComfyUI module names custom nodes import (``server``,
``nodes``, ``folder_paths``, ``comfy.*``) are thin shims over this package."""
