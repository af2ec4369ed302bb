"""One GPU, several ComfyUI containers: the config, the plan, the drain, the swap, status."""
