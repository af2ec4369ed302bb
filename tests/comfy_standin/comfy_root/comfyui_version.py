# The ComfyUI release the recordings come from (tests/recordings/comfyui/README.md).
__version__ = "0.3.64"
