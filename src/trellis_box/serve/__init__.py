"""The container's entrypoint: settings, preflight, ComfyUI's supervision, warm-up, doctor."""
