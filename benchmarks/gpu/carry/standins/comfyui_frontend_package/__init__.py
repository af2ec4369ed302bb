"""GPU harness only: ComfyUI imports it at start; the harness serves no web page."""

STAND_IN = True
