"""Which resolutions a GPU can hold, from its memory alone (pure: no GPU, no I/O).

Measured (:data:`MEASURED_PEAK_BYTES`, an H200 with every model resident, stand-in weights): a job
peaks at 14.7 GB of device memory at 512, 22.5 GB at 1024 and 39.1 GB at 1536. The thresholds
below rest on those peaks, and ``tests/test_profiles.py`` checks every class against them: 24 GB
cards (A10G, L4: about 22 GiB reported) hold 1024 but not 1536, so they top out at 1024; 40 and
48 GB cards (A100 40 GB, L40S) hold 1536. ``low_vram`` (models parked on the CPU between stages)
only lowers the peak (measured: 4.2 / 11.6 / 34.4 GB at 512 / 1024 / 1536 with it on), so the
measured peaks with it off bound it; it goes off only where the largest allowed
peak fits with :data:`UNPARKED_HEADROOM` to spare, which a 40 or 48 GB card does not (39.1 GB x 1.25),
so only 80 GB-class cards run without it. Other cards than the H200 are projections from these
figures, not measurements. Upstream reports (research/upstream-facts.md §3.8, §5): about 24 GB
needed; peaks above 60 GB with low_vram off (microsoft/TRELLIS.2#24: not what the H200 run showed);
a 23 GB A10G out of memory at 1024/1536 cascade.

The profile decides ``low_vram`` for every job: the container's warm-up and ``generate`` both send
the profile's value, so the model loader's inputs match and the warm-up's loaded models are reused.

Thresholds are in GiB of *reported* memory, below the marketing size: an A10G reports about
22 GiB, an A100 40 GB about 39.6 GiB, an L40S about 44.5 GiB.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trellis_box.comfyui.workflow import RESOLUTIONS, next_lower
from trellis_box.errors import ResolutionUnsupportedError

GIB = 1024**3

#: Device memory one job peaked at, per resolution, measured on an H200 (nvidia-smi: torch's peak
#: plus the CUDA context and the CUDA extensions' own allocations) with low_vram off and every model
#: resident: benchmarks/results/h200-2026-12-03.json. Stand-in weights with an object-sized sparse
#: structure: a real object's token counts vary, hence :data:`UNPARKED_HEADROOM`.
MEASURED_PEAK_BYTES: dict[str, int] = {"512": 14_695_792_640, "1024": 22_497_198_080, "1536": 39_094_059_008}
#: How far above the largest measured peak a card's memory must reach for low_vram to go off.
UNPARKED_HEADROOM = 1.25

#: Reported memory from which the 24 GB class starts (an A10G's ~22 GiB clears it, a 20 GB card does
#: not). 1024's measured peak fits under it; 512's (14.7 GB) would fit a 16 GB card, but no card
#: that small was measured, so upstream's "about 24 GB" floor stays.
MIN_VRAM_BYTES = 21 * GIB
#: Reported memory from which 1536 fits (an A100 40 GB's ~39.6 GiB clears it).
LARGE_VRAM_BYTES = 38 * GIB
#: Reported memory from which ``low_vram`` goes off (80 GB cards; a 48 GB L40S keeps it on).
UNPARKED_VRAM_BYTES = 64 * GIB

#: What each resolution needs, in the marketing GB users know their cards by (for messages).
NEEDS_GB: dict[str, int] = {"512": 24, "1024": 24, "1536": 40}


@dataclass(frozen=True)
class Profile:
    name: str
    vram_bytes: int
    low_vram: bool
    max_resolution: str | None
    allowed_resolutions: tuple[str, ...]
    #: The highest resolution the VRAM alone allows, when the server's ``TRELLIS_BOX_MAX_RESOLUTION``
    #: lowered ``max_resolution`` below it (:func:`lowered`); None otherwise.
    lowered_from: str | None = None

    @property
    def vram_gib(self) -> float:
        return self.vram_bytes / GIB

    def describe(self) -> str:
        top = self.max_resolution or "none"
        why = f", lowered from {self.lowered_from} by TRELLIS_BOX_MAX_RESOLUTION" if self.lowered_from else ""
        return f"{self.vram_gib:.1f} GiB of VRAM ({self.name}: highest resolution {top}{why})"


def profile_for(vram_bytes: int) -> Profile:
    """The profile of a GPU reporting ``vram_bytes`` in total (``/system_stats`` ``vram_total``)."""
    if vram_bytes >= UNPARKED_VRAM_BYTES:
        return Profile("80gb-class", vram_bytes, low_vram=False, max_resolution="1536",
                       allowed_resolutions=RESOLUTIONS)
    if vram_bytes >= LARGE_VRAM_BYTES:
        return Profile("40gb-class", vram_bytes, low_vram=True, max_resolution="1536",
                       allowed_resolutions=RESOLUTIONS)
    if vram_bytes >= MIN_VRAM_BYTES:
        return Profile("24gb-class", vram_bytes, low_vram=True, max_resolution="1024",
                       allowed_resolutions=("512", "1024"))
    return Profile("below-minimum", vram_bytes, low_vram=True, max_resolution=None,
                   allowed_resolutions=())


def lowered(profile: Profile, top: str) -> Profile:
    """``profile`` with nothing above ``top``, one of its allowed resolutions: workers are then
    sized at ``top``'s peak and clients refuse what lies above it. ``low_vram`` stays the card's
    (only :data:`UNPARKED_VRAM_BYTES` was weighed for it). The caller has checked that ``top``
    is allowed: a cap never raises what the card holds."""
    if top == profile.max_resolution:
        return profile
    allowed = profile.allowed_resolutions[:profile.allowed_resolutions.index(top) + 1]
    return replace(profile, max_resolution=top, allowed_resolutions=allowed,
                   lowered_from=profile.max_resolution)


def choose_resolution(requested: str, profile: Profile, *, auto_resolution: bool = False) -> str:
    """``requested`` if the GPU holds it; with ``auto_resolution``, the highest resolution below it
    that fits.

    Raises :class:`ResolutionUnsupportedError` otherwise, saying what fits and how to ask for it.
    """
    next_lower(requested)  # raises, naming the valid ones, for an unknown resolution
    if requested in profile.allowed_resolutions:
        return requested
    if not profile.allowed_resolutions:
        raise ResolutionUnsupportedError(
            "this GPU is too small for TRELLIS.2",
            detail=f"It reports {profile.describe()}; TRELLIS.2 needs about "
                   f"{NEEDS_GB['512']} GB at any resolution.",
            fix="run on a GPU with at least 24 GB (A10G, L4, L40S, A100)",
            resolution=requested, vram_bytes=profile.vram_bytes,
        )
    if auto_resolution:
        lower: str | None = requested
        while lower is not None and lower not in profile.allowed_resolutions:
            lower = next_lower(lower)
        if lower is not None:
            return lower
    top = profile.max_resolution
    if profile.lowered_from is not None and requested in RESOLUTIONS[:RESOLUTIONS.index(profile.lowered_from) + 1]:
        raise ResolutionUnsupportedError(
            f"resolution {requested} is above this server's limit of {top}",
            detail=f"The server's TRELLIS_BOX_MAX_RESOLUTION={top} lowers its highest resolution "
                   f"below what its GPU holds: {profile.describe()}.",
            fix=f"use `resolution` {top}, or `auto_resolution` to step down to it; for {requested}, "
                f"restart the server with TRELLIS_BOX_MAX_RESOLUTION={requested} (or unset)",
            resolution=requested, max_resolution=top, vram_bytes=profile.vram_bytes,
            lowered_from=profile.lowered_from,
        )
    raise ResolutionUnsupportedError(
        f"resolution {requested} does not fit on this GPU",
        detail=f"Resolution {requested} needs about {NEEDS_GB[requested]} GB of VRAM; the GPU reports "
               f"{profile.describe()}.",
        fix=f"use `resolution` {top}, or `auto_resolution` to step down to what fits",
        note="a 23 GB A10G was seen running out of memory at 1024/1536 cascade (microsoft/TRELLIS.2#188)",
        resolution=requested, max_resolution=top, vram_bytes=profile.vram_bytes,
    )



#: Device memory kept free beside the workers' measured peaks (the driver's own, fragmentation).
WORKER_MARGIN_BYTES = 4 * GIB
#: A worker's post-process (remesh, simplify, UV unwrap, bake) is CPU work: a worker per this many
#: cores, so the CPU stages of N workers do not just queue behind each other. Measured on the H200
#: with serve pinned to 4 cores (a g6e.xlarge's vCPUs; benchmarks/results/h200-2026-12-04-workers.md):
#: one warm 1024 worker keeps 1.35 cores busy and ran as fast as on 16 (0.97x); two ran 4 images
#: in 0.48x one worker's wall time at 0.95x its per-image time, 2.36 of the 4 cores busy.
CORES_PER_WORKER = 2
#: Measured up to 6 on the H200 at 1024 (benchmarks/results/h200-2026-12-04-six-workers.md): four
#: gave 0.34-0.40x one worker's wall time with the GPU busy 46-56 %, six 0.26x, busy 69 % (80 % while
#: the queue lasted) and 135.4 GB of device memory, the plan's six peaks. More is unmeasured, and no
#: card holds seven at 1024.
MAX_WORKERS = 6


def workers_for(profile: Profile, cores: int) -> int:
    """How many ComfyUI workers one GPU holds: each worker's memory is planned at the measured
    peak of the profile's highest resolution (every model resident), never found by running out.

    ``floor((VRAM - margin) / peak)``, capped by ``cores // CORES_PER_WORKER`` and
    :data:`MAX_WORKERS`, at least 1 (a 24 GB or 48 GB card keeps one; an H200 gets 3, or 6 with
    its top lowered to 1024 by :func:`lowered`).
    """
    return max(1, min(workers_in_memory(profile), cores // CORES_PER_WORKER, MAX_WORKERS))


def workers_in_memory(profile: Profile) -> int:
    """How many workers' measured peaks at the profile's highest resolution fit in its memory."""
    if profile.max_resolution is None:
        return 0
    return int((profile.vram_bytes - WORKER_MARGIN_BYTES) // MEASURED_PEAK_BYTES[profile.max_resolution])
