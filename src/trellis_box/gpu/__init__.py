"""The GPU: which card is here, what it can run (VRAM profiles), what the image was built for."""
