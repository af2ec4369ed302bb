"""Published figures a bench result is compared with: the one place they are kept."""

from __future__ import annotations

#: Upstream TRELLIS.2's own figures: seconds of generation only (no background removal,
#: post-processing or export) on an NVIDIA H100, by our resolution name.
UPSTREAM_H100_GENERATION_S: dict[str, float] = {"512": 3.0, "1024": 17.0, "1536": 60.0}
UPSTREAM_SOURCE = "microsoft/TRELLIS.2 README (H100, generation only)"
