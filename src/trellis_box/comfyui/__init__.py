"""Talking to ComfyUI: the wire protocol, the HTTP and websocket client, the workflow graph."""
