# The ComfyUI release the recordings come from (../shared/comfyui/README.md).
__version__ = "0.3.64"
