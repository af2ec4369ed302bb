"""``trellis-box doctor``: preflight's checks, the driver, and a test job against a server."""

from __future__ import annotations

import asyncio
import secrets
import time

from trellis_box.comfyui.client import ComfyClient, Timeouts
from trellis_box.serve.preflight import DOCTOR, Findings, Step
from trellis_box.serve.settings import ServeSettings
from trellis_box.serve.warmup import WARMUP_RESOLUTION, run_test_job


async def check_server(url: str, *, timeout: float) -> str:
    """Run the warm-up job against a running server; one line on success, the client's error
    (or :class:`WarmupFailedError`) otherwise."""
    async with ComfyClient(url, timeouts=Timeouts(connect=5.0)) as client:
        info = await client.http.trellis_info()
        started = time.monotonic()
        profile = (info or {}).get("profile") or {}
        result = await run_test_job(client, timeout=timeout, seed=secrets.randbelow(2**31),
                                    low_vram=bool(profile.get("low_vram", True)))
    phase = "plain ComfyUI (no /trellis-box/info)" if info is None else f"phase {info.get('phase')}"
    return (f"{url}: prompt {result.prompt_id} made a GLB at {WARMUP_RESOLUTION} in "
            f"{time.monotonic() - started:.1f} s ({phase})")


def doctor_steps(server: str | None, *, job_timeout: float) -> tuple[Step, ...]:
    """``doctor``'s checks: preflight's, the driver, and with ``server`` a test job against it."""
    if server is None:
        return DOCTOR

    def job(settings: ServeSettings, found: Findings) -> str:
        return asyncio.run(check_server(server, timeout=job_timeout))

    return (*DOCTOR, Step("test job", job))
