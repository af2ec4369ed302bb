"""trellis-box: bake, verify, serve and drive the comfyui-trellis2 container."""

__version__ = "0.1.0"
